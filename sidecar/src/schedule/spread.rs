//! Spreading work over time, and what to serve while no good certificate
//! exists.

use std::time::{Duration, SystemTime};

use super::{unit, HOUR};

/// `renew_at` moved earlier by up to 1% of `lifetime` (at most an hour),
/// scaled by `jitter`, so certificates issued together do not all renew in
/// the same second. Never earlier than the Unix epoch allows.
pub fn renewal_jitter(renew_at: SystemTime, lifetime: Duration, jitter: f64) -> SystemTime {
    let shift = (lifetime / 100).min(HOUR).mul_f64(unit(jitter));
    renew_at.checked_sub(shift).unwrap_or(renew_at)
}

/// A number in [0, 1) that depends only on `seed` (a certificate's serial
/// number): every start and every replica spread the same certificate's
/// renewal the same way, so a restart never redraws it, while certificates
/// with consecutive serials (a private CA) still spread evenly.
pub fn stable_jitter(seed: &[u8]) -> f64 {
    let digest = ring::digest::digest(&ring::digest::SHA256, seed);
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest.as_ref()[..8]);
    // 53 bits: exactly representable, so the result is below 1.0.
    (u64::from_be_bytes(first) >> 11) as f64 / (1u64 << 53) as f64
}

/// What to serve for a certificate's names right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Served {
    /// The stored certificate, valid (or not yet valid) now.
    Current,
    /// The stored certificate although it has expired: clients that accept
    /// it (or show a clear warning) beat a handshake failure.
    Expired,
    /// The configured default certificate.
    Default,
    /// A generated self-signed placeholder.
    Placeholder,
    /// Nothing: the handshake fails.
    Nothing,
}

/// Chooses what to serve: the stored certificate (`(not_before, not_after)`)
/// if there is one, even expired, as Traefik promises ("keep serving the
/// last certificate rather than nothing"); else the default certificate if
/// configured; else the placeholder if enabled; else nothing.
///
/// A stored certificate that is not valid *yet* (`now < not_before`, a
/// clock behind the CA's) counts as `Current`: it is the newest we have and
/// will be valid shortly. It is `Expired` from `not_after` on.
pub fn choose_served(
    stored: Option<(SystemTime, SystemTime)>,
    has_default: bool,
    placeholder_enabled: bool,
    now: SystemTime,
) -> Served {
    match stored {
        Some((_, not_after)) if now < not_after => Served::Current,
        Some(_) => Served::Expired,
        None if has_default => Served::Default,
        None if placeholder_enabled => Served::Placeholder,
        None => Served::Nothing,
    }
}

#[cfg(test)]
#[path = "spread_tests.rs"]
mod tests;
