//! What the solvers post on the shared challenge board
//! ([`crate::store::board`]) for other replicas to answer from.

use serde::{Deserialize, Serialize};

/// A pending HTTP-01 answer (keyed by token).
#[derive(Debug, Serialize, Deserialize)]
pub struct Http01Post {
    pub identifier: String,
    pub key_authorization: String,
}

/// A pending TLS-ALPN-01 answer (keyed by SNI): each replica builds its own
/// challenge certificate from the digest.
#[derive(Debug, Serialize, Deserialize)]
pub struct TlsAlpnPost {
    pub identifier: String,
    /// SHA-256 of the key authorization, hex.
    pub digest: String,
}

/// The board key of a DNS-01 record.
pub fn dns_key(record: &crate::dns::TxtRecord) -> String {
    format!("{}{}", record.fqdn, record.value)
}

/// Hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Bytes of `hex`, if it is hex.
pub fn unhex(hex: &str) -> Option<Vec<u8>> {
    if hex.len() % 2 != 0 {
        return None;
    }
    (0..hex.len()).step_by(2).map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok()).collect()
}
