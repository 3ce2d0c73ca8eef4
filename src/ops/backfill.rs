//! `adrec backfill`: embed a whole catalogue file into the current space,
//! keeping every ad's list exact (through the Recommender), resumable.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use futures::StreamExt;
use serde_json::Value;

use super::{OpsError, io_error};
use crate::adapt::{self, Entity};
use crate::config::Config;
use crate::embed::Embedder;
use crate::events::{self, InputEvent, ProductUpsert, Stream};
use crate::fetch::Fetcher;
use crate::recommend::Recommender;
use crate::records::ProductRecord;
use crate::sink::ListSink;

/// Ids looked up per store call when checking what is already stored.
const LOOKUP_CHUNK: usize = 256;
/// Failures printed in full (the rest are only counted).
const SHOWN_FAILURES: usize = 5;

/// What a backfill did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BackfillReport {
    /// Space written.
    pub space: String,
    /// Catalogue lines read.
    pub lines: usize,
    /// Products embedded and stored now.
    pub embedded: usize,
    /// Products already stored in this space (skipped).
    pub skipped: usize,
    /// Lines that were not valid product events.
    pub invalid: usize,
    /// Images that could not be read or embedded.
    pub failed: usize,
    /// Lists published along the way.
    pub lists_published: usize,
    /// Wall time.
    pub seconds: f64,
}

impl BackfillReport {
    /// `key=value` summary lines.
    pub fn lines(&self) -> Vec<String> {
        let rate = if self.seconds > 0.0 { self.embedded as f64 / self.seconds } else { 0.0 };
        vec![
            format!("backfill.space={}", self.space),
            format!("backfill.lines={}", self.lines),
            format!("backfill.embedded={}", self.embedded),
            format!("backfill.skipped_already_stored={}", self.skipped),
            format!("backfill.invalid_lines={}", self.invalid),
            format!("backfill.failed_images={}", self.failed),
            format!("backfill.lists_published={}", self.lists_published),
            format!("backfill.seconds={:.1}", self.seconds),
            format!("backfill.img_per_s={rate:.1}"),
        ]
    }
}

/// Embed and store every product of `catalog` not yet stored in the current space.
pub async fn backfill(
    config: &Config,
    embedder: Arc<dyn Embedder>,
    sink: Arc<dyn ListSink>,
    catalog: &Path,
) -> Result<BackfillReport, OpsError> {
    let started = Instant::now();
    let raw = adapt::raw_spec(config)?;
    if raw.model_id != embedder.model_id() || raw.dim != embedder.dim() {
        return Err(OpsError::Mismatch { expected: raw.model_id, got: embedder.model_id().to_string() });
    }
    let space = adapt::current_space(config, &raw)?;
    let stores = adapt::open_space(config, &space)?;
    let writer = stores.writer();
    let mut recommender = Recommender::load(
        stores.products.clone(),
        stores.ads.clone(),
        sink,
        config.recommend.clone(),
        space.id().to_string(),
    )
    .await?;
    let mut report = BackfillReport { space: space.id().to_string(), ..Default::default() };

    let (products, invalid) = read_catalog(config, catalog)?;
    report.lines = products.len() + invalid.len();
    report.invalid = invalid.len();
    for line in invalid.iter().take(SHOWN_FAILURES) {
        eprintln!("backfill: skipping {line}");
    }
    let mut todo = Vec::with_capacity(products.len());
    for chunk in products.chunks(LOOKUP_CHUNK) {
        let ids = chunk.iter().map(|p| p.product_id.clone()).collect();
        let stored: std::collections::HashSet<String> = stores
            .products
            .retrieve(ids, false)
            .await?
            .into_iter()
            .filter_map(ProductRecord::from_point)
            .filter(|p| p.model == space.id())
            .map(|p| p.product_id)
            .collect();
        todo.extend(chunk.iter().filter(|p| !stored.contains(&p.product_id)).cloned());
    }
    report.skipped = products.len() - todo.len();

    let mut fetch_config = config.fetch.clone();
    fetch_config.allow_file_urls = true; // operator input: local catalogues are the point
    let fetcher = Arc::new(Fetcher::new(&fetch_config).map_err(|e| OpsError::Lists(format!("fetcher: {e}")))?);
    let mut progress = Progress::new(todo.len(), config.backfill.log_every_s);
    let embedded = futures::stream::iter(todo.into_iter().map(|p| {
        let (fetcher, embedder) = (fetcher.clone(), embedder.clone());
        async move {
            let result = async {
                let bytes = fetcher.fetch(&p.image_url).await.map_err(|e| e.to_string())?;
                tokio::task::spawn_blocking(move || embedder.embed(&bytes))
                    .await
                    .map_err(|e| e.to_string())?
                    .map_err(|e| e.to_string())
            }
            .await;
            (p, result)
        }
    }))
    .buffered(config.backfill.concurrency)
    .chunks(config.backfill.batch);
    futures::pin_mut!(embedded);
    while let Some(batch) = embedded.next().await {
        let attempted = batch.len();
        let mut ok = Vec::with_capacity(batch.len());
        for (p, result) in batch {
            match result {
                Ok(raw) => ok.push((p, raw)),
                Err(e) => {
                    report.failed += 1;
                    if report.failed <= SHOWN_FAILURES {
                        progress.println(&format!("backfill: {} ({}): {e}", p.product_id, p.image_url));
                    }
                }
            }
        }
        let n = ok.len();
        let records = into_records(ok, writer.as_deref(), space.id()).await?;
        stores.products.upsert(records.iter().map(ProductRecord::to_point).collect()).await?;
        for record in &records {
            report.lists_published +=
                recommender.product_upserted(record).await.map_err(|e| OpsError::Lists(e.to_string()))?;
        }
        report.embedded += n;
        progress.advance(attempted);
    }
    progress.finish();
    report.seconds = started.elapsed().as_secs_f64();
    Ok(report)
}

/// Product records in the space, keeping the raw vectors aside when the space is fitted.
async fn into_records(
    ok: Vec<(ProductUpsert, Vec<f32>)>,
    writer: Option<&adapt::SpaceWriter>,
    space_id: &str,
) -> Result<Vec<ProductRecord>, OpsError> {
    let (products, raws): (Vec<ProductUpsert>, Vec<Vec<f32>>) = ok.into_iter().unzip();
    let vectors = match writer {
        Some(w) => {
            let keyed = products.iter().map(|p| p.product_id.clone()).zip(raws).collect();
            w.adapt_batch(Entity::Product, keyed).await?
        }
        None => raws,
    };
    Ok(products
        .into_iter()
        .zip(vectors)
        .map(|(p, vector)| ProductRecord {
            product_id: p.product_id,
            vector,
            image_url: p.image_url,
            title: p.title,
            in_stock: p.in_stock,
            attributes: p.attributes,
            model: space_id.to_string(),
            updated_at: p.updated_at,
        })
        .collect())
}

/// Valid product events of the catalogue file (local paths turned into
/// `file://` URLs, relative ones resolved against the file's folder), and
/// descriptions of the invalid lines.
fn read_catalog(config: &Config, catalog: &Path) -> Result<(Vec<ProductUpsert>, Vec<String>), OpsError> {
    let text = std::fs::read_to_string(catalog).map_err(io_error(catalog))?;
    let base = catalog.parent().map(Path::to_path_buf).unwrap_or_default();
    let base = base.canonicalize().unwrap_or(base);
    let now = Utc::now();
    let (mut products, mut invalid) = (Vec::new(), Vec::new());
    for (n, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let payload = localise(line, &base);
        match events::parse_event(
            Stream::Products,
            None,
            Some(payload.as_bytes()),
            &config.events,
            config.recommend.max_k,
            now,
        ) {
            Ok(InputEvent::ProductUpserted(p)) => products.push(p),
            Ok(other) => invalid.push(format!("line {}: {} is not a product upsert", n + 1, other.type_name())),
            Err(e) => invalid.push(format!("line {}: {e}", n + 1)),
        }
    }
    Ok((products, invalid))
}

/// Rewrite a local-path `image_url` as a `file://` URL; anything else unchanged.
fn localise(line: &str, base: &Path) -> String {
    let Ok(Value::Object(mut obj)) = serde_json::from_str::<Value>(line) else { return line.to_string() };
    let Some(Value::String(url)) = obj.get("image_url") else { return line.to_string() };
    if url::Url::parse(url).is_ok_and(|u| u.scheme().len() > 1) {
        return line.to_string();
    }
    let path = PathBuf::from(url);
    let path = if path.is_absolute() { path } else { base.join(path) };
    match url::Url::from_file_path(&path) {
        Ok(u) => {
            obj.insert("image_url".into(), Value::String(u.to_string()));
            Value::Object(obj).to_string()
        }
        Err(()) => line.to_string(),
    }
}

/// A progress bar on a terminal, periodic log lines otherwise.
enum Progress {
    Bar(indicatif::ProgressBar),
    Log { total: usize, done: usize, every: Duration, last: Instant, started: Instant },
}

impl Progress {
    fn new(total: usize, every_s: u64) -> Self {
        if std::io::stderr().is_terminal() {
            let bar = indicatif::ProgressBar::new(total as u64);
            if let Ok(style) = indicatif::ProgressStyle::with_template(
                "{bar:40} {pos}/{len} images  {per_sec}  elapsed {elapsed_precise}  ETA {eta_precise}",
            ) {
                bar.set_style(style);
            }
            Progress::Bar(bar)
        } else {
            let now = Instant::now();
            Progress::Log { total, done: 0, every: Duration::from_secs(every_s.max(1)), last: now, started: now }
        }
    }

    fn advance(&mut self, n: usize) {
        match self {
            Progress::Bar(bar) => bar.inc(n as u64),
            Progress::Log { total, done, every, last, started } => {
                *done += n;
                if last.elapsed() >= *every || *done == *total {
                    *last = Instant::now();
                    let secs = started.elapsed().as_secs_f64().max(1e-9);
                    let rate = *done as f64 / secs;
                    let eta = if rate > 0.0 { (*total - *done) as f64 / rate } else { 0.0 };
                    eprintln!("backfill: {done}/{total} images, {rate:.1} img/s, ETA {eta:.0} s");
                }
            }
        }
    }

    fn println(&self, line: &str) {
        match self {
            Progress::Bar(bar) => bar.println(line),
            Progress::Log { .. } => eprintln!("{line}"),
        }
    }

    fn finish(&self) {
        if let Progress::Bar(bar) = self {
            bar.finish();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_paths_become_file_urls_and_urls_stay() {
        let base = Path::new("/data/cat");
        let line = r#"{"type":"product.upserted","product_id":"p","image_url":"images/p.jpg"}"#;
        let out: Value = serde_json::from_str(&localise(line, base)).expect("json");
        assert_eq!(out["image_url"], "file:///data/cat/images/p.jpg");
        let line = r#"{"image_url":"/abs/p.jpg"}"#;
        assert!(localise(line, base).contains("file:///abs/p.jpg"));
        let line = r#"{"image_url":"https://cdn.example/p.jpg"}"#;
        assert_eq!(localise(line, base), line);
    }
}
