//! Unit tests for [`super::decide`].

use std::time::Duration;

use super::*;

fn config() -> FilterConfig {
    FilterConfig {
        cluster: "proxy_acme_sidecar".to_owned(),
        timeout: Duration::from_millis(1000),
        authority: "proxy-acme".to_owned(),
        max_token_length: 128,
        on_demand: false,
        on_demand_per_second: 10,
        sidecar_retry: Duration::from_millis(3000),
    }
}

/// `decide` for a GET on `path` with host `example.com`.
fn get(path: &[u8]) -> Decision {
    decide(path, Some(b"GET"), Some(b"example.com"), &config())
}

fn challenge(token: &[u8]) -> Vec<u8> {
    [CHALLENGE_PREFIX, token].concat()
}

fn ask(token: &str, host: &str) -> Decision {
    Decision::AskSidecar { token: token.to_owned(), host: host.to_owned() }
}

fn bad_request() -> Decision {
    Decision::Reply(LocalReply::bad_request())
}

#[test]
fn ordinary_paths_pass() {
    for path in [
        &b"/"[..],
        b"",
        b"/index.html",
        b"/.well-known/other",
        b"/.well-known/acme-challenge",
        b"/.well-known/acme-challengex/tok",
        b"/.WELL-KNOWN/acme-challenge/tok",
        b"//.well-known/acme-challenge/tok",
        b"\xff\xfe",
    ] {
        assert!(!is_challenge_path(path), "{path:?}");
        assert_eq!(get(path), Decision::Pass, "{path:?}");
    }
}

#[test]
fn pass_even_without_other_headers() {
    assert_eq!(decide(b"/", None, None, &config()), Decision::Pass);
    assert_eq!(decide(b"/x", Some(b"POST"), Some(b"\xff"), &config()), Decision::Pass);
}

#[test]
fn good_challenge_asks_sidecar() {
    let path = challenge(b"evaGxfADs6pSRb2LAv9IZf17Dt3juxGJ-PCt92wr_oA");
    assert!(is_challenge_path(&path));
    assert_eq!(get(&path), ask("evaGxfADs6pSRb2LAv9IZf17Dt3juxGJ-PCt92wr_oA", "example.com"));
}

#[test]
fn non_get_is_not_found() {
    let path = challenge(b"token");
    for method in [&b"POST"[..], b"HEAD", b"get", b"PUT", b""] {
        let d = decide(&path, Some(method), Some(b"example.com"), &config());
        assert_eq!(d, Decision::Reply(LocalReply::not_found()), "{method:?}");
    }
    let d = decide(&path, None, Some(b"example.com"), &config());
    assert_eq!(d, Decision::Reply(LocalReply::not_found()));
}

#[test]
fn empty_token_is_bad_request() {
    assert_eq!(get(CHALLENGE_PREFIX), bad_request());
}

#[test]
fn bad_token_chars_are_bad_request() {
    for token in [
        &b"tok?x=1"[..],
        b"tok?",
        b"tok/en",
        b"tok/",
        b"tok.en",
        b"..",
        b"tok%2Fen",
        b"tok=",
        b"tok\xffen",
        b"tok en",
        b"tok+en",
        b"tok#en",
        b"tok\0",
        "t\u{f6}k".as_bytes(),
    ] {
        assert_eq!(get(&challenge(token)), bad_request(), "{token:?}");
    }
}

#[test]
fn token_length_limit() {
    let at_max = "a".repeat(128);
    assert_eq!(get(&challenge(at_max.as_bytes())), ask(&at_max, "example.com"));
    let over = "a".repeat(129);
    assert_eq!(get(&challenge(over.as_bytes())), bad_request());

    let mut small = config();
    small.max_token_length = 16;
    let path = challenge(&[b'a'; 17]);
    assert_eq!(decide(&path, Some(b"GET"), Some(b"h"), &small), bad_request());
}

#[test]
fn huge_paths() {
    let huge_token = vec![b'a'; 100 * 1024];
    assert_eq!(get(&challenge(&huge_token)), bad_request());
    let mut huge_other = b"/static/".to_vec();
    huge_other.resize(100 * 1024, b'x');
    assert_eq!(get(&huge_other), Decision::Pass);
}

#[test]
fn host_is_normalized() {
    let path = challenge(b"tok");
    let d = decide(&path, Some(b"GET"), Some(b"WWW.Example.COM.:8080"), &config());
    assert_eq!(d, ask("tok", "www.example.com"));
    let d = decide(&path, Some(b"GET"), Some(b"[::1]:8080"), &config());
    assert_eq!(d, ask("tok", "::1"));
}

#[test]
fn bad_host_is_bad_request() {
    let path = challenge(b"tok");
    for host in [&b""[..], b"a..b", b"host:abc", b"\xff", b"exa mple.com"] {
        let d = decide(&path, Some(b"GET"), Some(host), &config());
        assert_eq!(d, bad_request(), "{host:?}");
    }
    assert_eq!(decide(&path, Some(b"GET"), None, &config()), bad_request());
}

#[test]
fn method_checked_before_token_and_host() {
    let path = challenge(b"bad?token");
    let d = decide(&path, Some(b"POST"), None, &config());
    assert_eq!(d, Decision::Reply(LocalReply::not_found()));
}

#[test]
fn sidecar_path_format() {
    assert_eq!(sidecar_path("abc_-1"), "/v1/http-01/abc_-1");
}
