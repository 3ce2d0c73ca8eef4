//! A per-ad candidate buffer: the exact top-K' of the catalogue under the
//! ad's filter, kept exact through inserts and removals, so most catalogue
//! changes never need a store query (top-k' buffers, Yi et al., ICDE 2003).
//!
//! Invariant: every qualifying product outside the buffer ranks after
//! `bound` (by score, then product id). So as long as the buffer holds at
//! least K items (or nothing lies outside it), its first K are the exact
//! top-K; only when removals shrink it below K must it be refilled.

use std::cmp::Ordering;

use crate::events::ListItem;

/// Ranking order: score descending, then product id ascending (deterministic ties).
pub fn rank_order(a: &ListItem, b: &ListItem) -> Ordering {
    // `+ 0.0` folds -0.0 into 0.0: two sums of the same terms may differ only in that sign.
    (b.score + 0.0).total_cmp(&(a.score + 0.0)).then_with(|| a.product_id.cmp(&b.product_id))
}

/// Candidates of one ad.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TopBuffer {
    /// Best first, at most `capacity` items.
    items: Vec<ListItem>,
    /// Best product outside the buffer at the last fill or overflow; `None`
    /// means nothing qualifying lies outside.
    bound: Option<ListItem>,
    capacity: usize,
}

impl TopBuffer {
    /// A buffer from a store answer: the top `capacity + 1` hits, best first.
    pub fn from_hits(mut hits: Vec<ListItem>, capacity: usize) -> Self {
        hits.sort_by(rank_order);
        let bound = (hits.len() > capacity).then(|| hits.remove(capacity));
        hits.truncate(capacity);
        Self { items: hits, bound, capacity }
    }

    /// The first `k` items: the exact top-k when [`TopBuffer::can_answer`].
    pub fn top(&self, k: usize) -> &[ListItem] {
        &self.items[..k.min(self.items.len())]
    }

    /// Whether the first `k` items are provably the top-k.
    pub fn can_answer(&self, k: usize) -> bool {
        self.items.len() >= k || self.bound.is_none()
    }

    /// Every buffered item, best first.
    pub fn items(&self) -> &[ListItem] {
        &self.items
    }

    /// The score a product must reach to enter (`None`: anything qualifying enters).
    pub fn entry_threshold(&self) -> Option<f32> {
        self.bound.as_ref().map(|b| b.score + 0.0)
    }

    /// Whether the buffer holds this product.
    pub fn contains(&self, product_id: &str) -> bool {
        self.items.iter().any(|i| i.product_id == product_id)
    }

    /// Drop a product (deleted, changed, or no longer qualifying).
    pub fn remove(&mut self, product_id: &str) -> bool {
        let before = self.items.len();
        self.items.retain(|i| i.product_id != product_id);
        self.items.len() != before
    }

    /// Offer a qualifying product with its score; kept only if it ranks
    /// before the bound. Returns whether the buffer changed.
    pub fn offer(&mut self, item: ListItem) -> bool {
        if self.bound.as_ref().is_some_and(|b| rank_order(&item, b) != Ordering::Less) {
            return false;
        }
        let at = self.items.partition_point(|i| rank_order(i, &item) == Ordering::Less);
        self.items.insert(at, item);
        if self.items.len() > self.capacity {
            // The evicted item is now the best one outside.
            self.bound = self.items.pop();
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(id: &str, score: f32) -> ListItem {
        ListItem { product_id: id.into(), score, image_url: String::new() }
    }

    #[test]
    fn keeps_the_best_and_tracks_the_bound() {
        let mut b = TopBuffer::from_hits(vec![item("a", 0.9), item("b", 0.8), item("c", 0.7)], 2);
        assert_eq!(b.top(2), [item("a", 0.9), item("b", 0.8)]);
        assert!(!b.offer(item("d", 0.6)), "ranks after the bound: outside");
        assert!(b.offer(item("e", 0.85)));
        assert_eq!(b.top(2), [item("a", 0.9), item("e", 0.85)]);
        // b (0.8) was evicted and is the new bound; c (0.7) ranks after it.
        assert!(b.remove("a"));
        assert!(!b.can_answer(2), "one left and products outside: refill needed");
        assert!(b.can_answer(1));
    }

    #[test]
    fn ties_go_to_the_smaller_id() {
        let mut b = TopBuffer::from_hits(vec![item("m", 0.5)], 3);
        assert!(b.offer(item("z", 0.5)));
        assert!(b.offer(item("a", 0.5)));
        let ids: Vec<_> = b.top(3).iter().map(|i| i.product_id.as_str()).collect();
        assert_eq!(ids, ["a", "m", "z"]);
    }

    #[test]
    fn exhausted_catalogue_answers_with_fewer_than_k() {
        let mut b = TopBuffer::from_hits(vec![item("a", 0.1)], 4);
        assert!(b.can_answer(4));
        b.remove("a");
        assert!(b.can_answer(4));
        assert!(b.top(4).is_empty());
    }
}
