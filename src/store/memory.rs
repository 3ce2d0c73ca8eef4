//! A brute-force in-memory store: exact by construction. Used as the fast
//! fake in unit tests, as the oracle's twin, and by `adrec bench maintain`;
//! not a production backend.
//!
//! Kept compact so a million-point catalogue costs little more than its
//! vectors: payloads are held as JSON text and parsed only when returned,
//! and filters read per-field columns of scalars (built on the first search
//! that names the field, then kept up to date), much like Qdrant's payload
//! indexes.

use std::collections::{BTreeMap, HashMap};
use std::ops::Bound;
use std::sync::Arc;

use async_trait::async_trait;
use serde_json::{Map, Value};
use tokio::sync::RwLock;

use super::{Condition, Filter, MatchValue, Page, Point, ScoredPoint, StoreError, VectorStore};

/// A payload field's value, as filters see it.
#[derive(Debug, Clone, PartialEq)]
enum Scalar {
    Bool(bool),
    Int(i64),
    Str(Box<str>),
    /// Present but not matchable (float, array, object, null), or absent.
    Other,
}

impl Scalar {
    fn of(value: Option<&Value>) -> Self {
        match value {
            Some(Value::Bool(b)) => Scalar::Bool(*b),
            Some(Value::String(s)) => Scalar::Str(s.as_str().into()),
            Some(v) => v.as_i64().map_or(Scalar::Other, Scalar::Int),
            None => Scalar::Other,
        }
    }

    fn passes(&self, condition: &Condition) -> bool {
        match (condition, self) {
            (Condition::BoolEq { value, .. }, Scalar::Bool(b)) => b == value,
            (Condition::AnyOf { values, .. }, Scalar::Str(s)) => {
                values.iter().any(|m| matches!(m, MatchValue::Keyword(k) if k.as_str() == &**s))
            }
            (Condition::AnyOf { values, .. }, Scalar::Int(i)) => {
                values.iter().any(|m| matches!(m, MatchValue::Integer(k) if k == i))
            }
            _ => false,
        }
    }
}

fn key_of(condition: &Condition) -> &str {
    match condition {
        Condition::BoolEq { key, .. } | Condition::AnyOf { key, .. } => key,
    }
}

/// A dotted path (`attributes.category`) into a payload.
fn field<'a>(payload: &'a Map<String, Value>, key: &str) -> Option<&'a Value> {
    let mut parts = key.split('.');
    let mut v = payload.get(parts.next()?)?;
    for part in parts {
        v = v.as_object()?.get(part)?;
    }
    Some(v)
}

#[derive(Debug)]
struct Entry {
    /// Shared with the id map's key (one allocation per id, not two).
    id: Arc<str>,
    vector: Box<[f32]>,
    /// The payload object as JSON text.
    payload: Box<str>,
}

impl Entry {
    fn payload(&self) -> Map<String, Value> {
        serde_json::from_str(&self.payload).unwrap_or_default()
    }

    fn point(&self, with_vector: bool) -> Point {
        Point {
            id: self.id.to_string(),
            vector: if with_vector { self.vector.to_vec() } else { Vec::new() },
            payload: self.payload(),
        }
    }
}

#[derive(Debug, Default)]
struct Points {
    /// Entity id → slot, in id order (scroll order).
    slot_of: BTreeMap<Arc<str>, u32>,
    slots: Vec<Option<Entry>>,
    free: Vec<u32>,
    /// Field path → one scalar per slot.
    columns: HashMap<String, Vec<Scalar>>,
}

impl Points {
    fn entry(&self, id: &str) -> Option<&Entry> {
        self.slot_of.get(id).and_then(|s| self.slots[*s as usize].as_ref())
    }

    fn upsert(&mut self, point: Point) {
        let (slot, id) = match self.slot_of.get_key_value(point.id.as_str()) {
            Some((id, s)) => (*s as usize, id.clone()),
            None => {
                let s = match self.free.pop() {
                    Some(s) => s as usize,
                    None => {
                        self.slots.push(None);
                        self.columns.values_mut().for_each(|c| c.push(Scalar::Other));
                        self.slots.len() - 1
                    }
                };
                let id: Arc<str> = point.id.as_str().into();
                self.slot_of.insert(id.clone(), s as u32);
                (s, id)
            }
        };
        for (key, column) in &mut self.columns {
            column[slot] = Scalar::of(field(&point.payload, key));
        }
        let payload = serde_json::to_string(&point.payload).unwrap_or_else(|_| "{}".into());
        self.slots[slot] = Some(Entry { id, vector: point.vector.into(), payload: payload.into() });
    }

    fn delete(&mut self, id: &str) {
        if let Some(slot) = self.slot_of.remove(id) {
            self.slots[slot as usize] = None;
            self.columns.values_mut().for_each(|c| c[slot as usize] = Scalar::Other);
            self.free.push(slot);
        }
    }

    /// Build the columns a filter needs that do not exist yet.
    fn ensure_columns(&mut self, filter: &Filter) {
        for condition in &filter.must {
            let key = key_of(condition);
            if self.columns.contains_key(key) {
                continue;
            }
            let column = self
                .slots
                .iter()
                .map(|e| e.as_ref().map_or(Scalar::Other, |e| Scalar::of(field(&e.payload(), key))))
                .collect();
            self.columns.insert(key.to_string(), column);
        }
    }

    fn passes(&self, filter: &Filter, slot: usize) -> bool {
        filter.must.iter().all(|c| self.columns.get(key_of(c)).is_some_and(|col| col[slot].passes(c)))
    }
}

/// Points in memory; search scans them all.
#[derive(Default)]
pub struct MemoryStore {
    points: RwLock<Points>,
}

#[async_trait]
impl VectorStore for MemoryStore {
    async fn upsert(&self, points: Vec<Point>) -> Result<(), StoreError> {
        let mut map = self.points.write().await;
        for p in points {
            map.upsert(p);
        }
        Ok(())
    }

    async fn delete(&self, ids: Vec<String>) -> Result<(), StoreError> {
        let mut map = self.points.write().await;
        for id in ids {
            map.delete(&id);
        }
        Ok(())
    }

    async fn retrieve(&self, ids: Vec<String>, with_vectors: bool) -> Result<Vec<Point>, StoreError> {
        let map = self.points.read().await;
        Ok(ids.iter().filter_map(|id| map.entry(id)).map(|e| e.point(with_vectors)).collect())
    }

    async fn search(&self, vector: Vec<f32>, filter: Filter, limit: usize) -> Result<Vec<ScoredPoint>, StoreError> {
        let missing_column = {
            let map = self.points.read().await;
            filter.must.iter().any(|c| !map.columns.contains_key(key_of(c)))
        };
        if missing_column {
            self.points.write().await.ensure_columns(&filter);
        }
        let map = self.points.read().await;
        // Score everything, parse only the winners' payloads.
        let mut scored: Vec<(f32, &Entry)> = map
            .slots
            .iter()
            .enumerate()
            .filter_map(|(slot, e)| e.as_ref().filter(|_| map.passes(&filter, slot)))
            .map(|e| (crate::recommend::dot(&vector, &e.vector) + 0.0, e))
            .collect();
        let order = |a: &(f32, &Entry), b: &(f32, &Entry)| b.0.total_cmp(&a.0).then_with(|| a.1.id.cmp(&b.1.id));
        if scored.len() > limit && limit > 0 {
            scored.select_nth_unstable_by(limit - 1, order);
        }
        scored.truncate(limit);
        scored.sort_by(order);
        Ok(scored
            .into_iter()
            .map(|(score, e)| ScoredPoint { id: e.id.to_string(), score, payload: e.payload() })
            .collect())
    }

    async fn scroll_page(&self, cursor: Option<String>, limit: usize, with_vectors: bool) -> Result<Page, StoreError> {
        let map = self.points.read().await;
        // Id order; the cursor is the first id of the next page.
        let from = cursor.as_deref().map_or(Bound::Unbounded, Bound::Included);
        let mut ids = map.slot_of.range::<str, _>((from, Bound::Unbounded));
        let mut points = Vec::with_capacity(limit.min(map.slot_of.len()));
        for (_, slot) in ids.by_ref().take(limit.max(1)) {
            if let Some(e) = &map.slots[*slot as usize] {
                points.push(e.point(with_vectors));
            }
        }
        Ok(Page { points, next: ids.next().map(|(id, _)| id.to_string()) })
    }

    async fn count(&self) -> Result<usize, StoreError> {
        Ok(self.points.read().await.slot_of.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn point(id: &str, v: [f32; 2], payload: Value) -> Point {
        Point { id: id.into(), vector: v.to_vec(), payload: payload.as_object().cloned().unwrap_or_default() }
    }

    /// Columns built by a first search follow later upserts and deletions.
    #[tokio::test]
    async fn filter_columns_follow_writes() {
        let store = MemoryStore::default();
        store.upsert(vec![point("a", [1.0, 0.0], json!({"in_stock": true, "attributes": {"c": "x"}}))]).await.unwrap();
        let filter = Filter {
            must: vec![
                Condition::BoolEq { key: "in_stock".into(), value: true },
                Condition::AnyOf { key: "attributes.c".into(), values: vec![MatchValue::Keyword("x".into())] },
            ],
        };
        let ids = |hits: Vec<ScoredPoint>| hits.into_iter().map(|h| h.id).collect::<Vec<_>>();
        assert_eq!(ids(store.search(vec![1.0, 0.0], filter.clone(), 5).await.unwrap()), ["a"]);
        store.upsert(vec![point("b", [0.9, 0.1], json!({"in_stock": true, "attributes": {"c": "x"}}))]).await.unwrap();
        store.upsert(vec![point("a", [1.0, 0.0], json!({"in_stock": false, "attributes": {"c": "x"}}))]).await.unwrap();
        assert_eq!(ids(store.search(vec![1.0, 0.0], filter.clone(), 5).await.unwrap()), ["b"]);
        store.delete(vec!["b".into()]).await.unwrap();
        store.upsert(vec![point("c", [0.0, 1.0], json!({"in_stock": true, "attributes": {"c": 7}}))]).await.unwrap();
        assert!(
            store.search(vec![1.0, 0.0], filter, 5).await.unwrap().is_empty(),
            "the reused slot's column was reset"
        );
        let page = store.scroll_page(None, 1, false).await.unwrap();
        assert_eq!((page.points[0].id.as_str(), page.next.as_deref()), ("a", Some("c")));
        assert_eq!(page.points[0].payload["in_stock"], json!(false));
    }
}
