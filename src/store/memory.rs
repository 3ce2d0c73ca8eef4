//! A brute-force in-memory store: exact by construction. Used as the fast
//! fake in unit tests and as the oracle's twin; not a production backend.

use std::collections::BTreeMap;

use async_trait::async_trait;
use serde_json::Value;
use tokio::sync::RwLock;

use super::{Condition, Filter, MatchValue, Point, ScoredPoint, StoreError, VectorStore};

/// Points in a map; search scans them all.
#[derive(Default)]
pub struct MemoryStore {
    points: RwLock<BTreeMap<String, Point>>,
}

fn field<'a>(payload: &'a serde_json::Map<String, Value>, key: &str) -> Option<&'a Value> {
    let mut parts = key.split('.');
    let mut v = payload.get(parts.next()?)?;
    for part in parts {
        v = v.as_object()?.get(part)?;
    }
    Some(v)
}

fn passes(filter: &Filter, payload: &serde_json::Map<String, Value>) -> bool {
    filter.must.iter().all(|c| match c {
        Condition::BoolEq { key, value } => field(payload, key).and_then(Value::as_bool) == Some(*value),
        Condition::AnyOf { key, values } => field(payload, key).is_some_and(|v| {
            values.iter().any(|m| match m {
                MatchValue::Keyword(s) => v.as_str() == Some(s),
                MatchValue::Integer(i) => v.as_i64() == Some(*i),
            })
        }),
    })
}

#[async_trait]
impl VectorStore for MemoryStore {
    async fn upsert(&self, points: Vec<Point>) -> Result<(), StoreError> {
        let mut map = self.points.write().await;
        for p in points {
            map.insert(p.id.clone(), p);
        }
        Ok(())
    }

    async fn delete(&self, ids: Vec<String>) -> Result<(), StoreError> {
        let mut map = self.points.write().await;
        for id in ids {
            map.remove(&id);
        }
        Ok(())
    }

    async fn retrieve(&self, ids: Vec<String>, with_vectors: bool) -> Result<Vec<Point>, StoreError> {
        let map = self.points.read().await;
        Ok(ids
            .iter()
            .filter_map(|id| map.get(id).cloned())
            .map(|mut p| {
                if !with_vectors {
                    p.vector.clear();
                }
                p
            })
            .collect())
    }

    async fn search(&self, vector: Vec<f32>, filter: Filter, limit: usize) -> Result<Vec<ScoredPoint>, StoreError> {
        let map = self.points.read().await;
        // Score everything, clone only the winners' payloads.
        let mut scored: Vec<(f32, &Point)> = map
            .values()
            .filter(|p| passes(&filter, &p.payload))
            .map(|p| (crate::recommend::dot(&vector, &p.vector) + 0.0, p))
            .collect();
        let order = |a: &(f32, &Point), b: &(f32, &Point)| b.0.total_cmp(&a.0).then_with(|| a.1.id.cmp(&b.1.id));
        if scored.len() > limit && limit > 0 {
            scored.select_nth_unstable_by(limit - 1, order);
        }
        scored.truncate(limit);
        scored.sort_by(order);
        Ok(scored
            .into_iter()
            .map(|(score, p)| ScoredPoint { id: p.id.clone(), score, payload: p.payload.clone() })
            .collect())
    }

    async fn scroll_all(&self, with_vectors: bool) -> Result<Vec<Point>, StoreError> {
        let ids: Vec<String> = self.points.read().await.keys().cloned().collect();
        self.retrieve(ids, with_vectors).await
    }

    async fn count(&self) -> Result<usize, StoreError> {
        Ok(self.points.read().await.len())
    }
}
