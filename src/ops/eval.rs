//! `adrec eval`: the quality metric (see [`crate::quality`]) on the stored
//! catalogue of the current space.

use std::path::Path;

use super::{OpsError, io_error};
use crate::adapt;
use crate::config::Config;
use crate::quality::{self, LabelledPhoto};

/// Score the stored vectors of the current space (or, with `raw_vectors`,
/// the raw vectors they were projected from) against `labels`; `key=value` lines.
pub async fn eval(config: &Config, labels: &Path, k: usize, raw_vectors: bool) -> Result<Vec<String>, OpsError> {
    let text = std::fs::read_to_string(labels).map_err(io_error(labels))?;
    let labels: Vec<LabelledPhoto> = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .enumerate()
        .map(|(n, l)| {
            serde_json::from_str(l).map_err(|e| OpsError::Io {
                path: labels.display().to_string(),
                reason: format!("line {}: {e}", n + 1),
            })
        })
        .collect::<Result<_, _>>()?;
    let space = adapt::current_space(config, &adapt::raw_spec(config)?)?;
    let stores = adapt::open_space(config, &space)?;
    let store = match (&stores.raw_products, raw_vectors) {
        (Some(raw), true) => raw.clone(),
        _ => stores.products.clone(),
    };
    let vectors: Vec<(String, Vec<f32>)> =
        store.scroll_all(true).await?.into_iter().map(|p| (p.id, p.vector)).collect();
    let stored = vectors.len();
    let report = tokio::task::spawn_blocking(move || quality::evaluate(&vectors, &labels, k))
        .await
        .map_err(|e| OpsError::Lists(format!("eval task: {e}")))?;
    let mut lines = vec![
        format!("eval.space={}", space.id()),
        format!("eval.vectors={}", if raw_vectors || space.transform().is_none() { "raw" } else { "projected" }),
        format!("eval.stored_products={stored}"),
    ];
    lines.extend(report.lines());
    Ok(lines)
}
