//! Shared Kafka client setup: librdkafka properties from config (with the
//! ones our guarantees depend on fixed), and creation of our output topics.

use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaErrorCode;

use crate::config::KafkaConfig;

/// Errors setting up Kafka clients.
#[derive(Debug, thiserror::Error)]
pub enum KafkaSetupError {
    /// librdkafka rejected a property (unknown key or bad value).
    #[error(
        "invalid Kafka client setting: {0} (check kafka.properties / kafka.consumer_properties / kafka.producer_properties)"
    )]
    Config(String),
    /// Topic creation failed.
    #[error("cannot create topic `{topic}`: {reason}")]
    CreateTopic { topic: String, reason: String },
}

/// Properties common to every client: servers, client id, pass-through settings.
pub fn base_config(k: &KafkaConfig) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &k.bootstrap_servers).set("client.id", &k.client_id);
    for (key, value) in &k.properties {
        c.set(key, value);
    }
    c
}

/// Consumer properties in group `group`: auto-commit off (offsets are
/// committed by the source only past durable effects), earliest reset.
pub fn consumer_config(k: &KafkaConfig, group: &str) -> ClientConfig {
    let mut c = base_config(k);
    c.set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("session.timeout.ms", k.session_timeout_ms.to_string())
        .set("heartbeat.interval.ms", (k.session_timeout_ms / 6).max(100).to_string())
        .set("isolation.level", "read_committed")
        // Feeds adrec_consumer_lag (source/lag.rs); overridable below.
        .set("statistics.interval.ms", "5000");
    for (key, value) in &k.consumer_properties {
        c.set(key, value);
    }
    c
}

/// Map a client-creation error to a message naming the setting.
pub fn setup_error(e: KafkaError) -> KafkaSetupError {
    KafkaSetupError::Config(e.to_string())
}

/// Lists go to the partition their ad arrived on, so the output topic needs
/// at least as many partitions as the ads topic.
pub fn check_output_partitions(k: &KafkaConfig) -> Result<(), KafkaSetupError> {
    let consumer: rdkafka::consumer::BaseConsumer = base_config(k).create().map_err(setup_error)?;
    let count = |topic: &str| -> Result<usize, KafkaSetupError> {
        let meta = rdkafka::consumer::Consumer::fetch_metadata(&consumer, Some(topic), Duration::from_secs(10))
            .map_err(|e| KafkaSetupError::Config(format!("cannot read metadata of `{topic}`: {e}")))?;
        Ok(meta.topics().iter().filter(|t| t.error().is_none()).map(|t| t.partitions().len()).sum())
    };
    let (ads, output) = (count(&k.ads_topic)?, count(&k.output_topic)?);
    if ads == 0 {
        return Err(KafkaSetupError::Config(format!("topic `{}` does not exist; create it first", k.ads_topic)));
    }
    if output < ads {
        return Err(KafkaSetupError::Config(format!(
            "`{}` has {output} partitions but `{}` has {ads}: the output needs at least as many (each list goes to its ad's partition)",
            k.output_topic, k.ads_topic
        )));
    }
    Ok(())
}

/// Create the output (compacted) and DLQ topics if they do not exist.
pub async fn ensure_output_topics(k: &KafkaConfig) -> Result<(), KafkaSetupError> {
    let admin: AdminClient<DefaultClientContext> = base_config(k).create().map_err(setup_error)?;
    let compacted = [("cleanup.policy", "compact")];
    let topics = [
        NewTopic::new(&k.output_topic, k.create_partitions, TopicReplication::Fixed(-1))
            .set(compacted[0].0, compacted[0].1),
        NewTopic::new(&k.dlq_topic, k.create_partitions, TopicReplication::Fixed(-1)),
    ];
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    let results = admin
        .create_topics(&topics, &options)
        .await
        .map_err(|e| KafkaSetupError::CreateTopic { topic: k.output_topic.clone(), reason: e.to_string() })?;
    for result in results {
        match result {
            Ok(topic) => tracing::info!(topic, "created topic"),
            Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((topic, code)) => return Err(KafkaSetupError::CreateTopic { topic, reason: code.to_string() }),
        }
    }
    Ok(())
}
