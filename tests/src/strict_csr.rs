//! What Let's Encrypt's production CA (Boulder) refuses in a CSR and Pebble
//! lets through, for the strict mode of the CA front: the finalize request's
//! JWS payload is decoded and its CSR judged; a refusal is Boulder's
//! `badCSR` problem. The rules, from Boulder's `csr` package and Let's
//! Encrypt's documentation:
//!
//! - at most 100 names;
//! - every name lower case;
//! - a subject CN, when there is one, of at most 64 bytes, not an IP
//!   address, and one of the names.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use x509_parser::certification_request::X509CertificationRequest;
use x509_parser::extensions::{GeneralName, ParsedExtension};
use x509_parser::prelude::FromDer;

/// Boulder's limit on names in one certificate.
pub const MAX_NAMES: usize = 100;
/// The longest subject CN (RFC 5280's upper bound for `CommonName`).
pub const MAX_CN: usize = 64;

/// Why Boulder would refuse the CSR in this finalize request body (a
/// flattened JWS whose payload is `{"csr": <base64url DER>}`), or `None`.
pub fn refusal(jws_body: &[u8]) -> Option<String> {
    let jws: serde_json::Value = serde_json::from_slice(jws_body).ok()?;
    let payload = URL_SAFE_NO_PAD.decode(jws.get("payload")?.as_str()?).ok()?;
    let payload: serde_json::Value = serde_json::from_slice(&payload).ok()?;
    let der = URL_SAFE_NO_PAD.decode(payload.get("csr")?.as_str()?).ok()?;
    judge(&der).err()
}

/// The rules on one DER CSR.
pub fn judge(der: &[u8]) -> Result<(), String> {
    let (_, csr) = X509CertificationRequest::from_der(der).map_err(|e| format!("CSR does not parse: {e}"))?;
    let info = &csr.certification_request_info;
    let mut names = Vec::new();
    for extension in csr.requested_extensions().into_iter().flatten() {
        if let ParsedExtension::SubjectAlternativeName(san) = extension {
            for name in &san.general_names {
                match name {
                    GeneralName::DNSName(dns) => names.push((*dns).to_owned()),
                    GeneralName::IPAddress(bytes) => names.push(ip_text(bytes)),
                    _ => {}
                }
            }
        }
    }
    if names.len() > MAX_NAMES {
        return Err(format!("CSR contains more than {MAX_NAMES} DNS names"));
    }
    if let Some(upper) = names.iter().find(|n| n.chars().any(|c| c.is_ascii_uppercase())) {
        return Err(format!("CSR contains a name with upper case letters: {upper}"));
    }
    let cn = info.subject.iter_common_name().next().and_then(|cn| cn.as_str().ok()).map(str::to_owned);
    if let Some(cn) = cn {
        if cn.len() > MAX_CN {
            return Err(format!("CN was longer than {MAX_CN} bytes"));
        }
        if cn.parse::<std::net::IpAddr>().is_ok() {
            return Err("CSR contains an IP address in the CN".to_owned());
        }
        if !names.contains(&cn) {
            return Err("CN not among the SANs".to_owned());
        }
    }
    Ok(())
}

fn ip_text(bytes: &[u8]) -> String {
    match bytes.len() {
        4 => std::net::Ipv4Addr::new(bytes[0], bytes[1], bytes[2], bytes[3]).to_string(),
        16 => {
            let mut octets = [0u8; 16];
            octets.copy_from_slice(bytes);
            std::net::Ipv6Addr::from(octets).to_string()
        }
        _ => String::new(),
    }
}
