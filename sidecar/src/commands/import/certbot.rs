//! certbot's config directory (`/etc/letsencrypt`): the current version of
//! each lineage under `live/<name>/` (symlinks into `archive/`), accounts
//! under `accounts/<server host>/<directory path>/<id>/` as a JWK
//! (`private_key.json`) and the registration (`regr.json`).
//!
//! Files are read through [`Tree`]: regular files inside the directory
//! only, each up to 1 MiB; directories are walked without following a
//! symlink (see `source.rs`).

use std::path::{Path, PathBuf};

use super::keys::{account_key_from_jwk, key_pem_to_pkcs8};
use super::source::{Entry, Tree, FILE_CAP};
use super::{Found, FoundAccount, FoundCertificate, ImportError};
use crate::cert::Bundle;

/// How deep account directories are looked for under `accounts/`
/// (`<host>/<path...>/<id>`).
const ACCOUNT_DEPTH: usize = 6;

/// Reads every lineage and account under `dir`.
pub fn read(dir: &Path) -> Result<Found, ImportError> {
    let mut tree = Tree::open(dir)?;
    let (live, accounts) = (dir.join("live"), dir.join("accounts"));
    let (has_live, has_accounts) = (tree.walkable(&live)?, tree.walkable(&accounts)?);
    if !has_live && !has_accounts && tree.skipped.is_empty() {
        return Err(ImportError::invalid(dir, "not a certbot config directory (it has neither live/ nor accounts/)"));
    }
    let mut found = Found::default();
    let lineages = if has_live { tree.subdirs(&live)? } else { Vec::new() };
    for lineage in lineages {
        let name = lineage.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let fullchain_pem = tree.read(&lineage.join("fullchain.pem"), FILE_CAP)?;
        let privkey_pem = tree.read(&lineage.join("privkey.pem"), FILE_CAP)?;
        found.certificates.push(parse_lineage(&name, fullchain_pem, &privkey_pem));
    }
    let mut account_dirs = Vec::new();
    if has_accounts {
        find_accounts(&mut tree, &accounts, 0, &mut account_dirs)?;
    }
    for account in account_dirs {
        let key = tree.read(&account.join("private_key.json"), FILE_CAP)?;
        let regr = tree.read(&account.join("regr.json"), FILE_CAP)?;
        let origin = tree.relative(&account).display().to_string();
        found.accounts.push(parse_account(&key, &regr, &account, &origin)?);
    }
    found.skipped = tree.skipped;
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
/// levels down (`<host>/<path...>/<id>`). Real directories only: each is
/// visited once, so the walk is linear in the entries.
fn find_accounts(tree: &mut Tree, dir: &Path, depth: usize, out: &mut Vec<PathBuf>) -> Result<(), ImportError> {
    if Tree::entry(&dir.join("private_key.json"))? != Entry::Missing {
        out.push(dir.to_owned());
        return Ok(());
    }
    if depth > ACCOUNT_DEPTH {
        return Ok(());
    }
    for sub in tree.subdirs(dir)? {
        find_accounts(tree, &sub, depth + 1, out)?;
    }
    Ok(())
}
