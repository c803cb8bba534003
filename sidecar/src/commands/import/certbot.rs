//! certbot's config directory (`/etc/letsencrypt`): the current version of
//! each lineage under `live/<name>/` (symlinks into `archive/`), accounts
//! under `accounts/<server host>/<directory path>/<id>/` as a JWK
//! (`private_key.json`) and the registration (`regr.json`).

use std::path::{Path, PathBuf};

use super::keys::{account_key_from_jwk, key_pem_to_pkcs8};
use super::{Found, FoundAccount, FoundCertificate, ImportError};
use crate::cert::Bundle;

/// Reads every lineage and account under `dir`.
pub fn read(dir: &Path) -> Result<Found, ImportError> {
    let (live, accounts) = (dir.join("live"), dir.join("accounts"));
    if !live.is_dir() && !accounts.is_dir() {
        return Err(ImportError::invalid(dir, "not a certbot config directory (it has neither live/ nor accounts/)"));
    }
    let mut found = Found::default();
    for lineage in subdirs(&live)? {
        let name = lineage.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let fullchain_pem = read_text(&lineage.join("fullchain.pem"))?;
        let privkey_pem = read_text(&lineage.join("privkey.pem"))?;
        found.certificates.push(parse_lineage(&name, fullchain_pem, &privkey_pem));
    }
    let mut account_dirs = Vec::new();
    find_accounts(&accounts, 0, &mut account_dirs)?;
    for account in account_dirs {
        let key = read_text(&account.join("private_key.json"))?;
        let regr = read_text(&account.join("regr.json"))?;
        let origin = account.strip_prefix(dir).unwrap_or(&account).display().to_string();
        found.accounts.push(parse_account(&key, &regr, &account, &origin)?);
    }
    Ok(found)
}

/// One lineage from the texts of its `fullchain.pem` and `privkey.pem`: the
/// key is converted to PKCS#8 when it can be; the chain is checked later,
/// by [`super::plan`].
pub fn parse_lineage(name: &str, fullchain_pem: String, privkey_pem: &str) -> FoundCertificate {
    let key_pem = key_pem_to_pkcs8(privkey_pem);
    FoundCertificate { origin: format!("certbot live/{name}"), bundle: Bundle { fullchain_pem, key_pem } }
}

/// One account from its `private_key.json` and `regr.json`; `dir` is for
/// messages.
pub fn parse_account(private_key: &str, regr: &str, dir: &Path, origin: &str) -> Result<FoundAccount, ImportError> {
    let key_path = dir.join("private_key.json");
    let jwk: serde_json::Value =
        serde_json::from_str(private_key).map_err(|e| ImportError::invalid(&key_path, format!("not a JWK: {e}")))?;
    let key = account_key_from_jwk(&jwk).map_err(|e| ImportError::invalid(&key_path, e.to_string()))?;
    let regr_path = dir.join("regr.json");
    let regr: serde_json::Value =
        serde_json::from_str(regr).map_err(|e| ImportError::invalid(&regr_path, format!("not JSON: {e}")))?;
    let url = regr.get("uri").and_then(serde_json::Value::as_str).filter(|u| !u.is_empty());
    let url = url.ok_or_else(|| ImportError::invalid(&regr_path, "uri: missing"))?.to_owned();
    let contact = regr
        .pointer("/body/contact")
        .and_then(serde_json::Value::as_array)
        .map(|a| a.iter().filter_map(|c| c.as_str().map(str::to_owned)).collect())
        .unwrap_or_default();
    Ok(FoundAccount { origin: format!("certbot {origin}"), url, contact, key })
}

/// Account directories are the ones holding `private_key.json`, a few
/// levels down (`<host>/<path...>/<id>`).
fn find_accounts(dir: &Path, depth: usize, out: &mut Vec<PathBuf>) -> Result<(), ImportError> {
    if dir.join("private_key.json").is_file() {
        out.push(dir.to_owned());
        return Ok(());
    }
    if depth > 6 {
        return Ok(());
    }
    for sub in subdirs(dir)? {
        find_accounts(&sub, depth + 1, out)?;
    }
    Ok(())
}

/// The subdirectories of `dir`, sorted; none when it does not exist.
fn subdirs(dir: &Path) -> Result<Vec<PathBuf>, ImportError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => return Err(ImportError::Read { path: dir.to_owned(), source }),
    };
    let mut out = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|source| ImportError::Read { path: dir.to_owned(), source })?;
        if entry.path().is_dir() {
            out.push(entry.path());
        }
    }
    out.sort();
    Ok(out)
}

fn read_text(path: &Path) -> Result<String, ImportError> {
    std::fs::read_to_string(path).map_err(|source| ImportError::Read { path: path.to_owned(), source })
}
