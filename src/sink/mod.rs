//! Sinks: where published lists and dead letters go.

pub mod files;
pub mod kafka;
pub mod live;
pub mod metered;

use std::collections::BTreeMap;

use async_trait::async_trait;

use crate::events::RecommendationList;
use crate::source::SourceRecord;

/// Errors delivering output.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// Output could not be written or acknowledged; retry.
    #[error("cannot deliver output: {0}")]
    Unavailable(String),
}

impl SinkError {
    /// Sink failures are always worth retrying: the event itself is fine.
    pub fn is_transient(&self) -> bool {
        true
    }
}

/// A record that can never succeed, with the reason.
#[derive(Debug, Clone, PartialEq)]
pub struct DeadLetter {
    /// Human-readable reason (the error's message).
    pub error: String,
    /// The original record.
    pub record: SourceRecord,
}

/// Receives list changes and dead letters; durable when a call returns.
#[async_trait]
pub trait ListSink: Send + Sync {
    /// Publish an ad's new list, or its deletion (`None`, a tombstone), to
    /// `partition` (the ad's input partition, so its owner finds it there).
    async fn publish(&self, ad_id: &str, partition: i32, list: Option<&RecommendationList>) -> Result<(), SinkError>;
    /// Record an input that can never succeed.
    async fn dead_letter(&self, letter: &DeadLetter) -> Result<(), SinkError>;
    /// The last published value per ad in these partitions (what a new owner
    /// of the partitions continues from). Sinks without partitions return nothing.
    async fn latest(&self, _partitions: &[i32]) -> Result<BTreeMap<String, Option<RecommendationList>>, SinkError> {
        Ok(BTreeMap::new())
    }
}
