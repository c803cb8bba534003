//! `proxy-acme import`: certificates (and, where the key type allows, the
//! account) from Traefik's `acme.json` or certbot's configuration directory,
//! so that a user moving to proxy-acme does not order everything again and
//! run into the CA's rate limits.
//!
//! Pure here: reading the sources ([`traefik`], [`certbot`]) gives
//! candidates; [`plan`] matches them to the `[[certificates]]` entries.
//! Writing to the store happens in [`run`].

pub mod certbot;
pub mod traefik;

use std::time::SystemTime;

use crate::cert::{self, Bundle};
use crate::config::{Certificate, Config};
use crate::store::Store;

/// Why an import failed as a whole.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("{path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("{path}: {message}")]
    Invalid { path: String, message: String },
    #[error("store: {0}")]
    Store(#[from] crate::store::StoreError),
}

/// A certificate found in the source.
#[derive(Debug, Clone)]
pub struct Candidate {
    /// Where it was found, for the report (`acme.json resolver le: a.example.com`).
    pub source: String,
    pub bundle: Bundle,
}

/// What [`plan`] decided.
#[derive(Debug, Default)]
pub struct Plan {
    /// Configured certificate name -> the candidate to store.
    pub imports: Vec<(String, Candidate)>,
    /// Candidates left out, and why.
    pub skipped: Vec<(String, String)>,
}

/// Matches candidates to configured certificates: a candidate serves an
/// entry when its key matches its certificate, it has not expired and it
/// names every one of the entry's domains; among several, the one that
/// expires last. Unmatched, expired and broken candidates are reported.
pub fn plan(certificates: &[Certificate], candidates: Vec<Candidate>, now: SystemTime) -> Plan {
    let mut plan = Plan::default();
    let mut usable = Vec::new();
    for candidate in candidates {
        match cert::inspect(&candidate.bundle, None) {
            Err(e) => plan.skipped.push((candidate.source, e.to_string())),
            Ok(info) if info.not_after <= now => plan.skipped.push((candidate.source, "expired".into())),
            Ok(info) => usable.push((candidate, info)),
        }
    }
    let mut used = vec![false; usable.len()];
    for entry in certificates {
        let best = usable
            .iter()
            .enumerate()
            .filter(|(_, (c, _))| cert::inspect(&c.bundle, Some(&entry.domains)).is_ok())
            .max_by_key(|(_, (_, info))| info.not_after);
        if let Some((i, (candidate, _))) = best {
            used[i] = true;
            plan.imports.push((entry.name.clone(), candidate.clone()));
        }
    }
    for ((candidate, info), used) in usable.into_iter().zip(used) {
        if !used {
            let why = format!("no [[certificates]] entry asks for exactly these names ({})", info.names.join(", "));
            plan.skipped.push((candidate.source, why));
        }
    }
    plan
}

/// Stores what [`plan`] chose; returns the report, one line each.
pub async fn store(store: &dyn Store, plan: &Plan) -> Result<String, ImportError> {
    let mut report = String::new();
    for (name, candidate) in &plan.imports {
        store.save_certificate(name, &candidate.bundle).await?;
        store.clear_revoked(name).await?;
        report.push_str(&format!("imported {name} from {}\n", candidate.source));
    }
    for (source, why) in &plan.skipped {
        report.push_str(&format!("skipped {source}: {why}\n"));
    }
    report.push_str(&format!("{} imported, {} skipped\n", plan.imports.len(), plan.skipped.len()));
    Ok(report)
}

/// The whole import for the CLI: read, plan, store, report.
pub async fn run(config: &Config, candidates: Vec<Candidate>) -> Result<String, ImportError> {
    let store = crate::store::FileStore::open(&config.storage.directory)?;
    let plan = plan(&config.certificates, candidates, SystemTime::now());
    self::store(&store, &plan).await
}

#[cfg(test)]
mod tests;
