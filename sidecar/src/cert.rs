//! Certificates and keys as values: generate a key and CSR, and check a
//! downloaded chain (parses, covers the names, matches the key) before it may
//! replace the last good one. Pure: no I/O.

use std::fmt;
use std::time::{Duration, SystemTime};

use rcgen::{CertificateParams, DistinguishedName, DnType, KeyPair};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{FromDer, X509Certificate};

/// Key types for certificate keys; Traefik's spellings are accepted too.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KeyType {
    /// ECDSA P-256 (Traefik's `EC256`), the default.
    #[default]
    #[serde(alias = "EC256")]
    Ec256,
    /// ECDSA P-384 (Traefik's `EC384`).
    #[serde(alias = "EC384")]
    Ec384,
    /// RSA 2048 (Traefik's `RSA2048`).
    #[serde(alias = "RSA2048")]
    Rsa2048,
    /// RSA 4096 (Traefik's `RSA4096`).
    #[serde(alias = "RSA4096")]
    Rsa4096,
}

impl KeyType {
    /// The configuration's spelling: `ec256`, `ec384`, `rsa2048`, `rsa4096`.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Ec256 => "ec256",
            Self::Ec384 => "ec384",
            Self::Rsa2048 => "rsa2048",
            Self::Rsa4096 => "rsa4096",
        }
    }
}

/// PEM text of a private key. `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretPem(String);

impl SecretPem {
    pub fn new(pem: String) -> Self {
        Self(pem)
    }

    /// The PEM text, for writing to a 0600 file or an SDS secret.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SecretPem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretPem(...)")
    }
}

/// A certificate chain and its private key, as deployed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bundle {
    /// Leaf first, then intermediates.
    pub fullchain_pem: String,
    pub key_pem: SecretPem,
}

/// What a verified bundle says about itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertInfo {
    pub serial_hex: String,
    pub not_before: SystemTime,
    pub not_after: SystemTime,
    /// DNS and IP subject alternative names of the leaf.
    pub names: Vec<String>,
    /// The leaf key's type, when it is one we issue.
    pub key_type: Option<KeyType>,
}

/// Why a certificate or key was refused.
#[derive(Debug, thiserror::Error)]
pub enum CertError {
    #[error("no certificate in the PEM chain")]
    Empty,
    #[error("certificate does not parse: {0}")]
    Parse(String),
    #[error("private key does not parse: {0}")]
    Key(String),
    #[error("certificate's public key does not match the private key")]
    KeyMismatch,
    #[error("certificate does not cover {0}")]
    MissingName(String),
    #[error("the certificate chain holds a private key block; it would be written where others may read it")]
    KeyInChain,
    #[error("cannot build key or CSR: {0}")]
    Generate(String),
}

/// Parses `bundle`, checks the key belongs to the leaf and, when given, that
/// the leaf covers every one of `domains`. A chain holding a private key
/// block is refused: the chain goes to files and places others may read
/// (`fullchain.pem` is 0644), the key only to 0600 ones.
pub fn inspect(bundle: &Bundle, domains: Option<&[String]>) -> Result<CertInfo, CertError> {
    inspect_with(bundle, domains, true)
}

/// [`inspect`] without parsing the private key to check it belongs to the
/// leaf: for a bundle known to be byte for byte one that passed
/// [`inspect`] (the key check is an elliptic-curve multiplication, most of
/// what loading a stored certificate costs).
pub fn inspect_known_pair(bundle: &Bundle) -> Result<CertInfo, CertError> {
    inspect_with(bundle, None, false)
}

fn inspect_with(bundle: &Bundle, domains: Option<&[String]>, check_key: bool) -> Result<CertInfo, CertError> {
    if bundle.fullchain_pem.contains("PRIVATE KEY-----") {
        return Err(CertError::KeyInChain);
    }
    let ders: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(bundle.fullchain_pem.as_bytes())
        .collect::<Result<_, _>>()
        .map_err(|e| CertError::Parse(e.to_string()))?;
    let leaf_der = ders.first().ok_or(CertError::Empty)?;
    let (_, leaf) = X509Certificate::from_der(leaf_der).map_err(|e| CertError::Parse(e.to_string()))?;
    for der in &ders[1..] {
        X509Certificate::from_der(der).map_err(|e| CertError::Parse(format!("chain: {e}")))?;
    }

    if check_key {
        let key = KeyPair::from_pem(bundle.key_pem.expose()).map_err(|e| CertError::Key(e.to_string()))?;
        if leaf.public_key().subject_public_key.data.as_ref() != key.public_key_raw() {
            return Err(CertError::KeyMismatch);
        }
    }

    let info = CertInfo {
        serial_hex: leaf.raw_serial_as_string().replace(':', ""),
        not_before: to_system_time(leaf.validity().not_before.timestamp()),
        not_after: to_system_time(leaf.validity().not_after.timestamp()),
        names: subject_alt_names(&leaf),
        key_type: key_type_of(&leaf),
    };
    if let Some(domains) = domains {
        info.covers(domains)?;
    }
    Ok(info)
}

/// Whether the leaf of `bundle` is self-signed: its issuer is its subject,
/// or its own key verifies its signature (an issuer name that is not its
/// subject does not hide a self-signature). No CA issued it. Apart from
/// [`inspect`] because the signature check is an ECDSA or RSA verification,
/// most of what checking a bundle would cost; only import asks.
pub fn self_signed(bundle: &Bundle) -> Result<bool, CertError> {
    let leaf_der = CertificateDer::pem_slice_iter(bundle.fullchain_pem.as_bytes())
        .next()
        .ok_or(CertError::Empty)?
        .map_err(|e| CertError::Parse(e.to_string()))?;
    let (_, leaf) = X509Certificate::from_der(&leaf_der).map_err(|e| CertError::Parse(e.to_string()))?;
    Ok(leaf.subject().as_raw() == leaf.issuer().as_raw() || leaf.verify_signature(None).is_ok())
}

impl Bundle {
    /// The first `bytes` bytes (at most 32) of SHA-256 over the chain, a
    /// zero byte and the key, in hex: what tells two bundles apart by
    /// content (the SDS resource version, a stored version's check).
    pub fn fingerprint(&self, bytes: usize) -> String {
        let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
        ctx.update(self.fullchain_pem.as_bytes());
        ctx.update(&[0]);
        ctx.update(self.key_pem.expose().as_bytes());
        let digest = ctx.finish();
        digest.as_ref().iter().take(bytes).map(|b| format!("{b:02x}")).collect()
    }

    /// The leaf alone (`cert.pem`) and the intermediates (`chain.pem`, may be
    /// empty), re-encoded from the full chain. Computed when files are
    /// written rather than kept: thousands of certificates in memory would
    /// otherwise hold every PEM twice.
    pub fn split(&self) -> Result<(String, String), CertError> {
        let pem_of = |der: &CertificateDer<'_>| pem_encode("CERTIFICATE", der);
        let ders: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(self.fullchain_pem.as_bytes())
            .collect::<Result<_, _>>()
            .map_err(|e| CertError::Parse(e.to_string()))?;
        let leaf = ders.first().ok_or(CertError::Empty)?;
        Ok((pem_of(leaf), ders[1..].iter().map(pem_of).collect()))
    }
}

impl CertInfo {
    /// Whether the leaf names every one of `domains` (case-insensitively):
    /// the check [`inspect`] makes when given domains, without parsing again.
    pub fn covers(&self, domains: &[String]) -> Result<(), CertError> {
        match domains.iter().find(|d| !self.names.iter().any(|n| n.eq_ignore_ascii_case(d))) {
            Some(missing) => Err(CertError::MissingName(missing.clone())),
            None => Ok(()),
        }
    }
}

fn key_type_of(cert: &X509Certificate<'_>) -> Option<KeyType> {
    use x509_parser::public_key::PublicKey;
    let key = cert.public_key().parsed().ok()?;
    match (&key, key.key_size()) {
        (PublicKey::EC(_), 256) => Some(KeyType::Ec256),
        (PublicKey::EC(_), 384) => Some(KeyType::Ec384),
        (PublicKey::RSA(_), 2048) => Some(KeyType::Rsa2048),
        (PublicKey::RSA(_), 4096) => Some(KeyType::Rsa4096),
        _ => None,
    }
}

fn subject_alt_names(cert: &X509Certificate<'_>) -> Vec<String> {
    let Ok(Some(san)) = cert.subject_alternative_name() else {
        return Vec::new();
    };
    san.value
        .general_names
        .iter()
        .filter_map(|name| match name {
            GeneralName::DNSName(dns) => Some((*dns).to_owned()),
            GeneralName::IPAddress(bytes) => ip_from_bytes(bytes).map(|ip| ip.to_string()),
            _ => None,
        })
        .collect()
}

fn ip_from_bytes(bytes: &[u8]) -> Option<std::net::IpAddr> {
    match bytes.len() {
        4 => <[u8; 4]>::try_from(bytes).ok().map(std::net::IpAddr::from),
        16 => <[u8; 16]>::try_from(bytes).ok().map(std::net::IpAddr::from),
        _ => None,
    }
}

fn to_system_time(unix: i64) -> SystemTime {
    match u64::try_from(unix) {
        Ok(secs) => SystemTime::UNIX_EPOCH + Duration::from_secs(secs),
        Err(_) => SystemTime::UNIX_EPOCH,
    }
}

fn pem_encode(label: &str, der: &[u8]) -> String {
    pem::encode_config(&pem::Pem::new(label, der), pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF))
}

/// Generates a fresh private key of `key_type`. RSA generation takes up to
/// seconds: call it off the async executor.
pub fn generate_key(key_type: KeyType) -> Result<KeyPair, CertError> {
    let alg = match key_type {
        KeyType::Ec256 => &rcgen::PKCS_ECDSA_P256_SHA256,
        KeyType::Ec384 => &rcgen::PKCS_ECDSA_P384_SHA384,
        KeyType::Rsa2048 => return generate_rsa(2048),
        KeyType::Rsa4096 => return generate_rsa(4096),
    };
    KeyPair::generate_for(alg).map_err(|e| CertError::Generate(e.to_string()))
}

/// ring signs with RSA but cannot generate RSA keys; RustCrypto's `rsa` does.
fn generate_rsa(bits: usize) -> Result<KeyPair, CertError> {
    use rsa::pkcs8::EncodePrivateKey;
    let key =
        rsa::RsaPrivateKey::new(&mut rsa::rand_core::OsRng, bits).map_err(|e| CertError::Generate(e.to_string()))?;
    let der = key.to_pkcs8_der().map_err(|e| CertError::Generate(e.to_string()))?;
    let der = rustls_pki_types::PrivatePkcs8KeyDer::from(der.as_bytes());
    KeyPair::from_pkcs8_der_and_sign_algo(&der, &rcgen::PKCS_RSA_SHA256).map_err(|e| CertError::Generate(e.to_string()))
}

/// The longest common name X.509 allows (RFC 5280 `ub-common-name`);
/// Boulder refuses a CSR with a longer one.
const MAX_COMMON_NAME: usize = 64;

/// The subject common name a CSR for `domains` carries: the first name,
/// when `common_name` is wanted and the name is a DNS name of at most 64
/// bytes. Never an IP address (Let's Encrypt refuses one in the CN); the
/// names are in the SAN extension either way.
pub fn csr_common_name(domains: &[String], common_name: bool) -> Option<&str> {
    let first = domains.first()?;
    let fits = first.len() <= MAX_COMMON_NAME && first.parse::<std::net::IpAddr>().is_err();
    (common_name && fits).then_some(first.as_str())
}

/// A DER CSR for `domains`, signed by `key`; the subject is empty or the
/// common name [`csr_common_name`] picks.
pub fn csr_der(domains: &[String], key: &KeyPair, common_name: bool) -> Result<Vec<u8>, CertError> {
    let mut params = CertificateParams::new(domains.to_vec()).map_err(|e| CertError::Generate(e.to_string()))?;
    let mut dn = DistinguishedName::new();
    if let Some(name) = csr_common_name(domains, common_name) {
        dn.push(DnType::CommonName, name);
    }
    params.distinguished_name = dn;
    let csr = params.serialize_request(key).map_err(|e| CertError::Generate(e.to_string()))?;
    Ok(csr.der().to_vec())
}

/// A self-signed certificate for `domains`, valid for a day, served until the
/// real one is issued. Never stored.
pub fn placeholder(domains: &[String]) -> Result<Bundle, CertError> {
    let key = generate_key(KeyType::Ec256)?;
    let mut params = CertificateParams::new(domains.to_vec()).map_err(|e| CertError::Generate(e.to_string()))?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "proxy-acme placeholder (not issued yet)");
    params.distinguished_name = dn;
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::minutes(5);
    params.not_after = now + time::Duration::days(1);
    let cert = params.self_signed(&key).map_err(|e| CertError::Generate(e.to_string()))?;
    Ok(Bundle { fullchain_pem: cert.pem(), key_pem: SecretPem::new(key.serialize_pem()) })
}

#[cfg(test)]
#[path = "cert_tests.rs"]
mod tests;
