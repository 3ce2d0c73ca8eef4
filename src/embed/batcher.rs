//! Micro-batching across callers: images submitted concurrently (by the
//! pipeline's in-flight records, or a bulk job) are collected into one batch
//! of up to `max_batch` images, or whatever arrived within `max_wait` of the
//! first one, and embedded with one model call on the blocking pool. Each
//! caller gets its own result back on its own oneshot channel, so results
//! can never be handed to the wrong caller, whatever the batch composition.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{Semaphore, mpsc, oneshot};

use super::{EmbedError, Embedder};
use crate::telemetry;

/// How batches are formed.
#[derive(Debug, Clone, PartialEq)]
pub struct BatchConfig {
    /// Most images per model call (B).
    pub max_batch: usize,
    /// Longest the first image of a batch waits for company (T).
    pub max_wait: Duration,
    /// Batches embedding at once: one per session, plus one preprocessing
    /// while the sessions run. Bounds memory and CPU.
    pub max_concurrent: usize,
}

impl BatchConfig {
    /// Batching from `[model]`: B, T, and one batch per session plus one.
    pub fn from_model(model: &crate::config::ModelConfig) -> Self {
        Self {
            max_batch: model.batch_size.max(1),
            max_wait: Duration::from_millis(model.batch_wait_ms),
            max_concurrent: model.session_count() + 1,
        }
    }
}

/// One caller's image and where its result goes.
struct Job {
    bytes: Vec<u8>,
    reply: oneshot::Sender<Result<Vec<f32>, EmbedError>>,
}

/// What the collector task needs; taken when it is started.
struct Idle {
    jobs: mpsc::Receiver<Job>,
    embedder: Arc<dyn Embedder>,
    config: BatchConfig,
}

/// Handle for submitting images to the micro-batcher (cheap to clone). The
/// collector task starts on the first [`Batcher::embed`], on that caller's
/// runtime, and stops when every handle is gone.
#[derive(Clone)]
pub struct Batcher {
    jobs: mpsc::Sender<Job>,
    idle: Arc<Mutex<Option<Idle>>>,
}

impl Batcher {
    /// A batcher in front of `embedder` (nothing runs until the first image).
    pub fn new(embedder: Arc<dyn Embedder>, config: BatchConfig) -> Self {
        let max_batch = config.max_batch.max(1);
        let config = BatchConfig { max_batch, max_concurrent: config.max_concurrent.max(1), ..config };
        // Room for the batches being formed and run; beyond that callers wait (backpressure).
        let (tx, rx) = mpsc::channel(max_batch * (config.max_concurrent + 1));
        let idle = Idle { jobs: rx, embedder, config };
        Self { jobs: tx, idle: Arc::new(Mutex::new(Some(idle))) }
    }

    /// Embed one encoded image as part of the next batch.
    pub async fn embed(&self, bytes: Vec<u8>) -> Result<Vec<f32>, EmbedError> {
        self.start();
        let (reply, result) = oneshot::channel();
        self.jobs
            .send(Job { bytes, reply })
            .await
            .map_err(|_| EmbedError::Runtime("the embedding batcher has stopped".into()))?;
        // A dropped reply means the batch's thread died (a panic): ours, not the image's.
        result.await.map_err(|_| EmbedError::Runtime("the embedding batch failed before answering".into()))?
    }

    fn start(&self) {
        let Ok(mut idle) = self.idle.lock() else { return };
        if let Some(idle) = idle.take() {
            tokio::spawn(collect(idle));
        }
    }
}

/// Form batches until every handle is dropped.
async fn collect(idle: Idle) {
    let Idle { mut jobs, embedder, config } = idle;
    let permits = Arc::new(Semaphore::new(config.max_concurrent));
    while let Some(first) = jobs.recv().await {
        let mut batch = vec![first];
        let deadline = tokio::time::Instant::now() + config.max_wait;
        while batch.len() < config.max_batch {
            match tokio::time::timeout_at(deadline, jobs.recv()).await {
                Ok(Some(job)) => batch.push(job),
                // Waited long enough, or no handle is left.
                Ok(None) | Err(_) => break,
            }
        }
        let Ok(permit) = permits.clone().acquire_owned().await else { break };
        // While every slot was busy more images may have queued: top the batch up.
        while batch.len() < config.max_batch {
            match jobs.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let embedder = embedder.clone();
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            run_batch(embedder.as_ref(), batch);
        });
    }
}

/// One model call for the batch; answer every caller, in its own slot.
fn run_batch(embedder: &dyn Embedder, batch: Vec<Job>) {
    let started = Instant::now();
    let (images, replies): (Vec<Vec<u8>>, Vec<_>) = batch.into_iter().map(|j| (j.bytes, j.reply)).unzip();
    let refs: Vec<&[u8]> = images.iter().map(Vec::as_slice).collect();
    let mut results = embedder.embed_batch(&refs);
    telemetry::embed_batch(replies.len(), started.elapsed());
    if results.len() != replies.len() {
        let e = EmbedError::Runtime(format!("embedder answered {} of {} images", results.len(), replies.len()));
        results = replies.iter().map(|_| Err(e.clone())).collect();
    }
    for (reply, result) in replies.into_iter().zip(results) {
        // The caller may have gone (shutdown); its result is simply dropped.
        let _ = reply.send(result);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};

    /// Encodes each image's bytes into its "vector", and records batch sizes.
    #[derive(Default)]
    struct Echo {
        batches: Mutex<Vec<usize>>,
        short_answer: AtomicBool,
    }

    impl Embedder for Echo {
        fn model_id(&self) -> &str {
            "echo"
        }
        fn dim(&self) -> usize {
            2
        }
        fn embed(&self, bytes: &[u8]) -> Result<Vec<f32>, EmbedError> {
            match bytes {
                [] => Err(EmbedError::Decode("empty".into())),
                [0xff, ..] => panic!("the embedder crashed"),
                _ => Ok(vec![bytes[0] as f32, bytes.len() as f32]),
            }
        }
        fn embed_batch(&self, images: &[&[u8]]) -> Vec<Result<Vec<f32>, EmbedError>> {
            self.batches.lock().expect("lock").push(images.len());
            let mut out: Vec<_> = images.iter().map(|b| self.embed(b)).collect();
            if self.short_answer.load(Ordering::Relaxed) {
                out.pop();
            }
            out
        }
    }

    fn batcher(echo: &Arc<Echo>, max_batch: usize, wait_ms: u64) -> Batcher {
        let config = BatchConfig { max_batch, max_wait: Duration::from_millis(wait_ms), max_concurrent: 2 };
        Batcher::new(echo.clone(), config)
    }

    /// Image `i` of a test: distinct first byte and length.
    fn image(i: usize) -> Vec<u8> {
        vec![(i % 200) as u8 + 1; i + 1]
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn every_caller_gets_its_own_result_and_batches_respect_the_limit() {
        let echo = Arc::new(Echo::default());
        let b = batcher(&echo, 8, 20);
        let calls = (0..100).map(|i| {
            let b = b.clone();
            async move { (i, b.embed(image(i)).await) }
        });
        let results = futures::future::join_all(calls).await;
        for (i, result) in results {
            let want = vec![((i % 200) + 1) as f32, (i + 1) as f32];
            assert_eq!(result.expect("embedded"), want, "caller {i} got someone else's vector");
        }
        let batches = echo.batches.lock().expect("lock").clone();
        assert_eq!(batches.iter().sum::<usize>(), 100, "every image embedded exactly once: {batches:?}");
        assert!(batches.iter().all(|&n| (1..=8).contains(&n)), "{batches:?}");
        assert!(batches.iter().any(|&n| n > 1), "concurrent callers share model calls: {batches:?}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_full_batch_runs_without_waiting_for_the_deadline() {
        let echo = Arc::new(Echo::default());
        // T is an hour: the batch can only run because it reached B.
        let b = batcher(&echo, 4, 3_600_000);
        let calls = (0..4).map(|i| {
            let b = b.clone();
            async move { b.embed(image(i)).await }
        });
        let results = futures::future::join_all(calls).await;
        assert!(results.iter().all(Result::is_ok));
        assert_eq!(*echo.batches.lock().expect("lock"), vec![4]);
    }

    #[tokio::test]
    async fn a_lone_image_runs_after_the_wait() {
        let echo = Arc::new(Echo::default());
        let b = batcher(&echo, 16, 1);
        assert_eq!(b.embed(image(3)).await.expect("embedded"), vec![4.0, 4.0]);
        assert_eq!(*echo.batches.lock().expect("lock"), vec![1]);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_bad_image_fails_only_its_own_slot() {
        let echo = Arc::new(Echo::default());
        let b = batcher(&echo, 3, 3_600_000);
        let (x, bad, y) = tokio::join!(b.embed(image(1)), b.embed(Vec::new()), b.embed(image(2)));
        assert_eq!(x.expect("x"), vec![2.0, 2.0]);
        assert!(matches!(bad, Err(EmbedError::Decode(_))), "{bad:?}");
        assert_eq!(y.expect("y"), vec![3.0, 3.0]);
        assert_eq!(*echo.batches.lock().expect("lock"), vec![3]);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_miscounted_or_crashed_batch_is_a_transient_error_for_its_callers() {
        let echo = Arc::new(Echo::default());
        echo.short_answer.store(true, Ordering::Relaxed);
        let b = batcher(&echo, 2, 3_600_000);
        let (x, y) = tokio::join!(b.embed(image(1)), b.embed(image(2)));
        for r in [x, y] {
            let e = r.expect_err("a short answer must not be handed out");
            assert!(e.is_transient() && e.to_string().contains("answered 1 of 2"), "{e}");
        }
        echo.short_answer.store(false, Ordering::Relaxed);
        let b = batcher(&echo, 2, 1);
        let crashed = b.embed(vec![0xff]).await.expect_err("the batch panicked");
        assert!(crashed.is_transient(), "{crashed}");
        // The batcher outlives a crashed batch.
        assert_eq!(b.embed(image(5)).await.expect("embedded"), vec![6.0, 6.0]);
    }
}
