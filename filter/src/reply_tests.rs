//! Unit tests for the sidecar answer mapping.

use super::*;

const TOKEN: &str = "evaGxfADs6pSRb2LAv9IZf17Dt3juxGJ-PCt92wr-oA";
const THUMB: &str = "nP1qzpXGymHBrUEepNY9HCsQk7K8KhOypzEt62jcerQ";

fn answer(status: Option<&[u8]>, body: &[u8]) -> SidecarAnswer {
    SidecarAnswer::from_response(TOKEN, true, status, body.len(), body.to_vec())
}

fn failed(status: Option<&[u8]>, body: &[u8]) -> Option<SidecarFailure> {
    match answer(status, body) {
        SidecarAnswer::Failed(f) => Some(f),
        _ => None,
    }
}

fn good_body() -> Vec<u8> {
    format!("{TOKEN}.{THUMB}").into_bytes()
}

#[test]
fn ok_with_good_body() {
    let body = good_body();
    let a = answer(Some(b"200"), &body);
    assert_eq!(a, SidecarAnswer::KeyAuthorization(body.clone()));
    let reply = a.into_reply();
    assert_eq!(reply.status, 200);
    assert_eq!(reply.body.as_ref(), body.as_slice());
}

#[test]
fn ok_body_for_another_token() {
    let body = format!("other-token.{THUMB}");
    assert_eq!(failed(Some(b"200"), body.as_bytes()), Some(SidecarFailure::WrongToken));
    // A longer token that merely starts with ours is not ours.
    let body = format!("{TOKEN}x.{THUMB}");
    assert_eq!(failed(Some(b"200"), body.as_bytes()), Some(SidecarFailure::WrongToken));
    // Token without the separating dot, or without a thumbprint.
    assert_eq!(failed(Some(b"200"), TOKEN.as_bytes()), Some(SidecarFailure::WrongToken));
    let body = format!("{TOKEN}.");
    assert_eq!(failed(Some(b"200"), body.as_bytes()), Some(SidecarFailure::WrongToken));
}

#[test]
fn ok_body_not_printable() {
    for bad in [" ", "\n", "\r\n", "\t", "\u{e9}", "\0"] {
        let body = format!("{TOKEN}.{THUMB}{bad}");
        assert_eq!(failed(Some(b"200"), body.as_bytes()), Some(SidecarFailure::BodyNotPrintable), "suffix {bad:?}");
    }
    let body = format!("{TOKEN}. {THUMB}");
    assert_eq!(failed(Some(b"200"), body.as_bytes()), Some(SidecarFailure::BodyNotPrintable));
    let mut body = good_body();
    body.push(0xff);
    assert_eq!(failed(Some(b"200"), &body), Some(SidecarFailure::BodyNotPrintable));
}

#[test]
fn ok_empty_body() {
    assert_eq!(failed(Some(b"200"), b""), Some(SidecarFailure::EmptyBody));
}

#[test]
fn ok_body_too_large() {
    let big = format!("{TOKEN}.{}", "a".repeat(MAX_KEY_AUTHORIZATION_LEN));
    let read: Vec<u8> = big.bytes().take(MAX_KEY_AUTHORIZATION_LEN).collect();
    let a = SidecarAnswer::from_response(TOKEN, true, Some(b"200"), big.len(), read);
    assert_eq!(a, SidecarAnswer::Failed(SidecarFailure::BodyTooLarge(big.len())));
    // Exactly at the limit is fine.
    let max = format!("{TOKEN}.{}", "a".repeat(MAX_KEY_AUTHORIZATION_LEN - TOKEN.len() - 1));
    assert!(matches!(answer(Some(b"200"), max.as_bytes()), SidecarAnswer::KeyAuthorization(_)));
}

#[test]
fn ok_body_truncated() {
    let body = good_body();
    let a = SidecarAnswer::from_response(TOKEN, true, Some(b"200"), body.len() + 1, body);
    assert_eq!(a, SidecarAnswer::Failed(SidecarFailure::BodyTruncated));
}

#[test]
fn not_found() {
    let a = answer(Some(b"404"), b"not found");
    assert_eq!(a, SidecarAnswer::NotFound);
    assert_eq!(a.into_reply(), LocalReply::not_found());
}

#[test]
fn other_statuses() {
    for status in [&b"500"[..], b"503", b"201", b"302", b"400", b"2000", b"", b"\xff"] {
        let a = answer(Some(status), &good_body());
        assert!(matches!(a, SidecarAnswer::Failed(SidecarFailure::Status(_))), "{status:?}");
        assert_eq!(a.into_reply(), LocalReply::unavailable());
    }
}

#[test]
fn no_headers() {
    let a = SidecarAnswer::from_response(TOKEN, false, None, 0, Vec::new());
    assert_eq!(a, SidecarAnswer::Failed(SidecarFailure::NoResponse));
    assert_eq!(a.into_reply().status, 503);
    assert_eq!(failed(None, b""), Some(SidecarFailure::MissingStatus));
}

#[test]
fn fixed_replies() {
    assert_eq!(LocalReply::bad_request().status, 400);
    assert_eq!(LocalReply::bad_request().body.as_ref(), b"bad request\n");
    assert_eq!(LocalReply::not_found().body.as_ref(), b"not found\n");
    assert_eq!(LocalReply::unavailable().status, 503);
}

#[test]
fn failure_messages_are_readable() {
    assert_eq!(
        SidecarFailure::Status(render_status(b"5\n00")).to_string(),
        "unexpected status 5\\n00 (503/504 usually mean unreachable or timed out)"
    );
    let long = render_status(&[b'9'; 100]);
    assert_eq!(long.len(), 16);
}
