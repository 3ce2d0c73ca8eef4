//! The Kafka sink: lists to the compacted output topic (key = ad id, null
//! value = tombstone) and dead letters to the DLQ topic with the reason and
//! origin in headers. The producer is idempotent with acks=all, and every
//! call waits for the broker's acknowledgement: returning is what lets the
//! source commit.

use std::time::Duration;

use async_trait::async_trait;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};

use super::{DeadLetter, ListSink, SinkError};
use crate::config::KafkaConfig;
use crate::events::RecommendationList;
use crate::kafka::{KafkaSetupError, base_config, setup_error};

/// Produces lists and dead letters to Kafka.
pub struct KafkaSink {
    producer: FutureProducer,
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
        Ok(Self {
            producer,
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
    async fn publish(&self, ad_id: &str, list: Option<&RecommendationList>) -> Result<(), SinkError> {
        let payload = list.map(serde_json::to_vec).transpose().map_err(|e| SinkError::Unavailable(e.to_string()))?;
        let mut record = FutureRecord::<[u8], [u8]>::to(&self.output_topic).key(ad_id.as_bytes());
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
}
