//! The Envoy filter's decision on a request, and its check of the sidecar's
//! answer: everything the filter does with bytes a client or the sidecar
//! chose, without proxy-wasm.
//!
//! Input: lines (`\n`), each optional from the end:
//! 1. the plugin configuration (JSON; empty for the default),
//! 2. `:path`, 3. `:method`, 4. `:authority` (`-` alone: header absent),
//! 5. the sidecar's `:status` (`-`: no response at all; empty: no `:status`),
//! 6. the rest: the sidecar's body.
#![no_main]

use libfuzzer_sys::fuzz_target;
use proxy_acme_filter::challenge::{decide, is_challenge_path, sidecar_path, Decision};
use proxy_acme_filter::config::FilterConfig;
use proxy_acme_filter::host::normalize_host;
use proxy_acme_filter::on_demand::Reporter;
use proxy_acme_filter::reply::{SidecarAnswer, MAX_KEY_AUTHORIZATION_LEN};

const DEFAULT_CONFIG: &[u8] = br#"{"cluster": "proxy_acme_sidecar"}"#;

fn header(field: Option<&[u8]>) -> Option<&[u8]> {
    field.filter(|f| *f != b"-")
}

fuzz_target!(|data: &[u8]| {
    let mut fields = data.splitn(6, |&b| b == b'\n');
    let config_bytes = fields.next().filter(|c| !c.is_empty()).unwrap_or(DEFAULT_CONFIG);
    let config = match FilterConfig::parse(Some(config_bytes)) {
        Ok(config) => config,
        Err(err) => {
            // The log line Envoy shows: must render, whatever the input.
            let _ = err.to_string();
            FilterConfig::parse(Some(DEFAULT_CONFIG)).expect("the default configuration parses")
        }
    };
    let path = fields.next().unwrap_or_default();
    let method = header(fields.next());
    let authority = header(fields.next());
    let status = fields.next();
    let body = fields.next().unwrap_or_default();

    let decision = decide(path, method, authority, &config);
    assert_eq!(is_challenge_path(path), decision != Decision::Pass, "the hot-path check and decide agree");
    let Decision::AskSidecar { token, host } = decision else { return };

    // What goes to the sidecar is a plain token and a canonical host.
    assert!(!token.is_empty() && token.len() <= config.max_token_length);
    assert!(token.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-'), "token {token:?}");
    // Normalising again changes nothing (IPv6 comes back unbracketed).
    let authority = if host.contains(':') { format!("[{host}]") } else { host.clone() };
    assert_eq!(normalize_host(authority.as_bytes()).as_deref(), Some(host.as_str()), "host is canonical");
    assert_eq!(sidecar_path(&token), format!("/v1/http-01/{token}"));

    // The sidecar's answer: only a key authorization for this token is served.
    let has_headers = status != Some(b"-");
    let status = status.filter(|s| has_headers && !s.is_empty());
    let announced = body.len();
    let read = body[..body.len().min(MAX_KEY_AUTHORIZATION_LEN)].to_vec();
    let answer = SidecarAnswer::from_response(&token, has_headers, status, announced, read);
    if let SidecarAnswer::Failed(why) = &answer {
        let _ = why.to_string();
    }
    let reply = answer.into_reply();
    if reply.status == 200 {
        assert!(reply.body.len() <= MAX_KEY_AUTHORIZATION_LEN);
        assert!(reply.body.starts_with(format!("{token}.").as_bytes()), "served a body for another token");
        assert!(reply.body.iter().all(u8::is_ascii_graphic));
    }

    // With on_demand the host is reported once within the rate.
    let mut reporter = Reporter::new(config.on_demand_per_second);
    let first = reporter.should_report(&host, 1_000);
    assert!(first, "a fresh reporter reports its first host");
    assert!(!reporter.should_report(&host, 2_000), "a host is reported once");
});
