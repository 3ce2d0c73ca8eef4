//! A [`ListSink`] decorator that times every call and counts dead letters.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;

use super::{DeadLetter, ListSink, SinkError};
use crate::events::RecommendationList;
use crate::telemetry;

/// Forwards to `inner`, recording `adrec_sink_seconds` and `adrec_dead_letters_total`.
pub struct MeteredSink {
    inner: Arc<dyn ListSink>,
}

impl MeteredSink {
    /// Wrap `inner`.
    pub fn new(inner: Arc<dyn ListSink>) -> Self {
        Self { inner }
    }
}

#[async_trait]
impl ListSink for MeteredSink {
    async fn publish(&self, ad_id: &str, partition: i32, list: Option<&RecommendationList>) -> Result<(), SinkError> {
        let started = Instant::now();
        let result = self.inner.publish(ad_id, partition, list).await;
        telemetry::sink_call("publish", started.elapsed());
        result
    }

    async fn dead_letter(&self, letter: &DeadLetter) -> Result<(), SinkError> {
        let started = Instant::now();
        let result = self.inner.dead_letter(letter).await;
        telemetry::sink_call("dead_letter", started.elapsed());
        if result.is_ok() {
            telemetry::dead_lettered(&letter.record.topic);
        }
        result
    }

    async fn latest(&self, partitions: &[i32]) -> Result<BTreeMap<String, Option<RecommendationList>>, SinkError> {
        let started = Instant::now();
        let result = self.inner.latest(partitions).await;
        telemetry::sink_call("latest", started.elapsed());
        result
    }
}
