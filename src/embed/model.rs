//! The ONNX Runtime embedder: loads the runtime library and model that
//! `models/fetch` placed, and turns image bytes into pooled, L2-normalised
//! CNN features.

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, OnceLock};

use image::RgbImage;
use ort::session::Session;
use ort::session::builder::GraphOptimizationLevel;
use ort::value::TensorRef;
use rayon::prelude::*;
use serde::Deserialize;

use super::preprocess::{self, InputSpec};
use super::{EmbedError, Embedder, l2_normalise};
use crate::config::GraphOptimization;

/// The model facts `models/manifest.toml` records (`[model]` and `[preprocess]`).
#[derive(Debug, Clone)]
pub struct ModelSpec {
    /// Embedding-space id written on every vector and list.
    pub id: String,
    /// Input tensor name.
    pub input_name: String,
    /// Output tensor with pooled features.
    pub output_features: String,
    /// Square input side.
    pub input_size: u32,
    /// Per-channel mean (after scaling to [0, 1]).
    pub mean: [f32; 3],
    /// Per-channel std.
    pub std: [f32; 3],
    /// Feature length.
    pub feature_dim: usize,
}

#[derive(Deserialize)]
struct Manifest {
    model: ManifestModel,
    preprocess: ManifestPreprocess,
}

#[derive(Deserialize)]
struct ManifestModel {
    id: String,
    input_name: String,
    output_features: String,
    feature_dim: usize,
}

#[derive(Deserialize)]
struct ManifestPreprocess {
    resize: [u32; 2],
    mean: [f32; 3],
    std: [f32; 3],
}

impl ModelSpec {
    /// Read the model facts from a manifest file.
    pub fn from_manifest(path: &Path) -> Result<Self, EmbedError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| EmbedError::Load(format!("{}: {e}; run models/fetch first", path.display())))?;
        let m: Manifest = toml::from_str(&text).map_err(|e| EmbedError::Load(format!("{}: {e}", path.display())))?;
        let [w, h] = m.preprocess.resize;
        if w != h {
            return Err(EmbedError::Load(format!("{}: only square inputs are supported, got {w}x{h}", path.display())));
        }
        Ok(Self {
            id: m.model.id,
            input_name: m.model.input_name,
            output_features: m.model.output_features,
            input_size: w,
            mean: m.preprocess.mean,
            std: m.preprocess.std,
            feature_dim: m.model.feature_dim,
        })
    }

    /// Preprocessing parameters.
    pub fn input_spec(&self) -> InputSpec {
        InputSpec { size: self.input_size, mean: self.mean, std: self.std }
    }
}

/// ONNX Runtime allows one environment per process, ever: keep it here.
static ORT_ENV: OnceLock<Result<ort::environment::Environment, String>> = OnceLock::new();

fn environment(library: &Path) -> Result<ort::environment::Environment, EmbedError> {
    ORT_ENV
        .get_or_init(|| {
            ort::init_from(library)
                .map_err(|e| format!("cannot load ONNX Runtime from {}: {e}; run models/fetch", library.display()))?
                .with_name("adrec")
                .build()
                .map_err(|e| e.to_string())
        })
        .clone()
        .map_err(EmbedError::Load)
}

/// How the ONNX Runtime sessions are set up (from `[model]` in the config).
#[derive(Debug, Clone, PartialEq)]
pub struct SessionOptions {
    /// Threads one inference call may use.
    pub intra_threads: usize,
    /// Sessions that may run at the same time (at least 1).
    pub sessions: usize,
    /// Graph optimisation level.
    pub optimization: GraphOptimization,
}

impl Default for SessionOptions {
    fn default() -> Self {
        Self { intra_threads: 2, sessions: 1, optimization: GraphOptimization::All }
    }
}

fn ort_level(level: GraphOptimization) -> GraphOptimizationLevel {
    match level {
        GraphOptimization::Disable => GraphOptimizationLevel::Disable,
        GraphOptimization::Basic => GraphOptimizationLevel::Level1,
        GraphOptimization::Extended => GraphOptimizationLevel::Level2,
        GraphOptimization::Layout => GraphOptimizationLevel::Level3,
        GraphOptimization::All => GraphOptimizationLevel::All,
    }
}

/// Embeds images with an ONNX model via ONNX Runtime, on a small pool of
/// sessions (a session runs one call at a time; several let calls overlap).
pub struct OrtEmbedder {
    sessions: Vec<Mutex<Session>>,
    /// Round-robin start for picking a session.
    next: AtomicUsize,
    spec: ModelSpec,
    max_side: u32,
}

impl OrtEmbedder {
    /// Load the runtime library and the model into `options.sessions` sessions.
    pub fn load(
        library: &Path,
        model: &Path,
        spec: ModelSpec,
        options: &SessionOptions,
        max_side: u32,
    ) -> Result<Self, EmbedError> {
        if !model.exists() {
            return Err(EmbedError::Load(format!("{} is missing; run models/fetch", model.display())));
        }
        let env = environment(library)?;
        let mut sessions = Vec::new();
        for _ in 0..options.sessions.max(1) {
            let session = Session::builder(&env)
                .and_then(|b| Ok(b.with_optimization_level(ort_level(options.optimization))?))
                .and_then(|b| Ok(b.with_intra_threads(options.intra_threads.max(1))?))
                .and_then(|mut b| b.commit_from_file(model))
                .map_err(|e| EmbedError::Load(format!("{}: {e}", model.display())))?;
            for (name, outlets) in [(&spec.input_name, session.inputs()), (&spec.output_features, session.outputs())] {
                if !outlets.iter().any(|o| o.name() == name.as_str()) {
                    return Err(EmbedError::Load(format!(
                        "model has no tensor named `{name}`; manifest and model disagree"
                    )));
                }
            }
            sessions.push(Mutex::new(session));
        }
        Ok(Self { sessions, next: AtomicUsize::new(0), spec, max_side })
    }

    /// Sessions in the pool.
    pub fn session_count(&self) -> usize {
        self.sessions.len()
    }

    /// The model facts this embedder was loaded with.
    pub fn spec(&self) -> &ModelSpec {
        &self.spec
    }

    /// A free session if there is one, else wait for the next in turn.
    fn session(&self) -> Result<MutexGuard<'_, Session>, EmbedError> {
        let n = self.sessions.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed) % n;
        for i in 0..n {
            if let Ok(guard) = self.sessions[(start + i) % n].try_lock() {
                return Ok(guard);
            }
        }
        self.sessions[start].lock().map_err(|_| EmbedError::Runtime("session lock poisoned".into()))
    }

    /// Run the model on `n` prepared CHW images laid out back to back;
    /// returns L2-normalised features, one row per image.
    pub fn run_tensor(&self, n: usize, data: &[f32]) -> Result<Vec<Vec<f32>>, EmbedError> {
        let s = self.spec.input_size as usize;
        let input = TensorRef::from_array_view(([n, 3, s, s], data)).map_err(|e| EmbedError::Runtime(e.to_string()))?;
        let mut session = self.session()?;
        let outputs = session
            .run(ort::inputs![self.spec.input_name.as_str() => input])
            .map_err(|e| EmbedError::Runtime(e.to_string()))?;
        let (_, feats) = outputs[self.spec.output_features.as_str()]
            .try_extract_tensor::<f32>()
            .map_err(|e| EmbedError::Runtime(e.to_string()))?;
        let dim = self.spec.feature_dim;
        if feats.len() != n * dim {
            return Err(EmbedError::Runtime(format!("expected {n}×{dim} features, got {}", feats.len())));
        }
        Ok(feats
            .chunks_exact(dim)
            .map(|row| {
                let mut v = row.to_vec();
                l2_normalise(&mut v);
                v
            })
            .collect())
    }

    /// Preprocess `images` in parallel (rayon), each straight into its slot
    /// of one batch tensor. Returns the tensor holding the images that
    /// prepared, back to back, and each input's outcome.
    pub fn prepare_batch(&self, images: &[&[u8]]) -> (Vec<f32>, Vec<Result<(), EmbedError>>) {
        let spec = self.spec.input_spec();
        self.prepare_with(images, |bytes, slot| preprocess::prepare_into(bytes, &spec, self.max_side, slot))
    }

    /// [`OrtEmbedder::prepare_batch`] with each slot prepared by `prepare`,
    /// whose output is kept per input.
    fn prepare_with<T: Send>(
        &self,
        images: &[&[u8]],
        prepare: impl Fn(&[u8], &mut [f32]) -> Result<T, EmbedError> + Sync,
    ) -> (Vec<f32>, Vec<Result<T, EmbedError>>) {
        let per = preprocess::input_len(&self.spec.input_spec());
        let mut tensor = vec![0.0f32; images.len() * per];
        let outcomes: Vec<Result<T, EmbedError>> =
            tensor.par_chunks_mut(per).zip(images.par_iter()).map(|(slot, bytes)| prepare(bytes, slot)).collect();
        // Close the gaps left by images that failed (rare): the model only sees good rows.
        let mut kept = 0;
        for (i, outcome) in outcomes.iter().enumerate() {
            if outcome.is_ok() {
                if kept != i {
                    tensor.copy_within(i * per..(i + 1) * per, kept * per);
                }
                kept += 1;
            }
        }
        tensor.truncate(kept * per);
        (tensor, outcomes)
    }

    /// One model call on the prepared rows of `tensor`; each input's vector
    /// (with what its preparation kept) or error, in input order.
    fn run_prepared<T>(
        &self,
        tensor: &[f32],
        outcomes: Vec<Result<T, EmbedError>>,
    ) -> Vec<Result<(Vec<f32>, T), EmbedError>> {
        let good = outcomes.iter().filter(|o| o.is_ok()).count();
        let mut rows = match good {
            0 => Ok(Vec::new()),
            n => self.run_tensor(n, tensor),
        }
        .map(Vec::into_iter);
        outcomes
            .into_iter()
            .map(|outcome| {
                let kept = outcome?;
                match &mut rows {
                    Ok(rows) => rows
                        .next()
                        .map(|row| (row, kept))
                        .ok_or_else(|| EmbedError::Runtime("model returned too few rows".into())),
                    // One failed call fails every image in it; the error is transient.
                    Err(e) => Err(e.clone()),
                }
            })
            .collect()
    }
}

impl Embedder for OrtEmbedder {
    fn model_id(&self) -> &str {
        &self.spec.id
    }

    fn dim(&self) -> usize {
        self.spec.feature_dim
    }

    fn embed(&self, image_bytes: &[u8]) -> Result<Vec<f32>, EmbedError> {
        let tensor = preprocess::prepare(image_bytes, &self.spec.input_spec(), self.max_side)?;
        self.run_tensor(1, &tensor)?.pop().ok_or_else(|| EmbedError::Runtime("model returned no rows".into()))
    }

    fn embed_batch(&self, images: &[&[u8]]) -> Vec<Result<Vec<f32>, EmbedError>> {
        let (tensor, outcomes) = self.prepare_batch(images);
        self.run_prepared(&tensor, outcomes).into_iter().map(|r| r.map(|(v, ())| v)).collect()
    }

    fn embed_batch_with_pixels(
        &self,
        images: &[&[u8]],
        side: u32,
    ) -> Option<Vec<Result<(Vec<f32>, RgbImage), EmbedError>>> {
        let spec = self.spec.input_spec();
        let (tensor, outcomes) = self.prepare_with(images, |bytes, slot| {
            preprocess::prepare_into_keeping(bytes, &spec, self.max_side, slot, side)
        });
        Some(self.run_prepared(&tensor, outcomes))
    }
}
