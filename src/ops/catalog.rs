//! `adrec catalog-from-dir`: product events for every image in a folder, to
//! feed `adrec backfill`.

use std::path::Path;

use chrono::Utc;
use serde_json::json;

use super::{OpsError, io_error};

const IMAGE_EXTENSIONS: [&str; 6] = ["jpg", "jpeg", "png", "webp", "gif", "bmp"];

/// One `product.upserted` line per image file in `dir` (sorted, not
/// recursive): product id = file stem, image_url = absolute path.
pub fn catalog_from_dir(dir: &Path) -> Result<Vec<String>, OpsError> {
    let dir = dir.canonicalize().map_err(io_error(dir))?;
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .map_err(io_error(&dir))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.extension()
                .and_then(|x| x.to_str())
                .is_some_and(|x| IMAGE_EXTENSIONS.contains(&x.to_ascii_lowercase().as_str()))
        })
        .collect();
    files.sort();
    let now = Utc::now().to_rfc3339();
    Ok(files
        .iter()
        .filter_map(|p| {
            let id = p.file_stem()?.to_str()?;
            let event =
                json!({"type": "product.upserted", "product_id": id, "image_url": p.to_str()?, "updated_at": now});
            Some(event.to_string())
        })
        .collect())
}
