//! The vector store goes away mid-stream: the real pipeline (files in, real
//! HTTP downloads, the real model, the embedded Qdrant engine, files out)
//! with both store collections behind `store::faults::FaultyStore`, which
//! fails scheduled runs of calls with the engine's own "unavailable" error,
//! before the call or after it (the write landed, the answer was lost).
//! Every event must be retried until the store is back, none skipped or
//! dead-lettered, versions must only go up, and every list must be exact.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use adrec::app;
use adrec::config::Config;
use adrec::demo;
use adrec::events::RecommendationList;
use adrec::fetch::Fetcher;
use adrec::pipeline::Pipeline;
use adrec::recommend::Recommender;
use adrec::records::{AdRecord, ProductRecord};
use adrec::store::VectorStore;
use adrec::store::faults::{FaultMode, FaultSchedule, FaultyStore, Outage};
use image::ImageFormat;
use rand::SeedableRng;
use rand::rngs::StdRng;
use tokio_util::sync::CancellationToken;

/// Every list message of the files sink in order: (ad id, list or tombstone).
fn published(output_dir: &Path) -> Vec<(String, Option<RecommendationList>)> {
    let log = std::fs::read_to_string(output_dir.join("lists.jsonl")).expect("lists.jsonl");
    log.lines()
        .map(|line| {
            let msg: serde_json::Value = serde_json::from_str(line).expect("json line");
            let key = msg["key"].as_str().expect("key").to_string();
            let value = (!msg["value"].is_null()).then(|| serde_json::from_value(msg["value"].clone()).expect("list"));
            (key, value)
        })
        .collect()
}

/// The demo catalogue, then changes: stock flips, image swaps, deletions,
/// an ad edit — one mixed file, in order.
fn write_stream(demo_dir: &Path, input: &Path) -> usize {
    let read = |name: &str| std::fs::read_to_string(demo_dir.join("events").join(name)).expect("demo events");
    let products: Vec<serde_json::Value> =
        read("products.jsonl").lines().map(|l| serde_json::from_str(l).expect("json")).collect();
    let mut lines: Vec<String> = read("ads.jsonl").lines().map(str::to_string).collect();
    lines.extend(products.iter().map(|p| p.to_string()));
    for (i, p) in products.iter().enumerate() {
        let mut change = p.clone();
        change["updated_at"] = serde_json::json!("2026-12-02T09:00:00Z");
        match i % 5 {
            0 => change["in_stock"] = serde_json::json!(!p["in_stock"].as_bool().unwrap_or(true)),
            1 => {
                // A new image of another family (unique: no exact score ties).
                let name = format!("swap-{i}.jpg");
                let family = &demo::FAMILIES[(i + 1) % demo::FAMILIES.len()];
                let img = demo::product_image(family, &mut StdRng::seed_from_u64(i as u64));
                img.save_with_format(demo_dir.join("images").join(&name), ImageFormat::Jpeg).expect("save");
                let url = p["image_url"].as_str().expect("url").rsplit_once('/').expect("path").0.to_string();
                change["image_url"] = serde_json::json!(format!("{url}/{name}"));
            }
            2 => {
                change = serde_json::json!({"type": "product.deleted", "product_id": p["product_id"],
                    "updated_at": "2026-12-02T09:00:00Z"});
            }
            _ => continue,
        }
        lines.push(change.to_string());
    }
    let mut ad: serde_json::Value = serde_json::from_str(read("ads.jsonl").lines().next().expect("an ad")).expect("ad");
    ad["k"] = serde_json::json!(4);
    ad["updated_at"] = serde_json::json!("2026-12-02T10:00:00Z");
    lines.push(ad.to_string());
    std::fs::write(input, lines.join("\n") + "\n").expect("write stream");
    lines.len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_outages_are_waited_out_nothing_skipped_lists_exact() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let demo_dir = tmp.path().join("demo");
    let addr = common::serve_dir(&demo_dir).await;
    demo::generate(&demo_dir, &format!("http://{addr}"), 10, 5).expect("demo data");
    let input = tmp.path().join("stream.jsonl");
    let events = write_stream(&demo_dir, &input);
    let config: Config = common::config(tmp.path(), &input);

    let embedder = app::load_embedder(&config).expect("model");
    let (products, ads) = app::open_stores(&config, embedder.model_id(), embedder.dim()).expect("stores");
    // Outages by store-call number (products and ads collections counted
    // together; a clean run makes about 320 calls in all).
    let outages = vec![
        Outage { from_call: 20, calls: 15, mode: FaultMode::Before },
        Outage { from_call: 100, calls: 15, mode: FaultMode::After },
        Outage { from_call: 180, calls: 30, mode: FaultMode::Before },
        Outage { from_call: 260, calls: 10, mode: FaultMode::After },
        Outage { from_call: 320, calls: 20, mode: FaultMode::Before },
    ];
    let scheduled: u64 = outages.iter().map(|o| o.calls).sum();
    let schedule = FaultSchedule::new(outages);
    let faulty = |inner: &Arc<dyn VectorStore>| -> Arc<dyn VectorStore> {
        Arc::new(FaultyStore::new(inner.clone(), schedule.clone()))
    };
    let (faulty_products, faulty_ads) = (faulty(&products), faulty(&ads));
    let (sink, mut source) = app::open_io(&config).await.expect("io");
    let model = embedder.model_id().to_string();
    let recommender =
        Recommender::load(faulty_products.clone(), faulty_ads, sink.clone(), config.recommend.clone(), model)
            .await
            .expect("recommender");
    let fetcher = Fetcher::new(&config.fetch).expect("fetcher");
    let mut pipeline = Pipeline::new(config.clone(), fetcher, embedder, faulty_products, sink, recommender);
    pipeline.run(source.as_mut(), CancellationToken::new()).await.expect("run");

    let stats = pipeline.stats.clone();
    println!(
        "store_outage.events={events} store_outage.store_calls={} store_outage.injected_failures={} store_outage.retries={} store_outage.stats={stats:?}",
        schedule.calls(),
        schedule.injected(),
        stats.retries
    );
    assert_eq!(schedule.injected(), scheduled, "every scheduled outage struck mid-stream");
    assert!(stats.retries >= scheduled, "each failed call was retried ({} retries)", stats.retries);
    assert_eq!(stats.records, events as u64, "every event read");
    assert_eq!(stats.dead_lettered, 0, "no event dead-lettered for a store outage");
    assert_eq!(stats.applied + stats.stale, stats.records, "every event applied (or stale)");
    drop(pipeline);

    // The catalogue is what the stream implies.
    let catalogue: Vec<ProductRecord> =
        products.scroll_all(true).await.expect("scroll").into_iter().filter_map(ProductRecord::from_point).collect();
    let live_ads: Vec<AdRecord> = ads
        .scroll_all(true)
        .await
        .expect("scroll")
        .into_iter()
        .filter_map(AdRecord::from_point)
        .filter(|a| !a.deleted)
        .collect();
    assert_eq!(catalogue.len(), 60 - 60 / 5, "every deletion applied, nothing else lost");
    let swapped = catalogue.iter().filter(|p| p.image_url.contains("/swap-")).count();
    assert_eq!(swapped, 60 / 5, "every image swap applied");

    // Versions only go up, no list is republished unchanged, and every
    // ad's last list is the brute-force top-k.
    let mut last: BTreeMap<String, Option<RecommendationList>> = BTreeMap::new();
    for (ad_id, value) in published(&config.output_dir()) {
        if let (Some(Some(prev)), Some(new)) = (last.get(&ad_id), &value) {
            common::assert_republished_changed(&ad_id, prev, new);
        }
        last.insert(ad_id, value);
    }
    assert_eq!(live_ads.len(), demo::ADS.len());
    for ad in &live_ads {
        let list = last.get(&ad.ad_id).cloned().flatten().unwrap_or_else(|| panic!("no list for {}", ad.ad_id));
        let expected = common::oracle(&catalogue, &ad.vector, &ad.filter, ad.k);
        common::assert_same_list(&ad.ad_id, &list.items, &expected);
        assert_eq!(list.version, ad.version, "ad {}: stored version is the last published one", ad.ad_id);
    }
}
