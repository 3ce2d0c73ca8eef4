//! Operator endpoints over real HTTP, and the metrics of a running worker.

mod common;

use adrec::http::{Readiness, serve};
use adrec::telemetry::{Kind, METRICS};
use common::worker::Worker;

#[tokio::test]
async fn health_readiness_and_metrics() {
    let ready = Readiness::default();
    let addr = serve("127.0.0.1:0", ready.clone()).await.expect("bind 127.0.0.1");
    let client = reqwest::Client::new();
    let get = |path: &str| {
        let client = client.clone();
        let url = format!("http://{addr}{path}");
        async move {
            let r = client.get(url).send().await.expect("request");
            (r.status().as_u16(), r.text().await.expect("body"))
        }
    };
    assert_eq!(get("/healthz").await.0, 200);
    assert_eq!(get("/readyz").await.0, 503, "not ready before the worker says so");
    ready.set(true);
    assert_eq!(get("/readyz").await.0, 200);
    adrec::telemetry::record_done("products", "t", "product.upserted", "applied");
    adrec::telemetry::list_published(2);
    let (status, body) = get("/metrics").await;
    assert_eq!(status, 200);
    let m = common::prom::parse(&body).expect("Prometheus text");
    assert_eq!(
        m.sum("adrec_events_total", &[("stream", "products"), ("type", "product.upserted"), ("outcome", "applied")]),
        1.0,
        "{body}"
    );
    assert_eq!(m.sum("adrec_lists_published_total", &[]), 2.0, "{body}");
}

/// The real worker on the demo catalogue (plus a poison line and a 404
/// image): every metric the README lists is served, parses, and adds up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_worker_reports_its_metrics() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let demo_dir = tmp.path().join("demo");
    std::fs::create_dir_all(&demo_dir).expect("mkdir");
    let addr = common::serve_dir(&demo_dir).await;
    let base = format!("http://{addr}");
    let cat = adrec::demo::generate(&demo_dir, &base, 4, 7).expect("demo data");

    let mut worker = Worker::start(tmp.path());
    let (status, _) = worker.get("/readyz").await;
    assert_eq!(status, 200);
    worker.send(&std::fs::read_to_string(demo_dir.join("events/products.jsonl")).expect("products"));
    worker.send(&std::fs::read_to_string(demo_dir.join("events/ads.jsonl")).expect("ads"));
    worker.send("{not json\n");
    worker.send(&format!(
        "{{\"type\":\"product.upserted\",\"product_id\":\"ghost-1\",\"image_url\":\"{base}/images/missing.jpg\",\"updated_at\":\"2026-12-01T09:00:00Z\"}}\n"
    ));
    let total = cat.products + cat.ads + 2;
    let m = worker.wait_for_events(total as f64).await;

    // Every metric named in telemetry.rs is declared with a type (lag is Kafka-only).
    for (name, kind, _) in METRICS {
        if name == "adrec_consumer_lag" {
            continue;
        }
        let expected = match kind {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        };
        assert_eq!(m.types.get(name).map(String::as_str), Some(expected), "type of {name}");
        assert!(m.types.contains_key(name), "/metrics lacks {name}; has {:?}", m.types.keys().collect::<Vec<_>>());
    }
    let applied = |ty| m.sum("adrec_events_total", &[("type", ty), ("outcome", "applied")]);
    assert_eq!(applied("product.upserted"), cat.products as f64);
    assert_eq!(applied("ad.upserted"), cat.ads as f64);
    assert_eq!(m.sum("adrec_events_total", &[("type", "invalid"), ("outcome", "dead_lettered")]), 1.0);
    assert_eq!(m.sum("adrec_events_total", &[("type", "product.upserted"), ("outcome", "dead_lettered")]), 1.0);
    assert!(m.find("adrec_events_total", &[]).iter().all(|s| s.labels.get("topic").is_some_and(|t| t == "stdin")));
    assert_eq!(m.sum("adrec_dead_letters_total", &[("topic", "stdin")]), 2.0);
    // The 404 is permanent: no retry. Every image was fetched once and embedded once.
    assert_eq!(m.sum("adrec_retries_total", &[]), 0.0);
    assert_eq!(m.find("adrec_retries_total", &[]).len(), 4, "one zero series per stage");
    let embedded = (cat.products + cat.ads) as f64;
    assert_eq!(m.sum("adrec_embed_seconds_count", &[]), embedded);
    assert_eq!(m.sum("adrec_fetch_seconds_count", &[]), embedded);
    assert!(m.sum("adrec_fetch_bytes_total", &[]) > 1000.0 * embedded, "demo images are a few KB each");
    assert_eq!(m.types.get("adrec_fetch_seconds").map(String::as_str), Some("histogram"));
    assert!(m.sum("adrec_fetch_seconds_sum", &[]) > 0.0);
    // Buckets are cumulative and end with +Inf = count.
    let buckets = m.find("adrec_embed_seconds_bucket", &[]);
    assert!(buckets.windows(2).all(|w| w[0].value <= w[1].value));
    assert_eq!(m.find("adrec_embed_seconds_bucket", &[("le", "+Inf")])[0].value, embedded);
    // Store calls: every product upsert, and the ads' searches.
    assert!(m.sum("adrec_store_seconds_count", &[("collection", "products"), ("op", "upsert")]) >= cat.products as f64);
    assert!(m.sum("adrec_store_seconds_count", &[("collection", "products"), ("op", "search")]) >= cat.ads as f64);
    assert_eq!(m.sum("adrec_store_errors_total", &[]), 0.0);
    // Lists: at least one per ad; every publication went through the sink.
    let published = m.sum("adrec_lists_published_total", &[]);
    assert!(published >= cat.ads as f64);
    assert!(m.sum("adrec_sink_seconds_count", &[("op", "publish")]) >= published);
    assert_eq!(m.sum("adrec_live_lists", &[]), cat.ads as f64);
    assert_eq!(m.sum("adrec_in_flight_records", &[]), 0.0, "everything read was acknowledged");
    assert_eq!(m.sum("adrec_rebuild_ads", &[]), 0.0);

    // Every dead letter is logged with the event's id (when it has one).
    let logs = worker.logs();
    let dlq: Vec<serde_json::Value> = logs
        .iter()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["fields"]["message"] == "dead-lettering record")
        .collect();
    assert_eq!(dlq.len(), 2, "{logs:?}");
    assert_eq!(dlq[1]["fields"]["id"], "ghost-1");
    assert!(dlq[1]["fields"]["reason"].as_str().is_some_and(|r| r.contains("404")));
    assert!(worker.finish().await.success());
}
