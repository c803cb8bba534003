//! Locks for exactly-once work across replicas. A [`Lock`] carries a
//! fencing token (the etcd revision that created the lock key); writes made
//! under it are refused once another holder's token exists. While held,
//! [`Lock::lost`] resolves if the lease could not be kept alive, so the work
//! stops before it writes.

use tokio::sync::watch;

/// The outcome of asking for a lock.
#[derive(Debug)]
pub enum Acquired {
    /// Ours until dropped.
    Lock(Lock),
    /// Another replica holds it (its name).
    HeldBy(String),
}

/// A held lock; released when dropped.
pub struct Lock {
    /// The lock key and the revision that created it (`None`: a local lock).
    pub(crate) fence: Option<(String, i64)>,
    lost: watch::Receiver<bool>,
    /// Releases the lock when dropped (stops the keep-alive, revokes the lease).
    _release: Option<Box<dyn Send + Sync>>,
}

impl std::fmt::Debug for Lock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lock").field("fence", &self.fence).field("lost", &*self.lost.borrow()).finish()
    }
}

impl Lock {
    /// A lock no one else can contend (a store used by one process).
    pub fn local() -> Self {
        let (_, lost) = watch::channel(false);
        Self { fence: None, lost, _release: None }
    }

    pub(crate) fn shared(key: String, token: i64, lost: watch::Receiver<bool>, release: Box<dyn Send + Sync>) -> Self {
        Self { fence: Some((key, token)), lost, _release: Some(release) }
    }

    /// The fencing token: 0 for a local lock.
    pub fn token(&self) -> i64 {
        self.fence.as_ref().map_or(0, |(_, token)| *token)
    }

    /// Resolves when the lock is lost; never for a local lock.
    pub async fn lost(&self) {
        let mut lost = self.lost.clone();
        if lost.wait_for(|lost| *lost).await.is_err() {
            // The keep-alive ended without saying: the lease is gone, unless
            // this is a local lock, whose sender is dropped at once.
            if self.fence.is_none() {
                std::future::pending::<()>().await;
            }
        }
    }
}
