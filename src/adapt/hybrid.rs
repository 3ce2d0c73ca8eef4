//! An [`Embedder`] that appends a weighted foreground colour histogram to an
//! inner model's features: the raw vectors of a colour-aware space.

use std::sync::Arc;

use crate::embed::preprocess::{decode, resize};
use crate::embed::{EmbedError, Embedder, l2_normalise};

/// Side the colour histogram is taken at (the model's input size), so a
/// thumbnail and its full-size twin give the same histogram.
const COLOUR_SIDE: u32 = 224;

/// Model features (L2) ⊕ `weight` × colour histogram (L2), L2-normalised.
pub struct ColourAugmented {
    inner: Arc<dyn Embedder>,
    bins: u32,
    weight: f32,
    max_side: u32,
    id: String,
}

impl ColourAugmented {
    /// Wrap `inner`; `max_side` bounds the decode like the model's own.
    pub fn new(inner: Arc<dyn Embedder>, bins: u32, weight: f32, max_side: u32) -> Self {
        let id = super::space::colour_model_id(inner.model_id(), bins, weight);
        Self { inner, bins, weight, max_side, id }
    }

    /// Length of the model-feature head of every vector (the rest is colour).
    pub fn head_dim(&self) -> usize {
        self.inner.dim()
    }
}

impl Embedder for ColourAugmented {
    fn model_id(&self) -> &str {
        &self.id
    }

    fn dim(&self) -> usize {
        self.inner.dim() + (self.bins as usize).pow(3)
    }

    fn embed(&self, image_bytes: &[u8]) -> Result<Vec<f32>, EmbedError> {
        let mut v = self.inner.embed(image_bytes)?;
        // A second decode: the single-image Embedder API does not expose the
        // model's decoded pixels (about 5% of the embedding cost at 224 px).
        let small = resize(&decode(image_bytes, self.max_side)?, COLOUR_SIDE)?;
        v.extend(super::colour::histogram(&small, self.bins).into_iter().map(|x| x * self.weight));
        l2_normalise(&mut v);
        Ok(v)
    }
}
