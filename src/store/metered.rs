//! A [`VectorStore`] decorator that times every call (`adrec_store_seconds`)
//! and counts failures, whatever the backend.

use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;

use super::{Filter, Page, Point, ScoredPoint, StoreError, VectorStore};
use crate::telemetry;

/// Forwards to `inner`, labelled with its collection (`products` or `ads`).
pub struct MeteredStore {
    inner: Arc<dyn VectorStore>,
    collection: &'static str,
}

impl MeteredStore {
    /// Wrap `inner`, reporting under `collection`.
    pub fn wrap(inner: Arc<dyn VectorStore>, collection: &'static str) -> Arc<dyn VectorStore> {
        Arc::new(Self { inner, collection })
    }

    fn done<T>(&self, op: &'static str, started: Instant, result: Result<T, StoreError>) -> Result<T, StoreError> {
        telemetry::store_call(self.collection, op, started.elapsed(), result.is_ok());
        result
    }
}

#[async_trait]
impl VectorStore for MeteredStore {
    async fn upsert(&self, points: Vec<Point>) -> Result<(), StoreError> {
        let started = Instant::now();
        let r = self.inner.upsert(points).await;
        self.done("upsert", started, r)
    }

    async fn delete(&self, ids: Vec<String>) -> Result<(), StoreError> {
        let started = Instant::now();
        let r = self.inner.delete(ids).await;
        self.done("delete", started, r)
    }

    async fn retrieve(&self, ids: Vec<String>, with_vectors: bool) -> Result<Vec<Point>, StoreError> {
        let started = Instant::now();
        let r = self.inner.retrieve(ids, with_vectors).await;
        self.done("retrieve", started, r)
    }

    async fn search(&self, vector: Vec<f32>, filter: Filter, limit: usize) -> Result<Vec<ScoredPoint>, StoreError> {
        let started = Instant::now();
        let r = self.inner.search(vector, filter, limit).await;
        self.done("search", started, r)
    }

    async fn scroll_page(&self, cursor: Option<String>, limit: usize, with_vectors: bool) -> Result<Page, StoreError> {
        let started = Instant::now();
        let r = self.inner.scroll_page(cursor, limit, with_vectors).await;
        self.done("scroll", started, r)
    }

    async fn count(&self) -> Result<usize, StoreError> {
        let started = Instant::now();
        let r = self.inner.count().await;
        self.done("count", started, r)
    }
}
