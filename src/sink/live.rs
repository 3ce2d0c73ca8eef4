//! A [`ListSink`] decorator that feeds the preview's live view: once the
//! inner sink has made a list durable, the view is updated and watchers are
//! told. Lists read back for a partition takeover seed the view too.

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;

use super::{DeadLetter, ListSink, SinkError};
use crate::events::RecommendationList;
use crate::preview::view::LiveLists;

/// Forwards to `inner`, then records successful publications in `view`.
pub struct LiveSink {
    inner: Arc<dyn ListSink>,
    view: LiveLists,
}

impl LiveSink {
    /// Wrap `inner`.
    pub fn new(inner: Arc<dyn ListSink>, view: LiveLists) -> Self {
        Self { inner, view }
    }
}

#[async_trait]
impl ListSink for LiveSink {
    async fn publish(&self, ad_id: &str, partition: i32, list: Option<&RecommendationList>) -> Result<(), SinkError> {
        self.inner.publish(ad_id, partition, list).await?;
        // Only what the sink accepted is shown: the page never runs ahead of the output.
        self.view.apply(ad_id, list);
        Ok(())
    }

    async fn dead_letter(&self, letter: &DeadLetter) -> Result<(), SinkError> {
        self.inner.dead_letter(letter).await
    }

    async fn latest(&self, partitions: &[i32]) -> Result<BTreeMap<String, Option<RecommendationList>>, SinkError> {
        let latest = self.inner.latest(partitions).await?;
        self.view.seed(latest.values().flatten().cloned());
        Ok(latest)
    }
}
