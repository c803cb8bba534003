//! dns-persist-01 (draft-ietf-acme-dns-persist) records, pure: the one TXT
//! record an operator creates at `_validation-persist.<domain>`, built,
//! parsed and judged. No I/O and no clock here: the time is passed in.
//!
//! The value is a CAA issue-value (RFC 8659 §4.2): the CA's issuer domain
//! name, then `;`-separated `key=value` parameters: `accounturi` (RFC 8657,
//! required), `policy=wildcard` (the record also proves wildcards) and
//! `persistUntil` (unix seconds after which the CA must not use it).

use std::collections::BTreeMap;
use std::fmt;

/// The label the record lives under.
pub const LABEL: &str = "_validation-persist";

/// The `policy` value that lets the record prove `*.<domain>` too.
pub const POLICY_WILDCARD: &str = "wildcard";

/// Longest string in one TXT record (RFC 1035 §3.3: a length byte).
const MAX_TXT_STRING: usize = 255;

/// `_validation-persist.<domain>.` for identifier `identifier` (a leading
/// `*.` is dropped: a wildcard is proven at its base name), lower case.
pub fn record_name(identifier: &str) -> String {
    let base = identifier.strip_prefix("*.").unwrap_or(identifier).trim_end_matches('.').to_ascii_lowercase();
    format!("{LABEL}.{base}.")
}

/// The record's value: `<issuer>; accounturi=<uri>[; policy=wildcard]`.
pub fn record_value(issuer: &str, account_uri: &str, wildcard: bool) -> String {
    let mut value = format!("{}; accounturi={account_uri}", issuer.to_ascii_lowercase());
    if wildcard {
        value.push_str("; policy=");
        value.push_str(POLICY_WILDCARD);
    }
    value
}

/// The record as a zone-file line (`nsupdate` takes it after `update add`
/// and a TTL): `<name> IN TXT "<value>"`, the value split into strings of
/// at most 255 bytes, `"` and `\` escaped.
pub fn zone_line(name: &str, value: &str) -> String {
    let mut strings = Vec::new();
    let mut rest = value;
    while !rest.is_empty() {
        let mut end = rest.len().min(MAX_TXT_STRING);
        while !rest.is_char_boundary(end) {
            end -= 1;
        }
        let (head, tail) = rest.split_at(end);
        strings.push(format!("\"{}\"", head.replace('\\', "\\\\").replace('"', "\\\"")));
        rest = tail;
    }
    if strings.is_empty() {
        strings.push("\"\"".to_owned());
    }
    format!("{name} IN TXT {}", strings.join(" "))
}

/// The zone-file lines to create for a certificate's `names` under
/// `account_uri`: one per record name, in the order of the names, with
/// `policy=wildcard` when a wildcard maps to it or `wildcard_policy` asks
/// for it everywhere. IP addresses have no record and are left out.
pub fn records_for(names: &[String], issuer: &str, account_uri: &str, wildcard_policy: bool) -> Vec<String> {
    let mut order: Vec<(String, bool)> = Vec::new();
    for name in names.iter().filter(|n| n.parse::<std::net::IpAddr>().is_err()) {
        let record = record_name(name);
        let wildcard = name.starts_with("*.") || wildcard_policy;
        match order.iter_mut().find(|(r, _)| *r == record) {
            Some((_, w)) => *w |= wildcard,
            None => order.push((record, wildcard)),
        }
    }
    order.iter().map(|(record, wildcard)| zone_line(record, &record_value(issuer, account_uri, *wildcard))).collect()
}

/// A parsed record value: the issuer (lower case) and the parameters (keys
/// lower case, values as written).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parsed {
    pub issuer: String,
    pub params: BTreeMap<String, String>,
}

/// Why a value is not an issue-value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("empty")]
    Empty,
    #[error("it does not start with an issuer domain name")]
    NoIssuer,
    #[error("parameter '{0}' has no '='")]
    NoEquals(String),
    #[error("a parameter has no name")]
    NoKey,
    #[error("parameter '{0}' is given twice")]
    Duplicate(String),
}

/// Parses a record value (surrounding quotes and spaces ignored).
pub fn parse(value: &str) -> Result<Parsed, ParseError> {
    let value = value.trim().trim_matches('"').trim();
    if value.is_empty() {
        return Err(ParseError::Empty);
    }
    let mut parts = value.split(';').map(str::trim);
    let issuer = parts.next().unwrap_or_default();
    if issuer.is_empty() || issuer.contains('=') {
        return Err(ParseError::NoIssuer);
    }
    let mut params = BTreeMap::new();
    for part in parts.filter(|p| !p.is_empty()) {
        let (key, val) = part.split_once('=').ok_or_else(|| ParseError::NoEquals(part.to_owned()))?;
        let key = key.trim().to_ascii_lowercase();
        if key.is_empty() {
            return Err(ParseError::NoKey);
        }
        if params.insert(key.clone(), val.trim().to_owned()).is_some() {
            return Err(ParseError::Duplicate(key));
        }
    }
    Ok(Parsed { issuer: issuer.to_ascii_lowercase(), params })
}

/// What a record must say to prove one identifier for one account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expect {
    /// Issuer domain names the CA accepts (any one will do), lower case.
    pub issuers: Vec<String>,
    /// The account URL the record must name.
    pub account_uri: String,
    /// A wildcard is being proven: the record needs `policy=wildcard`.
    pub wildcard: bool,
}

impl Expect {
    pub fn new(issuers: &[String], account_uri: &str, wildcard: bool) -> Self {
        let issuers = issuers.iter().map(|i| i.trim().trim_end_matches('.').to_ascii_lowercase()).collect();
        Self { issuers, account_uri: account_uri.to_owned(), wildcard }
    }
}

/// Why one record does not prove what [`Expect`] says.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Mismatch {
    #[error("malformed ({0})")]
    Malformed(ParseError),
    #[error("names issuer {found}, not {}", .expected.join(" or "))]
    OtherIssuer { found: String, expected: Vec<String> },
    #[error("names no accounturi")]
    NoAccount,
    #[error("names another account (accounturi={found}), not this one ({expected})")]
    OtherAccount { found: String, expected: String },
    #[error("persistUntil={0} is not unix seconds")]
    BadPersistUntil(String),
    #[error("expired (persistUntil={until}, now {now})")]
    Expired { until: u64, now: u64 },
    #[error("has no policy=wildcard, which a wildcard name needs")]
    NotWildcard,
}

impl Mismatch {
    /// The record names another account: worth saying on its own.
    pub fn is_other_account(&self) -> bool {
        matches!(self, Self::OtherAccount { .. })
    }
}

/// Whether one record value proves what `expect` says at unix time `now`.
pub fn judge_one(value: &str, expect: &Expect, now: u64) -> Result<(), Mismatch> {
    let parsed = parse(value).map_err(Mismatch::Malformed)?;
    if !expect.issuers.contains(&parsed.issuer) {
        return Err(Mismatch::OtherIssuer { found: parsed.issuer, expected: expect.issuers.clone() });
    }
    let account = parsed.params.get("accounturi").ok_or(Mismatch::NoAccount)?;
    if *account != expect.account_uri {
        return Err(Mismatch::OtherAccount { found: account.clone(), expected: expect.account_uri.clone() });
    }
    if let Some(until) = parsed.params.get("persistuntil") {
        let until: u64 = until.parse().map_err(|_| Mismatch::BadPersistUntil(until.clone()))?;
        if until < now {
            return Err(Mismatch::Expired { until, now });
        }
    }
    if expect.wildcard && !parsed.params.get("policy").is_some_and(|p| p.eq_ignore_ascii_case(POLICY_WILDCARD)) {
        return Err(Mismatch::NotWildcard);
    }
    Ok(())
}

/// The verdict on all TXT values at the record's name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// One value proves it.
    Proven,
    /// No value at all.
    Missing,
    /// Values, none of which proves it: each with why not.
    Refused(Vec<(String, Mismatch)>),
}

/// Judges every value at the name: proven when any one proves it.
pub fn judge(values: &[String], expect: &Expect, now: u64) -> Verdict {
    if values.is_empty() {
        return Verdict::Missing;
    }
    let mut refused = Vec::new();
    for value in values {
        match judge_one(value, expect, now) {
            Ok(()) => return Verdict::Proven,
            Err(why) => refused.push((value.clone(), why)),
        }
    }
    Verdict::Refused(refused)
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Proven => f.write_str("a record proves it"),
            Self::Missing => f.write_str("no TXT record"),
            Self::Refused(values) => {
                for (i, (value, why)) in values.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{value:?} {why}")?;
                }
                Ok(())
            }
        }
    }
}

#[cfg(test)]
#[path = "persist_tests.rs"]
mod tests;
