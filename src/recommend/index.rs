//! The ads a product event must look at, without scoring every ad.
//!
//! Each slot holds its ad's vector (shared with the ad's record, not copied:
//! at 100k ads a copy is 200 MB) next to its [`TopBuffer`]. Ads are grouped around centroids (spherical k-means, redone
//! as the ad set doubles); each ad keeps the cosine to its centroid. By the
//! triangle inequality on angles, `angle(a, p) >= |angle(c, p) - angle(c, a)|`,
//! so one dot product per centroid bounds the score of every ad in the group:
//! `cos(a, p) <= cos(c,p)·cos(c,a) + sin(c,p)·sin(c,a)`. An ad whose bound is
//! below the score a product needs to enter its buffer is skipped unscored.
//! The bound is widened by a margin for float error, so skipping is exact:
//! grouping quality changes only the speed, never the lists.
//!
//! A reverse index (product → slots that may hold it) finds the buffers a
//! changed or deleted product must leave without scanning them all. It may
//! hold stale entries (evictions do not remove them); it is compacted when it
//! grows past twice the buffered items.

use std::collections::HashMap;
use std::sync::Arc;

use super::buffer::{Product, TopBuffer};
use super::score::dot;
use crate::events::AdFilter;

/// Absolute error allowed for a cosine computed in `f32` (far above the
/// rounding error of a 1280-d dot product, far below any score gap that matters).
const COS_MARGIN: f64 = 1e-4;
/// Score slack when comparing a bound with an entry threshold.
const SCORE_MARGIN: f32 = 1e-5;
/// Fewer live ads than this are scored exhaustively (grouping would not pay).
const MIN_ADS_TO_GROUP: usize = 64;
/// Ads sampled to fit centroids (assignment then covers every ad).
const KMEANS_SAMPLE: usize = 20_000;
const KMEANS_ROUNDS: usize = 4;

/// One ad's place in the index.
#[derive(Debug, Clone)]
struct Slot {
    ad_id: String,
    buffer: TopBuffer,
    /// Index into [`AdIndex::filters`].
    filter: u32,
}

/// Per-slot scalars the pruning scan reads (structure of arrays, so the scan
/// is a tight loop over contiguous memory).
#[derive(Debug, Default)]
struct Bounds {
    /// Group of each slot (`u32::MAX` for free slots).
    group: Vec<u32>,
    /// |a|.
    norm: Vec<f32>,
    /// cos(c, a) and an upper bound on |cos(c, a)| error-widened.
    cos_c: Vec<f32>,
    /// Upper bound on sin(c, a).
    sin_c: Vec<f32>,
    /// Score a product must reach to enter the buffer (−∞: anything enters;
    /// +∞: free slot).
    threshold: Vec<f32>,
    /// Position of the slot in its group's member list.
    pos: Vec<u32>,
}

/// What holds for every member of a group, so that one test can skip the
/// whole group. Removals leave the bounds loose (still valid); a scan of the
/// members tightens them again.
#[derive(Debug, Clone)]
struct Group {
    members: Vec<u32>,
    /// Range of the members' cos(c, a).
    cos_min: f32,
    cos_max: f32,
    /// Largest sin bound of any member.
    sin_max: f32,
    /// Largest |a|.
    norm_max: f32,
    /// At most the lowest entry threshold of any member.
    threshold_min: f32,
}

impl Group {
    fn empty() -> Self {
        Self {
            members: Vec::new(),
            cos_min: f32::INFINITY,
            cos_max: f32::NEG_INFINITY,
            sin_max: 0.0,
            norm_max: 0.0,
            threshold_min: f32::INFINITY,
        }
    }

    fn admit(&mut self, cos: f32, sin: f32, norm: f32, threshold: f32) {
        self.cos_min = self.cos_min.min(cos);
        self.cos_max = self.cos_max.max(cos);
        self.sin_max = self.sin_max.max(sin);
        self.norm_max = self.norm_max.max(norm);
        self.threshold_min = self.threshold_min.min(threshold);
    }
}

/// Ads with their buffers, grouped for pruned scans.
#[derive(Debug, Default)]
pub struct AdIndex {
    dim: usize,
    slot_of: HashMap<String, usize>,
    slots: Vec<Option<Slot>>,
    /// Each slot's ad vector, exactly `dim` long (empty for free slots).
    rows: Vec<Arc<[f32]>>,
    free: Vec<usize>,
    bounds: Bounds,
    /// Unit centroids, `dim` floats each.
    centroids: Vec<f32>,
    /// One per centroid.
    groups: Vec<Group>,
    /// Live slots when the groups were last fitted.
    grouped_at: usize,
    /// Reverse index keyed by a 64-bit hash of the product id, not the id
    /// (a string per listed product): a collision only adds a slot to check.
    listed: HashMap<u64, Vec<u32>>,
    listed_entries: usize,
    /// Distinct ad filters (most ads share a few), so a product is checked
    /// once per filter rather than once per ad. Never shrinks: bounded by
    /// the distinct filters ever seen.
    filters: Vec<AdFilter>,
    filter_ids: HashMap<String, u32>,
    /// Whether [`AdIndex::extend`] is adding ads (grouping waits for the end).
    deferred: bool,
    /// Entries right after the last compaction (all live then).
    listed_compacted: usize,
}

fn norm(v: &[f32]) -> f32 {
    dot(v, v).sqrt()
}

impl AdIndex {
    /// Live ads indexed.
    pub fn len(&self) -> usize {
        self.slot_of.len()
    }

    /// Whether this ad has a buffer.
    pub fn contains(&self, ad_id: &str) -> bool {
        self.slot_of.contains_key(ad_id)
    }

    /// The buffer of an ad.
    pub fn buffer(&self, ad_id: &str) -> Option<&TopBuffer> {
        self.slot_of.get(ad_id).and_then(|s| self.slots[*s].as_ref()).map(|s| &s.buffer)
    }

    fn row(&self, slot: usize) -> &[f32] {
        &self.rows[slot]
    }

    fn filter_id(&mut self, filter: &AdFilter) -> u32 {
        // The canonical JSON form is the key (filters hold maps and floats-free values).
        let key = serde_json::to_string(filter).unwrap_or_default();
        if let Some(id) = self.filter_ids.get(&key) {
            return *id;
        }
        let id = self.filters.len() as u32;
        self.filters.push(filter.clone());
        self.filter_ids.insert(key, id);
        id
    }

    /// Index many ads at once; grouping is fitted once at the end.
    pub fn extend<'a>(&mut self, ads: impl IntoIterator<Item = (&'a str, &'a Arc<[f32]>, &'a AdFilter, TopBuffer)>) {
        self.deferred = true;
        for (ad_id, vector, filter, buffer) in ads {
            self.insert(ad_id, vector, filter, buffer);
        }
        self.deferred = false;
        // Freshly built, the reverse index holds no stale entries: without
        // this the first offer would rebuild it needlessly (~1 s at 100k ads).
        self.listed_compacted = self.listed_entries;
        if self.len() >= MIN_ADS_TO_GROUP {
            self.regroup();
        }
    }

    /// Index an ad (replacing any previous entry) with its filled buffer.
    pub fn insert(&mut self, ad_id: &str, vector: &Arc<[f32]>, filter: &AdFilter, buffer: TopBuffer) {
        self.remove(ad_id);
        if self.dim == 0 {
            self.dim = vector.len().max(1);
        }
        let slot = match self.free.pop() {
            Some(s) => s,
            None => {
                self.slots.push(None);
                self.rows.push(Arc::from(Vec::new()));
                let b = &mut self.bounds;
                b.group.push(u32::MAX);
                b.norm.push(0.0);
                b.cos_c.push(0.0);
                b.sin_c.push(0.0);
                b.threshold.push(f32::INFINITY);
                b.pos.push(0);
                self.slots.len() - 1
            }
        };
        // Vectors of another length are zero-padded or truncated (so the
        // bounds and `dot` see the same vector); the usual one is shared.
        self.rows[slot] = if vector.len() == self.dim {
            vector.clone()
        } else {
            let mut row = vec![0.0; self.dim];
            let n = vector.len().min(self.dim);
            row[..n].copy_from_slice(&vector[..n]);
            row.into()
        };
        for id in buffer.ids() {
            self.listed.entry(listed_key(id)).or_default().push(slot as u32);
            self.listed_entries += 1;
        }
        let filter = self.filter_id(filter);
        self.slots[slot] = Some(Slot { ad_id: ad_id.to_string(), buffer, filter });
        self.slot_of.insert(ad_id.to_string(), slot);
        self.bounds.norm[slot] = norm(self.row(slot));
        self.sync_threshold(slot);
        if self.deferred {
            self.bounds.group[slot] = u32::MAX - 1; // scored exhaustively until grouped
        } else if self.len() >= MIN_ADS_TO_GROUP && self.len() >= 2 * self.grouped_at {
            self.regroup();
        } else {
            self.assign(slot);
        }
    }

    /// Drop an ad and its buffer.
    pub fn remove(&mut self, ad_id: &str) -> Option<TopBuffer> {
        let slot = self.slot_of.remove(ad_id)?;
        let removed = self.slots[slot].take().map(|s| s.buffer);
        self.leave_group(slot);
        self.rows[slot] = Arc::from(Vec::new());
        self.bounds.threshold[slot] = f32::INFINITY;
        self.free.push(slot);
        removed
    }

    /// Drop every ad `keep` rejects.
    pub fn retain(&mut self, mut keep: impl FnMut(&str) -> bool) {
        let gone: Vec<String> = self.slot_of.keys().filter(|id| !keep(id)).cloned().collect();
        for id in gone {
            self.remove(&id);
        }
    }

    fn sync_threshold(&mut self, slot: usize) {
        if let Some(s) = &self.slots[slot] {
            let t = s.buffer.entry_threshold().unwrap_or(f32::NEG_INFINITY);
            self.bounds.threshold[slot] = t;
            // A lower entry score must lower the group's bound at once; a higher one may wait.
            if let Some(g) = self.groups.get_mut(self.bounds.group[slot] as usize) {
                g.threshold_min = g.threshold_min.min(t);
            }
        }
    }

    /// Take a slot out of its group's member list.
    fn leave_group(&mut self, slot: usize) {
        let b = &mut self.bounds;
        if let Some(g) = self.groups.get_mut(b.group[slot] as usize) {
            let at = b.pos[slot] as usize;
            g.members.swap_remove(at);
            if let Some(&moved) = g.members.get(at) {
                b.pos[moved as usize] = at as u32;
            }
        }
        b.group[slot] = u32::MAX;
    }

    /// Put a slot in its nearest group and record its bound terms.
    fn assign(&mut self, slot: usize) {
        let groups = self.centroids.len() / self.dim.max(1);
        if groups == 0 {
            return;
        }
        let row = self.row(slot);
        let (best, cos) = (0..groups)
            .map(|g| (g, dot(&self.centroids[g * self.dim..(g + 1) * self.dim], row)))
            .max_by(|a, b| a.1.total_cmp(&b.1))
            .unwrap_or((0, 0.0));
        self.set_group(slot, best, cos);
    }

    fn set_group(&mut self, slot: usize, group: usize, dot_c: f32) {
        self.leave_group(slot);
        let n = self.bounds.norm[slot];
        let b = &mut self.bounds;
        b.group[slot] = group as u32;
        if n <= 0.0 {
            // A zero vector scores 0 with everything: bound exactly 0.
            b.cos_c[slot] = 0.0;
            b.sin_c[slot] = 0.0;
        } else {
            let cos = (dot_c / n) as f64;
            b.cos_c[slot] = cos as f32;
            // Upper bound on sin over the error interval of cos.
            let lo = (cos.abs() - COS_MARGIN).max(0.0);
            b.sin_c[slot] = ((1.0 - lo * lo).max(0.0).sqrt()) as f32;
        }
        if let Some(g) = self.groups.get_mut(group) {
            b.pos[slot] = g.members.len() as u32;
            g.members.push(slot as u32);
            g.admit(b.cos_c[slot], b.sin_c[slot], n, b.threshold[slot]);
        }
    }

    /// Fit centroids on (a sample of) the live ads and regroup every slot.
    fn regroup(&mut self) {
        let live: Vec<usize> = self.slot_of.values().copied().collect();
        let groups = ((live.len() as f64).sqrt().round() as usize).clamp(1, 1024);
        let dim = self.dim;
        let step = (live.len() / KMEANS_SAMPLE).max(1);
        let mut sample: Vec<usize> = live.iter().copied().step_by(step).collect();
        sample.sort_unstable();
        let unit = |v: &mut [f32]| {
            let n = norm(v);
            if n > 0.0 {
                v.iter_mut().for_each(|x| *x /= n);
            }
        };
        // Evenly spaced seeds (deterministic), then Lloyd rounds on the sample.
        let mut centroids = Vec::with_capacity(groups * dim);
        for g in 0..groups {
            let mut c = self.row(sample[g * sample.len() / groups]).to_vec();
            unit(&mut c);
            centroids.extend(c);
        }
        for _ in 0..KMEANS_ROUNDS {
            let mut sums = vec![0.0f32; groups * dim];
            for &s in &sample {
                let row = self.row(s);
                let g = nearest(&centroids, dim, row).0;
                sums[g * dim..(g + 1) * dim].iter_mut().zip(row).for_each(|(a, x)| *a += x);
            }
            for g in 0..groups {
                let sum = &mut sums[g * dim..(g + 1) * dim];
                if norm(sum) > 0.0 {
                    unit(sum);
                    centroids[g * dim..(g + 1) * dim].copy_from_slice(sum);
                }
            }
        }
        self.centroids = centroids;
        self.groups = vec![Group::empty(); groups];
        for s in live.iter().copied() {
            self.bounds.group[s] = u32::MAX; // its old group is gone
        }
        for s in live.iter().copied() {
            let (g, cos) = nearest(&self.centroids, dim, self.row(s));
            self.set_group(s, g, cos);
        }
        self.grouped_at = live.len();
    }

    /// Remove a product from every buffer holding it; the ads whose buffer changed.
    pub fn leave(&mut self, product_id: &str) -> Vec<String> {
        let key = listed_key(product_id);
        let slots = self.listed.remove(&key).unwrap_or_default();
        self.listed_entries -= slots.len();
        let mut touched = Vec::new();
        let mut others = Vec::new();
        for slot in slots {
            match self.remove_from(slot as usize, product_id) {
                Some(ad_id) => touched.push(ad_id.to_string()),
                None => others.push(slot),
            }
        }
        // Entries that were not this product's may belong to another product
        // with the same key; keep them (stale ones go at the next compaction).
        if !others.is_empty() {
            self.listed_entries += others.len();
            self.listed.insert(key, others);
        }
        touched
    }

    /// Remove a product from the buffer of `slot`; returns the ad id if it was there.
    fn remove_from(&mut self, slot: usize, product_id: &str) -> Option<&str> {
        let removed = self.slots.get_mut(slot)?.as_mut().is_some_and(|s| s.buffer.remove(product_id));
        if !removed {
            return None;
        }
        self.sync_threshold(slot);
        self.slots[slot].as_ref().map(|s| s.ad_id.as_str())
    }

    /// For each product: the slots whose ad accepts it (`accepts`, given the
    /// product's position, is asked once per distinct filter) and whose
    /// buffer it can enter, with the exact score; every slot not returned
    /// provably cannot take it. Group by group, each ad row is scored against
    /// every product of the batch its bound lets through while it is in
    /// cache: a catalogue scan is memory-bound otherwise. Tightens the bounds
    /// of the groups it scans on the way.
    pub fn candidates_batch(
        &mut self,
        vectors: &[&[f32]],
        accepts: impl Fn(usize, &AdFilter) -> bool,
    ) -> Vec<Vec<(u32, f32)>> {
        let dim = self.dim;
        let n = vectors.len();
        let p_norm: Vec<f32> = vectors.iter().map(|v| norm(v)).collect();
        // Per product and filter: 0 not asked yet, 1 accepts, 2 rejects.
        let filters_n = self.filters.len();
        let mut verdict = vec![0u8; n * filters_n];
        let (slots, filters, b, rows) = (&self.slots, &self.filters, &self.bounds, &self.rows);
        let mut out: Vec<Vec<(u32, f32)>> = vec![Vec::new(); n];
        // Score slot `s` against product `j` if the ad accepts it; keep it if it can enter.
        let mut consider = |s: usize, j: usize, out: &mut Vec<Vec<(u32, f32)>>| {
            let Some(f) = slots[s].as_ref().map(|slot| slot.filter as usize) else { return };
            let v = &mut verdict[j * filters_n + f];
            if *v == 0 {
                *v = if accepts(j, &filters[f]) { 1 } else { 2 };
            }
            if *v == 1 {
                let score = dot(&rows[s], vectors[j]);
                // Below the entry score the buffer rejects it anyway (ties go to `offer`).
                if score >= b.threshold[s] {
                    out[j].push((s as u32, score));
                }
            }
        };
        if self.groups.is_empty() {
            for s in 0..b.threshold.len() {
                if b.threshold[s] != f32::INFINITY {
                    (0..n).for_each(|j| consider(s, j, &mut out));
                }
            }
            return out;
        }
        let margin = COS_MARGIN as f32;
        let mut tightened = Vec::new();
        // Products a group's bound lets through, with their cos and sin bound to its centroid.
        let mut through: Vec<(usize, f32, f32)> = Vec::with_capacity(n);
        for (g, group) in self.groups.iter().enumerate() {
            if group.members.is_empty() {
                continue;
            }
            let centroid = &self.centroids[g * dim..(g + 1) * dim];
            through.clear();
            for (j, vector) in vectors.iter().enumerate() {
                if p_norm[j] <= 0.0 {
                    // A zero vector scores 0 with every ad: no bound needed.
                    through.push((j, 0.0, 1.0));
                    continue;
                }
                let cos = (dot(centroid, vector) / p_norm[j]) as f64;
                let lo = (cos.abs() - COS_MARGIN).max(0.0);
                let (cos_p, sin_p) = (cos as f32, (1.0 - lo * lo).max(0.0).sqrt() as f32);
                // The whole group: each term of the per-ad bound at its members' worst.
                let c = if cos_p >= 0.0 { group.cos_max } else { group.cos_min };
                let err = margin * (1.0 + margin + cos_p.abs() + margin);
                let bound = (cos_p * c + err + sin_p * group.sin_max).clamp(0.0, 1.0);
                if group.threshold_min == f32::NEG_INFINITY
                    || bound * group.norm_max * p_norm[j] + SCORE_MARGIN >= group.threshold_min
                {
                    through.push((j, cos_p, sin_p));
                }
            }
            if through.is_empty() {
                continue;
            }
            let mut fresh = Group::empty();
            for &s in &group.members {
                let s = s as usize;
                let (t, c, sin_c, a_norm) = (b.threshold[s], b.cos_c[s], b.sin_c[s], b.norm[s]);
                fresh.admit(c, sin_c, a_norm, t);
                for &(j, cos_p, sin_p) in &through {
                    if t != f32::NEG_INFINITY && p_norm[j] > 0.0 {
                        // cos(θcp − θca) plus the error of both cosines.
                        let cos_bound = cos_p * c + margin * (c.abs() + cos_p.abs() + margin) + sin_p * sin_c;
                        if cos_bound.min(1.0) * a_norm * p_norm[j] + SCORE_MARGIN < t {
                            continue;
                        }
                    }
                    consider(s, j, &mut out);
                }
            }
            tightened.push((g, fresh));
        }
        for (g, fresh) in tightened {
            let members = std::mem::take(&mut self.groups[g].members);
            self.groups[g] = Group { members, ..fresh };
        }
        out
    }

    /// Offer an item to the buffer of `slot`; returns the ad id if it changed.
    pub fn offer(&mut self, slot: u32, score: f32, product: &Arc<Product>) -> Option<&str> {
        let slot = slot as usize;
        let changed = self.slots.get_mut(slot)?.as_mut().is_some_and(|s| s.buffer.offer(score, product));
        if !changed {
            return None;
        }
        self.listed.entry(listed_key(product.id())).or_default().push(slot as u32);
        self.listed_entries += 1;
        self.sync_threshold(slot);
        self.compact_listed();
        self.slots[slot].as_ref().map(|s| s.ad_id.as_str())
    }

    /// Rebuild the reverse index from the buffers once stale entries dominate.
    fn compact_listed(&mut self) {
        if self.listed_entries <= 2 * self.listed_compacted + 1024 {
            return;
        }
        self.listed.clear();
        for (slot, s) in self.slots.iter().enumerate() {
            if let Some(s) = s {
                for id in s.buffer.ids() {
                    self.listed.entry(listed_key(id)).or_default().push(slot as u32);
                }
            }
        }
        self.listed_entries = self.listed.values().map(Vec::len).sum();
        self.listed_compacted = self.listed_entries;
    }
}

/// Reverse-index key of a product id (fixed-key SipHash: the same in every run).
fn listed_key(product_id: &str) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::hash::DefaultHasher::new();
    product_id.hash(&mut h);
    h.finish()
}

fn nearest(centroids: &[f32], dim: usize, row: &[f32]) -> (usize, f32) {
    (0..centroids.len() / dim)
        .map(|g| (g, dot(&centroids[g * dim..(g + 1) * dim], row)))
        .max_by(|a, b| a.1.total_cmp(&b.1))
        .unwrap_or((0, 0.0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::ListItem;
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    fn near(rng: &mut StdRng, c: &[f32], spread: f32) -> Vec<f32> {
        let mut v: Vec<f32> = c.iter().map(|x| x + rng.random_range(-spread..spread)).collect();
        let n = norm(&v);
        v.iter_mut().for_each(|x| *x /= n);
        v
    }

    /// No ad that a product could enter is ever pruned, whatever the grouping,
    /// thresholds or vector lengths; and on clustered data most ads are pruned.
    #[test]
    fn pruning_never_skips_an_ad_the_product_could_enter() {
        let mut rng = StdRng::seed_from_u64(7);
        let dim = 32;
        let centres: Vec<Vec<f32>> =
            (0..8).map(|_| (0..dim).map(|_| rng.random_range(-1.0f32..1.0)).collect()).collect();
        let mut index = AdIndex::default();
        let mut vectors = Vec::new();
        for a in 0..600 {
            let centre = &centres[rng.random_range(0..centres.len())];
            let mut v = near(&mut rng, centre, 0.4);
            if a % 50 == 0 {
                v.iter_mut().for_each(|x| *x *= 3.0); // not unit length
            }
            // A buffer whose bound is the score of a product of the ad's own
            // cluster, or no bound at all (anything enters) for some ads.
            let hits: Vec<ListItem> = (0..3)
                .map(|i| {
                    let p = near(&mut rng, centre, 0.4);
                    ListItem { product_id: format!("h{a}-{i}"), score: dot(&v, &p), image_url: String::new() }
                })
                .collect();
            let capacity = if a % 7 == 0 { 3 } else { 2 };
            index.insert(
                &format!("a{a}"),
                &Arc::from(v.clone()),
                &AdFilter::default(),
                TopBuffer::from_hits(hits, capacity),
            );
            vectors.push(v);
        }
        for a in (0..600).step_by(5) {
            index.remove(&format!("a{a}"));
        }
        let mut scored = 0;
        let products = 300;
        for _ in 0..products {
            let c = rng.random_range(0..centres.len());
            let p = near(&mut rng, &centres[c], 0.4);
            let found: HashMap<u32, f32> = index.candidates_batch(&[&p], |_, _| true).concat().into_iter().collect();
            scored += found.len();
            for (a, v) in vectors.iter().enumerate() {
                let Some(&slot) = index.slot_of.get(&format!("a{a}")) else { continue };
                let threshold = index.bounds.threshold[slot];
                let score = dot(v, &p);
                if score >= threshold {
                    assert_eq!(found.get(&(slot as u32)), Some(&score), "ad a{a} could take the product");
                }
            }
        }
        assert!(index.centroids.len() / dim > 1, "grouped");
        assert!(scored < products * index.len() / 2, "most ads pruned: {scored} scored");
    }

    /// Scoring a batch gives each product exactly what scoring it alone
    /// gives, and asks each distinct filter once per product.
    #[test]
    fn a_batch_equals_single_products_and_respects_filters() {
        let mut rng = StdRng::seed_from_u64(11);
        let dim = 16;
        let centres: Vec<Vec<f32>> =
            (0..4).map(|_| (0..dim).map(|_| rng.random_range(-1.0f32..1.0)).collect()).collect();
        let filters = [
            AdFilter::default(),
            AdFilter { in_stock: Some(true), ..Default::default() },
            AdFilter { in_stock: Some(false), ..Default::default() },
        ];
        let mut index = AdIndex::default();
        for a in 0..200 {
            let v = near(&mut rng, &centres[a % 4], 0.3);
            let hits: Vec<ListItem> = (0..2)
                .map(|i| ListItem { product_id: format!("h{a}-{i}"), score: 0.5, image_url: String::new() })
                .collect();
            index.insert(&format!("a{a}"), &Arc::from(v), &filters[a % 3], TopBuffer::from_hits(hits, 1));
        }
        let products: Vec<(Vec<f32>, bool)> =
            (0..40).map(|i| (near(&mut rng, &centres[i % 4], 0.3), i % 2 == 0)).collect();
        let vectors: Vec<&[f32]> = products.iter().map(|(v, _)| v.as_slice()).collect();
        let asked = std::cell::Cell::new(0);
        let accepts = |j: usize, f: &AdFilter| {
            asked.set(asked.get() + 1);
            f.in_stock.is_none_or(|want| want == products[j].1)
        };
        let batch = index.candidates_batch(&vectors, accepts);
        assert!(asked.get() <= products.len() * filters.len(), "each filter asked at most once per product");
        for (j, v) in vectors.iter().enumerate() {
            let single = index.candidates_batch(&[v], |_, f| f.in_stock.is_none_or(|want| want == products[j].1));
            let mut a = batch[j].clone();
            let mut b = single.concat();
            a.sort_by_key(|c| c.0);
            b.sort_by_key(|c| c.0);
            assert_eq!(a, b, "product {j}");
            for (slot, _) in &a {
                let filter = &index.filters[index.slots[*slot as usize].as_ref().map_or(0, |s| s.filter as usize)];
                assert!(filter.in_stock.is_none_or(|want| want == products[j].1), "filter respected");
            }
        }
        assert!(batch.iter().any(|c| !c.is_empty()), "some products enter some buffers");
    }
}
