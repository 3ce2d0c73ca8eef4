//! Fixtures shared by the integration tests: paths to the real model, an
//! image HTTP server on 127.0.0.1, a config rooted in a temp dir, and the
//! brute-force oracle the published lists are checked against.
#![allow(dead_code)]

pub mod broker;
pub mod cdp;
pub mod exif;
pub mod kafka;
pub mod prom;
pub mod worker;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use adrec::config::Config;
use adrec::events::{AdFilter, ListItem, RecommendationList};
use adrec::records::ProductRecord;

/// The repository root (where models/ lives).
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A config using the fetched model and a fresh data dir under `root`.
pub fn config(root: &Path, input: &Path) -> Config {
    let mut c = Config { data_dir: root.join("data"), ..Config::default() };
    c.source.input = input.to_path_buf();
    c.model.manifest = repo().join("models/manifest.toml");
    c.model.path = repo().join("models/efficientnet_lite0.onnx");
    c.model.ort_library = repo().join("models/onnxruntime/libonnxruntime.so");
    c.fetch.allow_private_networks = true;
    c.http.listen = "127.0.0.1:0".into();
    c.fetch.timeout_ms = 5_000;
    c.retry.initial_ms = 10;
    c.retry.max_ms = 50;
    c.retry.max_attempts = 2;
    c
}

/// Serve `dir` over HTTP on 127.0.0.1 (random port) for the life of the test runtime.
pub async fn serve_dir(dir: &Path) -> SocketAddr {
    let app = axum::Router::new().fallback_service(tower_http::services::ServeDir::new(dir));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind 127.0.0.1");
    let addr = listener.local_addr().expect("local addr");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    addr
}

/// Brute-force top-k over `catalogue` for an ad vector and filter.
pub fn oracle(catalogue: &[ProductRecord], ad_vector: &[f32], filter: &AdFilter, k: usize) -> Vec<ListItem> {
    adrec::recommend::brute_force_top_k(catalogue, ad_vector, filter, k)
}

/// Assert a published list equals the oracle's: same ids in the same order,
/// scores within 1e-4 (the engine and the test sum floats in different orders).
pub fn assert_same_list(ad_id: &str, published: &[ListItem], expected: &[ListItem]) {
    let ids = |l: &[ListItem]| l.iter().map(|i| i.product_id.clone()).collect::<Vec<_>>();
    assert_eq!(ids(published), ids(expected), "ad {ad_id}: published list differs from the brute-force top-k");
    for (p, e) in published.iter().zip(expected) {
        assert!(
            (p.score - e.score).abs() < 1e-4,
            "ad {ad_id}: {} scored {} vs oracle {}",
            p.product_id,
            p.score,
            e.score
        );
    }
}

/// Assert that `new`, published after `prev` for the same ad, has a higher
/// version and a different list (ids, or a score by more than 1e-4): nothing
/// is republished unchanged. Written out here rather than calling the
/// engine's own comparison, so the test does not trust what it checks.
pub fn assert_republished_changed(ad_id: &str, prev: &RecommendationList, new: &RecommendationList) {
    assert!(new.version > prev.version, "ad {ad_id}: version {} after {}", new.version, prev.version);
    let same = prev.items.len() == new.items.len()
        && prev
            .items
            .iter()
            .zip(&new.items)
            .all(|(a, b)| a.product_id == b.product_id && (a.score - b.score).abs() <= 1e-4);
    assert!(!same, "ad {ad_id}: version {} republished an unchanged list", new.version);
}
