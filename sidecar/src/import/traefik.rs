//! Traefik's `acme.json`: `{ "<resolver>": { "Account": {...},
//! "Certificates": [ { "domain": { "main", "sans" }, "certificate":
//! base64(PEM chain), "key": base64(PEM key), "Store" } ] } }`.

use base64::Engine;
use serde::Deserialize;

use super::{Candidate, ImportError};
use crate::cert::{Bundle, SecretPem};

#[derive(Deserialize)]
struct Resolver {
    #[serde(rename = "Certificates", default)]
    certificates: Option<Vec<Entry>>,
}

#[derive(Deserialize)]
struct Entry {
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

/// The certificates of `resolver` in `text` (the file at `path`); with no
/// `resolver`, the file must hold exactly one.
pub fn candidates(path: &str, text: &str, resolver: Option<&str>) -> Result<Vec<Candidate>, ImportError> {
    let invalid = |message: String| ImportError::Invalid { path: path.to_owned(), message };
    let resolvers: std::collections::BTreeMap<String, Resolver> =
        serde_json::from_str(text).map_err(|e| invalid(format!("not a Traefik acme.json: {e}")))?;
    let name = match resolver {
        Some(name) => name.to_owned(),
        None if resolvers.len() == 1 => resolvers.keys().next().cloned().unwrap_or_default(),
        None => {
            let names: Vec<&str> = resolvers.keys().map(String::as_str).collect();
            return Err(invalid(format!("holds resolvers {}: choose one with --resolver", names.join(", "))));
        }
    };
    let Some(found) = resolvers.get(&name) else {
        let names: Vec<&str> = resolvers.keys().map(String::as_str).collect();
        return Err(invalid(format!("no resolver {name} (it holds {})", names.join(", "))));
    };
    let engine = base64::engine::general_purpose::STANDARD;
    let mut out = Vec::new();
    for (i, entry) in found.certificates.iter().flatten().enumerate() {
        let field = |f: &str| format!("{name}.Certificates[{i}].{f}");
        let decode = |value: &str, f: &str| {
            engine
                .decode(value.trim())
                .ok()
                .and_then(|b| String::from_utf8(b).ok())
                .ok_or_else(|| invalid(format!("{} is not base64 PEM", field(f))))
        };
        let names: Vec<String> =
            std::iter::once(entry.domain.main.clone()).chain(entry.domain.sans.clone().unwrap_or_default()).collect();
        out.push(Candidate {
            source: format!("{path} resolver {name}: {}", names.join(", ")),
            bundle: Bundle {
                fullchain_pem: decode(&entry.certificate, "certificate")?,
                key_pem: SecretPem::new(decode(&entry.key, "key")?),
            },
        });
    }
    Ok(out)
}
