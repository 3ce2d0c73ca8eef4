//! End to end on the embedded default: demo events in, real HTTP image
//! downloads, the real ONNX model, the embedded Qdrant engine, list files out.

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use adrec::app;
use adrec::config::Config;
use adrec::demo;
use adrec::events::RecommendationList;
use adrec::records::{AdRecord, ProductRecord};
use tokio_util::sync::CancellationToken;

/// Stored products and ads, read back from the store after a run.
async fn stored(config: &Config) -> (Vec<ProductRecord>, Vec<AdRecord>) {
    let (products, ads) = app::open_current_stores(config).expect("stores");
    let products = products.scroll_all(true).await.expect("scroll products");
    let ads = ads.scroll_all(true).await.expect("scroll ads");
    (
        products.into_iter().filter_map(ProductRecord::from_point).collect(),
        ads.into_iter().filter_map(AdRecord::from_point).filter(|a| !a.deleted).collect(),
    )
}

/// The latest published list per ad, replayed from the append-only log the
/// way a consumer of the compacted topic would (last value per key wins).
fn published(output_dir: &Path) -> BTreeMap<String, Option<RecommendationList>> {
    let log = std::fs::read_to_string(output_dir.join("lists.jsonl")).expect("lists.jsonl");
    let mut latest = BTreeMap::new();
    for line in log.lines() {
        let msg: serde_json::Value = serde_json::from_str(line).expect("json line");
        let key = msg["key"].as_str().expect("key").to_string();
        let value = (!msg["value"].is_null()).then(|| serde_json::from_value(msg["value"].clone()).expect("list"));
        latest.insert(key, value);
    }
    latest
}

/// Every ad's last published list equals the brute-force top-k over the store.
async fn assert_lists_match_oracle(config: &Config) -> BTreeMap<String, RecommendationList> {
    let (catalogue, ads) = stored(config).await;
    let lists = published(&config.output_dir());
    let mut live = BTreeMap::new();
    for ad in &ads {
        let list =
            lists.get(&ad.ad_id).cloned().flatten().unwrap_or_else(|| panic!("no list published for {}", ad.ad_id));
        let expected = common::oracle(&catalogue, &ad.vector, &ad.filter, ad.k);
        common::assert_same_list(&ad.ad_id, &list.items, &expected);
        live.insert(ad.ad_id.clone(), list);
    }
    live
}

fn dlq_lines(config: &Config) -> Vec<serde_json::Value> {
    std::fs::read_to_string(config.output_dir().join("dlq.jsonl"))
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).expect("dlq json"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_catalogue_end_to_end() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let demo_dir = tmp.path().join("demo");
    // Serve first: the events must carry the server's real address.
    std::fs::create_dir_all(&demo_dir).expect("mkdir");
    let addr = common::serve_dir(&demo_dir).await;
    let base = format!("http://{addr}");
    let cat = demo::generate(&demo_dir, &base, 35, 42).expect("demo data");
    assert!(cat.products >= 200);

    // Phase 1: the demo events, plus poison: a malformed line, a 404 image,
    // an HTML "image"; valid events after them must still be processed.
    let products = demo_dir.join("events/products.jsonl");
    let mut text = std::fs::read_to_string(&products).expect("read");
    text.push_str("{this is not json\n");
    text.push_str(&format!(
        "{{\"type\":\"product.upserted\",\"product_id\":\"ghost\",\"image_url\":\"{base}/images/missing.jpg\",\"updated_at\":\"2026-12-01T09:00:00Z\"}}\n"
    ));
    std::fs::write(demo_dir.join("images/page.jpg"), "<html>not an image</html>").expect("write");
    text.push_str(&format!(
        "{{\"type\":\"product.upserted\",\"product_id\":\"fake\",\"image_url\":\"{base}/images/page.jpg\",\"updated_at\":\"2026-12-01T09:00:00Z\"}}\n"
    ));
    text.push_str(&format!(
        "{{\"type\":\"product.upserted\",\"product_id\":\"late-tee\",\"image_url\":\"{base}/images/navy-plain-tee-000.jpg\",\"in_stock\":true,\"attributes\":{{\"category\":\"tee\"}},\"updated_at\":\"2026-12-01T09:00:00Z\"}}\n"
    ));
    std::fs::write(&products, text).expect("write");

    let config = common::config(tmp.path(), &demo_dir.join("events"));
    let report = app::run(config.clone(), CancellationToken::new()).await.expect("run");
    assert_eq!(report.stats.dead_lettered, 3, "{:?}", report.stats);
    assert_eq!(report.stats.applied as usize, cat.products + 1 + cat.ads);

    // (d) the poison is in the DLQ with its reason; the run went on.
    let dlq = dlq_lines(&config);
    let reasons: Vec<&str> = dlq.iter().map(|d| d["error"].as_str().unwrap_or_default()).collect();
    assert!(reasons[0].contains("invalid JSON"), "{reasons:?}");
    assert!(reasons[1].contains("HTTP 404"), "{reasons:?}");
    assert!(reasons[2].contains("cannot decode image") || reasons[2].contains("not an image"), "{reasons:?}");
    assert_eq!(dlq[0]["payload"], "{this is not json");
    let (catalogue, _) = stored(&config).await;
    assert!(catalogue.iter().any(|p| p.product_id == "late-tee"), "event after the poison was processed");

    // (a) every list is the oracle's; (b) each ad's top 5 come from its family.
    let lists = assert_lists_match_oracle(&config).await;
    assert_eq!(lists.len(), demo::ADS.len());
    for (ad_id, family, k, in_stock_only, _) in demo::ADS {
        let list = &lists[ad_id];
        assert_eq!(list.items.len(), k);
        for item in &list.items[..5] {
            assert_eq!(
                demo::family_of(&item.product_id),
                Some(demo::FAMILIES[family].name),
                "ad {ad_id}: top 5 must be from its family, got {:?}",
                list.items.iter().map(|i| &i.product_id).collect::<Vec<_>>()
            );
        }
        if in_stock_only {
            let stocked: BTreeMap<_, _> = catalogue.iter().map(|p| (p.product_id.clone(), p.in_stock)).collect();
            assert!(list.items.iter().all(|i| stocked[&i.product_id]), "ad {ad_id} lists an out-of-stock product");
        }
    }

    // A rerun of the same input processes nothing and publishes nothing.
    let before = std::fs::read_to_string(config.output_dir().join("lists.jsonl")).expect("log");
    let again = app::run(config.clone(), CancellationToken::new()).await.expect("rerun");
    assert_eq!(again.stats.records, 0);
    assert_eq!(std::fs::read_to_string(config.output_dir().join("lists.jsonl")).expect("log"), before);

    // (c) Phase 2: delete one ad's top product, put another's out of stock.
    let gone = lists["summer-stripes"].items[0].product_id.clone();
    let sold_out = lists["garden-party"].items[0].clone();
    let changes = tmp.path().join("changes.jsonl");
    std::fs::write(
        &changes,
        format!(
            "{{\"type\":\"product.deleted\",\"product_id\":\"{gone}\",\"updated_at\":\"2026-12-02T09:00:00Z\"}}\n\
             {{\"type\":\"product.upserted\",\"product_id\":\"{}\",\"image_url\":\"{}\",\"in_stock\":false,\"attributes\":{{\"category\":\"dress\",\"family\":\"green-check-dress\"}},\"updated_at\":\"2026-12-02T09:00:00Z\"}}\n\
             {{\"type\":\"product.deleted\",\"product_id\":\"{}\",\"updated_at\":\"2026-11-01T09:00:00Z\"}}\n",
            sold_out.product_id, sold_out.image_url, lists["sunny-days"].items[0].product_id
        ),
    )
    .expect("write changes");
    let mut phase2 = config.clone();
    phase2.source.input = changes;
    let report = app::run(phase2, CancellationToken::new()).await.expect("phase 2");
    assert_eq!(report.stats.stale, 1, "the older delete must be ignored: {:?}", report.stats);
    assert_eq!(report.stats.images_embedded, 0, "a stock change must not re-embed");

    let after = assert_lists_match_oracle(&config).await;
    for (ad_id, list) in &after {
        assert!(list.items.iter().all(|i| i.product_id != gone), "ad {ad_id} still lists deleted {gone}");
        assert!(list.items.iter().all(|i| i.product_id != sold_out.product_id || ad_id == "sunny-days"));
    }
    assert_eq!(after["summer-stripes"].version, lists["summer-stripes"].version + 1);
    assert_eq!(after["garden-party"].version, lists["garden-party"].version + 1);
    assert_eq!(after["sunny-days"], lists["sunny-days"], "the stale delete must not touch sunny-days");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_an_ad_publishes_a_tombstone_and_keeps_versions_increasing() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let demo_dir = tmp.path().join("demo");
    std::fs::create_dir_all(&demo_dir).expect("mkdir");
    let addr = common::serve_dir(&demo_dir).await;
    let base = format!("http://{addr}");
    demo::generate(&demo_dir, &base, 4, 1).expect("demo data");
    let ad = |t: &str| {
        format!(
            "{{\"type\":\"ad.upserted\",\"ad_id\":\"solo\",\"image_url\":\"{base}/images/ad-sunny-days.jpg\",\"k\":3,\"updated_at\":\"{t}\"}}\n"
        )
    };
    let events = tmp.path().join("events.jsonl");
    let mut text = std::fs::read_to_string(demo_dir.join("events/products.jsonl")).expect("read");
    text.push_str(&ad("2026-12-01T09:00:00Z"));
    text.push_str("{\"type\":\"ad.deleted\",\"ad_id\":\"solo\",\"updated_at\":\"2026-12-01T10:00:00Z\"}\n");
    text.push_str(&ad("2026-12-01T11:00:00Z"));
    std::fs::write(&events, text).expect("write");

    let config = common::config(tmp.path(), &events);
    app::run(config.clone(), CancellationToken::new()).await.expect("run");
    let log = std::fs::read_to_string(config.output_dir().join("lists.jsonl")).expect("log");
    let messages: Vec<serde_json::Value> = log.lines().map(|l| serde_json::from_str(l).expect("json")).collect();
    let solo: Vec<&serde_json::Value> = messages.iter().filter(|m| m["key"] == "solo").collect();
    assert_eq!(solo.len(), 3, "{solo:?}");
    assert_eq!(solo[0]["value"]["version"], 1);
    assert!(solo[1]["value"].is_null(), "deletion is a tombstone");
    assert_eq!(solo[2]["value"]["version"], 2, "re-created ad continues its version sequence");
    assert_eq!(solo[2]["value"]["items"].as_array().map(Vec::len), Some(3));
}
