//! An [`EventSource`] decorator that reports work in flight: records read
//! and not yet acknowledged (`adrec_in_flight_records`).

use async_trait::async_trait;

use super::{EventSource, OwnershipChange, SourceError, SourceRecord};
use crate::telemetry;

/// Forwards to `inner`, counting unacknowledged records.
pub struct MeteredSource {
    inner: Box<dyn EventSource>,
    in_flight: usize,
}

impl MeteredSource {
    /// Wrap `inner`.
    pub fn new(inner: Box<dyn EventSource>) -> Self {
        telemetry::in_flight(0);
        Self { inner, in_flight: 0 }
    }
}

#[async_trait]
impl EventSource for MeteredSource {
    async fn next(&mut self) -> Result<Option<SourceRecord>, SourceError> {
        let next = self.inner.next().await?;
        if next.is_some() {
            self.in_flight += 1;
            telemetry::in_flight(self.in_flight);
        }
        Ok(next)
    }

    async fn ack(&mut self, record: &SourceRecord) -> Result<(), SourceError> {
        self.inner.ack(record).await?;
        self.in_flight = self.in_flight.saturating_sub(1);
        telemetry::in_flight(self.in_flight);
        Ok(())
    }

    fn take_ownership_changes(&mut self) -> Vec<OwnershipChange> {
        self.inner.take_ownership_changes()
    }

    async fn close(&mut self) -> Result<(), SourceError> {
        // Whatever was not acknowledged is replayed by the next run, not in flight here.
        self.in_flight = 0;
        telemetry::in_flight(0);
        self.inner.close().await
    }
}
