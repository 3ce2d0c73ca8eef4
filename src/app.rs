//! Wiring: builds the configured source, stages and sink, and runs them
//! until the input ends or a shutdown signal arrives.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result};
use tokio_util::sync::CancellationToken;

use crate::config::{Backend, Config, StoreKind};
use crate::embed::Embedder;
use crate::embed::model::{ModelSpec, OrtEmbedder, SessionOptions};
use crate::fetch::Fetcher;
use crate::pipeline::{Pipeline, Stats};
use crate::recommend::Recommender;
use crate::records::AdRecord;
use crate::sink::ListSink;
use crate::sink::files::FileSink;
use crate::sink::kafka::KafkaSink;
use crate::source::EventSource;
use crate::source::files::FileSource;
use crate::source::kafka::KafkaSource;
use crate::store::VectorStore;
use crate::store::edge::EdgeStore;

/// Load the configured embedder.
pub fn load_embedder(config: &Config) -> Result<Arc<dyn Embedder>> {
    let spec = ModelSpec::from_manifest(&config.model.manifest)?;
    let embedder = OrtEmbedder::load(
        &config.model.ort_library,
        &config.model.path,
        spec,
        &session_options(&config.model),
        config.fetch.max_image_side,
    )?;
    Ok(Arc::new(embedder))
}

/// ONNX Runtime session settings from `[model]`.
pub fn session_options(model: &crate::config::ModelConfig) -> SessionOptions {
    SessionOptions {
        intra_threads: model.intra_threads,
        sessions: model.session_count(),
        optimization: model.graph_optimization,
    }
}

/// The product and ad collections of the configured store, for `dim`-sized vectors.
pub fn open_stores(
    config: &Config,
    model_id: &str,
    dim: usize,
) -> Result<(Arc<dyn VectorStore>, Arc<dyn VectorStore>)> {
    match config.store.kind {
        StoreKind::Edge => {
            // One collection per embedding space: a new model never mixes with old vectors.
            let base = config.store_dir().join(sanitize(model_id));
            std::fs::create_dir_all(&base).with_context(|| format!("creating {}", base.display()))?;
            let products = EdgeStore::open(&base.join("products"), dim)?;
            let ads = EdgeStore::open(&base.join("ads"), dim)?;
            Ok((Arc::new(products), Arc::new(ads)))
        }
        StoreKind::Qdrant => {
            use crate::store::qdrant::{IndexKind, QdrantStore, collection_name};
            let st = &config.store;
            let settings = |role: &str, indexes: Vec<(String, IndexKind)>| -> Result<_> {
                Ok(crate::store::qdrant::QdrantSettings {
                    url: st.url.clone(),
                    api_key: st.resolved_api_key()?,
                    collection: collection_name(&st.collection_prefix, model_id, role),
                    dim,
                    timeout: std::time::Duration::from_millis(st.timeout_ms),
                    connect_timeout: std::time::Duration::from_millis(st.connect_timeout_ms),
                    indexes,
                })
            };
            // Index the product fields ad filters match on (records::store_filter).
            let mut indexes = vec![("in_stock".to_string(), IndexKind::Bool)];
            indexes.extend(st.indexed_attributes.iter().map(|(name, kind)| {
                let kind = match kind {
                    crate::config::AttributeKind::Keyword => IndexKind::Keyword,
                    crate::config::AttributeKind::Integer => IndexKind::Integer,
                };
                (format!("attributes.{name}"), kind)
            }));
            let products = QdrantStore::connect_blocking(&settings("products", indexes)?)?;
            let ads = QdrantStore::connect_blocking(&settings("ads", Vec::new())?)?;
            Ok((Arc::new(products), Arc::new(ads)))
        }
    }
}

/// Product and ad stores of the embedding space in use (identity until `adrec refit`).
pub fn open_current_stores(config: &Config) -> Result<(Arc<dyn VectorStore>, Arc<dyn VectorStore>)> {
    let space = crate::adapt::current_space(config, &crate::adapt::raw_spec(config)?)?;
    let stores = crate::adapt::open_space(config, &space)?;
    Ok((stores.products, stores.ads))
}

/// A model or space id as a directory name.
pub fn sanitize(id: &str) -> String {
    id.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.' { c } else { '_' }).collect()
}

/// The configured sink and source. Kafka clients are created here, so an
/// unknown librdkafka property fails the start, not the first message.
pub async fn open_io(config: &Config) -> Result<(Arc<dyn ListSink>, Box<dyn EventSource>)> {
    Ok(match config.source.kind {
        Backend::Files => (
            Arc::new(FileSink::open(&config.output_dir())?),
            Box::new(FileSource::open(&config.source.input, &config.data_dir, config.events.max_payload_bytes)?),
        ),
        Backend::Kafka => {
            let sink = KafkaSink::new(&config.kafka)?;
            if config.kafka.create_topics {
                crate::kafka::ensure_output_topics(&config.kafka).await?;
            }
            crate::kafka::check_output_partitions(&config.kafka)?;
            (Arc::new(sink), Box::new(KafkaSource::new(&config.kafka, &config.data_dir)?))
        }
    })
}

/// Build (without connecting) the clients the config describes, so that
/// unknown or invalid librdkafka properties are reported.
pub fn check_clients(config: &Config) -> Result<()> {
    if config.source.kind == Backend::Kafka {
        KafkaSink::new(&config.kafka)?;
        let _: rdkafka::consumer::BaseConsumer = crate::kafka::consumer_config(&config.kafka, &config.kafka.group_id)
            .create()
            .map_err(crate::kafka::setup_error)?;
    }
    Ok(())
}

/// What a finished run reports.
pub struct RunReport {
    /// Counters.
    pub stats: Stats,
    /// Live ads with their lists, by ad id.
    pub ads: Vec<AdRecord>,
    /// Where the lists were written.
    pub output_dir: PathBuf,
    /// Where the vector store lives.
    pub store_dir: PathBuf,
}

/// Run the worker with `config` until its input ends or `shutdown` fires.
pub async fn run(config: Config, shutdown: CancellationToken) -> Result<RunReport> {
    // The catalogue-adapted space in use (README "Recommendation quality").
    let embedder = crate::adapt::configured_embedder(&config, load_embedder(&config)?);
    let space = crate::adapt::current_space(&config, &crate::adapt::raw_spec(&config)?)?;
    let stores = crate::adapt::open_space(&config, &space)?;
    let space_writer = stores.writer();
    let products = crate::store::metered::MeteredStore::wrap(stores.products.clone(), "products");
    let ads_store = crate::store::metered::MeteredStore::wrap(stores.ads.clone(), "ads");
    let output_dir = config.output_dir();
    let (sink, source) = open_io(&config).await?;
    let mut source: Box<dyn EventSource> = Box::new(crate::source::metered::MeteredSource::new(source));
    // The preview's live view sees every list the sink accepted, seeded with what it already holds.
    let live = crate::preview::view::LiveLists::default();
    if config.sink.kind == Backend::Files {
        live.seed(FileSink::open(&output_dir)?.stored_lists());
    }
    let sink: Arc<dyn ListSink> = Arc::new(crate::sink::live::LiveSink::new(
        Arc::new(crate::sink::metered::MeteredSink::new(sink)),
        live.clone(),
    ));
    let ads_store_view = ads_store.clone();
    let mut recommender =
        Recommender::load(products.clone(), ads_store, sink.clone(), config.recommend.clone(), space.id().to_string())
            .await?;
    if config.source.kind == Backend::Kafka {
        // Lists are written by the owner of their ad's partition only.
        recommender.own_nothing();
    }
    let fetcher = Fetcher::new(&config.fetch)?;
    let store_dir = config.store_dir();
    tracing::info!(
        model = space.id(),
        input = %config.source.input.display(),
        output = %output_dir.display(),
        store = %store_dir.display(),
        "adrec worker starting"
    );
    let ready = crate::http::Readiness::default();
    if !config.http.listen.is_empty() {
        let catalog = Arc::new(crate::preview::catalog::StoreCatalog::new(&products, &ads_store_view));
        let preview = crate::preview::router(live.clone(), catalog);
        crate::http::serve_with(&config.http.listen, ready.clone(), preview).await;
    }
    ready.set(true);
    let mut pipeline = Pipeline::new(config, fetcher, embedder, products, sink, recommender).with_space(space_writer);
    pipeline.run(source.as_mut(), shutdown).await?;
    let stats = pipeline.stats.clone();
    tracing::info!(?stats, "adrec worker stopped");
    let ads = pipeline.recommender.live_ads().cloned().collect();
    Ok(RunReport { stats, ads, output_dir, store_dir })
}

/// Cancel `token` on SIGINT or SIGTERM (the in-flight record finishes first).
pub fn cancel_on_signals(token: CancellationToken) {
    tokio::spawn(async move {
        let ctrl_c = tokio::signal::ctrl_c();
        #[cfg(unix)]
        {
            let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(e) => {
                    tracing::error!(error = %e, "cannot listen for SIGTERM");
                    let _ = ctrl_c.await;
                    token.cancel();
                    return;
                }
            };
            tokio::select! {
                _ = ctrl_c => {}
                _ = term.recv() => {}
            }
        }
        #[cfg(not(unix))]
        let _ = ctrl_c.await;
        tracing::info!("shutdown requested: finishing the in-flight record");
        token.cancel();
    });
}

/// Human-readable end-of-run summary: counters, each ad's top `top`, and paths.
pub fn format_report(report: &RunReport, top: usize) -> String {
    use std::fmt::Write;
    let s = &report.stats;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "\nprocessed {} events: {} applied, {} stale, {} dead-lettered; {} images embedded; {} lists published",
        s.records, s.applied, s.stale, s.dead_lettered, s.images_embedded, s.lists_published
    );
    for ad in &report.ads {
        let _ = writeln!(out, "\nad {} (v{}, {} items):", ad.ad_id, ad.version, ad.items.len());
        for (rank, item) in ad.items.iter().take(top).enumerate() {
            let _ = writeln!(out, "  {:>2}. {:<32} {:.4}", rank + 1, item.product_id, item.score);
        }
    }
    let _ = writeln!(
        out,
        "\nfull lists:   {}/lists/<ad>.json (history: {}/lists.jsonl)",
        report.output_dir.display(),
        report.output_dir.display()
    );
    let _ = writeln!(out, "dead letters: {}/dlq.jsonl", report.output_dir.display());
    let _ = writeln!(out, "vector store: {}", report.store_dir.display());
    out
}

/// Each ad's current list from a files-sink directory, top `top` items each.
pub fn format_lists_dir(output_dir: &std::path::Path, top: usize) -> Result<String> {
    use std::fmt::Write;
    let dir = output_dir.join("lists");
    let mut entries: Vec<_> = std::fs::read_dir(&dir)
        .with_context(|| format!("reading {}; run `adrec run` first", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    entries.sort();
    let mut out = String::new();
    for path in entries {
        let text = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
        let list: crate::events::RecommendationList =
            serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
        let _ = writeln!(out, "ad {} (v{}, {} items):", list.ad_id, list.version, list.items.len());
        for (rank, item) in list.items.iter().take(top).enumerate() {
            let _ = writeln!(out, "  {:>2}. {:<32} {:.4}", rank + 1, item.product_id, item.score);
        }
    }
    Ok(out)
}
