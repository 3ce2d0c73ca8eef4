//! The processing pipeline: decode → fetch → embed → store → recommend →
//! sink, with the retry/DLQ decision made in one place.
//!
//! Two stages. Up to `pipeline.max_in_flight` records are read ahead and
//! their images downloaded and embedded concurrently (the embeds of
//! concurrent records share model calls through the micro-batcher). Their
//! effects (store, lists, DLQ, acknowledgement) are then applied strictly
//! one at a time in input order, so per-entity order is the input's. A
//! prefetched vector is only a head start: when the record's turn comes its
//! need for an image is decided again against the then-current state, and
//! a failed prefetch counts as the first attempt of the usual retry policy.
//!
//! A record is acknowledged to its source only after all of its effects
//! (vector stored, affected lists published) are durable, so a crash replays
//! it; every step is idempotent, so a replay changes nothing downstream.
//! Acknowledgements go through the source's shared ack handle, not the
//! source itself, which a pending read may hold: a finished record is
//! acknowledged at once even when no further input arrives.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use backon::{BackoffBuilder, ExponentialBuilder};
use chrono::{DateTime, Utc};
use futures::StreamExt;
use futures::stream::FuturesOrdered;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::embed::batcher::{BatchConfig, Batcher};
use crate::embed::{EmbedError, Embedder};
use crate::events::{self, AdUpsert, EventError, InputEvent, ProductUpsert};
use crate::fetch::{FetchError, Fetcher};
use crate::recommend::{RecommendError, Recommender};
use crate::records::{AdRecord, ProductRecord};
use crate::sink::{DeadLetter, ListSink, SinkError};
use crate::source::{EventSource, OwnershipChange, OwnershipFeed, SourceError, SourceRecord};
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

/// A pending `next` call that owns the (reborrowed) source until it returns.
type NextFuture<'a> =
    Pin<Box<dyn Future<Output = (&'a mut dyn EventSource, Result<Option<SourceRecord>, SourceError>)> + Send + 'a>>;

/// Wait for the pending `next`, or forever if none is pending.
async fn pending_next<'a>(
    reading: &mut Option<NextFuture<'a>>,
) -> (&'a mut dyn EventSource, Result<Option<SourceRecord>, SourceError>) {
    match reading {
        Some(next) => next.await,
        None => std::future::pending().await,
    }
}

/// How an upsert's image relates to the stored state of its entity (when
/// it was updated, its image URL, its space): the one rule that both the
/// read-ahead and the apply stage follow.
#[derive(Debug, PartialEq)]
enum Versus {
    /// The stored state is newer: the upsert is ignored.
    Stale,
    /// Same image in the same space: the stored vector is reused (a stock
    /// or attribute change needs no re-embed).
    SameImage,
    /// The image must be downloaded and embedded.
    NewImage,
}

impl Versus {
    fn of(
        stored: Option<(DateTime<Utc>, &str, &str)>,
        updated_at: DateTime<Utc>,
        image_url: &str,
        model: &str,
    ) -> Self {
        match stored {
            Some((at, _, _)) if at > updated_at => Versus::Stale,
            Some((_, url, space)) if url == image_url && space == model => Versus::SameImage,
            _ => Versus::NewImage,
        }
    }
}

/// What a record's read-ahead needs fetched.
enum Want {
    Nothing,
    /// This image.
    Image(String),
    /// This product's image, unless the store already has it (or newer state).
    ProductImage(String, String, DateTime<Utc>),
}

/// An image downloaded and embedded ahead of its record's turn.
struct Prefetched {
    url: String,
    result: Result<Vec<f32>, ProcessError>,
}

/// A record read ahead: parsed, its image perhaps prefetched.
struct Ready {
    record: SourceRecord,
    event: Result<InputEvent, EventError>,
    image: Option<Prefetched>,
    /// The prefetch's store lookup failed; the apply stage retries it.
    store_retry: bool,
}

/// Download an image and embed it through the micro-batcher.
async fn fetch_and_embed(fetcher: &Fetcher, batcher: &Batcher, url: &str) -> Result<Vec<f32>, ProcessError> {
    let started = Instant::now();
    let bytes = fetcher.fetch(url).await?;
    telemetry::fetched(bytes.len(), started.elapsed());
    let started = Instant::now();
    let vector = batcher.embed(bytes).await?;
    telemetry::embedded(started.elapsed());
    Ok(vector)
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
    /// An ad record of a partition this worker no longer owns (revoked while
    /// the record waited): left to the new owner, nothing published.
    NotOwned,
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
    batcher: Batcher,
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
        let batcher = Batcher::new(embedder.clone(), BatchConfig::from_model(&config.model));
        Self { fetcher, embedder, batcher, products, sink, recommender, config, stats: Stats::default(), space: None }
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

    /// Project an entity's raw embedding into the space in use.
    async fn project_into_space(
        &self,
        entity: crate::adapt::Entity,
        id: &str,
        raw: Vec<f32>,
    ) -> Result<Vec<f32>, ProcessError> {
        match &self.space {
            Some(space) => Ok(space.adapt(entity, id, raw).await?),
            None => Ok(raw),
        }
    }

    /// Consume `source` until it ends or `shutdown` fires; every finished
    /// record is acknowledged as soon as its effects are durable, in input
    /// order, through the source's ack handle (so also while a read is
    /// pending on an idle input). On shutdown the record being applied
    /// finishes; records read ahead are dropped unacknowledged (replayed).
    pub async fn run(
        &mut self,
        source: &mut dyn EventSource,
        shutdown: CancellationToken,
    ) -> Result<(), PipelineError> {
        let feed = source.ownership_feed();
        let acks = source.ack_handle();
        let limit = self.config.pipeline.max_in_flight.max(1);
        let mut ahead: FuturesOrdered<Pin<Box<dyn Future<Output = Ready> + Send>>> = FuturesOrdered::new();
        // The source is either idle or lent to a pending `next`, which is
        // never cancelled mid-read except at shutdown.
        let mut idle: Option<&mut dyn EventSource> = Some(&mut *source);
        let mut reading: Option<NextFuture<'_>> = None;
        let mut exhausted = false;
        'run: loop {
            if let Some(src) = idle.take() {
                if exhausted || ahead.len() >= limit {
                    idle = Some(src);
                } else {
                    reading = Some(Box::pin(async move {
                        let next = src.next().await;
                        (src, next)
                    }));
                }
            }
            if exhausted && ahead.is_empty() {
                break;
            }
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => break,
                (src, next) = pending_next(&mut reading) => {
                    reading = None;
                    idle = Some(src);
                    match next? {
                        Some(record) => ahead.push_back(self.read_ahead(record)),
                        None => exhausted = true,
                    }
                }
                Some(ready) = ahead.next() => {
                    // Ownership moves before the record: it may belong to a partition just
                    // assigned, or to one revoked while it waited.
                    let changes = feed.as_ref().map(OwnershipFeed::take).unwrap_or_default();
                    for change in changes {
                        if !self.change_ownership(change, &shutdown).await {
                            break 'run;
                        }
                    }
                    self.stats.records += 1;
                    let record = ready.record.clone();
                    match self.handle_ready(ready, &shutdown).await? {
                        Some(outcome) => {
                            tracing::debug!(topic = %record.topic, offset = record.offset, ?outcome, "record done");
                            // Effects are durable, and every earlier record was acknowledged before this one.
                            acks.ack(&record)?;
                        }
                        // Shut down mid-retry: leave it unacknowledged so it is replayed.
                        None => break,
                    }
                }
            }
        }
        drop((idle, reading));
        source.close().await?;
        Ok(())
    }

    /// Parse a record under the configured limits.
    fn parse(&self, record: &SourceRecord) -> Result<InputEvent, EventError> {
        events::parse_event(
            record.stream,
            record.key.as_deref(),
            record.payload.as_deref(),
            &self.config.events,
            self.config.recommend.max_k,
            Utc::now(),
        )
    }

    /// Parse a record and start downloading and embedding its image, if the
    /// state known now says it needs one (decided again when it is applied).
    fn read_ahead(&self, record: SourceRecord) -> Pin<Box<dyn Future<Output = Ready> + Send>> {
        let event = self.parse(&record);
        let model = self.space_id();
        let want = match &event {
            Ok(InputEvent::AdUpserted(a)) => {
                let stored =
                    self.recommender.ad(&a.ad_id).map(|s| (s.updated_at, s.image_url.as_str(), s.model.as_str()));
                match Versus::of(stored, a.updated_at, &a.image_url, &model) {
                    Versus::NewImage => Want::Image(a.image_url.clone()),
                    Versus::Stale | Versus::SameImage => Want::Nothing,
                }
            }
            Ok(InputEvent::ProductUpserted(p)) => {
                Want::ProductImage(p.product_id.clone(), p.image_url.clone(), p.updated_at)
            }
            _ => Want::Nothing,
        };
        let (fetcher, batcher, products) = (self.fetcher.clone(), self.batcher.clone(), self.products.clone());
        Box::pin(async move {
            let mut store_retry = false;
            let url = match want {
                Want::Nothing => None,
                Want::Image(url) => Some(url),
                Want::ProductImage(id, url, updated_at) => match products.retrieve(vec![id], true).await {
                    Ok(points) => {
                        let stored = points.into_iter().next().and_then(ProductRecord::from_point);
                        let state = stored.as_ref().map(|s| (s.updated_at, s.image_url.as_str(), s.model.as_str()));
                        (Versus::of(state, updated_at, &url, &model) == Versus::NewImage).then_some(url)
                    }
                    // The store is retried when the record is applied; no head start.
                    Err(_) => {
                        store_retry = true;
                        None
                    }
                },
            };
            let image = match url {
                Some(url) => Some(Prefetched { result: fetch_and_embed(&fetcher, &batcher, &url).await, url }),
                None => None,
            };
            Ready { record, event, image, store_retry }
        })
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
        let event = self.parse(record);
        self.handle_ready(Ready { record: record.clone(), event, image: None, store_retry: false }, shutdown).await
    }

    /// [`Pipeline::handle`] for a record read ahead, with its image perhaps prefetched.
    async fn handle_ready(
        &mut self,
        ready: Ready,
        shutdown: &CancellationToken,
    ) -> Result<Option<Outcome>, PipelineError> {
        let Ready { record, event, mut image, store_retry } = ready;
        if store_retry {
            // A failed store call is a retry even when it happened ahead of time.
            self.stats.retries += 1;
            telemetry::retry("store");
        }
        let record = &record;
        let event = match event {
            Ok(e) => e,
            Err(e) => return self.dead_letter(record, ProcessError::Event(e), shutdown).await,
        };
        if record.stream == crate::events::Stream::Ads && !self.recommender.owns_partition(record.partition) {
            tracing::info!(
                id = event.entity_id(),
                partition = record.partition,
                "ad partition no longer ours; skipped"
            );
            return Ok(Some(Outcome::NotOwned));
        }
        let mut delays = self.backoff();
        let mut attempts = 0;
        loop {
            attempts += 1;
            match self.apply(&event, record.partition, &mut image).await {
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
                        Outcome::DeadLettered(_) | Outcome::NotOwned => {}
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
    async fn apply(
        &mut self,
        event: &InputEvent,
        partition: i32,
        image: &mut Option<Prefetched>,
    ) -> Result<Outcome, ProcessError> {
        match event {
            InputEvent::ProductUpserted(p) => self.upsert_product(p, image).await,
            InputEvent::ProductDeleted { product_id, updated_at } => self.delete_product(product_id, *updated_at).await,
            InputEvent::AdUpserted(a) => self.upsert_ad(a, partition, image).await,
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

    /// The vector of `url`'s image: the prefetched one if it is for this URL
    /// (its failure is this attempt's failure), else downloaded and embedded now.
    async fn image_vector(&mut self, url: &str, image: &mut Option<Prefetched>) -> Result<Vec<f32>, ProcessError> {
        let vector = match image.take() {
            Some(p) if p.url == url => p.result?,
            _ => fetch_and_embed(&self.fetcher, &self.batcher, url).await?,
        };
        self.stats.images_embedded += 1;
        Ok(vector)
    }

    async fn upsert_product(
        &mut self,
        p: &ProductUpsert,
        image: &mut Option<Prefetched>,
    ) -> Result<Outcome, ProcessError> {
        let model = self.space_id();
        let stored = self.stored_product(&p.product_id).await?;
        let state = stored.as_ref().map(|s| (s.updated_at, s.image_url.as_str(), s.model.as_str()));
        let vector = match (Versus::of(state, p.updated_at, &p.image_url, &model), stored) {
            (Versus::Stale, _) => return Ok(Outcome::Stale),
            (Versus::SameImage, Some(s)) => s.vector,
            _ => {
                let raw = self.image_vector(&p.image_url, image).await?;
                self.project_into_space(crate::adapt::Entity::Product, &p.product_id, raw).await?
            }
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

    async fn upsert_ad(
        &mut self,
        a: &AdUpsert,
        partition: i32,
        image: &mut Option<Prefetched>,
    ) -> Result<Outcome, ProcessError> {
        let model = self.space_id();
        let previous = self.recommender.ad(&a.ad_id);
        let state = previous.map(|s| (s.updated_at, s.image_url.as_str(), s.model.as_str()));
        let vector = match (Versus::of(state, a.updated_at, &a.image_url, &model), previous) {
            (Versus::Stale, _) => return Ok(Outcome::Stale),
            (Versus::SameImage, Some(s)) => s.vector.clone(),
            _ => {
                let raw = self.image_vector(&a.image_url, image).await?;
                self.project_into_space(crate::adapt::Entity::Ad, &a.ad_id, raw).await?.into()
            }
        };
        let ad = AdRecord {
            updated_at: a.updated_at,
            partition,
            ..AdRecord::unpublished(
                a.ad_id.clone(),
                vector,
                a.image_url.clone(),
                a.k.unwrap_or(self.config.recommend.default_k),
                a.filter.clone(),
                model,
            )
        };
        let published = self.recommender.upsert_ad(ad).await? as usize;
        Ok(Outcome::Applied { published })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use async_trait::async_trait;

    use super::*;
    use crate::events::Stream;
    use crate::sink::files::FileSink;
    use crate::source::{AckHandle, Acknowledge};
    use crate::store::memory::MemoryStore;

    /// Never asked to embed: the records below are deletions.
    struct NoModel;

    impl Embedder for NoModel {
        fn model_id(&self) -> &str {
            "none"
        }
        fn dim(&self) -> usize {
            2
        }
        fn embed(&self, _: &[u8]) -> Result<Vec<f32>, EmbedError> {
            Err(EmbedError::Runtime("not expected".into()))
        }
    }

    /// Acknowledged offsets, in order.
    #[derive(Default)]
    struct Acked(Mutex<Vec<i64>>);

    impl Acknowledge for Acked {
        fn ack(&self, record: &SourceRecord) -> Result<(), SourceError> {
            self.0.lock().map_err(|_| SourceError::Commit("poisoned".into()))?.push(record.offset);
            Ok(())
        }
    }

    /// Yields `n` product tombstones, then waits forever: an idle stream.
    struct IdleAfter {
        n: i64,
        next: i64,
        acked: Arc<Acked>,
    }

    #[async_trait]
    impl EventSource for IdleAfter {
        async fn next(&mut self) -> Result<Option<SourceRecord>, SourceError> {
            if self.next == self.n {
                std::future::pending::<()>().await;
            }
            self.next += 1;
            Ok(Some(SourceRecord {
                stream: Stream::Products,
                topic: "products".into(),
                partition: 0,
                offset: self.next - 1,
                key: Some(format!("p{}", self.next).into_bytes()),
                payload: None,
            }))
        }

        fn ack_handle(&self) -> AckHandle {
            AckHandle::new(self.acked.clone())
        }
    }

    #[tokio::test]
    async fn finished_records_are_acknowledged_while_the_read_waits_on_an_idle_stream() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut config = Config::default();
        config.pipeline.max_in_flight = 8;
        let products: Arc<dyn VectorStore> = Arc::new(MemoryStore::default());
        let ads: Arc<dyn VectorStore> = Arc::new(MemoryStore::default());
        let sink: Arc<dyn ListSink> = Arc::new(FileSink::open(dir.path()).expect("sink"));
        let recommender =
            Recommender::load(products.clone(), ads, sink.clone(), config.recommend.clone(), "none".into())
                .await
                .expect("recommender");
        let fetcher = Fetcher::new(&config.fetch).expect("fetcher");
        let mut pipeline = Pipeline::new(config, fetcher, Arc::new(NoModel), products, sink, recommender);
        let acked = Arc::new(Acked::default());
        let mut source = IdleAfter { n: 5, next: 0, acked: acked.clone() };
        let shutdown = CancellationToken::new();
        let watch = async {
            let all = tokio::time::timeout(Duration::from_secs(10), async {
                while acked.0.lock().map(|a| a.len()).unwrap_or(0) < 5 {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            })
            .await;
            shutdown.cancel();
            all.is_ok()
        };
        let (run, all) = tokio::join!(pipeline.run(&mut source, shutdown.clone()), watch);
        run.expect("run");
        assert!(all, "every finished record acknowledged while the next read was pending");
        assert_eq!(*acked.0.lock().expect("lock"), vec![0, 1, 2, 3, 4], "in input order");
        assert_eq!(pipeline.stats.applied, 5);
    }
}
