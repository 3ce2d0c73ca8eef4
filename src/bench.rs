//! `adrec bench maintain`: the incremental list engine against the naive
//! strategy (re-run every ad's top-K query after each product event), on
//! seeded clustered synthetic vectors, measured in one run. Prints one
//! `key=value` per line.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use async_trait::async_trait;
use chrono::Utc;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::config::RecommendConfig;
use crate::events::{AdFilter, RecommendationList};
use crate::recommend::Recommender;
use crate::records::{AdRecord, ProductRecord};
use crate::sink::{DeadLetter, ListSink, SinkError};
use crate::store::edge::EdgeStore;
use crate::store::memory::MemoryStore;
use crate::store::{StoreError, VectorStore};

/// Scale and shape of a maintenance benchmark (also its command-line flags).
#[derive(Debug, Clone, clap::Args)]
pub struct MaintainParams {
    /// Ads with standing lists.
    #[arg(long, default_value_t = 100_000)]
    pub ads: usize,
    /// Products in the catalogue.
    #[arg(long, default_value_t = 1_000_000)]
    pub products: usize,
    /// Vector dimension.
    #[arg(long, default_value_t = 512)]
    pub dim: usize,
    /// List length.
    #[arg(long, default_value_t = 10)]
    pub k: usize,
    /// Product events to measure.
    #[arg(long, default_value_t = 2_000)]
    pub events: usize,
    /// Events after which the (slow) naive strategy is also timed.
    #[arg(long, default_value_t = 3)]
    pub naive_sample: usize,
    /// Ad queries timed per naive event; its cost is extrapolated to all ads.
    #[arg(long, default_value_t = 20)]
    pub naive_ads: usize,
    /// Store holding the catalogue and the ads: `memory` (brute-force maps,
    /// the test double) or `edge` (the embedded default, on disk in a
    /// temporary directory).
    #[arg(long, value_enum, default_value = "memory")]
    pub store: BenchStore,
    /// Ads checked against brute force at the end.
    #[arg(long, default_value_t = 200)]
    pub check_ads: usize,
    /// Random seed.
    #[arg(long, default_value_t = 7)]
    pub seed: u64,
}

/// The store a maintenance benchmark runs against.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum BenchStore {
    /// Brute-force in-memory maps (exact by construction; the test double).
    Memory,
    /// The embedded default (qdrant-edge) in a temporary directory.
    Edge,
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

/// Resident set size in MB (10^6 bytes, the unit of `raw_vectors_mb`).
fn rss_mb() -> f64 {
    proc_status_mb("VmRSS:")
}

/// Peak resident set size so far in MB (10^6 bytes).
fn peak_rss_mb() -> f64 {
    proc_status_mb("VmHWM:")
}

/// A `kB` line of /proc/self/status in MB (10^6 bytes); 0 where unavailable.
fn proc_status_mb(key: &str) -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with(key)).map(str::to_string))
        .and_then(|l| l.split_whitespace().nth(1).and_then(|kb| kb.parse::<f64>().ok()))
        .map_or(0.0, |kb| kb * 1024.0 / 1e6)
}

/// Run the benchmark and return its `key=value` lines.
///
/// The standing lists are built the way the worker builds them: the ads are
/// registered first, then the whole catalogue streams in as product events.
/// The store doubles as the oracle (its search is an exact scan).
pub async fn maintain(p: &MaintainParams) -> Result<Vec<String>, StoreError> {
    let mut out = Vec::new();
    let mut rng = StdRng::seed_from_u64(p.seed);
    let centres: Vec<Vec<f32>> =
        (0..64).map(|_| (0..p.dim).map(|_| rng.random_range(-1.0f32..1.0)).collect()).collect();
    let rss_start = rss_mb();
    let fail = |e: crate::recommend::RecommendError| StoreError::Unavailable(e.to_string());

    // Removed when the benchmark ends (the guard outlives the stores).
    let _dir_guard;
    let (store, ads_store): (Arc<dyn VectorStore>, Arc<dyn VectorStore>) = match p.store {
        BenchStore::Memory => (Arc::new(MemoryStore::default()), Arc::new(MemoryStore::default())),
        BenchStore::Edge => {
            let dir = tempfile::Builder::new()
                .prefix("adrec-bench-")
                .tempdir()
                .map_err(|e| StoreError::Open { path: "temporary directory".into(), reason: e.to_string() })?;
            let stores = (
                Arc::new(EdgeStore::open(&dir.path().join("products"), p.dim)?) as Arc<dyn VectorStore>,
                Arc::new(EdgeStore::open(&dir.path().join("ads"), p.dim)?) as Arc<dyn VectorStore>,
            );
            _dir_guard = dir;
            stores
        }
    };
    let sink = Arc::new(CountingSink::default());
    out.push(format!(
        "maintain.ads={} maintain.products={} maintain.k={} maintain.dim={} maintain.store={:?}",
        p.ads, p.products, p.k, p.dim, p.store
    ));
    let load = Instant::now();
    let mut batch = Vec::with_capacity(10_000);
    for i in 0..p.products {
        batch.push(product(i, clustered(&mut rng, &centres), rng.random_range(0..10) > 0).to_point());
        if batch.len() == 10_000 {
            store.upsert(std::mem::take(&mut batch)).await?;
        }
    }
    store.upsert(batch).await?;
    let mut ads = Vec::with_capacity(10_000);
    for a in 0..p.ads {
        let ad = AdRecord::unpublished(
            format!("a{a}"),
            clustered(&mut rng, &centres).into(),
            String::new(),
            p.k,
            AdFilter { in_stock: Some(true), ..Default::default() },
            "bench".into(),
        );
        ads.push(ad.to_point());
        if ads.len() == 10_000 {
            ads_store.upsert(std::mem::take(&mut ads)).await?;
        }
    }
    ads_store.upsert(ads).await?;
    out.push(format!("maintain.load_s={:.1}", load.elapsed().as_secs_f64()));
    let rss_stores = rss_mb();

    // A worker starting on this catalogue: every ad's buffer is built by the
    // same path a restart takes, then every list is published once.
    let config = RecommendConfig { default_k: p.k, ..Default::default() };
    let build = Instant::now();
    let mut r = Recommender::load(store.clone(), ads_store, sink.clone(), config, "bench".into()).await?;
    r.rebuild().await.map_err(fail)?;
    out.push(format!(
        "maintain.rebuild_s={:.1} maintain.rebuild_store_queries={}",
        build.elapsed().as_secs_f64(),
        r.store_queries
    ));
    let rss_built = rss_mb();
    let peak_built = peak_rss_mb();

    // Product events: 60% changed or new images, 20% stock flips, 20% deletions.
    let queries_before = r.store_queries;
    let published_before = sink.0.load(Ordering::Relaxed);
    // Whole event (store write + lists), and the list engine alone.
    let mut latencies = Vec::with_capacity(p.events);
    let mut engine_latencies = Vec::with_capacity(p.events);
    let mut next_id = p.products;
    let mut naive_query_ms = Vec::new();
    for i in 0..p.events {
        let roll = rng.random_range(0..10);
        let existing = format!("p{}", rng.random_range(0..next_id));
        let event = if roll < 6 {
            let id = if rng.random_bool(0.5) {
                next_id += 1;
                format!("p{}", next_id - 1)
            } else {
                existing.clone()
            };
            let mut rec = product(0, clustered(&mut rng, &centres), true);
            rec.image_url = format!("http://bench/{id}.jpg");
            rec.product_id = id;
            Some(rec)
        } else if roll < 8 {
            let old = store.retrieve(vec![existing.clone()], true).await?.into_iter().next();
            match old.and_then(ProductRecord::from_point) {
                Some(old) => Some(ProductRecord { in_stock: !old.in_stock, ..old }),
                None => continue, // deleted earlier in the run
            }
        } else {
            None
        };
        let started = Instant::now();
        let engine_started = match &event {
            Some(rec) => {
                store.upsert(vec![rec.to_point()]).await?;
                let engine_started = Instant::now();
                r.product_upserted(rec).await.map_err(fail)?;
                engine_started
            }
            None => {
                store.delete(vec![existing.clone()]).await?;
                let engine_started = Instant::now();
                r.product_removed(&existing).await.map_err(fail)?;
                engine_started
            }
        };
        latencies.push(started.elapsed().as_secs_f64() * 1000.0);
        engine_latencies.push(engine_started.elapsed().as_secs_f64() * 1000.0);
        if i < p.naive_sample {
            // The naive strategy re-runs every ad's filtered top-K query after
            // each event; at scale only `naive_ads` of them are timed and the
            // event's cost is extrapolated from their mean.
            for ad in r.live_ads().step_by((p.ads / p.naive_ads.max(1)).max(1)).take(p.naive_ads) {
                let naive = Instant::now();
                store.search(ad.vector.to_vec(), ad.store_filter(), p.k).await?;
                naive_query_ms.push(naive.elapsed().as_secs_f64() * 1000.0);
            }
        }
    }
    latencies.sort_by(f64::total_cmp);
    let n = latencies.len().max(1) as f64;
    let queries = (r.store_queries - queries_before) as f64 / n;
    let naive_queries = p.ads as f64;
    let changed = (sink.0.load(Ordering::Relaxed) - published_before) as f64 / n;
    out.push(format!("maintain.events={}", latencies.len()));
    out.push(format!("maintain.event_p50_ms={:.3}", percentile(&latencies, 0.5)));
    out.push(format!("maintain.event_p99_ms={:.3}", percentile(&latencies, 0.99)));
    out.push(format!("maintain.event_max_ms={:.3}", latencies.last().copied().unwrap_or(0.0)));
    engine_latencies.sort_by(f64::total_cmp);
    out.push(format!(
        "maintain.engine_p50_ms={:.3} maintain.engine_p99_ms={:.3}",
        percentile(&engine_latencies, 0.5),
        percentile(&engine_latencies, 0.99)
    ));
    out.push(format!("maintain.store_queries_total={}", r.store_queries - queries_before));
    out.push(format!("maintain.store_queries_per_event={queries:.4}"));
    out.push(format!("naive.store_queries_per_event={naive_queries:.0}"));
    // With zero refills in the run, the ratio is a lower bound (as if one query had happened).
    out.push(format!("ratio.naive_over_incremental_queries={:.1}", naive_queries / queries.max(1.0 / n)));
    if !naive_query_ms.is_empty() {
        let per_query = naive_query_ms.iter().sum::<f64>() / naive_query_ms.len() as f64;
        let per_event = per_query * p.ads as f64;
        out.push(format!(
            "naive.query_mean_ms={per_query:.2} naive.timed_queries={} naive.event_ms_extrapolated={per_event:.0}",
            naive_query_ms.len()
        ));
        let incremental_mean = latencies.iter().sum::<f64>() / n;
        out.push(format!("ratio.naive_over_incremental_time={:.0}", per_event / incremental_mean.max(1e-9)));
    }
    out.push(format!("maintain.lists_changed_per_event={changed:.3}"));
    let raw_mb = ((p.products + p.ads) * p.dim * 4) as f64 / 1e6;
    let rss = rss_mb();
    out.push(format!(
        "maintain.rss_mb={rss:.0} maintain.rss_start_mb={rss_start:.0} maintain.rss_stores_mb={rss_stores:.0} maintain.rss_built_mb={rss_built:.0} maintain.raw_vectors_mb={raw_mb:.0}"
    ));
    out.push(format!("ratio.rss_over_raw_vectors={:.2}", rss / raw_mb.max(1e-9)));
    let peak = peak_rss_mb();
    out.push(format!(
        "maintain.peak_rss_mb={peak:.0} maintain.peak_rss_built_mb={peak_built:.0} ratio.peak_rss_over_raw_vectors={:.2}",
        peak / raw_mb.max(1e-9)
    ));
    // The engine's own share: everything but the in-memory stores (which a
    // deployment keeps in Qdrant or on disk), against the ads' raw vectors.
    let ads_raw_mb = (p.ads * p.dim * 4) as f64 / 1e6;
    out.push(format!("maintain.engine_mb={:.0} maintain.ads_raw_vectors_mb={ads_raw_mb:.0}", rss_built - rss_stores));

    let mut mismatches = 0;
    let step = (p.ads / p.check_ads.max(1)).max(1);
    let checked: Vec<AdRecord> = r.live_ads().step_by(step).take(p.check_ads).cloned().collect();
    for ad in &checked {
        let expected = store.search(ad.vector.to_vec(), ad.store_filter(), ad.k).await?;
        let ids = ad.items.iter().map(|i| i.product_id.as_str());
        if !ids.eq(expected.iter().map(|h| h.id.as_str())) {
            mismatches += 1;
        }
    }
    out.push(format!("maintain.checked_ads={}", checked.len()));
    out.push(format!("maintain.exact_mismatches={mismatches}"));
    Ok(out)
}
