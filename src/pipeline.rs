//! The processing pipeline: decode → fetch → embed → store → recommend →
//! sink, one record at a time per source, with the retry/DLQ decision made
//! in one place.
//!
//! A record is acknowledged to its source only after all of its effects
//! (vector stored, affected lists published) are durable, so a crash replays
//! it; every step is idempotent, so a replay changes nothing downstream.

use std::sync::Arc;
use std::time::{Duration, Instant};

use backon::{BackoffBuilder, ExponentialBuilder};
use chrono::{DateTime, Utc};
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::embed::{EmbedError, Embedder};
use crate::events::{self, AdUpsert, EventError, InputEvent, ProductUpsert};
use crate::fetch::{FetchError, Fetcher};
use crate::recommend::{RecommendError, Recommender};
use crate::records::{AdRecord, ProductRecord};
use crate::sink::{DeadLetter, ListSink, SinkError};
use crate::source::{EventSource, OwnershipChange, SourceError, SourceRecord};
use crate::store::{StoreError, VectorStore};
use crate::telemetry;

/// Sleep `delay`; false if shutdown was requested first.
async fn sleep_unless_shutdown(delay: Duration, shutdown: &CancellationToken) -> bool {
    tokio::select! {
        _ = shutdown.cancelled() => false,
        _ = tokio::time::sleep(delay) => true,
    }
}

fn stream_name(record: &SourceRecord) -> &'static str {
    match record.stream {
        crate::events::Stream::Products => "products",
        crate::events::Stream::Ads => "ads",
        crate::events::Stream::Mixed => "mixed",
    }
}

/// Anything that can go wrong handling one record.
#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    /// The record is malformed.
    #[error(transparent)]
    Event(#[from] EventError),
    /// The image could not be downloaded.
    #[error(transparent)]
    Fetch(#[from] FetchError),
    /// The image could not be embedded.
    #[error(transparent)]
    Embed(#[from] EmbedError),
    /// The vector store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The sink failed.
    #[error(transparent)]
    Sink(#[from] SinkError),
    /// The embedding thread died.
    #[error("embedding task failed: {0}")]
    Join(String),
}

impl From<RecommendError> for ProcessError {
    fn from(e: RecommendError) -> Self {
        match e {
            RecommendError::Store(s) => ProcessError::Store(s),
            RecommendError::Sink(s) => ProcessError::Sink(s),
        }
    }
}

impl ProcessError {
    /// Whether retrying the same record may succeed.
    pub fn is_transient(&self) -> bool {
        match self {
            ProcessError::Event(_) => false,
            ProcessError::Fetch(e) => e.is_transient(),
            ProcessError::Embed(e) => e.is_transient(),
            ProcessError::Store(e) => e.is_transient(),
            ProcessError::Sink(e) => e.is_transient(),
            ProcessError::Join(_) => true,
        }
    }

    /// The stage that failed, for metrics.
    fn stage(&self) -> &'static str {
        match self {
            ProcessError::Event(_) => "decode",
            ProcessError::Fetch(_) => "fetch",
            ProcessError::Embed(_) | ProcessError::Join(_) => "embed",
            ProcessError::Store(_) => "store",
            ProcessError::Sink(_) => "sink",
        }
    }

    /// Transient failures of third-party image hosts get a bounded number of
    /// attempts (a dead CDN must not stall a partition forever); our own
    /// infrastructure (store, sink) is retried until it comes back.
    fn gives_up_eventually(&self) -> bool {
        matches!(self, ProcessError::Fetch(_))
    }
}

/// What happened to one record.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Effects applied; `published` lists changed.
    Applied { published: usize },
    /// Older than the stored state: ignored.
    Stale,
    /// Sent to the dead-letter sink with this reason.
    DeadLettered(String),
}

/// Counters of one run.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct Stats {
    /// Records read.
    pub records: u64,
    /// Records whose effects were applied.
    pub applied: u64,
    /// Records ignored as older than stored state.
    pub stale: u64,
    /// Records sent to the DLQ.
    pub dead_lettered: u64,
    /// Lists (and tombstones) published.
    pub lists_published: u64,
    /// Images downloaded and embedded.
    pub images_embedded: u64,
    /// Retries of transient failures.
    pub retries: u64,
}

/// Errors that stop the pipeline (not attributable to one record).
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    /// The source failed.
    #[error(transparent)]
    Source(#[from] SourceError),
    /// The DLQ itself could not be written, even after retries.
    #[error("cannot write dead letter: {0}")]
    DeadLetter(SinkError),
}

/// Wires one source to the processing stages.
pub struct Pipeline {
    fetcher: Fetcher,
    embedder: Arc<dyn Embedder>,
    products: Arc<dyn VectorStore>,
    sink: Arc<dyn ListSink>,
    /// The standing lists (public for summaries and tests).
    pub recommender: Recommender,
    config: Config,
    /// Counters so far.
    pub stats: Stats,
    /// Fitted embedding space new vectors are projected into (`None` = the embedder's own).
    space: Option<Arc<crate::adapt::SpaceWriter>>,
}

impl Pipeline {
    /// Assemble a pipeline from its parts.
    pub fn new(
        config: Config,
        fetcher: Fetcher,
        embedder: Arc<dyn Embedder>,
        products: Arc<dyn VectorStore>,
        sink: Arc<dyn ListSink>,
        recommender: Recommender,
    ) -> Self {
        Self { fetcher, embedder, products, sink, recommender, config, stats: Stats::default(), space: None }
    }

    /// Project new embeddings into a fitted space (keeping the raw ones for refits).
    pub fn with_space(mut self, space: Option<Arc<crate::adapt::SpaceWriter>>) -> Self {
        self.space = space;
        self
    }

    /// Id of the space vectors are written in.
    fn space_id(&self) -> String {
        self.space.as_ref().map_or_else(|| self.embedder.model_id().to_string(), |s| s.space_id().to_string())
    }

    /// Embed an entity's image into the space in use.
    async fn embed_into_space(
        &mut self,
        entity: crate::adapt::Entity,
        id: &str,
        url: &str,
    ) -> Result<Vec<f32>, ProcessError> {
        let raw = self.embed_url(url).await?;
        match &self.space {
            Some(space) => Ok(space.adapt(entity, id, raw).await?),
            None => Ok(raw),
        }
    }

    /// Consume `source` until it ends or `shutdown` fires; every finished
    /// record is acknowledged. An in-flight record is finished first.
    pub async fn run(
        &mut self,
        source: &mut dyn EventSource,
        shutdown: CancellationToken,
    ) -> Result<(), PipelineError> {
        loop {
            let next = tokio::select! {
                _ = shutdown.cancelled() => break,
                next = source.next() => next?,
            };
            let Some(record) = next else { break };
            // Ownership moves before the record: it may belong to a partition just assigned.
            for change in source.take_ownership_changes() {
                if !self.change_ownership(change, &shutdown).await {
                    source.close().await?;
                    return Ok(());
                }
            }
            self.stats.records += 1;
            match self.handle(&record, &shutdown).await? {
                Some(outcome) => {
                    tracing::debug!(topic = %record.topic, offset = record.offset, ?outcome, "record done");
                    source.ack(&record).await?;
                }
                // Shut down mid-retry: leave it unacknowledged so it is replayed.
                None => break,
            }
        }
        source.close().await?;
        Ok(())
    }

    /// Apply an ownership change, retrying until the output can be read.
    /// Returns false if shutdown interrupted it.
    async fn change_ownership(&mut self, change: OwnershipChange, shutdown: &CancellationToken) -> bool {
        let partitions = match change {
            OwnershipChange::Revoked(p) => {
                self.recommender.revoke(&p);
                return true;
            }
            OwnershipChange::Assigned(p) => p,
        };
        let mut delays = self.backoff();
        loop {
            match self.recommender.assign(&partitions).await {
                Ok(()) => return true,
                Err(e) => {
                    let delay = delays.next().unwrap_or(Duration::from_millis(self.config.retry.max_ms));
                    tracing::warn!(error = %e, ?partitions, "cannot read the output to take over partitions; retrying");
                    if !sleep_unless_shutdown(delay, shutdown).await {
                        return false;
                    }
                }
            }
        }
    }

    /// Handle one record to completion: retry transient failures, dead-letter
    /// permanent ones. `None` means shutdown interrupted the retries.
    pub async fn handle(
        &mut self,
        record: &SourceRecord,
        shutdown: &CancellationToken,
    ) -> Result<Option<Outcome>, PipelineError> {
        let now = Utc::now();
        let event = match events::parse_event(
            record.stream,
            record.key.as_deref(),
            record.payload.as_deref(),
            &self.config.events,
            self.config.recommend.max_k,
            now,
        ) {
            Ok(e) => e,
            Err(e) => return self.dead_letter(record, ProcessError::Event(e), shutdown).await,
        };
        let mut delays = self.backoff();
        let mut attempts = 0;
        loop {
            attempts += 1;
            match self.apply(&event, record.partition).await {
                Ok(outcome) => {
                    let stream = stream_name(record);
                    match &outcome {
                        Outcome::Applied { published } => {
                            self.stats.applied += 1;
                            self.stats.lists_published += *published as u64;
                            telemetry::record_done(stream, &record.topic, event.type_name(), "applied");
                            telemetry::list_published(*published);
                            telemetry::store_queries(self.recommender.store_queries);
                        }
                        Outcome::Stale => {
                            self.stats.stale += 1;
                            telemetry::record_done(stream, &record.topic, event.type_name(), "stale");
                            tracing::info!(id = event.entity_id(), r#type = event.type_name(), "ignored stale event");
                        }
                        Outcome::DeadLettered(_) => {}
                    }
                    return Ok(Some(outcome));
                }
                Err(e) if e.is_transient() && !(e.gives_up_eventually() && attempts >= self.fetch_attempts()) => {
                    let delay = delays.next().unwrap_or(Duration::from_millis(self.config.retry.max_ms));
                    self.stats.retries += 1;
                    telemetry::retry(e.stage());
                    tracing::warn!(id = event.entity_id(), error = %e, attempt = attempts, retry_in_ms = delay.as_millis() as u64, "transient failure, retrying");
                    if !sleep_unless_shutdown(delay, shutdown).await {
                        return Ok(None);
                    }
                }
                Err(e) if e.is_transient() => {
                    let reason = format!("gave up after {attempts} attempts: {e}");
                    return self.dead_letter_reason(record, reason, shutdown).await;
                }
                Err(e) => return self.dead_letter(record, e, shutdown).await,
            }
        }
    }

    fn fetch_attempts(&self) -> usize {
        match self.config.retry.max_attempts {
            0 => 5,
            n => n,
        }
    }

    fn backoff(&self) -> impl Iterator<Item = Duration> + use<> {
        ExponentialBuilder::default()
            .with_min_delay(Duration::from_millis(self.config.retry.initial_ms))
            .with_max_delay(Duration::from_millis(self.config.retry.max_ms))
            .with_jitter()
            .without_max_times()
            .build()
    }

    async fn dead_letter(
        &mut self,
        record: &SourceRecord,
        error: ProcessError,
        shutdown: &CancellationToken,
    ) -> Result<Option<Outcome>, PipelineError> {
        self.dead_letter_reason(record, error.to_string(), shutdown).await
    }

    async fn dead_letter_reason(
        &mut self,
        record: &SourceRecord,
        reason: String,
        shutdown: &CancellationToken,
    ) -> Result<Option<Outcome>, PipelineError> {
        let id = crate::peek::entity_id(record);
        tracing::warn!(%id, topic = %record.topic, offset = record.offset, reason = %reason, "dead-lettering record");
        let letter = DeadLetter { error: reason.clone(), record: record.clone() };
        let mut delays = self.backoff();
        loop {
            match self.sink.dead_letter(&letter).await {
                Ok(()) => break,
                Err(e) => {
                    let delay = delays.next().unwrap_or(Duration::from_millis(self.config.retry.max_ms));
                    tracing::warn!(%id, error = %e, "cannot write dead letter, retrying");
                    if !sleep_unless_shutdown(delay, shutdown).await {
                        return Ok(None);
                    }
                }
            }
        }
        self.stats.dead_lettered += 1;
        telemetry::record_done(stream_name(record), &record.topic, crate::peek::type_label(record), "dead_lettered");
        Ok(Some(Outcome::DeadLettered(reason)))
    }

    /// Apply one valid event's effects (one attempt).
    async fn apply(&mut self, event: &InputEvent, partition: i32) -> Result<Outcome, ProcessError> {
        match event {
            InputEvent::ProductUpserted(p) => self.upsert_product(p).await,
            InputEvent::ProductDeleted { product_id, updated_at } => self.delete_product(product_id, *updated_at).await,
            InputEvent::AdUpserted(a) => self.upsert_ad(a, partition).await,
            InputEvent::AdDeleted { ad_id, updated_at } => {
                if let (Some(ad), Some(t)) = (self.recommender.ad(ad_id), updated_at)
                    && ad.updated_at > *t
                {
                    return Ok(Outcome::Stale);
                }
                let published = self.recommender.delete_ad(ad_id).await? as usize;
                Ok(Outcome::Applied { published })
            }
        }
    }

    async fn stored_product(&self, id: &str) -> Result<Option<ProductRecord>, StoreError> {
        let points = self.products.retrieve(vec![id.to_string()], true).await?;
        Ok(points.into_iter().next().and_then(ProductRecord::from_point))
    }

    /// Download and embed an image off the async runtime.
    async fn embed_url(&mut self, url: &str) -> Result<Vec<f32>, ProcessError> {
        let started = Instant::now();
        let bytes = self.fetcher.fetch(url).await?;
        telemetry::fetched(bytes.len(), started.elapsed());
        let embedder = self.embedder.clone();
        let started = Instant::now();
        let vector = tokio::task::spawn_blocking(move || embedder.embed(&bytes))
            .await
            .map_err(|e| ProcessError::Join(e.to_string()))??;
        telemetry::embedded(started.elapsed());
        self.stats.images_embedded += 1;
        Ok(vector)
    }

    async fn upsert_product(&mut self, p: &ProductUpsert) -> Result<Outcome, ProcessError> {
        let model = self.space_id();
        let stored = self.stored_product(&p.product_id).await?;
        if stored.as_ref().is_some_and(|s| s.updated_at > p.updated_at) {
            return Ok(Outcome::Stale);
        }
        // Same image in the same space: a stock or attribute change needs no re-embed.
        let vector = match stored {
            Some(s) if s.image_url == p.image_url && s.model == model => s.vector,
            _ => self.embed_into_space(crate::adapt::Entity::Product, &p.product_id, &p.image_url).await?,
        };
        let record = ProductRecord {
            product_id: p.product_id.clone(),
            vector,
            image_url: p.image_url.clone(),
            title: p.title.clone(),
            in_stock: p.in_stock,
            attributes: p.attributes.clone(),
            model,
            updated_at: p.updated_at,
        };
        self.products.upsert(vec![record.to_point()]).await?;
        let published = self.recommender.product_upserted(&record).await?;
        Ok(Outcome::Applied { published })
    }

    async fn delete_product(&mut self, id: &str, updated_at: Option<DateTime<Utc>>) -> Result<Outcome, ProcessError> {
        if let (Some(stored), Some(t)) = (self.stored_product(id).await?, updated_at)
            && stored.updated_at > t
        {
            return Ok(Outcome::Stale);
        }
        self.products.delete(vec![id.to_string()]).await?;
        if let Some(space) = &self.space {
            space.forget_product(id).await?;
        }
        // Also covers a replay after a crash between the delete and the list update.
        let published = self.recommender.product_removed(id).await?;
        Ok(Outcome::Applied { published })
    }

    async fn upsert_ad(&mut self, a: &AdUpsert, partition: i32) -> Result<Outcome, ProcessError> {
        let model = self.space_id();
        let previous = self.recommender.ad(&a.ad_id).cloned();
        if previous.as_ref().is_some_and(|s| s.updated_at > a.updated_at) {
            return Ok(Outcome::Stale);
        }
        let vector = match &previous {
            Some(s) if s.image_url == a.image_url && s.model == model => s.vector.clone(),
            _ => self.embed_into_space(crate::adapt::Entity::Ad, &a.ad_id, &a.image_url).await?,
        };
        let ad = AdRecord {
            ad_id: a.ad_id.clone(),
            vector,
            image_url: a.image_url.clone(),
            k: a.k.unwrap_or(self.config.recommend.default_k),
            filter: a.filter.clone(),
            updated_at: a.updated_at,
            version: 0,
            items: Vec::new(),
            deleted: false,
            model,
            partition,
        };
        let published = self.recommender.upsert_ad(ad).await? as usize;
        Ok(Outcome::Applied { published })
    }
}
