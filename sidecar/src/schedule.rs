//! When to order: a pure decision over a certificate's state and an injected
//! clock. The lifecycle issue grows this into the full state machine (ARI,
//! rate-limit budgets); the seam is here from the start so no logic ever
//! calls `SystemTime::now()` itself.

use std::time::{Duration, SystemTime};

use crate::cert::CertInfo;

/// Source of the current time; tests pass a fake.
pub trait Clock: Send + Sync + std::fmt::Debug {
    fn now(&self) -> SystemTime;
}

/// The real clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> SystemTime {
        SystemTime::now()
    }
}

/// What to do next for one certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Order now: nothing stored, or the stored one is due.
    OrderNow,
    /// Valid; look again at this time.
    RenewAt(SystemTime),
}

/// When a certificate valid from `not_before` to `not_after` should be
/// renewed: when one third of its lifetime remains, or one half for
/// lifetimes under ten days (short-lived certificates need more slack).
pub fn renew_at(not_before: SystemTime, not_after: SystemTime) -> SystemTime {
    let lifetime = not_after.duration_since(not_before).unwrap_or(Duration::ZERO);
    let remaining = if lifetime < Duration::from_secs(10 * 24 * 3600) { lifetime / 2 } else { lifetime / 3 };
    not_after.checked_sub(remaining).unwrap_or(not_before)
}

/// Decides for a stored certificate (or none) at time `now`.
pub fn next(stored: Option<&CertInfo>, now: SystemTime) -> Next {
    match stored {
        None => Next::OrderNow,
        Some(info) => {
            let at = renew_at(info.not_before, info.not_after);
            if at <= now {
                Next::OrderNow
            } else {
                Next::RenewAt(at)
            }
        }
    }
}

/// Delay before retry `attempt` (1-based) after a failed order: about 1 min,
/// 10 min, 100 min, then daily, with up to 10% jitter from `jitter` in [0, 1).
pub fn backoff(attempt: u32, jitter: f64) -> Duration {
    let base = match attempt {
        0 | 1 => 60,
        2 => 600,
        3 => 6000,
        _ => 86_400,
    };
    let jitter = jitter.clamp(0.0, 1.0);
    Duration::from_secs(base).mul_f64(1.0 + 0.1 * jitter)
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: u64 = 24 * 3600;

    fn info(not_before: SystemTime, lifetime: Duration) -> CertInfo {
        CertInfo {
            serial_hex: "01".into(),
            not_before,
            not_after: not_before + lifetime,
            names: vec!["example.com".into()],
            leaf_pem: String::new(),
            chain_pem: String::new(),
        }
    }

    #[test]
    fn ninety_day_certificate_renews_with_thirty_days_left() {
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000 * DAY);
        let cert = info(t0, Duration::from_secs(90 * DAY));
        assert_eq!(renew_at(cert.not_before, cert.not_after), t0 + Duration::from_secs(60 * DAY));
        assert_eq!(
            next(Some(&cert), t0 + Duration::from_secs(59 * DAY)),
            Next::RenewAt(t0 + Duration::from_secs(60 * DAY))
        );
        assert_eq!(next(Some(&cert), t0 + Duration::from_secs(60 * DAY)), Next::OrderNow);
    }

    #[test]
    fn short_lived_certificate_renews_at_half_life() {
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000 * DAY);
        let cert = info(t0, Duration::from_secs(6 * DAY));
        assert_eq!(renew_at(cert.not_before, cert.not_after), t0 + Duration::from_secs(3 * DAY));
    }

    #[test]
    fn nothing_stored_orders_now() {
        assert_eq!(next(None, SystemTime::UNIX_EPOCH), Next::OrderNow);
    }

    #[test]
    fn inverted_validity_orders_now() {
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000 * DAY);
        let mut cert = info(t0, Duration::ZERO);
        cert.not_after = t0 - Duration::from_secs(DAY);
        assert_eq!(next(Some(&cert), t0), Next::OrderNow);
    }

    #[test]
    fn backoff_grows_then_stays_daily() {
        assert_eq!(backoff(1, 0.0), Duration::from_secs(60));
        assert_eq!(backoff(2, 0.0), Duration::from_secs(600));
        assert_eq!(backoff(3, 0.0), Duration::from_secs(6000));
        assert_eq!(backoff(9, 0.0), Duration::from_secs(DAY));
        assert!(backoff(1, 0.99) > Duration::from_secs(65));
        assert!(backoff(1, 5.0) <= Duration::from_secs(66));
    }
}
