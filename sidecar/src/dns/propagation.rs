//! The propagation check: before the CA is told to look, every
//! authoritative nameserver of each record's zone must answer the TXT value.
//!
//! The zone is found through the recursive `resolvers` (CNAMEs on the record
//! name are followed, as acme-dns delegation needs): an SOA lookup gives the
//! zone, its NS records the nameservers, and those are then asked directly.
//! On time-out the error names every server that is not there yet and what
//! it answered: a stale value, NXDOMAIN, SERVFAIL, or no answer.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;
use std::time::{Duration, Instant};

use hickory_client::client::{Client, ClientHandle};
use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::{DNSClass, Name, RData, RecordType};
use hickory_proto::runtime::TokioRuntimeProvider;
use hickory_proto::udp::UdpClientStream;
use hickory_proto::xfer::DnsResponse;

use super::{DnsChallenge, DnsError, TxtRecord};

const QUERY_TIMEOUT: Duration = Duration::from_secs(3);
const MAX_CNAME_HOPS: usize = 8;

/// Why the zone of a record, or one server's answer, could not be found.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LookupError {
    /// The query got no answer (time-out, refused, unparsable).
    #[error("{server}: {reason}")]
    Query { server: SocketAddr, reason: String },
    #[error("{server}: {code}")]
    Failed { server: SocketAddr, code: ResponseCode },
    #[error("no resolvers: set dns_challenge.resolvers or /etc/resolv.conf")]
    NoResolvers,
    #[error("more than {MAX_CNAME_HOPS} CNAMEs from {0}")]
    CnameLoop(Name),
    #[error("no SOA for {0} or above")]
    NoSoa(Name),
    #[error("zone {0} has no NS records")]
    NoNameservers(Name),
    #[error("no address for the nameservers of {0}")]
    NoAddresses(Name),
    #[error("not a DNS name: {0}")]
    BadName(String),
}

/// What one server answered for one record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seen {
    Present,
    Stale(Vec<String>),
    NxDomain,
    Failed(String),
    Unreachable(LookupError),
    /// TXT values are there, but none is acceptable; says why (a
    /// dns-persist-01 record naming another account, say).
    Refused(String),
}

impl std::fmt::Display for Seen {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Present => f.write_str("has the value"),
            Self::Stale(values) if values.is_empty() => f.write_str("no TXT value yet"),
            Self::Stale(values) => write!(f, "stale values {values:?}"),
            Self::NxDomain => f.write_str("NXDOMAIN"),
            Self::Failed(code) => f.write_str(code),
            // The server is named by the caller, once.
            Self::Unreachable(LookupError::Query { reason, .. }) => write!(f, "no answer ({reason})"),
            Self::Unreachable(e) => write!(f, "no answer ({e})"),
            Self::Refused(why) => f.write_str(why),
        }
    }
}

/// A server to ask, by name (for messages) and address.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Server {
    name: String,
    address: SocketAddr,
}

async fn query(server: SocketAddr, name: &Name, record_type: RecordType) -> Result<DnsResponse, LookupError> {
    let failed = |e: &dyn std::fmt::Display| LookupError::Query { server, reason: e.to_string() };
    let stream =
        UdpClientStream::builder(server, TokioRuntimeProvider::default()).with_timeout(Some(QUERY_TIMEOUT)).build();
    let (mut client, background) = Client::connect(stream).await.map_err(|e| failed(&e))?;
    tokio::spawn(background);
    client.query(name.clone(), DNSClass::IN, record_type).await.map_err(|e| failed(&e))
}

/// Asks the recursive servers in turn; the first answer wins.
async fn recursive(resolvers: &[SocketAddr], name: &Name, record_type: RecordType) -> Result<DnsResponse, LookupError> {
    let mut last = LookupError::NoResolvers;
    for server in resolvers {
        match query(*server, name, record_type).await {
            Ok(response) if response.response_code() != ResponseCode::ServFail => return Ok(response),
            Ok(response) => last = LookupError::Failed { server: *server, code: response.response_code() },
            Err(e) => last = e,
        }
    }
    Err(last)
}

/// The recursive servers: configured, else /etc/resolv.conf's.
fn resolvers(settings: &DnsChallenge) -> Vec<SocketAddr> {
    if !settings.resolvers.is_empty() {
        return settings.resolvers.clone();
    }
    let text = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    parse_resolv_conf(&text)
}

/// `nameserver` lines of a resolv.conf, on port 53.
pub fn parse_resolv_conf(text: &str) -> Vec<SocketAddr> {
    text.lines()
        .filter_map(|line| line.trim().strip_prefix("nameserver"))
        .filter_map(|rest| rest.trim().parse::<IpAddr>().ok())
        .map(|ip| SocketAddr::new(ip, 53))
        .collect()
}

/// Follows CNAMEs from `name`; the name that holds the TXT records.
async fn follow_cnames(resolvers: &[SocketAddr], name: Name) -> Result<Name, LookupError> {
    let mut current = name;
    for _ in 0..MAX_CNAME_HOPS {
        let response = recursive(resolvers, &current, RecordType::CNAME).await?;
        match cname_target(&response, &current) {
            Some(target) => current = target,
            None => return Ok(current),
        }
    }
    Err(LookupError::CnameLoop(current))
}

/// The authoritative nameservers of the zone holding `name`.
async fn authoritative(resolvers: &[SocketAddr], name: &Name, port: u16) -> Result<Vec<Server>, LookupError> {
    let response = recursive(resolvers, name, RecordType::SOA).await?;
    let zone = soa_zone(&response).ok_or_else(|| LookupError::NoSoa(name.clone()))?;
    let ns = recursive(resolvers, &zone, RecordType::NS).await?;
    let hosts = ns_hosts(&ns);
    if hosts.is_empty() {
        return Err(LookupError::NoNameservers(zone));
    }
    let mut servers = Vec::new();
    for host in hosts {
        for record_type in [RecordType::A, RecordType::AAAA] {
            let Ok(answer) = recursive(resolvers, &host, record_type).await else { continue };
            for ip in addresses(&answer) {
                servers.push(Server { name: host.to_string(), address: SocketAddr::new(ip, port) });
            }
        }
    }
    if servers.is_empty() {
        return Err(LookupError::NoAddresses(zone));
    }
    servers.sort();
    servers.dedup();
    Ok(servers)
}

async fn look(server: SocketAddr, name: &Name, expected: &impl Expected) -> Seen {
    match query(server, name, RecordType::TXT).await {
        Err(e) => Seen::Unreachable(e),
        Ok(response) => expected.judge(&response),
    }
}

/// What the check waits for at one name: DNS-01's [`TxtRecord`] (its exact
/// value), or a dns-persist-01 record that authorizes the account.
pub trait Expected: Sync {
    /// The absolute name to ask for TXT records (`_acme-challenge.<domain>.`).
    fn fqdn(&self) -> &str;
    /// What a nameserver's answer says about it.
    fn judge(&self, answer: &Message) -> Seen;
}

impl Expected for TxtRecord {
    fn fqdn(&self) -> &str {
        &self.fqdn
    }

    fn judge(&self, answer: &Message) -> Seen {
        judge_txt(answer, &self.value)
    }
}

// === the answers, judged (pure) ===

/// The TXT values of an answer, each record's strings joined.
pub fn txt_values(answer: &Message) -> Vec<String> {
    answer
        .answers()
        .iter()
        .filter_map(|r| match r.data() {
            RData::TXT(txt) => Some(txt.to_string()),
            _ => None,
        })
        .collect()
}

/// What a nameserver's answer to the TXT query says about `value`: present
/// when one TXT record (its strings joined) is exactly `value`.
pub fn judge_txt(answer: &Message, value: &str) -> Seen {
    match answer.response_code() {
        ResponseCode::NoError => {
            let values = txt_values(answer);
            if values.iter().any(|v| v == value) {
                Seen::Present
            } else {
                Seen::Stale(values)
            }
        }
        ResponseCode::NXDomain => Seen::NxDomain,
        code => Seen::Failed(code.to_string()),
    }
}

/// Where a CNAME answer sends `name`; `None` when it holds no CNAME for it.
pub fn cname_target(answer: &Message, name: &Name) -> Option<Name> {
    answer.answers().iter().find_map(|r| match r.data() {
        RData::CNAME(cname) if r.name() == name => Some(cname.0.clone()),
        _ => None,
    })
}

/// The zone an SOA answer names, from its answer or authority section.
pub fn soa_zone(answer: &Message) -> Option<Name> {
    answer
        .answers()
        .iter()
        .chain(answer.name_servers())
        .find(|r| r.record_type() == RecordType::SOA)
        .map(|r| r.name().clone())
}

/// The nameserver host names of an NS answer.
pub fn ns_hosts(answer: &Message) -> Vec<Name> {
    answer
        .answers()
        .iter()
        .filter_map(|r| match r.data() {
            RData::NS(host) => Some(host.0.clone()),
            _ => None,
        })
        .collect()
}

/// The addresses of an A or AAAA answer.
pub fn addresses(answer: &Message) -> Vec<IpAddr> {
    answer
        .answers()
        .iter()
        .filter_map(|r| match r.data() {
            RData::A(a) => Some(IpAddr::V4(a.0)),
            RData::AAAA(aaaa) => Some(IpAddr::V6(aaaa.0)),
            _ => None,
        })
        .collect()
}

/// Waits until every record is visible where `settings` says to look.
pub async fn wait_for(records: &[TxtRecord], settings: &DnsChallenge) -> Result<(), DnsError> {
    wait_for_expected(records, settings).await
}

/// Waits until every authoritative nameserver (or every resolver) answers
/// each of `records` as it expects.
pub async fn wait_for_expected(records: &[impl Expected], settings: &DnsChallenge) -> Result<(), DnsError> {
    if settings.disable_checks {
        tracing::info!("DNS propagation check disabled");
        return Ok(());
    }
    if settings.delay_before_check_secs > 0 {
        tokio::time::sleep(Duration::from_secs(settings.delay_before_check_secs)).await;
    }
    let started = Instant::now();
    let timeout = Duration::from_secs(settings.timeout_secs);
    let resolvers = resolvers(settings);
    // (record index, the name holding it, the servers to ask)
    let mut targets = Vec::new();
    for (i, record) in records.iter().enumerate() {
        let fail = |e: LookupError| DnsError::Zone {
            fqdn: record.fqdn().to_owned(),
            reason: e.to_string(),
            advice: super::advice::zone(settings, &resolvers),
        };
        let name = Name::from_str(record.fqdn()).map_err(|e| fail(LookupError::BadName(e.to_string())))?;
        let name = follow_cnames(&resolvers, name).await.map_err(fail)?;
        let servers = if settings.check_all_nameservers {
            authoritative(&resolvers, &name, settings.nameserver_port).await.map_err(fail)?
        } else {
            resolvers.iter().map(|a| Server { name: a.to_string(), address: *a }).collect()
        };
        targets.push((i, name, servers));
    }
    let mut first_seen: BTreeMap<(usize, Server), Duration> = BTreeMap::new();
    loop {
        let mut missing = Vec::new();
        let mut findings = super::advice::Findings::default();
        for (i, name, servers) in &targets {
            for server in servers {
                if first_seen.contains_key(&(*i, server.clone())) {
                    continue;
                }
                match look(server.address, name, &records[*i]).await {
                    Seen::Present => {
                        let took = started.elapsed();
                        tracing::info!(fqdn = %records[*i].fqdn(), server = %server.name, address = %server.address, took_ms = took.as_millis() as u64, "TXT record visible");
                        first_seen.insert((*i, server.clone()), took);
                    }
                    seen => {
                        match seen {
                            Seen::Unreachable(_) | Seen::Failed(_) => findings.unreachable = true,
                            Seen::Refused(_) => findings.refused = true,
                            _ => findings.not_yet = true,
                        }
                        let at = if server.name == server.address.to_string() {
                            server.name.clone()
                        } else {
                            format!("{} ({})", server.name, server.address)
                        };
                        missing.push(format!("{} at {at}: {seen}", records[*i].fqdn()))
                    }
                }
            }
        }
        if missing.is_empty() {
            tracing::info!(
                records = records.len(),
                took_ms = started.elapsed().as_millis() as u64,
                "DNS records propagated"
            );
            return Ok(());
        }
        if started.elapsed() >= timeout {
            let advice = super::advice::timeout(settings, findings);
            let detail =
                if advice.is_empty() { missing.join("; ") } else { format!("{}. {advice}", missing.join("; ")) };
            return Err(DnsError::Propagation { waited_secs: started.elapsed().as_secs(), detail });
        }
        tracing::debug!(missing = missing.len(), "waiting for DNS propagation");
        tokio::time::sleep(Duration::from_secs(settings.interval_secs)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_nameservers_from_resolv_conf() {
        let text = "# comment\nsearch example\nnameserver 10.0.0.2\nnameserver ::1\noptions ndots:2\nnameserver bad\n";
        let expected: Vec<SocketAddr> = vec!["10.0.0.2:53".parse().unwrap(), "[::1]:53".parse().unwrap()];
        assert_eq!(parse_resolv_conf(text), expected);
    }

    fn answer(code: ResponseCode, records: Vec<hickory_proto::rr::Record>) -> Message {
        let mut message = Message::new();
        message.set_response_code(code);
        message.add_answers(records);
        // Judged as it arrives: from the wire.
        Message::from_vec(&message.to_vec().unwrap()).unwrap()
    }

    fn txt(name: &str, strings: &[&str]) -> hickory_proto::rr::Record {
        let txt = hickory_proto::rr::rdata::TXT::new(strings.iter().map(|s| (*s).to_owned()).collect());
        hickory_proto::rr::Record::from_rdata(Name::from_str(name).unwrap(), 60, RData::TXT(txt))
    }

    #[test]
    fn a_txt_value_is_present_only_when_one_record_is_exactly_it() {
        let name = "_acme-challenge.a.test.";
        let ok = answer(ResponseCode::NoError, vec![txt(name, &["old"]), txt(name, &["abc", "def"])]);
        assert_eq!(judge_txt(&ok, "abcdef"), Seen::Present, "strings of one record are joined");
        assert_eq!(judge_txt(&ok, "abc"), Seen::Stale(vec!["old".into(), "abcdef".into()]));
        assert_eq!(judge_txt(&answer(ResponseCode::NoError, vec![]), "abc"), Seen::Stale(vec![]));
        assert_eq!(judge_txt(&answer(ResponseCode::NXDomain, vec![]), "abc"), Seen::NxDomain);
        assert_eq!(
            judge_txt(&answer(ResponseCode::ServFail, vec![txt(name, &["abc"])]), "abc").to_string(),
            "Server Failure"
        );
    }

    #[test]
    fn a_cname_counts_only_for_the_name_asked() {
        let target = Name::from_str("a.auth.acme-dns.test.").unwrap();
        let cname = |owner: &str| {
            let rdata = RData::CNAME(hickory_proto::rr::rdata::CNAME(target.clone()));
            hickory_proto::rr::Record::from_rdata(Name::from_str(owner).unwrap(), 60, rdata)
        };
        let message =
            answer(ResponseCode::NoError, vec![cname("_acme-challenge.b.test."), cname("_acme-challenge.a.test.")]);
        let asked = Name::from_str("_acme-challenge.a.test.").unwrap();
        assert_eq!(cname_target(&message, &asked), Some(target));
        assert_eq!(cname_target(&message, &Name::from_str("c.test.").unwrap()), None);
    }

    #[test]
    fn what_a_server_answered_is_said_plainly() {
        assert_eq!(Seen::Stale(vec!["old".into()]).to_string(), "stale values [\"old\"]");
        assert_eq!(Seen::NxDomain.to_string(), "NXDOMAIN");
        assert_eq!(Seen::Failed("SERVFAIL".into()).to_string(), "SERVFAIL");
        assert_eq!(Seen::Stale(Vec::new()).to_string(), "no TXT value yet");
        let server: SocketAddr = "10.0.0.1:53".parse().unwrap();
        let unreachable = Seen::Unreachable(LookupError::Query { server, reason: "timed out".into() });
        assert_eq!(unreachable.to_string(), "no answer (timed out)", "the caller names the server, once");
    }
}
