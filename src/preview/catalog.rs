//! What the page shows beside a list: the ad's creative, and each listed
//! product's title and current stock state, looked up in the vector store.

use std::collections::BTreeMap;
use std::sync::{Arc, Weak};

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::records::{AdRecord, ProductRecord};
use crate::store::{StoreError, VectorStore};

/// A product as the page shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct ProductInfo {
    /// Display title.
    pub title: Option<String>,
    /// Current stock state.
    pub in_stock: bool,
}

/// An ad as the page shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct AdInfo {
    /// Creative image URL (unchecked: the renderers decide what to show).
    pub image_url: String,
    /// When the ad last changed.
    pub updated_at: DateTime<Utc>,
}

/// Looks up products and ads by id; missing ids are left out.
#[async_trait]
pub trait Catalog: Send + Sync {
    /// Products by id.
    async fn products(&self, ids: Vec<String>) -> Result<BTreeMap<String, ProductInfo>, StoreError>;
    /// Ads by id.
    async fn ads(&self, ids: Vec<String>) -> Result<BTreeMap<String, AdInfo>, StoreError>;
}

/// [`Catalog`] over the worker's product and ad collections (payloads only, no vectors).
///
/// Holds weak references: the page must not keep a store open after the
/// worker's run has ended (an embedded store locks its directory and flushes
/// when dropped). Once the stores are gone, lookups find nothing.
pub struct StoreCatalog {
    products: Weak<dyn VectorStore>,
    ads: Weak<dyn VectorStore>,
}

impl StoreCatalog {
    /// Read from these collections while they are open.
    pub fn new(products: &Arc<dyn VectorStore>, ads: &Arc<dyn VectorStore>) -> Self {
        Self { products: Arc::downgrade(products), ads: Arc::downgrade(ads) }
    }
}

#[async_trait]
impl Catalog for StoreCatalog {
    async fn products(&self, ids: Vec<String>) -> Result<BTreeMap<String, ProductInfo>, StoreError> {
        let Some(store) = self.products.upgrade() else { return Ok(BTreeMap::new()) };
        let points = store.retrieve(ids, false).await?;
        Ok(points
            .into_iter()
            .filter_map(ProductRecord::from_point)
            .map(|p| (p.product_id, ProductInfo { title: p.title, in_stock: p.in_stock }))
            .collect())
    }

    async fn ads(&self, ids: Vec<String>) -> Result<BTreeMap<String, AdInfo>, StoreError> {
        let Some(store) = self.ads.upgrade() else { return Ok(BTreeMap::new()) };
        let points = store.retrieve(ids, false).await?;
        Ok(points
            .into_iter()
            .filter_map(AdRecord::from_point)
            .filter(|a| !a.deleted)
            .map(|a| (a.ad_id, AdInfo { image_url: a.image_url, updated_at: a.updated_at }))
            .collect())
    }
}
