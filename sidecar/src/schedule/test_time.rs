//! A fixed clock for the schedule's tests: times are offsets from t0.

use std::time::{Duration, SystemTime};

pub(super) const MIN: u64 = 60;
pub(super) const HOUR: u64 = 3600;
pub(super) const DAYS: u64 = 24 * HOUR;

pub(super) fn t0() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_867_200) // 2026-11-28T12:00:00Z
}

pub(super) fn at(secs: u64) -> SystemTime {
    t0() + Duration::from_secs(secs)
}
