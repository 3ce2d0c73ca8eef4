//! A Qdrant gRPC server for tests: Qdrant's own service traits (generated in
//! `qdrant-client`) served by tonic on a local port, on top of Qdrant's
//! embedded engine (`qdrant-edge`). The real client, real protobuf and a real
//! TCP connection are exercised; only what adrec's store calls is
//! implemented, everything else answers `Unimplemented`.
//!
//! It also records what the tests want to check about requests: payload
//! indexes asked for, and writes sent without `wait=true`.

#![allow(dead_code)] // Each test crate uses a different part.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};

use qdrant_client::Payload;
use qdrant_client::qdrant::{
    self as g, collections_server::Collections, collections_server::CollectionsServer, points_server::Points,
    points_server::PointsServer, qdrant_server::Qdrant, qdrant_server::QdrantServer,
};
use qdrant_edge::{
    Condition as EngineCondition, CountRequest, DEFAULT_VECTOR_NAME, Distance, EdgeConfig, EdgeShard, EdgeVectorParams,
    FieldCondition, Filter as EngineFilter, JsonPath, Match, NamedQuery, OperationError, PointId,
    PointInsertOperations, PointOperations, PointStructPersisted, QueryEnum, QueryRequest, ScoringQuery, ScrollRequest,
    UpdateOperation, VectorInternal, VectorStructInternal, VectorStructPersisted, WithPayloadInterface, WithVector,
};
use tokio::sync::oneshot;
use tonic::transport::server::TcpIncoming;
use tonic::{Request, Response, Status};

/// Version the fixture reports in its health check.
pub const FIXTURE_VERSION: &str = "1.20.0-adrec-fixture";

/// One collection: an engine shard plus what Qdrant would keep beside it.
struct Collection {
    shard: EdgeShard,
    dim: u64,
    distance: i32,
    /// Field name → `PayloadSchemaType`.
    indexes: Mutex<BTreeMap<String, i32>>,
    /// Serializes writes (the engine's flush is not safe against concurrent updates).
    writes: Mutex<()>,
}

#[derive(Default)]
struct State {
    collections: Mutex<BTreeMap<String, Arc<Collection>>>,
    /// Upserts/deletes/index creations that did not ask for `wait=true`.
    unwaited_writes: Mutex<u64>,
    /// Collections ever created (names their directories).
    created: Mutex<u64>,
}

/// The fake server's data; survives stopping and restarting the listener.
#[derive(Clone)]
pub struct FakeQdrant {
    state: Arc<State>,
    dir: Arc<tempfile::TempDir>,
    api_key: Option<String>,
}

/// A running listener.
pub struct Running {
    /// Bound address.
    pub addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl Running {
    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stop accepting, let in-flight calls finish, close every connection.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = (&mut self.task).await;
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl FakeQdrant {
    /// An empty server; with `api_key`, points and collections calls must carry it.
    pub fn new(api_key: Option<&str>) -> Self {
        Self {
            state: Arc::default(),
            dir: Arc::new(tempfile::tempdir().expect("fixture tempdir")),
            api_key: api_key.map(str::to_string),
        }
    }

    /// Serve on an ephemeral local port.
    pub async fn start(&self) -> Running {
        self.start_at("127.0.0.1:0".parse().expect("addr")).await
    }

    /// Serve on `addr` (e.g. the address of a stopped listener, to restart it).
    pub async fn start_at(&self, addr: SocketAddr) -> Running {
        let listener = tokio::net::TcpListener::bind(addr).await.expect("bind fixture port");
        let addr = listener.local_addr().expect("local addr");
        let key = self.api_key.clone();
        let check_key = move |req: Request<()>| -> Result<Request<()>, Status> {
            match &key {
                None => Ok(req),
                Some(k) if req.metadata().get("api-key").and_then(|v| v.to_str().ok()) == Some(k.as_str()) => Ok(req),
                Some(_) => Err(Status::unauthenticated("missing or wrong api-key")),
            }
        };
        let (stop, stopped) = oneshot::channel::<()>();
        let router = tonic::transport::Server::builder()
            .add_service(QdrantServer::new(self.clone()))
            .add_service(CollectionsServer::with_interceptor(self.clone(), check_key.clone()))
            .add_service(PointsServer::with_interceptor(self.clone(), check_key));
        let task = tokio::spawn(async move {
            let shutdown = async {
                let _ = stopped.await;
            };
            if let Err(e) = router.serve_with_incoming_shutdown(TcpIncoming::from(listener), shutdown).await {
                eprintln!("qdrant fixture stopped with an error: {e}");
            }
        });
        Running { addr, stop: Some(stop), task }
    }

    /// Payload indexes of a collection: field → `PayloadSchemaType` as i32.
    pub fn indexes(&self, collection: &str) -> BTreeMap<String, i32> {
        lock(&self.state.collections).get(collection).map(|c| lock(&c.indexes).clone()).unwrap_or_default()
    }

    /// Writes that did not ask the server to wait until applied.
    pub fn unwaited_writes(&self) -> u64 {
        *lock(&self.state.unwaited_writes)
    }

    fn note_wait(&self, wait: Option<bool>) {
        if wait != Some(true) {
            *lock(&self.state.unwaited_writes) += 1;
        }
    }

    fn collection(&self, name: &str) -> Result<Arc<Collection>, Status> {
        lock(&self.state.collections)
            .get(name)
            .cloned()
            .ok_or_else(|| Status::not_found(format!("Collection `{name}` doesn't exist!")))
    }
}

fn unimplemented(what: &str) -> Status {
    Status::unimplemented(format!("the adrec Qdrant fixture does not implement {what}"))
}

fn engine_err(e: OperationError) -> Status {
    match e {
        OperationError::WrongVectorDimension { .. }
        | OperationError::ValidationError { .. }
        | OperationError::TypeError { .. }
        | OperationError::PointIdError { .. }
        | OperationError::VectorNameNotExists { .. } => Status::invalid_argument(e.to_string()),
        other => Status::internal(other.to_string()),
    }
}

fn engine_id(id: Option<g::PointId>) -> Result<PointId, Status> {
    match id.and_then(|i| i.point_id_options) {
        Some(g::point_id::PointIdOptions::Num(n)) => Ok(PointId::NumId(n)),
        Some(g::point_id::PointIdOptions::Uuid(u)) => {
            Ok(PointId::Uuid(u.parse().map_err(|_| Status::invalid_argument(format!("bad uuid {u:?}")))?))
        }
        None => Err(Status::invalid_argument("point id missing")),
    }
}

fn grpc_id(id: PointId) -> g::PointId {
    match id {
        PointId::NumId(n) => g::PointId::from(n),
        PointId::Uuid(u) => g::PointId::from(u.to_string()),
    }
}

fn engine_payload(payload: HashMap<String, g::Value>) -> qdrant_edge::Payload {
    qdrant_edge::Payload(serde_json::Map::from(Payload::from(payload)))
}

fn grpc_payload(payload: Option<qdrant_edge::Payload>) -> HashMap<String, g::Value> {
    HashMap::from(Payload::from(payload.map(|p| p.0).unwrap_or_default()))
}

#[allow(deprecated)] // Older clients send the dense vector in the deprecated `data` field.
fn engine_vector(vectors: Option<g::Vectors>) -> Result<Vec<f32>, Status> {
    match vectors.and_then(|v| v.vectors_options) {
        Some(g::vectors::VectorsOptions::Vector(v)) => match v.vector {
            Some(g::vector::Vector::Dense(d)) => Ok(d.data),
            None => Ok(v.data),
            Some(_) => Err(unimplemented("non-dense vectors")),
        },
        _ => Err(unimplemented("named or missing vectors")),
    }
}

fn grpc_vectors(vector: Option<VectorStructInternal>) -> Option<g::VectorsOutput> {
    let dense = match vector? {
        VectorStructInternal::Single(v) => v,
        VectorStructInternal::Named(mut named) => match named.remove(DEFAULT_VECTOR_NAME) {
            Some(VectorInternal::Dense(v)) => v,
            _ => return None,
        },
        _ => return None,
    };
    Some(g::VectorsOutput {
        vectors_options: Some(g::vectors_output::VectorsOptions::Vector(g::VectorOutput {
            vector: Some(g::vector_output::Vector::Dense(g::DenseVector { data: dense })),
            ..Default::default()
        })),
    })
}

fn enabled_payload(s: Option<g::WithPayloadSelector>) -> Result<bool, Status> {
    match s.and_then(|s| s.selector_options) {
        None => Ok(false),
        Some(g::with_payload_selector::SelectorOptions::Enable(b)) => Ok(b),
        Some(_) => Err(unimplemented("payload include/exclude selectors")),
    }
}

fn enabled_vectors(s: Option<g::WithVectorsSelector>) -> Result<bool, Status> {
    match s.and_then(|s| s.selector_options) {
        None => Ok(false),
        Some(g::with_vectors_selector::SelectorOptions::Enable(b)) => Ok(b),
        Some(_) => Err(unimplemented("named vector selectors")),
    }
}

fn engine_filter(f: g::Filter) -> Result<EngineFilter, Status> {
    if f.min_should.is_some() {
        return Err(unimplemented("min_should"));
    }
    let list = |conditions: Vec<g::Condition>| -> Result<Option<Vec<EngineCondition>>, Status> {
        if conditions.is_empty() {
            return Ok(None);
        }
        conditions.into_iter().map(engine_condition).collect::<Result<Vec<_>, _>>().map(Some)
    };
    Ok(EngineFilter { must: list(f.must)?, should: list(f.should)?, must_not: list(f.must_not)?, min_should: None })
}

fn engine_condition(c: g::Condition) -> Result<EngineCondition, Status> {
    use g::r#match::MatchValue as M;
    match c.condition_one_of {
        Some(g::condition::ConditionOneOf::Filter(f)) => Ok(EngineCondition::Filter(engine_filter(f)?)),
        Some(g::condition::ConditionOneOf::Field(field)) => {
            let path: JsonPath =
                field.key.parse().map_err(|()| Status::invalid_argument(format!("bad key {:?}", field.key)))?;
            let m = match field.r#match.and_then(|m| m.match_value) {
                Some(M::Boolean(b)) => Match::from(b),
                Some(M::Keyword(s)) => Match::from(s),
                Some(M::Integer(i)) => Match::from(i),
                Some(M::Keywords(k)) => Match::from(k.strings),
                Some(M::Integers(i)) => Match::from(i.integers),
                _ => return Err(unimplemented("this field condition")),
            };
            Ok(EngineCondition::Field(FieldCondition::new_match(path, m)))
        }
        _ => Err(unimplemented("this condition type")),
    }
}

fn done() -> g::PointsOperationResponse {
    g::PointsOperationResponse {
        result: Some(g::UpdateResult { operation_id: Some(0), status: g::UpdateStatus::Completed as i32 }),
        ..Default::default()
    }
}

fn schema_type(field_type: Option<i32>) -> Result<i32, Status> {
    use g::{FieldType as F, PayloadSchemaType as P};
    let t = field_type.ok_or_else(|| Status::invalid_argument("field_type is required"))?;
    Ok(match F::try_from(t).map_err(|_| Status::invalid_argument("unknown field type"))? {
        F::Keyword => P::Keyword,
        F::Integer => P::Integer,
        F::Float => P::Float,
        F::Geo => P::Geo,
        F::Text => P::Text,
        F::Bool => P::Bool,
        F::Datetime => P::Datetime,
        F::Uuid => P::Uuid,
    } as i32)
}

#[tonic::async_trait]
impl Qdrant for FakeQdrant {
    async fn health_check(&self, _: Request<g::HealthCheckRequest>) -> Result<Response<g::HealthCheckReply>, Status> {
        Ok(Response::new(g::HealthCheckReply {
            title: "qdrant - vector search engine (adrec test fixture)".into(),
            version: FIXTURE_VERSION.into(),
            commit: None,
        }))
    }
}

#[tonic::async_trait]
impl Collections for FakeQdrant {
    async fn get(
        &self,
        request: Request<g::GetCollectionInfoRequest>,
    ) -> Result<Response<g::GetCollectionInfoResponse>, Status> {
        let c = self.collection(&request.into_inner().collection_name)?;
        let points = c.shard.count(CountRequest { filter: None, exact: true }).map_err(engine_err)? as u64;
        let payload_schema = lock(&c.indexes)
            .iter()
            .map(|(k, t)| (k.clone(), g::PayloadSchemaInfo { data_type: *t, params: None, points: None }))
            .collect();
        let info = g::CollectionInfo {
            status: g::CollectionStatus::Green as i32,
            points_count: Some(points),
            payload_schema,
            config: Some(g::CollectionConfig {
                params: Some(g::CollectionParams {
                    shard_number: 1,
                    vectors_config: Some(g::VectorsConfig {
                        config: Some(g::vectors_config::Config::Params(g::VectorParams {
                            size: c.dim,
                            distance: c.distance,
                            ..Default::default()
                        })),
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        Ok(Response::new(g::GetCollectionInfoResponse { result: Some(info), time: 0.0 }))
    }

    async fn list(
        &self,
        _: Request<g::ListCollectionsRequest>,
    ) -> Result<Response<g::ListCollectionsResponse>, Status> {
        let collections =
            lock(&self.state.collections).keys().map(|name| g::CollectionDescription { name: name.clone() }).collect();
        Ok(Response::new(g::ListCollectionsResponse { collections, time: 0.0 }))
    }

    async fn create(
        &self,
        request: Request<g::CreateCollection>,
    ) -> Result<Response<g::CollectionOperationResponse>, Status> {
        let request = request.into_inner();
        let name = request.collection_name;
        if name.is_empty() || name.contains(['/', '\\', '\0']) {
            return Err(Status::invalid_argument(format!("bad collection name {name:?}")));
        }
        let Some(g::vectors_config::Config::Params(params)) = request.vectors_config.and_then(|v| v.config) else {
            return Err(unimplemented("collections without a single unnamed vector"));
        };
        let distance = match g::Distance::try_from(params.distance) {
            Ok(g::Distance::Cosine) => Distance::Cosine,
            Ok(g::Distance::Dot) => Distance::Dot,
            Ok(g::Distance::Euclid) => Distance::Euclid,
            Ok(g::Distance::Manhattan) => Distance::Manhattan,
            _ => return Err(Status::invalid_argument("unknown distance")),
        };
        let mut collections = lock(&self.state.collections);
        if collections.contains_key(&name) {
            return Err(Status::already_exists(format!("Collection `{name}` already exists!")));
        }
        let mut config = EdgeConfig::default();
        config.vectors.insert(
            DEFAULT_VECTOR_NAME.to_string(),
            EdgeVectorParams {
                size: params.size as usize,
                distance,
                on_disk: None,
                multivector_config: None,
                datatype: None,
                quantization_config: None,
                hnsw_config: None,
            },
        );
        let path = {
            let mut created = lock(&self.state.created);
            *created += 1;
            self.dir.path().join(format!("c{created}"))
        };
        std::fs::create_dir_all(&path).map_err(|e| Status::internal(e.to_string()))?;
        let shard = EdgeShard::new(&path, config).map_err(engine_err)?;
        collections.insert(
            name,
            Arc::new(Collection {
                shard,
                dim: params.size,
                distance: params.distance,
                indexes: Mutex::default(),
                writes: Mutex::default(),
            }),
        );
        Ok(Response::new(g::CollectionOperationResponse { result: true, time: 0.0 }))
    }

    async fn delete(
        &self,
        request: Request<g::DeleteCollection>,
    ) -> Result<Response<g::CollectionOperationResponse>, Status> {
        let removed = lock(&self.state.collections).remove(&request.into_inner().collection_name).is_some();
        Ok(Response::new(g::CollectionOperationResponse { result: removed, time: 0.0 }))
    }

    async fn collection_exists(
        &self,
        request: Request<g::CollectionExistsRequest>,
    ) -> Result<Response<g::CollectionExistsResponse>, Status> {
        let exists = lock(&self.state.collections).contains_key(&request.into_inner().collection_name);
        Ok(Response::new(g::CollectionExistsResponse { result: Some(g::CollectionExists { exists }), time: 0.0 }))
    }

    async fn update(
        &self,
        _: Request<g::UpdateCollection>,
    ) -> Result<Response<g::CollectionOperationResponse>, Status> {
        Err(unimplemented("update"))
    }
    async fn update_aliases(
        &self,
        _: Request<g::ChangeAliases>,
    ) -> Result<Response<g::CollectionOperationResponse>, Status> {
        Err(unimplemented("update_aliases"))
    }
    async fn list_collection_aliases(
        &self,
        _: Request<g::ListCollectionAliasesRequest>,
    ) -> Result<Response<g::ListAliasesResponse>, Status> {
        Err(unimplemented("list_collection_aliases"))
    }
    async fn list_aliases(
        &self,
        _: Request<g::ListAliasesRequest>,
    ) -> Result<Response<g::ListAliasesResponse>, Status> {
        Err(unimplemented("list_aliases"))
    }
    async fn collection_cluster_info(
        &self,
        _: Request<g::CollectionClusterInfoRequest>,
    ) -> Result<Response<g::CollectionClusterInfoResponse>, Status> {
        Err(unimplemented("collection_cluster_info"))
    }
    async fn update_collection_cluster_setup(
        &self,
        _: Request<g::UpdateCollectionClusterSetupRequest>,
    ) -> Result<Response<g::UpdateCollectionClusterSetupResponse>, Status> {
        Err(unimplemented("update_collection_cluster_setup"))
    }
    async fn create_shard_key(
        &self,
        _: Request<g::CreateShardKeyRequest>,
    ) -> Result<Response<g::CreateShardKeyResponse>, Status> {
        Err(unimplemented("create_shard_key"))
    }
    async fn delete_shard_key(
        &self,
        _: Request<g::DeleteShardKeyRequest>,
    ) -> Result<Response<g::DeleteShardKeyResponse>, Status> {
        Err(unimplemented("delete_shard_key"))
    }
    async fn list_shard_keys(
        &self,
        _: Request<g::ListShardKeysRequest>,
    ) -> Result<Response<g::ListShardKeysResponse>, Status> {
        Err(unimplemented("list_shard_keys"))
    }
}

#[tonic::async_trait]
impl Points for FakeQdrant {
    async fn upsert(&self, request: Request<g::UpsertPoints>) -> Result<Response<g::PointsOperationResponse>, Status> {
        let request = request.into_inner();
        self.note_wait(request.wait);
        let c = self.collection(&request.collection_name)?;
        let points = request
            .points
            .into_iter()
            .map(|p| {
                Ok(PointStructPersisted {
                    id: engine_id(p.id)?,
                    vector: VectorStructPersisted::Single(engine_vector(p.vectors)?),
                    payload: Some(engine_payload(p.payload)),
                })
            })
            .collect::<Result<Vec<_>, Status>>()?;
        let _guard = lock(&c.writes);
        c.shard
            .update(UpdateOperation::PointOperation(PointOperations::UpsertPoints(PointInsertOperations::PointsList(
                points,
            ))))
            .map_err(engine_err)?;
        Ok(Response::new(done()))
    }

    async fn delete(&self, request: Request<g::DeletePoints>) -> Result<Response<g::PointsOperationResponse>, Status> {
        let request = request.into_inner();
        self.note_wait(request.wait);
        let c = self.collection(&request.collection_name)?;
        let ids = match request.points.and_then(|p| p.points_selector_one_of) {
            Some(g::points_selector::PointsSelectorOneOf::Points(list)) => {
                list.ids.into_iter().map(|id| engine_id(Some(id))).collect::<Result<Vec<_>, _>>()?
            }
            _ => return Err(unimplemented("delete by filter")),
        };
        let _guard = lock(&c.writes);
        c.shard.update(UpdateOperation::PointOperation(PointOperations::DeletePoints { ids })).map_err(engine_err)?;
        Ok(Response::new(done()))
    }

    async fn get(&self, request: Request<g::GetPoints>) -> Result<Response<g::GetResponse>, Status> {
        let request = request.into_inner();
        let c = self.collection(&request.collection_name)?;
        let ids = request.ids.into_iter().map(|id| engine_id(Some(id))).collect::<Result<Vec<_>, _>>()?;
        let with_payload = enabled_payload(request.with_payload)?;
        let with_vectors = enabled_vectors(request.with_vectors)?;
        let records = c
            .shard
            .retrieve(&ids, Some(WithPayloadInterface::Bool(with_payload)), Some(WithVector::Bool(with_vectors)))
            .map_err(engine_err)?;
        let result = records
            .into_iter()
            .map(|r| g::RetrievedPoint {
                id: Some(grpc_id(r.id)),
                payload: grpc_payload(r.payload),
                vectors: grpc_vectors(r.vector),
                ..Default::default()
            })
            .collect();
        Ok(Response::new(g::GetResponse { result, ..Default::default() }))
    }

    async fn create_field_index(
        &self,
        request: Request<g::CreateFieldIndexCollection>,
    ) -> Result<Response<g::PointsOperationResponse>, Status> {
        let request = request.into_inner();
        self.note_wait(request.wait);
        let c = self.collection(&request.collection_name)?;
        let t = schema_type(request.field_type)?;
        // The engine filters by payload without indexes; remember the request only.
        lock(&c.indexes).insert(request.field_name, t);
        Ok(Response::new(done()))
    }

    async fn scroll(&self, request: Request<g::ScrollPoints>) -> Result<Response<g::ScrollResponse>, Status> {
        let request = request.into_inner();
        let c = self.collection(&request.collection_name)?;
        if request.order_by.is_some() {
            return Err(unimplemented("scroll order_by"));
        }
        let scroll = ScrollRequest {
            offset: request.offset.map(|o| engine_id(Some(o))).transpose()?,
            limit: Some(request.limit.unwrap_or(10) as usize),
            filter: request.filter.map(engine_filter).transpose()?,
            with_payload: Some(WithPayloadInterface::Bool(enabled_payload(request.with_payload)?)),
            with_vector: WithVector::Bool(enabled_vectors(request.with_vectors)?),
            order_by: None,
        };
        let (records, next) = c.shard.scroll(scroll).map_err(engine_err)?;
        let result = records
            .into_iter()
            .map(|r| g::RetrievedPoint {
                id: Some(grpc_id(r.id)),
                payload: grpc_payload(r.payload),
                vectors: grpc_vectors(r.vector),
                ..Default::default()
            })
            .collect();
        Ok(Response::new(g::ScrollResponse { next_page_offset: next.map(grpc_id), result, ..Default::default() }))
    }

    async fn count(&self, request: Request<g::CountPoints>) -> Result<Response<g::CountResponse>, Status> {
        let request = request.into_inner();
        let c = self.collection(&request.collection_name)?;
        let filter = request.filter.map(engine_filter).transpose()?;
        let count = c.shard.count(CountRequest { filter, exact: true }).map_err(engine_err)? as u64;
        Ok(Response::new(g::CountResponse { result: Some(g::CountResult { count }), ..Default::default() }))
    }

    async fn query(&self, request: Request<g::QueryPoints>) -> Result<Response<g::QueryResponse>, Status> {
        let request = request.into_inner();
        let c = self.collection(&request.collection_name)?;
        if !request.prefetch.is_empty() || request.using.is_some() || request.score_threshold.is_some() {
            return Err(unimplemented("prefetch, named vectors and score thresholds"));
        }
        let vector = match request.query.and_then(|q| q.variant) {
            Some(g::query::Variant::Nearest(g::VectorInput { variant: Some(g::vector_input::Variant::Dense(d)) })) => {
                d.data
            }
            _ => return Err(unimplemented("queries other than nearest to a dense vector")),
        };
        if vector.len() as u64 != c.dim {
            return Err(Status::invalid_argument(format!(
                "Wrong input: Vector dimension error: expected dim: {}, got {}",
                c.dim,
                vector.len()
            )));
        }
        let query = QueryRequest {
            prefetches: Vec::new(),
            query: Some(ScoringQuery::Vector(QueryEnum::Nearest(NamedQuery::default_dense(vector)))),
            filter: request.filter.map(engine_filter).transpose()?,
            score_threshold: None,
            limit: request.limit.unwrap_or(10) as usize,
            offset: request.offset.unwrap_or(0) as usize,
            params: None,
            with_vector: WithVector::Bool(enabled_vectors(request.with_vectors)?),
            with_payload: WithPayloadInterface::Bool(enabled_payload(request.with_payload)?),
        };
        let hits = c.shard.query(query).map_err(engine_err)?;
        let result = hits
            .into_iter()
            .map(|h| g::ScoredPoint {
                id: Some(grpc_id(h.id)),
                payload: grpc_payload(h.payload),
                score: h.score,
                version: h.version,
                vectors: grpc_vectors(h.vector),
                ..Default::default()
            })
            .collect();
        Ok(Response::new(g::QueryResponse { result, ..Default::default() }))
    }

    async fn update_vectors(
        &self,
        _: Request<g::UpdatePointVectors>,
    ) -> Result<Response<g::PointsOperationResponse>, Status> {
        Err(unimplemented("update_vectors"))
    }
    async fn delete_vectors(
        &self,
        _: Request<g::DeletePointVectors>,
    ) -> Result<Response<g::PointsOperationResponse>, Status> {
        Err(unimplemented("delete_vectors"))
    }
    async fn set_payload(
        &self,
        _: Request<g::SetPayloadPoints>,
    ) -> Result<Response<g::PointsOperationResponse>, Status> {
        Err(unimplemented("set_payload"))
    }
    async fn overwrite_payload(
        &self,
        _: Request<g::SetPayloadPoints>,
    ) -> Result<Response<g::PointsOperationResponse>, Status> {
        Err(unimplemented("overwrite_payload"))
    }
    async fn delete_payload(
        &self,
        _: Request<g::DeletePayloadPoints>,
    ) -> Result<Response<g::PointsOperationResponse>, Status> {
        Err(unimplemented("delete_payload"))
    }
    async fn clear_payload(
        &self,
        _: Request<g::ClearPayloadPoints>,
    ) -> Result<Response<g::PointsOperationResponse>, Status> {
        Err(unimplemented("clear_payload"))
    }
    async fn delete_field_index(
        &self,
        _: Request<g::DeleteFieldIndexCollection>,
    ) -> Result<Response<g::PointsOperationResponse>, Status> {
        Err(unimplemented("delete_field_index"))
    }
    async fn create_vector_name(
        &self,
        _: Request<g::CreateVectorNameRequest>,
    ) -> Result<Response<g::PointsOperationResponse>, Status> {
        Err(unimplemented("create_vector_name"))
    }
    async fn delete_vector_name(
        &self,
        _: Request<g::DeleteVectorNameRequest>,
    ) -> Result<Response<g::PointsOperationResponse>, Status> {
        Err(unimplemented("delete_vector_name"))
    }
    async fn search(&self, _: Request<g::SearchPoints>) -> Result<Response<g::SearchResponse>, Status> {
        Err(unimplemented("search"))
    }
    async fn search_batch(&self, _: Request<g::SearchBatchPoints>) -> Result<Response<g::SearchBatchResponse>, Status> {
        Err(unimplemented("search_batch"))
    }
    async fn search_groups(
        &self,
        _: Request<g::SearchPointGroups>,
    ) -> Result<Response<g::SearchGroupsResponse>, Status> {
        Err(unimplemented("search_groups"))
    }
    async fn recommend(&self, _: Request<g::RecommendPoints>) -> Result<Response<g::RecommendResponse>, Status> {
        Err(unimplemented("recommend"))
    }
    async fn recommend_batch(
        &self,
        _: Request<g::RecommendBatchPoints>,
    ) -> Result<Response<g::RecommendBatchResponse>, Status> {
        Err(unimplemented("recommend_batch"))
    }
    async fn recommend_groups(
        &self,
        _: Request<g::RecommendPointGroups>,
    ) -> Result<Response<g::RecommendGroupsResponse>, Status> {
        Err(unimplemented("recommend_groups"))
    }
    async fn discover(&self, _: Request<g::DiscoverPoints>) -> Result<Response<g::DiscoverResponse>, Status> {
        Err(unimplemented("discover"))
    }
    async fn discover_batch(
        &self,
        _: Request<g::DiscoverBatchPoints>,
    ) -> Result<Response<g::DiscoverBatchResponse>, Status> {
        Err(unimplemented("discover_batch"))
    }
    async fn update_batch(&self, _: Request<g::UpdateBatchPoints>) -> Result<Response<g::UpdateBatchResponse>, Status> {
        Err(unimplemented("update_batch"))
    }
    async fn query_batch(&self, _: Request<g::QueryBatchPoints>) -> Result<Response<g::QueryBatchResponse>, Status> {
        Err(unimplemented("query_batch"))
    }
    async fn query_groups(&self, _: Request<g::QueryPointGroups>) -> Result<Response<g::QueryGroupsResponse>, Status> {
        Err(unimplemented("query_groups"))
    }
    async fn facet(&self, _: Request<g::FacetCounts>) -> Result<Response<g::FacetResponse>, Status> {
        Err(unimplemented("facet"))
    }
    async fn search_matrix_pairs(
        &self,
        _: Request<g::SearchMatrixPoints>,
    ) -> Result<Response<g::SearchMatrixPairsResponse>, Status> {
        Err(unimplemented("search_matrix_pairs"))
    }
    async fn search_matrix_offsets(
        &self,
        _: Request<g::SearchMatrixPoints>,
    ) -> Result<Response<g::SearchMatrixOffsetsResponse>, Status> {
        Err(unimplemented("search_matrix_offsets"))
    }
}
