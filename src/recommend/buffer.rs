//! A per-ad candidate buffer: the exact top-K' of the catalogue under the
//! ad's filter, kept exact through inserts and removals, so most catalogue
//! changes never need a store query (top-k' buffers, Yi et al., ICDE 2003).
//!
//! Invariant: every qualifying product outside the buffer ranks after
//! `bound` (by score, then product id). So as long as the buffer holds at
//! least K items (or nothing lies outside it), its first K are the exact
//! top-K; only when removals shrink it below K must it be refilled.

use std::cmp::Ordering;
use std::sync::Arc;

use crate::events::ListItem;

/// Ranking order: score descending, then product id ascending (deterministic ties).
pub fn rank_order(a: &ListItem, b: &ListItem) -> Ordering {
    // `+ 0.0` folds -0.0 into 0.0: two sums of the same terms may differ only in that sign.
    (b.score + 0.0).total_cmp(&(a.score + 0.0)).then_with(|| a.product_id.cmp(&b.product_id))
}

/// A product as buffers hold it: one allocation shared by every buffer the
/// product enters (at 100k ads × K' entries, strings per entry cost hundreds
/// of MB), with id and image in one string (one heap block, not two).
#[derive(Debug, PartialEq)]
pub struct Product {
    /// Id followed by image URL.
    text: Box<str>,
    /// Byte length of the id within `text`.
    id_len: usize,
}

impl Product {
    /// A shareable product from its id and image.
    pub fn shared(id: &str, image_url: &str) -> Arc<Self> {
        let mut text = String::with_capacity(id.len() + image_url.len());
        text.push_str(id);
        text.push_str(image_url);
        Arc::new(Self { text: text.into_boxed_str(), id_len: id.len() })
    }

    /// Product id.
    pub fn id(&self) -> &str {
        &self.text[..self.id_len]
    }

    /// Its image (published with the list).
    pub fn image_url(&self) -> &str {
        &self.text[self.id_len..]
    }
}

/// One buffered product with its score for the buffer's ad.
#[derive(Debug, Clone, PartialEq)]
struct Entry {
    score: f32,
    product: Arc<Product>,
}

impl Entry {
    fn of(item: ListItem) -> Self {
        Self { score: item.score, product: Product::shared(&item.product_id, &item.image_url) }
    }

    fn item(&self) -> ListItem {
        ListItem {
            product_id: self.product.id().to_string(),
            score: self.score,
            image_url: self.product.image_url().to_string(),
        }
    }

    /// [`rank_order`] on entries.
    fn order(&self, other: &Self) -> Ordering {
        (other.score + 0.0).total_cmp(&(self.score + 0.0)).then_with(|| self.product.id().cmp(other.product.id()))
    }
}

/// Candidates of one ad.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TopBuffer {
    /// Best first, at most `capacity` items.
    items: Vec<Entry>,
    /// Best product outside the buffer at the last fill or overflow; `None`
    /// means nothing qualifying lies outside.
    bound: Option<Entry>,
    capacity: usize,
}

impl TopBuffer {
    /// A buffer from a store answer: the top `capacity + 1` hits, best first.
    pub fn from_hits(mut hits: Vec<ListItem>, capacity: usize) -> Self {
        hits.sort_by(rank_order);
        let bound = (hits.len() > capacity).then(|| Entry::of(hits.remove(capacity)));
        hits.truncate(capacity);
        // Room for one overflow before the pop: never grows past it, so no
        // doubling slack (at 100k ads that slack is tens of MB).
        let mut items = Vec::with_capacity(capacity + 1);
        items.extend(hits.into_iter().map(Entry::of));
        Self { items, bound, capacity }
    }

    /// The first `k` items: the exact top-k when [`TopBuffer::can_answer`].
    pub fn top(&self, k: usize) -> Vec<ListItem> {
        self.items.iter().take(k).map(Entry::item).collect()
    }

    /// Whether the first `k` items are provably the top-k.
    pub fn can_answer(&self, k: usize) -> bool {
        self.items.len() >= k || self.bound.is_none()
    }

    /// Ids of every buffered product, best first.
    pub fn ids(&self) -> impl Iterator<Item = &str> {
        self.items.iter().map(|e| e.product.id())
    }

    /// The score a product must reach to enter (`None`: anything qualifying enters).
    pub fn entry_threshold(&self) -> Option<f32> {
        self.bound.as_ref().map(|b| b.score + 0.0)
    }

    /// Whether the buffer holds this product.
    pub fn contains(&self, product_id: &str) -> bool {
        self.ids().any(|id| id == product_id)
    }

    /// Drop a product (deleted, changed, or no longer qualifying).
    pub fn remove(&mut self, product_id: &str) -> bool {
        let before = self.items.len();
        self.items.retain(|e| e.product.id() != product_id);
        self.items.len() != before
    }

    /// Offer a qualifying product with its score; kept only if it ranks
    /// before the bound. Returns whether the buffer changed.
    pub fn offer(&mut self, score: f32, product: &Arc<Product>) -> bool {
        let entry = Entry { score, product: product.clone() };
        if self.bound.as_ref().is_some_and(|b| entry.order(b) != Ordering::Less) {
            return false;
        }
        let at = self.items.partition_point(|e| e.order(&entry) == Ordering::Less);
        self.items.insert(at, entry);
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
        assert!(!b.offer(0.6, &Product::shared("d", "")), "ranks after the bound: outside");
        assert!(b.offer(0.85, &Product::shared("e", "")));
        assert_eq!(b.top(2), [item("a", 0.9), item("e", 0.85)]);
        // b (0.8) was evicted and is the new bound; c (0.7) ranks after it.
        assert!(b.remove("a"));
        assert!(!b.can_answer(2), "one left and products outside: refill needed");
        assert!(b.can_answer(1));
    }

    #[test]
    fn a_shared_product_gives_back_its_id_and_image() {
        let p = Product::shared("sku-é1", "https://cdn.example/p/1.jpg");
        assert_eq!((p.id(), p.image_url()), ("sku-é1", "https://cdn.example/p/1.jpg"));
        let bare = Product::shared("x", "");
        assert_eq!((bare.id(), bare.image_url()), ("x", ""));
    }

    #[test]
    fn ties_go_to_the_smaller_id() {
        let mut b = TopBuffer::from_hits(vec![item("m", 0.5)], 3);
        assert!(b.offer(0.5, &Product::shared("z", "")));
        assert!(b.offer(0.5, &Product::shared("a", "")));
        let ids: Vec<_> = b.ids().collect();
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
