//! Standing recommendation lists: every ad's current top-K, kept exact
//! incrementally as the catalogue changes, and versioned publication of
//! changed lists (the standing-query / reverse-kNN idea, Korn &
//! Muthukrishnan, SIGMOD 2000).
//!
//! Each ad keeps a [`TopBuffer`] of its top-K' candidates (K' = factor × K).
//! A product change costs no store query: it enters the buffers whose bound
//! it beats and leaves those that hold it (found through a reverse index);
//! ads whose score provably cannot reach their bound are skipped without
//! scoring (see `index`). Only an ad whose buffer shrinks below K (removals) asks the
//! store again. A list is published only when its ids, order or scores
//! (beyond `score_epsilon`) change; the ad's version is bumped once per
//! publication and persisted after the sink has the list, so a crash in
//! between republishes the same version, never a smaller one.

mod buffer;
mod index;
mod score;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use chrono::Utc;

use crate::config::RecommendConfig;
use crate::events::{ListItem, RecommendationList};
use crate::records::{AdRecord, ProductRecord};
use crate::sink::{ListSink, SinkError};
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

pub use buffer::{TopBuffer, rank_order};
use index::AdIndex;
pub use score::dot;

/// The exact top-`k` of `catalogue` for an ad, by brute force: the oracle
/// every list is checked against in tests and benchmarks.
pub fn brute_force_top_k<'a>(
    catalogue: impl IntoIterator<Item = &'a ProductRecord>,
    ad_vector: &[f32],
    filter: &crate::events::AdFilter,
    k: usize,
) -> Vec<ListItem> {
    let mut all: Vec<ListItem> = catalogue
        .into_iter()
        .filter(|p| filter.accepts(p.in_stock, &p.attributes))
        .map(|p| ListItem {
            product_id: p.product_id.clone(),
            score: dot(ad_vector, &p.vector),
            image_url: p.image_url.clone(),
        })
        .collect();
    all.sort_by(rank_order);
    all.truncate(k);
    all
}

/// Ads missing buffers from which one catalogue scan beats a query per ad.
const SCAN_REBUILD_MIN_ADS: usize = 64;

/// Products read per page by a catalogue scan.
const SCAN_PAGE: usize = 1024;
/// Products scored together by a catalogue scan (enough to reuse each ad
/// row from cache many times, few enough that their vectors stay in cache).
const SCAN_BATCH: usize = 256;

/// Offer a product to every indexed ad it may enter and qualifies for; the
/// ads whose buffer changed.
fn enter_buffers(index: &mut AdIndex, product: &ProductRecord) -> Vec<String> {
    let shared = [buffer::Product::shared(&product.product_id, &product.image_url)];
    enter_buffers_batch(index, std::slice::from_ref(product), &shared)
}

/// [`enter_buffers`] for many products, scored in one batch (offers follow
/// in input order; a buffer's final content does not depend on it).
/// `shared[j]` is `products[j]` as buffers hold it: one allocation for every
/// buffer the product enters, in every index it is offered to.
fn enter_buffers_batch(
    index: &mut AdIndex,
    products: &[ProductRecord],
    shared: &[Arc<buffer::Product>],
) -> Vec<String> {
    let vectors: Vec<&[f32]> = products.iter().map(|p| p.vector.as_slice()).collect();
    let found = index.candidates_batch(&vectors, |j, f| f.accepts(products[j].in_stock, &products[j].attributes));
    let mut touched = Vec::new();
    for (product, candidates) in shared.iter().zip(found) {
        for (slot, score) in candidates {
            if let Some(ad_id) = index.offer(slot, score, product) {
                touched.push(ad_id.to_string());
            }
        }
    }
    touched
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
    /// Candidate buffers of live owned ads, with their vectors, for pruned scans.
    index: AdIndex,
    /// Some live owned ads may lack a buffer (after load or an assignment).
    needs_rebuild: bool,
    /// Ads whose buffer changed but whose list is not settled yet: a failed
    /// publication or store write leaves them here, and the retry of the
    /// record (which changes no buffer any more) settles them first.
    pending: BTreeSet<String>,
    /// Ads whose new state is published and in memory but not yet written
    /// to the ads store; written before any other change is applied, so a
    /// retry neither republishes nor reuses a version.
    unpersisted: BTreeSet<String>,
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
        // Paged: at 100k ads the whole collection as points is ~200 MB on
        // top of the records built from it.
        let mut ads = BTreeMap::new();
        crate::store::for_each_page(&*ads_store, crate::store::SCROLL_PAGE, true, |points| {
            for ad in points.into_iter().filter_map(AdRecord::from_point) {
                ads.insert(ad.ad_id.clone(), ad);
            }
        })
        .await?;
        Ok(Self {
            products,
            ads_store,
            sink,
            ads,
            config,
            model_id,
            owned: None,
            seeds: BTreeMap::new(),
            index: AdIndex::default(),
            needs_rebuild: true,
            pending: BTreeSet::new(),
            unpersisted: BTreeSet::new(),
            store_queries: 0,
        })
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
        self.needs_rebuild = true;
        Ok(())
    }

    /// Give up the ads of these partitions (another worker takes them over).
    pub fn revoke(&mut self, partitions: &[i32]) {
        if let Some(owned) = &mut self.owned {
            for p in partitions {
                owned.remove(p);
            }
        }
        let ads = &self.ads;
        self.index.retain(|id| ads.get(id).is_none_or(|a| !partitions.contains(&a.partition)));
    }

    /// Whether this worker writes the lists of ads from input partition `partition`.
    pub fn owns_partition(&self, partition: i32) -> bool {
        self.owned.as_ref().is_none_or(|o| o.contains(&partition))
    }

    fn owns(&self, ad: &AdRecord) -> bool {
        self.owns_partition(ad.partition)
    }

    /// The stored state of an ad (including deleted ones).
    pub fn ad(&self, ad_id: &str) -> Option<&AdRecord> {
        self.ads.get(ad_id)
    }

    /// Live (not deleted) ads this worker owns.
    pub fn live_ads(&self) -> impl Iterator<Item = &AdRecord> {
        self.ads.values().filter(|a| !a.deleted && self.owns(a))
    }

    fn capacity(&self, k: usize) -> usize {
        k * self.config.buffer_factor.max(1)
    }

    /// Query the store for an ad's top-K' (+1 for the bound).
    async fn fill(&mut self, ad: &AdRecord) -> Result<TopBuffer, StoreError> {
        let capacity = self.capacity(ad.k);
        let hits = self.products.search(ad.vector.to_vec(), ad.store_filter(), capacity + 1).await?;
        self.store_queries += 1;
        let items = hits
            .into_iter()
            .map(|h| ListItem {
                image_url: h.payload.get("image_url").and_then(|v| v.as_str()).unwrap_or_default().to_string(),
                product_id: h.id,
                score: h.score,
            })
            .collect();
        Ok(TopBuffer::from_hits(items, capacity))
    }

    /// Fill the buffers of live owned ads that have none yet (after a
    /// restart or a takeover), one store query each, and publish any list
    /// that differs from the last published one (a crash may have struck
    /// between a store write and its list). Returns how many were rebuilt.
    pub async fn rebuild(&mut self) -> Result<usize, RecommendError> {
        if !self.needs_rebuild {
            return Ok(0);
        }
        let ids: Vec<String> =
            self.live_ads().filter(|a| !self.index.contains(&a.ad_id)).map(|a| a.ad_id.clone()).collect();
        if ids.len() >= SCAN_REBUILD_MIN_ADS {
            self.rebuild_by_scan(&ids).await?;
        } else {
            let mut progress =
                (!ids.is_empty()).then(|| crate::progress::Progress::start("rebuilding ad lists", ids.len()));
            for id in &ids {
                let Some(ad) = self.ads.get(id).cloned() else { continue };
                let buffer = self.fill(&ad).await?;
                self.index.insert(&ad.ad_id, &ad.vector, &ad.filter, buffer);
                if let Some(p) = progress.as_mut() {
                    p.advance(1);
                }
            }
        }
        self.settle(&ids).await?;
        self.needs_rebuild = false;
        Ok(ids.len())
    }

    /// Build many buffers at once: one paged pass over the catalogue, each
    /// product offered only to the ads its bound does not rule out (one
    /// store query per ad would cost ads × catalogue). The ads are split into
    /// one index per core and each page is offered to all of them in parallel.
    async fn rebuild_by_scan(&mut self, ids: &[String]) -> Result<(), StoreError> {
        use rayon::prelude::*;
        // Borrowed, not cloned: at 100k ads a copy of the records is hundreds of MB.
        let missing: Vec<&AdRecord> = ids.iter().filter_map(|id| self.ads.get(id)).collect();
        let parts_n = rayon::current_num_threads().clamp(1, missing.len().max(1));
        let chunk = missing.len().div_ceil(parts_n).max(1);
        let mut parts: Vec<AdIndex> = missing
            .chunks(chunk)
            .map(|ads| {
                let mut part = AdIndex::default();
                part.extend(ads.iter().map(|ad| {
                    let empty = TopBuffer::from_hits(Vec::new(), self.capacity(ad.k));
                    (ad.ad_id.as_str(), &ad.vector, &ad.filter, empty)
                }));
                part
            })
            .collect();
        let total = self.products.count().await?;
        let started = std::time::Instant::now();
        let mut progress = crate::progress::Progress::start("rebuilding ad lists (catalogue scan)", total);
        crate::store::for_each_page(&*self.products, SCAN_PAGE, true, |points| {
            let products: Vec<ProductRecord> = points.into_iter().filter_map(ProductRecord::from_point).collect();
            // Made once per page, not once per part: a product kept by ads
            // in several parts is still one allocation.
            let shared: Vec<_> =
                products.iter().map(|p| buffer::Product::shared(&p.product_id, &p.image_url)).collect();
            parts.par_iter_mut().for_each(|part| {
                for (batch, shared) in products.chunks(SCAN_BATCH).zip(shared.chunks(SCAN_BATCH)) {
                    enter_buffers_batch(part, batch, shared);
                }
            });
            progress.advance(products.len());
        })
        .await?;
        drop(progress);
        tracing::info!(
            products = total,
            ads = missing.len(),
            seconds = started.elapsed().as_secs_f64(),
            "rebuilt candidate buffers by one catalogue scan"
        );
        self.store_queries += 1; // the scan counts as one query, however many pages
        let mut buffers: Vec<(&AdRecord, TopBuffer)> = Vec::with_capacity(missing.len());
        for (ads, part) in missing.chunks(chunk).zip(parts.iter_mut()) {
            for ad in ads {
                if let Some(buffer) = part.remove(&ad.ad_id) {
                    buffers.push((ad, buffer));
                }
            }
        }
        drop(parts);
        self.index.extend(buffers.into_iter().map(|(ad, b)| (ad.ad_id.as_str(), &ad.vector, &ad.filter, b)));
        Ok(())
    }

    /// A product was stored (new, changed, restocked, out of stock): update
    /// every buffer it enters or leaves, publish lists that changed.
    pub async fn product_upserted(&mut self, product: &ProductRecord) -> Result<usize, RecommendError> {
        self.rebuild().await?;
        let id = &product.product_id;
        // Leave the buffers that hold the old version, then enter those the
        // new one qualifies for; ads the bound rules out are never scored.
        let mut touched = self.index.leave(id);
        touched.extend(enter_buffers(&mut self.index, product));
        touched.sort_unstable();
        touched.dedup();
        self.settle(&touched).await
    }

    /// A product is gone: drop it from every buffer, publish lists that changed.
    pub async fn product_removed(&mut self, product_id: &str) -> Result<usize, RecommendError> {
        self.rebuild().await?;
        let mut touched = self.index.leave(product_id);
        touched.sort_unstable();
        touched.dedup();
        self.settle(&touched).await
    }

    /// Publish the lists of `ad_ids` (and of ads left pending by a failed
    /// earlier attempt) that changed, refilling buffers that can no longer
    /// prove their top-K. Returns how many were published.
    async fn settle(&mut self, ad_ids: &[String]) -> Result<usize, RecommendError> {
        self.pending.extend(ad_ids.iter().cloned());
        self.persist_published().await?;
        let mut published = 0;
        for ad_id in self.pending.clone() {
            if self.settle_one(&ad_id).await? {
                published += 1;
            }
            self.pending.remove(&ad_id);
        }
        Ok(published)
    }

    /// Publish one ad's list if it changed; returns whether it did.
    async fn settle_one(&mut self, ad_id: &str) -> Result<bool, RecommendError> {
        let Some(mut ad) = self.ads.get(ad_id).filter(|a| !a.deleted && self.owns(a)).cloned() else {
            return Ok(false);
        };
        let can_answer = self.index.buffer(ad_id).is_some_and(|b| b.can_answer(ad.k));
        if !can_answer {
            let buffer = self.fill(&ad).await?;
            self.index.insert(ad_id, &ad.vector, &ad.filter, buffer);
        }
        let items = self.index.buffer(ad_id).map(|b| b.top(ad.k)).unwrap_or_default();
        if !self.changed(&ad.items, &items) {
            return Ok(false);
        }
        ad.version += 1;
        let list = self.list_message(&ad, &items);
        self.sink.publish(&ad.ad_id, ad.partition, Some(&list)).await?;
        ad.items = items;
        self.remember_published(ad).await?;
        Ok(true)
    }

    /// Keep an ad's just-published state in memory, then write it to the
    /// ads store (retried by [`Recommender::persist_published`] if that fails).
    async fn remember_published(&mut self, ad: AdRecord) -> Result<(), StoreError> {
        self.unpersisted.insert(ad.ad_id.clone());
        self.ads.insert(ad.ad_id.clone(), ad);
        self.persist_published().await
    }

    /// Write the ads whose published state is not yet in the ads store.
    async fn persist_published(&mut self) -> Result<(), StoreError> {
        if self.unpersisted.is_empty() {
            return Ok(());
        }
        let points = self.unpersisted.iter().filter_map(|id| self.ads.get(id)).map(AdRecord::to_point).collect();
        self.ads_store.upsert(points).await?;
        self.unpersisted.clear();
        Ok(())
    }

    fn changed(&self, old: &[ListItem], new: &[ListItem]) -> bool {
        old.len() != new.len()
            || old
                .iter()
                .zip(new)
                .any(|(a, b)| a.product_id != b.product_id || (a.score - b.score).abs() > self.config.score_epsilon)
    }

    /// Store an ad's new state (new or changed creative/filter/k) and publish
    /// its list if it changed. Returns whether a list was published.
    pub async fn upsert_ad(&mut self, mut ad: AdRecord) -> Result<bool, RecommendError> {
        self.persist_published().await?;
        let (version, old_items) = match (self.ads.get(&ad.ad_id), self.seeds.remove(&ad.ad_id)) {
            (Some(p), _) => (p.version, (!p.deleted).then(|| p.items.clone())),
            (None, Some(Some(list))) => (list.version, Some(list.items)),
            (None, _) => (0, None),
        };
        ad.version = version;
        ad.deleted = false;
        let buffer = self.fill(&ad).await?;
        let new_items = buffer.top(ad.k);
        self.index.insert(&ad.ad_id, &ad.vector, &ad.filter, buffer);
        let publish = old_items.as_deref().is_none_or(|old| self.changed(old, &new_items));
        if publish {
            ad.version += 1;
            let list = self.list_message(&ad, &new_items);
            self.sink.publish(&ad.ad_id, ad.partition, Some(&list)).await?;
            ad.items = new_items;
        } else if let Some(old) = old_items {
            ad.items = old;
        }
        self.remember_published(ad).await?;
        Ok(publish)
    }

    /// Delete an ad: publish a tombstone, keep its version. Returns whether
    /// a tombstone was published (false if the ad was unknown or already gone).
    pub async fn delete_ad(&mut self, ad_id: &str) -> Result<bool, RecommendError> {
        self.persist_published().await?;
        let Some(mut ad) = self.ads.get(ad_id).filter(|a| !a.deleted && self.owns(a)).cloned() else {
            return Ok(false);
        };
        self.sink.publish(ad_id, ad.partition, None).await?;
        self.index.remove(ad_id);
        ad.deleted = true;
        ad.items.clear();
        self.remember_published(ad).await?;
        Ok(true)
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

    /// Records publications; the next `.1` of them fail instead.
    #[derive(Default)]
    struct Recording(Mutex<Vec<(String, Option<u64>)>>, std::sync::atomic::AtomicUsize);

    #[async_trait]
    impl ListSink for Recording {
        async fn publish(
            &self,
            ad_id: &str,
            _partition: i32,
            list: Option<&RecommendationList>,
        ) -> Result<(), SinkError> {
            use std::sync::atomic::Ordering;
            if self.1.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).is_ok() {
                return Err(SinkError::Unavailable("injected".into()));
            }
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
        AdRecord::unpublished(
            id.into(),
            vec![1.0, 0.0].into(),
            "http://x/ad.jpg".into(),
            k,
            AdFilter { in_stock, ..Default::default() },
            "m".into(),
        )
    }

    async fn setup() -> (Recommender, Arc<MemoryStore>, Arc<Recording>) {
        let products = Arc::new(MemoryStore::default());
        let sink = Arc::new(Recording::default());
        let r = Recommender::load(
            products.clone(),
            Arc::new(MemoryStore::default()),
            sink.clone(),
            RecommendConfig::default(),
            "m".into(),
        )
        .await
        .expect("load");
        (r, products, sink)
    }

    #[tokio::test]
    async fn the_store_is_queried_only_when_a_buffer_runs_dry() {
        let (mut r, products, sink) = setup().await;
        for p in [product("a", [1.0, 0.1], true), product("b", [1.0, 0.5], true), product("c", [1.0, 0.9], true)] {
            products.upsert(vec![p.to_point()]).await.expect("upsert");
        }
        // k = 1, buffer of 2: holds a, b; c is the bound.
        assert!(r.upsert_ad(ad("ad", 1, Some(true))).await.expect("ad"));
        assert_eq!(r.store_queries, 1);
        let top =
            |r: &Recommender| r.ad("ad").expect("ad").items.iter().map(|i| i.product_id.clone()).collect::<Vec<_>>();
        assert_eq!(top(&r), ["a"]);

        // Below the bound, or out of stock under an in-stock filter: nothing happens.
        for p in [product("d", [0.1, 1.0], true), product("e", [1.0, 0.0], false)] {
            products.upsert(vec![p.to_point()]).await.expect("upsert");
            assert_eq!(r.product_upserted(&p).await.expect("upsert"), 0);
        }
        // Beats the best: new list, no query.
        let f = product("f", [1.0, 0.0], true);
        products.upsert(vec![f.to_point()]).await.expect("upsert");
        assert_eq!(r.product_upserted(&f).await.expect("upsert"), 1);
        assert_eq!(top(&r), ["f"]);
        // Removals served from the buffer (f, a left) until it runs dry.
        products.delete(vec!["f".into()]).await.expect("delete");
        assert_eq!(r.product_removed("f").await.expect("remove"), 1);
        assert_eq!(top(&r), ["a"]);
        assert_eq!(r.store_queries, 1, "still answered from the buffer");
        products.delete(vec!["a".into()]).await.expect("delete");
        assert_eq!(r.product_removed("a").await.expect("remove"), 1);
        assert_eq!(top(&r), ["b"]);
        assert_eq!(r.store_queries, 2, "buffer ran dry: one refill");
        let versions: Vec<_> = sink.0.lock().await.iter().map(|(_, v)| *v).collect();
        assert_eq!(versions, [Some(1), Some(2), Some(3), Some(4)]);
    }

    #[tokio::test]
    async fn a_failed_store_write_or_publication_is_settled_by_the_retry() {
        use crate::store::faults::{FaultMode, FaultSchedule, FaultyStore};
        let products = Arc::new(MemoryStore::default());
        let ads_inner = Arc::new(MemoryStore::default());
        let schedule = FaultSchedule::new(Vec::new());
        let ads_store = Arc::new(FaultyStore::new(ads_inner.clone(), schedule.clone()));
        let sink = Arc::new(Recording::default());
        let mut r =
            Recommender::load(products.clone(), ads_store, sink.clone(), RecommendConfig::default(), "m".into())
                .await
                .expect("load");
        for p in [product("a", [1.0, 0.2], true), product("b", [1.0, 0.9], true)] {
            products.upsert(vec![p.to_point()]).await.expect("upsert");
        }
        r.upsert_ad(ad("ad", 1, None)).await.expect("ad");
        let stored_version = || async {
            let points = ads_inner.retrieve(vec!["ad".into()], true).await.expect("retrieve");
            points.into_iter().next().and_then(AdRecord::from_point).map(|a| a.version)
        };

        // The list is published, then the ads store fails: the retry must
        // neither publish again nor reuse the version, and must persist it.
        let f = product("f", [1.0, 0.0], true);
        products.upsert(vec![f.to_point()]).await.expect("upsert");
        schedule.fail_next(1, FaultMode::Before);
        assert!(r.product_upserted(&f).await.is_err());
        assert_eq!(r.product_upserted(&f).await.expect("retry"), 0, "already published");
        assert_eq!(stored_version().await, Some(2));

        // The publication itself fails: the retry (which changes no buffer) publishes.
        products.delete(vec!["f".into()]).await.expect("delete");
        sink.1.store(1, std::sync::atomic::Ordering::SeqCst);
        assert!(r.product_removed("f").await.is_err());
        // (Published by the pending settle at the start of the call, so not in its count.)
        r.product_removed("f").await.expect("retry");
        assert_eq!(stored_version().await, Some(3));

        // Deletion: tombstone published, store write fails, retry publishes nothing more.
        schedule.fail_next(1, FaultMode::After);
        assert!(r.delete_ad("ad").await.is_err());
        assert!(!r.delete_ad("ad").await.expect("retry"));
        let versions: Vec<_> = sink.0.lock().await.iter().map(|(_, v)| *v).collect();
        assert_eq!(versions, [Some(1), Some(2), Some(3), None], "every change published once, versions increase");
        let points = ads_inner.retrieve(vec!["ad".into()], true).await.expect("retrieve");
        assert!(points.into_iter().next().and_then(AdRecord::from_point).is_some_and(|a| a.deleted));
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

    mod exactness {
        //! Random catalogue changes; after every step every ad's list must
        //! equal the brute-force top-k over the current catalogue.
        use super::*;
        use crate::events::AttrValue;
        use proptest::prelude::*;

        #[derive(Debug, Clone)]
        enum Op {
            Product { id: u8, v: [i8; 3], in_stock: bool, category: u8 },
            DeleteProduct(u8),
            Ad { id: u8, v: [i8; 3], k: usize, in_stock: Option<bool>, category: Option<u8> },
            DeleteAd(u8),
        }

        fn op() -> impl Strategy<Value = Op> {
            let v = prop::array::uniform3(-3i8..=3);
            prop_oneof![
                6 => (0u8..12, v.clone(), any::<bool>(), 0u8..3)
                    .prop_map(|(id, v, in_stock, category)| Op::Product { id, v, in_stock, category }),
                2 => (0u8..12).prop_map(Op::DeleteProduct),
                2 => (0u8..4, v, 1usize..4, prop::option::of(any::<bool>()), prop::option::of(0u8..3))
                    .prop_map(|(id, v, k, in_stock, category)| Op::Ad { id, v, k, in_stock, category }),
                1 => (0u8..4).prop_map(Op::DeleteAd),
            ]
        }

        fn vector(v: [i8; 3]) -> Vec<f32> {
            v.iter().map(|x| *x as f32).collect()
        }

        async fn run(ops: Vec<Op>, factor: usize) {
            let products = Arc::new(MemoryStore::default());
            let sink = Arc::new(Recording::default());
            let config = RecommendConfig { buffer_factor: factor, ..Default::default() };
            let mut r = Recommender::load(products.clone(), Arc::new(MemoryStore::default()), sink, config, "m".into())
                .await
                .expect("load");
            let mut catalogue: BTreeMap<String, ProductRecord> = BTreeMap::new();
            for (step, op) in ops.into_iter().enumerate() {
                match op {
                    Op::Product { id, v, in_stock, category } => {
                        let mut p = product(&format!("p{id}"), [1.0, 0.0], in_stock);
                        p.vector = vector(v);
                        p.attributes.insert("category".into(), format!("c{category}").into());
                        products.upsert(vec![p.to_point()]).await.expect("upsert");
                        r.product_upserted(&p).await.expect("product");
                        catalogue.insert(p.product_id.clone(), p);
                    }
                    Op::DeleteProduct(id) => {
                        let id = format!("p{id}");
                        products.delete(vec![id.clone()]).await.expect("delete");
                        r.product_removed(&id).await.expect("removed");
                        catalogue.remove(&id);
                    }
                    Op::Ad { id, v, k, in_stock, category } => {
                        let mut a = ad(&format!("a{id}"), k, in_stock);
                        a.vector = vector(v).into();
                        if let Some(c) = category {
                            a.filter.attributes.insert("category".into(), vec![AttrValue::Str(format!("c{c}"))]);
                        }
                        r.upsert_ad(a).await.expect("ad");
                    }
                    Op::DeleteAd(id) => {
                        r.delete_ad(&format!("a{id}")).await.expect("delete ad");
                    }
                }
                for ad in r.live_ads() {
                    let expected = brute_force_top_k(catalogue.values(), &ad.vector, &ad.filter, ad.k);
                    assert_eq!(
                        ad.items, expected,
                        "step {step}: ad {} list is not the brute-force top-{}",
                        ad.ad_id, ad.k
                    );
                }
            }
        }

        proptest! {
            #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]
            #[test]
            fn lists_stay_exact(ops in prop::collection::vec(op(), 1..60), factor in 1usize..4) {
                let rt = tokio::runtime::Builder::new_current_thread().build().expect("runtime");
                rt.block_on(run(ops, factor));
            }
        }
    }
}
