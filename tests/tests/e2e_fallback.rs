//! Issuer fallback with two real CAs: two Pebbles, each validating through
//! the same Envoy. The first CA is down when the sidecar starts: each
//! certificate comes from the second, Envoy serves a chain of the second's
//! root, and `certs`, `/metrics` and the store say which resolver issued
//! it and why. A revocation goes to the CA that issued the certificate.
//! The first CA comes back: a renewal with `renewals = "prefer_first"`
//! returns to it, one with `"stick"` stays with the second.

use std::time::Duration;

use proxy_acme_e2e::stack::{resolver, with_secrets, Stack};
use proxy_acme_e2e::*;

const BACK: &str = "back.fallback.test";
const STICK: &str = "stick.fallback.test";

/// `[[certificates]]` ordered from `pebble`, then `second`.
fn certificate(name: &str, domain: &str, renewals: &str) -> String {
    format!(
        "[[certificates]]\nname = \"{name}\"\ndomains = [\"{domain}\"]\nresolvers = [\"pebble\", \"second\"]\n\
         fallback = {{ after_failures = 1, patience_secs = 60, renewals = \"{renewals}\" }}\n"
    )
}

/// The serial Envoy serves for `sni` once it verifies against `root` and
/// differs from `not_serial`.
async fn served_under(stack: &Stack, root: &str, sni: &str, not_serial: Option<&str>, what: &str) -> String {
    let result = eventually(Duration::from_secs(90), || async {
        let der = tls_leaf(tls_config(root, &[]), ("127.0.0.1", stack.ports.https), sni).await?;
        let serial = serial_of(&der);
        if Some(serial.as_str()) == not_serial {
            return Err(format!("still serving {serial}"));
        }
        Ok(serial)
    })
    .await;
    result.unwrap_or_else(|e| panic!("{sni}: no certificate {what}: {e}\n--- sidecar\n{}", stack.sidecar.tail()))
}

/// `certs` for one certificate: its name line and the indented lines after it.
fn certs_block(stack: &Stack, name: &str) -> String {
    let (code, out, err) = stack.cli(&["certs"]);
    assert_eq!(code, 0, "certs: {out}{err}");
    let lines: Vec<&str> = out.lines().skip_while(|l| *l != name).collect();
    assert!(!lines.is_empty(), "no {name} in {out}");
    let block: Vec<&str> = lines.iter().skip(1).take_while(|l| l.starts_with("  ")).copied().collect();
    block.join("\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_comes_from_the_second_ca_while_the_first_is_down_and_goes_back() {
    let tmp = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let ports = StackPorts::free();
    // Both CAs validate through the stack's Envoy (HTTP-01 on its port 80).
    let mut first = Pebble::start(tmp.path(), ports.http, ports.https);
    let second_dir = tmp.path().join("second");
    std::fs::create_dir_all(&second_dir).unwrap_or_else(|e| panic!("{e}"));
    let second = Pebble::start(&second_dir, ports.http, ports.https);
    let second_resolver = resolver(&second, "second", "");
    first.stop();

    let tail = |_: &Pebble| {
        format!(
            "{second_resolver}\n{}{}",
            certificate("back", BACK, "prefer_first"),
            certificate("stick", STICK, "stick")
        )
    };
    let mut stack =
        Stack::start_with_pebble(tmp, ports, first, "", tail, |c| with_secrets(c, &["back", "stick"])).await;
    let second_root = second.root_pem().await;

    // The first CA is down: both come from the second, whose root verifies them.
    let back_1 = served_under(&stack, &second_root, BACK, None, "from the second CA").await;
    let stick_1 = served_under(&stack, &second_root, STICK, None, "from the second CA").await;
    let block = certs_block(&stack, "back");
    assert!(block.contains("resolver:  pebble, second"), "{block}");
    assert!(block.contains("issued by: second"), "{block}");
    assert!(block.contains("fallback:  ") && block.contains("pebble"), "certs says why: {block}");
    let metrics = scrape_metrics(stack.ports.ops).await;
    assert_eq!(
        metrics.get("proxy_acme_certificate_issued_by{certificate=\"back\",resolver=\"second\"}"),
        Some(&1.0),
        "{metrics:#?}"
    );
    let moved = metrics.get("proxy_acme_resolver_fallbacks_total{certificate=\"back\",from=\"pebble\",to=\"second\"}");
    assert!(moved.is_some_and(|n| *n >= 1.0), "{metrics:#?}");
    let recorded = std::fs::read_to_string(stack.dir.join("state/certificates/back/ISSUER")).unwrap_or_default();
    assert_eq!(recorded.trim(), "second", "the store records the issuer");
    // Every certificate of the first CA has another to fall back to: its
    // being away is no reason to take the pod out of service.
    let (status, body) =
        http_get(("127.0.0.1", stack.ports.ops), "localhost", "/readyz", &[]).await.unwrap_or_default();
    assert_eq!(status, 200, "ready with the first CA down: {body}");

    // A revocation goes to the CA that issued the certificate (the first
    // is down and knows nothing of it).
    let (code, out, err) = stack.cli(&["revoke", "back"]);
    assert_eq!(code, 0, "revoke: {out}{err}");
    let status = second.cert_status(&back_1).await;
    assert!(status.contains("Revoked"), "the second CA revoked {back_1}: {status}");

    // The first CA is back (a reset Pebble: new root, no accounts). The
    // next order of `back` returns to it; `stick` stays with the second.
    stack.pebble.restart();
    let first_root = stack.pebble.root_pem().await;
    for name in ["back", "stick"] {
        let (code, out, err) = stack.cli(&["renew", name, "--force"]);
        assert_eq!(code, 0, "renew {name}: {out}{err}");
    }
    let back_2 = served_under(&stack, &first_root, BACK, Some(&back_1), "from the first CA again").await;
    let stick_2 = served_under(&stack, &second_root, STICK, Some(&stick_1), "from the second CA still").await;
    assert!(
        tls_leaf(tls_config(&second_root, &[]), ("127.0.0.1", stack.ports.https), BACK).await.is_err(),
        "the chain served for {BACK} ({back_2}) is the first CA's, not the second's"
    );
    assert!(
        tls_leaf(tls_config(&first_root, &[]), ("127.0.0.1", stack.ports.https), STICK).await.is_err(),
        "the chain served for {STICK} ({stick_2}) is the second CA's"
    );
    let block = certs_block(&stack, "back");
    assert!(block.contains("issued by: pebble") && !block.contains("fallback:"), "{block}");
    let block = certs_block(&stack, "stick");
    assert!(block.contains("issued by: second"), "{block}");
    let metrics = scrape_metrics(stack.ports.ops).await;
    assert_eq!(metrics.get("proxy_acme_certificate_issued_by{certificate=\"back\",resolver=\"pebble\"}"), Some(&1.0));
    assert_eq!(metrics.get("proxy_acme_certificate_issued_by{certificate=\"back\",resolver=\"second\"}"), None);
    let recorded = std::fs::read_to_string(stack.dir.join("state/certificates/back/ISSUER")).unwrap_or_default();
    assert_eq!(recorded.trim(), "pebble");

    // The issuer is remembered across a restart: revoking `stick` after
    // one goes to the second CA.
    stack.sidecar.kill();
    let config = std::fs::read_to_string(&stack.config_path).unwrap_or_else(|e| panic!("{e}"));
    stack.sidecar = start_sidecar(&stack.dir, &config);
    wait_for_port(stack.ports.sidecar, Duration::from_secs(30), &mut stack.sidecar);
    let block = certs_block(&stack, "stick");
    assert!(block.contains("issued by: second"), "after a restart: {block}");
    let (code, out, err) = stack.cli(&["revoke", "stick"]);
    assert_eq!(code, 0, "revoke: {out}{err}");
    let status = second.cert_status(&stick_2).await;
    assert!(status.contains("Revoked"), "the second CA revoked {stick_2}: {status}");
}
