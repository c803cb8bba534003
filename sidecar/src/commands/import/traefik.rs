//! Traefik's `acme.json` (v2 and v3): a map of resolver name to its
//! `Account` and `Certificates`; certificates and keys are base64 of PEM,
//! the account key base64 of DER (PKCS#1 RSA unless changed).

use std::collections::BTreeMap;
use std::path::Path;

use base64::Engine;
use serde::Deserialize;

use super::keys::{account_key_from_der, key_pem_to_pkcs8};
use super::{Found, FoundAccount, FoundCertificate, ImportError};
use crate::cert::Bundle;

#[derive(Deserialize)]
struct Resolver {
    #[serde(rename = "Account", default)]
    account: Option<Account>,
    #[serde(rename = "Certificates", default)]
    certificates: Option<Vec<Certificate>>,
}

#[derive(Deserialize)]
struct Account {
    #[serde(rename = "Email", default)]
    email: String,
    #[serde(rename = "Registration", default)]
    registration: Option<Registration>,
    #[serde(rename = "PrivateKey", default)]
    private_key: Option<String>,
}

#[derive(Deserialize)]
struct Registration {
    #[serde(default)]
    uri: String,
}

#[derive(Deserialize)]
struct Certificate {
    domain: Domain,
    certificate: String,
    key: String,
}

#[derive(Deserialize)]
struct Domain {
    main: String,
    #[serde(default)]
    sans: Option<Vec<String>>,
}

/// Reads `path` (a regular file of at most 64 MiB; it may be a symlink to
/// one) and takes resolver `resolver` (default: the only one).
pub fn read(path: &Path, resolver: Option<&str>) -> Result<Found, ImportError> {
    let text = super::source::read_named(path, super::source::ACME_JSON_CAP)?;
    parse(&text, path, resolver)
}

/// Parses acme.json text; `path` is for messages.
pub fn parse(text: &str, path: &Path, resolver: Option<&str>) -> Result<Found, ImportError> {
    let invalid = |message: String| ImportError::invalid(path, message);
    let mut resolvers: BTreeMap<String, serde_json::Value> =
        serde_json::from_str(text).map_err(|e| invalid(format!("not a Traefik acme.json: {e}")))?;
    let names: Vec<String> = resolvers.keys().cloned().collect();
    let name = match (resolver, names.as_slice()) {
        (Some(name), _) => name.to_owned(),
        (None, [only]) => only.clone(),
        (None, []) => return Err(invalid("holds no resolver".into())),
        (None, _) => {
            return Err(invalid(format!("holds several resolvers, pick one with --resolver: {}", names.join(", "))))
        }
    };
    let value = resolvers
        .remove(&name)
        .ok_or_else(|| invalid(format!("no resolver named {name} (it holds: {})", names.join(", "))))?;
    let data: Resolver = serde_json::from_value(value).map_err(|e| invalid(format!("{name}: {e}")))?;

    let mut found = Found::default();
    for (i, c) in data.certificates.unwrap_or_default().into_iter().enumerate() {
        let field = |f: &str| format!("{name}.Certificates[{i}].{f}");
        let decode = |f: &str, b64: &str| -> Result<String, ImportError> {
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(b64.trim())
                .map_err(|_| invalid(format!("{}: not base64", field(f))))?;
            String::from_utf8(bytes).map_err(|_| invalid(format!("{}: not PEM text", field(f))))
        };
        let fullchain_pem = decode("certificate", &c.certificate)?;
        let key_pem = key_pem_to_pkcs8(&decode("key", &c.key)?);
        let mut domains = vec![c.domain.main.clone()];
        domains.extend(c.domain.sans.unwrap_or_default());
        found.certificates.push(FoundCertificate {
            origin: format!("traefik {name} certificate {} (#{i})", domains.join(",")),
            bundle: Bundle { fullchain_pem, key_pem },
        });
    }
    if let Some(account) = data.account {
        let Some(b64) = account.private_key.filter(|k| !k.is_empty()) else {
            return Err(invalid(format!("{name}.Account.PrivateKey: missing")));
        };
        let der = base64::engine::general_purpose::STANDARD
            .decode(b64.trim())
            .map_err(|_| invalid(format!("{name}.Account.PrivateKey: not base64")))?;
        let url = account.registration.map(|r| r.uri).unwrap_or_default();
        if url.is_empty() {
            return Err(invalid(format!("{name}.Account.Registration.uri: missing")));
        }
        let contact = if account.email.is_empty() { Vec::new() } else { vec![format!("mailto:{}", account.email)] };
        found.accounts.push(FoundAccount {
            origin: format!("traefik {name}"),
            url,
            contact,
            key: account_key_from_der(&der),
        });
    }
    Ok(found)
}
