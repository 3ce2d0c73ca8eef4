//! The preview page in a real browser: the real `adrec` binary on the demo
//! catalogue, Debian's headless Chromium driven over the DevTools protocol.
//! The page must show the ad's ranked list in the published order, then show
//! a newly published version without a reload. A screenshot is saved as a
//! test artifact (`<target>/test-artifacts/preview.png`).

mod common;

use std::path::PathBuf;
use std::time::Duration;

use adrec::demo;
use adrec::events::RecommendationList;
use common::cdp::{Browser, find_chromium};
use common::worker::Worker;

/// The ids of the rows the page shows, in order.
const ROW_IDS: &str = "Array.from(document.querySelectorAll('#items tr')).map(r => r.dataset.productId)";

fn list_file(worker: &Worker, ad_id: &str) -> RecommendationList {
    let path = worker.data_dir.join("out/lists").join(format!("{ad_id}.json"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).expect("list file")
}

fn ids(list: &RecommendationList) -> Vec<String> {
    list.items.iter().map(|i| i.product_id.clone()).collect()
}

fn artifact_dir() -> PathBuf {
    // CARGO_TARGET_TMPDIR is <target>/tmp; artifacts go beside it.
    let tmp = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    tmp.parent().map(|t| t.join("test-artifacts")).unwrap_or(tmp)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn preview_page_renders_the_ranked_list_and_updates_live() {
    // First, so a missing browser fails at once with the fix in the message.
    let chromium = find_chromium();
    let tmp = tempfile::tempdir().expect("tempdir");
    let demo_dir = tmp.path().join("demo");
    std::fs::create_dir_all(&demo_dir).expect("mkdir");
    let addr = common::serve_dir(&demo_dir).await;
    let base = format!("http://{addr}");
    let cat = demo::generate(&demo_dir, &base, 8, 42).expect("demo data");

    let mut worker = Worker::start(tmp.path());
    worker.send(&std::fs::read_to_string(demo_dir.join("events/products.jsonl")).expect("products"));
    worker.send(&std::fs::read_to_string(demo_dir.join("events/ads.jsonl")).expect("ads"));
    worker.wait_for_events((cat.products + cat.ads) as f64).await;

    let ad = "sunny-days";
    let before = list_file(&worker, ad);
    assert_eq!(before.items.len(), 10);

    let browser = Browser::launch(&chromium, &tmp.path().join("chromium-profile"));
    let mut page = browser.page().await;
    page.call(
        "Emulation.setDeviceMetricsOverride",
        serde_json::json!({"width": 1280, "height": 1100, "deviceScaleFactor": 1, "mobile": false}),
    )
    .await;
    page.navigate(&format!("http://{}/ads/{ad}", worker.addr)).await;

    // The ranked items, in the published order.
    let shown = page
        .wait_for("the ranked list", ROW_IDS, Duration::from_secs(60), |v| v.as_array().is_some_and(|a| a.len() == 10))
        .await;
    let shown: Vec<String> = serde_json::from_value(shown).expect("ids");
    assert_eq!(shown, ids(&before), "the page must show the list file's items in order");
    let version = page.eval("document.getElementById('version').textContent").await;
    assert_eq!(version, before.version.to_string());
    // The live connection is up, and thumbnails come from the products' image URLs.
    page.wait_for("the live status", "document.getElementById('status').textContent", Duration::from_secs(30), |v| {
        v == "live"
    })
    .await;
    let thumbs = page
        .wait_for(
            "loaded thumbnails",
            "Array.from(document.querySelectorAll('#items img.thumb')).map(i => i.complete && i.naturalWidth > 0 ? i.getAttribute('src') : null)",
            Duration::from_secs(30),
            |v| v.as_array().is_some_and(|a| a.len() == 10 && a.iter().all(|s| s.is_string())),
        )
        .await;
    let expected_urls: Vec<String> = before.items.iter().map(|i| i.image_url.clone()).collect();
    assert_eq!(serde_json::from_value::<Vec<String>>(thumbs).expect("srcs"), expected_urls);
    let creative = page.eval("document.querySelector('#creative img').getAttribute('src')").await;
    assert_eq!(creative, format!("{base}/images/ad-{ad}.jpg"));

    // A product that looks exactly like the creative enters the list at the top;
    // the marker proves the page was not reloaded to show it.
    page.eval("window.__adrecMarker = 'not reloaded'").await;
    worker.send(&format!(
        "{{\"type\":\"product.upserted\",\"product_id\":\"new-arrival\",\"image_url\":\"{base}/images/ad-{ad}.jpg\",\"title\":\"New <b>arrival</b>\",\"in_stock\":true,\"attributes\":{{\"category\":\"dress\"}},\"updated_at\":\"2026-12-02T09:00:00Z\"}}\n"
    ));
    let shown =
        page.wait_for("the new product at the top", ROW_IDS, Duration::from_secs(120), |v| v[0] == "new-arrival").await;
    assert_eq!(page.eval("window.__adrecMarker").await, "not reloaded", "the page reloaded instead of updating live");
    let after = list_file(&worker, ad);
    assert_eq!(after.version, before.version + 1);
    assert_eq!(serde_json::from_value::<Vec<String>>(shown).expect("ids"), ids(&after));
    assert_eq!(page.eval("document.getElementById('version').textContent").await, after.version.to_string());
    // Markup in a title is shown as text.
    assert_eq!(page.eval("document.querySelector('#items tr .title').textContent").await, "New <b>arrival</b>");
    assert_eq!(page.eval("document.querySelectorAll('#items b').length").await, 0);

    let shot = artifact_dir().join("preview.png");
    page.screenshot(&shot).await;
    assert!(std::fs::metadata(&shot).map(|m| m.len() > 10_000).unwrap_or(false), "screenshot at {}", shot.display());
    eprintln!("screenshot: {}", shot.display());

    // The CSV download is the same list.
    let (status, csv) = worker.get(&format!("/ads/{ad}.csv")).await;
    assert_eq!(status, 200);
    let csv_ids: Vec<&str> = csv.lines().skip(1).filter_map(|l| l.split(',').nth(1)).collect();
    assert_eq!(csv_ids, ids(&after));

    // The index lists every ad.
    let (status, index) = worker.get("/").await;
    assert_eq!(status, 200);
    for (ad_id, ..) in demo::ADS {
        assert!(index.contains(&format!("href=\"/ads/{ad_id}\"")), "index lacks {ad_id}");
    }

    drop(page);
    drop(browser);
    assert!(worker.finish().await.success(), "the worker must exit 0 at the end of its input");
}
