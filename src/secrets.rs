//! Secrets in the configuration: Kafka client secrets can come from files
//! or environment variables instead of the config file, and every
//! secret-looking value is redacted whenever a configuration is printed.

use std::collections::BTreeMap;

use crate::config::{Config, ConfigError, KafkaConfig};

/// What printed configurations show instead of a secret.
pub const REDACTED: &str = "<redacted>";

/// Whether a librdkafka property holds a secret (passwords, OAuth client
/// secrets, JAAS configs, inline private keys and certificates' keys).
pub fn is_secret_property(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    ["password", "secret", "jaas", "ssl.key.pem", "ssl_key", "private"].iter().any(|s| key.contains(s))
}

/// Fill `kafka.properties` from `kafka.secret_files` (property → file, its
/// content trimmed of the final newline) and `kafka.secret_env` (property →
/// environment variable). A file or variable that cannot be read fails the start.
pub fn resolve(k: &mut KafkaConfig) -> Result<(), ConfigError> {
    for (property, path) in &k.secret_files {
        let value = std::fs::read_to_string(path).map_err(|e| ConfigError::Invalid {
            key: "kafka.secret_files",
            reason: format!("\"{property}\": cannot read {}: {e}", path.display()),
        })?;
        k.properties.insert(property.clone(), value.trim_end_matches(['\r', '\n']).to_string());
    }
    for (property, var) in &k.secret_env {
        let value = std::env::var(var).map_err(|e| ConfigError::Invalid {
            key: "kafka.secret_env",
            reason: format!("\"{property}\": environment variable {var}: {e}"),
        })?;
        k.properties.insert(property.clone(), value);
    }
    Ok(())
}

fn redact_map(map: &mut BTreeMap<String, String>) {
    for (key, value) in map.iter_mut() {
        if is_secret_property(key) {
            *value = REDACTED.to_string();
        }
    }
}

/// The configuration as TOML with every secret value replaced by [`REDACTED`]
/// (what `adrec check-config` prints).
pub fn redacted_toml(config: &Config) -> String {
    let mut shown = config.clone();
    let k = &mut shown.kafka;
    redact_map(&mut k.properties);
    redact_map(&mut k.consumer_properties);
    redact_map(&mut k.producer_properties);
    shown.to_toml()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_come_from_files_and_env_and_are_never_printed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("kafka-password");
        std::fs::write(&file, "s3cret-from-file\n").expect("write");
        // SAFETY (edition 2024 `set_var`): this test is the only user of this variable name.
        unsafe { std::env::set_var("ADREC_TEST_OAUTH_SECRET", "s3cret-from-env") };
        let mut config = Config::default();
        config.kafka.secret_files.insert("sasl.password".into(), file);
        config.kafka.secret_env.insert("sasl.oauthbearer.client.secret".into(), "ADREC_TEST_OAUTH_SECRET".into());
        config.kafka.properties.insert("sasl.username".into(), "adrec".into());
        config.kafka.producer_properties.insert("ssl.key.password".into(), "inline".into());
        resolve(&mut config.kafka).expect("resolve");
        assert_eq!(config.kafka.properties["sasl.password"], "s3cret-from-file");
        assert_eq!(config.kafka.properties["sasl.oauthbearer.client.secret"], "s3cret-from-env");

        let printed = redacted_toml(&config);
        for secret in ["s3cret-from-file", "s3cret-from-env", "inline"] {
            assert!(!printed.contains(secret), "{secret} printed:\n{printed}");
        }
        assert!(printed.contains("adrec"), "non-secret values are shown");
        assert!(printed.contains(REDACTED));
    }

    #[test]
    fn a_missing_secret_fails_the_start() {
        let mut k = KafkaConfig::default();
        k.secret_env.insert("sasl.password".into(), "ADREC_TEST_NO_SUCH_VARIABLE".into());
        assert!(resolve(&mut k).is_err());
        let mut k = KafkaConfig::default();
        k.secret_files.insert("sasl.password".into(), "/nonexistent/adrec-secret".into());
        assert!(resolve(&mut k).is_err());
    }
}
