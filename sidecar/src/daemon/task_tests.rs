//! The certificate task in memory: a clock the test moves, the in-memory
//! store, a sink that records what proxies would be given and a CA that
//! does what each test scripts. No socket, no sleep: milliseconds.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use tokio::sync::{oneshot, watch};

use super::*;
use crate::acme::{Checkpoint, OrderRequest, Reopened, Window};
use crate::cert::{self, SecretPem};
use crate::daemon::accounts::Accounts;
use crate::daemon::bus::Bus;
use crate::daemon::ca::Ca;
use crate::daemon::coordinator::Coordinator;
use crate::daemon::issuer::Issuer;
use crate::daemon::reporter::Reporter;
use crate::daemon::serving::Serving;
use crate::deploy::{DeployError, Sink};
use crate::dns::DnsError;
use crate::schedule::{Clock, State};
use crate::serve::admin::Statuses;
use crate::serve::health::Readiness;
use crate::solvers::http01::{Http01Solver, Http01Tokens};
use crate::solvers::Solver;
use crate::store::{Acquired, Lock, MemoryStore, PendingOrder, Store, StoreError};

const DAY: Duration = Duration::from_secs(86_400);

fn t0() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_867_200) // 2026-11-28T12:00:00Z
}

/// A clock the test moves.
#[derive(Debug)]
struct TestClock(Mutex<SystemTime>);

impl Clock for TestClock {
    fn now(&self) -> SystemTime {
        *self.0.lock().unwrap()
    }
}

impl TestClock {
    fn advance(&self, by: Duration) {
        *self.0.lock().unwrap() += by;
    }
}

/// A self-signed certificate for `domains`, valid from `not_before` for `days`.
fn issued(domains: &[String], not_before: SystemTime, days: u64) -> Bundle {
    issued_for(rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap(), domains, not_before, days)
}

/// The same, for `key`.
fn issued_for(key: rcgen::KeyPair, domains: &[String], not_before: SystemTime, days: u64) -> Bundle {
    let mut params = rcgen::CertificateParams::new(domains.to_vec()).unwrap();
    params.not_before = not_before.into();
    params.not_after = (not_before + DAY * u32::try_from(days).unwrap()).into();
    let cert = params.self_signed(&key).unwrap();
    Bundle { fullchain_pem: cert.pem(), key_pem: SecretPem::new(key.serialize_pem()) }
}

/// What the CA does with the next order.
#[derive(Debug)]
enum Next {
    Issue {
        days: u64,
    },
    Fail(AcmeError),
    /// The lock's lease (in this store) expires while the CA is
    /// validating; the order hangs.
    LoseLock(Arc<SharedStore>),
    /// The CA finalizes and issues, and the sidecar is killed before it
    /// gets the answer: the order hangs (the test drops the task).
    IssueAndHang {
        days: u64,
    },
    /// The sidecar is killed while the CA validates: the order is created
    /// (and recorded), not finalized; the order hangs.
    HangWhileValidating {
        days: u64,
    },
}

#[derive(Debug)]
struct TestCa {
    clock: Arc<TestClock>,
    orders: Mutex<VecDeque<Next>>,
    windows: Mutex<VecDeque<Window>>,
    revoked: Mutex<Vec<String>>,
    /// Orders placed (new orders, not reopened ones).
    placed: Mutex<u32>,
    /// Certificates the CA issued, by order URL: what reopening one downloads.
    finalized: Mutex<BTreeMap<String, Bundle>>,
    /// Orders reopened, by URL.
    reopened: Mutex<Vec<String>>,
    /// Orders created and not finalized (URL -> lifetime in days).
    open: Mutex<BTreeMap<String, u64>>,
    /// The directories dry runs ordered from.
    dry_runs: Mutex<Vec<String>>,
    /// How long an ARI poll waits its turn before the CA answers.
    ari_wait: Mutex<Duration>,
}

impl TestCa {
    fn placed(&self) -> u32 {
        *self.placed.lock().unwrap()
    }
}

#[async_trait]
impl Ca for TestCa {
    async fn issue(
        &self,
        _: &str,
        request: &OrderRequest<'_>,
        _: &dyn Solver,
        checkpoint: &dyn Checkpoint,
    ) -> Result<Bundle, AcmeError> {
        let next = self.orders.lock().unwrap().pop_front().expect("an order the test did not expect");
        let url = {
            let mut placed = self.placed.lock().unwrap();
            *placed += 1;
            format!("https://ca.test/order/{placed}")
        };
        let finalize = |days| {
            let bundle = issued(request.domains, self.clock.now(), days);
            self.finalized.lock().unwrap().insert(url.clone(), bundle.clone());
            bundle
        };
        match next {
            Next::Issue { days } => {
                let bundle = finalize(days);
                checkpoint.record(&url, &bundle.key_pem).await;
                Ok(bundle)
            }
            Next::IssueAndHang { days } => {
                let bundle = finalize(days);
                checkpoint.record(&url, &bundle.key_pem).await;
                std::future::pending().await
            }
            Next::HangWhileValidating { days } => {
                let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
                self.open.lock().unwrap().insert(url.clone(), days);
                checkpoint.record(&url, &SecretPem::new(key.serialize_pem())).await;
                std::future::pending().await
            }
            Next::Fail(e) => Err(e),
            Next::LoseLock(store) => {
                let _ = store.lease.lock().unwrap().as_ref().expect("no shared lock taken").send(true);
                std::future::pending().await
            }
        }
    }
    async fn resume(
        &self,
        _: &str,
        pending: &PendingOrder,
        _: &OrderRequest<'_>,
        _: &dyn Solver,
    ) -> Result<Reopened, AcmeError> {
        self.reopened.lock().unwrap().push(pending.url.clone());
        // Still open: proven and finalized now, with the recorded key.
        if let Some(days) = self.open.lock().unwrap().remove(&pending.url) {
            let key = rcgen::KeyPair::from_pem(pending.key_pem.expose()).unwrap();
            let bundle = issued_for(key, &["web.example".into()], self.clock.now(), days);
            self.finalized.lock().unwrap().insert(pending.url.clone(), bundle);
        }
        Ok(match self.finalized.lock().unwrap().get(&pending.url) {
            Some(bundle) if bundle.key_pem == pending.key_pem => Reopened::Issued(bundle.clone()),
            Some(_) => Reopened::Gone("another key".into()),
            None => Reopened::Gone("urn:ietf:params:acme:error:malformed: order not found (404)".into()),
        })
    }
    async fn renewal_info(&self, _: &str, _: &Bundle) -> Result<Option<Window>, AcmeError> {
        self.clock.advance(*self.ari_wait.lock().unwrap());
        Ok(self.windows.lock().unwrap().pop_front())
    }
    async fn revoke(&self, _: &str, bundle: &Bundle, _: Option<u8>) -> Result<(), AcmeError> {
        self.revoked.lock().unwrap().push(cert::inspect(bundle, None)?.serial_hex);
        Ok(())
    }
    async fn recover(&self, _: &str, _: &AcmeError) -> bool {
        false
    }
    async fn dry_run(
        &self,
        _: &str,
        directory: &str,
        request: &OrderRequest<'_>,
        _: &dyn Solver,
    ) -> Result<Bundle, AcmeError> {
        self.dry_runs.lock().unwrap().push(directory.to_owned());
        match self.orders.lock().unwrap().pop_front().expect("a dry run the test did not expect") {
            Next::Issue { days } => Ok(issued(request.domains, self.clock.now(), days)),
            Next::Fail(e) => Err(e),
            other => panic!("not for a dry run: {other:?}"),
        }
    }
}

/// What the proxies were given, in order: (certificate, serial).
#[derive(Debug, Default)]
struct TestSink(Mutex<Vec<(String, String)>>);

#[async_trait]
impl Sink for TestSink {
    async fn deploy(&self, name: &str, bundle: &Arc<Bundle>) -> Result<(), DeployError> {
        let serial = cert::inspect(bundle, None).map(|i| i.serial_hex).unwrap_or_default();
        self.0.lock().unwrap().push((name.to_owned(), serial));
        Ok(())
    }
}

impl TestSink {
    fn last(&self) -> String {
        self.0.lock().unwrap().last().map(|(_, serial)| serial.clone()).unwrap_or_default()
    }
}

/// A store shared with other replicas: its lock has a fencing token and a
/// lease the test can let expire (through the CA's `LoseLock`).
#[derive(Debug, Default)]
struct SharedStore {
    inner: MemoryStore,
    lease: Mutex<Option<watch::Sender<bool>>>,
}

#[async_trait]
impl Store for SharedStore {
    async fn load_account(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.inner.load_account(key).await
    }
    async fn save_account(&self, key: &str, data: &[u8]) -> Result<(), StoreError> {
        self.inner.save_account(key, data).await
    }
    async fn forget_account(&self, key: &str) -> Result<(), StoreError> {
        self.inner.forget_account(key).await
    }
    async fn load_certificate(&self, name: &str) -> Result<Option<Bundle>, StoreError> {
        self.inner.load_certificate(name).await
    }
    async fn save_certificate(&self, name: &str, bundle: &Bundle) -> Result<(), StoreError> {
        self.inner.save_certificate(name, bundle).await
    }
    async fn mark_revoked(&self, name: &str, serial: &str) -> Result<(), StoreError> {
        self.inner.mark_revoked(name, serial).await
    }
    async fn revoked(&self, name: &str) -> Result<Option<String>, StoreError> {
        self.inner.revoked(name).await
    }
    async fn clear_revoked(&self, name: &str) -> Result<(), StoreError> {
        self.inner.clear_revoked(name).await
    }
    async fn save_pending(&self, name: &str, order: &PendingOrder) -> Result<(), StoreError> {
        self.inner.save_pending(name, order).await
    }
    async fn load_pending(&self, name: &str) -> Result<Option<PendingOrder>, StoreError> {
        self.inner.load_pending(name).await
    }
    async fn clear_pending(&self, name: &str) -> Result<(), StoreError> {
        self.inner.clear_pending(name).await
    }
    async fn lock(&self, id: &str) -> Result<Acquired, StoreError> {
        let (tx, rx) = watch::channel(false);
        *self.lease.lock().unwrap() = Some(tx);
        Ok(Acquired::Lock(Lock::shared(format!("locks/{id}"), 7, rx, Box::new(()))))
    }
}

struct World {
    clock: Arc<TestClock>,
    ca: Arc<TestCa>,
    store: Arc<dyn Store>,
    sink: Arc<TestSink>,
    statuses: Statuses,
    parts: Arc<Parts>,
}

impl World {
    fn new(store: Arc<dyn Store>, default_certificate: Option<Bundle>) -> Self {
        let clock = Arc::new(TestClock(Mutex::new(t0())));
        let ca = Arc::new(TestCa {
            clock: Arc::clone(&clock),
            orders: Mutex::default(),
            windows: Mutex::default(),
            revoked: Mutex::default(),
            placed: Mutex::default(),
            finalized: Mutex::default(),
            reopened: Mutex::default(),
            open: Mutex::default(),
            dry_runs: Mutex::default(),
            ari_wait: Mutex::default(),
        });
        let sink = Arc::new(TestSink::default());
        let resolvers = BTreeMap::from([("le".to_owned(), resolver())]);
        let bus = Bus::new(None);
        let statuses = bus.statuses.clone();
        let dns = Arc::new(BTreeMap::new());
        let http01: Arc<dyn Solver> = Arc::new(Http01Solver::new(Http01Tokens::new(), None, None));
        let parts = Arc::new(Parts {
            issuer: Issuer::new(
                Arc::clone(&ca) as Arc<dyn Ca>,
                Arc::clone(&store),
                Arc::new(Accounts::new(&resolvers)),
                Arc::new(BTreeMap::from([("le".to_owned(), vec![http01])])),
                Arc::clone(&clock) as Arc<dyn Clock>,
            ),
            coordinator: Coordinator::new(Arc::clone(&store), None, dns, "test".into()),
            serving: Serving {
                sinks: vec![Arc::clone(&sink) as Arc<dyn Sink>],
                default_certificate: default_certificate.map(Arc::new),
                placeholder: true,
                post_deploy: None,
            },
            reporter: Reporter::new(bus, Readiness::default()),
            clock: Arc::clone(&clock) as Arc<dyn Clock>,
            jitter: || 0.0,
            spread: |_| 0.0,
        });
        Self { clock, ca, store, sink, statuses, parts }
    }

    async fn task(&self) -> CertTask {
        let (_tx, rx) = crate::daemon::inbox::inbox(1);
        CertTask::start(Arc::clone(&self.parts), certificate(), vec![Some(Arc::new(resolver()))], rx).await.unwrap()
    }

    fn script(&self, next: Next) {
        self.ca.orders.lock().unwrap().push_back(next);
    }

    fn status(&self) -> crate::serve::admin::CertStatus {
        self.statuses.all().into_iter().next().expect("no status published")
    }
}

fn resolver() -> Resolver {
    toml::from_str("ca_server = \"https://ca.test/directory\"\nhttp_challenge = {}\n").unwrap()
}

fn certificate() -> Certificate {
    Certificate::new("web".into(), vec!["web.example".into()], "le".into())
}

/// Steps until the machine says to wait; returns until when.
async fn settle(task: &mut CertTask) -> SystemTime {
    while task.step().await.is_none() {}
    match task.machine.next_action(task.parts.clock.now()) {
        Action::WaitUntil(at) => at,
        other => panic!("not waiting: {other:?}"),
    }
}

#[tokio::test]
async fn a_new_certificate_is_renewed_when_a_third_of_its_lifetime_is_left() {
    let world = World::new(Arc::new(MemoryStore::new()), None);
    world.script(Next::Issue { days: 90 });
    let mut task = world.task().await;
    let placeholder = world.sink.last();
    // The CA has no ARI (no window): the rule decides.
    let wake = settle(&mut task).await;
    assert_eq!(wake, t0() + 60 * DAY, "{}", world.status().state);
    let served = world.sink.last();
    assert_ne!(served, placeholder, "the issued certificate was not deployed");
    assert_eq!(world.status().serial.as_deref(), Some(served.as_str()));
    assert!(world.store.load_certificate("web").await.unwrap().is_some(), "not stored");

    // Nothing happens until then; then the renewal.
    world.clock.advance(60 * DAY - Duration::from_secs(1));
    assert!(task.step().await.is_some());
    world.script(Next::Issue { days: 90 });
    world.clock.advance(Duration::from_secs(1));
    let wake = settle(&mut task).await;
    assert_eq!(wake, t0() + 120 * DAY);
    assert_ne!(world.sink.last(), served, "the renewed certificate was not deployed");
    assert!(world.ca.orders.lock().unwrap().is_empty());
}

#[tokio::test]
async fn a_failed_order_backs_off_keeps_the_last_good_certificate_and_a_success_resets_it() {
    let world = World::new(Arc::new(MemoryStore::new()), None);
    world.script(Next::Issue { days: 9 });
    let mut task = world.task().await;
    settle(&mut task).await;
    let good = world.sink.last();
    world.clock.advance(6 * DAY);

    world.script(Next::Fail(AcmeError::Dns(DnsError::provider("rfc2136", "the nameserver could not connect", true))));
    let retry = settle(&mut task).await;
    let waited = retry.duration_since(world.clock.now()).unwrap();
    assert!(waited > Duration::ZERO && waited <= Duration::from_secs(120), "first backoff: {waited:?}");
    assert_eq!(task.machine.failures(), 1);
    assert_eq!(world.sink.last(), good, "the last good certificate must stay deployed");
    let status = world.status();
    assert!(status.last_error.as_deref().is_some_and(|e| e.contains("could not connect")), "{status:?}");
    assert!(status.state.starts_with("backing off (attempt 1)"), "{}", status.state);

    world.clock.advance(waited);
    world.script(Next::Issue { days: 9 });
    settle(&mut task).await;
    assert_eq!(task.machine.failures(), 0, "a success resets the backoff");
    assert!(matches!(task.machine.state(), State::Valid { .. }));
    assert_ne!(world.sink.last(), good);
    assert_eq!(world.status().last_error, None);
}

#[tokio::test]
async fn a_restart_during_a_backoff_keeps_it_with_the_file_store() {
    let dir = tempfile::tempdir().unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
    }
    let store = Arc::new(crate::store::FileStore::open(dir.path()).unwrap());
    let world = World::new(store, None);
    world.script(Next::Fail(AcmeError::Dns(DnsError::provider("rfc2136", "the nameserver could not connect", true))));
    let mut task = world.task().await;
    let retry = settle(&mut task).await;
    assert!(retry > world.clock.now());
    assert_eq!(world.ca.placed(), 1);
    drop(task);

    // The restart (a crash loop, a probe restarting the container) keeps
    // the backoff: no order before `retry`, and the failure count goes on.
    let mut restarted = world.task().await;
    assert_eq!(settle(&mut restarted).await, retry, "the restart must wait for the recorded attempt");
    assert_eq!(world.ca.placed(), 1, "ordered again at the restart");
    assert_eq!(restarted.machine.failures(), 1);
    world.clock.advance(retry.duration_since(world.clock.now()).unwrap());
    world.script(Next::Issue { days: 90 });
    settle(&mut restarted).await;
    assert_eq!(world.ca.placed(), 2);
    assert!(!dir.path().join("certificates/web/RENEWAL").exists(), "a success clears the recorded backoff");
}

#[tokio::test]
async fn a_restart_keeps_the_spread_renewal_time() {
    let mut world = World::new(Arc::new(MemoryStore::new()), None);
    let parts = Arc::get_mut(&mut world.parts).unwrap();
    (parts.jitter, parts.spread) = (rand::random::<f64>, super::super::spread_by_serial);
    world.script(Next::Issue { days: 90 });
    let renew_at = settle(&mut world.task().await).await;
    assert!(renew_at <= t0() + 60 * DAY && renew_at >= t0() + 60 * DAY - Duration::from_secs(3600), "{renew_at:?}");
    for _ in 0..3 {
        assert_eq!(settle(&mut world.task().await).await, renew_at, "a restart redrew the renewal time");
    }
    assert_eq!(world.ca.placed(), 1);
}

#[tokio::test]
async fn a_revoked_certificate_gives_way_to_the_default_and_is_not_reordered() {
    let default = issued(&["default.example".into()], t0() - DAY, 365);
    let default_serial = cert::inspect(&default, None).unwrap().serial_hex;
    let world = World::new(Arc::new(MemoryStore::new()), Some(default));
    world.script(Next::Issue { days: 90 });
    let mut task = world.task().await;
    settle(&mut task).await;
    let revoked = world.sink.last();

    let (reply, answer) = oneshot::channel();
    task.command(CertCommand::Revoke { reason: Some(4), reply }).await;
    let answer = answer.await.unwrap().unwrap();
    assert!(answer.contains(&revoked) && answer.contains("Default"), "{answer}");
    assert_eq!(world.ca.revoked.lock().unwrap().as_slice(), std::slice::from_ref(&revoked));
    assert_eq!(world.sink.last(), default_serial, "the default certificate is served after a revocation");
    assert_eq!(world.store.revoked("web").await.unwrap(), Some(revoked.clone()));

    // Not re-ordered, even after a restart; only a forced renewal orders.
    assert_eq!(task.step().await, Some(MAX_SLEEP));
    let mut restarted = world.task().await;
    assert_eq!(restarted.step().await, Some(MAX_SLEEP));
    assert_eq!(world.sink.last(), default_serial);
    assert!(world.status().state.contains("renew web --force"), "{}", world.status().state);
    world.script(Next::Issue { days: 90 });
    let (reply, answer) = oneshot::channel();
    restarted.command(CertCommand::Renew { force: true, reply }).await;
    assert!(answer.await.unwrap().is_ok());
    assert_ne!(world.sink.last(), revoked);
    assert_eq!(world.store.revoked("web").await.unwrap(), None);
}

#[tokio::test]
async fn a_replica_that_loses_its_lock_mid_order_writes_nothing() {
    let store = Arc::new(SharedStore::default());
    let world = World::new(Arc::clone(&store) as Arc<dyn Store>, None);
    world.script(Next::LoseLock(Arc::clone(&store)));
    let mut task = world.task().await;
    let placeholder = world.sink.last();
    let retry = tokio::time::timeout(Duration::from_secs(5), settle(&mut task)).await.expect("the order hung");
    assert!(store.load_certificate("web").await.unwrap().is_none(), "written after the lock was lost");
    assert_eq!(world.sink.last(), placeholder, "deployed after the lock was lost");
    let status = world.status();
    assert!(status.last_error.as_deref().is_some_and(|e| e.contains("lost the lock")), "{status:?}");
    assert!(retry > world.clock.now(), "a lost lock is retried later, not at once");
}

#[path = "ari_tests.rs"]
mod ari;

#[path = "resume_tests.rs"]
mod resume;

#[tokio::test]
async fn a_dry_run_orders_from_the_staging_directory_reports_each_step_and_keeps_nothing() {
    let world = World::new(Arc::new(MemoryStore::new()), None);
    world.script(Next::Issue { days: 90 });
    let mut task = world.task().await;
    settle(&mut task).await;
    let served = world.sink.last();
    let stored = world.store.load_certificate("web").await.unwrap().unwrap();
    let resolver: Resolver = toml::from_str(
        "ca_server = \"https://ca.test/directory\"\nstaging_server = \"https://staging.ca.test/directory\"\nhttp_challenge = {}\n",
    )
    .unwrap();

    world.script(Next::Issue { days: 30 });
    let report = world.parts.issuer.dry_run(&certificate(), &resolver).await.expect("the dry run failed");
    assert!(report.starts_with("dry run of web at https://staging.ca.test/directory:"), "{report}");
    assert!(report.contains("http-01: account registered, order created, every name proven (web.example)"), "{report}");
    assert!(report.ends_with("ok: a real order for this certificate would succeed"), "{report}");
    assert_eq!(*world.ca.dry_runs.lock().unwrap(), ["https://staging.ca.test/directory"]);
    assert_eq!(world.sink.last(), served, "a dry run deployed its certificate");
    assert_eq!(world.store.load_certificate("web").await.unwrap().unwrap().fullchain_pem, stored.fullchain_pem);
    assert_eq!(world.ca.placed(), 1, "a dry run placed a real order");

    world.script(Next::Fail(AcmeError::NoChallenge("http-01", "web.example".into())));
    let failed = world.parts.issuer.dry_run(&certificate(), &resolver).await.expect_err("a failed dry run said ok");
    assert!(failed.report.contains("http-01: the CA offered no http-01 challenge for web.example"), "{failed}");
    assert!(failed.report.ends_with("failed: fix the first error above, then run the dry run again"), "{failed}");
    assert_eq!(world.sink.last(), served);
}

#[tokio::test]
async fn when_the_ca_answers_again_a_certificate_that_waited_for_it_orders_within_the_spread() {
    let world = World::new(Arc::new(MemoryStore::new()), None);
    let refused = || AcmeError::Protocol(instant_acme::Error::Other("connection refused".into()));
    world.script(Next::Fail(refused()));
    let mut task = world.task().await;
    let first = settle(&mut task).await;
    world.clock.advance(first.duration_since(world.clock.now()).unwrap());
    world.script(Next::Fail(refused()));
    let second = settle(&mut task).await;
    assert!(second >= world.clock.now() + Duration::from_secs(9 * 60), "the second backoff is about 10 min");

    // Another resolver's CA coming back changes nothing.
    task.command(CertCommand::CaBack("other".into())).await;
    assert_eq!(settle(&mut task).await, second);
    assert_eq!(world.ca.placed(), 2);
    // Its own CA: the next attempt moves into the spread (here its start:
    // the test's jitter is 0), and the order goes at once.
    task.command(CertCommand::CaBack("le".into())).await;
    assert_eq!(task.machine.next_action(world.clock.now()), Action::Order);
    world.script(Next::Issue { days: 90 });
    settle(&mut task).await;
    assert_eq!(world.ca.placed(), 3, "ordered before the 10 min backoff ended");
    assert!(matches!(task.machine.state(), State::Valid { .. }));
}
