//! One conformance suite for every `VectorStore` backend: the same test
//! functions run against the embedded engine (`EdgeStore`), the in-memory
//! store, and the Qdrant server store talking gRPC to a real tonic server
//! (tests/qdrant_fixture: Qdrant's service traits on Qdrant's embedded
//! engine).
//!
//! With `QDRANT_URL` set (and `QDRANT_API_KEY` if the server wants one), the
//! Qdrant variant runs against that server instead, in collections named
//! `adrec_conformance_<uuid>_...` that each test deletes when it passes:
//!
//!     QDRANT_URL=http://localhost:6334 cargo test --release --test store_conformance
//!
//! The `qdrant_only` tests check what only the server store has (collection
//! setup, payload indexes, API key, `wait=true`, connection loss); those that
//! need to stop the server or see its requests always use the fixture.

mod qdrant_fixture;

use std::sync::Arc;
use std::time::Duration;

use adrec::store::edge::EdgeStore;
use adrec::store::memory::MemoryStore;
use adrec::store::qdrant::{IndexKind, QdrantSettings, QdrantStore};
use adrec::store::{Condition, Filter, MatchValue, Point, ScoredPoint, StoreError, VectorStore};
use qdrant_fixture::FakeQdrant;
use serde_json::{Map, Value, json};

const DIM: usize = 4;

/// A store under test plus what must live as long as it (and be cleaned up).
struct Backend {
    store: Arc<dyn VectorStore>,
    _dir: Option<tempfile::TempDir>,
    _server: Option<(FakeQdrant, qdrant_fixture::Running)>,
    /// Collection to delete on a real server when the test passed.
    real_collection: Option<(String, Option<String>, String)>,
}

impl Backend {
    fn edge() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = EdgeStore::open(dir.path(), DIM).expect("open edge store");
        Self { store: Arc::new(store), _dir: Some(dir), _server: None, real_collection: None }
    }

    fn memory() -> Self {
        Self { store: Arc::new(MemoryStore::default()), _dir: None, _server: None, real_collection: None }
    }

    /// The Qdrant store, on `QDRANT_URL` if set, else on a fixture server (with an API key).
    async fn qdrant() -> Self {
        let collection = format!("adrec_conformance_{}_products", uuid::Uuid::new_v4().simple());
        if let Some(url) = real_qdrant_url() {
            let api_key = std::env::var("QDRANT_API_KEY").ok().filter(|k| !k.is_empty());
            let store = QdrantStore::connect(&settings(&url, api_key.clone(), &collection)).await.expect("connect");
            return Self {
                store: Arc::new(store),
                _dir: None,
                _server: None,
                real_collection: Some((url, api_key, collection)),
            };
        }
        let fake = FakeQdrant::new(Some("test-key"));
        let running = fake.start().await;
        let store = QdrantStore::connect(&settings(&running.url(), Some("test-key".into()), &collection))
            .await
            .expect("connect to fixture");
        Self { store: Arc::new(store), _dir: None, _server: Some((fake, running)), real_collection: None }
    }

    async fn finish(self) {
        if let Some((url, api_key, collection)) = &self.real_collection {
            drop_real_collection(url, api_key.clone(), collection).await;
        }
        if let Some((_, running)) = self._server {
            running.stop().await;
        }
    }
}

fn real_qdrant_url() -> Option<String> {
    std::env::var("QDRANT_URL").ok().filter(|u| !u.is_empty())
}

async fn drop_real_collection(url: &str, api_key: Option<String>, collection: &str) {
    let client =
        qdrant_client::Qdrant::from_url(url).api_key(api_key).skip_compatibility_check().build().expect("client");
    client.delete_collection(collection).await.expect("delete test collection");
}

fn settings(url: &str, api_key: Option<String>, collection: &str) -> QdrantSettings {
    QdrantSettings {
        url: url.to_string(),
        api_key,
        collection: collection.to_string(),
        dim: DIM,
        timeout: Duration::from_secs(10),
        connect_timeout: Duration::from_secs(5),
        indexes: vec![
            ("in_stock".into(), IndexKind::Bool),
            ("attributes.category".into(), IndexKind::Keyword),
            ("attributes.size".into(), IndexKind::Integer),
        ],
    }
}

/// Every conformance case, run once per backend.
macro_rules! conformance {
    ($($case:ident),* $(,)?) => {
        mod edge {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                let b = super::Backend::edge();
                super::$case(b.store.clone()).await;
                b.finish().await;
            })*
        }
        mod memory {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                let b = super::Backend::memory();
                super::$case(b.store.clone()).await;
                b.finish().await;
            })*
        }
        mod qdrant {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                let b = super::Backend::qdrant().await;
                super::$case(b.store.clone()).await;
                b.finish().await;
            })*
        }
    };
}

conformance!(
    upsert_then_retrieve_round_trips_vector_and_payload,
    re_upsert_overwrites_without_duplicating,
    delete_removes_points_and_ignores_missing_ids,
    search_ranks_by_cosine_best_first,
    search_filters_on_bool_keyword_and_integer_fields,
    ties_rank_together_before_worse_points,
    search_on_empty_store_or_with_zero_limit_is_empty,
    scroll_all_returns_every_point_across_pages,
    scroll_pages_resume_from_their_cursor,
    count_follows_upserts_and_deletes,
);

// ---------------------------------------------------------------- helpers

fn unit(v: [f32; DIM]) -> Vec<f32> {
    let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    v.iter().map(|x| x / n).collect()
}

fn obj(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        other => panic!("not an object: {other}"),
    }
}

fn point(id: &str, v: [f32; DIM], payload: Value) -> Point {
    Point { id: id.to_string(), vector: unit(v), payload: obj(payload) }
}

/// Payload as the caller wrote it: backends may add their own `id` key.
fn user_payload(mut payload: Map<String, Value>) -> Map<String, Value> {
    payload.remove("id");
    payload
}

fn assert_close(a: &[f32], b: &[f32]) {
    assert_eq!(a.len(), b.len(), "{a:?} vs {b:?}");
    for (x, y) in a.iter().zip(b) {
        assert!((x - y).abs() < 1e-5, "{a:?} != {b:?}");
    }
}

fn ids(hits: &[ScoredPoint]) -> Vec<&str> {
    hits.iter().map(|h| h.id.as_str()).collect()
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

fn catalog() -> Vec<Point> {
    vec![
        point("p1", [1.0, 0.0, 0.0, 0.0], json!({"in_stock": true, "attributes": {"category": "shoes", "size": 42}})),
        point("p2", [0.9, 0.1, 0.0, 0.0], json!({"in_stock": false, "attributes": {"category": "shoes", "size": 40}})),
        point("p3", [0.7, 0.7, 0.0, 0.0], json!({"in_stock": true, "attributes": {"category": "hats", "size": 1}})),
        point("p4", [0.0, 1.0, 0.0, 0.0], json!({"in_stock": true, "attributes": {"category": "bags", "size": 7}})),
        point("p5", [-0.1, 0.0, 1.0, 0.0], json!({"in_stock": true})),
    ]
}

fn any_of(key: &str, values: Vec<MatchValue>) -> Condition {
    Condition::AnyOf { key: key.into(), values }
}

fn kw(s: &str) -> MatchValue {
    MatchValue::Keyword(s.into())
}

// ---------------------------------------------------------------- cases

async fn upsert_then_retrieve_round_trips_vector_and_payload(store: Arc<dyn VectorStore>) {
    let payload = json!({
        "title": "Boot «ünïcödé»", "in_stock": true, "price": 98.5, "qty": 3, "neg": -7, "none": null,
        "tags": ["a", "b"], "attributes": {"category": "shoes", "size": 42, "deep": {"x": [1, 2]}}
    });
    let p = point("sku-1", [3.0, 4.0, 0.0, 0.0], payload.clone());
    store.upsert(vec![p.clone(), point("sku-2", [0.0, 0.0, 1.0, 0.0], json!({}))]).await.expect("upsert");

    let got = store.retrieve(vec!["sku-1".into(), "missing".into()], true).await.expect("retrieve");
    assert_eq!(got.len(), 1, "missing ids are omitted");
    assert_eq!(got[0].id, "sku-1");
    assert_eq!(user_payload(got[0].payload.clone()), obj(payload.clone()));
    assert_close(&got[0].vector, &p.vector);

    let without = store.retrieve(vec!["sku-1".into()], false).await.expect("retrieve");
    assert!(without[0].vector.is_empty(), "vectors only when asked for");
    assert_eq!(user_payload(without[0].payload.clone()), obj(payload));

    let both = store.retrieve(vec!["sku-2".into(), "sku-1".into()], false).await.expect("retrieve");
    assert_eq!(sorted(both.into_iter().map(|p| p.id).collect()), ["sku-1", "sku-2"]);
}

async fn re_upsert_overwrites_without_duplicating(store: Arc<dyn VectorStore>) {
    store.upsert(vec![point("a", [1.0, 0.0, 0.0, 0.0], json!({"v": 1, "old": true}))]).await.expect("upsert");
    let newer = point("a", [0.0, 1.0, 0.0, 0.0], json!({"v": 2}));
    // Replays are harmless: the same write twice is one point.
    store.upsert(vec![newer.clone()]).await.expect("upsert");
    store.upsert(vec![newer.clone()]).await.expect("upsert again");
    assert_eq!(store.count().await.expect("count"), 1);
    let got = store.retrieve(vec!["a".into()], true).await.expect("retrieve");
    assert_eq!(user_payload(got[0].payload.clone()), obj(json!({"v": 2})), "payload replaced, not merged");
    assert_close(&got[0].vector, &newer.vector);
    let hits = store.search(unit([0.0, 1.0, 0.0, 0.0]), Filter::default(), 10).await.expect("search");
    assert_eq!(ids(&hits), ["a"]);
}

async fn delete_removes_points_and_ignores_missing_ids(store: Arc<dyn VectorStore>) {
    store.upsert(catalog()).await.expect("upsert");
    store.delete(vec!["p1".into(), "never-existed".into()]).await.expect("delete");
    store.delete(vec!["p1".into()]).await.expect("deleting twice is fine");
    store.delete(vec![]).await.expect("deleting nothing is fine");
    assert_eq!(store.count().await.expect("count"), 4);
    assert!(store.retrieve(vec!["p1".into()], true).await.expect("retrieve").is_empty());
    let hits = store.search(unit([1.0, 0.0, 0.0, 0.0]), Filter::default(), 10).await.expect("search");
    assert!(!ids(&hits).contains(&"p1"), "{:?}", ids(&hits));
    assert_eq!(hits.len(), 4);
}

async fn search_ranks_by_cosine_best_first(store: Arc<dyn VectorStore>) {
    store.upsert(catalog()).await.expect("upsert");
    let hits = store.search(unit([1.0, 0.0, 0.0, 0.0]), Filter::default(), 4).await.expect("search");
    assert_eq!(ids(&hits), ["p1", "p2", "p3", "p4"]);
    let expected = [1.0, 0.9 / 0.82f32.sqrt(), 0.7 / 0.98f32.sqrt(), 0.0];
    for (hit, want) in hits.iter().zip(expected) {
        assert!((hit.score - want).abs() < 1e-4, "{}: {} vs {want}", hit.id, hit.score);
    }
    assert!(hits.windows(2).all(|w| w[0].score >= w[1].score));
    // Hits carry their payload.
    assert_eq!(hits[0].payload["attributes"]["category"], json!("shoes"));
    assert_eq!(hits[2].payload["attributes"]["size"], json!(1));
    // The limit is respected; the rest is the next-best.
    let all = store.search(unit([1.0, 0.0, 0.0, 0.0]), Filter::default(), 100).await.expect("search");
    assert_eq!(ids(&all), ["p1", "p2", "p3", "p4", "p5"]);
    assert!(all[4].score < 0.0, "opposite-ish vectors score negative: {}", all[4].score);
}

async fn search_filters_on_bool_keyword_and_integer_fields(store: Arc<dyn VectorStore>) {
    store.upsert(catalog()).await.expect("upsert");
    let q = unit([1.0, 0.0, 0.0, 0.0]);
    let search = |must: Vec<Condition>| {
        let store = store.clone();
        let q = q.clone();
        async move { store.search(q, Filter { must }, 10).await.expect("search") }
    };
    let in_stock = Condition::BoolEq { key: "in_stock".into(), value: true };
    assert_eq!(ids(&search(vec![in_stock.clone()]).await), ["p1", "p3", "p4", "p5"]);
    let out_of_stock = Condition::BoolEq { key: "in_stock".into(), value: false };
    assert_eq!(ids(&search(vec![out_of_stock]).await), ["p2"]);

    let shoes_or_hats = any_of("attributes.category", vec![kw("shoes"), kw("hats")]);
    assert_eq!(ids(&search(vec![shoes_or_hats.clone()]).await), ["p1", "p2", "p3"]);
    assert_eq!(ids(&search(vec![any_of("attributes.category", vec![kw("bags")])]).await), ["p4"]);
    // Conjunction of conditions.
    assert_eq!(ids(&search(vec![in_stock.clone(), shoes_or_hats]).await), ["p1", "p3"]);

    let sizes = any_of("attributes.size", vec![MatchValue::Integer(40), MatchValue::Integer(7)]);
    assert_eq!(ids(&search(vec![sizes]).await), ["p2", "p4"]);
    // Mixed keyword/integer lists match a field of either type.
    let mixed = any_of("attributes.category", vec![MatchValue::Integer(42), kw("bags")]);
    assert_eq!(ids(&search(vec![mixed]).await), ["p4"]);
    let mixed = any_of("attributes.size", vec![MatchValue::Integer(42), kw("hats")]);
    assert_eq!(ids(&search(vec![mixed]).await), ["p1"]);
    // Types do not coerce: "42" is not 42.
    assert!(search(vec![any_of("attributes.size", vec![kw("42")])]).await.is_empty());
    // A missing field never matches; an empty list matches nothing.
    assert!(search(vec![any_of("attributes.colour", vec![kw("red")])]).await.is_empty());
    assert!(search(vec![any_of("attributes.category", vec![])]).await.is_empty());
    // The filter applies before the limit: still the best qualifying ones.
    let hats_or_bags = any_of("attributes.category", vec![kw("bags"), kw("hats")]);
    let hits = store.search(q.clone(), Filter { must: vec![hats_or_bags] }, 1).await.expect("search");
    assert_eq!(ids(&hits), ["p3"]);
}

async fn ties_rank_together_before_worse_points(store: Arc<dyn VectorStore>) {
    let same = [0.6, 0.8, 0.0, 0.0];
    store
        .upsert(vec![
            point("t-c", same, json!({"n": 3})),
            point("t-a", same, json!({"n": 1})),
            point("t-b", same, json!({"n": 2})),
            point("worse", [0.0, 1.0, 0.0, 0.0], json!({})),
        ])
        .await
        .expect("upsert");
    let q = unit(same);
    let hits = store.search(q.clone(), Filter::default(), 4).await.expect("search");
    let tied: Vec<String> = hits[..3].iter().map(|h| h.id.clone()).collect();
    assert_eq!(sorted(tied), ["t-a", "t-b", "t-c"], "tied points come first, in any order");
    assert!(hits[..3].iter().all(|h| (h.score - hits[0].score).abs() < 1e-6 && (h.score - 1.0).abs() < 1e-4));
    assert_eq!(hits[3].id, "worse");
    assert!(hits[3].score < hits[2].score);
    // A limit that cuts through a tie returns only tied points, never a worse one.
    let cut = store.search(q, Filter::default(), 2).await.expect("search");
    assert_eq!(cut.len(), 2);
    assert!(cut.iter().all(|h| h.id.starts_with("t-")), "{:?}", ids(&cut));
    assert_ne!(cut[0].id, cut[1].id);
}

async fn search_on_empty_store_or_with_zero_limit_is_empty(store: Arc<dyn VectorStore>) {
    assert!(store.search(unit([1.0, 0.0, 0.0, 0.0]), Filter::default(), 5).await.expect("search").is_empty());
    assert!(store.scroll_all(true).await.expect("scroll").is_empty());
    assert_eq!(store.count().await.expect("count"), 0);
    store.upsert(catalog()).await.expect("upsert");
    assert!(store.search(unit([1.0, 0.0, 0.0, 0.0]), Filter::default(), 0).await.expect("search").is_empty());
    store.upsert(vec![]).await.expect("empty upsert is fine");
    assert!(store.retrieve(vec![], true).await.expect("retrieve").is_empty());
}

async fn scroll_all_returns_every_point_across_pages(store: Arc<dyn VectorStore>) {
    // More than one page for every backend (edge 512, qdrant 256 per page).
    let n = 600;
    let points: Vec<Point> = (0..n)
        .map(|i| point(&format!("e{i:04}"), [1.0, i as f32 / 100.0, 0.5, (i % 7) as f32], json!({"n": i})))
        .collect();
    for chunk in points.chunks(150) {
        store.upsert(chunk.to_vec()).await.expect("upsert");
    }
    let all = store.scroll_all(true).await.expect("scroll");
    assert_eq!(all.len(), n);
    let mut seen: Vec<&str> = all.iter().map(|p| p.id.as_str()).collect();
    seen.sort_unstable();
    seen.dedup();
    assert_eq!(seen.len(), n, "no duplicates across pages");
    for p in &all {
        let i: usize = p.id[1..].parse().expect("numeric id");
        assert_eq!(p.payload["n"], json!(i));
        assert_close(&p.vector, &points[i].vector);
    }
    assert!(store.scroll_all(false).await.expect("scroll").iter().all(|p| p.vector.is_empty()));
}

async fn scroll_pages_resume_from_their_cursor(store: Arc<dyn VectorStore>) {
    let n: usize = 50;
    let points: Vec<Point> =
        (0..n).map(|i| point(&format!("s{i:03}"), [1.0, i as f32, 0.0, 1.0], json!({"n": i}))).collect();
    store.upsert(points).await.expect("upsert");
    // Pages of 7: every point exactly once, the last page ends the scroll.
    let (mut seen, mut cursor, mut pages) = (Vec::new(), None, 0);
    loop {
        let page = store.scroll_page(cursor, 7, false).await.expect("page");
        assert!(page.points.len() <= 7, "a page holds at most the limit");
        assert!(page.points.iter().all(|p| p.vector.is_empty()), "no vectors asked");
        seen.extend(page.points.into_iter().map(|p| p.id));
        pages += 1;
        match page.next {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    assert_eq!(pages, n.div_ceil(7));
    seen.sort_unstable();
    seen.dedup();
    assert_eq!(seen.len(), n, "every point once");
}

async fn count_follows_upserts_and_deletes(store: Arc<dyn VectorStore>) {
    assert_eq!(store.count().await.expect("count"), 0);
    store.upsert(catalog()).await.expect("upsert");
    assert_eq!(store.count().await.expect("count"), 5);
    store.upsert(vec![point("p1", [0.0, 0.0, 0.0, 1.0], json!({}))]).await.expect("overwrite");
    assert_eq!(store.count().await.expect("count"), 5);
    store.delete(vec!["p2".into(), "p3".into()]).await.expect("delete");
    assert_eq!(store.count().await.expect("count"), 3);
}

// ---------------------------------------------------------------- Qdrant server store only

mod qdrant_only {
    use super::*;
    use adrec::config::{AttributeKind, Config, Secret, StoreKind};

    /// A fixture server and its URL.
    async fn fixture(api_key: Option<&str>) -> (FakeQdrant, qdrant_fixture::Running) {
        let fake = FakeQdrant::new(api_key);
        let running = fake.start().await;
        (fake, running)
    }

    fn client(url: &str, api_key: Option<String>) -> qdrant_client::Qdrant {
        qdrant_client::Qdrant::from_url(url).api_key(api_key).skip_compatibility_check().build().expect("client")
    }

    /// The collection's vector size, distance and indexed fields, as the server reports them.
    async fn describe(url: &str, api_key: Option<String>, collection: &str) -> (u64, i32, Vec<(String, i32)>) {
        let info = client(url, api_key).collection_info(collection).await.expect("collection info");
        let info = info.result.expect("info");
        let params = info.config.and_then(|c| c.params).and_then(|p| p.vectors_config).and_then(|v| v.config);
        let Some(qdrant_client::qdrant::vectors_config::Config::Params(p)) = params else {
            panic!("no single vector params")
        };
        let mut indexes: Vec<(String, i32)> = info.payload_schema.into_iter().map(|(k, v)| (k, v.data_type)).collect();
        indexes.sort();
        (p.size, p.distance, indexes)
    }

    /// Real server if `QDRANT_URL` is set, else a fixture (kept alive by the returned guard).
    async fn server() -> (String, Option<String>, Option<(FakeQdrant, qdrant_fixture::Running)>) {
        match real_qdrant_url() {
            Some(url) => (url, std::env::var("QDRANT_API_KEY").ok().filter(|k| !k.is_empty()), None),
            None => {
                let (fake, running) = fixture(Some("k")).await;
                (running.url(), Some("k".into()), Some((fake, running)))
            }
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn connect_creates_a_cosine_collection_with_payload_indexes_once() {
        let (url, key, _guard) = server().await;
        let name = format!("adrec_conformance_{}_setup", uuid::Uuid::new_v4().simple());
        let s = settings(&url, key.clone(), &name);
        let store = QdrantStore::connect(&s).await.expect("connect");
        store.upsert(catalog()).await.expect("upsert");
        use qdrant_client::qdrant::{Distance, PayloadSchemaType as T};
        let (size, distance, indexes) = describe(&url, key.clone(), &name).await;
        assert_eq!((size, distance), (DIM as u64, Distance::Cosine as i32));
        assert_eq!(
            indexes,
            [
                ("attributes.category".to_string(), T::Keyword as i32),
                ("attributes.size".to_string(), T::Integer as i32),
                ("in_stock".to_string(), T::Bool as i32),
            ]
        );
        // A second worker (or a restart) reuses the collection and its points.
        let again = QdrantStore::connect(&s).await.expect("reconnect");
        assert_eq!(again.count().await.expect("count"), 5);
        // A different model dimension is refused at start, naming the fix.
        let err = QdrantStore::connect(&QdrantSettings { dim: DIM + 1, ..s.clone() }).await.expect_err("dim");
        let text = err.to_string();
        assert!(matches!(err, StoreError::Open { .. }) && text.contains("dimension 4"), "{text}");
        assert!(text.contains("collection_prefix"), "{text}");
        if real_qdrant_url().is_some() {
            drop_real_collection(&url, key, &name).await;
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn wrong_dimension_and_non_finite_vectors_are_rejected_not_retried() {
        let (url, key, _guard) = server().await;
        let name = format!("adrec_conformance_{}_dims", uuid::Uuid::new_v4().simple());
        let store = QdrantStore::connect(&settings(&url, key.clone(), &name)).await.expect("connect");
        let bad = Point { id: "bad".into(), vector: vec![1.0; DIM + 1], payload: Map::new() };
        let err = store.upsert(vec![point("ok", [1.0, 0.0, 0.0, 0.0], json!({})), bad]).await.expect_err("dim");
        assert!(matches!(err, StoreError::Rejected(_)), "{err}");
        assert_eq!(store.count().await.expect("count"), 0, "a bad batch writes nothing");
        let nan = Point { id: "nan".into(), vector: vec![f32::NAN; DIM], payload: Map::new() };
        assert!(matches!(store.upsert(vec![nan]).await, Err(StoreError::Rejected(_))));
        assert!(matches!(store.search(vec![1.0], Filter::default(), 3).await, Err(StoreError::Rejected(_))));
        if real_qdrant_url().is_some() {
            drop_real_collection(&url, key, &name).await;
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn every_write_waits_for_the_server_to_apply_it() {
        let (fake, running) = fixture(None).await;
        let store = QdrantStore::connect(&settings(&running.url(), None, "w")).await.expect("connect");
        store.upsert(catalog()).await.expect("upsert");
        // More points than one request carries.
        let many: Vec<Point> =
            (0..100).map(|i| point(&format!("m{i}"), [1.0, i as f32, 0.0, 0.0], json!({}))).collect();
        store.upsert(many).await.expect("upsert");
        store.delete(vec!["p1".into()]).await.expect("delete");
        assert_eq!(fake.unwaited_writes(), 0);
        // Answered after being applied: visible to the next read.
        assert_eq!(store.count().await.expect("count"), 104);
        running.stop().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_api_key_is_sent_and_a_wrong_one_fails_at_start() {
        let (fake, running) = fixture(Some("right")).await;
        let ok = QdrantStore::connect(&settings(&running.url(), Some("right".into()), "k")).await.expect("right key");
        ok.upsert(catalog()).await.expect("upsert with the key");
        for wrong in [Some("wrong".to_string()), None] {
            let err = QdrantStore::connect(&settings(&running.url(), wrong, "k")).await.expect_err("wrong key");
            assert!(matches!(err, StoreError::Open { .. }), "{err}");
            assert!(err.to_string().contains("Unauthenticated"), "{err}");
            assert!(!err.to_string().contains("right"), "the key must not appear in errors: {err}");
        }
        assert_eq!(fake.indexes("k").len(), 3);
        running.stop().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_unreachable_server_fails_the_start() {
        // Bind and drop a port so that nothing listens there.
        let addr = std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr");
        let s = QdrantSettings {
            connect_timeout: Duration::from_secs(2),
            ..settings(&format!("http://{addr}"), None, "x")
        };
        let err = QdrantStore::connect(&s).await.expect_err("nothing listens");
        assert!(matches!(err, StoreError::Open { .. }), "{err}");
        assert!(err.to_string().contains("not reachable"), "{err}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn losing_the_server_gives_transient_errors_and_work_resumes_after_restart() {
        let (fake, running) = fixture(None).await;
        let addr = running.addr;
        let store = QdrantStore::connect(&QdrantSettings {
            timeout: Duration::from_secs(3),
            connect_timeout: Duration::from_secs(2),
            ..settings(&running.url(), None, "loss")
        })
        .await
        .expect("connect");
        store.upsert(catalog()).await.expect("upsert");
        running.stop().await;

        let q = unit([1.0, 0.0, 0.0, 0.0]);
        let results: Vec<Result<(), StoreError>> = vec![
            store.upsert(vec![point("p9", [0.0, 0.0, 1.0, 1.0], json!({}))]).await,
            store.delete(vec!["p1".into()]).await,
            store.retrieve(vec!["p2".into()], true).await.map(drop),
            store.search(q.clone(), Filter::default(), 3).await.map(drop),
            store.scroll_all(false).await.map(drop),
            store.count().await.map(drop),
        ];
        for r in results {
            let err = r.expect_err("server is down");
            assert!(err.is_transient(), "connection loss must be retryable: {err}");
        }

        // Same address, same data: the pipeline's retry then succeeds.
        let running = fake.start_at(addr).await;
        store.upsert(vec![point("p9", [0.0, 0.0, 1.0, 1.0], json!({}))]).await.expect("upsert after restart");
        assert_eq!(store.count().await.expect("count"), 6);
        let hits = store.search(q, Filter::default(), 1).await.expect("search");
        assert_eq!(ids(&hits), ["p1"]);
        running.stop().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn open_stores_builds_both_collections_from_config() {
        let (fake, running) = fixture(Some("cfg-key")).await;
        let mut config = Config::default();
        config.store.kind = StoreKind::Qdrant;
        config.store.url = running.url();
        config.store.collection_prefix = "prod_".into();
        config.store.indexed_attributes.insert("category".into(), AttributeKind::Keyword);
        let key_file = tempfile::NamedTempFile::new().expect("key file");
        std::fs::write(key_file.path(), "cfg-key\n").expect("write key");
        config.store.api_key_file = Some(key_file.path().to_path_buf());
        config.validate().expect("valid config");

        // The worker opens its stores from synchronous code inside the runtime.
        let (products, ads) = adrec::app::open_stores(&config, "model/v1", DIM).expect("open stores");
        products.upsert(catalog()).await.expect("upsert product");
        ads.upsert(vec![point("ad-1", [1.0, 0.0, 0.0, 0.0], json!({"ad_id": "ad-1"}))]).await.expect("upsert ad");
        assert_eq!(products.count().await.expect("count"), 5);
        assert_eq!(ads.count().await.expect("count"), 1);
        use qdrant_client::qdrant::PayloadSchemaType as T;
        let indexes: Vec<(String, i32)> = fake.indexes("prod_model_v1_products").into_iter().collect();
        assert_eq!(
            indexes,
            [("attributes.category".to_string(), T::Keyword as i32), ("in_stock".to_string(), T::Bool as i32)]
        );
        assert!(fake.indexes("prod_model_v1_ads").is_empty());

        // The key can also come inline (e.g. from ADREC_STORE__API_KEY); a wrong one stops the start.
        config.store.api_key_file = None;
        config.store.api_key = Some(serde_json::from_value::<Secret>(json!("nope")).expect("secret"));
        let err = adrec::app::open_stores(&config, "model/v1", DIM).map(drop).expect_err("wrong key");
        assert!(format!("{err:#}").contains("Unauthenticated"), "{err:#}");
        running.stop().await;
    }
}
