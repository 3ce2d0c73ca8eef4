//! kill -9 loop against a real broker: a seeded 10,000-event stream
//! (product creations, image changes, stock flips, attribute edits,
//! deletions and tombstones, stale updates, poison; ad creations, edits,
//! image changes, deletions, re-creations) is produced while the `adrec`
//! binary is SIGKILLed at seeded points and restarted. At quiescence the
//! stored catalogue must be exactly what the event log implies, every
//! poison record must be in the DLQ, every product offset committed, and
//! every ad's last message on the output topic must be the brute-force
//! top-k over the final catalogue (or a tombstone for a deleted ad).
//!
//! `ADREC_CRASH_ROUNDS` (default 10) sets the number of kills,
//! `ADREC_CRASH_SEED` the seed, `ADREC_CRASH_BIN` the binary to run. The worker's data dir is on /dev/shm when
//! it exists: a SIGKILL loses the process, never the page cache, so tmpfs
//! changes nothing about what survives and keeps fsync off the clock.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use adrec::app;
use adrec::config::{Backend, Config};
use adrec::demo::{self, FAMILIES};
use adrec::events::{AdFilter, AttrValue, ListItem};
use adrec::records::{AdRecord, ProductRecord};
use chrono::{DateTime, Utc};
use common::broker::Broker;
use common::kafka::{committed_total, latest_lists, produce, producer, read_all, stored};
use rand::rngs::StdRng;
use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};

const PRODUCTS: &str = "catalog.products";
const ADS: &str = "ads.creatives";
const OUTPUT: &str = "ads.recommendations";
const DLQ: &str = "adrec.dlq";
const PARTITIONS: i32 = 4;
/// Events in the stream (products and ads topics together).
const EVENTS: usize = 10_000;
/// Distinct product ids ever created.
const MAX_PRODUCTS: usize = 700;
/// Ads created at the start.
const ADS_COUNT: usize = 24;
/// Live products whose stored vector is re-embedded by the test and compared.
const VECTOR_SAMPLE: usize = 40;

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// A product's state as the event log defines it.
#[derive(Debug, Clone)]
struct ProductState {
    image: usize,
    in_stock: bool,
    family: usize,
    price: i64,
    size: i64,
    title: String,
    ts: DateTime<Utc>,
}

impl ProductState {
    fn attributes(&self) -> Value {
        let fam = &FAMILIES[self.family];
        json!({ "category": fam.category, "family": fam.name, "price": self.price, "size": self.size })
    }
}

/// An ad's state as the event log defines it.
#[derive(Debug, Clone)]
struct AdState {
    image: usize,
    k: Option<usize>,
    filter: AdFilter,
    ts: DateTime<Utc>,
}

/// One record to produce.
struct Ev {
    topic: &'static str,
    key: String,
    payload: Option<String>,
}

/// The stream and the final state it implies.
struct Plan {
    events: Vec<Ev>,
    /// Final product states (`None` = deleted).
    products: BTreeMap<String, Option<ProductState>>,
    /// Final ad states (`None` = deleted).
    ads: BTreeMap<String, Option<AdState>>,
    /// Keys of the records that must end in the DLQ.
    poison: BTreeSet<String>,
    /// Image index → (family, is an ad creative).
    images: Vec<(usize, bool)>,
    /// Count of each kind of event, for the summary.
    kinds: BTreeMap<&'static str, usize>,
}

/// Builds the seeded stream while tracking the state it implies.
struct Planner {
    rng: StdRng,
    base: String,
    start: DateTime<Utc>,
    plan: Plan,
    live: Vec<String>,
    deleted: Vec<String>,
    next_product: usize,
}

impl Planner {
    fn new(seed: u64, base: &str) -> Self {
        Planner {
            rng: StdRng::seed_from_u64(seed),
            base: base.to_string(),
            start: DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z").expect("ts").with_timezone(&Utc),
            plan: Plan {
                events: Vec::new(),
                products: BTreeMap::new(),
                ads: BTreeMap::new(),
                poison: BTreeSet::new(),
                images: Vec::new(),
                kinds: BTreeMap::new(),
            },
            live: Vec::new(),
            deleted: Vec::new(),
            next_product: 0,
        }
    }

    /// Strictly increasing per stream position: later events are newer.
    fn now(&self) -> DateTime<Utc> {
        self.start + chrono::Duration::seconds(self.plan.events.len() as i64)
    }

    fn url(&self, image: usize) -> String {
        format!("{}/img/{image}.jpg", self.base)
    }

    fn new_image(&mut self, family: usize, ad: bool) -> usize {
        self.plan.images.push((family, ad));
        self.plan.images.len() - 1
    }

    fn push(&mut self, kind: &'static str, topic: &'static str, key: &str, payload: Option<Value>) {
        *self.plan.kinds.entry(kind).or_default() += 1;
        self.plan.events.push(Ev { topic, key: key.to_string(), payload: payload.map(|v| v.to_string()) });
    }

    fn product_event(&self, id: &str, s: &ProductState, ts: DateTime<Utc>) -> Value {
        json!({
            "type": "product.upserted", "product_id": id, "image_url": self.url(s.image), "title": s.title,
            "in_stock": s.in_stock, "attributes": s.attributes(), "updated_at": ts.to_rfc3339(),
        })
    }

    fn put_product(&mut self, kind: &'static str, id: &str, mut s: ProductState) {
        s.ts = self.now();
        let event = self.product_event(id, &s, s.ts);
        self.push(kind, PRODUCTS, id, Some(event));
        self.plan.products.insert(id.to_string(), Some(s));
    }

    fn live_product(&self, id: &str) -> ProductState {
        self.plan.products[id].clone().expect("a live product")
    }

    fn pick_live(&mut self) -> Option<String> {
        self.live.choose(&mut self.rng).cloned()
    }

    fn remove_live(&mut self, id: &str) {
        self.live.retain(|x| x != id);
        self.deleted.push(id.to_string());
        self.plan.products.insert(id.to_string(), None);
    }

    fn create_product(&mut self, id: String, kind: &'static str) {
        let family = self.rng.random_range(0..FAMILIES.len());
        let image = self.new_image(family, false);
        let s = ProductState {
            image,
            in_stock: self.rng.random_bool(0.85),
            family,
            price: self.rng.random_range(10..100),
            size: self.rng.random_range(1..6),
            title: format!("{} {id}", FAMILIES[family].name),
            ts: self.now(),
        };
        self.put_product(kind, &id, s);
        self.deleted.retain(|x| *x != id);
        self.live.push(id);
    }

    fn random_filter(&mut self) -> AdFilter {
        let mut f = AdFilter::default();
        let cat = |i: usize| AttrValue::Str(FAMILIES[i].category.to_string());
        match self.rng.random_range(0..6) {
            0 => {}
            1 => f.in_stock = Some(true),
            2 => {
                f.in_stock = Some(true);
                f.attributes.insert("category".into(), vec![cat(self.rng.random_range(0..FAMILIES.len()))]);
            }
            3 => {
                let (a, b) = (self.rng.random_range(0..FAMILIES.len()), self.rng.random_range(0..FAMILIES.len()));
                f.attributes.insert("category".into(), vec![cat(a), cat(b)]);
            }
            4 => {
                f.in_stock = Some(true);
                f.attributes.insert("size".into(), vec![AttrValue::Int(1), AttrValue::Int(2), AttrValue::Int(3)]);
            }
            _ => {
                let fam = FAMILIES[self.rng.random_range(0..FAMILIES.len())].name;
                f.attributes.insert("family".into(), vec![AttrValue::Str(fam.into())]);
            }
        }
        f
    }

    fn put_ad(&mut self, kind: &'static str, id: &str, image: usize, k: Option<usize>, filter: AdFilter) {
        let ts = self.now();
        let mut event = json!({
            "type": "ad.upserted", "ad_id": id, "image_url": self.url(image),
            "filter": serde_json::to_value(&filter).expect("filter json"), "updated_at": ts.to_rfc3339(),
        });
        if let Some(k) = k {
            event["k"] = json!(k);
        }
        self.push(kind, ADS, id, Some(event));
        self.plan.ads.insert(id.to_string(), Some(AdState { image, k, filter, ts }));
    }

    fn new_ad(&mut self, id: &str, kind: &'static str) {
        let family = self.rng.random_range(0..FAMILIES.len());
        let image = self.new_image(family, true);
        let k = self.rng.random_bool(0.8).then(|| self.rng.random_range(3..13));
        let filter = self.random_filter();
        self.put_ad(kind, id, image, k, filter);
    }

    fn live_ad(&mut self) -> Option<(String, AdState)> {
        let live: Vec<(String, AdState)> =
            self.plan.ads.iter().filter_map(|(id, s)| s.clone().map(|s| (id.clone(), s))).collect();
        live.choose(&mut self.rng).cloned()
    }

    fn deleted_ad(&mut self) -> Option<String> {
        let gone: Vec<String> = self.plan.ads.iter().filter(|(_, s)| s.is_none()).map(|(id, _)| id.clone()).collect();
        gone.choose(&mut self.rng).cloned()
    }

    /// One event of a random kind; kinds that do not apply fall back to a
    /// product change (or creation).
    fn step(&mut self) {
        let roll = self.rng.random_range(0..1000);
        if roll < 100 && self.next_product < MAX_PRODUCTS || self.live.is_empty() {
            let id = format!("p{:05}", self.next_product);
            self.next_product += 1;
            return self.create_product(id, "product_created");
        }
        if (100..160).contains(&roll) {
            let id = self.pick_live().expect("live product");
            let mut s = self.live_product(&id);
            s.image = self.new_image(s.family, false);
            return self.put_product("product_image_changed", &id, s);
        }
        if (160..180).contains(&roll)
            && let Some(id) = self.deleted.choose(&mut self.rng).cloned()
        {
            return self.create_product(id, "product_recreated");
        }
        if (180..430).contains(&roll) {
            let id = self.pick_live().expect("live product");
            let mut s = self.live_product(&id);
            s.in_stock = !s.in_stock;
            return self.put_product("product_stock_flipped", &id, s);
        }
        if (680..720).contains(&roll) {
            let id = self.pick_live().expect("live product");
            let ts = self.now().to_rfc3339();
            self.push(
                "product_deleted",
                PRODUCTS,
                &id,
                Some(json!({"type": "product.deleted", "product_id": id, "updated_at": ts})),
            );
            return self.remove_live(&id);
        }
        if (720..740).contains(&roll) {
            let id = self.pick_live().expect("live product");
            self.push("product_tombstone", PRODUCTS, &id, None);
            return self.remove_live(&id);
        }
        if (740..760).contains(&roll) {
            // Older than the stored state: must be ignored.
            let id = self.pick_live().expect("live product");
            let mut old = self.live_product(&id);
            let ts = old.ts - chrono::Duration::milliseconds(500);
            old.in_stock = !old.in_stock;
            old.price += 1;
            let event = self.product_event(&id, &old, ts);
            return self.push("product_stale", PRODUCTS, &id, Some(event));
        }
        if (760..764).contains(&roll) {
            let key = format!("poison-{}", self.plan.poison.len());
            let payload = match self.plan.poison.len() % 4 {
                0 => Value::String("{not json".into()),
                1 => json!({"type": "product.teleported", "product_id": key}),
                2 => {
                    json!({"type": "product.upserted", "product_id": key, "image_url": format!("{}/img/missing.jpg", self.base), "updated_at": self.now().to_rfc3339()})
                }
                _ => {
                    json!({"type": "product.deleted", "product_id": "someone-else", "updated_at": self.now().to_rfc3339()})
                }
            };
            let payload = match payload {
                Value::String(raw) => raw,
                other => other.to_string(),
            };
            self.plan.poison.insert(key.clone());
            *self.plan.kinds.entry("poison").or_default() += 1;
            self.plan.events.push(Ev { topic: PRODUCTS, key, payload: Some(payload) });
            return;
        }
        if (764..830).contains(&roll)
            && let Some((id, s)) = self.live_ad()
        {
            let (k, filter) = if self.rng.random_bool(0.5) {
                (self.rng.random_bool(0.8).then(|| self.rng.random_range(3..13)), s.filter)
            } else {
                (s.k, self.random_filter())
            };
            return self.put_ad("ad_changed", &id, s.image, k, filter);
        }
        if (830..840).contains(&roll)
            && let Some((id, s)) = self.live_ad()
        {
            let family = self.rng.random_range(0..FAMILIES.len());
            let image = self.new_image(family, true);
            return self.put_ad("ad_image_changed", &id, image, s.k, s.filter);
        }
        if (840..850).contains(&roll)
            && let Some((id, _)) = self.live_ad()
        {
            if roll < 847 {
                let ts = self.now().to_rfc3339();
                self.push("ad_deleted", ADS, &id, Some(json!({"type": "ad.deleted", "ad_id": id, "updated_at": ts})));
            } else {
                self.push("ad_tombstone", ADS, &id, None);
            }
            self.plan.ads.insert(id, None);
            return;
        }
        if (850..862).contains(&roll)
            && let Some(id) = self.deleted_ad()
        {
            return self.new_ad(&id, "ad_recreated");
        }
        // Attribute or title edit (same image: no re-embedding).
        let id = self.pick_live().expect("live product");
        let mut s = self.live_product(&id);
        match self.rng.random_range(0..3) {
            0 => s.price = self.rng.random_range(10..100),
            1 => s.size = self.rng.random_range(1..6),
            _ => s.title = format!("{} v{}", s.title.split(" v").next().unwrap_or_default(), self.plan.events.len()),
        }
        self.put_product("product_edited", &id, s)
    }

    fn build(mut self, total: usize) -> Plan {
        for a in 0..ADS_COUNT {
            self.new_ad(&format!("ad-{a:02}"), "ad_created");
        }
        while self.plan.events.len() < total {
            self.step();
        }
        self.plan
    }
}

/// Write every planned image (demo garments: products square, ads banners).
fn write_images(dir: &Path, images: &[(usize, bool)], seed: u64) {
    let img_dir = dir.join("img");
    std::fs::create_dir_all(&img_dir).expect("mkdir img");
    for (i, (family, ad)) in images.iter().enumerate() {
        let mut rng = StdRng::seed_from_u64(seed ^ (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15));
        let fam = &FAMILIES[*family];
        let img = if *ad { demo::ad_image(fam, &mut rng) } else { demo::product_image(fam, &mut rng) };
        img.save_with_format(img_dir.join(format!("{i}.jpg")), image::ImageFormat::Jpeg).expect("save image");
    }
}

fn spawn_worker(dir: &Path, config: &Config, name: &str) -> Child {
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(&path, config.to_toml()).expect("write config");
    let log = std::fs::File::create(dir.join(format!("{name}.log"))).expect("log file");
    // ADREC_CRASH_BIN: run a copy of the binary (a shared build directory's
    // `adrec` may be replaced by another checkout's build mid-test).
    let bin = std::env::var_os("ADREC_CRASH_BIN").unwrap_or_else(|| env!("CARGO_BIN_EXE_adrec").into());
    let mut command = Command::new(bin);
    // The worker rejects unknown ADREC_* variables: keep the test's own away from it.
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("ADREC_CRASH_") {
            command.env_remove(name);
        }
    }
    command
        .args(["run", "--config"])
        .arg(&path)
        .env("RUST_LOG", "adrec=info")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("spawn adrec")
}

fn log_of(dir: &Path, name: &str) -> String {
    let text = std::fs::read_to_string(dir.join(format!("{name}.log"))).unwrap_or_default();
    // The tail is what explains a failure.
    let start = text.len().saturating_sub(20_000);
    text.get(start..).unwrap_or(&text).to_string()
}

/// Where the worker's files go: tmpfs when there is one.
fn scratch_dir() -> tempfile::TempDir {
    let shm = PathBuf::from("/dev/shm");
    if shm.is_dir() { tempfile::tempdir_in(shm) } else { tempfile::tempdir() }.expect("tempdir")
}

/// A published list against the oracle: same ids in the same order, scores within 1e-4.
fn list_problem(ad_id: &str, published: &[ListItem], expected: &[ListItem]) -> Option<String> {
    let ids = |l: &[ListItem]| l.iter().map(|i| i.product_id.clone()).collect::<Vec<_>>();
    if ids(published) != ids(expected) {
        let scores = |l: &[ListItem]| l.iter().map(|i| format!("{}:{:.6}", i.product_id, i.score)).collect::<Vec<_>>();
        return Some(format!("ad {ad_id}: published {:?}, oracle {:?}", scores(published), scores(expected)));
    }
    published
        .iter()
        .zip(expected)
        .find(|(p, e)| (p.score - e.score).abs() >= 1e-4)
        .map(|(p, e)| format!("ad {ad_id}: {} scored {} vs oracle {}", p.product_id, p.score, e.score))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_loop_loses_nothing_and_every_list_is_exact() {
    let rounds: usize = env_or("ADREC_CRASH_ROUNDS", 10);
    let seed: u64 = env_or("ADREC_CRASH_SEED", 20_261_204);
    let started = Instant::now();
    let broker = Broker::start();
    broker.create_topic(PRODUCTS, PARTITIONS, true);
    broker.create_topic(ADS, PARTITIONS, true);
    let tmp = scratch_dir();
    let dir = tmp.path();
    let www = dir.join("www");
    let addr = common::serve_dir(&www).await;
    let plan = Planner::new(seed, &format!("http://{addr}")).build(EVENTS);
    write_images(&www, &plan.images, seed);
    let product_events = plan.events.iter().filter(|e| e.topic == PRODUCTS).count();
    println!(
        "crash_loop.seed={seed} crash_loop.events={} crash_loop.product_events={product_events} crash_loop.images={} crash_loop.kinds={:?}",
        plan.events.len(),
        plan.images.len(),
        plan.kinds
    );

    // The stream arrives while the worker runs and dies.
    let bootstrap = broker.bootstrap();
    let records: Vec<(&'static str, String, Option<String>)> =
        plan.events.iter().map(|e| (e.topic, e.key.clone(), e.payload.clone())).collect();
    let producing = tokio::spawn(async move {
        let p = producer(&bootstrap);
        for (topic, key, payload) in records {
            produce(&p, topic, &key, payload.as_deref()).await;
        }
    });

    let mut config = common::config(&dir.join("worker"), Path::new("-"));
    config.source.kind = Backend::Kafka;
    config.sink.kind = Backend::Kafka;
    config.kafka.bootstrap_servers = broker.bootstrap();
    config.kafka.group_id = "adrec-crash".into();
    config.kafka.session_timeout_ms = 6_000;
    config.kafka.commit_interval_ms = 200;
    config.kafka.exit_when_idle_ms = 0; // runs until killed
    let mut rng = StdRng::seed_from_u64(seed);
    for round in 0..rounds {
        let name = format!("round{round:02}");
        let mut worker = spawn_worker(dir, &config, &name);
        let spawned = Instant::now();
        // Some kills land anywhere in start-up (model load, group join, rebuild);
        // the rest at seeded points of progress, plus a seeded delay.
        let point = if rng.random_bool(0.3) {
            let ms = rng.random_range(200..5_000);
            tokio::time::sleep(Duration::from_millis(ms)).await;
            format!("{ms} ms after start")
        } else {
            let step = product_events as f64 / (rounds + 1) as f64;
            let target = (step * (round as f64 + rng.random_range(0.6..1.4))) as i64;
            loop {
                let done = committed_total(&broker.bootstrap(), &config, PARTITIONS);
                if done >= target {
                    break;
                }
                assert!(worker.try_wait().expect("wait").is_none(), "worker died:\n{}", log_of(dir, &name));
                assert!(spawned.elapsed() < Duration::from_secs(300), "no progress:\n{}", log_of(dir, &name));
                tokio::time::sleep(Duration::from_millis(150)).await;
            }
            let ms = rng.random_range(0..400);
            tokio::time::sleep(Duration::from_millis(ms)).await;
            format!("{target} product offsets committed + {ms} ms")
        };
        assert!(worker.try_wait().expect("wait").is_none(), "worker exited before its kill:\n{}", log_of(dir, &name));
        worker.kill().expect("SIGKILL");
        worker.wait().expect("reap");
        let committed = committed_total(&broker.bootstrap(), &config, PARTITIONS);
        println!("crash_loop.round={round} killed_at=\"{point}\" committed={committed}");
    }
    producing.await.expect("producer task");

    // Quiescence: a last worker drains what is left and exits when idle.
    config.kafka.exit_when_idle_ms = 10_000;
    let mut worker = spawn_worker(dir, &config, "drain");
    let drain_started = Instant::now();
    let status = loop {
        if let Some(status) = worker.try_wait().expect("wait") {
            break status;
        }
        if drain_started.elapsed() > Duration::from_secs(900) {
            let _ = worker.kill();
            panic!("the draining worker did not finish:\n{}", log_of(dir, "drain"));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(status.success(), "draining worker failed ({status}):\n{}", log_of(dir, "drain"));

    let mut problems = Vec::new();
    let (catalogue, live_ads) = stored(&config).await;
    check_catalogue(&plan, &catalogue, &mut problems);
    check_ads(&plan, &live_ads, &mut problems);
    check_vectors(&config, &www, &plan, &catalogue, &live_ads, &mut problems);

    // Every ad's last message: the oracle's list, or a tombstone.
    let latest = latest_lists(&broker.bootstrap(), OUTPUT);
    let ads: BTreeMap<&str, &AdRecord> = live_ads.iter().map(|a| (a.ad_id.as_str(), a)).collect();
    let mut lists_checked = 0;
    for (ad_id, state) in &plan.ads {
        match (state, latest.get(ad_id), ads.get(ad_id.as_str())) {
            (None, Some(None), _) => {}
            (None, other, _) => problems.push(format!("deleted ad {ad_id}: last output {other:?}, not a tombstone")),
            (Some(_), Some(Some(list)), Some(ad)) => {
                lists_checked += 1;
                let expected = common::oracle(&catalogue, &ad.vector, &ad.filter, ad.k);
                problems.extend(list_problem(ad_id, &list.items, &expected));
            }
            (Some(_), last, ad) => {
                problems.push(format!("live ad {ad_id}: last output {last:?}, stored {:?}", ad.map(|a| &a.ad_id)))
            }
        }
    }

    let dlq: BTreeSet<String> = read_all(&broker.bootstrap(), DLQ).into_iter().filter_map(|(k, _, _)| k).collect();
    if dlq != plan.poison {
        problems.push(format!("DLQ keys {dlq:?}, expected {:?}", plan.poison));
    }
    let committed = committed_total(&broker.bootstrap(), &config, PARTITIONS);
    if committed != product_events as i64 {
        problems.push(format!("{committed} product offsets committed, {product_events} produced"));
    }

    println!(
        "crash_loop.rounds={rounds} crash_loop.kills={rounds} crash_loop.events={} crash_loop.live_products={} crash_loop.lists_checked={lists_checked} crash_loop.ads_deleted={} crash_loop.dlq={} crash_loop.mismatches={} crash_loop.seconds={}",
        plan.events.len(),
        catalogue.len(),
        plan.ads.values().filter(|a| a.is_none()).count(),
        dlq.len(),
        problems.len(),
        started.elapsed().as_secs()
    );
    assert!(problems.is_empty(), "{} problems:\n{}", problems.len(), problems[..problems.len().min(30)].join("\n"));
}

/// The stored catalogue is exactly the event log's final state.
fn check_catalogue(plan: &Plan, catalogue: &[ProductRecord], problems: &mut Vec<String>) {
    let stored: BTreeMap<&str, &ProductRecord> = catalogue.iter().map(|p| (p.product_id.as_str(), p)).collect();
    for (id, state) in &plan.products {
        match (state, stored.get(id.as_str())) {
            (None, None) => {}
            (None, Some(_)) => problems.push(format!("product {id} was deleted but is stored")),
            (Some(_), None) => problems.push(format!("product {id} is missing from the store")),
            (Some(s), Some(p)) => {
                let want_url = format!("/img/{}.jpg", s.image);
                let ok = p.image_url.ends_with(&want_url)
                    && p.in_stock == s.in_stock
                    && Value::Object(p.attributes.clone()) == s.attributes()
                    && p.title.as_deref() == Some(s.title.as_str())
                    && p.updated_at == s.ts;
                if !ok {
                    problems.push(format!("product {id}: stored {p:?}, expected {s:?}"));
                }
            }
        }
    }
    for id in stored.keys() {
        if !plan.products.contains_key(*id) {
            problems.push(format!("product {id} was never produced but is stored"));
        }
    }
}

/// The stored live ads are exactly the event log's live ads.
fn check_ads(plan: &Plan, live_ads: &[AdRecord], problems: &mut Vec<String>) {
    let stored: BTreeMap<&str, &AdRecord> = live_ads.iter().map(|a| (a.ad_id.as_str(), a)).collect();
    for (id, state) in &plan.ads {
        match (state, stored.get(id.as_str())) {
            (None, None) => {}
            (None, Some(_)) => problems.push(format!("ad {id} was deleted but is live in the store")),
            (Some(_), None) => problems.push(format!("ad {id} is missing from the store")),
            (Some(s), Some(a)) => {
                let ok = a.image_url.ends_with(&format!("/img/{}.jpg", s.image))
                    && a.k == s.k.unwrap_or(10)
                    && a.filter == s.filter
                    && a.updated_at == s.ts;
                if !ok {
                    problems.push(format!("ad {id}: stored {a:?}, expected {s:?}"));
                }
            }
        }
    }
}

/// Stored vectors are the embeddings of the final images (every live ad and
/// a seeded sample of live products, re-embedded here).
fn check_vectors(
    config: &Config,
    www: &Path,
    plan: &Plan,
    catalogue: &[ProductRecord],
    ads: &[AdRecord],
    problems: &mut Vec<String>,
) {
    // The worker's embedder: the model plus the configured colour features.
    let embedder = adrec::adapt::configured_embedder(config, app::load_embedder(config).expect("model"));
    let mut rng = StdRng::seed_from_u64(1);
    let sample: Vec<&ProductRecord> = catalogue.choose_multiple(&mut rng, VECTOR_SAMPLE).collect();
    let mut check = |id: &str, image: usize, vector: &[f32]| {
        let bytes = std::fs::read(www.join(format!("img/{image}.jpg"))).expect("image file");
        let fresh = embedder.embed(&bytes).expect("embed");
        let cos: f32 = adrec::recommend::dot(&fresh, vector);
        if cos < 0.9999 {
            problems.push(format!("{id}: stored vector is not the embedding of image {image} (cos {cos})"));
        }
    };
    for p in sample {
        let Some(Some(s)) = plan.products.get(&p.product_id) else { continue };
        check(&p.product_id, s.image, &p.vector);
    }
    for a in ads {
        let Some(Some(s)) = plan.ads.get(&a.ad_id) else { continue };
        check(&a.ad_id, s.image, &a.vector);
    }
}
