//! Embedded default vector store on `qdrant-edge` (Qdrant's in-process engine).
//!
//! Why: it gives cosine search with payload filtering and on-disk persistence
//! without running a server, so the service works out of the box. One
//! [`EdgeShard`] per data directory holds one collection with a single unnamed
//! dense vector.
//!
//! Engine facts this module relies on (qdrant-edge 0.7.0):
//! - Every call is blocking, so each trait method runs in `spawn_blocking`.
//! - `EdgeShard::update` appends to the WAL without fsync, and 0.7.0 never
//!   replays the WAL on load: only flushed segments survive a crash. Every
//!   mutation is therefore followed by `EdgeShard::flush`, which syncs the WAL
//!   and synchronously flushes all segments before we return.
//! - `EdgeShard::flush` `try_lock`s its internals and panics on contention or
//!   I/O failure, so mutations are serialized by our own mutex and the flush
//!   is wrapped in `catch_unwind`.
//! - Payload filters work without payload indexes (conditions are checked
//!   against stored payloads), including dotted paths into nested objects, so
//!   no index is created.
//! - The engine takes no lock on its directory; we hold an advisory lock file
//!   so two processes cannot open the same store.
//! - With cosine distance vectors are stored unit-normalized, so retrieved
//!   vectors are the normalized form of what was upserted.

use std::fs::{File, OpenOptions, TryLockError};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use qdrant_edge::{
    Condition as EngineCondition, CountRequest, DEFAULT_VECTOR_NAME, Distance, EdgeConfig, EdgeShard, EdgeVectorParams,
    FieldCondition, Filter as EngineFilter, JsonPath, Match, NamedQuery, OperationError, Payload, PointId,
    PointInsertOperations, PointOperations, PointStructPersisted, QueryEnum, QueryRequest, ScoringQuery, ScrollRequest,
    UpdateOperation, VectorInternal, VectorStructInternal, VectorStructPersisted, WithPayloadInterface, WithVector,
};
use serde_json::Value;

use super::{Condition, Filter, MatchValue, Page, Point, ScoredPoint, StoreError, VectorStore, point_id};

/// Payload key holding the entity id (point ids are UUIDv5 hashes of it).
const ID_KEY: &str = "id";
/// File name of the engine's persisted shard config inside the data dir.
const CONFIG_FILE: &str = "edge_config.json";
/// Directory holding the engine's segments inside the data dir.
const SEGMENTS_DIR: &str = "segments";
/// Advisory lock file guarding the data dir against a second opener.
const LOCK_FILE: &str = "adrec-store.lock";
/// Points per engine update operation (one WAL record each).
const UPSERT_CHUNK: usize = 512;

/// Vector store backed by an embedded qdrant-edge shard in a local directory.
#[derive(Clone)]
pub struct EdgeStore {
    inner: Arc<Inner>,
}

/// Shared state. Field order matters: the shard is dropped (and flushed)
/// before the directory lock is released.
struct Inner {
    shard: EdgeShard,
    /// Serializes update/flush/optimize: `EdgeShard::flush` panics if another
    /// thread holds the WAL lock, i.e. if an update runs concurrently.
    write_lock: Mutex<()>,
    dim: usize,
    _dir_lock: File,
}

impl std::fmt::Debug for EdgeStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EdgeStore").field("path", &self.inner.shard.path()).field("dim", &self.inner.dim).finish()
    }
}

impl EdgeStore {
    /// Open the store at `path`, creating it (cosine, one dense vector of `dim`) if missing.
    ///
    /// Blocking; call it before serving or from `spawn_blocking`.
    pub fn open(path: &Path, dim: usize) -> Result<Self, StoreError> {
        let open_err = |reason: String| StoreError::Open { path: path.display().to_string(), reason };
        if dim == 0 {
            return Err(open_err("vector dimension must be positive".into()));
        }
        std::fs::create_dir_all(path).map_err(|e| open_err(format!("cannot create directory: {e}")))?;
        let dir_lock = lock_dir(path).map_err(open_err)?;

        let shard = if shard_exists(path) {
            let shard = EdgeShard::load(path, None).map_err(|e| open_err(e.to_string()))?;
            check_shard_config(&shard.config(), dim).map_err(open_err)?;
            shard
        } else {
            EdgeShard::new(path, new_config(dim)).map_err(|e| open_err(e.to_string()))?
        };

        Ok(Self { inner: Arc::new(Inner { shard, write_lock: Mutex::new(()), dim, _dir_lock: dir_lock }) })
    }

    /// Dimension of the stored vectors.
    pub fn dim(&self) -> usize {
        self.inner.dim
    }

    /// Run the engine's optimizers (vacuum deleted points, merge segments, build HNSW); returns whether anything changed.
    pub async fn optimize(&self) -> Result<bool, StoreError> {
        self.blocking(|inner| {
            let _guard = inner.lock_writes();
            let changed = inner.shard.optimize().map_err(map_engine_err)?;
            inner.flush()?;
            Ok(changed)
        })
        .await
    }

    /// Run `f` on the blocking thread pool with access to the shared state.
    async fn blocking<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        F: FnOnce(&Inner) -> Result<T, StoreError> + Send + 'static,
        T: Send + 'static,
    {
        let inner = Arc::clone(&self.inner);
        tokio::task::spawn_blocking(move || f(&inner))
            .await
            .map_err(|e| StoreError::Unavailable(format!("edge store task failed: {e}")))?
    }
}

impl Inner {
    fn lock_writes(&self) -> MutexGuard<'_, ()> {
        // A panic while holding the guard leaves nothing half-done on our side.
        self.write_lock.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Persist everything applied so far. Caller must hold the write lock.
    fn flush(&self) -> Result<(), StoreError> {
        catch_unwind(AssertUnwindSafe(|| self.shard.flush()))
            .map_err(|panic| StoreError::Unavailable(format!("flushing edge store failed: {}", panic_text(&panic))))
    }
}

#[async_trait]
impl VectorStore for EdgeStore {
    async fn upsert(&self, points: Vec<Point>) -> Result<(), StoreError> {
        if points.is_empty() {
            return Ok(());
        }
        self.blocking(move |inner| {
            // Validate the whole batch first so a bad point writes nothing.
            for p in &points {
                super::check_vector(&p.vector, inner.dim, &format!("vector of {:?}", p.id))?;
            }
            let mut engine_points: Vec<PointStructPersisted> = points.into_iter().map(to_engine_point).collect();
            let _guard = inner.lock_writes();
            while !engine_points.is_empty() {
                let rest = engine_points.split_off(engine_points.len().min(UPSERT_CHUNK));
                let chunk = std::mem::replace(&mut engine_points, rest);
                let op = UpdateOperation::PointOperation(PointOperations::UpsertPoints(
                    PointInsertOperations::PointsList(chunk),
                ));
                inner.shard.update(op).map_err(map_engine_err)?;
            }
            inner.flush()
        })
        .await
    }

    async fn delete(&self, ids: Vec<String>) -> Result<(), StoreError> {
        if ids.is_empty() {
            return Ok(());
        }
        self.blocking(move |inner| {
            let ids = ids.iter().map(|id| engine_id(id)).collect();
            let _guard = inner.lock_writes();
            inner
                .shard
                .update(UpdateOperation::PointOperation(PointOperations::DeletePoints { ids }))
                .map_err(map_engine_err)?;
            inner.flush()
        })
        .await
    }

    async fn retrieve(&self, ids: Vec<String>, with_vectors: bool) -> Result<Vec<Point>, StoreError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        self.blocking(move |inner| {
            let ids: Vec<PointId> = ids.iter().map(|id| engine_id(id)).collect();
            let records = inner
                .shard
                .retrieve(&ids, Some(WithPayloadInterface::Bool(true)), Some(WithVector::Bool(with_vectors)))
                .map_err(map_engine_err)?;
            Ok(records.into_iter().map(|r| to_point(r.id, r.payload, r.vector)).collect())
        })
        .await
    }

    async fn search(&self, vector: Vec<f32>, filter: Filter, limit: usize) -> Result<Vec<ScoredPoint>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        self.blocking(move |inner| {
            super::check_vector(&vector, inner.dim, "query vector")?;
            let filter = match to_engine_filter(&filter)? {
                Converted::MatchNothing => return Ok(Vec::new()),
                Converted::Filter(f) => f,
            };
            let request = QueryRequest {
                prefetches: Vec::new(),
                query: Some(ScoringQuery::Vector(QueryEnum::Nearest(NamedQuery::default_dense(vector)))),
                filter,
                score_threshold: None,
                limit,
                offset: 0,
                params: None,
                with_vector: WithVector::Bool(false),
                with_payload: WithPayloadInterface::Bool(true),
            };
            let hits = inner.shard.query(request).map_err(map_engine_err)?;
            Ok(hits
                .into_iter()
                .map(|hit| {
                    let point = to_point(hit.id, hit.payload, None);
                    ScoredPoint { id: point.id, score: hit.score, payload: point.payload }
                })
                .collect())
        })
        .await
    }

    async fn scroll_page(&self, cursor: Option<String>, limit: usize, with_vectors: bool) -> Result<Page, StoreError> {
        // Cursors are engine point ids (UUIDs) in text form.
        let offset = match cursor {
            Some(c) => Some(PointId::Uuid(
                uuid::Uuid::parse_str(&c).map_err(|e| StoreError::Rejected(format!("bad scroll cursor {c:?}: {e}")))?,
            )),
            None => None,
        };
        self.blocking(move |inner| {
            let request = ScrollRequest {
                offset,
                limit: Some(limit.max(1)),
                filter: None,
                with_payload: Some(WithPayloadInterface::Bool(true)),
                with_vector: WithVector::Bool(with_vectors),
                order_by: None,
            };
            let (records, next) = inner.shard.scroll(request).map_err(map_engine_err)?;
            Ok(Page {
                points: records.into_iter().map(|r| to_point(r.id, r.payload, r.vector)).collect(),
                next: next.map(|id| id.to_string()),
            })
        })
        .await
    }

    async fn count(&self) -> Result<usize, StoreError> {
        self.blocking(|inner| inner.shard.count(CountRequest { filter: None, exact: true }).map_err(map_engine_err))
            .await
    }
}

/// Take an exclusive advisory lock on the data dir (released when the file is dropped).
fn lock_dir(path: &Path) -> Result<File, String> {
    let lock_path: PathBuf = path.join(LOCK_FILE);
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(|e| format!("cannot create lock file {}: {e}", lock_path.display()))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(TryLockError::WouldBlock) => {
            Err("the store is already open (by this or another process); use a different data directory".into())
        }
        Err(TryLockError::Error(e)) => Err(format!("cannot lock {}: {e}", lock_path.display())),
    }
}

/// Whether `path` already holds a shard (config file or any segment directory).
fn shard_exists(path: &Path) -> bool {
    path.join(CONFIG_FILE).exists()
        || std::fs::read_dir(path.join(SEGMENTS_DIR)).is_ok_and(|mut entries| entries.next().is_some())
}

/// Config of a fresh shard: one unnamed dense vector, cosine distance.
fn new_config(dim: usize) -> EdgeConfig {
    let mut config = EdgeConfig::default();
    config.vectors.insert(
        DEFAULT_VECTOR_NAME.to_string(),
        EdgeVectorParams {
            size: dim,
            distance: Distance::Cosine,
            on_disk: None,
            multivector_config: None,
            datatype: None,
            quantization_config: None,
            hnsw_config: None,
        },
    );
    config
}

/// Check that a loaded shard matches the expected layout.
fn check_shard_config(config: &EdgeConfig, dim: usize) -> Result<(), String> {
    let Some(params) = config.vectors.get(DEFAULT_VECTOR_NAME) else {
        return Err("existing store has no default dense vector; it was not created by adrec, \
             use another data directory"
            .into());
    };
    if params.size != dim {
        return Err(format!(
            "existing store holds vectors of dimension {}, but the embedding model produces {dim}; \
             use another data directory (or collection) for this model, or delete the old one and re-ingest",
            params.size
        ));
    }
    if params.distance != Distance::Cosine {
        return Err(format!(
            "existing store uses {:?} distance, expected Cosine; use another data directory",
            params.distance
        ));
    }
    Ok(())
}

fn engine_id(entity_id: &str) -> PointId {
    PointId::Uuid(point_id(entity_id))
}

fn to_engine_point(p: Point) -> PointStructPersisted {
    let mut payload = p.payload;
    payload.insert(ID_KEY.to_string(), Value::String(p.id.clone()));
    PointStructPersisted {
        id: engine_id(&p.id),
        vector: VectorStructPersisted::Single(p.vector),
        payload: Some(Payload(payload)),
    }
}

/// Build a [`Point`] from an engine record; the entity id comes from the payload.
fn to_point(id: PointId, payload: Option<Payload>, vector: Option<VectorStructInternal>) -> Point {
    let payload = payload.map(|p| p.0).unwrap_or_default();
    let id = match payload.get(ID_KEY) {
        Some(Value::String(s)) => s.clone(),
        // Not written by us; the engine id is the best identifier left.
        _ => id.to_string(),
    };
    Point { id, vector: dense_vector(vector), payload }
}

fn dense_vector(vector: Option<VectorStructInternal>) -> Vec<f32> {
    match vector {
        Some(VectorStructInternal::Single(v)) => v,
        Some(VectorStructInternal::Named(mut named)) => match named.remove(DEFAULT_VECTOR_NAME) {
            Some(VectorInternal::Dense(v)) => v,
            _ => Vec::new(),
        },
        _ => Vec::new(),
    }
}

/// Result of translating a [`Filter`].
enum Converted {
    /// Some condition can never hold (e.g. `AnyOf` with no values).
    MatchNothing,
    /// Engine filter; `None` means no restriction.
    Filter(Option<EngineFilter>),
}

fn to_engine_filter(filter: &Filter) -> Result<Converted, StoreError> {
    let mut must = Vec::with_capacity(filter.must.len());
    for condition in &filter.must {
        match condition {
            Condition::BoolEq { key, value } => {
                must.push(field(key, Match::from(*value))?);
            }
            Condition::AnyOf { key, values } => {
                let mut keywords = Vec::new();
                let mut integers = Vec::new();
                for v in values {
                    match v {
                        MatchValue::Keyword(s) => keywords.push(s.clone()),
                        MatchValue::Integer(i) => integers.push(*i),
                    }
                }
                let condition = match (keywords.is_empty(), integers.is_empty()) {
                    (true, true) => return Ok(Converted::MatchNothing),
                    (false, true) => field(key, Match::from(keywords))?,
                    (true, false) => field(key, Match::from(integers))?,
                    (false, false) => EngineCondition::Filter(EngineFilter {
                        should: Some(vec![field(key, Match::from(keywords))?, field(key, Match::from(integers))?]),
                        min_should: None,
                        must: None,
                        must_not: None,
                    }),
                };
                must.push(condition);
            }
        }
    }
    if must.is_empty() {
        return Ok(Converted::Filter(None));
    }
    Ok(Converted::Filter(Some(EngineFilter { should: None, min_should: None, must: Some(must), must_not: None })))
}

fn field(key: &str, r#match: Match) -> Result<EngineCondition, StoreError> {
    let path: JsonPath = key.parse().map_err(|()| StoreError::Rejected(format!("invalid payload key {key:?}")))?;
    Ok(EngineCondition::Field(FieldCondition::new_match(path, r#match)))
}

/// Bad input → `Rejected`; storage/service trouble → `Unavailable`.
fn map_engine_err(err: OperationError) -> StoreError {
    let rejected = matches!(
        err,
        OperationError::WrongVectorDimension { .. }
            | OperationError::VectorNameNotExists { .. }
            | OperationError::PointIdError { .. }
            | OperationError::TypeError { .. }
            | OperationError::TypeInferenceError { .. }
            | OperationError::ValidationError { .. }
            | OperationError::WrongSparse
            | OperationError::WrongMulti
            | OperationError::MissingRangeIndexForOrderBy { .. }
            | OperationError::MissingMapIndexForFacet { .. }
            | OperationError::VariableTypeError { .. }
            | OperationError::NonFiniteNumber { .. }
    );
    if rejected { StoreError::Rejected(err.to_string()) } else { StoreError::Unavailable(err.to_string()) }
}

fn panic_text(panic: &Box<dyn std::any::Any + Send>) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "panic".to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Map, json};

    const DIM: usize = 3;

    fn obj(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            other => panic!("not an object: {other}"),
        }
    }

    fn point(id: &str, vector: [f32; DIM], payload: Value) -> Point {
        Point { id: id.to_string(), vector: vector.to_vec(), payload: obj(payload) }
    }

    fn normalized(v: &[f32]) -> Vec<f32> {
        let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        v.iter().map(|x| x / n).collect()
    }

    fn assert_close(a: &[f32], b: &[f32]) {
        assert_eq!(a.len(), b.len());
        for (x, y) in a.iter().zip(b) {
            assert!((x - y).abs() < 1e-5, "{a:?} != {b:?}");
        }
    }

    fn ids(hits: &[ScoredPoint]) -> Vec<&str> {
        hits.iter().map(|h| h.id.as_str()).collect()
    }

    fn catalog() -> Vec<Point> {
        vec![
            point("p1", [1.0, 0.0, 0.0], json!({"in_stock": true, "attributes": {"category": "shoes", "size": 42}})),
            point("p2", [0.9, 0.1, 0.0], json!({"in_stock": false, "attributes": {"category": "shoes", "size": 40}})),
            point("p3", [0.7, 0.7, 0.0], json!({"in_stock": true, "attributes": {"category": "hats", "size": 1}})),
            point("p4", [0.0, 1.0, 0.0], json!({"in_stock": true, "attributes": {"category": "bags", "size": 7}})),
            point("p5", [-0.1, 0.0, 1.0], json!({"in_stock": true})),
        ]
    }

    #[tokio::test]
    async fn upsert_retrieve_roundtrip_with_payload() {
        let dir = tempfile::tempdir().unwrap();
        let store = EdgeStore::open(dir.path(), DIM).unwrap();
        let p = point("sku-1", [3.0, 4.0, 0.0], json!({"title": "Boot", "attributes": {"category": "shoes"}}));
        store.upsert(vec![p.clone()]).await.unwrap();

        let got = store.retrieve(vec!["sku-1".into(), "missing".into()], true).await.unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].id, "sku-1");
        let mut expected = p.payload.clone();
        expected.insert("id".into(), json!("sku-1"));
        assert_eq!(got[0].payload, expected);
        // Cosine storage keeps the normalized vector.
        assert_close(&got[0].vector, &normalized(&p.vector));

        let without = store.retrieve(vec!["sku-1".into()], false).await.unwrap();
        assert!(without[0].vector.is_empty());
        assert_eq!(without[0].payload, expected);
    }

    #[tokio::test]
    async fn a_forged_scroll_cursor_is_rejected_not_a_crash() {
        let dir = tempfile::tempdir().unwrap();
        let store = EdgeStore::open(dir.path(), DIM).unwrap();
        store.upsert(catalog()).await.unwrap();
        let err = store.scroll_page(Some("not-a-point-id".into()), 2, false).await.expect_err("bad cursor");
        assert!(matches!(&err, StoreError::Rejected(m) if m.contains("bad scroll cursor")), "{err}");
    }

    #[tokio::test]
    async fn overwrite_same_id_does_not_duplicate() {
        let dir = tempfile::tempdir().unwrap();
        let store = EdgeStore::open(dir.path(), DIM).unwrap();
        store.upsert(vec![point("a", [1.0, 0.0, 0.0], json!({"v": 1, "old": true}))]).await.unwrap();
        store.upsert(vec![point("a", [0.0, 1.0, 0.0], json!({"v": 2}))]).await.unwrap();
        assert_eq!(store.count().await.unwrap(), 1);
        let got = store.retrieve(vec!["a".into()], true).await.unwrap();
        assert_eq!(got[0].payload, obj(json!({"v": 2, "id": "a"})));
        assert_close(&got[0].vector, &[0.0, 1.0, 0.0]);
    }

    #[tokio::test]
    async fn delete_removes_points_and_ignores_missing() {
        let dir = tempfile::tempdir().unwrap();
        let store = EdgeStore::open(dir.path(), DIM).unwrap();
        store.upsert(catalog()).await.unwrap();
        assert_eq!(store.count().await.unwrap(), 5);
        store.delete(vec!["p1".into(), "nope".into()]).await.unwrap();
        assert_eq!(store.count().await.unwrap(), 4);
        assert!(store.retrieve(vec!["p1".into()], false).await.unwrap().is_empty());
        let hits = store.search(vec![1.0, 0.0, 0.0], Filter::default(), 10).await.unwrap();
        assert!(!ids(&hits).contains(&"p1"));
    }

    #[tokio::test]
    async fn search_orders_by_cosine() {
        let dir = tempfile::tempdir().unwrap();
        let store = EdgeStore::open(dir.path(), DIM).unwrap();
        store.upsert(catalog()).await.unwrap();
        // Magnitude must not matter for cosine.
        let hits = store.search(vec![10.0, 0.0, 0.0], Filter::default(), 4).await.unwrap();
        assert_eq!(ids(&hits), ["p1", "p2", "p3", "p4"]);
        assert!((hits[0].score - 1.0).abs() < 1e-5);
        let expected_p3 = 0.7 / (0.98f32).sqrt();
        assert!((hits[2].score - expected_p3).abs() < 1e-5, "{}", hits[2].score);
        assert!(hits.windows(2).all(|w| w[0].score >= w[1].score));
        assert_eq!(hits[0].payload["attributes"]["category"], json!("shoes"));
    }

    #[tokio::test]
    async fn filtered_search_bool_and_nested_any_of() {
        let dir = tempfile::tempdir().unwrap();
        let store = EdgeStore::open(dir.path(), DIM).unwrap();
        store.upsert(catalog()).await.unwrap();
        let q = vec![1.0, 0.0, 0.0];

        let in_stock = Condition::BoolEq { key: "in_stock".into(), value: true };
        let hits = store.search(q.clone(), Filter { must: vec![in_stock.clone()] }, 10).await.unwrap();
        assert_eq!(ids(&hits), ["p1", "p3", "p4", "p5"]);

        let shoes_or_hats = Condition::AnyOf {
            key: "attributes.category".into(),
            values: vec![MatchValue::Keyword("shoes".into()), MatchValue::Keyword("hats".into())],
        };
        let hits = store.search(q.clone(), Filter { must: vec![shoes_or_hats.clone()] }, 10).await.unwrap();
        assert_eq!(ids(&hits), ["p1", "p2", "p3"]);

        let hits = store.search(q.clone(), Filter { must: vec![in_stock.clone(), shoes_or_hats] }, 10).await.unwrap();
        assert_eq!(ids(&hits), ["p1", "p3"]);

        let sizes = Condition::AnyOf {
            key: "attributes.size".into(),
            values: vec![MatchValue::Integer(40), MatchValue::Integer(7)],
        };
        let hits = store.search(q.clone(), Filter { must: vec![sizes] }, 10).await.unwrap();
        assert_eq!(ids(&hits), ["p2", "p4"]);

        let mixed = Condition::AnyOf {
            key: "attributes.size".into(),
            values: vec![MatchValue::Integer(42), MatchValue::Keyword("hats".into())],
        };
        let hits = store.search(q.clone(), Filter { must: vec![mixed] }, 10).await.unwrap();
        assert_eq!(ids(&hits), ["p1"]);
        let mixed_cat = Condition::AnyOf {
            key: "attributes.category".into(),
            values: vec![MatchValue::Integer(42), MatchValue::Keyword("bags".into())],
        };
        let hits = store.search(q.clone(), Filter { must: vec![mixed_cat] }, 10).await.unwrap();
        assert_eq!(ids(&hits), ["p4"]);

        let empty = Condition::AnyOf { key: "attributes.category".into(), values: vec![] };
        assert!(store.search(q.clone(), Filter { must: vec![empty] }, 10).await.unwrap().is_empty());

        let bad_key = Condition::BoolEq { key: "a..b".into(), value: true };
        let err = store.search(q, Filter { must: vec![bad_key] }, 10).await.unwrap_err();
        assert!(matches!(err, StoreError::Rejected(_)), "{err}");
    }

    #[tokio::test]
    async fn scroll_all_pages_through_everything() {
        let dir = tempfile::tempdir().unwrap();
        let store = EdgeStore::open(dir.path(), DIM).unwrap();
        let n = crate::store::SCROLL_PAGE * 2 + 17;
        let points: Vec<Point> =
            (0..n).map(|i| point(&format!("e{i}"), [1.0, i as f32, 0.5], json!({"n": i}))).collect();
        store.upsert(points).await.unwrap();
        assert_eq!(store.count().await.unwrap(), n);
        let all = store.scroll_all(true).await.unwrap();
        assert_eq!(all.len(), n);
        let mut seen: Vec<&str> = all.iter().map(|p| p.id.as_str()).collect();
        seen.sort_unstable();
        seen.dedup();
        assert_eq!(seen.len(), n);
        assert!(all.iter().all(|p| p.vector.len() == DIM && p.payload["id"] == json!(p.id)));
        assert!(store.scroll_all(false).await.unwrap().iter().all(|p| p.vector.is_empty()));
    }

    #[tokio::test]
    async fn wrong_dimension_is_rejected_and_writes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = EdgeStore::open(dir.path(), DIM).unwrap();
        let bad = Point { id: "bad".into(), vector: vec![1.0; DIM + 1], payload: Map::new() };
        let err = store.upsert(vec![point("ok", [1.0, 0.0, 0.0], json!({})), bad]).await.unwrap_err();
        assert!(matches!(err, StoreError::Rejected(_)), "{err}");
        assert_eq!(store.count().await.unwrap(), 0);
        let err = store.search(vec![1.0], Filter::default(), 3).await.unwrap_err();
        assert!(matches!(err, StoreError::Rejected(_)), "{err}");
    }

    #[tokio::test]
    async fn reopen_keeps_points() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = EdgeStore::open(dir.path(), DIM).unwrap();
            store.upsert(catalog()).await.unwrap();
            store.delete(vec!["p5".into()]).await.unwrap();
        }
        let store = EdgeStore::open(dir.path(), DIM).unwrap();
        assert_eq!(store.count().await.unwrap(), 4);
        let got = store.retrieve(vec!["p3".into()], false).await.unwrap();
        assert_eq!(got[0].payload["attributes"]["category"], json!("hats"));
        let hits = store
            .search(
                vec![0.0, 1.0, 0.0],
                Filter { must: vec![Condition::BoolEq { key: "in_stock".into(), value: true }] },
                2,
            )
            .await
            .unwrap();
        assert_eq!(ids(&hits), ["p4", "p3"]);
    }

    #[tokio::test]
    async fn second_open_of_same_dir_fails() {
        let dir = tempfile::tempdir().unwrap();
        let _store = EdgeStore::open(dir.path(), DIM).unwrap();
        let err = EdgeStore::open(dir.path(), DIM).unwrap_err();
        assert!(matches!(err, StoreError::Open { .. }), "{err}");
    }

    #[tokio::test]
    async fn dimension_mismatch_on_reopen() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = EdgeStore::open(dir.path(), DIM).unwrap();
            store.upsert(catalog()).await.unwrap();
        }
        let err = EdgeStore::open(dir.path(), DIM + 1).unwrap_err();
        match &err {
            StoreError::Open { reason, .. } => {
                assert!(reason.contains("dimension 3"), "{reason}");
                assert!(reason.contains("another data directory"), "{reason}");
            }
            other => panic!("unexpected error {other}"),
        }
        // The mismatch check must not damage the store.
        let store = EdgeStore::open(dir.path(), DIM).unwrap();
        assert_eq!(store.count().await.unwrap(), 5);
    }

    #[tokio::test]
    async fn optimize_keeps_live_points() {
        let dir = tempfile::tempdir().unwrap();
        let store = EdgeStore::open(dir.path(), DIM).unwrap();
        let points: Vec<Point> =
            (0..200).map(|i| point(&format!("e{i}"), [1.0, i as f32, 0.0], json!({"even": i % 2 == 0}))).collect();
        store.upsert(points).await.unwrap();
        store.delete((0..100).map(|i| format!("e{i}")).collect()).await.unwrap();
        store.optimize().await.unwrap();
        assert_eq!(store.count().await.unwrap(), 100);
        let hits = store
            .search(
                vec![1.0, 150.0, 0.0],
                Filter { must: vec![Condition::BoolEq { key: "even".into(), value: true }] },
                1,
            )
            .await
            .unwrap();
        // After optimize the engine may answer from an approximate index, and
        // e148..e152 are nearly parallel: check liveness and the filter, not the exact id.
        let hit = &hits[0];
        let n: usize = hit.id[1..].parse().expect("numeric id");
        assert!(n >= 100 && n.is_multiple_of(2), "deleted or filtered-out point returned: {}", hit.id);
        assert!(hit.score > 0.999, "{}", hit.score);
    }

    #[tokio::test]
    async fn concurrent_upserts_and_searches() {
        let dir = tempfile::tempdir().unwrap();
        let store = EdgeStore::open(dir.path(), DIM).unwrap();
        let mut tasks = Vec::new();
        for t in 0..8 {
            let store = store.clone();
            tasks.push(tokio::spawn(async move {
                for i in 0..10 {
                    let id = format!("t{t}-{i}");
                    store.upsert(vec![point(&id, [1.0, t as f32, i as f32], json!({}))]).await.unwrap();
                    store.search(vec![1.0, 1.0, 1.0], Filter::default(), 5).await.unwrap();
                }
            }));
        }
        for task in tasks {
            task.await.unwrap();
        }
        assert_eq!(store.count().await.unwrap(), 80);
    }

    /// Env var telling a re-executed test binary to act as the crashing child.
    const CRASH_CHILD_ENV: &str = "ADREC_EDGE_CRASH_CHILD_DIR";

    /// Upsert in a child process that then dies without running destructors
    /// (like kill -9); the data must be there on reopen.
    #[cfg(unix)]
    #[tokio::test]
    async fn upsert_survives_process_abort() {
        if let Ok(dir) = std::env::var(CRASH_CHILD_ENV) {
            let store = EdgeStore::open(Path::new(&dir), DIM).unwrap();
            store.upsert(catalog()).await.unwrap();
            store.delete(vec!["p2".into()]).await.unwrap();
            std::process::abort();
        }
        let dir = tempfile::tempdir().unwrap();
        let test_name = format!("{}::upsert_survives_process_abort", module_path!());
        let test_name = test_name.split_once("::").map_or(test_name.as_str(), |(_, rest)| rest);
        let status = std::process::Command::new(std::env::current_exe().unwrap())
            .args([test_name, "--exact", "--nocapture", "--test-threads=1"])
            .env(CRASH_CHILD_ENV, dir.path())
            .status()
            .unwrap();
        use std::os::unix::process::ExitStatusExt as _;
        assert_eq!(status.signal(), Some(6), "child should have aborted (SIGABRT): {status}");

        let store = EdgeStore::open(dir.path(), DIM).unwrap();
        assert_eq!(store.count().await.unwrap(), 4);
        let got = store.retrieve(vec!["p1".into(), "p2".into()], true).await.unwrap();
        assert_eq!(ids_of(&got), ["p1"]);
        assert_close(&got[0].vector, &[1.0, 0.0, 0.0]);
    }

    fn ids_of(points: &[Point]) -> Vec<&str> {
        points.iter().map(|p| p.id.as_str()).collect()
    }
}
