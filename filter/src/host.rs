//! Normalization of the request's `:authority` into the host name the
//! sidecar looks challenges up by.
//!
//! The value comes straight from the client, so it is parsed as bytes and
//! everything unexpected is refused: the result is forwarded to the sidecar
//! in a header and must be a plain, canonical name.

use std::net::{Ipv4Addr, Ipv6Addr};

/// Longest DNS name accepted (RFC 1035, without the trailing dot).
const MAX_NAME_LEN: usize = 253;
/// Longest DNS label accepted (RFC 1035).
const MAX_LABEL_LEN: usize = 63;
/// A TCP port has at most 5 decimal digits.
const MAX_PORT_DIGITS: usize = 5;

/// Normalizes an `:authority` value.
///
/// Accepts `host[:port]` where host is a DNS name, an IPv4 literal or a
/// bracketed IPv6 literal. Returns the lowercase name without port and
/// without one trailing dot; IPv6 comes back unbracketed in its canonical
/// (RFC 5952) form. Returns `None` for anything else.
pub fn normalize_host(authority: &[u8]) -> Option<String> {
    if let Some(rest) = authority.strip_prefix(b"[") {
        return normalize_ipv6(rest);
    }
    let host = strip_port(authority)?;
    let host = host.strip_suffix(b".").unwrap_or(host);
    let host = std::str::from_utf8(host).ok()?.to_ascii_lowercase();
    if is_numeric_last_label(&host) {
        // Looks like an address: it must be a real dotted-quad, so that
        // shorthands such as `127.1` never reach the sidecar as "names".
        return host.parse::<Ipv4Addr>().ok().map(|ip| ip.to_string());
    }
    is_dns_name(&host).then_some(host)
}

/// `[v6]` or `[v6]:port`, with the leading `[` already removed.
fn normalize_ipv6(rest: &[u8]) -> Option<String> {
    let close = rest.iter().position(|&b| b == b']')?;
    let (inner, after) = rest.split_at_checked(close)?;
    let after = after.strip_prefix(b"]")?;
    if !after.is_empty() && !valid_port(after.strip_prefix(b":")?) {
        return None;
    }
    let ip: Ipv6Addr = std::str::from_utf8(inner).ok()?.parse().ok()?;
    Some(ip.to_string())
}

/// Splits off an optional `:port` suffix (digits only) and returns the host.
fn strip_port(authority: &[u8]) -> Option<&[u8]> {
    match authority.iter().rposition(|&b| b == b':') {
        None => Some(authority),
        Some(colon) => {
            let (host, port) = authority.split_at_checked(colon)?;
            let port = port.strip_prefix(b":")?;
            valid_port(port).then_some(host)
        }
    }
}

fn valid_port(port: &[u8]) -> bool {
    (1..=MAX_PORT_DIGITS).contains(&port.len()) && port.iter().all(u8::is_ascii_digit)
}

/// True when the last label is all digits (an IPv4 literal, or an attempt).
fn is_numeric_last_label(host: &str) -> bool {
    host.rsplit('.').next().is_some_and(|last| !last.is_empty() && last.bytes().all(|b| b.is_ascii_digit()))
}

/// Lowercase LDH name: labels of `[a-z0-9-]`, 1..=63 bytes, no leading or
/// trailing hyphen, at most 253 bytes in total.
fn is_dns_name(host: &str) -> bool {
    !host.is_empty() && host.len() <= MAX_NAME_LEN && host.split('.').all(is_label)
}

fn is_label(label: &str) -> bool {
    let bytes = label.as_bytes();
    (1..=MAX_LABEL_LEN).contains(&bytes.len())
        && !label.starts_with('-')
        && !label.ends_with('-')
        && bytes.iter().all(|&b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(s: &[u8]) -> Option<String> {
        normalize_host(s)
    }

    fn some(s: &str) -> Option<String> {
        Some(s.to_owned())
    }

    #[test]
    fn plain_names() {
        assert_eq!(norm(b"example.com"), some("example.com"));
        assert_eq!(norm(b"localhost"), some("localhost"));
        assert_eq!(norm(b"xn--bcher-kva.example"), some("xn--bcher-kva.example"));
        assert_eq!(norm(b"a-b.c0"), some("a-b.c0"));
    }

    #[test]
    fn port_is_stripped() {
        assert_eq!(norm(b"example.com:8080"), some("example.com"));
        assert_eq!(norm(b"example.com:80"), some("example.com"));
    }

    #[test]
    fn bad_ports() {
        assert_eq!(norm(b"host:abc"), None);
        assert_eq!(norm(b"host:"), None);
        assert_eq!(norm(b"host:123456"), None);
        assert_eq!(norm(b"host:80:80"), None);
        assert_eq!(norm(b"host:+80"), None);
    }

    #[test]
    fn uppercase_is_lowered() {
        assert_eq!(norm(b"ExAmPle.COM"), some("example.com"));
    }

    #[test]
    fn one_trailing_dot_is_stripped() {
        assert_eq!(norm(b"example.com."), some("example.com"));
        assert_eq!(norm(b"example.com.:443"), some("example.com"));
        assert_eq!(norm(b"example.com.."), None);
        assert_eq!(norm(b"."), None);
    }

    #[test]
    fn ipv4() {
        assert_eq!(norm(b"192.0.2.1"), some("192.0.2.1"));
        assert_eq!(norm(b"192.0.2.1:80"), some("192.0.2.1"));
        assert_eq!(norm(b"192.0.2.1."), some("192.0.2.1"));
        assert_eq!(norm(b"127.1"), None);
        assert_eq!(norm(b"256.0.0.1"), None);
        assert_eq!(norm(b"010.0.0.1"), None);
        assert_eq!(norm(b"1.2.3.4.5"), None);
    }

    #[test]
    fn ipv6() {
        assert_eq!(norm(b"[::1]"), some("::1"));
        assert_eq!(norm(b"[::1]:8080"), some("::1"));
        assert_eq!(norm(b"[2001:DB8:0:0::1]"), some("2001:db8::1"));
        assert_eq!(norm(b"[::1]:"), None);
        assert_eq!(norm(b"[::1]x"), None);
        assert_eq!(norm(b"[::1"), None);
        assert_eq!(norm(b"[]"), None);
        assert_eq!(norm(b"[fe80::1%eth0]"), None);
        assert_eq!(norm(b"[example.com]"), None);
        assert_eq!(norm(b"::1"), None);
    }

    #[test]
    fn empty_and_malformed() {
        assert_eq!(norm(b""), None);
        assert_eq!(norm(b":80"), None);
        assert_eq!(norm(b"a..b"), None);
        assert_eq!(norm(b".a"), None);
        assert_eq!(norm(b"-a.com"), None);
        assert_eq!(norm(b"a-.com"), None);
        assert_eq!(norm(b"a_b.com"), None);
        assert_eq!(norm(b"a b.com"), None);
        assert_eq!(norm(b"user@host"), None);
        assert_eq!(norm(b"host/path"), None);
    }

    #[test]
    fn label_length() {
        let ok = format!("{}.com", "a".repeat(63));
        assert_eq!(norm(ok.as_bytes()), Some(ok));
        let long = format!("{}.com", "a".repeat(64));
        assert_eq!(norm(long.as_bytes()), None);
    }

    #[test]
    fn name_length() {
        // Three 63-byte labels plus a filler label: exactly 253 / 254 bytes.
        let base = ["a".repeat(63), "b".repeat(63), "c".repeat(63)].join(".");
        let ok = format!("{base}.{}", "d".repeat(253 - base.len() - 1));
        assert_eq!(ok.len(), 253);
        assert_eq!(norm(ok.as_bytes()), Some(ok.clone()));
        let with_dot = format!("{ok}.");
        assert_eq!(norm(with_dot.as_bytes()), Some(ok));
        let long = format!("{base}.{}", "d".repeat(254 - base.len() - 1));
        assert_eq!(long.len(), 254);
        assert_eq!(norm(long.as_bytes()), None);
    }

    #[test]
    fn non_utf8_and_non_ascii() {
        assert_eq!(norm(b"ex\xffample.com"), None);
        assert_eq!(norm(b"\xff"), None);
        assert_eq!(norm("bücher.example".as_bytes()), None);
        assert_eq!(norm(b"[\xff::1]"), None);
    }
}
