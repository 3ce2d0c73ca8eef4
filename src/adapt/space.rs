//! Embedding spaces on disk: the raw space (the embedder's own vectors, the
//! identity) and fitted ones. Layout under `<store_dir>/<model>/`:
//!
//! - `products/`, `ads/`: the identity space (same place as before transforms existed);
//! - `transforms/<id>.json`: fitted transform artefacts;
//! - `spaces/<id>/{products,ads,raw_products,raw_ads}/`: a fitted space with the
//!   raw vectors it was projected from, so a later refit can re-project;
//! - `current-space`: the id of the transform in use (absent or `identity` = none).
//!
//! Space id = model id, or `<model id>@<transform id>`; it is written on every
//! stored vector and every published list.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_json::{Map, Value};

use super::AdaptError;
use super::transform::Transform;
use crate::config::Config;
use crate::embed::EmbedError;
use crate::embed::model::ModelSpec;
use crate::store::edge::EdgeStore;
use crate::store::{Point, StoreError, VectorStore};

const POINTER: &str = "current-space";
const IDENTITY: &str = "identity";

/// The raw embedding space the configured embedder produces (no model load needed).
#[derive(Debug, Clone, PartialEq)]
pub struct RawSpec {
    /// Embedder id (model plus colour suffix when colour is on).
    pub model_id: String,
    /// Raw vector length.
    pub dim: usize,
    /// Model-feature head length (the rest is the colour tail).
    pub head_dim: usize,
    /// Colour weight (0 = no tail).
    pub tail_weight: f32,
}

/// Id of the colour-augmented embedder of `base`.
pub fn colour_model_id(base: &str, bins: u32, weight: f32) -> String {
    format!("{base}+fgcolour{bins}w{weight}")
}

/// The raw space of `config`: the manifest's model plus the colour settings.
pub fn raw_spec(config: &Config) -> Result<RawSpec, AdaptError> {
    let spec = ModelSpec::from_manifest(&config.model.manifest).map_err(|e| AdaptError::Model(e.to_string()))?;
    let a = &config.adapt;
    Ok(if a.colour_weight > 0.0 {
        RawSpec {
            model_id: colour_model_id(&spec.id, a.colour_bins, a.colour_weight),
            dim: spec.feature_dim + (a.colour_bins as usize).pow(3),
            head_dim: spec.feature_dim,
            tail_weight: a.colour_weight,
        }
    } else {
        RawSpec { model_id: spec.id, dim: spec.feature_dim, head_dim: spec.feature_dim, tail_weight: 0.0 }
    })
}

/// One embedding space: a raw space and an optional fitted transform.
#[derive(Debug, Clone)]
pub struct Space {
    raw: RawSpec,
    transform: Option<Arc<Transform>>,
    id: String,
}

impl Space {
    /// The raw space itself.
    pub fn identity(raw: RawSpec) -> Self {
        Self { id: raw.model_id.clone(), raw, transform: None }
    }

    /// The raw space through `transform`.
    pub fn fitted(raw: RawSpec, transform: Transform) -> Self {
        Self { id: format!("{}@{}", raw.model_id, transform.id), raw, transform: Some(Arc::new(transform)) }
    }

    /// Space id (written on vectors and lists).
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The raw space.
    pub fn raw(&self) -> &RawSpec {
        &self.raw
    }

    /// The fitted transform, if any.
    pub fn transform(&self) -> Option<&Transform> {
        self.transform.as_deref()
    }

    /// Length of vectors in this space.
    pub fn dim(&self) -> usize {
        self.transform.as_ref().map_or(self.raw.dim, |t| t.output_dim())
    }

    /// Map a raw vector into this space.
    pub fn project(&self, raw: Vec<f32>) -> Result<Vec<f32>, AdaptError> {
        match &self.transform {
            None if raw.len() == self.raw.dim => Ok(raw),
            None => Err(AdaptError::Dimension { expected: self.raw.dim, got: raw.len() }),
            Some(t) => t.apply(&raw),
        }
    }
}

/// Directory of one raw space's stores (same naming as `app::open_stores`).
pub fn model_dir(config: &Config, model_id: &str) -> PathBuf {
    config.store_dir().join(crate::app::sanitize(model_id))
}

/// Directory of a space's product/ad stores.
pub fn space_dir(config: &Config, space: &Space) -> PathBuf {
    let base = model_dir(config, &space.raw.model_id);
    match &space.transform {
        None => base,
        Some(t) => base.join("spaces").join(&t.id),
    }
}

fn transform_path(config: &Config, model_id: &str, transform_id: &str) -> PathBuf {
    model_dir(config, model_id).join("transforms").join(format!("{transform_id}.json"))
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> AdaptError + '_ {
    move |e| AdaptError::Io(format!("{}: {e}", path.display()))
}

/// The space in use for `raw` (identity until a refit switched it).
pub fn current_space(config: &Config, raw: &RawSpec) -> Result<Space, AdaptError> {
    let pointer = model_dir(config, &raw.model_id).join(POINTER);
    let id = match std::fs::read_to_string(&pointer) {
        Ok(text) => text.trim().to_string(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Space::identity(raw.clone())),
        Err(e) => return Err(io(&pointer)(e)),
    };
    if id.is_empty() || id == IDENTITY {
        return Ok(Space::identity(raw.clone()));
    }
    let path = transform_path(config, &raw.model_id, &id);
    let text = std::fs::read_to_string(&path).map_err(io(&path))?;
    let transform: Transform =
        serde_json::from_str(&text).map_err(|e| AdaptError::Io(format!("{}: {e}", path.display())))?;
    if transform.input_dim != raw.dim || transform.id != id {
        return Err(AdaptError::Io(format!("{} does not fit the raw space {}", path.display(), raw.model_id)));
    }
    Ok(Space::fitted(raw.clone(), transform))
}

/// Write a transform artefact (before any vector uses it).
pub fn save_transform(config: &Config, model_id: &str, transform: &Transform) -> Result<(), AdaptError> {
    let path = transform_path(config, model_id, &transform.id);
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io(dir))?;
    }
    let text = serde_json::to_string(transform).map_err(|e| AdaptError::Io(e.to_string()))?;
    write_atomically(&path, text.as_bytes())
}

/// Switch the space in use (atomic: a crash leaves the old or the new pointer).
pub fn set_current(config: &Config, space: &Space) -> Result<(), AdaptError> {
    let path = model_dir(config, &space.raw.model_id).join(POINTER);
    let id = space.transform.as_ref().map_or(IDENTITY, |t| t.id.as_str());
    write_atomically(&path, format!("{id}\n").as_bytes())
}

fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), AdaptError> {
    use std::io::Write;
    let tmp = path.with_extension("tmp");
    let mut file = std::fs::File::create(&tmp).map_err(io(&tmp))?;
    file.write_all(bytes).and_then(|_| file.sync_all()).map_err(io(&tmp))?;
    std::fs::rename(&tmp, path).map_err(io(path))
}

/// The open stores of one space.
pub struct SpaceStores {
    /// The space.
    pub space: Space,
    /// Products (vectors in this space).
    pub products: Arc<dyn VectorStore>,
    /// Ads with their lists (vectors in this space).
    pub ads: Arc<dyn VectorStore>,
    /// Raw product vectors (fitted spaces only; in the identity they are the products).
    pub raw_products: Option<Arc<dyn VectorStore>>,
    /// Raw ad vectors (fitted spaces only).
    pub raw_ads: Option<Arc<dyn VectorStore>>,
}

impl SpaceStores {
    /// What the streaming worker needs to write new embeddings into this
    /// space (`None` for the identity: nothing to project or keep aside).
    pub fn writer(&self) -> Option<Arc<SpaceWriter>> {
        match (&self.raw_products, &self.raw_ads) {
            (Some(rp), Some(ra)) if self.space.transform.is_some() => {
                Some(Arc::new(SpaceWriter { space: self.space.clone(), raw_products: rp.clone(), raw_ads: ra.clone() }))
            }
            _ => None,
        }
    }
}

/// Open (creating if needed) the stores of `space`.
pub fn open_space(config: &Config, space: &Space) -> Result<SpaceStores, AdaptError> {
    let dir = space_dir(config, space);
    let open = |name: &str, dim: usize| -> Result<Arc<dyn VectorStore>, AdaptError> {
        Ok(Arc::new(EdgeStore::open(&dir.join(name), dim)?))
    };
    let (raw_products, raw_ads) = match &space.transform {
        None => (None, None),
        Some(_) => (Some(open("raw_products", space.raw.dim)?), Some(open("raw_ads", space.raw.dim)?)),
    };
    Ok(SpaceStores {
        space: space.clone(),
        products: open("products", space.dim())?,
        ads: open("ads", space.dim())?,
        raw_products,
        raw_ads,
    })
}

/// Which kind of entity a raw vector belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Entity {
    /// A product.
    Product,
    /// An ad creative.
    Ad,
}

/// Projects new raw embeddings into a fitted space and keeps the raw ones.
pub struct SpaceWriter {
    space: Space,
    raw_products: Arc<dyn VectorStore>,
    raw_ads: Arc<dyn VectorStore>,
}

impl SpaceWriter {
    /// Space id.
    pub fn space_id(&self) -> &str {
        self.space.id()
    }

    /// Keep `raw` for `id` (so a refit can re-project it) and return its
    /// vector in this space.
    pub async fn adapt(&self, entity: Entity, id: &str, raw: Vec<f32>) -> Result<Vec<f32>, AdaptError> {
        let vector = self.space.project(raw.clone())?;
        self.store(entity).upsert(vec![raw_point(id, raw)]).await?;
        Ok(vector)
    }

    /// [`SpaceWriter::adapt`] for many entities with one raw-store write.
    pub async fn adapt_batch(
        &self,
        entity: Entity,
        raws: Vec<(String, Vec<f32>)>,
    ) -> Result<Vec<Vec<f32>>, AdaptError> {
        let vectors = raws.iter().map(|(_, r)| self.space.project(r.clone())).collect::<Result<Vec<_>, _>>()?;
        if !raws.is_empty() {
            self.store(entity).upsert(raws.into_iter().map(|(id, r)| raw_point(&id, r)).collect()).await?;
        }
        Ok(vectors)
    }

    /// Drop a deleted product's raw vector.
    pub async fn forget_product(&self, id: &str) -> Result<(), StoreError> {
        self.raw_products.delete(vec![id.to_string()]).await
    }

    fn store(&self, entity: Entity) -> &Arc<dyn VectorStore> {
        match entity {
            Entity::Product => &self.raw_products,
            Entity::Ad => &self.raw_ads,
        }
    }
}

/// A raw vector as a store point.
pub fn raw_point(id: &str, raw: Vec<f32>) -> Point {
    let mut payload = Map::new();
    payload.insert("id".into(), Value::String(id.to_string()));
    Point { id: id.to_string(), vector: raw, payload }
}

impl From<AdaptError> for crate::pipeline::ProcessError {
    /// Store failures stay store failures (retried); anything else means the
    /// space and the embedder disagree: our fault, not the event's, so retried too.
    fn from(e: AdaptError) -> Self {
        match e {
            AdaptError::Store(s) => crate::pipeline::ProcessError::Store(s),
            other => crate::pipeline::ProcessError::Embed(EmbedError::Runtime(other.to_string())),
        }
    }
}
