//! Standing recommendation lists: every ad's current top-K, which ads a
//! catalogue change can affect, and versioned publication of changed lists.
//!
//! A product change only touches ads that already list the product, or
//! whose filter it passes and whose K-th score it can beat (one dot product
//! per ad, no store query). Those ads get one filtered top-K store query
//! each. A list is published only when its ids, order or scores (beyond
//! `score_epsilon`) change; the ad's version is bumped once per publication
//! and persisted after the sink has the list, so a crash in between
//! republishes the same version, never a smaller one.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use chrono::Utc;

use crate::config::RecommendConfig;
use crate::events::{ListItem, RecommendationList};
use crate::sink::{ListSink, SinkError};
use crate::records::{AdRecord, ProductRecord};
use crate::store::{StoreError, VectorStore};

/// Errors while maintaining lists.
#[derive(Debug, thiserror::Error)]
pub enum RecommendError {
    /// The vector store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The sink failed.
    #[error(transparent)]
    Sink(#[from] SinkError),
}

impl RecommendError {
    /// Whether retrying may help.
    pub fn is_transient(&self) -> bool {
        match self {
            RecommendError::Store(e) => e.is_transient(),
            RecommendError::Sink(e) => e.is_transient(),
        }
    }
}

/// Cosine similarity of two L2-normalised vectors.
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// Ranking order: score descending, then product id ascending (deterministic ties).
pub fn rank_order(a: &ListItem, b: &ListItem) -> std::cmp::Ordering {
    b.score.total_cmp(&a.score).then_with(|| a.product_id.cmp(&b.product_id))
}

/// Keeps every ad's list and publishes changes.
pub struct Recommender {
    products: Arc<dyn VectorStore>,
    ads_store: Arc<dyn VectorStore>,
    sink: Arc<dyn ListSink>,
    ads: BTreeMap<String, AdRecord>,
    config: RecommendConfig,
    model_id: String,
    /// Input partitions whose ads this worker owns (`None` = all: files mode).
    owned: Option<BTreeSet<i32>>,
    /// Last published value per ad learned from the output when partitions
    /// were assigned, for ads this worker has no local record of yet.
    seeds: BTreeMap<String, Option<RecommendationList>>,
    /// Store queries issued (for metrics and benchmarks).
    pub store_queries: u64,
}

impl Recommender {
    /// Load all ads (with their last published lists) from the ads store.
    pub async fn load(
        products: Arc<dyn VectorStore>,
        ads_store: Arc<dyn VectorStore>,
        sink: Arc<dyn ListSink>,
        config: RecommendConfig,
        model_id: String,
    ) -> Result<Self, StoreError> {
        let mut ads = BTreeMap::new();
        for point in ads_store.scroll_all(true).await? {
            if let Some(ad) = AdRecord::from_point(point) {
                ads.insert(ad.ad_id.clone(), ad);
            }
        }
        Ok(Self { products, ads_store, sink, ads, config, model_id, owned: None, seeds: BTreeMap::new(), store_queries: 0 })
    }

    /// Own no partitions until [`Recommender::assign`] (Kafka mode: ads are
    /// partitioned across workers, each list is written by its owner only).
    pub fn own_nothing(&mut self) {
        self.owned = Some(BTreeSet::new());
    }

    /// Take ownership of the ads of these input partitions: learn what was
    /// last published for them (perhaps by another worker), so versions keep
    /// increasing and unchanged lists are not republished.
    pub async fn assign(&mut self, partitions: &[i32]) -> Result<(), RecommendError> {
        let latest = self.sink.latest(partitions).await?;
        for (ad_id, value) in latest {
            match (self.ads.get_mut(&ad_id), &value) {
                (Some(ad), Some(list)) => {
                    ad.version = ad.version.max(list.version);
                    ad.items = list.items.clone();
                    ad.deleted = false;
                }
                (Some(ad), None) => {
                    ad.deleted = true;
                    ad.items.clear();
                }
                (None, _) => {
                    self.seeds.insert(ad_id, value);
                }
            }
        }
        if let Some(owned) = &mut self.owned {
            owned.extend(partitions);
        }
        Ok(())
    }

    /// Give up the ads of these partitions (another worker takes them over).
    pub fn revoke(&mut self, partitions: &[i32]) {
        if let Some(owned) = &mut self.owned {
            for p in partitions {
                owned.remove(p);
            }
        }
    }

    fn owns(&self, ad: &AdRecord) -> bool {
        self.owned.as_ref().is_none_or(|o| o.contains(&ad.partition))
    }

    /// The stored state of an ad (including deleted ones).
    pub fn ad(&self, ad_id: &str) -> Option<&AdRecord> {
        self.ads.get(ad_id)
    }

    /// Live (not deleted) ads this worker owns.
    pub fn live_ads(&self) -> impl Iterator<Item = &AdRecord> {
        self.ads.values().filter(|a| !a.deleted && self.owns(a))
    }

    /// Ads whose list may change when `product` is stored (new or changed).
    pub fn affected_by_upsert(&self, product: &ProductRecord) -> Vec<String> {
        let eps = self.config.score_epsilon;
        self.live_ads()
            .filter(|ad| {
                if ad.items.iter().any(|i| i.product_id == product.product_id) {
                    return true;
                }
                if !ad.filter.accepts(product.in_stock, &product.attributes) {
                    return false;
                }
                if ad.items.len() < ad.k {
                    return true;
                }
                let kth = ad.items.last().map_or(f32::NEG_INFINITY, |i| i.score);
                dot(&ad.vector, &product.vector) >= kth - eps
            })
            .map(|ad| ad.ad_id.clone())
            .collect()
    }

    /// Ads whose list contains `product_id` (they change when it goes away).
    pub fn affected_by_removal(&self, product_id: &str) -> Vec<String> {
        self.live_ads()
            .filter(|ad| ad.items.iter().any(|i| i.product_id == product_id))
            .map(|ad| ad.ad_id.clone())
            .collect()
    }

    /// The current exact top-K of an ad, from the store.
    pub async fn compute(&mut self, ad: &AdRecord) -> Result<Vec<ListItem>, StoreError> {
        // A few extra hits let ties at the cut be ordered by id, not by the engine.
        let hits = self.products.search(ad.vector.clone(), ad.store_filter(), ad.k + 4).await?;
        self.store_queries += 1;
        let mut items: Vec<ListItem> = hits
            .into_iter()
            .map(|h| ListItem {
                image_url: h.payload.get("image_url").and_then(|v| v.as_str()).unwrap_or_default().to_string(),
                product_id: h.id,
                score: h.score,
            })
            .collect();
        items.sort_by(rank_order);
        items.truncate(ad.k);
        Ok(items)
    }

    fn changed(&self, old: &[ListItem], new: &[ListItem]) -> bool {
        old.len() != new.len()
            || old.iter().zip(new).any(|(a, b)| {
                a.product_id != b.product_id || (a.score - b.score).abs() > self.config.score_epsilon
            })
    }

    /// Store an ad's new state (new or changed creative/filter/k) and publish
    /// its list if it changed. Returns whether a list was published.
    pub async fn upsert_ad(&mut self, mut ad: AdRecord) -> Result<bool, RecommendError> {
        let (version, old_items) = match (self.ads.get(&ad.ad_id), self.seeds.remove(&ad.ad_id)) {
            (Some(p), _) => (p.version, (!p.deleted).then(|| p.items.clone())),
            (None, Some(Some(list))) => (list.version, Some(list.items)),
            (None, _) => (0, None),
        };
        ad.version = version;
        ad.deleted = false;
        let new_items = self.compute(&ad).await?;
        let publish = old_items.as_deref().is_none_or(|old| self.changed(old, &new_items));
        if publish {
            ad.version += 1;
            let list = self.list_message(&ad, &new_items);
            self.sink.publish(&ad.ad_id, ad.partition, Some(&list)).await?;
            ad.items = new_items;
        } else if let Some(old) = old_items {
            ad.items = old;
        }
        self.ads_store.upsert(vec![ad.to_point()]).await?;
        self.ads.insert(ad.ad_id.clone(), ad);
        Ok(publish)
    }

    /// Delete an ad: publish a tombstone, keep its version. Returns whether
    /// a tombstone was published (false if the ad was unknown or already gone).
    pub async fn delete_ad(&mut self, ad_id: &str) -> Result<bool, RecommendError> {
        let Some(mut ad) = self.ads.get(ad_id).filter(|a| !a.deleted && self.owns(a)).cloned() else {
            return Ok(false);
        };
        self.sink.publish(ad_id, ad.partition, None).await?;
        ad.deleted = true;
        ad.items.clear();
        self.ads_store.upsert(vec![ad.to_point()]).await?;
        self.ads.insert(ad_id.to_string(), ad);
        Ok(true)
    }

    /// Recompute the given ads and publish those whose list changed.
    /// Returns how many lists were published.
    pub async fn refresh(&mut self, ad_ids: &[String]) -> Result<usize, RecommendError> {
        let mut published = 0;
        for ad_id in ad_ids {
            let Some(mut ad) = self.ads.get(ad_id).filter(|a| !a.deleted && self.owns(a)).cloned() else { continue };
            let items = self.compute(&ad).await?;
            if !self.changed(&ad.items, &items) {
                continue;
            }
            ad.version += 1;
            let list = self.list_message(&ad, &items);
            self.sink.publish(&ad.ad_id, ad.partition, Some(&list)).await?;
            ad.items = items;
            self.ads_store.upsert(vec![ad.to_point()]).await?;
            self.ads.insert(ad.ad_id.clone(), ad);
            published += 1;
        }
        Ok(published)
    }

    fn list_message(&self, ad: &AdRecord, items: &[ListItem]) -> RecommendationList {
        RecommendationList {
            ad_id: ad.ad_id.clone(),
            version: ad.version,
            model: self.model_id.clone(),
            generated_at: Utc::now(),
            items: items.to_vec(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::AdFilter;
    use crate::sink::DeadLetter;
    use crate::store::memory::MemoryStore;
    use async_trait::async_trait;
    use tokio::sync::Mutex;

    #[derive(Default)]
    struct Recording(Mutex<Vec<(String, Option<u64>)>>);

    #[async_trait]
    impl ListSink for Recording {
        async fn publish(&self, ad_id: &str, _partition: i32, list: Option<&RecommendationList>) -> Result<(), SinkError> {
            self.0.lock().await.push((ad_id.to_string(), list.map(|l| l.version)));
            Ok(())
        }
        async fn dead_letter(&self, _: &DeadLetter) -> Result<(), SinkError> {
            Ok(())
        }
    }

    fn product(id: &str, v: [f32; 2], in_stock: bool) -> ProductRecord {
        let n = (v[0] * v[0] + v[1] * v[1]).sqrt();
        ProductRecord {
            product_id: id.into(),
            vector: vec![v[0] / n, v[1] / n],
            image_url: format!("http://x/{id}.jpg"),
            title: None,
            in_stock,
            attributes: Default::default(),
            model: "m".into(),
            updated_at: Utc::now(),
        }
    }

    fn ad(id: &str, k: usize, in_stock: Option<bool>) -> AdRecord {
        AdRecord {
            ad_id: id.into(),
            vector: vec![1.0, 0.0],
            image_url: "http://x/ad.jpg".into(),
            k,
            filter: AdFilter { in_stock, ..Default::default() },
            updated_at: Utc::now(),
            version: 0,
            items: vec![],
            deleted: false,
            model: "m".into(),
            partition: 0,
        }
    }

    async fn setup() -> (Recommender, Arc<MemoryStore>, Arc<Recording>) {
        let products = Arc::new(MemoryStore::default());
        let sink = Arc::new(Recording::default());
        let r = Recommender::load(products.clone(), Arc::new(MemoryStore::default()), sink.clone(), RecommendConfig::default(), "m".into())
            .await
            .expect("load");
        (r, products, sink)
    }

    #[tokio::test]
    async fn only_ads_a_product_can_enter_or_leave_are_touched() {
        let (mut r, products, sink) = setup().await;
        for p in [product("a", [1.0, 0.1], true), product("b", [1.0, 0.5], true), product("c", [0.0, 1.0], true)] {
            products.upsert(vec![p.to_point()]).await.expect("upsert");
        }
        assert!(r.upsert_ad(ad("ad", 2, Some(true))).await.expect("ad"));
        let items: Vec<_> = r.ad("ad").expect("ad").items.iter().map(|i| i.product_id.clone()).collect();
        assert_eq!(items, ["a", "b"]);

        // Below the K-th score: not affected. Out of stock under an in-stock filter: not affected.
        assert!(r.affected_by_upsert(&product("d", [0.1, 1.0], true)).is_empty());
        assert!(r.affected_by_upsert(&product("e", [1.0, 0.0], false)).is_empty());
        // Beats the threshold: affected. Already listed: affected whatever its score.
        assert_eq!(r.affected_by_upsert(&product("f", [1.0, 0.2], true)), ["ad"]);
        assert_eq!(r.affected_by_upsert(&product("b", [0.0, 1.0], true)), ["ad"]);
        assert_eq!(r.affected_by_removal("a"), ["ad"]);
        assert!(r.affected_by_removal("c").is_empty());

        // Unchanged list: nothing published.
        assert_eq!(r.refresh(&["ad".into()]).await.expect("refresh"), 0);
        products.delete(vec!["a".into()]).await.expect("delete");
        assert_eq!(r.refresh(&["ad".into()]).await.expect("refresh"), 1);
        assert_eq!(*sink.0.lock().await, [("ad".to_string(), Some(1)), ("ad".to_string(), Some(2))]);
    }

    #[tokio::test]
    async fn versions_survive_deletion_and_reload() {
        let (mut r, products, sink) = setup().await;
        products.upsert(vec![product("a", [1.0, 0.0], true).to_point()]).await.expect("upsert");
        r.upsert_ad(ad("ad", 1, None)).await.expect("ad");
        assert!(r.delete_ad("ad").await.expect("delete"));
        assert!(!r.delete_ad("ad").await.expect("delete twice"), "second delete publishes nothing");
        r.upsert_ad(ad("ad", 1, None)).await.expect("re-create");
        assert_eq!(*sink.0.lock().await, [("ad".into(), Some(1)), ("ad".into(), None), ("ad".into(), Some(2))]);
    }
}
