//! Operator endpoints over real HTTP.

use adrec::http::{Readiness, serve};

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
    adrec::telemetry::record_done("products", "applied");
    adrec::telemetry::list_published(2);
    let (status, body) = get("/metrics").await;
    assert_eq!(status, 200);
    assert!(body.contains("adrec_events_total{stream=\"products\",outcome=\"applied\"} 1"), "{body}");
    assert!(body.contains("adrec_lists_published_total 2"), "{body}");
}
