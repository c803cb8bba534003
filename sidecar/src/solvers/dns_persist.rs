//! dns-persist-01 (draft-ietf-acme-dns-persist): the operator created one
//! TXT record at `_validation-persist.<domain>` naming the CA's issuer
//! domain and this ACME account, once; nothing is published or withdrawn
//! here and no DNS credentials are needed. Before the CA is told to look,
//! DNS-01's propagation check (`dns::propagation`) waits until every
//! authoritative nameserver answers a record that proves the name (right
//! issuer, right account, `policy=wildcard` for a wildcard, `persistUntil`
//! not past: `dns::persist`). When none does, the error says exactly which
//! record to create.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use hickory_proto::op::{Message, ResponseCode};

use super::{is_ip, is_wildcard, Challenge, ChallengeKind, Presented, Solver, SolverError};
use crate::dns::persist::{self, Expect, Verdict};
use crate::dns::propagation::{self, Expected, Seen};
use crate::dns::{DnsError, DnsPersist};

/// Why dns-persist-01 could not be proven.
#[derive(Debug, thiserror::Error)]
pub enum PersistError {
    /// The challenge names no issuer and none is configured: permanent.
    #[error(
        "dns-persist-01: the CA's challenge names no issuer-domain-names; set `dns_persist.issuer_domain` to the \
         issuer domain the CA documents"
    )]
    NoIssuer,
    /// The configured issuer is not one the CA accepts: permanent.
    #[error(
        "dns-persist-01: `dns_persist.issuer_domain` is '{configured}', but the CA accepts only {offered}: change \
         it (or remove it to use the CA's first)"
    )]
    IssuerNotOffered { configured: String, offered: String },
    /// No nameserver answered a record that proves the name: it may be
    /// created (or fixed) later, so worth retrying.
    #[error("dns-persist-01: {problem}{}: {detail}. Create, once: {}", within(*.waited_secs), .create.join(" and "))]
    NotVisible { problem: &'static str, waited_secs: u64, detail: String, create: Vec<String> },
}

impl PersistError {
    pub fn is_permanent(&self) -> bool {
        !matches!(self, Self::NotVisible { .. })
    }
}

/// How long the record was waited for, unless it was looked at once.
fn within(waited_secs: u64) -> String {
    if waited_secs == 0 {
        String::new()
    } else {
        format!(" within {waited_secs}s")
    }
}

/// Whether every nameserver answers a record proving each of `names` for
/// `account_uri` under `issuer`, looked at once without waiting (what
/// `check --online` shows; an order waits `timeout_secs` for a record just
/// made). The error is the one an order would fail with, naming the
/// records to create. IP addresses are skipped: they have no record.
pub async fn look_once(
    settings: &DnsPersist,
    names: &[String],
    issuer: &str,
    account_uri: &str,
) -> Result<(), SolverError> {
    let mut once = settings.clone();
    once.check.delay_before_check_secs = 0;
    once.check.timeout_secs = 0;
    // Asked to look, it looks, even where orders do not.
    once.check.disable_checks = false;
    let solver = DnsPersistSolver::new(once);
    let offered = [issuer.to_owned()];
    let mut presented = Vec::new();
    for name in names.iter().filter(|n| solver.supports(n)) {
        let challenge = Challenge {
            identifier: name,
            token: "",
            key_authorization: "",
            account_uri,
            issuer_domain_names: &offered,
        };
        presented.push(solver.present(challenge).await?);
    }
    solver.wait_visible(&presented).await
}

/// dns-persist-01 for one resolver.
#[derive(Debug)]
pub struct DnsPersistSolver {
    settings: DnsPersist,
}

impl DnsPersistSolver {
    pub fn new(settings: DnsPersist) -> Self {
        Self { settings }
    }
}

/// What is looked for at one record name, and the record to create.
#[derive(Debug)]
struct Wanted {
    fqdn: String,
    expect: Expect,
    /// Unix seconds when the answer was presented (for `persistUntil`).
    now: u64,
    /// The value to create when no record proves it.
    value: String,
    /// Some server answered a record for another account.
    other_account: AtomicBool,
}

impl Expected for Wanted {
    fn fqdn(&self) -> &str {
        &self.fqdn
    }

    fn judge(&self, answer: &Message) -> Seen {
        match answer.response_code() {
            ResponseCode::NoError => match persist::judge(&propagation::txt_values(answer), &self.expect, self.now) {
                Verdict::Proven => Seen::Present,
                Verdict::Missing => Seen::Stale(Vec::new()),
                refused @ Verdict::Refused(_) => {
                    if let Verdict::Refused(values) = &refused {
                        if values.iter().any(|(_, why)| why.is_other_account()) {
                            self.other_account.store(true, Ordering::Relaxed);
                        }
                    }
                    Seen::Refused(refused.to_string())
                }
            },
            ResponseCode::NXDomain => Seen::NxDomain,
            code => Seen::Failed(code.to_string()),
        }
    }
}

/// The issuer domain names a record may name, and the one to print.
fn issuers(settings: &DnsPersist, offered: &[String]) -> Result<(Vec<String>, String), PersistError> {
    let offered: Vec<String> =
        offered.iter().map(|i| i.trim().trim_end_matches('.').to_ascii_lowercase()).filter(|i| !i.is_empty()).collect();
    match (settings.issuer(), offered.first()) {
        (Some(configured), None) => Ok((vec![configured.clone()], configured)),
        (Some(configured), Some(_)) if offered.contains(&configured) => Ok((offered, configured)),
        (Some(configured), Some(_)) => Err(PersistError::IssuerNotOffered { configured, offered: offered.join(", ") }),
        (None, Some(first)) => Ok((offered.clone(), first.clone())),
        (None, None) => Err(PersistError::NoIssuer),
    }
}

fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

#[async_trait]
impl Solver for DnsPersistSolver {
    fn kind(&self) -> ChallengeKind {
        ChallengeKind::DnsPersist01
    }

    /// Names and wildcards; an IP address has no name to put a record at.
    fn supports(&self, identifier: &str) -> bool {
        !is_ip(identifier)
    }

    /// Nothing to publish: the operator's record is there or not. What to
    /// look for is kept for [`Solver::wait_visible`].
    async fn present(&self, challenge: Challenge<'_>) -> Result<Presented, SolverError> {
        let (accepted, print) = issuers(&self.settings, challenge.issuer_domain_names)?;
        let wildcard = is_wildcard(challenge.identifier);
        let value = persist::record_value(&print, challenge.account_uri, wildcard || self.settings.wildcard_policy());
        let wanted = Wanted {
            fqdn: persist::record_name(challenge.identifier),
            expect: Expect::new(&accepted, challenge.account_uri, wildcard),
            now: unix_now(),
            value,
            other_account: AtomicBool::new(false),
        };
        Ok(Presented::new(self.kind(), challenge.identifier).with(wanted))
    }

    fn visible_at_once(&self) -> bool {
        false
    }

    async fn wait_visible(&self, presented: &[Presented]) -> Result<(), SolverError> {
        let wanted: Vec<&Wanted> = presented.iter().flat_map(Presented::parts::<Wanted>).collect();
        if wanted.is_empty() {
            return Ok(());
        }
        let checks: Vec<Ref<'_>> = wanted.iter().map(|w| Ref(w)).collect();
        match propagation::wait_for_expected(&checks, &self.settings.check).await {
            Ok(()) => Ok(()),
            Err(DnsError::Propagation { waited_secs, detail }) => {
                let problem = if wanted.iter().any(|w| w.other_account.load(Ordering::Relaxed)) {
                    "the record names another ACME account than this one (made for another account or store?)"
                } else {
                    "no record proving this name for this account is on every nameserver"
                };
                Err(PersistError::NotVisible { problem, waited_secs, detail, create: to_create(&wanted) }.into())
            }
            Err(e) => Err(e.into()),
        }
    }
}

/// A borrowed [`Wanted`], for the check.
struct Ref<'a>(&'a Wanted);

impl Expected for Ref<'_> {
    fn fqdn(&self) -> &str {
        self.0.fqdn()
    }

    fn judge(&self, answer: &Message) -> Seen {
        self.0.judge(answer)
    }
}

/// The zone-file lines to create, one per record name: the wildcard form
/// when any name there is a wildcard (it proves the base name too).
fn to_create(wanted: &[&Wanted]) -> Vec<String> {
    let mut by_name: BTreeMap<&str, &Wanted> = BTreeMap::new();
    for w in wanted {
        let entry = by_name.entry(&w.fqdn).or_insert(w);
        if w.expect.wildcard {
            *entry = w;
        }
    }
    by_name.values().map(|w| persist::zone_line(&w.fqdn, &w.value)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(text: &str) -> DnsPersist {
        #[derive(serde::Deserialize)]
        struct Wrap {
            p: DnsPersist,
        }
        toml::from_str::<Wrap>(&format!("p = {text}")).map(|w| w.p).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn the_issuer_is_the_configured_one_if_the_ca_accepts_it_else_the_cas_first() {
        let offered = ["CA.example".to_owned(), "ca2.example".to_owned()];
        let (accepted, print) = issuers(&settings("{}"), &offered).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((accepted.len(), print.as_str()), (2, "ca.example"));
        let chosen = settings("{ issuer_domain = \"ca2.example\" }");
        assert_eq!(issuers(&chosen, &offered).map(|(_, p)| p).ok().as_deref(), Some("ca2.example"));
        assert_eq!(issuers(&chosen, &[]).map(|(a, p)| (a.len(), p)).ok(), Some((1, "ca2.example".to_owned())));
        let wrong = settings("{ issuer_domain = \"other.example\" }");
        let err = issuers(&wrong, &offered).map(drop).unwrap_err();
        assert!(err.is_permanent() && err.to_string().contains("accepts only ca.example, ca2.example"), "{err}");
        assert!(matches!(issuers(&settings("{}"), &[]), Err(PersistError::NoIssuer)));
    }

    fn answer(code: ResponseCode, values: &[&str]) -> Message {
        use hickory_proto::rr::{rdata::TXT, Name, RData, Record};
        use std::str::FromStr;
        let mut message = Message::new();
        message.set_response_code(code);
        let name = Name::from_str("_validation-persist.a.test.").unwrap_or_else(|e| panic!("{e}"));
        for value in values {
            let txt = RData::TXT(TXT::new(vec![(*value).to_owned()]));
            message.add_answer(Record::from_rdata(name.clone(), 60, txt));
        }
        message
    }

    #[test]
    fn a_nameservers_answer_is_judged_as_the_ca_would() {
        let wanted = Wanted {
            fqdn: "_validation-persist.a.test.".into(),
            expect: Expect::new(&["ca.example".to_owned()], "https://ca/acct/1", false),
            now: 1_800_000_000,
            value: String::new(),
            other_account: AtomicBool::new(false),
        };
        let good = "ca.example; accounturi=https://ca/acct/1";
        assert_eq!(wanted.judge(&answer(ResponseCode::NoError, &["unrelated", good])), Seen::Present);
        assert_eq!(wanted.judge(&answer(ResponseCode::NoError, &[])), Seen::Stale(Vec::new()));
        assert_eq!(wanted.judge(&answer(ResponseCode::NXDomain, &[])), Seen::NxDomain);
        assert!(!wanted.other_account.load(Ordering::Relaxed));
        let other = wanted.judge(&answer(ResponseCode::NoError, &["ca.example; accounturi=https://ca/acct/2"]));
        assert!(matches!(&other, Seen::Refused(why) if why.contains("names another account")), "{other:?}");
        assert!(wanted.other_account.load(Ordering::Relaxed));
    }

    #[tokio::test]
    async fn presenting_says_which_record_proves_the_name() {
        let solver = DnsPersistSolver::new(settings("{}"));
        let offered = ["ca.example".to_owned()];
        let challenge = |identifier| Challenge {
            identifier,
            token: "",
            key_authorization: "",
            account_uri: "https://ca/acct/1",
            issuer_domain_names: &offered,
        };
        let apex = solver.present(challenge("a.test")).await.unwrap_or_else(|e| panic!("{e}"));
        let wild = solver.present(challenge("*.a.test")).await.unwrap_or_else(|e| panic!("{e}"));
        let wanted: Vec<&Wanted> = [&apex, &wild].into_iter().flat_map(Presented::parts::<Wanted>).collect();
        assert_eq!(wanted[0].fqdn, "_validation-persist.a.test.");
        assert!(!wanted[0].expect.wildcard && wanted[1].expect.wildcard);
        assert_eq!(
            to_create(&wanted),
            ["_validation-persist.a.test. IN TXT \"ca.example; accounturi=https://ca/acct/1; policy=wildcard\""]
        );
        assert_eq!(
            to_create(&wanted[..1]),
            ["_validation-persist.a.test. IN TXT \"ca.example; accounturi=https://ca/acct/1\""]
        );
        assert!(!solver.supports("10.0.0.1") && solver.supports("*.a.test"));
    }
}
