//! Logging setup: `tracing` to stderr, human-readable or JSON.

use tracing_subscriber::EnvFilter;

use crate::config::LogConfig;

/// Install the global subscriber (`RUST_LOG` overrides `log.level`).
pub fn init(config: &LogConfig) {
    // The embedded Qdrant engine logs routine housekeeping at info/warn; keep it to errors
    // unless RUST_LOG asks for more.
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new(format!("qdrant_edge=error,segment=error,{}", config.level)));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    // A second init (tests) keeps the first subscriber.
    let _ = if config.json { builder.json().try_init() } else { builder.try_init() };
}
