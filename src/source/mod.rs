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

/// The queue behind [`EventSource::take_ownership_changes`], shared, so that
/// changes can be read while a `next` call is pending (the pipeline applies
/// records that were read earlier while it waits for new ones).
#[derive(Debug, Clone, Default)]
pub struct OwnershipFeed(pub Arc<Mutex<Vec<OwnershipChange>>>);

impl OwnershipFeed {
    /// Changes since the last call, oldest first.
    pub fn take(&self) -> Vec<OwnershipChange> {
        self.0.lock().map(|mut c| std::mem::take(&mut *c)).unwrap_or_default()
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
/// `ack` marks a record's effects durable so the source may commit past it.
#[async_trait]
pub trait EventSource: Send {
    /// The next record, or `None` when the input is exhausted.
    async fn next(&mut self) -> Result<Option<SourceRecord>, SourceError>;
    /// The record's effects are durable.
    async fn ack(&mut self, record: &SourceRecord) -> Result<(), SourceError>;
    /// Ownership changes since the last call (sources without partitions have none).
    fn take_ownership_changes(&mut self) -> Vec<OwnershipChange> {
        Vec::new()
    }
    /// The same changes through a shared handle, if the source has any.
    fn ownership_feed(&self) -> Option<OwnershipFeed> {
        None
    }
    /// Stop consuming and persist the final position (called once, at the end).
    async fn close(&mut self) -> Result<(), SourceError> {
        Ok(())
    }
}
