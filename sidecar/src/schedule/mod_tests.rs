use super::*;

const DAYS: u64 = 24 * 3600;

/// The lifetime rule alone (no `renew_before`, no spread).
fn renew_at(not_before: SystemTime, not_after: SystemTime) -> SystemTime {
    renew_time(not_before, not_after, None).0
}

#[test]
fn ninety_day_certificate_renews_with_thirty_days_left() {
    let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000 * DAYS);
    assert_eq!(renew_at(t0, t0 + Duration::from_secs(90 * DAYS)), t0 + Duration::from_secs(60 * DAYS));
}

#[test]
fn short_lived_certificate_renews_at_half_life() {
    let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000 * DAYS);
    assert_eq!(renew_at(t0, t0 + Duration::from_secs(6 * DAYS)), t0 + Duration::from_secs(3 * DAYS));
}

#[test]
fn backoff_grows_then_stays_daily() {
    assert_eq!(backoff(1, 0.0), Duration::from_secs(60));
    assert_eq!(backoff(2, 0.0), Duration::from_secs(600));
    assert_eq!(backoff(3, 0.0), Duration::from_secs(6000));
    assert_eq!(backoff(9, 0.0), Duration::from_secs(DAYS));
    assert!(backoff(1, 0.99) > Duration::from_secs(65));
    assert!(backoff(1, 5.0) <= Duration::from_secs(66));
}

#[test]
fn nonsense_jitter_never_panics() {
    assert_eq!(backoff(1, f64::NAN), Duration::from_secs(60));
    assert_eq!(backoff(1, -3.0), Duration::from_secs(60));
    assert!(backoff(1, f64::INFINITY) <= Duration::from_secs(66));
}

#[test]
fn times_format_as_rfc3339_utc() {
    let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_803_988_800);
    assert_eq!(rfc3339(t), "2027-03-02T12:00:00Z");
}
