//! `adrec bench maintain`: the incremental list engine against the naive
//! strategy (re-run every ad's top-K query after each product event), on
//! seeded clustered synthetic vectors, measured in one run. Prints one
//! `key=value` per line.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use async_trait::async_trait;
use chrono::Utc;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::config::RecommendConfig;
use crate::events::{AdFilter, RecommendationList};
use crate::recommend::{Recommender, brute_force_top_k};
use crate::records::{AdRecord, ProductRecord};
use crate::sink::{DeadLetter, ListSink, SinkError};
use crate::store::memory::MemoryStore;
use crate::store::{StoreError, VectorStore};

/// Scale and shape of a maintenance benchmark.
#[derive(Debug, Clone)]
pub struct MaintainParams {
    /// Ads with standing lists.
    pub ads: usize,
    /// Products in the catalogue.
    pub products: usize,
    /// Vector dimension.
    pub dim: usize,
    /// List length.
    pub k: usize,
    /// Product events measured.
    pub events: usize,
    /// Product events the naive strategy is timed on (it is slow).
    pub naive_sample: usize,
    /// Ads whose final lists are checked against brute force.
    pub check_ads: usize,
    /// Random seed.
    pub seed: u64,
}

/// A sink that only counts publications (benchmarks and long-run tests).
#[derive(Default)]
pub struct CountingSink(pub AtomicU64);

#[async_trait]
impl ListSink for CountingSink {
    async fn publish(&self, _: &str, _: i32, _: Option<&RecommendationList>) -> Result<(), SinkError> {
        self.0.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
    async fn dead_letter(&self, _: &DeadLetter) -> Result<(), SinkError> {
        Ok(())
    }
}

fn clustered(rng: &mut StdRng, centres: &[Vec<f32>]) -> Vec<f32> {
    let centre = &centres[rng.random_range(0..centres.len())];
    let mut v: Vec<f32> = centre.iter().map(|c| c + rng.random_range(-0.35f32..0.35)).collect();
    let n = v.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-6);
    v.iter_mut().for_each(|x| *x /= n);
    v
}

fn product(id: usize, vector: Vec<f32>, in_stock: bool) -> ProductRecord {
    ProductRecord {
        product_id: format!("p{id}"),
        vector,
        image_url: format!("http://bench/p{id}.jpg"),
        title: None,
        in_stock,
        attributes: serde_json::Map::new(),
        model: "bench".into(),
        updated_at: Utc::now(),
    }
}

fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

fn rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("VmRSS:")).map(str::to_string))
        .and_then(|l| l.split_whitespace().nth(1).and_then(|kb| kb.parse::<f64>().ok()))
        .map_or(0.0, |kb| kb / 1024.0)
}

/// Run the benchmark and return its `key=value` lines.
pub async fn maintain(p: &MaintainParams) -> Result<Vec<String>, StoreError> {
    let mut out = Vec::new();
    let mut rng = StdRng::seed_from_u64(p.seed);
    let centres: Vec<Vec<f32>> =
        (0..64).map(|_| (0..p.dim).map(|_| rng.random_range(-1.0f32..1.0)).collect()).collect();
    let rss_start = rss_mb();

    let store = Arc::new(MemoryStore::default());
    let mut catalogue: BTreeMap<String, ProductRecord> = BTreeMap::new();
    let load = Instant::now();
    let mut batch = Vec::new();
    for i in 0..p.products {
        let rec = product(i, clustered(&mut rng, &centres), rng.random_range(0..10) > 0);
        batch.push(rec.to_point());
        catalogue.insert(rec.product_id.clone(), rec);
        if batch.len() == 10_000 {
            store.upsert(std::mem::take(&mut batch)).await?;
        }
    }
    store.upsert(batch).await?;
    out.push(format!(
        "maintain.ads={} maintain.products={} maintain.k={} maintain.dim={}",
        p.ads, p.products, p.k, p.dim
    ));
    out.push(format!("maintain.load_s={:.2}", load.elapsed().as_secs_f64()));

    let sink = Arc::new(CountingSink::default());
    let config = RecommendConfig { default_k: p.k, ..Default::default() };
    let mut r =
        Recommender::load(store.clone(), Arc::new(MemoryStore::default()), sink.clone(), config, "bench".into())
            .await?;
    let mut ads = Vec::new();
    let build = Instant::now();
    for a in 0..p.ads {
        let ad = AdRecord {
            ad_id: format!("a{a}"),
            vector: clustered(&mut rng, &centres),
            image_url: String::new(),
            k: p.k,
            filter: AdFilter { in_stock: Some(true), ..Default::default() },
            updated_at: Utc::now(),
            version: 0,
            items: Vec::new(),
            deleted: false,
            model: "bench".into(),
            partition: 0,
        };
        ads.push(ad.clone());
        r.upsert_ad(ad).await.map_err(|e| StoreError::Unavailable(e.to_string()))?;
    }
    out.push(format!("maintain.build_s={:.2}", build.elapsed().as_secs_f64()));
    let rss_built = rss_mb();

    // Product events: 60% changed or new images, 20% stock flips, 20% deletions.
    let queries_before = r.store_queries;
    let published_before = sink.0.load(Ordering::Relaxed);
    let mut latencies = Vec::with_capacity(p.events);
    let mut next_id = p.products;
    let mut events = Vec::with_capacity(p.events);
    for _ in 0..p.events {
        let roll = rng.random_range(0..10);
        let existing_id = rng.random_range(0..next_id);
        let existing = format!("p{existing_id}");
        if roll < 6 {
            let id = if rng.random_bool(0.5) {
                next_id += 1;
                next_id - 1
            } else {
                existing_id
            };
            events.push((format!("p{id}"), Some(product(id, clustered(&mut rng, &centres), true))));
        } else if roll < 8 {
            if let Some(old) = catalogue.get(&existing) {
                events.push((existing, Some(ProductRecord { in_stock: !old.in_stock, ..old.clone() })));
            }
        } else {
            events.push((existing, None));
        }
    }
    let mut naive_ms = Vec::new();
    for (i, (id, rec)) in events.iter().enumerate() {
        let started = Instant::now();
        match rec {
            Some(rec) => {
                store.upsert(vec![rec.to_point()]).await?;
                r.product_upserted(rec).await.map_err(|e| StoreError::Unavailable(e.to_string()))?;
                catalogue.insert(id.clone(), rec.clone());
            }
            None => {
                store.delete(vec![id.clone()]).await?;
                r.product_removed(id).await.map_err(|e| StoreError::Unavailable(e.to_string()))?;
                catalogue.remove(id);
            }
        }
        latencies.push(started.elapsed().as_secs_f64() * 1000.0);
        if i < p.naive_sample {
            // The naive strategy: every ad's filtered top-K query, after this event.
            let naive = Instant::now();
            for ad in &ads {
                store.search(ad.vector.clone(), ad.store_filter(), p.k).await?;
            }
            naive_ms.push(naive.elapsed().as_secs_f64() * 1000.0);
        }
    }
    latencies.sort_by(f64::total_cmp);
    let n = events.len().max(1) as f64;
    let queries = (r.store_queries - queries_before) as f64 / n;
    let naive_queries = p.ads as f64;
    let changed = (sink.0.load(Ordering::Relaxed) - published_before) as f64 / n;
    out.push(format!("maintain.events={}", events.len()));
    out.push(format!("maintain.event_p50_ms={:.3}", percentile(&latencies, 0.5)));
    out.push(format!("maintain.event_p99_ms={:.3}", percentile(&latencies, 0.99)));
    out.push(format!("maintain.store_queries_total={}", r.store_queries - queries_before));
    out.push(format!("maintain.store_queries_per_event={queries:.4}"));
    out.push(format!("naive.store_queries_per_event={naive_queries:.0}"));
    // With zero refills in the run, the ratio is a lower bound (as if one query had happened).
    out.push(format!("ratio.naive_over_incremental_queries={:.1}", naive_queries / queries.max(1.0 / n)));
    if !naive_ms.is_empty() {
        let mean = naive_ms.iter().sum::<f64>() / naive_ms.len() as f64;
        out.push(format!("naive.event_mean_ms={mean:.1} naive.sampled_events={}", naive_ms.len()));
        let incremental_mean = latencies.iter().sum::<f64>() / latencies.len().max(1) as f64;
        out.push(format!("ratio.naive_over_incremental_time={:.1}", mean / incremental_mean.max(1e-9)));
    }
    out.push(format!("maintain.lists_changed_per_event={changed:.3}"));
    let raw_mb = ((p.products + p.ads) * p.dim * 4) as f64 / 1e6;
    out.push(format!("maintain.rss_mb={:.0} maintain.rss_start_mb={rss_start:.0} maintain.rss_built_mb={rss_built:.0} maintain.raw_vectors_mb={raw_mb:.0}", rss_mb()));

    let mut mismatches = 0;
    for ad in r.live_ads().take(p.check_ads) {
        let expected = brute_force_top_k(catalogue.values(), &ad.vector, &ad.filter, ad.k);
        let ids = |l: &[crate::events::ListItem]| l.iter().map(|i| i.product_id.clone()).collect::<Vec<_>>();
        if ids(&ad.items) != ids(&expected) {
            mismatches += 1;
        }
    }
    out.push(format!("maintain.checked_ads={}", p.check_ads.min(p.ads)));
    out.push(format!("maintain.exact_mismatches={mismatches}"));
    Ok(out)
}
