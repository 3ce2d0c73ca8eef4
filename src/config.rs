//! Typed configuration: a TOML file plus `ADREC_*` environment overrides,
//! validated once at start so that a bad setting fails fast with a message
//! that names the key and the fix.
//!
//! Nested keys are overridden with a double underscore:
//! `ADREC_FETCH__TIMEOUT_MS=2000` sets `fetch.timeout_ms`.

use std::path::{Path, PathBuf};

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Serialize};

/// Default config file used by every subcommand unless `--config` says otherwise.
pub const DEFAULT_CONFIG: &str = "config/local.toml";

/// Errors loading or validating the configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file is missing, unreadable, or a value has the wrong type.
    #[error("cannot load config: {0}")]
    Load(String),
    /// A value is well-typed but not usable.
    #[error("invalid config `{key}`: {reason}")]
    Invalid { key: &'static str, reason: String },
}

/// The whole worker configuration.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Directory for the embedded store, file-source offsets and outputs.
    pub data_dir: PathBuf,
    /// Where events come from.
    pub source: SourceConfig,
    /// Where recommendation lists and dead letters go.
    pub sink: SinkConfig,
    /// Which vector store backs products and ads.
    pub store: StoreConfig,
    /// The image model.
    pub model: ModelConfig,
    /// Image download limits and URL policy.
    pub fetch: FetchConfig,
    /// Recommendation list settings.
    pub recommend: RecommendConfig,
    /// Event validation limits.
    pub events: EventLimits,
    /// Retry policy for transient failures.
    pub retry: RetryConfig,
    /// Logging.
    pub log: LogConfig,
    /// Kafka connection, topics and client properties (kafka source/sink).
    pub kafka: KafkaConfig,
    /// Operator HTTP endpoints.
    pub http: HttpConfig,
    /// Catalogue-adapted embedding (colour features, fitted whitening).
    pub adapt: AdaptConfig,
    /// `adrec backfill` settings.
    pub backfill: BackfillConfig,
    /// Concurrency of the record pipeline.
    pub pipeline: PipelineConfig,
}

/// Concurrency of the record pipeline.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PipelineConfig {
    /// Records whose image is downloaded and embedded ahead of time, in
    /// parallel; effects are still applied one at a time in input order.
    /// Bounds memory (about one image body each). 1 = strictly sequential.
    /// The default matches `model.batch_size` (16) so that the images of
    /// concurrent records can fill a micro-batch; finished records are
    /// acknowledged at once, whatever is still read ahead.
    pub max_in_flight: usize,
}

impl Default for PipelineConfig {
    fn default() -> Self {
        Self { max_in_flight: 16 }
    }
}

/// Catalogue-adapted embedding: what is added to the model's features and
/// how `adrec refit` fits its transform. Changing a key changes the space id.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AdaptConfig {
    /// Weight of the foreground colour histogram next to the model features
    /// (0 = model features only).
    pub colour_weight: f32,
    /// Histogram bins per RGB channel (bins³ values).
    pub colour_bins: u32,
    /// Below this many stored products `adrec refit` keeps (or returns to) the identity.
    pub min_catalogue: usize,
    /// Principal components the whitening keeps.
    pub dims: usize,
    /// Eigenvalue shrinkage toward their mean, 0 (full whitening) to 1 (none).
    pub shrinkage: f32,
}

impl Default for AdaptConfig {
    fn default() -> Self {
        Self { colour_weight: 1.0, colour_bins: 8, min_catalogue: 1000, dims: 512, shrinkage: 0.1 }
    }
}

/// `adrec backfill` settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BackfillConfig {
    /// Images read and embedded at once (bounds memory).
    pub concurrency: usize,
    /// Products written to the store per upsert.
    pub batch: usize,
    /// Seconds between progress log lines when stderr is not a terminal.
    pub log_every_s: u64,
}

impl Default for BackfillConfig {
    fn default() -> Self {
        Self { concurrency: 4, batch: 64, log_every_s: 10 }
    }
}

/// Operator HTTP endpoints (`/healthz`, `/readyz`, `/metrics`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpConfig {
    /// Address to bind, e.g. `127.0.0.1:9400`; empty disables the endpoints.
    pub listen: String,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self { listen: "127.0.0.1:9400".into() }
    }
}

impl Default for Config {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("data"),
            source: SourceConfig::default(),
            sink: SinkConfig::default(),
            store: StoreConfig::default(),
            model: ModelConfig::default(),
            fetch: FetchConfig::default(),
            recommend: RecommendConfig::default(),
            events: EventLimits::default(),
            retry: RetryConfig::default(),
            log: LogConfig::default(),
            kafka: KafkaConfig::default(),
            http: HttpConfig::default(),
            adapt: AdaptConfig::default(),
            backfill: BackfillConfig::default(),
            pipeline: PipelineConfig::default(),
        }
    }
}

/// Event source selection.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SourceConfig {
    /// `files` (embedded default) or `kafka`.
    pub kind: Backend,
    /// A directory holding `products.jsonl` and/or `ads.jsonl`, a single
    /// `.jsonl` file, or `-` for stdin (files source only).
    pub input: PathBuf,
}

impl Default for SourceConfig {
    fn default() -> Self {
        Self { kind: Backend::Files, input: PathBuf::from("data/demo/events") }
    }
}

/// Which backend carries events in or out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// Local JSONL files (or stdin).
    Files,
    /// A Kafka cluster.
    Kafka,
}

/// Sink selection.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SinkConfig {
    /// `files` (embedded default) or `kafka`.
    pub kind: Backend,
    /// Output directory for `lists.jsonl`, `lists/<ad>.json` and `dlq.jsonl`
    /// (files sink); relative paths are under `data_dir`.
    pub output_dir: PathBuf,
}

impl Default for SinkConfig {
    fn default() -> Self {
        Self { kind: Backend::Files, output_dir: PathBuf::from("out") }
    }
}

/// Vector store selection.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StoreConfig {
    /// `edge` (embedded Qdrant engine under `data_dir/store`) or `qdrant` (a Qdrant server).
    pub kind: StoreKind,
    /// Qdrant gRPC endpoint (`kind = "qdrant"`); `https://` turns on TLS.
    pub url: String,
    /// Qdrant API key; prefer `ADREC_STORE__API_KEY` or `api_key_file`. Never printed.
    pub api_key: Option<Secret>,
    /// File holding the Qdrant API key (e.g. a mounted secret); surrounding whitespace is ignored.
    pub api_key_file: Option<PathBuf>,
    /// Collections are `<prefix><model id>_products` and `<prefix><model id>_ads`.
    pub collection_prefix: String,
    /// Deadline of one Qdrant request, milliseconds.
    pub timeout_ms: u64,
    /// Deadline for connecting to Qdrant, milliseconds.
    pub connect_timeout_ms: u64,
    /// Product attributes ad filters use, to index in Qdrant: name → `keyword` or `integer`
    /// (`in_stock` is always indexed).
    pub indexed_attributes: std::collections::BTreeMap<String, AttributeKind>,
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            kind: StoreKind::Edge,
            url: "http://localhost:6334".into(),
            api_key: None,
            api_key_file: None,
            collection_prefix: "adrec_".into(),
            timeout_ms: 30_000,
            connect_timeout_ms: 5_000,
            indexed_attributes: Default::default(),
        }
    }
}

impl StoreConfig {
    /// The Qdrant API key from `api_key` or `api_key_file`, if any.
    pub fn resolved_api_key(&self) -> Result<Option<String>, ConfigError> {
        if let Some(key) = &self.api_key {
            // An empty ADREC_STORE__API_KEY means "no key", not an empty header.
            return Ok(Some(key.expose().trim().to_string()).filter(|k| !k.is_empty()));
        }
        let Some(path) = &self.api_key_file else { return Ok(None) };
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Invalid {
            key: "store.api_key_file",
            reason: format!("cannot read {}: {e}", path.display()),
        })?;
        Ok(Some(text.trim().to_string()).filter(|k| !k.is_empty()))
    }
}

/// A secret string: deserialized normally, shown and serialized as `<redacted>`.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// The secret itself (only for sending it where it belongs).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

impl Serialize for Secret {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str("<redacted>")
    }
}

/// Type of an indexed product attribute.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AttributeKind {
    /// String values.
    Keyword,
    /// Integer values.
    Integer,
}

/// Which vector store to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StoreKind {
    /// In-process Qdrant engine on local disk.
    Edge,
    /// A Qdrant server (or cluster) over gRPC.
    Qdrant,
}

/// Model files and inference settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ModelConfig {
    /// `models/manifest.toml`: model id, input size, mean/std, output name.
    pub manifest: PathBuf,
    /// The ONNX model file written by `models/fetch`.
    pub path: PathBuf,
    /// The ONNX Runtime shared library written by `models/fetch`.
    pub ort_library: PathBuf,
    /// Threads ONNX Runtime may use inside one inference call.
    pub intra_threads: usize,
    /// ONNX Runtime sessions run in parallel; 0 = cores / intra_threads (at least 1).
    pub sessions: usize,
    /// ONNX Runtime graph optimisation: `disable`, `basic`, `extended`, `layout` or `all`.
    pub graph_optimization: GraphOptimization,
    /// Most images per inference call (the micro-batcher's B).
    pub batch_size: usize,
    /// Longest a batch waits for more images once it has one, milliseconds (T).
    pub batch_wait_ms: u64,
}

/// ONNX Runtime graph optimisation level.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum GraphOptimization {
    /// No graph rewrites.
    Disable,
    /// Redundant-node removal and constant folding.
    Basic,
    /// Plus node fusions.
    Extended,
    /// Plus memory-layout (NCHWc) transforms.
    Layout,
    /// Everything the runtime offers (Python onnxruntime's default).
    All,
}

impl ModelConfig {
    /// Sessions to create: `sessions`, or as many as the cores allow at `intra_threads` each.
    pub fn session_count(&self) -> usize {
        match self.sessions {
            0 => {
                let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
                (cores / self.intra_threads.max(1)).max(1)
            }
            n => n,
        }
    }
}

impl Default for ModelConfig {
    fn default() -> Self {
        Self {
            manifest: PathBuf::from("models/manifest.toml"),
            path: PathBuf::from("models/efficientnet_lite0.onnx"),
            ort_library: PathBuf::from("models/onnxruntime/libonnxruntime.so"),
            intra_threads: 2,
            sessions: 0,
            graph_optimization: GraphOptimization::All,
            batch_size: 16,
            batch_wait_ms: 5,
        }
    }
}

/// Image download limits and URL policy.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FetchConfig {
    /// Whole-request deadline (connect + headers + body), milliseconds.
    pub timeout_ms: u64,
    /// Connect timeout, milliseconds.
    pub connect_timeout_ms: u64,
    /// Largest accepted image body, bytes.
    pub max_bytes: u64,
    /// Redirects followed before giving up.
    pub max_redirects: usize,
    /// Allow `file://` URLs (operator-controlled inputs only).
    pub allow_file_urls: bool,
    /// Allow loopback/private/link-local targets (local demos and tests only).
    pub allow_private_networks: bool,
    /// Largest accepted decoded image side, pixels (guards decompression bombs).
    pub max_image_side: u32,
}

impl Default for FetchConfig {
    fn default() -> Self {
        Self {
            timeout_ms: 10_000,
            connect_timeout_ms: 3_000,
            max_bytes: 20 * 1024 * 1024,
            max_redirects: 5,
            allow_file_urls: false,
            allow_private_networks: false,
            max_image_side: 12_000,
        }
    }
}

/// Recommendation list settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RecommendConfig {
    /// List length when an ad does not say `k`.
    pub default_k: usize,
    /// Largest `k` an ad may ask for.
    pub max_k: usize,
    /// Score changes at or below this do not republish a list.
    pub score_epsilon: f32,
    /// Candidates kept per ad = factor × k; more means fewer store queries
    /// after removals, at the cost of memory.
    pub buffer_factor: usize,
}

impl Default for RecommendConfig {
    fn default() -> Self {
        Self { default_k: 10, max_k: 100, score_epsilon: 1e-4, buffer_factor: 2 }
    }
}

/// Event validation limits.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EventLimits {
    /// Largest accepted event payload, bytes.
    pub max_payload_bytes: usize,
    /// Longest accepted entity id, bytes.
    pub max_id_bytes: usize,
    /// How far in the future `updated_at` may be, seconds.
    pub max_future_skew_s: i64,
}

impl Default for EventLimits {
    fn default() -> Self {
        Self { max_payload_bytes: 64 * 1024, max_id_bytes: 256, max_future_skew_s: 24 * 3600 }
    }
}

/// Capped exponential backoff with jitter for transient failures.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RetryConfig {
    /// First delay, milliseconds.
    pub initial_ms: u64,
    /// Largest delay, milliseconds.
    pub max_ms: u64,
    /// Attempts before a transient failure is treated as permanent (0 = retry forever).
    pub max_attempts: usize,
}

impl Default for RetryConfig {
    fn default() -> Self {
        Self { initial_ms: 200, max_ms: 30_000, max_attempts: 0 }
    }
}

/// Logging settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    /// `tracing` filter, e.g. `info` or `adrec=debug`; `RUST_LOG` wins when set.
    pub level: String,
    /// One JSON object per log line instead of human-readable text.
    pub json: bool,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self { level: "info".into(), json: false }
    }
}

/// Kafka connection, topics and client properties.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct KafkaConfig {
    /// `bootstrap.servers`: comma-separated host:port list.
    pub bootstrap_servers: String,
    /// Consumer group shared by all workers of one deployment.
    pub group_id: String,
    /// `client.id` reported to the brokers.
    pub client_id: String,
    /// Input: product events (key = product id).
    pub products_topic: String,
    /// Input: ad-creative events (key = ad id).
    pub ads_topic: String,
    /// Output: one list per ad (key = ad id), compacted.
    pub output_topic: String,
    /// Output: records that can never succeed, with the reason in headers.
    pub dlq_topic: String,
    /// Consumer group session timeout; a dead worker's partitions move after this.
    pub session_timeout_ms: u64,
    /// How often finished offsets are committed (also on revoke and shutdown).
    pub commit_interval_ms: u64,
    /// Create the output (compacted) and DLQ topics at start if missing.
    pub create_topics: bool,
    /// Partitions of topics created by `create_topics`.
    pub create_partitions: i32,
    /// Stop (committing everything) after this long without a message; 0 = run until SIGTERM.
    pub exit_when_idle_ms: u64,
    /// librdkafka properties for every client (security.protocol, sasl.*, ssl.*, ...).
    pub properties: std::collections::BTreeMap<String, String>,
    /// librdkafka properties for the consumer only.
    pub consumer_properties: std::collections::BTreeMap<String, String>,
    /// librdkafka properties for the producer only.
    pub producer_properties: std::collections::BTreeMap<String, String>,
    /// librdkafka properties (for every client) read from files at start,
    /// e.g. `"sasl.password" = "/run/secrets/kafka-password"`; never printed.
    pub secret_files: std::collections::BTreeMap<String, PathBuf>,
    /// librdkafka properties (for every client) read from environment
    /// variables at start, e.g. `"sasl.password" = "KAFKA_PASSWORD"`; never printed.
    pub secret_env: std::collections::BTreeMap<String, String>,
}

impl Default for KafkaConfig {
    fn default() -> Self {
        Self {
            bootstrap_servers: "localhost:9092".into(),
            group_id: "adrec".into(),
            client_id: "adrec".into(),
            products_topic: "catalog.products".into(),
            ads_topic: "ads.creatives".into(),
            output_topic: "ads.recommendations".into(),
            dlq_topic: "adrec.dlq".into(),
            session_timeout_ms: 10_000,
            commit_interval_ms: 1_000,
            create_topics: true,
            create_partitions: 4,
            exit_when_idle_ms: 0,
            properties: Default::default(),
            consumer_properties: Default::default(),
            producer_properties: Default::default(),
            secret_files: Default::default(),
            secret_env: Default::default(),
        }
    }
}

/// librdkafka properties adrec sets itself: overriding them would break its guarantees.
pub const RESERVED_KAFKA_PROPERTIES: [&str; 8] = [
    "bootstrap.servers",
    "group.id",
    "client.id",
    "enable.auto.commit",
    "enable.auto.offset.store",
    "enable.idempotence",
    "acks",
    "isolation.level",
];

impl Config {
    /// Load `path` (must exist), apply `ADREC_*` overrides, validate.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        if !path.exists() {
            return Err(ConfigError::Load(format!(
                "{} does not exist; pass --config with an existing file (see config/local.toml)",
                path.display()
            )));
        }
        let figment = Figment::from(Serialized::defaults(Config::default()))
            .merge(Toml::file(path))
            .merge(Env::prefixed("ADREC_").split("__"));
        let mut config: Config = figment.extract().map_err(|e| ConfigError::Load(e.to_string()))?;
        crate::secrets::resolve(&mut config.kafka)?;
        config.validate()?;
        Ok(config)
    }

    /// Check cross-field rules that types cannot express.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |key, reason: &str| Err(ConfigError::Invalid { key, reason: reason.to_string() });
        if self.recommend.default_k == 0 || self.recommend.default_k > self.recommend.max_k {
            return invalid("recommend.default_k", "must be between 1 and recommend.max_k");
        }
        if self.recommend.buffer_factor == 0 || self.recommend.buffer_factor > 100 {
            return invalid("recommend.buffer_factor", "must be between 1 and 100");
        }
        if self.recommend.max_k > 1000 {
            return invalid("recommend.max_k", "must be at most 1000");
        }
        if self.fetch.max_bytes == 0 {
            return invalid("fetch.max_bytes", "must be positive");
        }
        if self.fetch.timeout_ms == 0 {
            return invalid("fetch.timeout_ms", "must be positive");
        }
        if self.model.intra_threads == 0 {
            return invalid("model.intra_threads", "must be at least 1");
        }
        if self.model.batch_size == 0 || self.model.batch_size > 256 {
            return invalid("model.batch_size", "must be between 1 and 256");
        }
        if self.model.sessions > 64 {
            return invalid("model.sessions", "must be at most 64 (0 = one per intra_threads cores)");
        }
        if self.pipeline.max_in_flight == 0 || self.pipeline.max_in_flight > 4096 {
            return invalid("pipeline.max_in_flight", "must be between 1 and 4096");
        }
        if self.retry.initial_ms == 0 || self.retry.max_ms < self.retry.initial_ms {
            return invalid("retry", "need 0 < initial_ms <= max_ms");
        }
        if self.events.max_id_bytes == 0 {
            return invalid("events.max_id_bytes", "must be positive");
        }
        if self.source.kind != self.sink.kind {
            return invalid("sink.kind", "must equal source.kind (files with files, kafka with kafka)");
        }
        if !(0.0..=1.0).contains(&self.adapt.shrinkage) {
            return invalid("adapt.shrinkage", "must be between 0 and 1");
        }
        if self.adapt.colour_weight < 0.0 || !(2..=16).contains(&self.adapt.colour_bins) {
            return invalid("adapt", "colour_weight must be >= 0 and colour_bins between 2 and 16");
        }
        if self.adapt.dims == 0 || self.backfill.concurrency == 0 || self.backfill.batch == 0 {
            return invalid(
                "adapt.dims/backfill",
                "adapt.dims, backfill.concurrency and backfill.batch must be positive",
            );
        }
        let k = &self.kafka;
        for map in [&k.properties, &k.consumer_properties, &k.producer_properties] {
            if let Some(key) = map.keys().find(|key| RESERVED_KAFKA_PROPERTIES.contains(&key.as_str())) {
                return Err(ConfigError::Invalid {
                    key: "kafka.properties",
                    reason: format!(
                        "`{key}` is set by adrec itself (use the kafka.* keys; delivery guarantees depend on it)"
                    ),
                });
            }
        }
        if self.source.kind == Backend::Kafka && k.bootstrap_servers.trim().is_empty() {
            return invalid("kafka.bootstrap_servers", "must name at least one broker");
        }
        if k.commit_interval_ms == 0 || k.session_timeout_ms == 0 || k.create_partitions < 1 {
            return invalid("kafka", "commit_interval_ms, session_timeout_ms and create_partitions must be positive");
        }
        let st = &self.store;
        if st.kind == StoreKind::Qdrant {
            if !(st.url.starts_with("http://") || st.url.starts_with("https://")) {
                return invalid("store.url", "must be the Qdrant gRPC endpoint, http://host:6334 or https://host:6334");
            }
            if st.api_key.is_some() && st.api_key_file.is_some() {
                return invalid("store.api_key", "set either store.api_key or store.api_key_file, not both");
            }
            if st.timeout_ms == 0 || st.connect_timeout_ms == 0 {
                return invalid("store", "timeout_ms and connect_timeout_ms must be positive");
            }
        }
        Ok(())
    }

    /// Directory of the embedded vector store.
    pub fn store_dir(&self) -> PathBuf {
        self.data_dir.join("store")
    }

    /// Output directory of the files sink.
    pub fn output_dir(&self) -> PathBuf {
        self.data_dir.join(&self.sink.output_dir)
    }

    /// Effective config as TOML (for `check-config`).
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).unwrap_or_else(|e| format!("# cannot render config: {e}"))
    }
}

#[cfg(test)]
// figment's Jail closures return its large error type; not ours to shrink.
#[allow(clippy::result_large_err)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        Config::default().validate().expect("defaults must validate");
    }

    #[test]
    fn env_overrides_nested_keys() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("c.toml");
        std::fs::write(&path, "data_dir = \"x\"\n[fetch]\ntimeout_ms = 5\n").expect("write");
        figment::Jail::expect_with(|jail| {
            jail.set_env("ADREC_DATA_DIR", "/tmp/elsewhere");
            jail.set_env("ADREC_FETCH__MAX_BYTES", "1234");
            let c = Config::load(&path).expect("load");
            assert_eq!(c.data_dir, PathBuf::from("/tmp/elsewhere"));
            assert_eq!(c.fetch.max_bytes, 1234);
            assert_eq!(c.fetch.timeout_ms, 5);
            Ok(())
        });
    }

    #[test]
    fn unknown_key_is_rejected() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("c.toml");
        std::fs::write(&path, "[fetch]\ntimeout = 5\n").expect("write");
        let err = Config::load(&path).expect_err("unknown key");
        assert!(err.to_string().contains("timeout"), "{err}");
    }

    #[test]
    fn qdrant_api_key_from_env_is_never_printed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("c.toml");
        std::fs::write(&path, "[store]\nkind = \"qdrant\"\nurl = \"http://qdrant:6334\"\n").expect("write");
        figment::Jail::expect_with(|jail| {
            jail.set_env("ADREC_STORE__API_KEY", "s3cret-key");
            let c = Config::load(&path).expect("load");
            assert_eq!(c.store.resolved_api_key().expect("key").as_deref(), Some("s3cret-key"));
            assert!(!c.to_toml().contains("s3cret"), "{}", c.to_toml());
            assert!(!format!("{c:?}").contains("s3cret"));
            Ok(())
        });
    }

    #[test]
    fn qdrant_api_key_from_file_and_url_checked() {
        let dir = tempfile::tempdir().expect("tempdir");
        let key = dir.path().join("key");
        std::fs::write(&key, "from-file\n").expect("write");
        let mut c = Config::default();
        c.store.kind = StoreKind::Qdrant;
        c.store.api_key_file = Some(key);
        c.validate().expect("valid");
        assert_eq!(c.store.resolved_api_key().expect("key").as_deref(), Some("from-file"));
        c.store.url = "qdrant:6334".into();
        let err = c.validate().expect_err("no scheme");
        assert!(err.to_string().contains("store.url"), "{err}");
    }

    #[test]
    fn bad_k_names_the_key() {
        let mut c = Config::default();
        c.recommend.default_k = 0;
        let err = c.validate().expect_err("k=0");
        assert!(err.to_string().contains("recommend.default_k"), "{err}");
    }
}
