//! The time a worker decides by. Production reads the system clock; a test moves an adjustable
//! clock forward instead of editing rows to travel in time.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use time::OffsetDateTime;

/// The system clock plus an offset that only tests change ([`Clock::advance`]). Clones share
/// the offset, so a test's clock moves every replica given a clone of it.
#[derive(Debug, Clone, Default)]
pub struct Clock {
    offset_ms: Arc<AtomicI64>,
}

impl Clock {
    /// The system clock.
    pub fn system() -> Self {
        Self::default()
    }

    pub fn now(&self) -> OffsetDateTime {
        OffsetDateTime::now_utc() + time::Duration::milliseconds(self.offset_ms.load(Ordering::Relaxed))
    }

    /// Move this clock (and its clones) forward by `by`.
    pub fn advance(&self, by: time::Duration) {
        let ms = i64::try_from(by.whole_milliseconds()).unwrap_or(i64::MAX);
        self.offset_ms.fetch_add(ms, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clones_move_together() {
        let clock = Clock::system();
        let replica = clock.clone();
        let before = replica.now();
        clock.advance(time::Duration::days(15));
        let after = replica.now();
        assert!(after - before >= time::Duration::days(15));
        assert!(after - before < time::Duration::days(15) + time::Duration::minutes(1));
    }
}
