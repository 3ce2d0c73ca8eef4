//! Catalogue-adapted embedding: colour-augmented raw vectors, a whitening
//! transform fitted on the stored catalogue (never on labels), the embedding
//! spaces they define on disk, and `refit`, which moves a catalogue and its
//! ads into a newly fitted space and republishes their lists.

pub mod colour;
pub mod cost;
pub mod hybrid;
pub mod refit;
pub mod space;
pub mod transform;

use std::sync::Arc;

use crate::config::Config;
use crate::embed::Embedder;
use crate::store::StoreError;

pub use space::{Entity, RawSpec, Space, SpaceStores, SpaceWriter, current_space, open_space, raw_spec};
pub use transform::{FitParams, Transform};

/// Errors of the adaptation layer.
#[derive(Debug, thiserror::Error)]
pub enum AdaptError {
    /// A vector of the wrong length for this space.
    #[error("vector has {got} values, the space expects {expected}")]
    Dimension {
        /// Expected length.
        expected: usize,
        /// Actual length.
        got: usize,
    },
    /// Fitting failed.
    #[error("cannot fit the transform: {0}")]
    Fit(String),
    /// Reading or writing an artefact failed.
    #[error("space artefact: {0}")]
    Io(String),
    /// The manifest could not be read.
    #[error("model manifest: {0}")]
    Model(String),
    /// The vector store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Publishing lists failed.
    #[error("republishing lists: {0}")]
    Recommend(String),
    /// The stored catalogue is inconsistent (e.g. a raw vector is missing).
    #[error("stored catalogue: {0}")]
    Catalogue(String),
}

/// The configured embedder's raw space: `base` plus the colour histogram when enabled.
pub fn configured_embedder(config: &Config, base: Arc<dyn Embedder>) -> Arc<dyn Embedder> {
    let a = &config.adapt;
    if a.colour_weight > 0.0 {
        Arc::new(hybrid::ColourAugmented::new(base, a.colour_bins, a.colour_weight, config.fetch.max_image_side))
    } else {
        base
    }
}
