//! Consumer lag per partition from librdkafka's statistics (emitted every
//! `statistics.interval.ms`): messages the broker holds beyond the worker's
//! read position, reported as `adrec_consumer_lag{topic,partition}`.

use rdkafka::Statistics;
use rdkafka::client::ClientContext;
use rdkafka::consumer::ConsumerContext;

/// Offsets of one partition, as librdkafka reports them (negative = unknown).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PartitionOffsets {
    /// Partition number.
    pub partition: i32,
    /// Whether this consumer is assigned the partition.
    pub desired: bool,
    /// Offset after the last message handed to the worker.
    pub app_offset: i64,
    /// Last committed offset.
    pub committed_offset: i64,
    /// Low watermark (where an uncommitted partition starts reading).
    pub lo_offset: i64,
    /// High watermark.
    pub hi_offset: i64,
}

/// Messages beyond the read position, or `None` if not assigned or not yet known.
pub fn lag(p: &PartitionOffsets) -> Option<i64> {
    if !p.desired || p.partition < 0 || p.hi_offset < 0 {
        return None;
    }
    let position = match p.app_offset.max(p.committed_offset) {
        pos if pos >= 0 => pos,
        // Nothing read or committed yet: reading starts at the low watermark (earliest reset).
        _ if p.lo_offset >= 0 => p.lo_offset,
        _ => return None,
    };
    Some((p.hi_offset - position).max(0))
}

/// Report the lag of every assigned partition in `stats`.
pub fn report(stats: &Statistics) {
    for (topic, t) in &stats.topics {
        for p in t.partitions.values() {
            let offsets = PartitionOffsets {
                partition: p.partition,
                desired: p.desired,
                app_offset: p.app_offset,
                committed_offset: p.committed_offset,
                lo_offset: p.lo_offset,
                hi_offset: p.hi_offset,
            };
            if let Some(lag) = lag(&offsets) {
                crate::telemetry::consumer_lag(topic, p.partition, lag);
            }
        }
    }
}

/// Consumer context that only reports lag (the products consumer's).
pub struct LagContext;

impl ClientContext for LagContext {
    fn stats(&self, statistics: Statistics) {
        report(&statistics);
    }
}

impl ConsumerContext for LagContext {}

#[cfg(test)]
mod tests {
    use super::*;

    fn offsets(app: i64, committed: i64, lo: i64, hi: i64) -> PartitionOffsets {
        PartitionOffsets {
            partition: 0,
            desired: true,
            app_offset: app,
            committed_offset: committed,
            lo_offset: lo,
            hi_offset: hi,
        }
    }

    #[test]
    fn lag_is_high_watermark_minus_read_position() {
        assert_eq!(lag(&offsets(40, 30, 0, 100)), Some(60), "read position is past the commit");
        assert_eq!(lag(&offsets(-1001, 30, 0, 100)), Some(70), "nothing read yet: from the commit");
        assert_eq!(lag(&offsets(-1001, -1001, 5, 100)), Some(95), "nothing committed: from the low watermark");
        assert_eq!(lag(&offsets(100, 100, 0, 100)), Some(0));
        assert_eq!(lag(&offsets(10, 0, 0, -1)), None, "high watermark unknown");
        assert_eq!(lag(&PartitionOffsets { desired: false, ..offsets(0, 0, 0, 9) }), None, "not assigned");
    }
}
