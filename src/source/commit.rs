//! Contiguous offset tracking: which position of each partition may be
//! committed. A position only moves past offsets whose effects are durable;
//! with 5, 6, 7 in flight and 7 done first, the position stays at 5 until
//! 5 and 6 are done too.

use std::collections::{BTreeMap, BTreeSet};

/// A topic partition.
pub type TopicPartition = (String, i32);

#[derive(Debug, Default)]
struct PartitionState {
    in_flight: BTreeSet<i64>,
    /// Next offset after the highest finished one.
    done_end: Option<i64>,
    /// Position last handed out for commit.
    committed: Option<i64>,
}

/// Tracks in-flight and finished offsets per partition.
#[derive(Debug, Default)]
pub struct CommitTracker {
    partitions: BTreeMap<TopicPartition, PartitionState>,
}

impl CommitTracker {
    /// A record was handed to processing.
    pub fn start(&mut self, tp: &TopicPartition, offset: i64) {
        self.partitions.entry(tp.clone()).or_default().in_flight.insert(offset);
    }

    /// A record's effects are durable.
    pub fn done(&mut self, tp: &TopicPartition, offset: i64) {
        let state = self.partitions.entry(tp.clone()).or_default();
        state.in_flight.remove(&offset);
        state.done_end = Some(state.done_end.map_or(offset + 1, |end| end.max(offset + 1)));
    }

    /// Positions that moved since they were last taken, and mark them taken.
    /// A position never passes an unfinished offset.
    pub fn take_commits(&mut self) -> Vec<(TopicPartition, i64)> {
        let mut out = Vec::new();
        for (tp, state) in &mut self.partitions {
            // Restarting from the lowest unfinished offset replays exactly what is not done.
            let position = state.in_flight.first().copied().or(state.done_end);
            if let Some(p) = position
                && state.committed.is_none_or(|c| p > c)
            {
                state.committed = Some(p);
                out.push((tp.clone(), p));
            }
        }
        out
    }

    /// Every partition's current position (the lowest unfinished offset, or
    /// past the highest finished one), taken or not: for the final commit.
    pub fn positions(&mut self) -> Vec<(TopicPartition, i64)> {
        let mut out = Vec::new();
        for (tp, state) in &mut self.partitions {
            if let Some(p) = state.in_flight.first().copied().or(state.done_end) {
                state.committed = Some(state.committed.map_or(p, |c| c.max(p)));
                out.push((tp.clone(), p));
            }
        }
        out
    }

    /// A commit of these partitions failed: offer their positions again.
    pub fn retake(&mut self, partitions: &[TopicPartition]) {
        for tp in partitions {
            if let Some(state) = self.partitions.get_mut(tp) {
                state.committed = None;
            }
        }
    }

    /// Forget partitions (revoked); returns their final commit positions first.
    pub fn revoke(&mut self, revoked: &[TopicPartition]) -> Vec<(TopicPartition, i64)> {
        let commits = self.take_commits().into_iter().filter(|(tp, _)| revoked.contains(tp)).collect();
        for tp in revoked {
            self.partitions.remove(tp);
        }
        commits
    }

    /// Whether an offset of a partition is still being processed.
    pub fn is_in_flight(&self, tp: &TopicPartition, offset: i64) -> bool {
        self.partitions.get(tp).is_some_and(|s| s.in_flight.contains(&offset))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tp(p: i32) -> TopicPartition {
        ("t".into(), p)
    }

    #[test]
    fn never_commits_past_an_unfinished_offset() {
        let mut t = CommitTracker::default();
        t.start(&tp(0), 4);
        t.done(&tp(0), 4);
        assert_eq!(t.take_commits(), [(tp(0), 5)]);
        for o in [5, 6, 7] {
            t.start(&tp(0), o);
        }
        t.done(&tp(0), 7);
        assert_eq!(t.take_commits(), [], "5 and 6 are unfinished: stay at 5");
        t.done(&tp(0), 5);
        assert_eq!(t.take_commits(), [(tp(0), 6)]);
        t.done(&tp(0), 6);
        assert_eq!(t.take_commits(), [(tp(0), 8)], "6 done: 7 was already done, jump to 8");
        assert_eq!(t.take_commits(), [], "nothing new");
    }

    #[test]
    fn position_stays_at_the_first_unfinished_record() {
        let mut t = CommitTracker::default();
        t.start(&tp(1), 10);
        t.start(&tp(1), 11);
        t.done(&tp(1), 11);
        assert_eq!(t.take_commits(), [(tp(1), 10)]);
        t.done(&tp(1), 10);
        assert_eq!(t.take_commits(), [(tp(1), 12)]);
    }

    #[test]
    fn final_positions_include_taken_ones_and_a_failed_commit_is_offered_again() {
        let mut t = CommitTracker::default();
        for o in [0, 1, 2] {
            t.start(&tp(0), o);
        }
        t.done(&tp(0), 0);
        assert_eq!(t.take_commits(), [(tp(0), 1)]);
        assert_eq!(t.take_commits(), []);
        t.retake(&[tp(0)]);
        assert_eq!(t.take_commits(), [(tp(0), 1)], "the failed commit comes back");
        t.done(&tp(0), 1);
        // 2 was read ahead and never finished: the final position stays before it.
        assert_eq!(t.positions(), [(tp(0), 2)]);
        assert_eq!(t.positions(), [(tp(0), 2)], "taken or not");
    }

    #[test]
    fn gaps_in_offsets_are_fine() {
        let mut t = CommitTracker::default();
        for o in [3, 9] {
            t.start(&tp(0), o);
            t.done(&tp(0), o);
        }
        assert_eq!(t.take_commits(), [(tp(0), 10)]);
    }

    #[test]
    fn partitions_are_independent_and_revoke_flushes() {
        let mut t = CommitTracker::default();
        t.start(&tp(0), 0);
        t.start(&tp(1), 0);
        t.done(&tp(1), 0);
        assert_eq!(t.revoke(&[tp(1)]), [(tp(1), 1)]);
        assert!(t.is_in_flight(&tp(0), 0));
        t.done(&tp(0), 0);
        assert_eq!(t.take_commits(), [(tp(0), 1)]);
    }
}
