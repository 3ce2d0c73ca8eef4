//! Retrieval quality of stored vectors against photo labels (issue #8's
//! metric): for every labelled photo with at least one other photo of its
//! label, rank all other photos by cosine similarity and score the ranking.
//!
//! - recall@k = |same-label in top k| / min(k, #same-label);
//! - P@1 = the top item has the same label;
//! - mAP@10 = mean over queries of AP@10 = Σ_{i≤10, hit at i} precision@i / min(10, #same-label).
//!
//! The **dedup** protocol first drops the query's near-duplicates (the same
//! photo at another size) from both the ranking and the relevant set;
//! queries left with no relevant photo are skipped. **raw** keeps them.

use std::collections::{HashMap, HashSet};

/// Labels of one photo.
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
pub struct LabelledPhoto {
    /// Product id of the photo.
    pub product_id: String,
    /// Same label = same product in the same colour.
    pub label: String,
    /// Other product ids that are the same photo at another size.
    #[serde(default)]
    pub near_duplicates: Vec<String>,
}

/// Figures of one protocol.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Scores {
    /// Queries scored.
    pub queries: usize,
    /// Mean recall@k.
    pub recall_at_k: f64,
    /// Mean precision@1.
    pub p_at_1: f64,
    /// Mean AP@10.
    pub map_at_10: f64,
}

/// Both protocols.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Report {
    /// The k of recall@k.
    pub k: usize,
    /// Photos with both a vector and a label.
    pub photos: usize,
    /// Near-duplicates dropped.
    pub dedup: Scores,
    /// Everything kept.
    pub raw: Scores,
}

impl Report {
    /// `key=value` lines (`eval.dedup.recall_at_9=…`).
    pub fn lines(&self) -> Vec<String> {
        let mut out = vec![format!("eval.photos={}", self.photos)];
        for (name, s) in [("dedup", &self.dedup), ("raw", &self.raw)] {
            out.push(format!("eval.{name}.queries={}", s.queries));
            out.push(format!("eval.{name}.recall_at_{}={:.4}", self.k, s.recall_at_k));
            out.push(format!("eval.{name}.p_at_1={:.4}", s.p_at_1));
            out.push(format!("eval.{name}.map_at_10={:.4}", s.map_at_10));
        }
        out
    }
}

/// Score `vectors` (id, L2-normalised vector) against `labels`; photos
/// without a label are left out of both queries and rankings.
pub fn evaluate(vectors: &[(String, Vec<f32>)], labels: &[LabelledPhoto], k: usize) -> Report {
    let by_id: HashMap<&str, &LabelledPhoto> = labels.iter().map(|l| (l.product_id.as_str(), l)).collect();
    let mut items: Vec<(&str, &[f32], &LabelledPhoto)> =
        vectors.iter().filter_map(|(id, v)| by_id.get(id.as_str()).map(|l| (id.as_str(), v.as_slice(), *l))).collect();
    // Ties are broken by id, so the result does not depend on input order.
    items.sort_by(|a, b| a.0.cmp(b.0));
    let index: HashMap<&str, usize> = items.iter().enumerate().map(|(i, it)| (it.0, i)).collect();
    let mut by_label: HashMap<&str, Vec<usize>> = HashMap::new();
    for (i, it) in items.iter().enumerate() {
        by_label.entry(it.2.label.as_str()).or_default().push(i);
    }
    let depth = k.max(10);
    let per_query: Vec<[Option<[f64; 3]>; 2]> = parallel_map(items.len(), |q| {
        let dups: HashSet<usize> =
            items[q].2.near_duplicates.iter().filter_map(|d| index.get(d.as_str()).copied()).collect();
        let ranked = top_n(&items, q, depth + dups.len());
        let group = &by_label[items[q].2.label.as_str()];
        let score = |drop: &HashSet<usize>| {
            let relevant: HashSet<usize> = group.iter().copied().filter(|j| *j != q && !drop.contains(j)).collect();
            if relevant.is_empty() {
                return None;
            }
            let hits: Vec<bool> =
                ranked.iter().filter(|j| !drop.contains(j)).take(depth).map(|j| relevant.contains(j)).collect();
            let found = hits.iter().take(k).filter(|h| **h).count();
            let recall = found as f64 / k.min(relevant.len()) as f64;
            let p1 = if hits.first().copied().unwrap_or(false) { 1.0 } else { 0.0 };
            let (mut sum, mut seen) = (0.0, 0usize);
            for (pos, hit) in hits.iter().take(10).enumerate() {
                if *hit {
                    seen += 1;
                    sum += seen as f64 / (pos + 1) as f64;
                }
            }
            Some([recall, p1, sum / 10usize.min(relevant.len()) as f64])
        };
        [score(&dups), score(&HashSet::new())]
    });
    let mean = |m: usize| {
        let rows: Vec<[f64; 3]> = per_query.iter().filter_map(|r| r[m]).collect();
        if rows.is_empty() {
            // (An empty float sum is -0.0, which would print as "-0.0000".)
            return Scores::default();
        }
        let n = rows.len() as f64;
        Scores {
            queries: rows.len(),
            recall_at_k: rows.iter().map(|r| r[0]).sum::<f64>() / n,
            p_at_1: rows.iter().map(|r| r[1]).sum::<f64>() / n,
            map_at_10: rows.iter().map(|r| r[2]).sum::<f64>() / n,
        }
    };
    Report { k, photos: items.len(), dedup: mean(0), raw: mean(1) }
}

/// Indices of the `n` items most similar to item `q` (itself excluded), best first.
fn top_n(items: &[(&str, &[f32], &LabelledPhoto)], q: usize, n: usize) -> Vec<usize> {
    let query = items[q].1;
    let mut scored: Vec<(f32, usize)> = items
        .iter()
        .enumerate()
        .filter(|(j, _)| *j != q)
        .map(|(j, it)| (crate::recommend::dot(query, it.1), j))
        .collect();
    let order = |a: &(f32, usize), b: &(f32, usize)| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1));
    if scored.len() > n {
        scored.select_nth_unstable_by(n, order);
        scored.truncate(n);
    }
    scored.sort_by(order);
    scored.into_iter().map(|(_, j)| j).collect()
}

/// `f(0..n)` on all cores (the scoring is O(n²·dim)).
fn parallel_map<T: Send, F: Fn(usize) -> T + Sync>(n: usize, f: F) -> Vec<T> {
    let threads = std::thread::available_parallelism().map_or(1, |t| t.get()).min(n.max(1));
    let chunk = n.div_ceil(threads.max(1)).max(1);
    let f = &f;
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..n)
            .step_by(chunk)
            .map(|start| s.spawn(move || (start..(start + chunk).min(n)).map(f).collect::<Vec<T>>()))
            .collect();
        handles.into_iter().flat_map(|h| h.join().unwrap_or_default()).collect()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn photo(id: &str, label: &str, dups: &[&str]) -> LabelledPhoto {
        LabelledPhoto {
            product_id: id.into(),
            label: label.into(),
            near_duplicates: dups.iter().map(|d| d.to_string()).collect(),
        }
    }

    fn unit(angle_deg: f32) -> Vec<f32> {
        let a = angle_deg.to_radians();
        vec![a.cos(), a.sin()]
    }

    /// Five photos on a circle (angles in degrees):
    /// a1 0°, a2 8° (a1's near-duplicate), b1 20°, a3 38°, b2 90° (no ties).
    /// Labels: a = {a1, a2, a3}, b = {b1, b2}.
    fn set() -> (Vec<(String, Vec<f32>)>, Vec<LabelledPhoto>) {
        let vectors = [("a1", 0.0), ("a2", 8.0), ("b1", 20.0), ("a3", 38.0), ("b2", 90.0), ("x", 200.0)]
            .into_iter()
            .map(|(id, a)| (id.to_string(), unit(a)))
            .collect();
        let labels = vec![
            photo("a1", "a", &["a2"]),
            photo("a2", "a", &["a1"]),
            photo("b1", "b", &[]),
            photo("a3", "a", &[]),
            photo("b2", "b", &[]),
        ];
        (vectors, labels)
    }

    #[test]
    fn hand_computed_figures_with_and_without_dedup() {
        let (vectors, labels) = set();
        let r = evaluate(&vectors, &labels, 2);
        assert_eq!(r.photos, 5, "the unlabelled photo is left out");
        // Rankings (nearest first):
        //   a1: a2 b1 a3 b2      a2: a1 b1 a3 b2      b1: a2 a3 a1 b2
        //   a3: b1 a2 a1 b2      b2: a3 b1 a2 a1
        // raw, k = 2 (relevant sets: a1 {a2,a3}, a2 {a1,a3}, b1 {b2}, a3 {a1,a2}, b2 {b1}):
        //   recall@2: a1 1/2, a2 1/2, b1 0, a3 1/2, b2 1/1      → 2.5/5
        //   P@1:      a1 1,   a2 1,   b1 0, a3 0,   b2 0        → 2/5
        //   AP@10:    a1 (1 + 2/3)/2, a2 (1 + 2/3)/2, b1 (1/4)/1,
        //             a3 (1/2 + 2/3)/2, b2 (1/2)/1
        assert_eq!(r.raw.queries, 5);
        assert!((r.raw.recall_at_k - 0.5).abs() < 1e-9);
        assert!((r.raw.p_at_1 - 0.4).abs() < 1e-9);
        let ap = [(1.0 + 2.0 / 3.0) / 2.0, (1.0 + 2.0 / 3.0) / 2.0, 0.25, (0.5 + 2.0 / 3.0) / 2.0, 0.5];
        assert!((r.raw.map_at_10 - ap.iter().sum::<f64>() / 5.0).abs() < 1e-9);
        // dedup: a1 loses a2 (ranking b1 a3 b2, relevant {a3}); a2 loses a1
        // (ranking b1 a3 b2, relevant {a3}); the others have no near-duplicates.
        //   recall@2: a1 1, a2 1, b1 0, a3 1/2, b2 1            → 3.5/5
        //   P@1:      a1 0, a2 0, b1 0, a3 0, b2 0              → 0
        //   AP@10:    a1 1/2, a2 1/2, b1 1/4, a3 (1/2+2/3)/2, b2 1/2
        assert_eq!(r.dedup.queries, 5);
        assert!((r.dedup.recall_at_k - 0.7).abs() < 1e-9);
        assert_eq!(r.dedup.p_at_1, 0.0);
        let ap = [0.5, 0.5, 0.25, (0.5 + 2.0 / 3.0) / 2.0, 0.5];
        assert!((r.dedup.map_at_10 - ap.iter().sum::<f64>() / 5.0).abs() < 1e-9);
    }

    #[test]
    fn a_query_whose_only_match_is_its_duplicate_counts_in_raw_only() {
        let vectors = vec![("p".to_string(), unit(0.0)), ("q".to_string(), unit(5.0)), ("z".to_string(), unit(90.0))];
        let labels = vec![photo("p", "l", &["q"]), photo("q", "l", &["p"]), photo("z", "m", &[])];
        let r = evaluate(&vectors, &labels, 9);
        assert_eq!((r.raw.queries, r.dedup.queries), (2, 0));
        assert_eq!(r.raw.p_at_1, 1.0);
        assert!(r.lines().contains(&"eval.dedup.recall_at_9=0.0000".to_string()));
    }
}
