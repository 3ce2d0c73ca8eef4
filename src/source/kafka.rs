//! The Kafka source. Two consumers, because an ad's list depends on every
//! product but each list must have exactly one writer:
//!
//! - **Ads** (`kafka.ads_topic`): a consumer-group member. The group splits
//!   the ads' partitions across workers; a worker owns (and alone publishes)
//!   the lists of its partitions' ads. The topic is read as a table: ad
//!   offsets are never committed, so a new owner re-reads its partitions
//!   from the start and rebuilds their ads (replays are harmless: stale or
//!   unchanged states publish nothing).
//! - **Products** (`kafka.products_topic`): every worker reads all
//!   partitions, so its local store holds the whole catalogue, under a group
//!   id of its own (`<group_id>.products.<worker id>`). Offsets are
//!   committed from a [`CommitTracker`] only as far as records are
//!   acknowledged: on a timer (checked while waiting for messages and on
//!   each acknowledgement) and, for every acknowledged position, at shutdown.
//!   The tracker and the products consumer are shared with the source's ack
//!   handles, so records finish while a read is pending.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer};
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::{ClientContext, Offset, TopicPartitionList};

use super::commit::{CommitTracker, TopicPartition};
use super::lag::LagContext;
use super::{AckHandle, Acknowledge, EventSource, OwnershipChange, OwnershipFeed, SourceError, SourceRecord};
use crate::config::KafkaConfig;
use crate::events::Stream;
use crate::kafka::{KafkaSetupError, consumer_config, setup_error};

/// Consumer context of the ads group member: records ownership changes for
/// the pipeline, and when partitions were assigned.
struct Ownership {
    changes: OwnershipFeed,
    /// When partitions were last assigned (`None` while we own none): idle
    /// time only counts while we own partitions, not while a group join waits.
    assigned_at: Arc<Mutex<Option<Instant>>>,
}

impl ClientContext for Ownership {
    fn stats(&self, statistics: rdkafka::Statistics) {
        super::lag::report(&statistics);
    }
}

impl ConsumerContext for Ownership {
    fn pre_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let partitions = |tpl: &TopicPartitionList| tpl.elements().iter().map(|e| e.partition()).collect::<Vec<_>>();
        let change = match rebalance {
            Rebalance::Assign(tpl) => {
                let p = partitions(tpl);
                tracing::info!(partitions = ?p, "ad partitions assigned");
                if let Ok(mut at) = self.assigned_at.lock() {
                    *at = (!p.is_empty()).then(Instant::now);
                }
                OwnershipChange::Assigned(p)
            }
            Rebalance::Revoke(tpl) => {
                let p = partitions(tpl);
                tracing::info!(partitions = ?p, "ad partitions revoked");
                if let Ok(mut at) = self.assigned_at.lock() {
                    *at = None;
                }
                OwnershipChange::Revoked(p)
            }
            Rebalance::Error(e) => {
                tracing::warn!(error = %e, "rebalance error");
                return;
            }
        };
        self.changes.push(change);
    }
}

/// A stable id for this worker's local store, kept in `data_dir/worker-id`:
/// product offsets are only meaningful together with the store they fed.
pub fn worker_id(data_dir: &Path) -> Result<String, SourceError> {
    let path = data_dir.join("worker-id");
    let io = |e: std::io::Error| SourceError::Io { path: path.display().to_string(), reason: e.to_string() };
    match std::fs::read_to_string(&path) {
        Ok(id) if !id.trim().is_empty() => Ok(id.trim().to_string()),
        _ => {
            std::fs::create_dir_all(data_dir).map_err(io)?;
            let id = uuid::Uuid::new_v4().to_string();
            std::fs::write(&path, &id).map_err(io)?;
            Ok(id)
        }
    }
}

/// The products consumer with its offset bookkeeping, shared by the source
/// (which reads and starts records) and its ack handles (which finish them).
struct Products {
    consumer: StreamConsumer<LagContext>,
    topic: String,
    tracker: Mutex<CommitTracker>,
    commit_interval: Duration,
    last_commit: Mutex<Instant>,
}

impl Products {
    fn tracker(&self) -> Result<std::sync::MutexGuard<'_, CommitTracker>, SourceError> {
        self.tracker.lock().map_err(|_| SourceError::Commit("offset tracker lock poisoned".into()))
    }

    /// Whether the commit timer has run out.
    fn commit_due(&self) -> bool {
        self.last_commit.lock().map_or(true, |t| t.elapsed() >= self.commit_interval)
    }

    /// Commit product positions (ad offsets are never committed): those
    /// that moved since the last commit, or with `all` every acknowledged
    /// one (at shutdown, so an earlier commit that failed is made good).
    fn commit(&self, mode: CommitMode, all: bool) -> Result<(), SourceError> {
        if let Ok(mut t) = self.last_commit.lock() {
            *t = Instant::now();
        }
        let commits: Vec<(TopicPartition, i64)> = {
            let mut tracker = self.tracker()?;
            let positions = if all { tracker.positions() } else { tracker.take_commits() };
            positions.into_iter().filter(|((topic, _), _)| *topic == self.topic).collect()
        };
        if commits.is_empty() {
            return Ok(());
        }
        let mut tpl = TopicPartitionList::new();
        for ((topic, partition), offset) in &commits {
            tpl.add_partition_offset(topic, *partition, Offset::Offset(*offset))
                .map_err(|e| SourceError::Commit(e.to_string()))?;
        }
        if let Err(e) = self.consumer.commit(&tpl, mode) {
            // Offer these positions again next time rather than waiting for them to move.
            let partitions: Vec<TopicPartition> = commits.into_iter().map(|(tp, _)| tp).collect();
            self.tracker()?.retake(&partitions);
            return Err(SourceError::Commit(e.to_string()));
        }
        tracing::debug!(?commits, "committed product offsets");
        Ok(())
    }

    /// The periodic commit, if due; a failure is logged and retried later.
    fn commit_if_due(&self) {
        if self.commit_due()
            && let Err(e) = self.commit(CommitMode::Async, false)
        {
            tracing::warn!(error = %e, "periodic commit failed; will retry");
        }
    }
}

impl Acknowledge for Products {
    fn ack(&self, record: &SourceRecord) -> Result<(), SourceError> {
        self.tracker()?.done(&(record.topic.clone(), record.partition), record.offset);
        // Committing here too keeps offsets moving while no read is pending (read-ahead full).
        self.commit_if_due();
        Ok(())
    }
}

/// Reads product and ad events from Kafka.
pub struct KafkaSource {
    ads: StreamConsumer<Ownership>,
    products: Arc<Products>,
    changes: OwnershipFeed,
    assigned_at: Arc<Mutex<Option<Instant>>>,
    ads_topic: String,
    commit_interval: Duration,
    idle_exit: Option<Duration>,
}

impl KafkaSource {
    /// Create both consumers (fails on unknown or invalid librdkafka
    /// properties, or a missing products topic).
    pub fn new(k: &KafkaConfig, data_dir: &Path) -> Result<Self, KafkaSetupError> {
        let consumer_config = |group: &str| consumer_config(k, group);
        let changes = OwnershipFeed::default();
        let assigned_at = Arc::new(Mutex::new(None));
        let context = Ownership { changes: changes.clone(), assigned_at: assigned_at.clone() };
        let ads: StreamConsumer<Ownership> =
            consumer_config(&k.group_id).create_with_context(context).map_err(setup_error)?;
        ads.subscribe(&[&k.ads_topic]).map_err(|e| KafkaSetupError::Config(format!("cannot subscribe: {e}")))?;

        let worker = worker_id(data_dir).map_err(|e| KafkaSetupError::Config(e.to_string()))?;
        let products: StreamConsumer<LagContext> = consumer_config(&format!("{}.products.{worker}", k.group_id))
            .create_with_context(LagContext)
            .map_err(setup_error)?;
        let meta = products
            .fetch_metadata(Some(&k.products_topic), Duration::from_secs(10))
            .map_err(|e| KafkaSetupError::Config(format!("cannot read metadata of `{}`: {e}", k.products_topic)))?;
        let mut tpl = TopicPartitionList::new();
        for topic in meta.topics().iter().filter(|t| t.error().is_none()) {
            for p in topic.partitions() {
                tpl.add_partition_offset(&k.products_topic, p.id(), Offset::Stored)
                    .map_err(|e| KafkaSetupError::Config(e.to_string()))?;
            }
        }
        if tpl.count() == 0 {
            return Err(KafkaSetupError::Config(format!(
                "topic `{}` does not exist or has no partitions; create it first",
                k.products_topic
            )));
        }
        products.assign(&tpl).map_err(|e| KafkaSetupError::Config(format!("cannot assign products: {e}")))?;
        tracing::info!(worker, partitions = tpl.count(), "reading all product partitions");

        let commit_interval = Duration::from_millis(k.commit_interval_ms);
        let products = Arc::new(Products {
            consumer: products,
            topic: k.products_topic.clone(),
            tracker: Mutex::new(CommitTracker::default()),
            commit_interval,
            last_commit: Mutex::new(Instant::now()),
        });
        Ok(Self {
            ads,
            products,
            changes,
            assigned_at,
            ads_topic: k.ads_topic.clone(),
            commit_interval,
            idle_exit: (k.exit_when_idle_ms > 0).then(|| Duration::from_millis(k.exit_when_idle_ms)),
        })
    }

    /// How long we have owned our current ad partitions (`None` while we own none).
    fn owned_for(&self) -> Option<Duration> {
        self.assigned_at.lock().ok().and_then(|at| at.map(|t| t.elapsed()))
    }

    fn to_record(&self, m: &BorrowedMessage<'_>) -> SourceRecord {
        let stream = if m.topic() == self.ads_topic { Stream::Ads } else { Stream::Products };
        SourceRecord {
            stream,
            topic: m.topic().to_string(),
            partition: m.partition(),
            offset: m.offset(),
            key: m.key().map(<[u8]>::to_vec),
            payload: m.payload().map(<[u8]>::to_vec),
        }
    }
}

#[async_trait]
impl EventSource for KafkaSource {
    async fn next(&mut self) -> Result<Option<SourceRecord>, SourceError> {
        let idle_since = Instant::now();
        let wait = self.idle_exit.map_or(self.commit_interval, |idle| idle.min(self.commit_interval));
        let record = loop {
            self.products.commit_if_due();
            let received = tokio::time::timeout(wait, async {
                tokio::select! {
                    m = self.ads.recv() => m.map(|m| self.to_record(&m)),
                    m = self.products.consumer.recv() => m.map(|m| self.to_record(&m)),
                }
            })
            .await;
            match received {
                Ok(Ok(record)) => break record,
                Ok(Err(e)) => {
                    // librdkafka reconnects by itself; a broker outage is not the record's fault.
                    tracing::warn!(error = %e, "Kafka consumer error; retrying");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
                // Idle = owning partitions and no message, both for the whole limit.
                Err(_)
                    if self.idle_exit.is_some_and(|limit| {
                        self.owned_for().is_some_and(|o| o.min(idle_since.elapsed()) >= limit)
                    }) =>
                {
                    tracing::info!("no events for kafka.exit_when_idle_ms; stopping");
                    return Ok(None);
                }
                Err(_) => {}
            }
        };
        self.products.tracker()?.start(&(record.topic.clone(), record.partition), record.offset);
        Ok(Some(record))
    }

    fn ack_handle(&self) -> AckHandle {
        AckHandle::new(self.products.clone())
    }

    fn ownership_feed(&self) -> Option<OwnershipFeed> {
        Some(self.changes.clone())
    }

    async fn close(&mut self) -> Result<(), SourceError> {
        // Records read ahead but never acknowledged hold their partition's
        // position back: they are replayed by the next run.
        self.products.commit(CommitMode::Sync, true)?;
        self.ads.unsubscribe();
        Ok(())
    }
}
