//! The live view of published lists: the latest list per ad, in memory,
//! plus a broadcast of every change, fed by [`crate::sink::live::LiveSink`]
//! and read by the preview page.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use tokio::sync::broadcast;

use crate::events::RecommendationList;

/// Changes buffered per slow subscriber before it must resynchronise.
const CHANNEL_CAPACITY: usize = 1024;

/// One published change: an ad's new list, or `None` when the ad is gone.
#[derive(Debug, Clone)]
pub struct ListChange {
    /// The ad.
    pub ad_id: String,
    /// Its new list (`None`: tombstone).
    pub list: Option<Arc<RecommendationList>>,
}

/// The latest published list per ad and a channel of changes.
#[derive(Clone)]
pub struct LiveLists {
    lists: Arc<RwLock<BTreeMap<String, Arc<RecommendationList>>>>,
    changes: broadcast::Sender<ListChange>,
}

impl Default for LiveLists {
    fn default() -> Self {
        Self { lists: Arc::default(), changes: broadcast::channel(CHANNEL_CAPACITY).0 }
    }
}

impl LiveLists {
    /// Record a published value (after the sink made it durable) and tell subscribers.
    /// An older version than the one held is ignored (a seed arriving after a publication).
    pub fn apply(&self, ad_id: &str, list: Option<&RecommendationList>) {
        let list = list.map(|l| Arc::new(l.clone()));
        let len = {
            let Ok(mut lists) = self.lists.write() else { return };
            match &list {
                Some(new) => {
                    if lists.get(ad_id).is_some_and(|old| old.version > new.version) {
                        return;
                    }
                    lists.insert(ad_id.to_string(), new.clone());
                }
                None => {
                    lists.remove(ad_id);
                }
            }
            lists.len()
        };
        crate::telemetry::live_lists(len);
        // No subscriber is not an error: nobody is watching.
        let _ = self.changes.send(ListChange { ad_id: ad_id.to_string(), list });
    }

    /// Seed with lists that were published before this process started.
    pub fn seed(&self, lists: impl IntoIterator<Item = RecommendationList>) {
        for list in lists {
            let ad_id = list.ad_id.clone();
            self.apply(&ad_id, Some(&list));
        }
    }

    /// The current list of an ad.
    pub fn get(&self, ad_id: &str) -> Option<Arc<RecommendationList>> {
        self.lists.read().ok()?.get(ad_id).cloned()
    }

    /// Up to `limit` current lists, ordered by ad id, and how many there are in all.
    pub fn snapshot(&self, limit: usize) -> (Vec<Arc<RecommendationList>>, usize) {
        match self.lists.read() {
            Ok(lists) => (lists.values().take(limit).cloned().collect(), lists.len()),
            Err(_) => (Vec::new(), 0),
        }
    }

    /// Receive every change from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<ListChange> {
        self.changes.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(ad: &str, version: u64) -> RecommendationList {
        RecommendationList {
            ad_id: ad.into(),
            version,
            model: "m".into(),
            generated_at: chrono::Utc::now(),
            items: vec![],
        }
    }

    #[tokio::test]
    async fn keeps_the_newest_version_and_broadcasts_changes() {
        let view = LiveLists::default();
        let mut rx = view.subscribe();
        view.apply("a", Some(&list("a", 2)));
        view.seed([list("a", 1), list("b", 1)]);
        assert_eq!(view.get("a").map(|l| l.version), Some(2), "an older seed must not win");
        assert_eq!(view.snapshot(10).1, 2);
        view.apply("a", None);
        assert!(view.get("a").is_none());
        let first = rx.recv().await.expect("change");
        assert_eq!((first.ad_id.as_str(), first.list.map(|l| l.version)), ("a", Some(2)));
        let second = rx.recv().await.expect("change");
        assert_eq!(second.ad_id, "b", "the stale seed of a was not broadcast");
        assert!(rx.recv().await.expect("tombstone").list.is_none());
    }
}
