//! `proxy-acme import`: certificates and accounts from Traefik's acme.json
//! or certbot's config directory, so a migration does not re-issue (and
//! spend the CA's rate limits).
//!
//! Reading the input is at the edge ([`traefik::read`], [`certbot::read`]);
//! matching what was found against the configuration is pure ([`plan`]);
//! [`apply`] writes the plan through the [`Store`], which checks each
//! certificate against its key once more.
//!
//! The input is another program's files and is not trusted: files are read
//! only when regular and small (`source.rs`), and a certificate is imported
//! only when a CA could have issued it for use now (see [`refusal`]).

pub mod certbot;
mod keys;
mod source;
pub mod traefik;

use std::collections::BTreeSet;
use std::fmt::Write;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use crate::cert::{self, Bundle, CertError, CertInfo, KeyType};
use crate::config::Config;
use crate::schedule::rfc3339;
use crate::store::{Store, StoreError};
pub(crate) use keys::AccountKey;

/// Why an import stopped: the input cannot be read or is not what it should
/// be (the message names the file and the field), or the store failed.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{path}: {message}")]
    Invalid { path: PathBuf, message: String },
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl ImportError {
    pub(crate) fn invalid(path: &std::path::Path, message: impl Into<String>) -> Self {
        Self::Invalid { path: path.to_owned(), message: message.into() }
    }
}

/// What was found in the input: certificates (with their keys) and accounts.
#[derive(Debug, Default)]
pub struct Found {
    pub certificates: Vec<FoundCertificate>,
    pub accounts: Vec<FoundAccount>,
    /// `(what, why)` for what the reading left out (a symlinked directory).
    pub skipped: Vec<(String, String)>,
}

/// A certificate of the input, and where it came from (for messages).
#[derive(Debug, Clone)]
pub struct FoundCertificate {
    pub origin: String,
    pub bundle: Bundle,
}

/// An account of the input. `key` never shows in `Debug`.
#[derive(Debug, Clone)]
pub struct FoundAccount {
    pub origin: String,
    /// The account URL at the CA (`kid`).
    pub url: String,
    pub contact: Vec<String>,
    pub(crate) key: AccountKey,
}

/// What [`apply`] will do.
#[derive(Debug, Default)]
pub struct Plan {
    pub certificates: Vec<PlannedCertificate>,
    pub accounts: Vec<PlannedAccount>,
    /// `(what, why)` for everything left out.
    pub skipped: Vec<(String, String)>,
}

#[derive(Debug)]
pub struct PlannedCertificate {
    /// The `[[certificates]]` entry it is stored under.
    pub name: String,
    pub origin: String,
    pub bundle: Bundle,
    pub info: CertInfo,
}

#[derive(Debug)]
pub struct PlannedAccount {
    /// The resolver it is stored for.
    pub resolver: String,
    pub ca_server: String,
    pub account: FoundAccount,
}

/// Matches what was found against the configuration, as of `now`: each
/// certificate goes to every `[[certificates]]` entry whose domains it
/// covers, the one expiring last winning; a usable account goes to the
/// resolvers of those entries (or the only resolver) on the same CA.
pub fn plan(config: &Config, found: Found, now: SystemTime) -> Plan {
    // One entry per key type (`key_types`): an RSA certificate is imported
    // as `<name>-rsa2048`.
    let certificates = config.managed();
    let mut plan = Plan { skipped: found.skipped, ..Plan::default() };
    let mut candidates: Vec<(usize, usize, FoundCertificate, CertInfo)> = Vec::new();
    for (k, c) in found.certificates.into_iter().enumerate() {
        let info = match cert::inspect(&c.bundle, None) {
            Ok(info) => info,
            Err(CertError::KeyMismatch) => {
                plan.skipped.push((c.origin, "the private key does not belong to the certificate".into()));
                continue;
            }
            Err(e) => {
                plan.skipped.push((c.origin, format!("invalid: {e}")));
                continue;
            }
        };
        let self_signed = cert::self_signed(&c.bundle).unwrap_or(false);
        if let Some(why) = refusal(&info, self_signed, now) {
            plan.skipped.push((c.origin, why));
            continue;
        }
        let covers = |domains: &[String]| domains.iter().all(|d| info.names.iter().any(|n| n.eq_ignore_ascii_case(d)));
        let entries: Vec<usize> = (0..certificates.len()).filter(|&i| covers(&certificates[i].domains)).collect();
        if entries.is_empty() {
            let why = format!("matches no [[certificates]] entry (it covers {})", info.names.join(", "));
            plan.skipped.push((c.origin, why));
            continue;
        }
        // The daemon orders again when the key type differs from the
        // resolver's: importing such a certificate would save nothing.
        let key_type_of =
            |i: usize| config.resolvers.get(&certificates[i].resolver).map(|r| certificates[i].key_type(r));
        let (entries, other_key): (Vec<usize>, Vec<usize>) =
            entries.into_iter().partition(|&i| info.key_type.is_some() && info.key_type == key_type_of(i));
        if entries.is_empty() {
            let entry = &certificates[other_key[0]];
            let why = format!(
                "its key is {} but resolver {} has key_type = \"{}\", so it would be ordered again at start; \
                 set key_type = \"{}\" there to keep it",
                info.key_type.map_or("of a type proxy-acme does not issue", key_type_name),
                entry.resolver,
                key_type_of(other_key[0]).map_or("?", key_type_name),
                info.key_type.map_or("?", key_type_name),
            );
            plan.skipped.push((c.origin, why));
            continue;
        }
        for i in entries {
            candidates.push((i, k, c.clone(), info.clone()));
        }
    }
    let mut chosen = BTreeSet::new();
    for (i, entry) in certificates.iter().enumerate() {
        let best = candidates.iter().filter(|(j, ..)| *j == i).max_by_key(|(.., info)| info.not_after);
        if let Some((_, k, c, info)) = best {
            chosen.insert(*k);
            plan.certificates.push(PlannedCertificate {
                name: entry.name.clone(),
                origin: c.origin.clone(),
                bundle: c.bundle.clone(),
                info: info.clone(),
            });
        }
    }
    let mut superseded = BTreeSet::new();
    for (i, k, c, _) in &candidates {
        if !chosen.contains(k) && superseded.insert(*k) {
            let name = &certificates[*i].name;
            plan.skipped.push((c.origin.clone(), format!("another certificate for {name} expires later")));
        }
    }
    plan_accounts(config, found.accounts, &mut plan);
    plan
}

/// The longest validity a publicly trusted CA may issue (CA/Browser
/// Forum baseline requirements since 2020).
pub const MAX_VALIDITY: Duration = Duration::from_secs(398 * 86_400);

/// Why a certificate that parses and matches its key is still not
/// imported as of `now`: it is not valid now, no CA issued it, or it is
/// valid longer than a CA issues (the renewal would be scheduled decades
/// away).
pub fn refusal(info: &CertInfo, self_signed: bool, now: SystemTime) -> Option<String> {
    if info.not_after <= now {
        return Some(format!("expired on {}", rfc3339(info.not_after)));
    }
    if info.not_before > now {
        return Some(format!("not valid before {}", rfc3339(info.not_before)));
    }
    if self_signed {
        return Some("self-signed: no CA issued it".into());
    }
    let validity = info.not_after.duration_since(info.not_before).unwrap_or_default();
    if validity > MAX_VALIDITY {
        return Some(format!(
            "valid for {} days ({} to {}), longer than the {} days a CA issues",
            validity.as_secs() / 86_400,
            rfc3339(info.not_before),
            rfc3339(info.not_after),
            MAX_VALIDITY.as_secs() / 86_400
        ));
    }
    None
}

fn plan_accounts(config: &Config, accounts: Vec<FoundAccount>, plan: &mut Plan) {
    let mut resolvers: BTreeSet<String> = plan
        .certificates
        .iter()
        .filter_map(|p| config.managed().into_iter().find(|c| c.name == p.name).map(|c| c.resolver))
        .collect();
    if resolvers.is_empty() && config.resolvers.len() == 1 {
        resolvers.extend(config.resolvers.keys().cloned());
    }
    let mut taken = BTreeSet::new();
    for account in accounts {
        if let AccountKey::Unusable(kind) = &account.key {
            let why = format!(
                "its {kind} key cannot be used (proxy-acme signs with ECDSA P-256 only); \
                 a new account will be registered at first start, which costs no certificate rate limit"
            );
            plan.skipped.push((format!("account {}", account.origin), why));
            continue;
        }
        let mut used = false;
        for name in &resolvers {
            let resolver = &config.resolvers[name];
            if taken.contains(name) || origin_of(&resolver.ca_server) != origin_of(&account.url) {
                continue;
            }
            taken.insert(name.clone());
            used = true;
            plan.accounts.push(PlannedAccount {
                resolver: name.clone(),
                ca_server: resolver.ca_server.clone(),
                account: account.clone(),
            });
        }
        if !used {
            let why = if resolvers.is_empty() {
                "no resolver to attach it to: no certificate was matched and the configuration has several resolvers"
                    .to_owned()
            } else {
                let names: Vec<&str> = resolvers.iter().map(String::as_str).collect();
                format!(
                    "it belongs to {}, and no resolver of {} uses that CA (or it has one already)",
                    origin_of(&account.url),
                    names.join(", ")
                )
            };
            plan.skipped.push((format!("account {}", account.origin), why));
        }
    }
}

/// A key type as written in `key_type`.
fn key_type_name(key_type: KeyType) -> &'static str {
    key_type.name()
}

/// `scheme://host[:port]` of a URL: an account URL and a directory URL of
/// the same CA share it.
fn origin_of(url: &str) -> &str {
    let rest = url.find("://").map_or(0, |i| i + 3);
    url[rest..].find('/').map_or(url, |i| &url[..rest + i])
}

/// What an import did, for the operator.
#[derive(Debug, Default)]
pub struct Summary {
    pub lines: Vec<String>,
    pub certificates: usize,
    pub accounts: usize,
    pub skipped: usize,
}

impl Summary {
    fn skip(&mut self, what: &str, why: &str) {
        self.lines.push(format!("skipped {what}: {why}"));
        self.skipped += 1;
    }

    /// One line per certificate and account, then the counts.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for line in &self.lines {
            let _ = writeln!(out, "{line}");
        }
        let plural = |n: usize, word: &str| format!("{n} {word}{}", if n == 1 { "" } else { "s" });
        let _ = writeln!(
            out,
            "imported {} and {}, skipped {}",
            plural(self.certificates, "certificate"),
            plural(self.accounts, "account"),
            self.skipped
        );
        out
    }
}

/// Writes `plan` to `store`. A stored certificate that expires no earlier
/// than the imported one, and a stored account, are kept.
pub async fn apply(plan: Plan, store: &dyn Store) -> Result<Summary, ImportError> {
    let mut summary = Summary::default();
    for (what, why) in &plan.skipped {
        summary.skip(what, why);
    }
    for p in plan.certificates {
        let stored = store.load_certificate(&p.name).await?;
        if let Some(old) = stored.as_ref().and_then(|b| cert::inspect(b, None).ok()) {
            if old.serial_hex == p.info.serial_hex {
                summary.skip(&p.origin, &format!("already stored as {} (serial {})", p.name, old.serial_hex));
                continue;
            }
            if old.not_after >= p.info.not_after {
                let why = format!("{} already holds serial {}, which expires no earlier", p.name, old.serial_hex);
                summary.skip(&p.origin, &why);
                continue;
            }
        }
        store.save_certificate(&p.name, &p.bundle).await?;
        summary.lines.push(format!(
            "imported {} as {} (serial {}, expires {})",
            p.origin,
            p.name,
            p.info.serial_hex,
            rfc3339(p.info.not_after)
        ));
        summary.certificates += 1;
    }
    for p in plan.accounts {
        let what = format!("account {}", p.account.origin);
        if store.load_account(&p.resolver).await?.is_some() {
            summary.skip(&what, &format!("resolver {} already has an account in the store; kept it", p.resolver));
            continue;
        }
        let AccountKey::P256(key) = &p.account.key else { continue };
        let data = crate::acme::imported_account(&p.ca_server, p.account.contact.clone(), &p.account.url, key)
            .map_err(|e| ImportError::Invalid { path: PathBuf::from(&p.account.origin), message: e.to_string() })?;
        store.save_account(&p.resolver, &data).await?;
        summary.lines.push(format!("imported {what} ({}) for resolver {}", p.account.url, p.resolver));
        summary.accounts += 1;
    }
    Ok(summary)
}

/// Where to import from.
#[derive(Debug, Clone)]
pub enum Source {
    /// Traefik's acme.json, and which of its resolvers.
    Traefik { path: PathBuf, resolver: Option<String> },
    /// certbot's config directory (`/etc/letsencrypt`).
    Certbot { dir: PathBuf },
}

/// Reads `source`, matches it against `config` and writes the result to
/// the configured store.
pub async fn import(config: &Config, source: &Source) -> Result<Summary, ImportError> {
    let found = match source {
        Source::Traefik { path, resolver } => traefik::read(path, resolver.as_deref())?,
        Source::Certbot { dir } => certbot::read(dir)?,
    };
    let plan = plan(config, found, SystemTime::now());
    let store = crate::store::open(&config.storage).await?.store;
    apply(plan, store.as_ref()).await
}

#[cfg(test)]
#[path = "mod_tests.rs"]
mod tests;

#[cfg(test)]
#[path = "hostile_tests.rs"]
mod hostile_tests;
