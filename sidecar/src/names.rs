//! Domain names: validation of configured names and normalisation of the
//! `Host` a validation request arrives with.

use std::net::IpAddr;

/// What a configured name is: an IP address (RFC 8738) or a DNS name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Identifier {
    Ip(IpAddr),
    Dns,
}

/// Classifies a configured name. Anything with a `:` is an IPv6 address or
/// nothing; a name whose last label is a number (`999.1.1.1`, `1.2.3`,
/// `a.0x1f`) is an IPv4 address or nothing, as the URL standard's host
/// parser has it (no top-level domain is numeric), so it is never ordered
/// as a DNS name; the rest must pass [`validate_dns_name`].
pub fn classify(name: &str) -> Result<Identifier, &'static str> {
    if let Ok(ip) = name.parse::<IpAddr>() {
        return Ok(Identifier::Ip(ip));
    }
    if name.contains(':') {
        return Err("is not an IPv6 address");
    }
    if ends_in_a_number(name) {
        return Err("is not an IPv4 address (four numbers 0-255, no leading zeros)");
    }
    validate_dns_name(name).map(|()| Identifier::Dns)
}

/// The last label (after one trailing dot) is decimal digits or `0x` hex:
/// a resolver or browser would take the name for an IPv4 address.
fn ends_in_a_number(name: &str) -> bool {
    let name = name.strip_suffix('.').unwrap_or(name);
    let last = name.rsplit('.').next().unwrap_or(name);
    let hex = last.strip_prefix("0x").or_else(|| last.strip_prefix("0X"));
    match hex {
        Some(digits) => digits.bytes().all(|b| b.is_ascii_hexdigit()),
        None => !last.is_empty() && last.bytes().all(|b| b.is_ascii_digit()),
    }
}

/// The form two names are compared in: an IP address in its canonical text,
/// a DNS name in lower case without a trailing dot.
pub fn normalize_name(name: &str) -> String {
    match name.parse::<IpAddr>() {
        Ok(ip) => ip.to_string(),
        Err(_) => name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase(),
    }
}

/// Checks a configured domain: LDH labels, 1-63 bytes each, 253 in all,
/// lower case ASCII (IDNs must be given in their `xn--` form), a last label
/// that is not a number. A leading `*.` is allowed here; whether a wildcard
/// can be issued is the caller's call.
pub fn validate_dns_name(name: &str) -> Result<(), &'static str> {
    let rest = name.strip_prefix("*.").unwrap_or(name);
    if rest.is_empty() {
        return Err("is empty");
    }
    if name.len() > 253 {
        return Err("is longer than 253 bytes");
    }
    if rest.bytes().any(|b| b.is_ascii_uppercase()) {
        return Err("must be lower case");
    }
    if !rest.contains('.') {
        return Err("must have at least two labels");
    }
    for label in rest.split('.') {
        if label.is_empty() || label.len() > 63 {
            return Err("has an empty label or one longer than 63 bytes");
        }
        if !label.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-') {
            return Err("may contain only a-z, 0-9 and '-' (use the xn-- form for IDNs)");
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err("has a label starting or ending with '-'");
        }
    }
    if ends_in_a_number(rest) {
        return Err("ends in a number, which makes it an IPv4 address, not a DNS name");
    }
    Ok(())
}

/// Checks a name a certificate may be ordered for on request (on-demand):
/// one DNS host name, neither a wildcard nor an IP literal.
pub fn validate_hostname(name: &str) -> Result<(), &'static str> {
    if name.starts_with('*') {
        return Err("is a wildcard");
    }
    if name.parse::<IpAddr>().is_ok() {
        return Err("is an IP address");
    }
    validate_dns_name(name)
}

/// Normalises a request's `Host`: strips a `:port`, lower-cases, strips one
/// trailing dot. Returns `None` for anything that is not a plausible host.
pub fn normalize_host(host: &str) -> Option<String> {
    let host = host.trim();
    let name = if let Some(v6) = host.strip_prefix('[') {
        let (addr, rest) = v6.split_once(']')?;
        if !(rest.is_empty() || rest.strip_prefix(':').is_some_and(is_port)) {
            return None;
        }
        return addr.parse::<std::net::Ipv6Addr>().ok().map(|a| a.to_string());
    } else {
        match host.rsplit_once(':') {
            Some((name, port)) if is_port(port) => name,
            Some(_) => return None,
            None => host,
        }
    };
    let name = name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase();
    // A request names one host: a wildcard is never a host.
    if name.parse::<std::net::Ipv4Addr>().is_ok() || (!name.starts_with("*.") && validate_dns_name(&name).is_ok()) {
        Some(name)
    } else {
        None
    }
}

fn is_port(s: &str) -> bool {
    !s.is_empty() && s.len() <= 5 && s.bytes().all(|b| b.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_ordinary_names() {
        assert_eq!(validate_dns_name("example.com"), Ok(()));
        assert_eq!(validate_dns_name("a-b.c0.example"), Ok(()));
        assert_eq!(validate_dns_name("*.example.com"), Ok(()));
        assert_eq!(validate_dns_name("xn--bcher-kva.example"), Ok(()));
    }

    #[test]
    fn rejects_bad_names() {
        for bad in ["", "*.", "localhost", "Example.com", "a..b", "-a.b", "a-.b", "a_b.c", "a b.c", "ü.de"] {
            assert!(validate_dns_name(bad).is_err(), "{bad:?} accepted");
        }
        assert!(validate_dns_name(&format!("{}.com", "a".repeat(64))).is_err());
        assert!(validate_dns_name(&format!("{}.com", "a.".repeat(126))).is_err());
    }

    #[test]
    fn hostnames_are_one_dns_name() {
        assert_eq!(validate_hostname("a.example.com"), Ok(()));
        assert_eq!(validate_hostname("*.example.com"), Err("is a wildcard"));
        assert_eq!(validate_hostname("192.0.2.1"), Err("is an IP address"));
        assert_eq!(validate_hostname("::1"), Err("is an IP address"));
        assert!(validate_hostname("a..example.com").is_err());
        assert!(validate_hostname("a_b.example.com").is_err());
    }

    #[test]
    fn numbers_are_ip_addresses_or_nothing() {
        assert_eq!(classify("1.2.3.4"), Ok(Identifier::Ip([1, 2, 3, 4].into())));
        assert_eq!(classify("::1"), Ok(Identifier::Ip(std::net::Ipv6Addr::LOCALHOST.into())));
        assert_eq!(classify("example.com"), Ok(Identifier::Dns));
        assert_eq!(classify("1.2.3.example"), Ok(Identifier::Dns));
        assert_eq!(classify("0x.example"), Ok(Identifier::Dns));
        for bad in ["999.1.1.1", "1.2.3", "1.2.3.4.5", "01.2.3.4", "a.1", "a.0x1f", "256.0.0.0"] {
            assert_eq!(classify(bad), Err("is not an IPv4 address (four numbers 0-255, no leading zeros)"), "{bad}");
            assert!(validate_dns_name(bad).is_err(), "{bad:?} taken as a DNS name");
        }
        for bad in ["::g", "1::2::3", "[::1]", "a.test:443"] {
            assert_eq!(classify(bad), Err("is not an IPv6 address"), "{bad}");
        }
        assert_eq!(normalize_host("999.1.1.1"), None);
    }

    #[test]
    fn names_compare_in_one_form() {
        assert_eq!(normalize_name("WWW.Example.com."), "www.example.com");
        assert_eq!(normalize_name("0:0::1"), "::1");
        assert_eq!(normalize_name("*.a.test"), "*.a.test");
        assert_ne!(normalize_name("*.a.test"), normalize_name("b.a.test"));
    }

    #[test]
    fn normalizes_hosts() {
        assert_eq!(normalize_host("Example.COM:8080").as_deref(), Some("example.com"));
        assert_eq!(normalize_host("example.com.").as_deref(), Some("example.com"));
        assert_eq!(normalize_host("127.0.0.1:80").as_deref(), Some("127.0.0.1"));
        assert_eq!(normalize_host("[::1]:80").as_deref(), Some("::1"));
        assert_eq!(normalize_host("[::1]").as_deref(), Some("::1"));
    }

    #[test]
    fn refuses_hostile_hosts() {
        for bad in [
            "",
            ":80",
            "example.com:http",
            "a..b",
            "[::1",
            "[nope]",
            "exa mple.com",
            "a/b.com",
            "x.com:123456",
            "*.example.com",
            "*.example.com:80",
            "*",
        ] {
            assert_eq!(normalize_host(bad), None, "{bad:?} accepted");
        }
    }
}
