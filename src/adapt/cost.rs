//! What the colour histogram adds to the embedding cost: the plain model
//! embedder and the colour-augmented one on the same images, interleaved.

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use crate::embed::{EmbedError, Embedder};

/// Rounds per variant; the fastest round counts (least disturbed by other load).
const ROUNDS: usize = 3;

/// Time `plain` and `adapted` over up to `limit` images of `dir`; `key=value` lines.
pub fn compare(
    plain: &Arc<dyn Embedder>,
    adapted: &Arc<dyn Embedder>,
    dir: &Path,
    limit: usize,
) -> Result<Vec<String>, EmbedError> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .map_err(|e| EmbedError::Load(format!("{}: {e}", dir.display())))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "jpg" || x == "jpeg" || x == "png"))
        .collect();
    files.sort();
    files.truncate(limit);
    let images: Vec<Vec<u8>> = files.iter().filter_map(|f| std::fs::read(f).ok()).collect();
    if images.is_empty() {
        return Err(EmbedError::Load(format!("no JPEG/PNG images in {}", dir.display())));
    }
    let time = |e: &Arc<dyn Embedder>| -> Result<f64, EmbedError> {
        let started = Instant::now();
        for bytes in &images {
            e.embed(bytes)?;
        }
        Ok(started.elapsed().as_secs_f64() * 1000.0 / images.len() as f64)
    };
    let (mut best_plain, mut best_adapted) = (f64::MAX, f64::MAX);
    for _ in 0..ROUNDS {
        best_plain = best_plain.min(time(plain)?);
        best_adapted = best_adapted.min(time(adapted)?);
    }
    Ok(vec![
        format!("cost.images={}", images.len()),
        format!("cost.plain_model={}", plain.model_id()),
        format!("cost.adapted_model={}", adapted.model_id()),
        format!("cost.plain_ms_per_img={best_plain:.2}"),
        format!("cost.adapted_ms_per_img={best_adapted:.2}"),
        format!("ratio.adapted_over_plain={:.3}", best_adapted / best_plain),
    ])
}
