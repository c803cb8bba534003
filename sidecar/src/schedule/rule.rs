//! The renewal rule: when to renew a certificate, and why.

use std::fmt;
use std::str::FromStr;
use std::time::{Duration, SystemTime};

use super::{rfc3339, DAY};

/// Lifetimes under this renew at half-life rather than at two thirds.
const SHORT_LIFETIME: Duration = Duration::from_secs(10 * DAY.as_secs());

/// When to renew relative to expiry, as operators write it: a duration
/// (`"30d"`, `"720h"`, `"1d12h"`, `"90m"`, `"45s"`) before expiry, or a
/// percentage of the lifetime still left (`"33%"`, 1 to 99).
///
/// A duration at least as long as a certificate's lifetime means "renew at
/// half-life" for that certificate, so a too-large value never renews in a
/// loop. Built by parsing (or deserializing) the string form; `Display` gives
/// the canonical form back (`"36h"` shows as `"1d12h"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RenewBefore(Kind);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Kind {
    /// Whole seconds before `not_after`; positive.
    Duration(Duration),
    /// Percent of the lifetime left; 1..=99.
    Percent(u8),
}

/// Why a `renew_before` string was refused. The message does not name the
/// field; the caller prefixes its path.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct RenewBeforeError(String);

const UNITS: [(char, u64); 4] = [('d', 86_400), ('h', 3600), ('m', 60), ('s', 1)];

impl RenewBefore {
    /// A fixed time before expiry (whole seconds; sub-second parts are dropped).
    pub fn from_duration(before: Duration) -> Result<Self, RenewBeforeError> {
        let whole = Duration::from_secs(before.as_secs());
        if whole.is_zero() {
            return Err(RenewBeforeError(format!("'{}s' must be positive", before.as_secs())));
        }
        Ok(Self(Kind::Duration(whole)))
    }

    /// When `percent` of the lifetime remains (1 to 99).
    pub fn from_percent(percent: u8) -> Result<Self, RenewBeforeError> {
        if (1..=99).contains(&percent) {
            Ok(Self(Kind::Percent(percent)))
        } else {
            Err(RenewBeforeError(format!("'{percent}%' must be between 1% and 99%")))
        }
    }

    /// How long before `not_after` to renew a certificate with `lifetime`,
    /// and whether a too-long duration was cut to half of the lifetime.
    fn remaining(self, lifetime: Duration) -> (Duration, bool) {
        match self.0 {
            Kind::Duration(d) if d >= lifetime => (lifetime / 2, true),
            Kind::Duration(d) => (d, false),
            Kind::Percent(p) => ((lifetime / 100).checked_mul(u32::from(p)).unwrap_or(lifetime / 2), false),
        }
    }
}

impl FromStr for RenewBefore {
    type Err = RenewBeforeError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let s = text.trim();
        if s.is_empty() {
            return Err(RenewBeforeError(
                "is empty; expected a duration like '30d' or '1d12h', or a percentage like '33%'".to_owned(),
            ));
        }
        if let Some(number) = s.strip_suffix('%') {
            let percent: u8 = number.parse().map_err(|_| {
                RenewBeforeError(format!("'{s}' is not a whole percentage between 1% and 99% (like '33%')"))
            })?;
            return Self::from_percent(percent);
        }
        let mut total: u64 = 0;
        let mut next_unit = 0; // index into UNITS: units must come in order, each once
        let mut digits = String::new();
        for c in s.chars() {
            if c.is_ascii_digit() {
                digits.push(c);
                continue;
            }
            let Some(index) = UNITS.iter().position(|(u, _)| *u == c) else {
                return Err(RenewBeforeError(format!("'{s}': unknown unit '{c}'; expected d, h, m or s (like '30d')")));
            };
            if digits.is_empty() {
                return Err(RenewBeforeError(format!("'{s}': '{c}' needs a number before it (like '30d')")));
            }
            if index < next_unit {
                return Err(RenewBeforeError(format!("'{s}': units must come in the order d, h, m, s, each once")));
            }
            next_unit = index + 1;
            let value = digits
                .parse::<u64>()
                .ok()
                .and_then(|n| n.checked_mul(UNITS[index].1))
                .and_then(|secs| total.checked_add(secs))
                .ok_or_else(|| RenewBeforeError(format!("'{s}' is too large")))?;
            total = value;
            digits.clear();
        }
        if !digits.is_empty() {
            return Err(RenewBeforeError(format!("'{s}': '{digits}' needs a unit: d, h, m or s (like '{digits}d')")));
        }
        if total == 0 {
            return Err(RenewBeforeError(format!("'{s}' must be positive")));
        }
        Ok(Self(Kind::Duration(Duration::from_secs(total))))
    }
}

impl fmt::Display for RenewBefore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Kind::Percent(p) => write!(f, "{p}%"),
            Kind::Duration(d) => {
                let mut secs = d.as_secs();
                for (unit, size) in UNITS {
                    if secs >= size {
                        write!(f, "{}{unit}", secs / size)?;
                        secs %= size;
                    }
                }
                Ok(())
            }
        }
    }
}

impl<'de> serde::Deserialize<'de> for RenewBefore {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

impl serde::Serialize for RenewBefore {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// Why a renewal time was chosen (or why an order is due), for humans.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Why {
    /// The default rule: one third of the lifetime left, or one half when the
    /// lifetime is `short` (under ten days).
    Lifetime { short: bool },
    /// The operator's `renew_before`.
    RenewBefore(RenewBefore),
    /// The operator's `renew_before` is not shorter than the lifetime, so
    /// half-life was used instead.
    RenewBeforeTooLong(RenewBefore),
    /// A random time in the CA's ARI (RFC 9773) suggested window.
    AriWindow { start: SystemTime, end: SystemTime },
    /// An operator asked (`renew --force`).
    Forced,
    /// The certificate has expired.
    Expired,
    /// No certificate yet.
    NotIssued,
    /// The configured names or key no longer match the stored certificate.
    ConfigChanged,
    /// An order recorded before a restart may have a certificate to download.
    Interrupted,
}

impl Why {
    /// One word, for a metric label.
    pub fn label(&self) -> &'static str {
        match self {
            Self::Lifetime { short: false } => "lifetime",
            Self::Lifetime { short: true } => "short_lifetime",
            Self::RenewBefore(_) => "renew_before",
            Self::RenewBeforeTooLong(_) => "renew_before_too_long",
            Self::AriWindow { .. } => "ari",
            Self::Forced => "forced",
            Self::Expired => "expired",
            Self::NotIssued => "not_issued",
            Self::ConfigChanged => "config_changed",
            Self::Interrupted => "interrupted",
        }
    }
}

impl fmt::Display for Why {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Lifetime { short: false } => f.write_str("one third of the lifetime left"),
            Self::Lifetime { short: true } => f.write_str("half of a short lifetime left"),
            Self::RenewBefore(rb @ RenewBefore(Kind::Percent(_))) => {
                write!(f, "{rb} of the lifetime left, per renew_before")
            }
            Self::RenewBefore(rb) => write!(f, "{rb} before expiry, per renew_before"),
            Self::RenewBeforeTooLong(rb) => {
                write!(f, "half of the lifetime left; renew_before {rb} is not shorter than the lifetime")
            }
            Self::AriWindow { start, end } => {
                write!(f, "random time in the CA's ARI window {}–{}", rfc3339(*start), rfc3339(*end))
            }
            Self::Forced => f.write_str("renewal forced by an operator"),
            Self::Expired => f.write_str("the certificate has expired"),
            Self::NotIssued => f.write_str("not issued yet"),
            Self::ConfigChanged => f.write_str("the configuration no longer matches the certificate"),
            Self::Interrupted => f.write_str("an order interrupted by a restart is to be downloaded"),
        }
    }
}

/// When a certificate valid from `not_before` to `not_after` should be
/// renewed, and why. Deterministic: spreading ([`super::renewal_jitter`]) is
/// the state machine's business.
///
/// Default: when one third of the lifetime remains, or one half for
/// lifetimes under ten days (short-lived certificates need more slack).
/// `renew_before` overrides; a duration not shorter than the lifetime means
/// half-life. An inverted validity (`not_after < not_before`) renews at
/// `not_after`, i.e. at once.
pub fn renew_time(
    not_before: SystemTime,
    not_after: SystemTime,
    renew_before: Option<&RenewBefore>,
) -> (SystemTime, Why) {
    let lifetime = not_after.duration_since(not_before).unwrap_or(Duration::ZERO);
    let (remaining, why) = match renew_before {
        Some(rb) => match rb.remaining(lifetime) {
            (remaining, false) => (remaining, Why::RenewBefore(*rb)),
            (remaining, true) => (remaining, Why::RenewBeforeTooLong(*rb)),
        },
        None if lifetime < SHORT_LIFETIME => (lifetime / 2, Why::Lifetime { short: true }),
        None => (lifetime / 3, Why::Lifetime { short: false }),
    };
    (not_after.checked_sub(remaining).unwrap_or(not_before), why)
}

#[cfg(test)]
#[path = "rule_tests.rs"]
mod tests;
