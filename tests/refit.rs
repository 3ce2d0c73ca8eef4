//! `adrec refit` on synthetic raw vectors (no model needed, real embedded
//! store and files sink): after every refit each live ad's stored and
//! published list is the brute-force top-k in the new space, every vector and
//! list carries the new space id, versions keep increasing, and new products
//! written the worker's way (projected, raw kept) keep lists exact too.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;

use adrec::adapt::{self, Entity, refit::refit};
use adrec::config::Config;
use adrec::events::{AdFilter, RecommendationList};
use adrec::recommend::Recommender;
use adrec::records::{AdRecord, ProductRecord};
use adrec::sink::files::FileSink;
use chrono::Utc;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

fn unit(mut v: Vec<f32>) -> Vec<f32> {
    adrec::embed::l2_normalise(&mut v);
    v
}

/// A raw vector near one of a few cluster centres (head and colour tail alike).
fn raw_vector(rng: &mut StdRng, centres: &[Vec<f32>]) -> Vec<f32> {
    let c = &centres[rng.random_range(0..centres.len())];
    unit(c.iter().map(|x| x + rng.random_range(-0.5..0.5f32)).collect())
}

fn product(id: &str, vector: Vec<f32>, in_stock: bool, space: &str) -> ProductRecord {
    ProductRecord {
        product_id: id.into(),
        vector,
        image_url: format!("file:///img/{id}.jpg"),
        title: None,
        in_stock,
        attributes: Default::default(),
        model: space.into(),
        updated_at: Utc::now(),
    }
}

fn ad(id: &str, vector: Vec<f32>, k: usize, in_stock: Option<bool>, space: &str) -> AdRecord {
    AdRecord::unpublished(
        id.into(),
        vector.into(),
        format!("file:///img/{id}.jpg"),
        k,
        AdFilter { in_stock, ..Default::default() },
        space.into(),
    )
}

/// Checks the current space; returns each live ad's version.
async fn assert_exact(config: &Config, sink: &FileSink) -> (String, BTreeMap<String, u64>) {
    let space = adapt::current_space(config, &adapt::raw_spec(config).expect("raw")).expect("space");
    let stores = adapt::open_space(config, &space).expect("stores");
    let products: Vec<ProductRecord> = stores
        .products
        .scroll_all(true)
        .await
        .expect("scroll")
        .into_iter()
        .filter_map(ProductRecord::from_point)
        .collect();
    assert!(!products.is_empty());
    for p in &products {
        assert_eq!(p.model, space.id(), "product {} is in another space", p.product_id);
        assert_eq!(p.vector.len(), space.dim());
    }
    let mut versions = BTreeMap::new();
    for a in stores.ads.scroll_all(true).await.expect("scroll").into_iter().filter_map(AdRecord::from_point) {
        assert_eq!(a.model, space.id(), "ad {} is in another space", a.ad_id);
        let expected = common::oracle(&products, &a.vector, &a.filter, a.k);
        common::assert_same_list(&a.ad_id, &a.items, &expected);
        let text = std::fs::read_to_string(sink.list_path(&a.ad_id)).expect("published list");
        let list: RecommendationList = serde_json::from_str(&text).expect("list json");
        assert_eq!(list.model, space.id(), "ad {}: list published from another space", a.ad_id);
        assert_eq!(list.version, a.version);
        common::assert_same_list(&a.ad_id, &list.items, &expected);
        versions.insert(a.ad_id.clone(), a.version);
    }
    assert_eq!(versions.len(), 3);
    (space.id().to_string(), versions)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refit_moves_everything_into_the_new_space_and_keeps_lists_exact() {
    let tmp = tempfile::tempdir().expect("tmp");
    let mut config = common::config(tmp.path(), tmp.path());
    config.adapt.min_catalogue = 60;
    config.adapt.dims = 16;
    let raw = adapt::raw_spec(&config).expect("manifest");
    let sink = Arc::new(FileSink::open(&config.output_dir()).expect("sink"));
    let mut rng = StdRng::seed_from_u64(8);
    let centres: Vec<Vec<f32>> =
        (0..6).map(|_| (0..raw.dim).map(|_| rng.random_range(-1.0..1.0f32)).collect()).collect();

    // Identity space: a catalogue and three ads, written the worker's way.
    {
        let space = adapt::current_space(&config, &raw).expect("space");
        assert_eq!(space.id(), raw.model_id, "identity until the first refit");
        let stores = adapt::open_space(&config, &space).expect("stores");
        let mut r = Recommender::load(
            stores.products.clone(),
            stores.ads.clone(),
            sink.clone(),
            config.recommend.clone(),
            space.id().into(),
        )
        .await
        .expect("load");
        for (i, filter) in [None, Some(true), None].into_iter().enumerate() {
            let a = ad(&format!("ad{i}"), raw_vector(&mut rng, &centres), 5, filter, space.id());
            r.upsert_ad(a).await.expect("ad");
        }
        for i in 0..80 {
            let p = product(&format!("p{i:03}"), raw_vector(&mut rng, &centres), i % 4 != 0, space.id());
            stores.products.upsert(vec![p.to_point()]).await.expect("upsert");
            r.product_upserted(&p).await.expect("product");
        }
    }
    let (identity, before) = assert_exact(&config, &sink).await;

    // First refit: fitted space, every list republished once.
    let report = refit(&config, sink.clone()).await.expect("refit");
    assert!(report.switched && report.from == identity && report.to.starts_with(&format!("{identity}@pcaw16-")));
    assert_eq!((report.products, report.ads), (80, 3));
    let (fitted, after) = assert_exact(&config, &sink).await;
    assert_eq!(fitted, report.to);
    for (id, v) in &after {
        assert_eq!(*v, before[id] + 1, "ad {id}: one new version in the new space");
    }

    // The worker's path in a fitted space: raw in, projected vector stored, raw kept.
    {
        let space = adapt::current_space(&config, &raw).expect("space");
        let stores = adapt::open_space(&config, &space).expect("stores");
        let writer = stores.writer().expect("a fitted space has a writer");
        let mut r = Recommender::load(
            stores.products.clone(),
            stores.ads.clone(),
            sink.clone(),
            config.recommend.clone(),
            space.id().into(),
        )
        .await
        .expect("load");
        for i in 80..90 {
            let id = format!("p{i:03}");
            let v = writer.adapt(Entity::Product, &id, raw_vector(&mut rng, &centres)).await.expect("adapt");
            let p = product(&id, v, true, space.id());
            stores.products.upsert(vec![p.to_point()]).await.expect("upsert");
            r.product_upserted(&p).await.expect("product");
        }
        writer.forget_product("p001").await.expect("forget");
        stores.products.delete(vec!["p001".into()]).await.expect("delete");
        r.product_removed("p001").await.expect("removed");
        let raw_ids = stores.raw_products.as_ref().expect("raw store").count().await.expect("count");
        assert_eq!(raw_ids, 89, "raw vectors follow the catalogue");
    }
    assert_exact(&config, &sink).await;

    // Second refit: the catalogue changed, so does the transform; the old space is gone.
    let old_dir = adapt::space::space_dir(&config, &adapt::current_space(&config, &raw).expect("space"));
    let report = refit(&config, sink.clone()).await.expect("refit");
    assert!(report.switched && report.to != fitted && report.products == 89);
    assert!(!old_dir.exists(), "the previous fitted space is removed");
    assert_exact(&config, &sink).await;

    // Same catalogue again: nothing to move, nothing to republish.
    let (space, versions) = assert_exact(&config, &sink).await;
    let again = refit(&config, sink.clone()).await.expect("refit");
    assert!(!again.switched && again.to == space);
    assert_eq!(assert_exact(&config, &sink).await.1, versions, "no list republished");

    // Below the minimum the catalogue returns to the identity.
    config.adapt.min_catalogue = 10_000;
    let report = refit(&config, sink.clone()).await.expect("refit");
    assert!(report.switched && report.to == identity);
    assert_exact(&config, &sink).await;
}
