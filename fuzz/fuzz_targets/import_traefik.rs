//! `proxy-acme import traefik`: Traefik's acme.json (resolvers, base64 PEM
//! certificates and keys, the account's DER key), then the plan that matches
//! what was found against the configuration (every certificate inspected).
//!
//! Input: the acme.json text.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use proxy_acme::commands::import::{plan, traefik};
use proxy_acme_fuzz::{check_plan, import_config, now};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let path = Path::new("/var/lib/traefik/acme.json");
    // Without --resolver when it holds one; the seeds' name when several.
    let found = match traefik::parse(text, path, None) {
        Ok(found) => found,
        Err(err) => {
            assert!(err.to_string().starts_with("/var/lib/traefik/acme.json: "), "{err}");
            match traefik::parse(text, path, Some("le")) {
                Ok(found) => found,
                Err(_) => return,
            }
        }
    };
    let config = import_config();
    check_plan(config, &plan(config, found, now()));
});
