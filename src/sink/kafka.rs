//! The Kafka sink: lists to the compacted output topic (key = ad id, null
//! value = tombstone) and dead letters to the DLQ topic with the reason and
//! origin in headers. The producer is idempotent with acks=all, and every
//! call waits for the broker's acknowledgement: returning is what lets the
//! source commit.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Header, Message, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

use super::{DeadLetter, ListSink, SinkError};
use crate::config::KafkaConfig;
use crate::events::RecommendationList;
use crate::kafka::{KafkaSetupError, base_config, setup_error};

/// Produces lists and dead letters to Kafka.
pub struct KafkaSink {
    producer: FutureProducer,
    reader_config: ClientConfig,
    output_topic: String,
    dlq_topic: String,
    timeout: Duration,
}

impl KafkaSink {
    /// Create the producer (fails on unknown or invalid librdkafka properties).
    pub fn new(k: &KafkaConfig) -> Result<Self, KafkaSetupError> {
        let mut config = base_config(k);
        config
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("compression.type", "lz4")
            .set("linger.ms", "5");
        for (key, value) in &k.producer_properties {
            config.set(key, value);
        }
        let producer: FutureProducer = config.create().map_err(setup_error)?;
        let mut reader_config = base_config(k);
        reader_config
            .set("group.id", format!("{}.reader", k.group_id))
            .set("enable.auto.commit", "false")
            .set("enable.partition.eof", "false");
        Ok(Self {
            producer,
            reader_config,
            output_topic: k.output_topic.clone(),
            dlq_topic: k.dlq_topic.clone(),
            timeout: Duration::from_secs(30),
        })
    }

    async fn send(&self, record: FutureRecord<'_, [u8], [u8]>) -> Result<(), SinkError> {
        // librdkafka retries internally within message.timeout.ms; an error here
        // is reported to the pipeline, which retries the whole record.
        self.producer
            .send(record, self.timeout)
            .await
            .map(|_| ())
            .map_err(|(e, _)| SinkError::Unavailable(format!("Kafka delivery failed: {e}")))
    }
}

#[async_trait]
impl ListSink for KafkaSink {
    async fn publish(&self, ad_id: &str, partition: i32, list: Option<&RecommendationList>) -> Result<(), SinkError> {
        let payload = list.map(serde_json::to_vec).transpose().map_err(|e| SinkError::Unavailable(e.to_string()))?;
        let mut record = FutureRecord::<[u8], [u8]>::to(&self.output_topic).key(ad_id.as_bytes()).partition(partition);
        if let Some(p) = payload.as_deref() {
            record = record.payload(p);
        }
        self.send(record).await
    }

    async fn dead_letter(&self, letter: &DeadLetter) -> Result<(), SinkError> {
        let r = &letter.record;
        let (partition, offset) = (r.partition.to_string(), r.offset.to_string());
        let headers = OwnedHeaders::new()
            .insert(Header { key: "adrec.error", value: Some(letter.error.as_bytes()) })
            .insert(Header { key: "adrec.source.topic", value: Some(r.topic.as_bytes()) })
            .insert(Header { key: "adrec.source.partition", value: Some(partition.as_bytes()) })
            .insert(Header { key: "adrec.source.offset", value: Some(offset.as_bytes()) });
        let mut record = FutureRecord::<[u8], [u8]>::to(&self.dlq_topic).headers(headers);
        if let Some(k) = r.key.as_deref() {
            record = record.key(k);
        }
        if let Some(p) = r.payload.as_deref() {
            record = record.payload(p);
        }
        self.send(record).await
    }

    async fn latest(&self, partitions: &[i32]) -> Result<BTreeMap<String, Option<RecommendationList>>, SinkError> {
        let config = self.reader_config.clone();
        let topic = self.output_topic.clone();
        let partitions = partitions.to_vec();
        tokio::task::spawn_blocking(move || read_latest(&config, &topic, &partitions))
            .await
            .map_err(|e| SinkError::Unavailable(e.to_string()))?
    }
}

/// Read `partitions` of the output topic to their end; last value per key.
///
/// "The end" is not taken from the high watermark alone (some brokers report
/// the start of the last batch + 1): reading stops once every partition has
/// reached its watermark and nothing more arrived for a quiet second.
fn read_latest(
    config: &ClientConfig,
    topic: &str,
    partitions: &[i32],
) -> Result<BTreeMap<String, Option<RecommendationList>>, SinkError> {
    let err = |e: rdkafka::error::KafkaError| SinkError::Unavailable(format!("reading {topic}: {e}"));
    let consumer: BaseConsumer = config.create().map_err(err)?;
    let mut tpl = TopicPartitionList::new();
    let mut ends = BTreeMap::new();
    for &p in partitions {
        let (_, high) = consumer.fetch_watermarks(topic, p, Duration::from_secs(10)).map_err(err)?;
        ends.insert(p, high);
        tpl.add_partition_offset(topic, p, Offset::Beginning).map_err(err)?;
    }
    consumer.assign(&tpl).map_err(err)?;
    let mut next_offset: BTreeMap<i32, i64> = partitions.iter().map(|&p| (p, 0)).collect();
    let mut latest = BTreeMap::new();
    let started = Instant::now();
    let mut last_message = Instant::now();
    loop {
        let caught_up = ends.iter().all(|(p, end)| next_offset.get(p).is_some_and(|o| o >= end));
        if caught_up && last_message.elapsed() >= Duration::from_secs(1) {
            break;
        }
        if started.elapsed() > Duration::from_secs(120) {
            return Err(SinkError::Unavailable(format!("reading {topic} did not reach its end within 120 s")));
        }
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(m)) => {
                last_message = Instant::now();
                next_offset.insert(m.partition(), m.offset() + 1);
                let Some(key) = m.key().map(|k| String::from_utf8_lossy(k).into_owned()) else { continue };
                let value = match m.payload() {
                    None => None,
                    Some(bytes) => match serde_json::from_slice::<RecommendationList>(bytes) {
                        Ok(list) => Some(list),
                        Err(e) => {
                            tracing::warn!(key, error = %e, "ignoring unparsable message on the output topic");
                            continue;
                        }
                    },
                };
                latest.insert(key, value);
            }
            Some(Err(e)) => return Err(err(e)),
            None => {}
        }
    }
    Ok(latest)
}
