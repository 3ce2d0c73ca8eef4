//! Event sources: the [`EventSource`] seam and its implementations.

pub mod commit;
pub mod files;
pub mod kafka;
pub mod lag;
pub mod metered;

use std::sync::{Arc, Mutex};

use async_trait::async_trait;

use crate::events::Stream;

/// One raw input record and where it came from.
#[derive(Debug, Clone, PartialEq)]
pub struct SourceRecord {
    /// Products, ads or mixed: decides what a tombstone means.
    pub stream: Stream,
    /// Topic name (or file path) for dead letters and logs.
    pub topic: String,
    /// Partition (0 for files).
    pub partition: i32,
    /// Offset within the partition (line number for files).
    pub offset: i64,
    /// Message key.
    pub key: Option<Vec<u8>>,
    /// Message value; `None` is a tombstone.
    pub payload: Option<Vec<u8>>,
}

/// A change of which ads-topic partitions this worker owns.
#[derive(Debug, Clone, PartialEq)]
pub enum OwnershipChange {
    /// These partitions' ads are now ours.
    Assigned(Vec<i32>),
    /// These partitions' ads went to another worker.
    Revoked(Vec<i32>),
}

/// A source's queue of ownership changes, shared, so that changes can be
/// read while a `next` call is pending (the pipeline applies records that
/// were read earlier while it waits for new ones).
#[derive(Debug, Clone, Default)]
pub struct OwnershipFeed(Arc<Mutex<Vec<OwnershipChange>>>);

impl OwnershipFeed {
    /// Queue a change (from the source's rebalance callback).
    pub fn push(&self, change: OwnershipChange) {
        if let Ok(mut changes) = self.0.lock() {
            changes.push(change);
        }
    }

    /// Changes since the last call, oldest first.
    pub fn take(&self) -> Vec<OwnershipChange> {
        self.0.lock().map(|mut c| std::mem::take(&mut *c)).unwrap_or_default()
    }
}

/// Acknowledges records to a source from outside it: implemented by a part
/// the source shares (Kafka's offset tracker, the files' positions), so
/// that a record can be acknowledged while a `next` call holds the source.
pub trait Acknowledge: Send + Sync {
    /// The record's effects are durable: the source may commit past it once
    /// every earlier record of its partition is acknowledged too.
    fn ack(&self, record: &SourceRecord) -> Result<(), SourceError>;
}

/// A shared, cloneable [`Acknowledge`] handle, from [`EventSource::ack_handle`].
#[derive(Clone)]
pub struct AckHandle(Arc<dyn Acknowledge>);

impl AckHandle {
    /// A handle to `acker`, which the source keeps a reference to as well.
    pub fn new(acker: Arc<dyn Acknowledge>) -> Self {
        Self(acker)
    }

    /// The record's effects are durable (see [`Acknowledge::ack`]).
    pub fn ack(&self, record: &SourceRecord) -> Result<(), SourceError> {
        self.0.ack(record)
    }
}

impl std::fmt::Debug for AckHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AckHandle")
    }
}

/// Errors reading from or acknowledging to a source.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// Input could not be read.
    #[error("cannot read input {path}: {reason}")]
    Io { path: String, reason: String },
    /// The source's committed position could not be stored.
    #[error("cannot store source position: {0}")]
    Commit(String),
}

/// Where events come from. Records of one partition are delivered in order;
/// acknowledging a record through [`EventSource::ack_handle`] marks its
/// effects durable so the source may commit past it. The handle works while
/// a `next` call is pending, so finished records are acknowledged at once
/// even when the input is idle; acknowledgements must come in input order.
#[async_trait]
pub trait EventSource: Send {
    /// The next record, or `None` when the input is exhausted.
    async fn next(&mut self) -> Result<Option<SourceRecord>, SourceError>;
    /// A handle acknowledging this source's records, usable during `next`.
    fn ack_handle(&self) -> AckHandle;
    /// The queue of ownership changes, if the source has partitions to own.
    fn ownership_feed(&self) -> Option<OwnershipFeed> {
        None
    }
    /// Stop consuming and persist every acknowledged position (called once,
    /// at the end; records read but not acknowledged are replayed next run).
    async fn close(&mut self) -> Result<(), SourceError> {
        Ok(())
    }
}
