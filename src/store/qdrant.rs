//! Vector store on a Qdrant server, over gRPC with `qdrant-client`.
//!
//! One collection per store (products or ads of one embedding model),
//! created at start if missing: one unnamed dense vector, cosine distance,
//! payload indexes for the fields ad filters match on. Point ids are UUIDv5
//! of the entity ids ([`point_id`]); the entity id itself is kept in the
//! payload under `id`, as the embedded store does, so both stores hold the
//! same points.
//!
//! Writes use `wait=true`: Qdrant answers only once the change is applied
//! (written to its WAL), so a record is acknowledged only after its vector is
//! durable. Connection loss, timeouts and server-side failures are
//! [`StoreError::Unavailable`] (retried by the pipeline until the server is
//! back); only a request the server calls invalid is
//! [`StoreError::Rejected`].

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use qdrant_client::qdrant::{
    self as grpc, Condition as GrpcCondition, CountPoints, CreateCollection, CreateFieldIndexCollection, DeletePoints,
    DenseVector, Distance, FieldType, Filter as GrpcFilter, GetPoints, PointStruct, PointsIdsList, PointsSelector,
    QueryPoints, RetrievedPoint, ScrollPoints, UpsertPoints, VectorInput, VectorParams, VectorsConfig,
    WithPayloadSelector, WithVectorsSelector,
};
use qdrant_client::{Payload, Qdrant, QdrantError};
use serde_json::{Map, Value};

use super::{Condition, Filter, MatchValue, Page, Point, ScoredPoint, StoreError, VectorStore, point_id};

/// Payload key holding the entity id (same key as the embedded store).
const ID_KEY: &str = "id";
/// Points per upsert request: an ad point carries its whole list, so keep
/// requests well under gRPC's default 4 MiB message limit.
const UPSERT_CHUNK: usize = 32;

/// Type of a payload index.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum IndexKind {
    /// Boolean field (e.g. `in_stock`).
    Bool,
    /// String field matched exactly.
    Keyword,
    /// Integer field matched exactly.
    Integer,
}

impl IndexKind {
    fn field_type(self) -> FieldType {
        match self {
            IndexKind::Bool => FieldType::Bool,
            IndexKind::Keyword => FieldType::Keyword,
            IndexKind::Integer => FieldType::Integer,
        }
    }
}

/// Everything needed to reach one collection.
#[derive(Clone)]
pub struct QdrantSettings {
    /// gRPC endpoint, e.g. `http://qdrant:6334` (`https://` turns on TLS).
    pub url: String,
    /// API key sent with every request, if the server wants one.
    pub api_key: Option<String>,
    /// Collection name.
    pub collection: String,
    /// Vector dimension of the collection.
    pub dim: usize,
    /// Per-request deadline.
    pub timeout: Duration,
    /// Connection deadline.
    pub connect_timeout: Duration,
    /// Payload fields to index (dotted keys).
    pub indexes: Vec<(String, IndexKind)>,
}

impl std::fmt::Debug for QdrantSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the key itself.
        f.debug_struct("QdrantSettings")
            .field("url", &self.url)
            .field("api_key", &self.api_key.as_ref().map(|_| "<redacted>"))
            .field("collection", &self.collection)
            .field("dim", &self.dim)
            .finish_non_exhaustive()
    }
}

/// Collection name for one role (`products`, `ads`) of one embedding model:
/// a new model never mixes with old vectors.
pub fn collection_name(prefix: &str, model_id: &str, role: &str) -> String {
    let model: String =
        model_id.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c } else { '_' }).collect();
    format!("{prefix}{model}_{role}")
}

/// A collection on a Qdrant server.
#[derive(Clone)]
pub struct QdrantStore {
    client: Qdrant,
    collection: String,
    dim: usize,
}

impl std::fmt::Debug for QdrantStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QdrantStore")
            .field("url", &self.client.config.uri)
            .field("collection", &self.collection)
            .field("dim", &self.dim)
            .finish()
    }
}

impl QdrantStore {
    /// Connect, check the server answers, and create the collection and its
    /// payload indexes if missing (an existing one must match `dim` and cosine).
    pub async fn connect(settings: &QdrantSettings) -> Result<Self, StoreError> {
        let store = Self::client_only(settings)?;
        store.prepare(settings).await?;
        Ok(store)
    }

    /// [`QdrantStore::connect`] from synchronous code, even inside a Tokio
    /// runtime: the checks run on a private thread and runtime (as the
    /// client's own builder does), and the returned client connects lazily on
    /// the caller's runtime. Blocks the calling thread meanwhile (startup only).
    pub fn connect_blocking(settings: &QdrantSettings) -> Result<Self, StoreError> {
        std::thread::scope(|scope| {
            scope
                .spawn(|| {
                    let runtime = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .map_err(|e| open_error(settings, format!("cannot start a runtime: {e}")))?;
                    // A client used only here: its connections belong to this runtime.
                    runtime.block_on(async { Self::client_only(settings)?.prepare(settings).await })
                })
                .join()
                .map_err(|_| open_error(settings, "connection check panicked".into()))?
        })?;
        Self::client_only(settings)
    }

    /// Collection name.
    pub fn collection(&self) -> &str {
        &self.collection
    }

    /// Build the client without touching the network.
    fn client_only(settings: &QdrantSettings) -> Result<Self, StoreError> {
        if settings.dim == 0 {
            return Err(open_error(settings, "vector dimension must be positive".into()));
        }
        let client = Qdrant::from_url(&settings.url)
            .api_key(settings.api_key.clone())
            .timeout(settings.timeout)
            .connect_timeout(settings.connect_timeout)
            // We check the server ourselves (and log instead of printing to stdout).
            .skip_compatibility_check()
            .build()
            .map_err(|e| open_error(settings, e.to_string()))?;
        Ok(Self { client, collection: settings.collection.clone(), dim: settings.dim })
    }

    /// Health check, then the collection and its indexes.
    async fn prepare(&self, settings: &QdrantSettings) -> Result<(), StoreError> {
        let health = self
            .client
            .health_check()
            .await
            .map_err(|e| open_error(settings, format!("server not reachable: {}", describe(&e))))?;
        tracing::info!(url = %settings.url, server_version = %health.version, collection = %self.collection, "qdrant server reachable");
        self.ensure_collection(settings).await?;
        for (field, kind) in &settings.indexes {
            let request = CreateFieldIndexCollection {
                collection_name: self.collection.clone(),
                wait: Some(true),
                field_name: field.clone(),
                field_type: Some(kind.field_type() as i32),
                ..Default::default()
            };
            // Creating an index that exists with the same type is a no-op on the server.
            self.client.create_field_index(request).await.map_err(|e| {
                open_error(settings, format!("cannot create payload index on {field:?}: {}", describe(&e)))
            })?;
        }
        Ok(())
    }

    async fn ensure_collection(&self, settings: &QdrantSettings) -> Result<(), StoreError> {
        let exists = |e: QdrantError| open_error(settings, format!("cannot check the collection: {}", describe(&e)));
        if !self.client.collection_exists(&self.collection).await.map_err(exists)? {
            let request = CreateCollection {
                collection_name: self.collection.clone(),
                vectors_config: Some(VectorsConfig {
                    config: Some(grpc::vectors_config::Config::Params(VectorParams {
                        size: self.dim as u64,
                        distance: Distance::Cosine as i32,
                        ..Default::default()
                    })),
                }),
                ..Default::default()
            };
            if let Err(e) = self.client.create_collection(request).await {
                // Another worker may have created it in the meantime: then check it below.
                if !self.client.collection_exists(&self.collection).await.map_err(exists)? {
                    return Err(open_error(settings, format!("cannot create the collection: {}", describe(&e))));
                }
            } else {
                tracing::info!(collection = %self.collection, dim = self.dim, "created qdrant collection");
            }
        }
        let info = self
            .client
            .collection_info(&self.collection)
            .await
            .map_err(|e| open_error(settings, format!("cannot read the collection's config: {}", describe(&e))))?;
        let params = info
            .result
            .and_then(|i| i.config)
            .and_then(|c| c.params)
            .and_then(|p| p.vectors_config)
            .and_then(|v| v.config);
        match params {
            Some(grpc::vectors_config::Config::Params(p)) => {
                if p.size != self.dim as u64 {
                    return Err(open_error(
                        settings,
                        format!(
                            "the collection holds vectors of dimension {}, but the embedding model produces {}; \
                             use another store.collection_prefix for this model, or delete the collection and re-ingest",
                            p.size, self.dim
                        ),
                    ));
                }
                if p.distance != Distance::Cosine as i32 {
                    return Err(open_error(
                        settings,
                        format!(
                            "the collection uses distance {:?}, expected Cosine; use another store.collection_prefix",
                            Distance::try_from(p.distance).unwrap_or(Distance::UnknownDistance)
                        ),
                    ));
                }
                Ok(())
            }
            _ => Err(open_error(
                settings,
                "the collection has no single unnamed dense vector; it was not created by adrec, \
                 use another store.collection_prefix"
                    .into(),
            )),
        }
    }
}

#[async_trait]
impl VectorStore for QdrantStore {
    async fn upsert(&self, points: Vec<Point>) -> Result<(), StoreError> {
        // Validate the whole batch first so a bad point writes nothing.
        for p in &points {
            super::check_vector(&p.vector, self.dim, &format!("vector of {:?}", p.id))?;
        }
        let mut points: Vec<PointStruct> = points.into_iter().map(to_grpc_point).collect();
        while !points.is_empty() {
            let rest = points.split_off(points.len().min(UPSERT_CHUNK));
            let chunk = std::mem::replace(&mut points, rest);
            let request = UpsertPoints {
                collection_name: self.collection.clone(),
                wait: Some(true),
                points: chunk,
                ..Default::default()
            };
            self.client.upsert_points(request).await.map_err(map_err)?;
        }
        Ok(())
    }

    async fn delete(&self, ids: Vec<String>) -> Result<(), StoreError> {
        if ids.is_empty() {
            return Ok(());
        }
        let request = DeletePoints {
            collection_name: self.collection.clone(),
            wait: Some(true),
            points: Some(PointsSelector {
                points_selector_one_of: Some(grpc::points_selector::PointsSelectorOneOf::Points(PointsIdsList {
                    ids: ids.iter().map(|id| grpc_id(id)).collect(),
                })),
            }),
            ..Default::default()
        };
        self.client.delete_points(request).await.map_err(map_err)?;
        Ok(())
    }

    async fn retrieve(&self, ids: Vec<String>, with_vectors: bool) -> Result<Vec<Point>, StoreError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let request = GetPoints {
            collection_name: self.collection.clone(),
            ids: ids.iter().map(|id| grpc_id(id)).collect(),
            with_payload: Some(payload_selector(true)),
            with_vectors: Some(vectors_selector(with_vectors)),
            ..Default::default()
        };
        let response = self.client.get_points(request).await.map_err(map_err)?;
        let mut found: HashMap<String, Point> =
            response.result.into_iter().map(from_retrieved).map(|p| (p.id.clone(), p)).collect();
        // Answer in the order asked (the server does not promise one).
        Ok(ids.iter().filter_map(|id| found.remove(id)).collect())
    }

    async fn search(&self, vector: Vec<f32>, filter: Filter, limit: usize) -> Result<Vec<ScoredPoint>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        super::check_vector(&vector, self.dim, "query vector")?;
        let Some(filter) = to_grpc_filter(&filter) else {
            return Ok(Vec::new());
        };
        let request = QueryPoints {
            collection_name: self.collection.clone(),
            query: Some(grpc::Query {
                variant: Some(grpc::query::Variant::Nearest(VectorInput {
                    variant: Some(grpc::vector_input::Variant::Dense(DenseVector { data: vector })),
                })),
            }),
            filter,
            limit: Some(limit as u64),
            with_payload: Some(payload_selector(true)),
            with_vectors: Some(vectors_selector(false)),
            ..Default::default()
        };
        let response = self.client.query(request).await.map_err(map_err)?;
        Ok(response
            .result
            .into_iter()
            .map(|hit| {
                let (id, payload) = entity(hit.id, hit.payload);
                ScoredPoint { id, score: hit.score, payload }
            })
            .collect())
    }

    async fn scroll_page(&self, cursor: Option<String>, limit: usize, with_vectors: bool) -> Result<Page, StoreError> {
        // Cursors are Qdrant point ids in text form (UUIDs, or numbers for foreign points).
        let offset = cursor.map(|c| match c.parse::<u64>() {
            Ok(n) => grpc::PointId::from(n),
            Err(_) => grpc::PointId::from(c),
        });
        let request = ScrollPoints {
            collection_name: self.collection.clone(),
            offset,
            limit: Some(u32::try_from(limit.max(1)).unwrap_or(u32::MAX)),
            with_payload: Some(payload_selector(true)),
            with_vectors: Some(vectors_selector(with_vectors)),
            ..Default::default()
        };
        let response = self.client.scroll(request).await.map_err(map_err)?;
        Ok(Page {
            points: response.result.into_iter().map(from_retrieved).collect(),
            next: response.next_page_offset.as_ref().map(point_id_text),
        })
    }

    async fn count(&self) -> Result<usize, StoreError> {
        let request = CountPoints { collection_name: self.collection.clone(), exact: Some(true), ..Default::default() };
        let response = self.client.count(request).await.map_err(map_err)?;
        Ok(response.result.map_or(0, |r| r.count as usize))
    }
}

fn open_error(settings: &QdrantSettings, reason: String) -> StoreError {
    StoreError::Open { path: format!("{} (collection {})", settings.url, settings.collection), reason }
}

fn grpc_id(entity_id: &str) -> grpc::PointId {
    grpc::PointId::from(point_id(entity_id).to_string())
}

fn payload_selector(enable: bool) -> WithPayloadSelector {
    WithPayloadSelector { selector_options: Some(grpc::with_payload_selector::SelectorOptions::Enable(enable)) }
}

fn vectors_selector(enable: bool) -> WithVectorsSelector {
    WithVectorsSelector { selector_options: Some(grpc::with_vectors_selector::SelectorOptions::Enable(enable)) }
}

fn to_grpc_point(p: Point) -> PointStruct {
    let mut payload = p.payload;
    payload.insert(ID_KEY.to_string(), Value::String(p.id.clone()));
    PointStruct {
        id: Some(grpc_id(&p.id)),
        payload: HashMap::from(Payload::from(payload)),
        vectors: Some(grpc::Vectors {
            vectors_options: Some(grpc::vectors::VectorsOptions::Vector(grpc::Vector::new_dense(p.vector))),
        }),
    }
}

/// Entity id and JSON payload of a returned point; the id comes from the payload.
fn entity(id: Option<grpc::PointId>, payload: HashMap<String, grpc::Value>) -> (String, Map<String, Value>) {
    let payload = Map::from(Payload::from(payload));
    let id = match payload.get(ID_KEY) {
        Some(Value::String(s)) => s.clone(),
        // Not written by us: the point id is the best identifier left.
        _ => id.map(|id| point_id_text(&id)).unwrap_or_default(),
    };
    (id, payload)
}

fn point_id_text(id: &grpc::PointId) -> String {
    match &id.point_id_options {
        Some(grpc::point_id::PointIdOptions::Uuid(u)) => u.clone(),
        Some(grpc::point_id::PointIdOptions::Num(n)) => n.to_string(),
        None => String::new(),
    }
}

fn from_retrieved(p: RetrievedPoint) -> Point {
    let vector = p.vectors.map(dense).unwrap_or_default();
    let (id, payload) = entity(p.id, p.payload);
    Point { id, vector, payload }
}

/// The unnamed dense vector of a returned point (empty if there is none).
#[allow(deprecated)] // Servers before 1.16 fill only the deprecated `data` field.
fn dense(vectors: grpc::VectorsOutput) -> Vec<f32> {
    match vectors.vectors_options {
        Some(grpc::vectors_output::VectorsOptions::Vector(v)) => match v.vector {
            Some(grpc::vector_output::Vector::Dense(d)) => d.data,
            Some(_) => Vec::new(),
            None => v.data,
        },
        _ => Vec::new(),
    }
}

/// Translate a [`Filter`]: `None` when some condition can never hold,
/// `Some(None)` when nothing is restricted.
fn to_grpc_filter(filter: &Filter) -> Option<Option<GrpcFilter>> {
    let mut must = Vec::with_capacity(filter.must.len());
    for condition in &filter.must {
        match condition {
            Condition::BoolEq { key, value } => must.push(GrpcCondition::matches(key.clone(), *value)),
            Condition::AnyOf { key, values } => {
                let mut keywords = Vec::new();
                let mut integers = Vec::new();
                for v in values {
                    match v {
                        MatchValue::Keyword(s) => keywords.push(s.clone()),
                        MatchValue::Integer(i) => integers.push(*i),
                    }
                }
                must.push(match (keywords.is_empty(), integers.is_empty()) {
                    (true, true) => return None,
                    (false, true) => GrpcCondition::matches(key.clone(), keywords),
                    (true, false) => GrpcCondition::matches(key.clone(), integers),
                    // A field holds one type: it matches either list.
                    (false, false) => GrpcCondition::from(GrpcFilter::should([
                        GrpcCondition::matches(key.clone(), keywords),
                        GrpcCondition::matches(key.clone(), integers),
                    ])),
                });
            }
        }
    }
    if must.is_empty() { Some(None) } else { Some(Some(GrpcFilter::must(must))) }
}

/// Retryable unless the server says the request itself is invalid.
fn map_err(err: QdrantError) -> StoreError {
    let text = describe(&err);
    match &err {
        QdrantError::ResponseError { status } => match status.code() {
            tonic::Code::InvalidArgument | tonic::Code::OutOfRange | tonic::Code::FailedPrecondition => {
                StoreError::Rejected(text)
            }
            // Unavailable, deadline, cancelled, internal, unknown (transport),
            // not found (collection dropped under us), auth: retry until an
            // operator fixes the server; dead-lettering would lose records.
            _ => StoreError::Unavailable(text),
        },
        QdrantError::ConversionError(_) => StoreError::Rejected(text),
        _ => StoreError::Unavailable(text),
    }
}

/// One line for an error: the status code and message, without metadata.
fn describe(err: &QdrantError) -> String {
    match err {
        QdrantError::ResponseError { status } | QdrantError::ResourceExhaustedError { status, .. } => {
            format!("{:?}: {}", status.code(), status.message())
        }
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn collection_names_are_per_model_and_role() {
        assert_eq!(
            collection_name("adrec_", "efficientnet-lite0/v1", "products"),
            "adrec_efficientnet-lite0_v1_products"
        );
        assert_ne!(collection_name("", "m1", "ads"), collection_name("", "m2", "ads"));
    }

    #[test]
    fn empty_any_of_matches_nothing_and_empty_filter_everything() {
        let empty = Filter { must: vec![Condition::AnyOf { key: "a".into(), values: vec![] }] };
        assert!(to_grpc_filter(&empty).is_none());
        assert_eq!(to_grpc_filter(&Filter::default()), Some(None));
    }

    #[test]
    fn status_codes_map_to_transient_or_rejected() {
        let status = |code| QdrantError::ResponseError { status: tonic::Status::new(code, "x") };
        assert!(map_err(status(tonic::Code::Unavailable)).is_transient());
        assert!(map_err(status(tonic::Code::Internal)).is_transient());
        assert!(map_err(status(tonic::Code::Unauthenticated)).is_transient());
        assert!(!map_err(status(tonic::Code::InvalidArgument)).is_transient());
    }

    #[test]
    fn settings_debug_hides_the_api_key() {
        let settings = QdrantSettings {
            url: "http://q:6334".into(),
            api_key: Some("s3cret".into()),
            collection: "c".into(),
            dim: 3,
            timeout: Duration::from_secs(1),
            connect_timeout: Duration::from_secs(1),
            indexes: vec![],
        };
        assert!(!format!("{settings:?}").contains("s3cret"));
    }
}
