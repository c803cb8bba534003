//! A lock's etcd lease: kept alive while the holder works, revoked (which
//! deletes the lock key) when the holder lets go or is dropped.

use std::time::Duration;

use etcd_client::Client;
use tokio::sync::watch;

use super::etcd::Health;

/// Keeps a lock's lease alive (three times per TTL); says `lost` when it
/// cannot, or when etcd says the lease is gone.
pub(super) async fn keep_alive(mut client: Client, lease: i64, ttl: i64, timeout: Duration, lost: watch::Sender<bool>) {
    let every = Duration::from_millis(u64::try_from(ttl).unwrap_or(15) * 1000 / 3);
    let result: Health = async {
        let (mut keeper, mut stream) = tokio::time::timeout(timeout, client.lease_keep_alive(lease))
            .await
            .map_err(|_| "time-out".to_owned())?
            .map_err(|e| e.to_string())?;
        loop {
            tokio::time::sleep(every).await;
            keeper.keep_alive().await.map_err(|e| e.to_string())?;
            match tokio::time::timeout(timeout, stream.message()).await {
                Ok(Ok(Some(answer))) if answer.ttl() > 0 => {}
                Ok(Ok(Some(_))) => return Err("the lease expired".to_owned()),
                Ok(Ok(None)) => return Err("the keep-alive stream ended".to_owned()),
                Ok(Err(e)) => return Err(e.to_string()),
                Err(_) => return Err("no keep-alive answer in time".to_owned()),
            }
        }
    }
    .await;
    if let Err(why) = result {
        tracing::warn!(lease, error = %why, "lock lease lost; the work under it stops");
    }
    let _ = lost.send(true);
}

/// Stops the keep-alive and revokes the lease (deleting the lock key).
pub(super) struct Release {
    pub(super) client: Client,
    pub(super) lease: i64,
    pub(super) keeper: tokio::task::JoinHandle<()>,
}

impl Drop for Release {
    fn drop(&mut self) {
        self.keeper.abort();
        revoke_later(self.client.clone(), self.lease);
    }
}

pub(super) fn revoke_later(mut client: Client, lease: i64) {
    if let Ok(runtime) = tokio::runtime::Handle::try_current() {
        runtime.spawn(async move {
            let _ = tokio::time::timeout(Duration::from_secs(5), client.lease_revoke(lease)).await;
        });
    }
}
