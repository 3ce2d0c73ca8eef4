//! Logging setup: `tracing` to stderr, human-readable or JSON.

use tracing_subscriber::EnvFilter;

use crate::config::LogConfig;

/// Install the global subscriber (`RUST_LOG` overrides `log.level`).
pub fn init(config: &LogConfig) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(&config.level));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    // A second init (tests) keeps the first subscriber.
    let _ = if config.json { builder.json().try_init() } else { builder.try_init() };
}
