//! `proxy-acme import certbot`: what is read from one lineage
//! (`fullchain.pem`, `privkey.pem` in any of the key forms certbot writes)
//! and one account (`private_key.json`, a JWK, and `regr.json`), then the
//! plan that matches them against the configuration. Walking the directory
//! is I/O and left out.
//!
//! Input: the four files' texts, separated by NUL bytes, in that order.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use proxy_acme::commands::import::{certbot, plan, Found};
use proxy_acme_fuzz::{check_plan, import_config, now, parts};

fuzz_target!(|data: &[u8]| {
    let files = parts(data, 4);
    let text = |i: usize| String::from_utf8_lossy(files[i]).into_owned();
    let mut found = Found::default();
    found.certificates.push(certbot::parse_lineage("a.test", text(0), &text(1)));
    let dir = Path::new("/etc/letsencrypt/accounts/acme-v02.api.letsencrypt.org/directory/0123abcd");
    match certbot::parse_account(&text(2), &text(3), dir, "accounts/acme-v02.api.letsencrypt.org/directory/0123abcd") {
        Ok(account) => found.accounts.push(account),
        Err(err) => assert!(err.to_string().starts_with(&format!("{}/", dir.display())), "{err}"),
    }
    let config = import_config();
    check_plan(config, &plan(config, found, now()));
});
