//! Fault injection at the [`VectorStore`] seam: a wrapper that makes chosen
//! calls fail with [`StoreError::Unavailable`], the error a real backend
//! returns when it cannot be reached or cannot persist. The reliability tests
//! use it to take the store away mid-stream; `app` never builds one.
//!
//! Failures are scheduled by call number (all wrappers sharing one
//! [`FaultSchedule`] count together), so a test is deterministic and needs no
//! timing.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;

use super::{Filter, Page, Point, ScoredPoint, StoreError, VectorStore};

/// Whether an injected failure strikes before or after the real call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultMode {
    /// The call is not made: nothing is read or written.
    Before,
    /// The call is made (a write lands) but the caller gets the error, as
    /// when a remote store applies a write and the answer is lost.
    After,
}

/// A run of consecutive failing calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outage {
    /// Number (0-based, across all wrappers of the schedule) of the first failing call.
    pub from_call: u64,
    /// How many consecutive calls fail.
    pub calls: u64,
    /// Before or after the real call.
    pub mode: FaultMode,
}

/// Which calls fail; shared by the wrappers of one test.
#[derive(Debug, Default)]
pub struct FaultSchedule {
    outages: Mutex<Vec<Outage>>,
    calls: AtomicU64,
    injected: AtomicU64,
}

impl FaultSchedule {
    /// A schedule with these outages.
    pub fn new(outages: Vec<Outage>) -> Arc<Self> {
        Arc::new(Self { outages: Mutex::new(outages), ..Self::default() })
    }

    /// Add an outage starting at the next call.
    pub fn fail_next(&self, calls: u64, mode: FaultMode) {
        let from_call = self.calls.load(Ordering::SeqCst);
        self.lock().push(Outage { from_call, calls, mode });
    }

    /// Calls seen so far.
    pub fn calls(&self) -> u64 {
        self.calls.load(Ordering::SeqCst)
    }

    /// Failures injected so far.
    pub fn injected(&self) -> u64 {
        self.injected.load(Ordering::SeqCst)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Outage>> {
        self.outages.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Count a call; the failure mode if it falls in an outage.
    fn next_call(&self) -> Option<FaultMode> {
        let n = self.calls.fetch_add(1, Ordering::SeqCst);
        let mode = self.lock().iter().find(|o| n >= o.from_call && n - o.from_call < o.calls).map(|o| o.mode);
        if mode.is_some() {
            self.injected.fetch_add(1, Ordering::SeqCst);
        }
        mode
    }
}

/// A [`VectorStore`] that fails the calls its schedule says, and otherwise
/// passes everything to the wrapped store.
pub struct FaultyStore {
    inner: Arc<dyn VectorStore>,
    schedule: Arc<FaultSchedule>,
}

impl FaultyStore {
    /// Wrap `inner`, failing calls as `schedule` says.
    pub fn new(inner: Arc<dyn VectorStore>, schedule: Arc<FaultSchedule>) -> Self {
        Self { inner, schedule }
    }

    /// Run `call` unless the schedule fails it before; fail it after if it says so.
    async fn guarded<T, F>(&self, op: &str, call: F) -> Result<T, StoreError>
    where
        F: Future<Output = Result<T, StoreError>> + Send,
    {
        let injected = || StoreError::Unavailable(format!("injected fault: {op} failed"));
        match self.schedule.next_call() {
            None => call.await,
            Some(FaultMode::Before) => Err(injected()),
            Some(FaultMode::After) => {
                call.await?;
                Err(injected())
            }
        }
    }
}

#[async_trait]
impl VectorStore for FaultyStore {
    async fn upsert(&self, points: Vec<Point>) -> Result<(), StoreError> {
        self.guarded("upsert", self.inner.upsert(points)).await
    }

    async fn delete(&self, ids: Vec<String>) -> Result<(), StoreError> {
        self.guarded("delete", self.inner.delete(ids)).await
    }

    async fn retrieve(&self, ids: Vec<String>, with_vectors: bool) -> Result<Vec<Point>, StoreError> {
        self.guarded("retrieve", self.inner.retrieve(ids, with_vectors)).await
    }

    async fn search(&self, vector: Vec<f32>, filter: Filter, limit: usize) -> Result<Vec<ScoredPoint>, StoreError> {
        self.guarded("search", self.inner.search(vector, filter, limit)).await
    }

    async fn scroll_page(&self, cursor: Option<String>, limit: usize, with_vectors: bool) -> Result<Page, StoreError> {
        self.guarded("scroll", self.inner.scroll_page(cursor, limit, with_vectors)).await
    }

    // One fault decision per whole scroll, as callers see it (not per page).
    async fn scroll_all(&self, with_vectors: bool) -> Result<Vec<Point>, StoreError> {
        self.guarded("scroll", self.inner.scroll_all(with_vectors)).await
    }

    async fn count(&self) -> Result<usize, StoreError> {
        self.guarded("count", self.inner.count()).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::memory::MemoryStore;

    fn point(id: &str) -> Point {
        Point { id: id.into(), vector: vec![1.0, 0.0], payload: Default::default() }
    }

    #[tokio::test]
    async fn fails_exactly_the_scheduled_calls_before_or_after_the_write() {
        let inner = Arc::new(MemoryStore::default());
        let schedule = FaultSchedule::new(vec![Outage { from_call: 1, calls: 2, mode: FaultMode::Before }]);
        let store = FaultyStore::new(inner.clone(), schedule.clone());
        store.upsert(vec![point("a")]).await.expect("call 0 passes");
        assert!(store.upsert(vec![point("b")]).await.is_err_and(|e| e.is_transient()));
        assert!(store.count().await.is_err());
        assert_eq!(store.count().await.expect("call 3 passes"), 1, "b was never written");
        schedule.fail_next(1, FaultMode::After);
        assert!(store.upsert(vec![point("c")]).await.is_err());
        assert_eq!(inner.count().await.expect("count"), 2, "the failed-after write landed");
        assert_eq!((schedule.calls(), schedule.injected()), (5, 3));
    }
}
