//! `adrec refit`: fit a transform on the stored catalogue, move products and
//! ads into the new space (re-projected from their raw vectors), switch the
//! space pointer, and republish every live list through the Recommender.
//!
//! Order matters for crashes: the new space is written completely before the
//! pointer switches, so a crash before the switch leaves the old space in use
//! (the half-written directory is rebuilt next time); after the switch,
//! running `refit` again finds the space already fitted and only republishes
//! the lists still out of date. Run it while the worker is stopped (the
//! store directories are locked by whoever has them open).

use std::collections::HashMap;
use std::sync::Arc;

use super::space::{self, Space, SpaceStores, open_space, raw_point};
use super::transform::{FitParams, Transform};
use super::{AdaptError, RawSpec};
use crate::config::Config;
use crate::recommend::Recommender;
use crate::records::{AdRecord, ProductRecord};
use crate::sink::ListSink;
use crate::store::{Point, VectorStore};

/// Points written per store upsert.
const CHUNK: usize = 256;

/// What a refit did.
#[derive(Debug, Clone, PartialEq)]
pub struct RefitReport {
    /// Space before.
    pub from: String,
    /// Space after.
    pub to: String,
    /// Products moved.
    pub products: usize,
    /// Ads moved (live and deleted).
    pub ads: usize,
    /// Live ads whose lists were re-ranked in the space (each republished if it changed).
    pub lists: usize,
    /// Whether the space changed (false: already current, only republished what was stale).
    pub switched: bool,
}

/// Fit on the current catalogue and move everything into the fitted space
/// (or back to the identity below `adapt.min_catalogue` products).
pub async fn refit(config: &Config, sink: Arc<dyn ListSink>) -> Result<RefitReport, AdaptError> {
    let raw = space::raw_spec(config)?;
    let current = space::current_space(config, &raw)?;
    let stores = open_space(config, &current)?;
    let products: Vec<ProductRecord> =
        stores.products.scroll_all(true).await?.into_iter().filter_map(ProductRecord::from_point).collect();
    let ads: Vec<AdRecord> = stores.ads.scroll_all(true).await?.into_iter().filter_map(AdRecord::from_point).collect();
    let raw_products = raw_vectors(
        &stores,
        stores.raw_products.as_ref(),
        products.iter().map(|p| (&p.product_id, p.vector.as_slice())),
    )
    .await?;
    let raw_ads = raw_vectors(&stores, stores.raw_ads.as_ref(), ads.iter().map(|a| (&a.ad_id, &a.vector[..]))).await?;

    let target = target_space(config, &raw, &products, &raw_products)?;
    let from = current.id().to_string();
    if target.id() == current.id() {
        // Already there (perhaps a refit crashed after the switch): publish what is stale.
        let lists = republish(config, stores, sink).await?;
        return Ok(RefitReport {
            to: from.clone(),
            from,
            products: products.len(),
            ads: ads.len(),
            lists,
            switched: false,
        });
    }
    if let Some(t) = target.transform() {
        space::save_transform(config, &raw.model_id, t)?;
    }
    let target_dir = space::space_dir(config, &target);
    let old_dir = space::space_dir(config, &current);
    // Leftovers of an interrupted refit (or an old identity copy) are rebuilt from scratch.
    remove_stores(&target_dir)?;
    let new = open_space(config, &target)?;
    copy_products(&new, &products, &raw_products).await?;
    copy_ads(&new, &ads, &raw_ads).await?;
    space::set_current(config, &target)?;
    drop(stores);
    // The old space is unreachable now (its transform artefact stays for the record).
    remove_stores(&old_dir)?;
    if current.transform().is_some() {
        std::fs::remove_dir_all(&old_dir).map_err(|e| AdaptError::Io(format!("{}: {e}", old_dir.display())))?;
    }
    let (n_products, n_ads) = (products.len(), ads.len());
    let lists = republish(config, new, sink).await?;
    Ok(RefitReport { from, to: target.id().to_string(), products: n_products, ads: n_ads, lists, switched: true })
}

/// The space a refit moves to: identity below the minimum, else a fresh fit.
fn target_space(
    config: &Config,
    raw: &RawSpec,
    products: &[ProductRecord],
    raw_vectors: &HashMap<String, Vec<f32>>,
) -> Result<Space, AdaptError> {
    let a = &config.adapt;
    if products.len() < a.min_catalogue.max(2) {
        return Ok(Space::identity(raw.clone()));
    }
    // Sorted by id so the same catalogue always gives the same transform id.
    let mut ids: Vec<&String> = raw_vectors.keys().collect();
    ids.sort();
    let sample: Vec<Vec<f32>> = ids.into_iter().filter_map(|id| raw_vectors.get(id).cloned()).collect();
    let params =
        FitParams { head_dim: raw.head_dim, tail_weight: raw.tail_weight, dims: a.dims, shrinkage: a.shrinkage };
    Ok(Space::fitted(raw.clone(), Transform::fit(&sample, params)?))
}

/// Raw vectors by id: the stored vectors themselves in the identity, the raw
/// store otherwise (every entity must have one).
async fn raw_vectors<'a>(
    stores: &SpaceStores,
    raw_store: Option<&Arc<dyn VectorStore>>,
    entities: impl Iterator<Item = (&'a String, &'a [f32])>,
) -> Result<HashMap<String, Vec<f32>>, AdaptError> {
    let Some(raw_store) = raw_store.filter(|_| stores.space.transform().is_some()) else {
        return Ok(entities.map(|(id, v)| (id.clone(), v.to_vec())).collect());
    };
    let mut all: HashMap<String, Vec<f32>> =
        raw_store.scroll_all(true).await?.into_iter().map(|p| (p.id, p.vector)).collect();
    let wanted: std::collections::HashSet<&String> = entities.map(|(id, _)| id).collect();
    all.retain(|id, _| wanted.contains(id));
    Ok(all)
}

async fn copy_products(
    new: &SpaceStores,
    products: &[ProductRecord],
    raw: &HashMap<String, Vec<f32>>,
) -> Result<(), AdaptError> {
    for chunk in products.chunks(CHUNK) {
        let mut points = Vec::with_capacity(chunk.len());
        let mut raw_points = Vec::with_capacity(chunk.len());
        for p in chunk {
            let r = raw
                .get(&p.product_id)
                .ok_or_else(|| AdaptError::Catalogue(format!("product {} has no raw vector", p.product_id)))?;
            let mut moved = p.clone();
            moved.vector = new.space.project(r.clone())?;
            moved.model = new.space.id().to_string();
            points.push(moved.to_point());
            raw_points.push(raw_point(&p.product_id, r.clone()));
        }
        upsert_raw(new.raw_products.as_ref(), raw_points).await?;
        new.products.upsert(points).await?;
    }
    Ok(())
}

async fn copy_ads(new: &SpaceStores, ads: &[AdRecord], raw: &HashMap<String, Vec<f32>>) -> Result<(), AdaptError> {
    for chunk in ads.chunks(CHUNK) {
        let mut points = Vec::with_capacity(chunk.len());
        let mut raw_points = Vec::new();
        for a in chunk {
            let mut moved = a.clone();
            match raw.get(&a.ad_id) {
                Some(r) => {
                    moved.vector = new.space.project(r.clone())?.into();
                    moved.model = new.space.id().to_string();
                    raw_points.push(raw_point(&a.ad_id, r.clone()));
                }
                // A deleted ad may have no raw vector: keep its version, force a re-embed on re-creation.
                None if a.deleted => {
                    moved.vector = vec![0.0; new.space.dim()].into();
                    moved.model = String::new();
                }
                None => return Err(AdaptError::Catalogue(format!("ad {} has no raw vector", a.ad_id))),
            }
            // Every live list is re-ranked in the new space and republished with its new space id.
            moved.items.clear();
            points.push(moved.to_point());
        }
        upsert_raw(new.raw_ads.as_ref(), raw_points).await?;
        new.ads.upsert(points).await?;
    }
    Ok(())
}

async fn upsert_raw(store: Option<&Arc<dyn VectorStore>>, points: Vec<Point>) -> Result<(), AdaptError> {
    if let Some(store) = store
        && !points.is_empty()
    {
        store.upsert(points).await?;
    }
    Ok(())
}

/// Load the space's Recommender (owning every ad) and publish each list that
/// differs from the last published one.
async fn republish(config: &Config, stores: SpaceStores, sink: Arc<dyn ListSink>) -> Result<usize, AdaptError> {
    let mut recommender = Recommender::load(
        stores.products.clone(),
        stores.ads.clone(),
        sink,
        config.recommend.clone(),
        stores.space.id().to_string(),
    )
    .await?;
    recommender.rebuild().await.map_err(|e| AdaptError::Recommend(e.to_string()))
}

fn remove_stores(dir: &std::path::Path) -> Result<(), AdaptError> {
    for name in ["products", "ads", "raw_products", "raw_ads"] {
        let path = dir.join(name);
        if path.exists() {
            std::fs::remove_dir_all(&path).map_err(|e| AdaptError::Io(format!("{}: {e}", path.display())))?;
        }
    }
    Ok(())
}
