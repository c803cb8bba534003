//! What to do about the validation failures every newcomer meets once: the
//! CA's words stay first, a hint about the usual cause follows. Pure: the
//! challenge type and the CA's detail in, the hint out.

use instant_acme::ChallengeType;

/// HTTP-01 got a 404: the path does not reach the sidecar.
const HTTP01_NOT_FOUND: &str = "is the challenge location in place? Port 80 of this name must send \
    /.well-known/acme-challenge/ to the sidecar: in Envoy, the proxy-acme filter on the port-80 listener; in nginx, \
    the `location /.well-known/acme-challenge/` block from `proxy-acme nginx-config`, loaded before the first order \
    (`proxy-acme prepare` writes what nginx needs before the sidecar starts)";

/// HTTP-01 could not connect.
const HTTP01_UNREACHABLE: &str = "the CA could not reach port 80 of this name: HTTP-01 always uses port 80; check \
    that the name's DNS points at this proxy and that port 80 is open to the internet (or use tls_challenge or \
    dns_challenge)";

/// TLS-ALPN-01 handshake without `acme-tls/1`.
const ALPN_NOT_NEGOTIATED: &str = "the CA's handshake with ALPN acme-tls/1 did not reach the sidecar: in Envoy, the \
    filter chain matching `application_protocols: [\"acme-tls/1\"]` with this name's `server_names` must come \
    before the certificate's own chain (see getting-started-envoy.md, TLS-ALPN-01); in nginx, `ssl_preread` must \
    send acme-tls/1 to the sidecar (`proxy-acme nginx-config` prints the stream block)";

/// DNS-01 saw no (or another) TXT value.
const DNS01_NOT_SEEN: &str = "the CA's resolvers did not see the TXT value: the provider may have written it to \
    another zone than the public one (a private or split-horizon zone), or an old value is cached; ask a public \
    resolver for _acme-challenge.<name> TXT";

/// Why a request to the CA failed before any answer (`cause`: the error
/// chain), followed by what usually fixes it.
pub(crate) fn explain_connection(cause: String) -> String {
    let hint = if cause.contains("CaUsedAsEndEntity") {
        "the CA server presents a CA certificate (CA:TRUE) as its own HTTPS certificate, which TLS clients refuse: \
         give it a server certificate signed by that CA, and set ca_certificate to the CA's certificate"
    } else if cause.contains("UnknownIssuer") {
        "the CA server's HTTPS certificate is not signed by a root this resolver trusts: for a private CA, set \
         ca_certificate to the root that signs its HTTPS"
    } else if cause.contains("NotValidForName") {
        "the CA server's HTTPS certificate does not name the host in ca_server"
    } else if cause.contains("Expired") {
        "the CA server's HTTPS certificate has expired (or this host's clock is wrong)"
    } else if cause.to_ascii_lowercase().contains("connection refused") {
        "nothing listens at that address: check ca_server (host and port)"
    } else if cause.contains("dns error") || cause.contains("failed to lookup address") {
        "the CA's host name does not resolve from here: check ca_server and this host's DNS"
    } else {
        return cause;
    };
    format!("{cause} (hint: {hint})")
}

/// The hint for a failed challenge of type `kind` whose CA detail is `detail`.
pub(super) fn hint(kind: &ChallengeType, detail: &str) -> Option<&'static str> {
    let detail = detail.to_ascii_lowercase();
    let any = |words: &[&str]| words.iter().any(|w| detail.contains(w));
    match kind {
        ChallengeType::Http01 if any(&[" 404", "404 not found", "returned 404", ": 404"]) => Some(HTTP01_NOT_FOUND),
        ChallengeType::Http01
            if any(&["connection refused", "timeout", "timed out", "error connecting", "connect"]) =>
        {
            Some(HTTP01_UNREACHABLE)
        }
        ChallengeType::TlsAlpn01 if any(&["alpn", "acme-tls/1"]) => Some(ALPN_NOT_NEGOTIATED),
        ChallengeType::Dns01 if any(&["txt", "nxdomain"]) => Some(DNS01_NOT_SEEN),
        _ => None,
    }
}

/// `detail` followed by its hint, if any.
pub(super) fn explain(kind: &ChallengeType, detail: String) -> String {
    match hint(kind, &detail) {
        Some(hint) => format!("{detail} (hint: {hint})"),
        None => detail,
    }
}

/// The CA's problem answer to a challenge of type `kind`, its detail
/// followed by the hint (instant-acme reports an invalid challenge so).
pub(super) fn explain_error(kind: &ChallengeType, error: instant_acme::Error) -> instant_acme::Error {
    match error {
        instant_acme::Error::Api(mut problem) => {
            problem.detail = problem.detail.take().map(|detail| explain(kind, detail));
            instant_acme::Error::Api(problem)
        }
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_404_asks_for_the_challenge_location_whichever_ca_says_it() {
        for detail in [
            // Pebble
            "Non-200 status code from HTTP: http://a.test/.well-known/acme-challenge/x returned 404",
            // Boulder (Let's Encrypt)
            "127.0.0.1: Invalid response from http://a.test/.well-known/acme-challenge/x: 404",
        ] {
            assert_eq!(hint(&ChallengeType::Http01, detail), Some(HTTP01_NOT_FOUND), "{detail}");
        }
        let refused = "Connection refused: dial tcp 127.0.0.1:80: connect: connection refused";
        assert_eq!(hint(&ChallengeType::Http01, refused), Some(HTTP01_UNREACHABLE));
        assert_eq!(hint(&ChallengeType::Http01, "The key authorization file from the server did not match"), None);
    }

    #[test]
    fn alpn_failures_point_at_the_filter_chain_order() {
        let pebble = "Cannot negotiate ALPN protocol \"acme-tls/1\" for tls-alpn-01 challenge";
        let text = explain(&ChallengeType::TlsAlpn01, pebble.to_owned());
        assert!(text.starts_with(pebble), "the CA's words come first: {text}");
        assert!(text.contains("filter chain") && text.contains("ssl_preread"), "{text}");
        assert_eq!(hint(&ChallengeType::Http01, pebble), None, "a hint fits its challenge type only");
    }

    #[test]
    fn a_refused_https_certificate_and_a_refused_connection_say_what_to_check() {
        let ca_true = "client error (Connect): invalid peer certificate: Other(OtherError(CaUsedAsEndEntity))";
        assert!(explain_connection(ca_true.into()).contains("(hint: the CA server presents a CA certificate (CA:TRUE)"));
        let unknown = "client error (Connect): invalid peer certificate: UnknownIssuer";
        assert!(explain_connection(unknown.into()).contains("set ca_certificate to the root"));
        let refused = "client error (Connect): tcp connect error: Connection refused (os error 111)";
        assert!(explain_connection(refused.into())
            .ends_with("(hint: nothing listens at that address: check ca_server (host and port))"));
        assert_eq!(explain_connection("something new".into()), "something new");
    }

    #[test]
    fn dns_failures_and_unknown_details_are_left_as_the_ca_said() {
        assert_eq!(hint(&ChallengeType::Dns01, "No TXT record found at _acme-challenge.a.test"), Some(DNS01_NOT_SEEN));
        assert_eq!(explain(&ChallengeType::Dns01, "something else".into()), "something else");
    }
}
