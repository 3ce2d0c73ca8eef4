//! An [`Embedder`] that appends a weighted foreground colour histogram to an
//! inner model's features: the raw vectors of a colour-aware space.

use std::sync::Arc;

use image::RgbImage;
use rayon::prelude::*;

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

    /// Append the weighted histogram of `pixels` (at [`COLOUR_SIDE`]) to model features.
    fn combine(&self, mut features: Vec<f32>, pixels: &RgbImage) -> Vec<f32> {
        features.extend(super::colour::histogram(pixels, self.bins).into_iter().map(|x| x * self.weight));
        l2_normalise(&mut features);
        features
    }

    /// The histogram's pixels from a decode of our own, for an inner
    /// embedder that does not hand back its decoded images.
    fn own_pixels(&self, image_bytes: &[u8]) -> Result<RgbImage, EmbedError> {
        let full = decode(image_bytes, self.max_side)?;
        resize(&full, COLOUR_SIDE)
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
        // A batch of one: the same pixels, and so the same vector, as in a larger batch.
        self.embed_batch(&[image_bytes])
            .pop()
            .unwrap_or_else(|| Err(EmbedError::Runtime("batch of one returned nothing".into())))
    }

    /// Each image is decoded once: the inner model hands back the pixels it
    /// ran on (one model call for the batch) and the histogram is taken from
    /// them; histograms are computed in parallel.
    fn embed_batch(&self, images: &[&[u8]]) -> Vec<Result<Vec<f32>, EmbedError>> {
        if let Some(results) = self.inner.embed_batch_with_pixels(images, COLOUR_SIDE) {
            return results
                .into_par_iter()
                .map(|r| r.map(|(features, pixels)| self.combine(features, &pixels)))
                .collect();
        }
        // An inner embedder that decodes out of our sight: decode a second time for the colour.
        let features = self.inner.embed_batch(images);
        features
            .into_par_iter()
            .zip(images.par_iter())
            .map(|(features, bytes)| Ok(self.combine(features?, &self.own_pixels(bytes)?)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A model that does not share its pixels: features from the byte
    /// length, rejecting non-images; counts its batch calls.
    struct Opaque(AtomicUsize);

    impl Embedder for Opaque {
        fn model_id(&self) -> &str {
            "opaque"
        }
        fn dim(&self) -> usize {
            2
        }
        fn embed(&self, bytes: &[u8]) -> Result<Vec<f32>, EmbedError> {
            decode(bytes, 1000)?;
            Ok(vec![1.0, bytes.len() as f32 / 1000.0])
        }
        fn embed_batch(&self, images: &[&[u8]]) -> Vec<Result<Vec<f32>, EmbedError>> {
            self.0.fetch_add(1, Ordering::Relaxed);
            images.iter().map(|b| self.embed(b)).collect()
        }
    }

    fn png(colour: [u8; 3]) -> Vec<u8> {
        let mut buf = std::io::Cursor::new(Vec::new());
        image::DynamicImage::ImageRgb8(RgbImage::from_pixel(40, 30, image::Rgb(colour)))
            .write_to(&mut buf, image::ImageFormat::Png)
            .expect("encode");
        buf.into_inner()
    }

    #[test]
    fn without_shared_pixels_the_batch_is_one_inner_call_and_equals_single_calls() {
        let inner = Arc::new(Opaque(AtomicUsize::new(0)));
        let e = ColourAugmented::new(inner.clone(), 4, 1.0, 1000);
        let images = [png([200, 20, 20]), b"junk".to_vec(), png([20, 20, 200])];
        let refs: Vec<&[u8]> = images.iter().map(Vec::as_slice).collect();
        let batched = e.embed_batch(&refs);
        assert_eq!(inner.0.load(Ordering::Relaxed), 1, "one inner call for the batch");
        assert!(matches!(batched[1], Err(EmbedError::Decode(_))), "a bad image fails its own slot only");
        for (bytes, got) in images.iter().zip(&batched).filter(|(_, got)| got.is_ok()) {
            let single = e.embed(bytes).expect("single");
            assert_eq!(got.as_ref().expect("ok"), &single);
            assert_eq!(single.len(), e.dim());
        }
        let red = batched[0].as_ref().expect("red");
        let blue = batched[2].as_ref().expect("blue");
        assert_ne!(red[2..], blue[2..], "the colour parts differ");
    }
}
