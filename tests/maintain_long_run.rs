//! A seeded long run of the incremental list engine: 100,000 random
//! catalogue and ad changes over a brute-force store, with enough ads that
//! the engine groups them and prunes, and a restart halfway (buffers rebuilt
//! by a catalogue scan); every few hundred steps (and at the end) every ad's
//! list must equal the brute-force top-k.

use std::collections::BTreeMap;
use std::sync::Arc;

use adrec::bench::CountingSink;
use adrec::config::RecommendConfig;
use adrec::events::{AdFilter, AttrValue, ListItem};
use adrec::recommend::{Recommender, brute_force_top_k};
use adrec::records::{AdRecord, ProductRecord};
use adrec::store::VectorStore;
use adrec::store::memory::MemoryStore;
use chrono::Utc;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const DIM: usize = 8;
/// Enough ads for the engine to group them and prune its scans.
const ADS: usize = 300;

fn random_vector(rng: &mut StdRng, centre: &[f32]) -> Vec<f32> {
    let mut v: Vec<f32> = centre.iter().map(|c| c + rng.random_range(-0.4..0.4)).collect();
    let n = v.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-6);
    v.iter_mut().for_each(|x| *x /= n);
    v
}

fn check(r: &Recommender, catalogue: &BTreeMap<String, ProductRecord>, step: usize) {
    for ad in r.live_ads() {
        let expected = brute_force_top_k(catalogue.values(), &ad.vector, &ad.filter, ad.k);
        let ids = |l: &[ListItem]| l.iter().map(|i| i.product_id.clone()).collect::<Vec<_>>();
        assert_eq!(ids(&ad.items), ids(&expected), "step {step}: ad {} is not the brute-force top-{}", ad.ad_id, ad.k);
    }
}

#[tokio::test]
async fn hundred_thousand_seeded_changes_stay_exact() {
    let mut rng = StdRng::seed_from_u64(20261204);
    let centres: Vec<Vec<f32>> = (0..6).map(|_| (0..DIM).map(|_| rng.random_range(-1.0..1.0)).collect()).collect();
    let products = Arc::new(MemoryStore::default());
    let ads_store = Arc::new(MemoryStore::default());
    let sink = Arc::new(CountingSink::default());
    let load =
        || Recommender::load(products.clone(), ads_store.clone(), sink.clone(), RecommendConfig::default(), "m".into());
    let mut r = load().await.expect("load");
    let mut queries_before_restart = 0;
    let mut catalogue: BTreeMap<String, ProductRecord> = BTreeMap::new();
    let steps = 100_000;
    for step in 0..steps {
        let roll = rng.random_range(0..100);
        if roll < 70 {
            // New product, changed image, restock or stock-out.
            let id = format!("p{}", rng.random_range(0..400));
            let centre = &centres[rng.random_range(0..centres.len())];
            let mut attributes = serde_json::Map::new();
            attributes.insert("category".into(), format!("c{}", rng.random_range(0..3)).into());
            let p = ProductRecord {
                product_id: id.clone(),
                vector: random_vector(&mut rng, centre),
                image_url: format!("http://x/{id}.jpg"),
                title: None,
                in_stock: rng.random_range(0..5) > 0,
                attributes,
                model: "m".into(),
                updated_at: Utc::now(),
            };
            products.upsert(vec![p.to_point()]).await.expect("upsert");
            r.product_upserted(&p).await.expect("product");
            catalogue.insert(id, p);
        } else if roll < 90 {
            let id = format!("p{}", rng.random_range(0..400));
            products.delete(vec![id.clone()]).await.expect("delete");
            r.product_removed(&id).await.expect("removed");
            catalogue.remove(&id);
        } else if roll < 98 {
            let id = format!("a{}", rng.random_range(0..ADS));
            let centre = &centres[rng.random_range(0..centres.len())];
            let mut filter = AdFilter { in_stock: rng.random_bool(0.7).then_some(true), ..Default::default() };
            if rng.random_bool(0.3) {
                filter
                    .attributes
                    .insert("category".into(), vec![AttrValue::Str(format!("c{}", rng.random_range(0..3)))]);
            }
            let ad = AdRecord::unpublished(
                id,
                random_vector(&mut rng, centre).into(),
                "http://x/ad.jpg".into(),
                rng.random_range(1..=10),
                filter,
                "m".into(),
            );
            r.upsert_ad(ad).await.expect("ad");
        } else {
            r.delete_ad(&format!("a{}", rng.random_range(0..ADS))).await.expect("delete ad");
        }
        if step == steps / 2 {
            // Restart: everything but the stores is lost.
            queries_before_restart = r.store_queries;
            r = load().await.expect("reload");
            let rebuilt = r.rebuild().await.expect("rebuild");
            assert!(rebuilt >= 64, "{rebuilt} ads rebuilt: too few to take the catalogue-scan path");
            assert_eq!(r.store_queries, 1, "one catalogue scan rebuilds every buffer");
            check(&r, &catalogue, step);
        }
        if step % 500 == 0 {
            check(&r, &catalogue, step);
        }
    }
    check(&r, &catalogue, steps);
    let published = sink.0.load(std::sync::atomic::Ordering::Relaxed);
    let queries = queries_before_restart + r.store_queries;
    println!("long_run.events={steps} long_run.store_queries={queries} long_run.lists_published={published}");
    // Naive maintenance would query the store once per live ad per product event.
    assert!(queries < steps as u64, "incremental maintenance must need far fewer queries than events");
}
