//! Logs and metrics: `tracing` to stderr, and every metric the worker
//! reports named once here (Prometheus text on `/metrics`).

use std::sync::OnceLock;
use std::time::Duration;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tracing_subscriber::EnvFilter;

use crate::config::LogConfig;

/// What kind of series a metric is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Only goes up.
    Counter,
    /// Goes up and down.
    Gauge,
    /// Bucketed observations (`_bucket`, `_sum`, `_count`).
    Histogram,
}

/// Every metric: name, kind, help (served as `# HELP`, listed in the README).
pub const METRICS: [(&str, Kind, &str); 18] = [
    (
        "adrec_events_total",
        Kind::Counter,
        "Input records finished, by stream, topic, type and outcome (applied, stale, dead_lettered).",
    ),
    ("adrec_dead_letters_total", Kind::Counter, "Records written to the dead-letter output, by source topic."),
    ("adrec_retries_total", Kind::Counter, "Transient failures retried, by stage (fetch, embed, store, sink)."),
    ("adrec_fetch_seconds", Kind::Histogram, "Image download time."),
    ("adrec_fetch_bytes_total", Kind::Counter, "Image bytes downloaded."),
    ("adrec_embed_seconds", Kind::Histogram, "Image decode and model time per image."),
    ("adrec_embed_batch_size", Kind::Histogram, "Images per model call (micro-batch size)."),
    ("adrec_embed_batch_seconds", Kind::Histogram, "Time of one micro-batch, preprocessing included."),
    ("adrec_store_seconds", Kind::Histogram, "Vector store call time, by collection and op."),
    ("adrec_store_errors_total", Kind::Counter, "Failed vector store calls, by collection and op."),
    ("adrec_store_queries", Kind::Gauge, "Similarity searches issued by list maintenance since start."),
    (
        "adrec_sink_seconds",
        Kind::Histogram,
        "Time to make a list or dead letter durable, by op (publish, dead_letter, latest).",
    ),
    ("adrec_lists_published_total", Kind::Counter, "Lists and tombstones published."),
    (
        "adrec_consumer_lag",
        Kind::Gauge,
        "Kafka messages on the broker not yet read by this worker, by topic and partition.",
    ),
    ("adrec_in_flight_records", Kind::Gauge, "Records read from the source and not yet acknowledged."),
    ("adrec_rebuild_ads", Kind::Gauge, "Ads whose candidate buffers the running rebuild has still to fill."),
    ("adrec_preview_clients", Kind::Gauge, "Open live connections of the preview page."),
    ("adrec_live_lists", Kind::Gauge, "Ad lists held by the preview's live view."),
];

/// Stages a retry can come from.
const RETRY_STAGES: [&str; 4] = ["fetch", "embed", "store", "sink"];
/// Store collections and operations (for zero-initialised error counters).
const STORE_COLLECTIONS: [&str; 2] = ["products", "ads"];
const STORE_OPS: [&str; 6] = ["upsert", "delete", "retrieve", "search", "scroll", "count"];

/// Describe every metric and start counters and gauges at zero, so a scrape
/// shows them (with their type) before anything happened.
fn register() {
    for (name, kind, help) in METRICS {
        match kind {
            Kind::Counter => metrics::describe_counter!(name, help),
            Kind::Gauge => metrics::describe_gauge!(name, help),
            Kind::Histogram => metrics::describe_histogram!(name, help),
        }
    }
    for stage in RETRY_STAGES {
        metrics::counter!("adrec_retries_total", "stage" => stage).absolute(0);
    }
    for collection in STORE_COLLECTIONS {
        for op in STORE_OPS {
            metrics::counter!("adrec_store_errors_total", "collection" => collection, "op" => op).absolute(0);
        }
    }
    metrics::counter!("adrec_fetch_bytes_total").absolute(0);
    metrics::counter!("adrec_lists_published_total").absolute(0);
    store_queries(0);
    in_flight(0);
    rebuild_remaining(0);
    live_lists(0);
    preview_clients(0.0);
}

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

/// Latency buckets (seconds) for every `_seconds` histogram: 1 ms to 30 s.
const SECONDS_BUCKETS: [f64; 14] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];
/// Buckets for the micro-batch size histogram (images per model call).
const BATCH_BUCKETS: [f64; 8] = [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0];

/// The process-wide Prometheus recorder (installed on first use).
pub fn prometheus() -> Option<&'static PrometheusHandle> {
    static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            // Buckets rather than the exporter's default summaries: histograms aggregate across workers.
            let builder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &SECONDS_BUCKETS)
                .and_then(|b| b.set_buckets_for_metric(Matcher::Full("adrec_embed_batch_size".into()), &BATCH_BUCKETS))
                .and_then(PrometheusBuilder::install_recorder);
            match builder {
                Ok(handle) => {
                    register();
                    Some(handle)
                }
                Err(e) => {
                    tracing::warn!(error = %e, "metrics recorder not installed");
                    None
                }
            }
        })
        .as_ref()
}

/// One input record finished: `stream` products/ads/mixed, `topic` its topic
/// (or file), `event_type` e.g. `product.upserted` (see [`crate::peek::type_label`]),
/// `outcome` applied/stale/dead_lettered.
pub fn record_done(stream: &'static str, topic: &str, event_type: &'static str, outcome: &'static str) {
    metrics::counter!("adrec_events_total", "stream" => stream, "topic" => topic.to_string(), "type" => event_type, "outcome" => outcome)
        .increment(1);
}

/// A record was written to the dead-letter output.
pub fn dead_lettered(topic: &str) {
    metrics::counter!("adrec_dead_letters_total", "topic" => topic.to_string()).increment(1);
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

/// A vector store call finished (`ok` false: it failed).
pub fn store_call(collection: &'static str, op: &'static str, took: Duration, ok: bool) {
    metrics::histogram!("adrec_store_seconds", "collection" => collection, "op" => op).record(took.as_secs_f64());
    if !ok {
        metrics::counter!("adrec_store_errors_total", "collection" => collection, "op" => op).increment(1);
    }
}

/// A sink call finished (`op` publish/dead_letter).
pub fn sink_call(op: &'static str, took: Duration) {
    metrics::histogram!("adrec_sink_seconds", "op" => op).record(took.as_secs_f64());
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

/// Messages of a Kafka partition not yet read by this worker.
pub fn consumer_lag(topic: &str, partition: i32, lag: i64) {
    metrics::gauge!("adrec_consumer_lag", "topic" => topic.to_string(), "partition" => partition.to_string())
        .set(lag as f64);
}

/// Records read but not yet acknowledged.
pub fn in_flight(count: usize) {
    metrics::gauge!("adrec_in_flight_records").set(count as f64);
}

/// Ads the running rebuild still has to fill (0 when none runs).
pub fn rebuild_remaining(count: usize) {
    metrics::gauge!("adrec_rebuild_ads").set(count as f64);
}

/// Open live preview connections changed by `delta`.
pub fn preview_clients(delta: f64) {
    metrics::gauge!("adrec_preview_clients").increment(delta);
}

/// Lists held by the preview's live view.
pub fn live_lists(count: usize) {
    metrics::gauge!("adrec_live_lists").set(count as f64);
}
