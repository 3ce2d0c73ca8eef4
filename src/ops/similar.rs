//! `adrec similar`: every stored product's top-K most similar other products
//! in the current space (the Python prototype's "top 10 similar items" table).

use std::io::Write;
use std::path::Path;

use serde::Serialize;

use super::{OpsError, io_error};
use crate::adapt;
use crate::config::Config;
use crate::records::ProductRecord;
use crate::store::Filter;

/// One output line.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SimilarLine {
    /// The product.
    pub product_id: String,
    /// Its most similar other products, best first.
    pub recs: Vec<String>,
    /// Their cosine similarities.
    pub scores: Vec<f32>,
    /// Embedding space of the scores.
    pub model: String,
}

/// Write one JSON line per stored product to `out`; returns (products, space id).
pub async fn similar(config: &Config, k: usize, out: &Path) -> Result<(usize, String), OpsError> {
    let space = adapt::current_space(config, &adapt::raw_spec(config)?)?;
    let stores = adapt::open_space(config, &space)?;
    let mut products: Vec<ProductRecord> =
        stores.products.scroll_all(true).await?.into_iter().filter_map(ProductRecord::from_point).collect();
    products.sort_by(|a, b| a.product_id.cmp(&b.product_id));
    let file = std::fs::File::create(out).map_err(io_error(out))?;
    let mut w = std::io::BufWriter::new(file);
    for p in &products {
        // One extra hit: the product itself comes back first.
        let hits = stores.products.search(p.vector.clone(), Filter::default(), k + 1).await?;
        let hits: Vec<_> = hits.into_iter().filter(|h| h.id != p.product_id).take(k).collect();
        let line = SimilarLine {
            product_id: p.product_id.clone(),
            recs: hits.iter().map(|h| h.id.clone()).collect(),
            scores: hits.iter().map(|h| h.score).collect(),
            model: space.id().to_string(),
        };
        let json = serde_json::to_string(&line)
            .map_err(|e| OpsError::Io { path: out.display().to_string(), reason: e.to_string() })?;
        writeln!(w, "{json}").map_err(io_error(out))?;
    }
    w.flush().map_err(io_error(out))?;
    Ok((products.len(), space.id().to_string()))
}
