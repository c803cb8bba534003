//! What a failed propagation check tells the operator: which DNS servers
//! were asked (and where that list came from) and which setting changes
//! what. Pure: the check's findings in, one sentence of advice out.

use std::net::SocketAddr;

use super::settings::DnsChallenge;

/// What the servers that lacked the record answered, in kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct Findings {
    /// Some server did not answer at all (time-out, refused).
    pub(super) unreachable: bool,
    /// Some server answered without the value (yet): stale, NXDOMAIN.
    pub(super) not_yet: bool,
    /// Some server answered values that are there but not acceptable (a
    /// dns-persist-01 record for another account); each says why.
    pub(super) refused: bool,
}

/// The recursive servers asked, and where the list came from.
pub(super) fn asked(settings: &DnsChallenge, resolvers: &[SocketAddr]) -> String {
    let list = if resolvers.is_empty() {
        "no server".to_owned()
    } else {
        resolvers.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
    };
    let source = if settings.resolvers.is_empty() {
        "from /etc/resolv.conf".to_owned()
    } else {
        format!("{}.resolvers", settings.table)
    };
    format!("asked {list} ({source})")
}

/// Advice when the zone or its nameservers of a record cannot be found.
pub(super) fn zone(settings: &DnsChallenge, resolvers: &[SocketAddr]) -> String {
    let table = settings.table;
    let fix = if settings.resolvers.is_empty() {
        format!(
            "set `{table}.resolvers` to DNS servers that resolve this zone (for a private or split-horizon zone, \
             its own nameserver, e.g. resolvers = [\"10.0.0.53:53\"])"
        )
    } else {
        format!(
            "check that `{table}.resolvers` resolve this zone (for a private or split-horizon zone, list its own \
             nameserver)"
        )
    };
    let narrow = if settings.check_all_nameservers {
        ", or set `check_all_nameservers = false` to check at those resolvers only"
    } else {
        ""
    };
    format!("{}; {fix}{narrow}", asked(settings, resolvers))
}

/// Advice when the check timed out.
pub(super) fn timeout(settings: &DnsChallenge, findings: Findings) -> String {
    let table = settings.table;
    let mut advice = Vec::new();
    if findings.unreachable {
        if settings.check_all_nameservers {
            advice.push(format!(
                "a nameserver did not answer on port {port} (`{table}.nameserver_port`): allow DNS from here to \
                 it, set `nameserver_port` if it listens elsewhere, or set `check_all_nameservers = false` to \
                 check at `resolvers` only",
                port = settings.nameserver_port
            ));
        } else {
            advice.push(format!("a resolver did not answer: check `{table}.resolvers`"));
        }
    }
    if findings.not_yet && table == super::settings::DNS_PERSIST {
        advice.push(format!(
            "the record was not there: create it (once), or if it was just created, raise `{table}.timeout_secs` \
             (now {}) or check that it went into the zone these servers serve",
            settings.timeout_secs
        ));
    } else if findings.not_yet {
        advice.push(format!(
            "the value was not there yet: the provider may be slow to publish (raise `{table}.timeout_secs`, now \
             {}), or it was written to another zone than the one these servers serve",
            settings.timeout_secs
        ));
    }
    if findings.refused {
        advice.push("a record is there but does not authorize this request: replace it".to_owned());
    }
    advice.join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(resolvers: &[&str], check_all_nameservers: bool) -> DnsChallenge {
        let mut settings = DnsChallenge::default();
        settings.resolvers = resolvers.iter().map(|r| r.parse().unwrap()).collect();
        settings.check_all_nameservers = check_all_nameservers;
        (settings.nameserver_port, settings.timeout_secs) = (5353, 30);
        settings
    }

    #[test]
    fn the_zone_advice_names_the_servers_asked_where_they_came_from_and_the_setting() {
        let servers: Vec<SocketAddr> = vec!["10.0.0.2:53".parse().unwrap()];
        let text = zone(&settings(&[], true), &servers);
        assert!(text.starts_with("asked 10.0.0.2:53 (from /etc/resolv.conf); set `dns_challenge.resolvers`"), "{text}");
        assert!(text.contains("check_all_nameservers = false"), "{text}");
        let configured = settings(&["10.0.0.9:5353"], false);
        let text = zone(&configured, &configured.resolvers);
        assert!(text.starts_with("asked 10.0.0.9:5353 (dns_challenge.resolvers); check that"), "{text}");
        assert!(!text.contains("check_all_nameservers"), "{text}");
    }

    #[test]
    fn the_timeout_advice_says_which_setting_fits_what_was_seen() {
        let s = settings(&[], true);
        let unreachable = timeout(&s, Findings { unreachable: true, ..Findings::default() });
        assert!(unreachable.contains("port 5353") && unreachable.contains("nameserver_port"), "{unreachable}");
        assert!(!unreachable.contains("timeout_secs"), "{unreachable}");
        let slow = timeout(&s, Findings { not_yet: true, ..Findings::default() });
        assert!(slow.contains("timeout_secs`, now 30"), "{slow}");
        assert_eq!(timeout(&s, Findings::default()), "");
        let mut persist = settings(&["10.0.0.9:5353"], true);
        persist.table = crate::dns::settings::DNS_PERSIST;
        let missing = timeout(&persist, Findings { not_yet: true, refused: true, ..Findings::default() });
        assert!(missing.contains("create it (once)") && missing.contains("`dns_persist.timeout_secs`"), "{missing}");
        assert!(missing.contains("does not authorize"), "{missing}");
        assert!(zone(&persist, &persist.resolvers).contains("(dns_persist.resolvers)"));
    }
}
