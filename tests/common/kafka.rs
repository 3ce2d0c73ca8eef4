//! Kafka helpers shared by the broker tests: a producer, whole-topic reads,
//! the latest list per ad as a compacted-topic reader sees it, committed
//! product offsets, and a stopped worker's stored catalogue.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use adrec::app;
use adrec::config::Config;
use adrec::events::RecommendationList;
use adrec::records::{AdRecord, ProductRecord};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

/// An idempotent producer with no batching delay.
pub fn producer(bootstrap: &str) -> FutureProducer {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("enable.idempotence", "true")
        .set("linger.ms", "0")
        .create()
        .expect("producer")
}

/// Produce one record per call and wait for it (one record per batch keeps
/// tansu's high watermarks exact).
pub async fn produce(p: &FutureProducer, topic: &str, key: &str, payload: Option<&str>) {
    let mut record = FutureRecord::<str, str>::to(topic).key(key);
    if let Some(v) = payload {
        record = record.payload(v);
    }
    p.send(record, Duration::from_secs(10)).await.map_err(|(e, _)| e).expect("produce");
}

/// One record as read back: key, value, headers.
pub type Record = (Option<String>, Option<String>, Vec<(String, String)>);

/// Every record of a topic, all partitions, from the beginning.
pub fn read_all(bootstrap: &str, topic: &str) -> Vec<Record> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "adrec-test-reader")
        .set("enable.auto.commit", "false")
        .create()
        .expect("reader");
    // The broker may still be busy with the worker's disconnect: retry briefly.
    let meta = (0..10)
        .find_map(|_| consumer.fetch_metadata(Some(topic), Duration::from_secs(3)).ok())
        .expect("metadata of the topic");
    let mut tpl = TopicPartitionList::new();
    for t in meta.topics() {
        for p in t.partitions() {
            tpl.add_partition_offset(topic, p.id(), Offset::Beginning).expect("tpl");
        }
    }
    consumer.assign(&tpl).expect("assign");
    let text = |b: Option<&[u8]>| b.map(|b| String::from_utf8_lossy(b).into_owned());
    let mut out = Vec::new();
    let mut last = Instant::now();
    while last.elapsed() < Duration::from_secs(3) {
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(200)) {
            let headers = m
                .headers()
                .map(|h| h.iter().map(|x| (x.key.to_string(), text(x.value).unwrap_or_default())).collect())
                .unwrap_or_default();
            out.push((text(m.key()), text(m.payload()), headers));
            last = Instant::now();
        }
    }
    out
}

/// Latest value per key of the output topic, as a reader of the compacted
/// topic rebuilds it. Asserts on the way that each ad's versions increase and
/// that no list is republished unchanged.
pub fn latest_lists(bootstrap: &str, topic: &str) -> BTreeMap<String, Option<RecommendationList>> {
    let mut latest = BTreeMap::new();
    for (key, value, _) in read_all(bootstrap, topic) {
        let list = value.map(|v| serde_json::from_str::<RecommendationList>(&v).expect("list json"));
        let key = key.expect("output records are keyed");
        if let (Some(Some(prev)), Some(new)) = (latest.get(&key), &list) {
            super::assert_republished_changed(&key, prev, new);
        }
        latest.insert(key, list);
    }
    latest
}

/// Sum of a worker's committed offsets on `partitions` partitions of the
/// products topic (ads are re-read as a table, never committed).
pub fn committed_total(bootstrap: &str, config: &Config, partitions: i32) -> i64 {
    let Ok(worker) = std::fs::read_to_string(config.data_dir.join("worker-id")) else { return 0 };
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", format!("{}.products.{}", config.kafka.group_id, worker.trim()))
        .create()
        .expect("consumer");
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition(&config.kafka.products_topic, p);
    }
    match consumer.committed_offsets(tpl, Duration::from_secs(5)) {
        Ok(c) => c.elements().iter().filter_map(|e| e.offset().to_raw()).filter(|o| *o > 0).sum(),
        Err(_) => 0,
    }
}

/// Stored products and live ads of a worker's embedded store (worker stopped).
/// Products: the whole catalogue (every worker reads all product partitions).
pub async fn stored(config: &Config) -> (Vec<ProductRecord>, Vec<AdRecord>) {
    let (products, ads) = app::open_current_stores(config).expect("stores");
    (
        products.scroll_all(true).await.expect("scroll").into_iter().filter_map(ProductRecord::from_point).collect(),
        ads.scroll_all(true)
            .await
            .expect("scroll")
            .into_iter()
            .filter_map(AdRecord::from_point)
            .filter(|a| !a.deleted)
            .collect(),
    )
}
