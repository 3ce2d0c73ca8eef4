//! Image embedding: the [`Embedder`] seam, its errors, and the ONNX Runtime
//! implementation.

pub mod batcher;
pub mod model;
pub mod preprocess;

/// Why an image could not be embedded.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum EmbedError {
    /// The bytes are not a decodable image (corrupt, truncated, unknown format).
    #[error("cannot decode image: {0}")]
    Decode(String),
    /// The image's dimensions exceed fetch.max_image_side.
    #[error("image too large to decode: {0} (fetch.max_image_side)")]
    TooLarge(String),
    /// ONNX Runtime failed while running the model.
    #[error("model inference failed: {0}")]
    Runtime(String),
    /// The model or runtime could not be loaded.
    #[error("cannot load model: {0}")]
    Load(String),
}

impl EmbedError {
    /// Whether retrying may help. Bad images never get better; an inference
    /// failure is ours, not the event's, so it must not send events to the DLQ.
    pub fn is_transient(&self) -> bool {
        matches!(self, EmbedError::Runtime(_))
    }
}

/// An image's embedding with the decoded, resized pixels it came from.
pub type EmbeddedWithPixels = (Vec<f32>, image::RgbImage);

/// Turns image bytes into L2-normalised vectors of one embedding space.
pub trait Embedder: Send + Sync + 'static {
    /// Identifies the embedding space (written on every vector and list).
    fn model_id(&self) -> &str;
    /// Vector length.
    fn dim(&self) -> usize;
    /// Embed one encoded image (blocking: call from a blocking thread).
    fn embed(&self, image_bytes: &[u8]) -> Result<Vec<f32>, EmbedError>;
    /// Embed several encoded images (blocking), one result per input, in
    /// input order; one bad image fails only its own slot. The default runs
    /// [`Embedder::embed`] on each; the ONNX embedder makes one model call.
    fn embed_batch(&self, images: &[&[u8]]) -> Vec<Result<Vec<f32>, EmbedError>> {
        images.iter().map(|bytes| self.embed(bytes)).collect()
    }
    /// [`Embedder::embed_batch`] that also hands back each image as this
    /// embedder decoded it, at `side`×`side` and EXIF-oriented, so features
    /// computed beside the model's need no second decode. `None` (the
    /// default) if it cannot: the caller then decodes the images itself.
    fn embed_batch_with_pixels(
        &self,
        _images: &[&[u8]],
        _side: u32,
    ) -> Option<Vec<Result<EmbeddedWithPixels, EmbedError>>> {
        None
    }
}

/// Scale `v` to unit length (left as is when all zeros).
pub fn l2_normalise(v: &mut [f32]) {
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm > 0.0 {
        v.iter_mut().for_each(|x| *x /= norm);
    }
}
