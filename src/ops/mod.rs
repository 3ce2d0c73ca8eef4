//! Operator commands over the stored catalogue: `backfill`, `similar`,
//! `eval`, `refit` and `catalog-from-dir`.

pub mod backfill;
pub mod catalog;
pub mod eval;
pub mod similar;

use std::sync::Arc;

use crate::adapt::AdaptError;
use crate::config::{Backend, Config};
use crate::sink::ListSink;
use crate::sink::files::FileSink;
use crate::sink::kafka::KafkaSink;
use crate::store::StoreError;

/// Errors of the operator commands.
#[derive(Debug, thiserror::Error)]
pub enum OpsError {
    /// Reading or writing a local file failed.
    #[error("{path}: {reason}")]
    Io {
        /// The file.
        path: String,
        /// What went wrong.
        reason: String,
    },
    /// The space, transform or model facts are unusable.
    #[error(transparent)]
    Adapt(#[from] AdaptError),
    /// The vector store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The list sink or the Recommender failed.
    #[error("lists: {0}")]
    Lists(String),
    /// The embedder does not produce the configured space.
    #[error("embedder {got} does not produce the configured space {expected}")]
    Mismatch {
        /// Configured raw space.
        expected: String,
        /// Embedder id.
        got: String,
    },
}

/// `OpsError::Io` for `path`.
pub(crate) fn io_error(path: &std::path::Path) -> impl Fn(std::io::Error) -> OpsError + '_ {
    move |e| OpsError::Io { path: path.display().to_string(), reason: e.to_string() }
}

/// The configured list sink alone (no source: an operator command must not
/// join the worker's consumer group).
pub fn open_sink(config: &Config) -> Result<Arc<dyn ListSink>, OpsError> {
    Ok(match config.sink.kind {
        Backend::Files => Arc::new(FileSink::open(&config.output_dir()).map_err(|e| OpsError::Lists(e.to_string()))?),
        Backend::Kafka => Arc::new(KafkaSink::new(&config.kafka).map_err(|e| OpsError::Lists(e.to_string()))?),
    })
}
