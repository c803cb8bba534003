//! Issue 21: not one issued certificate thrown away. A crash between the
//! CA's finalization and the store's write, a crash while the CA
//! validates, a store that refuses the write, an order the CA dropped, with the in-memory task of
//! `task_tests` (its clock, store, sink and scripted CA).

use std::sync::atomic::{AtomicBool, Ordering};

use super::*;

fn serial(bundle: &Bundle) -> String {
    cert::inspect(bundle, None).unwrap().serial_hex
}

/// What the CA issued for the order at `url`.
fn finalized(world: &World, url: &str) -> Bundle {
    world.ca.finalized.lock().unwrap().get(url).cloned().expect("the CA issued nothing for that order")
}

#[tokio::test]
async fn a_crash_between_finalized_and_stored_resumes_and_downloads_without_a_new_order() {
    let world = World::new(Arc::new(MemoryStore::new()), None);
    world.script(Next::IssueAndHang { days: 90 });
    let mut task = world.task().await;
    let hung = tokio::time::timeout(Duration::from_millis(200), task.step()).await;
    assert!(hung.is_err(), "the order should still be waiting for the CA");
    drop(task); // kill -9: the CA has issued, nothing was stored
    assert!(world.store.load_certificate("web").await.unwrap().is_none());
    let pending = world.store.load_pending("web").await.unwrap().expect("the order was not recorded");
    assert_eq!(pending.url, "https://ca.test/order/1");

    // The restart: no order is scripted, so a new one would panic.
    let mut restarted = world.task().await;
    assert!(world.status().state.contains("interrupted"), "{}", world.status().state);
    settle(&mut restarted).await;
    let issued = finalized(&world, "https://ca.test/order/1");
    let stored = world.store.load_certificate("web").await.unwrap().expect("not stored after the restart");
    assert_eq!(serial(&stored), serial(&issued), "the stored certificate is not the one the CA issued");
    assert_eq!(stored.key_pem, issued.key_pem);
    assert_eq!(world.sink.last(), serial(&issued), "the downloaded certificate was not deployed");
    assert_eq!(world.ca.placed(), 1, "ordered again");
    assert_eq!(world.ca.reopened.lock().unwrap().as_slice(), ["https://ca.test/order/1"]);
    assert!(world.store.load_pending("web").await.unwrap().is_none(), "the pending order outlived its certificate");
    assert!(matches!(restarted.machine.state(), State::Valid { .. }));
}

#[tokio::test]
async fn a_crash_while_the_ca_validates_resumes_the_same_order() {
    let world = World::new(Arc::new(MemoryStore::new()), None);
    world.script(Next::HangWhileValidating { days: 90 });
    let mut task = world.task().await;
    assert!(tokio::time::timeout(Duration::from_millis(200), task.step()).await.is_err());
    drop(task); // kill -9 during validation
    let pending = world.store.load_pending("web").await.unwrap().expect("the order was not recorded");

    let mut restarted = world.task().await;
    settle(&mut restarted).await;
    let stored = world.store.load_certificate("web").await.unwrap().expect("not stored after the restart");
    assert_eq!(stored.key_pem, pending.key_pem, "not the recorded order's key");
    assert_eq!(serial(&stored), serial(&finalized(&world, "https://ca.test/order/1")));
    assert_eq!(world.sink.last(), serial(&stored));
    assert_eq!(world.ca.placed(), 1, "ordered again");
    assert!(world.store.load_pending("web").await.unwrap().is_none());
}

/// The in-memory store, with a disk that can turn read-only.
#[derive(Debug, Default)]
struct ReadOnlyDisk {
    inner: MemoryStore,
    read_only: AtomicBool,
    refused: Mutex<u32>,
}

impl ReadOnlyDisk {
    fn check(&self) -> Result<(), StoreError> {
        if !self.read_only.load(Ordering::SeqCst) {
            return Ok(());
        }
        *self.refused.lock().unwrap() += 1;
        let source = std::io::Error::from_raw_os_error(30); // EROFS
        Err(StoreError::Io { path: "/var/lib/proxy-acme/certificates/web".into(), source })
    }
}

#[async_trait]
impl Store for ReadOnlyDisk {
    async fn load_account(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.inner.load_account(key).await
    }
    async fn save_account(&self, key: &str, data: &[u8]) -> Result<(), StoreError> {
        self.check()?;
        self.inner.save_account(key, data).await
    }
    async fn forget_account(&self, key: &str) -> Result<(), StoreError> {
        self.inner.forget_account(key).await
    }
    async fn load_certificate(&self, name: &str) -> Result<Option<Bundle>, StoreError> {
        self.inner.load_certificate(name).await
    }
    async fn save_certificate(&self, name: &str, bundle: &Bundle) -> Result<(), StoreError> {
        self.check()?;
        self.inner.save_certificate(name, bundle).await
    }
    async fn mark_revoked(&self, name: &str, serial: &str) -> Result<(), StoreError> {
        self.check()?;
        self.inner.mark_revoked(name, serial).await
    }
    async fn revoked(&self, name: &str) -> Result<Option<String>, StoreError> {
        self.inner.revoked(name).await
    }
    async fn clear_revoked(&self, name: &str) -> Result<(), StoreError> {
        self.check()?;
        self.inner.clear_revoked(name).await
    }
    async fn save_pending(&self, name: &str, order: &PendingOrder) -> Result<(), StoreError> {
        self.check()?;
        self.inner.save_pending(name, order).await
    }
    async fn load_pending(&self, name: &str) -> Result<Option<PendingOrder>, StoreError> {
        self.inner.load_pending(name).await
    }
    async fn clear_pending(&self, name: &str) -> Result<(), StoreError> {
        self.check()?;
        self.inner.clear_pending(name).await
    }
}

#[tokio::test]
async fn a_store_that_refuses_the_certificate_keeps_it_deploys_it_and_writes_it_later() {
    let disk = Arc::new(ReadOnlyDisk::default());
    disk.read_only.store(true, Ordering::SeqCst);
    let world = World::new(Arc::clone(&disk) as Arc<dyn Store>, None);
    world.script(Next::Issue { days: 90 });
    let mut task = world.task().await;
    let renewal = settle(&mut task).await;
    assert!(renewal >= t0() + 59 * DAY, "scheduled like any issued certificate: {}", world.status().state);

    let issued = finalized(&world, "https://ca.test/order/1");
    assert_eq!(world.sink.last(), serial(&issued), "the issued certificate was not deployed");
    assert_eq!(world.status().serial.as_deref(), Some(serial(&issued).as_str()));
    assert!(disk.load_certificate("web").await.unwrap().is_none());
    let error = world.status().last_error.unwrap_or_default();
    assert!(error.contains("not stored yet") && error.contains("Read-only file system"), "{error}");

    // Retried after 10 s, then 20 s, while the disk stays read-only.
    assert_eq!(task.step().await, Some(Duration::from_secs(10)));
    world.clock.advance(Duration::from_secs(10));
    assert_eq!(task.step().await, None, "the write was not retried");
    assert_eq!(task.step().await, Some(Duration::from_secs(20)));
    assert!(disk.load_certificate("web").await.unwrap().is_none());

    // The disk is writable again: the same certificate is written.
    disk.read_only.store(false, Ordering::SeqCst);
    world.clock.advance(Duration::from_secs(20));
    assert_eq!(task.step().await, None);
    let stored = disk.load_certificate("web").await.unwrap().expect("never written");
    assert_eq!(serial(&stored), serial(&issued));
    assert_eq!(stored.key_pem, issued.key_pem);
    assert_eq!(world.status().last_error, None);
    assert!(task.step().await.is_some_and(|d| d > Duration::from_secs(300)), "still retrying after the write");
    assert_eq!(world.ca.placed(), 1, "ordered again");
    assert!(*disk.refused.lock().unwrap() >= 3, "the disk was not asked to write");
}

#[tokio::test]
async fn a_pending_order_the_ca_dropped_is_cleared_and_a_new_one_placed() {
    let store = Arc::new(MemoryStore::new());
    let old_key = issued(&["web.example".into()], t0(), 1).key_pem;
    let gone = PendingOrder { url: "https://ca.test/order/expired".into(), key_pem: old_key, resolver: None };
    store.save_pending("web", &gone).await.unwrap();
    let world = World::new(Arc::clone(&store) as Arc<dyn Store>, None);
    world.script(Next::Issue { days: 90 });
    let mut task = world.task().await;
    settle(&mut task).await;
    assert_eq!(world.ca.reopened.lock().unwrap().as_slice(), ["https://ca.test/order/expired"]);
    assert_eq!(world.ca.placed(), 1);
    let stored = store.load_certificate("web").await.unwrap().expect("the new order's certificate was not stored");
    assert_eq!(serial(&stored), serial(&finalized(&world, "https://ca.test/order/1")));
    assert_eq!(world.sink.last(), serial(&stored));
    assert!(store.load_pending("web").await.unwrap().is_none(), "the pending order outlived its certificate");
}

#[tokio::test]
async fn a_pending_order_placed_at_another_resolver_is_not_resumed_here() {
    // The fallback moved on while an order at `zerossl` was open: the
    // order at `le` does not ask `le`'s CA about `zerossl`'s URL.
    let store = Arc::new(MemoryStore::new());
    let key = issued(&["web.example".into()], t0(), 1).key_pem;
    let elsewhere =
        PendingOrder { url: "https://zerossl.test/order/9".into(), key_pem: key, resolver: Some("zerossl".into()) };
    store.save_pending("web", &elsewhere).await.unwrap();
    let world = World::new(Arc::clone(&store) as Arc<dyn Store>, None);
    world.script(Next::Issue { days: 90 });
    let mut task = world.task().await;
    settle(&mut task).await;
    assert!(world.ca.reopened.lock().unwrap().is_empty(), "resumed another CA's order");
    assert_eq!(world.ca.placed(), 1);
    assert!(store.load_certificate("web").await.unwrap().is_some());
    let pending = store.load_pending("web").await.unwrap();
    assert!(pending.is_none(), "the stored certificate ends every pending order");
}

#[tokio::test]
async fn an_order_records_the_resolver_it_was_placed_at() {
    let world = World::new(Arc::new(MemoryStore::new()), None);
    world.script(Next::HangWhileValidating { days: 90 });
    let mut task = world.task().await;
    assert!(tokio::time::timeout(Duration::from_millis(200), task.step()).await.is_err());
    let pending = world.store.load_pending("web").await.unwrap().expect("the order was not recorded");
    assert_eq!(pending.resolver.as_deref(), Some("le"));
}
