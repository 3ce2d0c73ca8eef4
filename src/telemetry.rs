//! Logs and metrics: `tracing` to stderr, and every metric the worker
//! reports named once here (Prometheus text on `/metrics`).

use std::sync::OnceLock;
use std::time::Duration;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tracing_subscriber::EnvFilter;

use crate::config::LogConfig;

/// Install the global subscriber (`RUST_LOG` overrides `log.level`).
pub fn init(config: &LogConfig) {
    // The embedded Qdrant engine logs routine housekeeping at info/warn; keep it to errors
    // unless RUST_LOG asks for more.
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new(format!("qdrant_edge=error,segment=error,{}", config.level)));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    // A second init (tests) keeps the first subscriber.
    let _ = if config.json { builder.json().try_init() } else { builder.try_init() };
}

/// The process-wide Prometheus recorder (installed on first use).
pub fn prometheus() -> Option<&'static PrometheusHandle> {
    static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();
    HANDLE
        .get_or_init(|| match PrometheusBuilder::new().install_recorder() {
            Ok(handle) => Some(handle),
            Err(e) => {
                tracing::warn!(error = %e, "metrics recorder not installed");
                None
            }
        })
        .as_ref()
}

/// One input record finished: `stream` products/ads, `outcome` applied/stale/dead_lettered.
pub fn record_done(stream: &'static str, outcome: &'static str) {
    metrics::counter!("adrec_events_total", "stream" => stream, "outcome" => outcome).increment(1);
}

/// A transient failure is being retried.
pub fn retry(stage: &'static str) {
    metrics::counter!("adrec_retries_total", "stage" => stage).increment(1);
}

/// An image was downloaded.
pub fn fetched(bytes: usize, took: Duration) {
    metrics::counter!("adrec_fetch_bytes_total").increment(bytes as u64);
    metrics::histogram!("adrec_fetch_seconds").record(took.as_secs_f64());
}

/// An image was embedded.
pub fn embedded(took: Duration) {
    metrics::histogram!("adrec_embed_seconds").record(took.as_secs_f64());
}

/// One model call over a micro-batch: how many images, and how long it took
/// (preprocessing included).
pub fn embed_batch(size: usize, took: Duration) {
    metrics::histogram!("adrec_embed_batch_size").record(size as f64);
    metrics::histogram!("adrec_embed_batch_seconds").record(took.as_secs_f64());
}

/// A list (or tombstone) was published.
pub fn list_published(count: usize) {
    metrics::counter!("adrec_lists_published_total").increment(count as u64);
}

/// Store queries issued by list maintenance so far.
pub fn store_queries(total: u64) {
    metrics::gauge!("adrec_store_queries").set(total as f64);
}
