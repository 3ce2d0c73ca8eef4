//! The Kafka source: a consumer-group member on the products and ads topics
//! with auto-commit off. Offsets are committed from a [`CommitTracker`]
//! only as far as records are acknowledged (their effects durable): on a
//! timer, when partitions are revoked, and at shutdown.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer};
use rdkafka::message::Message;
use rdkafka::{ClientContext, Offset, TopicPartitionList};

use super::commit::{CommitTracker, TopicPartition};
use super::{EventSource, SourceError, SourceRecord};
use crate::config::KafkaConfig;
use crate::events::Stream;
use crate::kafka::{KafkaSetupError, base_config, setup_error};

/// Consumer context that commits finished offsets of revoked partitions
/// before they move to another worker.
struct CommitOnRevoke {
    tracker: Arc<Mutex<CommitTracker>>,
    /// When partitions were last assigned (`None` while we own none): idle
    /// time only counts while we own partitions, not while a group join waits.
    assigned_at: Arc<Mutex<Option<Instant>>>,
}

impl ClientContext for CommitOnRevoke {}

impl ConsumerContext for CommitOnRevoke {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Revoke(tpl) => {
                let revoked: Vec<TopicPartition> =
                    tpl.elements().iter().map(|e| (e.topic().to_string(), e.partition())).collect();
                let commits = match self.tracker.lock() {
                    Ok(mut t) => t.revoke(&revoked),
                    Err(_) => return,
                };
                tracing::info!(partitions = ?revoked, "partitions revoked; committing finished offsets");
                if let Ok(mut at) = self.assigned_at.lock() {
                    *at = None;
                }
                if let Err(e) = commit(consumer, &commits, CommitMode::Sync) {
                    tracing::warn!(error = %e, "commit on revoke failed; the new owner replays from the last commit");
                }
            }
            Rebalance::Assign(tpl) => {
                let assigned: Vec<_> = tpl.elements().iter().map(|e| format!("{}/{}", e.topic(), e.partition())).collect();
                tracing::info!(partitions = ?assigned, "partitions assigned");
                if let Ok(mut at) = self.assigned_at.lock() {
                    *at = (!assigned.is_empty()).then(Instant::now);
                }
            }
            Rebalance::Error(e) => tracing::warn!(error = %e, "rebalance error"),
        }
    }
}

fn commit<C: ConsumerContext>(
    consumer: &impl Consumer<C>,
    commits: &[(TopicPartition, i64)],
    mode: CommitMode,
) -> Result<(), rdkafka::error::KafkaError> {
    if commits.is_empty() {
        return Ok(());
    }
    let mut tpl = TopicPartitionList::new();
    for ((topic, partition), offset) in commits {
        tpl.add_partition_offset(topic, *partition, Offset::Offset(*offset))?;
    }
    consumer.commit(&tpl, mode)
}

/// Reads product and ad events from Kafka.
pub struct KafkaSource {
    consumer: StreamConsumer<CommitOnRevoke>,
    tracker: Arc<Mutex<CommitTracker>>,
    products_topic: String,
    ads_topic: String,
    commit_interval: Duration,
    last_commit: Instant,
    idle_exit: Option<Duration>,
    assigned_at: Arc<Mutex<Option<Instant>>>,
}

impl KafkaSource {
    /// Create the consumer and subscribe (fails on unknown or invalid librdkafka properties).
    pub fn new(k: &KafkaConfig) -> Result<Self, KafkaSetupError> {
        let mut config = base_config(k);
        config
            .set("group.id", &k.group_id)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            .set("session.timeout.ms", k.session_timeout_ms.to_string())
            .set("heartbeat.interval.ms", (k.session_timeout_ms / 6).max(100).to_string())
            .set("isolation.level", "read_committed");
        for (key, value) in &k.consumer_properties {
            config.set(key, value);
        }
        let tracker = Arc::new(Mutex::new(CommitTracker::default()));
        let assigned_at = Arc::new(Mutex::new(None));
        let context = CommitOnRevoke { tracker: tracker.clone(), assigned_at: assigned_at.clone() };
        let consumer: StreamConsumer<CommitOnRevoke> = config.create_with_context(context).map_err(setup_error)?;
        consumer
            .subscribe(&[&k.products_topic, &k.ads_topic])
            .map_err(|e| KafkaSetupError::Config(format!("cannot subscribe: {e}")))?;
        Ok(Self {
            consumer,
            tracker,
            products_topic: k.products_topic.clone(),
            ads_topic: k.ads_topic.clone(),
            commit_interval: Duration::from_millis(k.commit_interval_ms),
            last_commit: Instant::now(),
            idle_exit: (k.exit_when_idle_ms > 0).then(|| Duration::from_millis(k.exit_when_idle_ms)),
            assigned_at,
        })
    }

    /// How long we have owned our current partitions (`None` while we own none).
    fn idle_for(&self) -> Option<Duration> {
        self.assigned_at.lock().ok().and_then(|at| at.map(|t| t.elapsed()))
    }

    fn commit_finished(&mut self, mode: CommitMode) -> Result<(), SourceError> {
        let commits = self.tracker.lock().map_err(|_| SourceError::Commit("tracker lock poisoned".into()))?.take_commits();
        self.last_commit = Instant::now();
        commit(&self.consumer, &commits, mode).map_err(|e| SourceError::Commit(e.to_string()))?;
        if !commits.is_empty() {
            tracing::debug!(?commits, "committed offsets");
        }
        Ok(())
    }
}

#[async_trait]
impl EventSource for KafkaSource {
    async fn next(&mut self) -> Result<Option<SourceRecord>, SourceError> {
        let idle_since = Instant::now();
        let wait = self.idle_exit.map_or(self.commit_interval, |idle| idle.min(self.commit_interval));
        let m = loop {
            if self.last_commit.elapsed() >= self.commit_interval
                && let Err(e) = self.commit_finished(CommitMode::Async)
            {
                tracing::warn!(error = %e, "periodic commit failed; will retry");
            }
            match tokio::time::timeout(wait, self.consumer.recv()).await {
                Ok(Ok(m)) => break m,
                Ok(Err(e)) => {
                    // librdkafka reconnects by itself; a broker outage is not the record's fault.
                    tracing::warn!(error = %e, "Kafka consumer error; retrying");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
                // Idle = owning partitions and no message, both for the whole limit.
                Err(_) if self.idle_exit.is_some_and(|limit| self.idle_for().is_some_and(|owned| owned.min(idle_since.elapsed()) >= limit)) => {
                    tracing::info!("no events for kafka.exit_when_idle_ms; stopping");
                    return Ok(None);
                }
                Err(_) => {}
            }
        };
        let stream = if m.topic() == self.products_topic {
            Stream::Products
        } else if m.topic() == self.ads_topic {
            Stream::Ads
        } else {
            Stream::Mixed
        };
        let record = SourceRecord {
            stream,
            topic: m.topic().to_string(),
            partition: m.partition(),
            offset: m.offset(),
            key: m.key().map(<[u8]>::to_vec),
            payload: m.payload().map(<[u8]>::to_vec),
        };
        self.tracker
            .lock()
            .map_err(|_| SourceError::Commit("tracker lock poisoned".into()))?
            .start(&(record.topic.clone(), record.partition), record.offset);
        Ok(Some(record))
    }

    async fn ack(&mut self, record: &SourceRecord) -> Result<(), SourceError> {
        self.tracker
            .lock()
            .map_err(|_| SourceError::Commit("tracker lock poisoned".into()))?
            .done(&(record.topic.clone(), record.partition), record.offset);
        Ok(())
    }

    async fn close(&mut self) -> Result<(), SourceError> {
        self.commit_finished(CommitMode::Sync)?;
        self.consumer.unsubscribe();
        Ok(())
    }
}
