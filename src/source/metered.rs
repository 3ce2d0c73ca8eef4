//! An [`EventSource`] decorator that reports work in flight: records read
//! and not yet acknowledged (`adrec_in_flight_records`).

use std::sync::{Arc, Mutex};

use async_trait::async_trait;

use super::{AckHandle, Acknowledge, EventSource, OwnershipFeed, SourceError, SourceRecord};
use crate::telemetry;

/// Forwards to `inner`, counting unacknowledged records.
pub struct MeteredSource {
    inner: Box<dyn EventSource>,
    /// Shared with the ack handles, which count records down as they finish.
    in_flight: Arc<Mutex<usize>>,
}

impl MeteredSource {
    /// Wrap `inner`.
    pub fn new(inner: Box<dyn EventSource>) -> Self {
        telemetry::in_flight(0);
        Self { inner, in_flight: Arc::new(Mutex::new(0)) }
    }
}

/// Change the count and report it under the lock, so the gauge never shows a stale value.
fn count(in_flight: &Mutex<usize>, change: impl FnOnce(usize) -> usize) {
    if let Ok(mut n) = in_flight.lock() {
        *n = change(*n);
        telemetry::in_flight(*n);
    }
}

/// The inner source's ack handle, counting each acknowledged record down.
struct MeteredAck {
    inner: AckHandle,
    in_flight: Arc<Mutex<usize>>,
}

impl Acknowledge for MeteredAck {
    fn ack(&self, record: &SourceRecord) -> Result<(), SourceError> {
        self.inner.ack(record)?;
        count(&self.in_flight, |n| n.saturating_sub(1));
        Ok(())
    }
}

#[async_trait]
impl EventSource for MeteredSource {
    async fn next(&mut self) -> Result<Option<SourceRecord>, SourceError> {
        let next = self.inner.next().await?;
        if next.is_some() {
            count(&self.in_flight, |n| n + 1);
        }
        Ok(next)
    }

    fn ack_handle(&self) -> AckHandle {
        AckHandle::new(Arc::new(MeteredAck { inner: self.inner.ack_handle(), in_flight: self.in_flight.clone() }))
    }

    fn ownership_feed(&self) -> Option<OwnershipFeed> {
        self.inner.ownership_feed()
    }

    async fn close(&mut self) -> Result<(), SourceError> {
        // Whatever was not acknowledged is replayed by the next run, not in flight here.
        count(&self.in_flight, |_| 0);
        self.inner.close().await
    }
}
