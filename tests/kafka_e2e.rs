//! Kafka in and out against a real broker (tansu, started by the test):
//! the `adrec` binary as a separate process, the real model, the embedded
//! store, real HTTP image downloads.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use adrec::config::{Backend, Config};
use adrec::demo;
use adrec::events::RecommendationList;
use adrec::records::AdRecord;
use common::broker::Broker;
use common::kafka::{produce, producer, read_all, stored};

const PRODUCTS: &str = "catalog.products";
const ADS: &str = "ads.creatives";
const OUTPUT: &str = "ads.recommendations";
const DLQ: &str = "adrec.dlq";
const GROUP: &str = "adrec-test";

/// A test world: broker, topics, image server, demo catalogue, worker config.
struct World {
    broker: Broker,
    tmp: tempfile::TempDir,
    base: String,
    catalogue: demo::DemoCatalogue,
}

impl World {
    async fn new(per_family: usize) -> World {
        let broker = Broker::start();
        broker.create_topic(PRODUCTS, 4, true);
        broker.create_topic(ADS, 4, true);
        let tmp = tempfile::tempdir().expect("tempdir");
        let demo_dir = tmp.path().join("demo");
        std::fs::create_dir_all(&demo_dir).expect("mkdir");
        let addr = common::serve_dir(&demo_dir).await;
        let base = format!("http://{addr}");
        let catalogue = demo::generate(&demo_dir, &base, per_family, 42).expect("demo data");
        World { broker, tmp, base, catalogue }
    }

    /// Worker config for worker `n` (each has its own data dir).
    fn config(&self, n: usize) -> Config {
        let mut c = common::config(&self.tmp.path().join(format!("worker{n}")), Path::new("-"));
        c.source.kind = Backend::Kafka;
        c.sink.kind = Backend::Kafka;
        c.kafka.bootstrap_servers = self.broker.bootstrap();
        c.kafka.group_id = GROUP.into();
        c.kafka.session_timeout_ms = 6_000;
        c.kafka.commit_interval_ms = 200;
        c.kafka.exit_when_idle_ms = 10_000;
        c
    }

    /// Start `adrec run` as a child process with `config`.
    fn spawn_worker(&self, config: &Config, n: usize) -> Child {
        let path = self.tmp.path().join(format!("worker{n}.toml"));
        std::fs::write(&path, config.to_toml()).expect("write config");
        let log = std::fs::File::create(self.tmp.path().join(format!("worker{n}.log"))).expect("log file");
        Command::new(env!("CARGO_BIN_EXE_adrec"))
            .args(["run", "--config"])
            .arg(&path)
            .env("RUST_LOG", "adrec=debug")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn adrec")
    }

    fn worker_log(&self, n: usize) -> String {
        std::fs::read_to_string(self.tmp.path().join(format!("worker{n}.log"))).unwrap_or_default()
    }

    fn demo_events(&self, name: &str) -> Vec<(String, String)> {
        let text = std::fs::read_to_string(self.tmp.path().join("demo/events").join(name)).expect("events");
        text.lines()
            .map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).expect("json");
                let id = v.get("product_id").or_else(|| v.get("ad_id")).and_then(|x| x.as_str()).expect("id");
                (id.to_string(), l.to_string())
            })
            .collect()
    }
}

fn latest_lists(bootstrap: &str) -> BTreeMap<String, Option<RecommendationList>> {
    common::kafka::latest_lists(bootstrap, OUTPUT)
}

fn committed_total(bootstrap: &str, config: &Config) -> i64 {
    common::kafka::committed_total(bootstrap, config, 4)
}

async fn wait_exit(child: &mut Child, limit: Duration, world: &World, n: usize) {
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            assert!(status.success(), "worker {n} failed ({status}):\n{}", world.worker_log(n));
            return;
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            panic!("worker {n} did not finish within {limit:?}:\n{}", world.worker_log(n));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Every live ad's latest list on the output topic is the oracle's top-k.
async fn assert_output_matches_oracle(world: &World, config: &Config) -> BTreeMap<String, Option<RecommendationList>> {
    assert_output_matches_oracle_of(world, &[config]).await
}

/// Same, for ads spread over several workers' stores.
async fn assert_output_matches_oracle_of(
    world: &World,
    configs: &[&Config],
) -> BTreeMap<String, Option<RecommendationList>> {
    let (catalogue, _) = stored(configs[0]).await;
    let mut ads = BTreeMap::new();
    for config in configs {
        for ad in stored(config).await.1 {
            ads.insert(ad.ad_id.clone(), ad);
        }
    }
    let latest = latest_lists(&world.broker.bootstrap());
    let ads: Vec<AdRecord> = ads.into_values().filter(|a| matches!(latest.get(&a.ad_id), Some(Some(_)))).collect();
    assert!(!ads.is_empty(), "no live ad found");
    for ad in &ads {
        let list =
            latest.get(&ad.ad_id).cloned().flatten().unwrap_or_else(|| panic!("no list on the topic for {}", ad.ad_id));
        let expected = common::oracle(&catalogue, &ad.vector, &ad.filter, ad.k);
        common::assert_same_list(&ad.ad_id, &list.items, &expected);
    }
    latest
}

async fn produce_demo(world: &World) {
    let p = producer(&world.broker.bootstrap());
    for (id, line) in world.demo_events("products.jsonl") {
        produce(&p, PRODUCTS, &id, Some(&line)).await;
    }
    for (id, line) in world.demo_events("ads.jsonl") {
        produce(&p, ADS, &id, Some(&line)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catalogue_through_kafka_matches_the_oracle_and_commits_everything() {
    let world = World::new(50).await;
    assert!(world.catalogue.products >= 200);
    produce_demo(&world).await;
    let config = world.config(0);
    let mut worker = world.spawn_worker(&config, 0);
    wait_exit(&mut worker, Duration::from_secs(600), &world, 0).await;

    let latest = assert_output_matches_oracle(&world, &config).await;
    assert_eq!(latest.len(), demo::ADS.len());
    let (catalogue, _) = stored(&config).await;
    assert_eq!(catalogue.len(), world.catalogue.products, "every product stored");
    assert_eq!(
        committed_total(&world.broker.bootstrap(), &config),
        world.catalogue.products as i64,
        "all product offsets committed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_stream_then_restart_loses_and_skips_nothing() {
    let world = World::new(35).await;
    // Ads first, so lists change while products stream in and the kill lands mid-update.
    let p = producer(&world.broker.bootstrap());
    for (id, line) in world.demo_events("ads.jsonl") {
        produce(&p, ADS, &id, Some(&line)).await;
    }
    for (id, line) in world.demo_events("products.jsonl") {
        produce(&p, PRODUCTS, &id, Some(&line)).await;
    }
    let config = world.config(0);
    let mut worker = world.spawn_worker(&config, 0);
    let started = Instant::now();
    while committed_total(&world.broker.bootstrap(), &config) < 60 {
        assert!(started.elapsed() < Duration::from_secs(300), "no progress:\n{}", world.worker_log(0));
        assert!(worker.try_wait().expect("wait").is_none(), "worker exited early:\n{}", world.worker_log(0));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    worker.kill().expect("SIGKILL");
    worker.wait().expect("reap");

    let mut worker = world.spawn_worker(&config, 1);
    wait_exit(&mut worker, Duration::from_secs(90), &world, 1).await;
    assert_output_matches_oracle(&world, &config).await;
    let (catalogue, _) = stored(&config).await;
    assert_eq!(catalogue.len(), world.catalogue.products, "no product event skipped");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poison_goes_to_the_dlq_and_the_partition_keeps_flowing() {
    let world = World::new(3).await;
    let p = producer(&world.broker.bootstrap());
    produce_demo(&world).await;
    let base = &world.base;
    let ok = |id: &str, t: &str| {
        format!(
            r#"{{"type":"product.upserted","product_id":"{id}","image_url":"{base}/images/navy-plain-tee-000.jpg","updated_at":"{t}"}}"#
        )
    };
    produce(&p, PRODUCTS, "bad-json", Some("{not json")).await;
    produce(&p, PRODUCTS, "mystery", Some(r#"{"type":"product.teleported","product_id":"mystery"}"#)).await;
    let missing = format!(
        r#"{{"type":"product.upserted","product_id":"gone-img","image_url":"{base}/images/nope.jpg","updated_at":"2026-12-01T09:00:00Z"}}"#
    );
    produce(&p, PRODUCTS, "gone-img", Some(&missing)).await;
    produce(&p, PRODUCTS, "fresh", Some(&ok("fresh", "2026-12-02T09:00:00Z"))).await;
    produce(&p, PRODUCTS, "fresh", Some(&ok("fresh", "2026-12-01T09:00:00Z"))).await; // stale: ignored
    produce(&p, PRODUCTS, "navy-plain-tee-001", None).await; // tombstone = delete
    let config = world.config(0);
    let mut worker = world.spawn_worker(&config, 0);
    wait_exit(&mut worker, Duration::from_secs(600), &world, 0).await;

    let dlq = read_all(&world.broker.bootstrap(), DLQ);
    let by_key: BTreeMap<String, &Vec<(String, String)>> =
        dlq.iter().map(|(k, _, h)| (k.clone().unwrap_or_default(), h)).collect();
    assert_eq!(by_key.len(), 3, "{dlq:?}");
    let header = |key: &str, name: &str| -> String {
        by_key[key].iter().find(|(k, _)| k == name).map(|(_, v)| v.clone()).unwrap_or_default()
    };
    assert!(header("bad-json", "adrec.error").contains("invalid JSON"));
    assert!(header("mystery", "adrec.error").contains("unknown event type"));
    assert!(header("gone-img", "adrec.error").contains("HTTP 404"));
    assert_eq!(header("bad-json", "adrec.source.topic"), PRODUCTS);
    assert!(!header("gone-img", "adrec.source.offset").is_empty());
    assert!(
        dlq.iter().any(|(k, v, _)| k.as_deref() == Some("bad-json") && v.as_deref() == Some("{not json")),
        "original payload kept"
    );

    assert_output_matches_oracle(&world, &config).await;
    let (catalogue, _) = stored(&config).await;
    let fresh = catalogue.iter().find(|p| p.product_id == "fresh").expect("valid event after the poison processed");
    assert_eq!(fresh.updated_at.to_rfc3339(), "2026-12-02T09:00:00+00:00", "the stale update was ignored");
    assert!(catalogue.iter().all(|p| p.product_id != "navy-plain-tee-001"), "tombstone deleted the product");
    assert!(world.worker_log(0).contains("ignored stale event"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_an_ad_publishes_a_tombstone() {
    let world = World::new(3).await;
    produce_demo(&world).await;
    let p = producer(&world.broker.bootstrap());
    produce(
        &p,
        ADS,
        "sunny-days",
        Some(r#"{"type":"ad.deleted","ad_id":"sunny-days","updated_at":"2026-12-02T09:00:00Z"}"#),
    )
    .await;
    produce(&p, ADS, "garden-party", None).await;
    let config = world.config(0);
    let mut worker = world.spawn_worker(&config, 0);
    wait_exit(&mut worker, Duration::from_secs(600), &world, 0).await;
    let latest = assert_output_matches_oracle(&world, &config).await;
    assert_eq!(latest.get("sunny-days"), Some(&None), "ad.deleted → tombstone");
    assert_eq!(latest.get("garden-party"), Some(&None), "Kafka tombstone on the ads topic → tombstone");
    assert!(latest["summer-stripes"].is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_workers_in_one_group_publish_what_one_would() {
    let world = World::new(35).await;
    produce_demo(&world).await;
    let (c0, c1) = (world.config(0), world.config(1));
    let mut w0 = world.spawn_worker(&c0, 0);
    let mut w1 = world.spawn_worker(&c1, 1);
    wait_exit(&mut w0, Duration::from_secs(600), &world, 0).await;
    wait_exit(&mut w1, Duration::from_secs(600), &world, 1).await;
    let latest = assert_output_matches_oracle_of(&world, &[&c0, &c1]).await;
    assert_eq!(latest.values().filter(|l| l.is_some()).count(), demo::ADS.len(), "every ad has a list");
    let (catalogue0, _) = stored(&c0).await;
    let (catalogue1, _) = stored(&c1).await;
    assert_eq!(catalogue0.len(), world.catalogue.products);
    assert_eq!(catalogue1.len(), world.catalogue.products, "each worker holds the whole catalogue");
    let log = world.worker_log(0) + &world.worker_log(1);
    assert!(log.matches("ad partitions assigned").count() >= 2, "both workers took part in the group");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_commits_and_exits_zero() {
    let world = World::new(20).await;
    produce_demo(&world).await;
    let mut config = world.config(0);
    config.kafka.exit_when_idle_ms = 0; // run until told to stop
    let mut worker = world.spawn_worker(&config, 0);
    let started = Instant::now();
    while committed_total(&world.broker.bootstrap(), &config) < 20 {
        assert!(started.elapsed() < Duration::from_secs(300), "no progress:\n{}", world.worker_log(0));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let status = Command::new("kill").args(["-TERM", &worker.id().to_string()]).status().expect("kill -TERM");
    assert!(status.success());
    wait_exit(&mut worker, Duration::from_secs(60), &world, 0).await;
    let log = world.worker_log(0);
    assert!(log.contains("shutdown requested"), "{log}");
    // Everything the worker finished is committed: a restart re-reads nothing it stored.
    let (stored_products, _) = stored(&config).await;
    let committed = committed_total(&world.broker.bootstrap(), &config);
    assert_eq!(committed as usize, stored_products.len(), "every stored product's offset is committed, nothing more");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_outage_mid_stream_the_worker_waits_and_resumes() {
    let world = World::new(20).await;
    let p = producer(&world.broker.bootstrap());
    let products = world.demo_events("products.jsonl");
    let (first, second) = products.split_at(products.len() / 2);
    for (id, line) in world.demo_events("ads.jsonl") {
        produce(&p, ADS, &id, Some(&line)).await;
    }
    for (id, line) in first {
        produce(&p, PRODUCTS, id, Some(line)).await;
    }
    let mut config = world.config(0);
    config.kafka.exit_when_idle_ms = 20_000;
    let mut worker = world.spawn_worker(&config, 0);
    let started = Instant::now();
    while committed_total(&world.broker.bootstrap(), &config) < 10 {
        assert!(started.elapsed() < Duration::from_secs(300), "no progress:\n{}", world.worker_log(0));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The broker freezes for longer than the session timeout, then comes back.
    world.broker.pause();
    tokio::time::sleep(Duration::from_secs(8)).await;
    world.broker.resume();
    for (id, line) in second {
        produce(&p, PRODUCTS, id, Some(line)).await;
    }
    wait_exit(&mut worker, Duration::from_secs(600), &world, 0).await;
    assert_output_matches_oracle(&world, &config).await;
    let (catalogue, _) = stored(&config).await;
    assert_eq!(catalogue.len(), world.catalogue.products, "no product event skipped across the outage");
}
