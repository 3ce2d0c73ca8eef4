//! Vector storage: the `VectorStore` seam and the point/filter types every
//! backend understands.
//!
//! A store holds one collection of points (products, or ads). Ids are the
//! entities' own string ids; backends derive their internal point ids from
//! them (UUIDv5), so re-upserting the same entity overwrites, never
//! duplicates.

pub mod edge;
pub mod faults;
pub mod memory;
pub mod metered;
pub mod qdrant;

use async_trait::async_trait;
use serde_json::{Map, Value};

/// Namespace for UUIDv5 point ids derived from entity ids.
pub const POINT_ID_NAMESPACE: uuid::Uuid = uuid::Uuid::from_u128(0x6164_7265_632d_4964_2d76_3500_0000_0001);

/// Stable point id of an entity id.
pub fn point_id(entity_id: &str) -> uuid::Uuid {
    uuid::Uuid::new_v5(&POINT_ID_NAMESPACE, entity_id.as_bytes())
}

/// One stored point: the entity id, its vector and a JSON-object payload.
#[derive(Debug, Clone, PartialEq)]
pub struct Point {
    /// Entity id (product id or ad id).
    pub id: String,
    /// Embedding; empty when retrieved without vectors.
    pub vector: Vec<f32>,
    /// Payload fields (always a JSON object).
    pub payload: Map<String, Value>,
}

/// One page of a scroll.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Page {
    /// Points of this page.
    pub points: Vec<Point>,
    /// Cursor of the next page; `None` when this was the last.
    pub next: Option<String>,
}

/// Points per page when a whole collection is scrolled.
pub const SCROLL_PAGE: usize = 512;

/// A search hit.
#[derive(Debug, Clone, PartialEq)]
pub struct ScoredPoint {
    /// Entity id.
    pub id: String,
    /// Cosine similarity (higher is closer).
    pub score: f32,
    /// Payload of the hit.
    pub payload: Map<String, Value>,
}

/// One condition on a payload field; all conditions of a [`Filter`] must hold.
#[derive(Debug, Clone, PartialEq)]
pub enum Condition {
    /// Field (dotted path, e.g. `attributes.category`) equals this boolean.
    BoolEq { key: String, value: bool },
    /// Field equals one of these values (strings or integers).
    AnyOf { key: String, values: Vec<MatchValue> },
}

/// A scalar a payload field can be matched against.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum MatchValue {
    /// Exact string match.
    Keyword(String),
    /// Exact integer match.
    Integer(i64),
}

/// Conjunction of conditions; empty means "everything".
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Filter {
    /// Conditions that must all hold.
    pub must: Vec<Condition>,
}

/// Errors of the storage layer.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The store could not be reached or answered with a retryable failure.
    #[error("vector store unavailable: {0}")]
    Unavailable(String),
    /// The request itself is wrong (wrong dimension, bad payload); retrying won't help.
    #[error("vector store rejected the request: {0}")]
    Rejected(String),
    /// Opening or creating the store failed.
    #[error("cannot open vector store at {path}: {reason}")]
    Open { path: String, reason: String },
}

impl StoreError {
    /// Whether retrying the same call later may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(self, StoreError::Unavailable(_))
    }
}

/// Reject a vector a store of dimension `dim` cannot hold (wrong length or
/// a non-finite value); `what` names it in the error.
pub fn check_vector(vector: &[f32], dim: usize, what: &str) -> Result<(), StoreError> {
    if vector.len() != dim {
        return Err(StoreError::Rejected(format!("{what} has dimension {}, store expects {dim}", vector.len())));
    }
    if vector.iter().any(|x| !x.is_finite()) {
        return Err(StoreError::Rejected(format!("{what} contains a non-finite value")));
    }
    Ok(())
}

/// Hand every page of `store` to `each`, in scroll order, with one page in
/// memory at a time (pages of `limit` points).
pub async fn for_each_page<S: VectorStore + ?Sized>(
    store: &S,
    limit: usize,
    with_vectors: bool,
    mut each: impl FnMut(Vec<Point>) + Send,
) -> Result<(), StoreError> {
    let mut cursor = None;
    loop {
        let page = store.scroll_page(cursor, limit, with_vectors).await?;
        each(page.points);
        match page.next {
            Some(next) => cursor = Some(next),
            None => return Ok(()),
        }
    }
}

/// A collection of vectors with payloads, searchable by cosine similarity.
#[async_trait]
pub trait VectorStore: Send + Sync + 'static {
    /// Insert or overwrite points (keyed by entity id); durable when it returns.
    async fn upsert(&self, points: Vec<Point>) -> Result<(), StoreError>;
    /// Delete points by entity id; missing ids are not an error.
    async fn delete(&self, ids: Vec<String>) -> Result<(), StoreError>;
    /// Fetch points by entity id (missing ones are omitted).
    async fn retrieve(&self, ids: Vec<String>, with_vectors: bool) -> Result<Vec<Point>, StoreError>;
    /// Top `limit` points by cosine similarity that pass `filter`, best first.
    async fn search(&self, vector: Vec<f32>, filter: Filter, limit: usize) -> Result<Vec<ScoredPoint>, StoreError>;
    /// Up to `limit` points in the store's own stable order, starting at
    /// `cursor` (`None`: the beginning), and the cursor of the next page
    /// (`None`: no more). Cursors are opaque; pass back what was returned.
    async fn scroll_page(&self, cursor: Option<String>, limit: usize, with_vectors: bool) -> Result<Page, StoreError>;
    /// Every point in the collection (small collections, tests and oracles;
    /// large scans should page with [`VectorStore::scroll_page`]).
    async fn scroll_all(&self, with_vectors: bool) -> Result<Vec<Point>, StoreError> {
        let mut out = Vec::new();
        for_each_page(self, SCROLL_PAGE, with_vectors, |points| out.extend(points)).await?;
        Ok(out)
    }
    /// Number of points.
    async fn count(&self) -> Result<usize, StoreError>;
}
