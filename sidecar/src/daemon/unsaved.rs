//! A certificate the CA issued and the store did not take (a full or
//! read-only disk): it stays in memory, deployed, and its write is retried
//! under the lock, 10 s after the failure and doubling to every 5 minutes,
//! until the store takes it. It is never ordered again.

use std::time::{Duration, SystemTime};

use super::{CertTask, Turn};

/// First retry of a certificate the store did not take; doubles up to [`WRITE_RETRY_MAX`].
const WRITE_RETRY: Duration = Duration::from_secs(10);
const WRITE_RETRY_MAX: Duration = Duration::from_secs(300);

/// The current certificate is deployed but not stored: its write is
/// retried until the store takes it (it is never ordered again).
#[derive(Debug, Clone, Copy)]
pub(super) struct Unsaved {
    attempts: u32,
    pub(super) next: SystemTime,
}

impl Unsaved {
    pub(super) fn after(attempts: u32, now: SystemTime) -> Self {
        let delay = WRITE_RETRY.saturating_mul(1 << attempts.min(10)).min(WRITE_RETRY_MAX);
        Self { attempts, next: now + delay }
    }
}

impl CertTask {
    /// Writes the current certificate the store did not take when it was
    /// issued, under the lock; on failure, again later (10 s doubling to 5
    /// min). A newer certificate another replica stored is adopted instead.
    pub(super) async fn store_unsaved(&mut self) {
        let (Some(unsaved), Some((bundle, info))) = (self.unsaved, self.current.clone()) else {
            self.unsaved = None;
            return;
        };
        let name = self.certificate.name.clone();
        let (issuer_side, _) = self.at(self.fallback.issued_by());
        let result = match self.parts.coordinator.take_turn(&self.certificate).await {
            Turn::Ours { lock, stored } => {
                if let Some(stored) = stored {
                    if self.adopt(stored).await {
                        return;
                    }
                }
                self.parts.issuer.persist(&issuer_side, &bundle, &lock).await.map_err(|e| e.to_string())
            }
            Turn::Held(holder) => Err(format!("{holder} holds the lock")),
            Turn::Unreachable(e) => Err(e.to_string()),
        };
        let now = self.parts.clock.now();
        match result {
            Ok(()) => {
                tracing::info!(certificate = %name, serial = %info.serial_hex, "stored the certificate kept in memory");
                self.unsaved = None;
                self.last_error = None;
            }
            Err(e) => {
                let next = Unsaved::after(unsaved.attempts + 1, now);
                tracing::warn!(certificate = %name, serial = %info.serial_hex, error = %e, retry_in = ?next.next.duration_since(now).unwrap_or_default(), "the certificate is still not stored");
                self.last_error = Some(format!("serial {} is served but not stored yet: {e}", info.serial_hex));
                self.unsaved = Some(next);
            }
        }
    }
}
