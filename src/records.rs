//! Domain records ↔ stored points: what a product or an ad looks like in
//! the vector store.

use chrono::{DateTime, Utc};
use serde_json::{Map, Value, json};

use crate::events::{AdFilter, AttrValue, ListItem};
use crate::store::{Condition, Filter, MatchValue, Point};

/// A stored product.
#[derive(Debug, Clone, PartialEq)]
pub struct ProductRecord {
    /// Product id.
    pub product_id: String,
    /// L2-normalised image embedding.
    pub vector: Vec<f32>,
    /// Image the vector was computed from.
    pub image_url: String,
    /// Display title.
    pub title: Option<String>,
    /// Stock state.
    pub in_stock: bool,
    /// Attributes ad filters match on.
    pub attributes: Map<String, Value>,
    /// Embedding space of `vector`.
    pub model: String,
    /// Version of this state.
    pub updated_at: DateTime<Utc>,
}

/// A stored ad with its current list (the list is what was last published).
#[derive(Debug, Clone, PartialEq)]
pub struct AdRecord {
    /// Ad id.
    pub ad_id: String,
    /// L2-normalised creative embedding (shared with the list engine's
    /// index, which would otherwise hold a second copy of every ad vector).
    pub vector: std::sync::Arc<[f32]>,
    /// Creative image.
    pub image_url: String,
    /// List length.
    pub k: usize,
    /// Which products qualify.
    pub filter: AdFilter,
    /// Version of this ad state.
    pub updated_at: DateTime<Utc>,
    /// Version of the last published list (kept after deletion so versions never go back).
    pub version: u64,
    /// Last published list.
    pub items: Vec<ListItem>,
    /// Deleted ads keep their record so a re-creation continues the version sequence.
    pub deleted: bool,
    /// Embedding space of `vector`.
    pub model: String,
    /// Input partition the ad's events arrive on (0 for files); its list goes to the same partition.
    pub partition: i32,
}

fn get_str(p: &Map<String, Value>, key: &str) -> Option<String> {
    p.get(key).and_then(Value::as_str).map(str::to_string)
}

fn get_time(p: &Map<String, Value>) -> Option<DateTime<Utc>> {
    let raw = p.get("updated_at")?.as_str()?;
    Some(DateTime::parse_from_rfc3339(raw).ok()?.with_timezone(&Utc))
}

impl ProductRecord {
    /// As a store point.
    pub fn to_point(&self) -> Point {
        let payload = json!({
            "product_id": self.product_id,
            "image_url": self.image_url,
            "title": self.title,
            "in_stock": self.in_stock,
            "attributes": self.attributes,
            "model": self.model,
            "updated_at": self.updated_at.to_rfc3339(),
        });
        Point { id: self.product_id.clone(), vector: self.vector.clone(), payload: as_object(payload) }
    }

    /// From a store point; `None` if the payload is not a product's.
    pub fn from_point(p: Point) -> Option<Self> {
        let pl = &p.payload;
        Some(Self {
            product_id: get_str(pl, "product_id")?,
            image_url: get_str(pl, "image_url")?,
            title: get_str(pl, "title"),
            in_stock: pl.get("in_stock").and_then(Value::as_bool).unwrap_or(true),
            attributes: pl.get("attributes").and_then(Value::as_object).cloned().unwrap_or_default(),
            model: get_str(pl, "model")?,
            updated_at: get_time(pl)?,
            vector: p.vector,
        })
    }
}

impl AdRecord {
    /// A new ad state with nothing published yet: version 0, no list,
    /// partition 0, stamped now (callers override what they know better).
    pub fn unpublished(
        ad_id: String,
        vector: std::sync::Arc<[f32]>,
        image_url: String,
        k: usize,
        filter: AdFilter,
        model: String,
    ) -> Self {
        Self {
            ad_id,
            vector,
            image_url,
            k,
            filter,
            updated_at: Utc::now(),
            version: 0,
            items: Vec::new(),
            deleted: false,
            model,
            partition: 0,
        }
    }

    /// As a store point.
    pub fn to_point(&self) -> Point {
        let payload = json!({
            "ad_id": self.ad_id,
            "image_url": self.image_url,
            "k": self.k,
            "filter": self.filter,
            "updated_at": self.updated_at.to_rfc3339(),
            "version": self.version,
            "items": self.items,
            "deleted": self.deleted,
            "model": self.model,
            "partition": self.partition,
        });
        Point { id: self.ad_id.clone(), vector: self.vector.to_vec(), payload: as_object(payload) }
    }

    /// From a store point; `None` if the payload is not an ad's.
    pub fn from_point(p: Point) -> Option<Self> {
        let pl = &p.payload;
        Some(Self {
            ad_id: get_str(pl, "ad_id")?,
            image_url: get_str(pl, "image_url")?,
            k: pl.get("k").and_then(Value::as_u64)? as usize,
            filter: serde_json::from_value(pl.get("filter")?.clone()).ok()?,
            updated_at: get_time(pl)?,
            version: pl.get("version").and_then(Value::as_u64)?,
            items: serde_json::from_value(pl.get("items")?.clone()).ok()?,
            deleted: pl.get("deleted").and_then(Value::as_bool).unwrap_or(false),
            model: get_str(pl, "model")?,
            partition: pl.get("partition").and_then(Value::as_i64).unwrap_or(0) as i32,
            vector: p.vector.into(),
        })
    }

    /// The ad's filter as a store filter over product payloads.
    pub fn store_filter(&self) -> Filter {
        store_filter(&self.filter)
    }
}

/// Translate an ad filter into store conditions on product payload fields.
pub fn store_filter(filter: &AdFilter) -> Filter {
    let mut must = Vec::new();
    if let Some(in_stock) = filter.in_stock {
        must.push(Condition::BoolEq { key: "in_stock".into(), value: in_stock });
    }
    for (name, accepted) in &filter.attributes {
        let values = accepted
            .iter()
            .map(|v| match v {
                AttrValue::Str(s) => MatchValue::Keyword(s.clone()),
                AttrValue::Int(i) => MatchValue::Integer(*i),
            })
            .collect();
        must.push(Condition::AnyOf { key: format!("attributes.{name}"), values });
    }
    Filter { must }
}

fn as_object(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_roundtrip_through_points() {
        let t = Utc::now();
        let p = ProductRecord {
            product_id: "p".into(),
            vector: vec![1.0, 0.0],
            image_url: "http://x/p.jpg".into(),
            title: Some("T".into()),
            in_stock: false,
            attributes: as_object(json!({"category": "polo"})),
            model: "m".into(),
            updated_at: t,
        };
        assert_eq!(ProductRecord::from_point(p.to_point()), Some(p));
        let mut filter = AdFilter { in_stock: Some(true), ..Default::default() };
        filter.attributes.insert("category".into(), vec![AttrValue::Str("polo".into())]);
        let a = AdRecord {
            ad_id: "a".into(),
            vector: vec![0.0, 1.0].into(),
            image_url: "http://x/a.jpg".into(),
            k: 3,
            filter,
            updated_at: t,
            version: 4,
            items: vec![ListItem { product_id: "p".into(), score: 0.5, image_url: "u".into() }],
            deleted: false,
            model: "m".into(),
            partition: 2,
        };
        assert_eq!(AdRecord::from_point(a.to_point()), Some(a.clone()));
        assert_eq!(a.store_filter().must.len(), 2);
    }
}
