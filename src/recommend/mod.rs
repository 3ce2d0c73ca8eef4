//! Standing recommendation lists: every ad's current top-K, kept exact
//! incrementally as the catalogue changes, and versioned publication of
//! changed lists (the standing-query / reverse-kNN idea, Korn &
//! Muthukrishnan, SIGMOD 2000).
//!
//! Each ad keeps a [`TopBuffer`] of its top-K' candidates (K' = factor × K).
//! A product change costs one dot product per ad and no store query: it
//! enters the buffers whose bound it beats, leaves those it no longer
//! qualifies for. Only an ad whose buffer shrinks below K (removals) asks the
//! store again. A list is published only when its ids, order or scores
//! (beyond `score_epsilon`) change; the ad's version is bumped once per
//! publication and persisted after the sink has the list, so a crash in
//! between republishes the same version, never a smaller one.

mod buffer;
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
    /// Candidate buffers of live owned ads (filled on first use after load).
    buffers: BTreeMap<String, TopBuffer>,
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
        Ok(Self {
            products,
            ads_store,
            sink,
            ads,
            config,
            model_id,
            owned: None,
            seeds: BTreeMap::new(),
            buffers: BTreeMap::new(),
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
        self.buffers.retain(|id, _| ads.get(id).is_none_or(|a| !partitions.contains(&a.partition)));
    }

    /// Whether this worker writes the lists of ads from input partition `partition`.
    pub fn owns_partition(&self, partition: i32) -> bool {
        self.owned.as_ref().is_none_or(|o| o.contains(&partition))
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

    fn capacity(&self, k: usize) -> usize {
        k * self.config.buffer_factor.max(1)
    }

    /// Query the store for an ad's top-K' (+1 for the bound).
    async fn fill(&mut self, ad: &AdRecord) -> Result<TopBuffer, StoreError> {
        let capacity = self.capacity(ad.k);
        let hits = self.products.search(ad.vector.clone(), ad.store_filter(), capacity + 1).await?;
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
        let missing: Vec<AdRecord> =
            self.live_ads().filter(|a| !self.buffers.contains_key(&a.ad_id)).cloned().collect();
        for ad in &missing {
            let buffer = self.fill(ad).await?;
            self.buffers.insert(ad.ad_id.clone(), buffer);
        }
        let ids: Vec<String> = missing.into_iter().map(|a| a.ad_id).collect();
        self.settle(&ids).await?;
        Ok(ids.len())
    }

    /// A product was stored (new, changed, restocked, out of stock): update
    /// every buffer it enters or leaves, publish lists that changed.
    pub async fn product_upserted(&mut self, product: &ProductRecord) -> Result<usize, RecommendError> {
        self.rebuild().await?;
        let mut touched = Vec::new();
        let owned: Vec<(String, bool, f32)> = self
            .live_ads()
            .map(|ad| {
                let qualifies = ad.filter.accepts(product.in_stock, &product.attributes);
                let score = if qualifies { dot(&ad.vector, &product.vector) } else { 0.0 };
                (ad.ad_id.clone(), qualifies, score)
            })
            .collect();
        for (ad_id, qualifies, score) in owned {
            let Some(buffer) = self.buffers.get_mut(&ad_id) else { continue };
            let mut changed = buffer.remove(&product.product_id);
            if qualifies {
                let item =
                    ListItem { product_id: product.product_id.clone(), score, image_url: product.image_url.clone() };
                changed |= buffer.offer(item);
            }
            if changed {
                touched.push(ad_id);
            }
        }
        self.settle(&touched).await
    }

    /// A product is gone: drop it from every buffer, publish lists that changed.
    pub async fn product_removed(&mut self, product_id: &str) -> Result<usize, RecommendError> {
        self.rebuild().await?;
        let touched: Vec<String> = self
            .buffers
            .iter_mut()
            .filter_map(|(ad_id, buffer)| buffer.remove(product_id).then(|| ad_id.clone()))
            .collect();
        self.settle(&touched).await
    }

    /// Publish the lists of `ad_ids` that changed, refilling buffers that
    /// can no longer prove their top-K. Returns how many were published.
    async fn settle(&mut self, ad_ids: &[String]) -> Result<usize, RecommendError> {
        let mut published = 0;
        for ad_id in ad_ids {
            let Some(mut ad) = self.ads.get(ad_id).filter(|a| !a.deleted && self.owns(a)).cloned() else { continue };
            let can_answer = self.buffers.get(ad_id).is_some_and(|b| b.can_answer(ad.k));
            if !can_answer {
                let buffer = self.fill(&ad).await?;
                self.buffers.insert(ad_id.clone(), buffer);
            }
            let items = self.buffers.get(ad_id).map(|b| b.top(ad.k).to_vec()).unwrap_or_default();
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
        let (version, old_items) = match (self.ads.get(&ad.ad_id), self.seeds.remove(&ad.ad_id)) {
            (Some(p), _) => (p.version, (!p.deleted).then(|| p.items.clone())),
            (None, Some(Some(list))) => (list.version, Some(list.items)),
            (None, _) => (0, None),
        };
        ad.version = version;
        ad.deleted = false;
        let buffer = self.fill(&ad).await?;
        let new_items = buffer.top(ad.k).to_vec();
        self.buffers.insert(ad.ad_id.clone(), buffer);
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
        self.buffers.remove(ad_id);
        ad.deleted = true;
        ad.items.clear();
        self.ads_store.upsert(vec![ad.to_point()]).await?;
        self.ads.insert(ad_id.to_string(), ad);
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

    #[derive(Default)]
    struct Recording(Mutex<Vec<(String, Option<u64>)>>);

    #[async_trait]
    impl ListSink for Recording {
        async fn publish(
            &self,
            ad_id: &str,
            _partition: i32,
            list: Option<&RecommendationList>,
        ) -> Result<(), SinkError> {
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
                        a.vector = vector(v);
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
