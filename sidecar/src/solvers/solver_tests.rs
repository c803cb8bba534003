//! The solvers in memory: what each presents, that dropping the guard
//! withdraws it (also mid-order), and which identifiers each supports.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;

use super::dns01::Dns01Solver;
use super::http01::{Http01Solver, Http01Tokens};
use super::tls_alpn::{sni_for, TlsAlpnCerts, TlsAlpnSolver, ACME_TLS_ALPN};
use super::*;
use crate::dns::{DnsChallenge, DnsError, DnsProvider, DnsSolver, TxtRecord};
use crate::store::board::ChallengeBoard;
use crate::store::StoreError;

const TOKEN: &str = "tok_-1";
const KEY_AUTHORIZATION: &str = "tok_-1.thumb";

fn challenge(identifier: &str) -> Challenge<'_> {
    Challenge {
        identifier,
        token: TOKEN,
        key_authorization: KEY_AUTHORIZATION,
        account_uri: "",
        issuer_domain_names: &[],
    }
}

/// A board in memory that also logs what happens on it.
#[derive(Debug, Default)]
struct Board {
    posts: Mutex<BTreeMap<(String, String), Vec<u8>>>,
    log: Arc<Mutex<Vec<String>>>,
}

#[async_trait]
impl ChallengeBoard for Board {
    async fn post(&self, kind: &'static str, key: &str, value: &[u8], _: i64) -> Result<(), StoreError> {
        self.log.lock().unwrap().push(format!("post {kind}"));
        self.posts.lock().unwrap().insert((kind.to_owned(), key.to_owned()), value.to_vec());
        Ok(())
    }
    async fn take_down(&self, kind: &'static str, key: &str) {
        self.log.lock().unwrap().push(format!("take down {kind}"));
        self.posts.lock().unwrap().remove(&(kind.to_owned(), key.to_owned()));
    }
    async fn read(&self, kind: &'static str, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.posts.lock().unwrap().get(&(kind.to_owned(), key.to_owned())).cloned())
    }
    async fn list(&self, kind: &'static str) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        let posts = self.posts.lock().unwrap();
        Ok(posts.iter().filter(|((k, _), _)| k == kind).map(|((_, key), v)| (key.clone(), v.clone())).collect())
    }
}

impl Board {
    fn len(&self) -> usize {
        self.posts.lock().unwrap().len()
    }
}

/// Lets the board's spawned take-downs run.
async fn settle() {
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
}

/// A DNS provider that logs its calls (into the board's log when shared).
#[derive(Debug, Default)]
struct Recorder(Arc<Mutex<Vec<String>>>);

#[async_trait]
impl DnsProvider for Recorder {
    async fn present(&self, record: &TxtRecord) -> Result<(), DnsError> {
        self.0.lock().unwrap().push(format!("present {}", record.fqdn));
        Ok(())
    }
    async fn cleanup(&self, record: &TxtRecord) -> Result<(), DnsError> {
        tokio::time::sleep(Duration::from_millis(50)).await;
        self.0.lock().unwrap().push(format!("cleanup {}", record.fqdn));
        Ok(())
    }
}

fn dns01(log: &Arc<Mutex<Vec<String>>>, board: Option<Arc<dyn ChallengeBoard>>) -> Dns01Solver {
    let mut settings = DnsChallenge::default();
    settings.disable_checks = true;
    Dns01Solver::new(DnsSolver { provider: Arc::new(Recorder(Arc::clone(log))), settings }, board)
}

#[tokio::test]
async fn http01_answers_from_memory_the_webroot_and_the_board_until_dropped() {
    let (tokens, root, board) = (Http01Tokens::new(), tempfile::tempdir().unwrap(), Arc::new(Board::default()));
    let solver = Http01Solver::new(tokens.clone(), Some(root.path().to_owned()), Some(board.clone()));
    let presented = solver.present(challenge("Example.com")).await.unwrap();
    let file = root.path().join(".well-known/acme-challenge").join(TOKEN);
    assert_eq!(tokens.answer(TOKEN, "example.com").as_deref(), Some(KEY_AUTHORIZATION));
    assert_eq!(std::fs::read_to_string(&file).unwrap(), KEY_AUTHORIZATION);
    assert_eq!(board.len(), 1);
    assert!(solver.visible_at_once());
    assert!(solver.wait_visible(std::slice::from_ref(&presented)).await.is_ok());

    drop(presented);
    settle().await;
    assert!(tokens.is_empty());
    assert!(!file.exists());
    assert_eq!(board.len(), 0);
}

#[tokio::test]
async fn tls_alpn01_serves_its_certificate_until_cleaned_up() {
    let (certs, board) = (TlsAlpnCerts::new(), Arc::new(Board::default()));
    let solver = TlsAlpnSolver::new(certs.clone(), Some(board.clone()));
    let presented = solver.present(challenge("192.0.2.7")).await.unwrap();
    let sni = sni_for("192.0.2.7");
    assert!(certs.answer(Some(&sni), std::iter::once(ACME_TLS_ALPN)).is_some());
    let post = board.read("tls-alpn-01", &sni).await.unwrap().expect("posted under the SNI");
    let post: posts::TlsAlpnPost = serde_json::from_slice(&post).unwrap();
    assert_eq!(post.digest, posts::hex(&challenge("x").digest()));

    solver.clean_up(vec![presented]).await;
    settle().await;
    assert!(certs.is_empty());
    assert_eq!(board.len(), 0);
}

#[tokio::test]
async fn dns01_posts_before_publishing_and_removes_before_taking_down() {
    let board = Arc::new(Board::default());
    let log = Arc::clone(&board.log);
    let solver = dns01(&log, Some(board.clone()));
    assert!(!solver.visible_at_once());
    let presented = vec![
        solver.present(challenge("example.com")).await.unwrap(),
        solver.present(challenge("*.example.com")).await.unwrap(),
    ];
    solver.wait_visible(&presented).await.unwrap();
    solver.clean_up(presented).await;
    settle().await;
    assert_eq!(
        *log.lock().unwrap(),
        [
            "post dns-01",
            "present _acme-challenge.example.com.",
            "post dns-01",
            "present _acme-challenge.example.com.",
            "cleanup _acme-challenge.example.com.",
            "cleanup _acme-challenge.example.com.",
            "take down dns-01",
            "take down dns-01",
        ]
    );
    assert_eq!(board.len(), 0);
}

#[tokio::test]
async fn an_interrupted_order_still_removes_its_records() {
    let log = Arc::new(Mutex::new(Vec::new()));
    let solver = Arc::new(dns01(&log, None));
    // An order task aborted mid-way, after presenting, drops its guards.
    let order = {
        let solver = Arc::clone(&solver);
        tokio::spawn(async move {
            let _first = solver.present(challenge("example.com")).await.unwrap();
            let _second = solver.present(challenge("*.example.org")).await.unwrap();
            std::future::pending::<()>().await;
        })
    };
    while log.lock().unwrap().len() < 2 {
        tokio::task::yield_now().await;
    }
    order.abort();
    let _ = order.await;
    finish_cleanups(Duration::from_secs(5)).await;
    let mut log = log.lock().unwrap().clone();
    log.sort();
    assert_eq!(
        log,
        [
            "cleanup _acme-challenge.example.com.",
            "cleanup _acme-challenge.example.org.",
            "present _acme-challenge.example.com.",
            "present _acme-challenge.example.org.",
        ]
    );
}

#[test]
fn a_wildcard_needs_dns01_and_an_ip_address_cannot_have_it() {
    let log = Arc::new(Mutex::new(Vec::new()));
    let solvers: [&dyn Solver; 3] = [
        &Http01Solver::new(Http01Tokens::new(), None, None),
        &TlsAlpnSolver::new(TlsAlpnCerts::new(), None),
        &dns01(&log, None),
    ];
    let supported = |identifier: &str| -> Vec<&str> {
        solvers.iter().filter(|s| s.supports(identifier)).map(|s| s.kind().as_str()).collect()
    };
    assert_eq!(supported("example.com"), ["http-01", "tls-alpn-01", "dns-01"]);
    assert_eq!(supported("*.example.com"), ["dns-01"]);
    assert_eq!(supported("192.0.2.7"), ["http-01", "tls-alpn-01"]);
    assert_eq!(supported("2001:db8::1"), ["http-01", "tls-alpn-01"]);
}

#[test]
fn the_answers_are_the_rfc_values() {
    // RFC 8555 §8.4: base64url(SHA-256(key authorization)), no padding.
    let c = challenge("example.com");
    assert_eq!(c.dns_value().len(), 43);
    assert_eq!(Challenge { key_authorization: "abc", ..c }.dns_value(), "ungWv48Bz-pBQUDeXa4iI7ADYaOWF3qctBD_YfIAFa0");
}
