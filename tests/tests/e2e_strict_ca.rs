//! Let's Encrypt's CSR rules, which Pebble does not apply, enforced by the
//! CA front in strict mode (tests/src/strict_csr.rs): first the rules
//! themselves on CSRs made to break them, then the sidecar ordering
//! certificates Boulder is known to refuse when the CSR is wrong (a first
//! name over 64 bytes, an IP address) through the strict front: every one is
//! issued, and every finalize request passed the rules. Last, a CA that
//! finalizes asynchronously: the order stays `processing` with a
//! `Retry-After`, which the sidecar waits out before each look; and an
//! account the CA says is deactivated, replaced by a new registration.

use std::time::Duration;

use proxy_acme_e2e::ca_front::CaFront;
use proxy_acme_e2e::stack::{certificate, resolver, Stack};
use proxy_acme_e2e::strict_csr::judge;
use proxy_acme_e2e::*;

fn csr(names: &[&str], cn: Option<&str>) -> Vec<u8> {
    let key = rcgen::KeyPair::generate().unwrap_or_else(|e| panic!("{e}"));
    let mut params = rcgen::CertificateParams::new(names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>())
        .unwrap_or_else(|e| panic!("{e}"));
    params.distinguished_name = rcgen::DistinguishedName::new();
    if let Some(cn) = cn {
        params.distinguished_name.push(rcgen::DnType::CommonName, cn);
    }
    params.serialize_request(&key).unwrap_or_else(|e| panic!("{e}")).der().to_vec()
}

#[test]
fn the_strict_rules_refuse_what_boulder_refuses() {
    let long = format!("{}.strict.test", "a".repeat(60));
    assert_eq!(judge(&csr(&["a.test"], Some("a.test"))), Ok(()));
    assert_eq!(judge(&csr(&[&long], None)), Ok(()), "no CN at all is fine");
    assert!(judge(&csr(&[&long], Some(&long))).unwrap_err().contains("longer than 64 bytes"));
    assert!(judge(&csr(&["127.0.0.1"], Some("127.0.0.1"))).unwrap_err().contains("IP address in the CN"));
    assert!(judge(&csr(&["a.test"], Some("b.test"))).unwrap_err().contains("CN not among the SANs"));
    assert!(judge(&csr(&["Upper.test"], None)).unwrap_err().contains("upper case"));
    let many: Vec<String> = (0..101).map(|i| format!("n{i}.test")).collect();
    let refs: Vec<&str> = many.iter().map(String::as_str).collect();
    assert!(judge(&csr(&refs, None)).unwrap_err().contains("more than 100"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sidecars_csrs_pass_boulders_rules() {
    let long = format!("{}.strict.test", "a".repeat(60));
    let tmp = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let ports = StackPorts::free();
    let pebble = Pebble::start_with(tmp.path(), ports.http, ports.https, &PebbleOptions::default());
    let root = std::fs::read_to_string(&pebble.minica.root_pem_path).unwrap_or_else(|e| panic!("{e}"));
    let front = CaFront::start(pebble.acme_port, &root, &pebble.minica.cert_path, &pebble.minica.key_path).await;
    front.strict_csr(true);
    let strict = resolver(&pebble, "strict", "").replace(&pebble.directory_url(), &front.directory_url());
    let no_cn =
        resolver(&pebble, "nocn", "common_name = false").replace(&pebble.directory_url(), &front.directory_url());
    let tail = format!(
        "{strict}\n{no_cn}\n{}{}{}{}",
        certificate("demo", &["demo.strict.test"], "strict"),
        certificate("long", &[&long, "short.strict.test"], "strict"),
        certificate("ip", &["127.0.0.1"], "strict"),
        certificate("plain", &["plain.strict.test", "www.plain.strict.test"], "nocn"),
    );
    let stack = Stack::start_with_pebble(tmp, ports, pebble, "", |_| tail, |c| c).await;
    let issued = eventually(Duration::from_secs(90), || async {
        let (_, out, _) = stack.cli(&["certs"]);
        let valid = out.matches("valid until").count();
        if valid >= 4 {
            Ok(())
        } else {
            Err(out)
        }
    })
    .await;
    issued.unwrap_or_else(|e| panic!("not all issued: {e}\n--- sidecar\n{}", stack.sidecar.tail()));
    let finalized: Vec<String> =
        front.seen().into_iter().filter(|s| s.path.starts_with("/finalize-order/")).map(|s| s.answer).collect();
    assert!(finalized.len() >= 4, "{finalized:?}");
    assert!(finalized.iter().all(|a| a.contains("CSR as Boulder wants it")), "{finalized:?}");
}

/// A CA that finalizes asynchronously (the order stays `processing` with
/// `Retry-After: 2`, for the finalize answer and two looks): the sidecar
/// looks again only when told, never sooner, and gets the certificate from
/// its one order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_order_left_processing_is_looked_at_when_the_ca_says_and_issued_once() {
    const WAIT: u64 = 2;
    let tmp = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let ports = StackPorts::free();
    let pebble = Pebble::start_with(tmp.path(), ports.http, ports.https, &PebbleOptions::default());
    let root = std::fs::read_to_string(&pebble.minica.root_pem_path).unwrap_or_else(|e| panic!("{e}"));
    let front = CaFront::start(pebble.acme_port, &root, &pebble.minica.cert_path, &pebble.minica.key_path).await;
    front.processing(WAIT, 2);
    let slow = resolver(&pebble, "slow", "").replace(&pebble.directory_url(), &front.directory_url());
    let tail = format!("{slow}\n{}", certificate("demo", &["demo.processing.test"], "slow"));
    let mut stack = Stack::start_with_pebble(tmp, ports, pebble, "", |_| tail, |c| c).await;
    stack.wait_for_new_serial("demo.processing.test", None, Duration::from_secs(60)).await;
    let seen = front.seen();
    // Created orders (Pebble refuses some nonces with a 400, sent again).
    let orders = seen.iter().filter(|s| s.path == "/order-plz" && s.answer.starts_with("pebble 201")).count();
    assert_eq!(orders, 1, "one order: {seen:#?}");
    // Requests Pebble answered (some nonces are refused and sent again).
    let answered = |s: &ca_front::Seen| !s.answer.starts_with("pebble 400");
    let finalize = seen
        .iter()
        .position(|s| s.path.starts_with("/finalize-order/") && answered(s))
        .unwrap_or_else(|| panic!("{seen:#?}"));
    let looks: Vec<&ca_front::Seen> =
        seen[finalize + 1..].iter().filter(|s| s.path.starts_with("/my-order/") && answered(s)).collect();
    assert!(looks.len() >= 3, "two looks told `processing`, then the valid one: {seen:#?}");
    let mut last = seen[finalize].at;
    for look in &looks[..3] {
        let after = look.at.duration_since(last).unwrap_or_default();
        assert!(after >= Duration::from_millis(WAIT * 1000 - 50), "looked again after {after:?}, before Retry-After");
        last = look.at;
    }
    assert!(looks[..2].iter().all(|l| l.answer.contains("made processing")), "{looks:#?}");
    assert!(seen.iter().any(|s| s.path.starts_with("/certZ/")), "downloaded: {seen:#?}");
}

/// A deactivated account (Boulder's `unauthorized`, "Account is not valid,
/// has status deactivated", on the next new-order): the sidecar says so,
/// sets the old account aside, registers a new one and orders again, once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deactivated_account_is_replaced_by_a_new_registration() {
    let tmp = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let ports = StackPorts::free();
    let pebble = Pebble::start_with(tmp.path(), ports.http, ports.https, &PebbleOptions::default());
    let root = std::fs::read_to_string(&pebble.minica.root_pem_path).unwrap_or_else(|e| panic!("{e}"));
    let front = CaFront::start(pebble.acme_port, &root, &pebble.minica.cert_path, &pebble.minica.key_path).await;
    front.fault("/order-plz", ca_front::Fault::Deactivated, Some(1));
    let ca = resolver(&pebble, "boulder", "").replace(&pebble.directory_url(), &front.directory_url());
    let tail = format!("{ca}\n{}", certificate("demo", &["demo.deactivated.test"], "boulder"));
    let mut stack = Stack::start_with_pebble(tmp, ports, pebble, "", |_| tail, |c| c).await;
    stack.wait_for_new_serial("demo.deactivated.test", None, Duration::from_secs(60)).await;
    let seen = front.seen();
    // Answered requests only: Pebble refuses some nonces (400 badNonce),
    // which the sidecar sends again at once.
    let count = |path: &str| {
        seen.iter()
            .filter(|s| s.path == path && (s.answer.starts_with("pebble 20") || s.answer == "Deactivated"))
            .count()
    };
    assert_eq!((count("/sign-me-up"), count("/order-plz")), (2, 2), "{seen:#?}");
    let log = std::fs::read_to_string(&stack.sidecar.log).unwrap_or_default();
    assert!(log.contains("the CA says our account is deactivated; registering a new one"), "{}", stack.sidecar.tail());
    let accounts: Vec<String> = std::fs::read_dir(stack.dir.join("state/accounts"))
        .unwrap_or_else(|e| panic!("{e}"))
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert!(accounts.iter().any(|n| n.starts_with("boulder.json.forgotten-")), "old account kept aside: {accounts:?}");
    assert!(accounts.iter().any(|n| n == "boulder.json"), "{accounts:?}");
}
