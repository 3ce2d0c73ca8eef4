//! `adrec bench embed`: embedding throughput on a folder of images, in one
//! run, same model and thread budget throughout:
//!
//! - **model only**: ONNX Runtime on tensors prepared beforehand (the limit);
//! - **pipeline**: read bytes → decode → resize → normalise → ONNX Runtime →
//!   L2, through the micro-batcher and session pool the worker uses;
//! - **python**: `benches/embed_python.py` (Pillow + numpy + onnxruntime)
//!   doing the same work, in a venv with the pinned `benches/requirements.txt`.
//!
//! The Python vectors are compared with ours image by image. Prints one
//! `key=value` per line; progress goes to stderr.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use futures::StreamExt;

use crate::config::ModelConfig;
use crate::embed::EmbedError;
use crate::embed::batcher::{BatchConfig, Batcher};
use crate::embed::model::{ModelSpec, OrtEmbedder, SessionOptions};

/// What to measure, and with what.
#[derive(Debug, Clone)]
pub struct EmbedBenchParams {
    /// Folder of JPEG/PNG images (not recursive).
    pub images: PathBuf,
    /// Use at most this many images (sorted by name); `None` = all.
    pub max_images: Option<usize>,
    /// Threads ONNX Runtime may use in total (Python gets the same).
    pub threads: usize,
    /// Sessions the threads are split over (intra-op threads = threads / sessions).
    pub sessions: usize,
    /// Images per model call (Python uses the same batches).
    pub batch: usize,
    /// Model, runtime and graph optimisation (from the config).
    pub model: ModelConfig,
    /// Decoder dimension limit (`fetch.max_image_side`).
    pub max_side: u32,
    /// The Python baseline script; `requirements.txt` next to it pins its packages.
    pub script: PathBuf,
}

/// Why the benchmark could not run.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// Reading images or writing scratch files failed.
    #[error("{0}")]
    Io(String),
    /// The model could not be loaded or run.
    #[error(transparent)]
    Embed(#[from] EmbedError),
    /// The Python baseline could not be set up or failed.
    #[error("python baseline: {0}")]
    Python(String),
}

fn io(what: impl std::fmt::Display, e: std::io::Error) -> BenchError {
    BenchError::Io(format!("{what}: {e}"))
}

/// JPEG and PNG files directly in `dir`, sorted by name.
pub fn list_images(dir: &Path, max: Option<usize>) -> Result<Vec<PathBuf>, BenchError> {
    let entries = std::fs::read_dir(dir).map_err(|e| io(dir.display(), e))?;
    let mut paths: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.extension()
                .and_then(|x| x.to_str())
                .is_some_and(|x| matches!(x.to_ascii_lowercase().as_str(), "jpg" | "jpeg" | "png"))
        })
        .collect();
    paths.sort();
    paths.truncate(max.unwrap_or(usize::MAX));
    if paths.is_empty() {
        return Err(BenchError::Io(format!("no .jpg/.jpeg/.png images in {}", dir.display())));
    }
    Ok(paths)
}

/// Run the three measurements and return the `key=value` lines.
pub async fn embed(p: &EmbedBenchParams) -> Result<Vec<String>, BenchError> {
    let paths = list_images(&p.images, p.max_images)?;
    let batch = p.batch.max(1);
    let sessions = p.sessions.clamp(1, p.threads.max(1));
    let options = SessionOptions {
        intra_threads: (p.threads / sessions).max(1),
        sessions,
        optimization: p.model.graph_optimization,
    };
    let spec = ModelSpec::from_manifest(&p.model.manifest)?;
    let dim = spec.feature_dim;
    let embedder = Arc::new(OrtEmbedder::load(&p.model.ort_library, &p.model.path, spec, &options, p.max_side)?);
    eprintln!(
        "bench embed: {} images from {}, {} thread(s) = {} session(s) × {} intra-op, batch {batch}",
        paths.len(),
        p.images.display(),
        p.threads,
        options.sessions,
        options.intra_threads
    );

    let model_only = model_only_rate(embedder.clone(), &paths, batch).await?;
    eprintln!("bench embed: model only {model_only:.1} img/s");
    let (pipeline, ours) = pipeline_rate(embedder, &paths, batch, sessions).await?;
    eprintln!("bench embed: pipeline {pipeline:.1} img/s");
    let (python, theirs) = python_rate(p, &paths, batch, dim)?;
    eprintln!("bench embed: python {python:.1} img/s");

    let max_diff = ours.iter().zip(theirs.chunks_exact(dim)).map(|(a, b)| 1.0 - cosine(a, b)).fold(0.0f64, f64::max);
    Ok(vec![
        format!("embed.images={}", paths.len()),
        format!("embed.threads={}", p.threads),
        format!("embed.batch={batch}"),
        format!("embed.model_only_img_per_s={model_only:.1}"),
        format!("embed.pipeline_img_per_s={pipeline:.1}"),
        format!("embed.python_img_per_s={python:.1}"),
        format!("ratio.pipeline_over_python={:.3}", pipeline / python),
        format!("ratio.pipeline_over_model_only={:.3}", pipeline / model_only),
        format!("embed.max_cosine_diff_vs_python={max_diff:.2e}"),
    ])
}

fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let dot: f64 = a.iter().zip(b).map(|(x, y)| *x as f64 * *y as f64).sum();
    let na: f64 = a.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
    let nb: f64 = b.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
    dot / (na * nb).max(1e-12)
}

fn rate(images: usize, took: Duration) -> f64 {
    images as f64 / took.as_secs_f64().max(1e-9)
}

/// ONNX Runtime alone: every batch's tensor is prepared first (untimed),
/// then the batches run on all sessions at once.
async fn model_only_rate(embedder: Arc<OrtEmbedder>, paths: &[PathBuf], batch: usize) -> Result<f64, BenchError> {
    let paths = paths.to_vec();
    tokio::task::spawn_blocking(move || {
        let mut tensors = Vec::new();
        for chunk in paths.chunks(batch) {
            let bytes = chunk
                .iter()
                .map(|p| std::fs::read(p).map_err(|e| io(p.display(), e)))
                .collect::<Result<Vec<_>, _>>()?;
            let refs: Vec<&[u8]> = bytes.iter().map(Vec::as_slice).collect();
            let (tensor, outcomes) = embedder.prepare_batch(&refs);
            let n = outcomes.iter().filter(|o| o.is_ok()).count();
            tensors.push((n, tensor));
        }
        let workers = embedder.session_count();
        let run_all = |tensors: &[(usize, Vec<f32>)]| -> Result<(), EmbedError> {
            let next = AtomicUsize::new(0);
            std::thread::scope(|scope| {
                let handles: Vec<_> = (0..workers)
                    .map(|_| {
                        scope.spawn(|| -> Result<(), EmbedError> {
                            while let Some((n, tensor)) = tensors.get(next.fetch_add(1, Ordering::Relaxed)) {
                                embedder.run_tensor(*n, tensor)?;
                            }
                            Ok(())
                        })
                    })
                    .collect();
                handles.into_iter().try_for_each(|h| {
                    h.join().map_err(|_| EmbedError::Runtime("benchmark thread panicked".into())).and_then(|r| r)
                })
            })
        };
        // Warm-up: one batch per session, untimed.
        let warm: Vec<_> = std::iter::repeat_n(tensors[0].clone(), workers).collect();
        run_all(&warm)?;
        let started = Instant::now();
        run_all(&tensors)?;
        Ok(rate(paths.len(), started.elapsed()))
    })
    .await
    .map_err(|e| BenchError::Io(format!("model-only thread: {e}")))?
}

/// The worker's embedding path: files read concurrently, each image sent to
/// the micro-batcher, vectors back in input order.
async fn pipeline_rate(
    embedder: Arc<OrtEmbedder>,
    paths: &[PathBuf],
    batch: usize,
    sessions: usize,
) -> Result<(f64, Vec<Vec<f32>>), BenchError> {
    let config = BatchConfig { max_batch: batch, max_wait: Duration::from_millis(2), max_concurrent: sessions + 1 };
    let batcher = Batcher::new(embedder, config);
    let one = |path: PathBuf| {
        let batcher = batcher.clone();
        async move {
            let bytes = tokio::fs::read(&path).await.map_err(|e| io(path.display(), e))?;
            batcher.embed(bytes).await.map_err(BenchError::from)
        }
    };
    // Warm-up: a full batch, untimed.
    futures::stream::iter(paths.iter().take(batch).cloned()).map(one).buffered(batch).collect::<Vec<_>>().await;
    let started = Instant::now();
    let vectors: Vec<Result<Vec<f32>, BenchError>> =
        futures::stream::iter(paths.iter().cloned()).map(one).buffered(batch * (sessions + 2)).collect().await;
    let took = started.elapsed();
    let vectors = vectors.into_iter().collect::<Result<Vec<_>, _>>()?;
    Ok((rate(paths.len(), took), vectors))
}

/// Run the Python baseline on the same images; its rate and vectors.
fn python_rate(
    p: &EmbedBenchParams,
    paths: &[PathBuf],
    batch: usize,
    dim: usize,
) -> Result<(f64, Vec<f32>), BenchError> {
    let python = bench_python(&p.script.with_file_name("requirements.txt"))?;
    let scratch = std::env::temp_dir().join(format!("adrec-bench-embed-{}", std::process::id()));
    std::fs::create_dir_all(&scratch).map_err(|e| io(scratch.display(), e))?;
    let list = scratch.join("images.txt");
    let out = scratch.join("vectors.f32");
    let absolute = |p: &Path| std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf());
    let lines: String = paths.iter().map(|p| format!("{}\n", absolute(p).display())).collect();
    std::fs::write(&list, lines).map_err(|e| io(list.display(), e))?;
    eprintln!("bench embed: running {} with {}", p.script.display(), python.display());
    let output = Command::new(&python)
        .arg(&p.script)
        .arg(&p.model.manifest)
        .arg(&p.model.path)
        .arg(&list)
        .arg(&out)
        .arg(batch.to_string())
        .arg(p.threads.to_string())
        .output()
        .map_err(|e| io(python.display(), e))?;
    if !output.status.success() {
        let _ = std::fs::remove_dir_all(&scratch);
        return Err(BenchError::Python(format!(
            "{} failed ({}): {}",
            p.script.display(),
            output.status,
            String::from_utf8_lossy(&output.stderr)
        )));
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    let rate = stdout
        .lines()
        .find_map(|l| l.strip_prefix("python_img_per_s=")?.trim().parse::<f64>().ok())
        .ok_or_else(|| BenchError::Python(format!("no python_img_per_s line in: {stdout}")))?;
    let bytes = std::fs::read(&out).map_err(|e| io(out.display(), e))?;
    let _ = std::fs::remove_dir_all(&scratch);
    let vectors: Vec<f32> = bytes.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect();
    if vectors.len() != paths.len() * dim {
        return Err(BenchError::Python(format!("expected {}×{dim} floats, got {}", paths.len(), vectors.len())));
    }
    Ok((rate, vectors))
}

/// The adrec cache directory (`ADREC_CACHE_DIR`, else `~/.cache/adrec`).
fn cache_dir() -> PathBuf {
    match std::env::var_os("ADREC_CACHE_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache/adrec"),
    }
}

fn has_packages(python: &Path) -> bool {
    Command::new(python).args(["-c", "import numpy, onnxruntime, PIL"]).output().is_ok_and(|o| o.status.success())
}

/// A Python with numpy, onnxruntime and Pillow: `ADREC_BENCH_PYTHON`, else a
/// cached venv that has them (the one `models/fetch` builds has the same
/// pinned versions), else a new venv in the cache with `requirements`
/// installed from PyPI (binary wheels only).
fn bench_python(requirements: &Path) -> Result<PathBuf, BenchError> {
    if let Some(python) = std::env::var_os("ADREC_BENCH_PYTHON") {
        return Ok(PathBuf::from(python));
    }
    let cache = cache_dir();
    let own = cache.join("bench-venv");
    let mut candidates = vec![own.join("bin/python")];
    if let Ok(entries) = std::fs::read_dir(cache.join("venv")) {
        let mut venvs: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path().join("bin/python"))).collect();
        venvs.sort();
        candidates.extend(venvs);
    }
    if let Some(python) = candidates.into_iter().find(|p| p.exists() && has_packages(p)) {
        return Ok(python);
    }
    eprintln!("bench embed: creating {} with {}", own.display(), requirements.display());
    let run = |cmd: &mut Command, what: &str| -> Result<(), BenchError> {
        let out = cmd.output().map_err(|e| BenchError::Python(format!("{what}: {e}")))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(BenchError::Python(format!("{what} failed: {}", String::from_utf8_lossy(&out.stderr))))
        }
    };
    run(Command::new("python3").args(["-m", "venv"]).arg(&own), "python3 -m venv (apt-get install python3-venv?)")?;
    let python = own.join("bin/python");
    run(
        Command::new(&python)
            .args(["-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--only-binary=:all:", "-r"])
            .arg(requirements),
        "pip install -r benches/requirements.txt",
    )?;
    if !has_packages(&python) {
        return Err(BenchError::Python(format!("{} still lacks numpy/onnxruntime/Pillow", python.display())));
    }
    Ok(python)
}
