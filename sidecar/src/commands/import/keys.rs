//! Private keys as other ACME clients write them, turned into what we use:
//! PKCS#8 (the only form our signer loads) for certificate keys, and an
//! ECDSA P-256 PKCS#8 document for account keys. Pure: no I/O.

use base64::Engine;
use ring::rand::SystemRandom;
use ring::signature::{EcdsaKeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};

use crate::cert::SecretPem;

const EC_PUBLIC_KEY: &[u8] = &[0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
const P256: &[u8] = &[0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
const P384: &[u8] = &[0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x22];

/// An imported account key: usable (ECDSA P-256, as PKCS#8 DER) or not,
/// with what it is. `Debug` never shows the key.
#[derive(Clone, PartialEq, Eq)]
pub(crate) enum AccountKey {
    P256(Vec<u8>),
    /// What the key is ("RSA 4096", "ECDSA P-384", ...).
    Unusable(String),
}

impl std::fmt::Debug for AccountKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::P256(_) => f.write_str("P256(...)"),
            Self::Unusable(kind) => write!(f, "Unusable({kind})"),
        }
    }
}

/// A certificate key in PEM ("PRIVATE KEY", "RSA PRIVATE KEY" or "EC
/// PRIVATE KEY") as a PKCS#8 PEM. A key that cannot be converted is
/// returned as it was: the store's check refuses it with the reason.
pub(crate) fn key_pem_to_pkcs8(text: &str) -> SecretPem {
    let Ok(block) = pem::parse(text) else { return SecretPem::new(text.to_owned()) };
    let pkcs8 = match block.tag() {
        "RSA PRIVATE KEY" => rsa_pkcs1_to_pkcs8(block.contents()),
        "EC PRIVATE KEY" => sec1_to_pkcs8(block.contents()).map(|(der, _)| der),
        _ => None,
    };
    match pkcs8 {
        Some(der) => SecretPem::new(pem_encode("PRIVATE KEY", &der)),
        None => SecretPem::new(text.to_owned()),
    }
}

/// Classifies an account key given as DER (Traefik's `Account.PrivateKey`:
/// PKCS#1 RSA by default, or SEC1/PKCS#8 EC).
pub(crate) fn account_key_from_der(der: &[u8]) -> AccountKey {
    if p256_ok(der) {
        return AccountKey::P256(der.to_vec());
    }
    if let Some((pkcs8, curve)) = sec1_to_pkcs8(der) {
        return match curve {
            Curve::P256 => AccountKey::P256(pkcs8),
            Curve::P384 => AccountKey::Unusable("ECDSA P-384".into()),
        };
    }
    use rsa::pkcs1::DecodeRsaPrivateKey;
    use rsa::pkcs8::DecodePrivateKey;
    use rsa::traits::PublicKeyParts;
    let rsa = rsa::RsaPrivateKey::from_pkcs1_der(der).or_else(|_| rsa::RsaPrivateKey::from_pkcs8_der(der));
    match rsa {
        Ok(key) => AccountKey::Unusable(format!("RSA {}", key.size() * 8)),
        Err(_) => AccountKey::Unusable("unrecognised".into()),
    }
}

/// Why a JWK account key cannot be read.
#[derive(Debug, thiserror::Error)]
pub(crate) enum JwkError {
    #[error("no \"{0}\"")]
    Missing(String),
    #[error("\"{0}\" is not base64url")]
    NotBase64(String),
    #[error("P-256 \"d\", \"x\" and \"y\" must be 32 bytes each")]
    Length,
    #[error("the P-256 key is not valid (its public part does not match)")]
    Mismatch,
}

/// Classifies an account key given as a JWK (certbot's `private_key.json`).
pub(crate) fn account_key_from_jwk(jwk: &serde_json::Value) -> Result<AccountKey, JwkError> {
    let field = |name: &str| jwk.get(name).and_then(serde_json::Value::as_str);
    let b64 = |name: &str| -> Result<Vec<u8>, JwkError> {
        let text = field(name).ok_or_else(|| JwkError::Missing(name.to_owned()))?;
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(text.trim_end_matches('='))
            .map_err(|_| JwkError::NotBase64(name.to_owned()))
    };
    match (field("kty"), field("crv")) {
        (Some("RSA"), _) => Ok(AccountKey::Unusable(format!("RSA {}", significant_bits(&b64("n")?)))),
        (Some("EC"), Some("P-256")) => {
            let (d, x, y) = (b64("d")?, b64("x")?, b64("y")?);
            if d.len() != 32 || x.len() != 32 || y.len() != 32 {
                return Err(JwkError::Length);
            }
            let mut public = vec![0x00, 0x04];
            public.extend_from_slice(&x);
            public.extend_from_slice(&y);
            let sec1 =
                der(0x30, &[der(0x02, &[1]), der(0x04, &d), der(0xa0, P256), der(0xa1, &der(0x03, &public))].concat());
            let pkcs8 = wrap_pkcs8(&sec1, P256);
            if !p256_ok(&pkcs8) {
                return Err(JwkError::Mismatch);
            }
            Ok(AccountKey::P256(pkcs8))
        }
        (Some("EC"), crv) => Ok(AccountKey::Unusable(format!("ECDSA {}", crv.unwrap_or("(no curve)")))),
        (kty, _) => Ok(AccountKey::Unusable(kty.unwrap_or("(no kty)").to_owned())),
    }
}

// === helpers ===

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Curve {
    P256,
    P384,
}

fn p256_ok(pkcs8: &[u8]) -> bool {
    EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8, &SystemRandom::new()).is_ok()
}

/// A SEC1 `ECPrivateKey` as PKCS#8, trying the curves we support; ring
/// checks the curve (when the SEC1 names one) and the public key.
fn sec1_to_pkcs8(sec1: &[u8]) -> Option<(Vec<u8>, Curve)> {
    [(P256, Curve::P256), (P384, Curve::P384)].into_iter().find_map(|(oid, curve)| {
        let pkcs8 = wrap_pkcs8(sec1, oid);
        let der = rustls_pki_types::PrivatePkcs8KeyDer::from(pkcs8.as_slice());
        let alg = if curve == Curve::P256 { &rcgen::PKCS_ECDSA_P256_SHA256 } else { &rcgen::PKCS_ECDSA_P384_SHA384 };
        rcgen::KeyPair::from_pkcs8_der_and_sign_algo(&der, alg).ok().map(|_| (pkcs8, curve))
    })
}

fn rsa_pkcs1_to_pkcs8(pkcs1: &[u8]) -> Option<Vec<u8>> {
    use rsa::pkcs1::DecodeRsaPrivateKey;
    use rsa::pkcs8::EncodePrivateKey;
    let key = rsa::RsaPrivateKey::from_pkcs1_der(pkcs1).ok()?;
    key.to_pkcs8_der().ok().map(|doc| doc.as_bytes().to_vec())
}

/// PKCS#8 `PrivateKeyInfo` around a SEC1 key: version 0, id-ecPublicKey with
/// the curve, the SEC1 document as the octet string.
fn wrap_pkcs8(sec1: &[u8], curve_oid: &[u8]) -> Vec<u8> {
    let algorithm = der(0x30, &[EC_PUBLIC_KEY, curve_oid].concat());
    der(0x30, &[der(0x02, &[0]), algorithm, der(0x04, sec1)].concat())
}

/// One DER element: tag, definite length, content.
fn der(tag: u8, content: &[u8]) -> Vec<u8> {
    let len = content.len();
    let mut out = vec![tag];
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes: Vec<u8> = len.to_be_bytes().into_iter().skip_while(|b| *b == 0).collect();
        out.push(0x80 | bytes.len() as u8);
        out.extend_from_slice(&bytes);
    }
    out.extend_from_slice(content);
    out
}

fn significant_bits(n: &[u8]) -> usize {
    let trimmed: Vec<u8> = n.iter().copied().skip_while(|b| *b == 0).collect();
    trimmed.first().map_or(0, |first| trimmed.len() * 8 - first.leading_zeros() as usize)
}

fn pem_encode(label: &str, der: &[u8]) -> String {
    pem::encode_config(&pem::Pem::new(label, der), pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF))
}
