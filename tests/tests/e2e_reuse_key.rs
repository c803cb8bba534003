//! `reuse_key = true` keeps a certificate's private key across renewals
//! (pinned keys, DANE TLSA 3 1 1): after a forced renewal at Pebble, Envoy
//! serves a new certificate (new serial) with the same public key, and the
//! stored key file is the same. Beside it, a resolver without the option
//! gets a new key, as by default.

use std::time::Duration;

use proxy_acme_e2e::stack::{certificate, resolver, with_secrets, Stack};
use proxy_acme_e2e::*;

const KEPT: &str = "kept.reusekey.test";
const FRESH: &str = "fresh.reusekey.test";

/// The served leaf's serial and its public key (SubjectPublicKeyInfo DER).
async fn served(stack: &Stack, sni: &str) -> (String, Vec<u8>) {
    let der = stack.served(sni).await.unwrap_or_else(|e| panic!("{sni}: {e}"));
    let (_, cert) = x509_parser::parse_x509_certificate(&der).unwrap_or_else(|e| panic!("{e}"));
    (serial_of(&der), cert.public_key().raw.to_vec())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_renewal_keeps_the_key_only_where_reuse_key_is_set() {
    let tail = |pebble: &Pebble| {
        format!(
            "{}\n{}{}",
            resolver(pebble, "fresh", ""),
            certificate("kept", &[KEPT], "pebble"),
            certificate("fresh", &[FRESH], "fresh")
        )
    };
    let mut stack =
        Stack::start(&PebbleOptions::default(), "reuse_key = true", tail, |c| with_secrets(c, &["kept", "fresh"]))
            .await;
    let kept_serial = stack.wait_for_new_serial(KEPT, None, Duration::from_secs(60)).await;
    let fresh_serial = stack.wait_for_new_serial(FRESH, None, Duration::from_secs(60)).await;
    let (_, kept_key) = served(&stack, KEPT).await;
    let (_, fresh_key) = served(&stack, FRESH).await;
    let key_file = stack.dir.join("state/certificates/kept/live/privkey.pem");
    let kept_pem = std::fs::read_to_string(&key_file).unwrap_or_else(|e| panic!("{e}"));

    for name in ["kept", "fresh"] {
        let (code, out, err) = stack.cli(&["renew", name, "--force"]);
        assert_eq!(code, 0, "{name}: {out}{err}");
    }
    stack.wait_for_new_serial(KEPT, Some(&kept_serial), Duration::from_secs(60)).await;
    stack.wait_for_new_serial(FRESH, Some(&fresh_serial), Duration::from_secs(60)).await;
    let (_, kept_after) = served(&stack, KEPT).await;
    let (_, fresh_after) = served(&stack, FRESH).await;
    assert_eq!(kept_after, kept_key, "reuse_key: the renewed certificate has the same public key");
    assert_ne!(fresh_after, fresh_key, "by default a renewal has a new key");
    let key_file = stack.dir.join("state/certificates/kept/live/privkey.pem");
    assert_eq!(std::fs::read_to_string(&key_file).unwrap_or_default(), kept_pem, "the stored key is the same");
}
