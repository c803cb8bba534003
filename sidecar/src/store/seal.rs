//! Encryption at rest for the shared store: private keys and account
//! credentials are sealed with AES-256-GCM before they leave the process,
//! bound to the key they are stored under (as associated data), so an etcd
//! snapshot leaks nothing and a sealed value cannot be moved to another name.

use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use ring::rand::{SecureRandom, SystemRandom};

/// The format tag in front of every sealed value.
const TAG: &[u8] = b"pa1:";

/// Why a sealed value could not be opened.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SealError {
    #[error("not a sealed value (no pa1: tag)")]
    Format,
    #[error("cannot decrypt: wrong encryption key, or the value was altered or moved")]
    Open,
    #[error("no randomness for a nonce")]
    Random,
}

/// An AES-256-GCM key.
pub struct Sealer {
    key: LessSafeKey,
    random: SystemRandom,
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sealer(AES-256-GCM)")
    }
}

impl Sealer {
    pub fn new(key: &[u8; 32]) -> Self {
        // A 32-byte key is always valid for AES-256-GCM.
        #[allow(clippy::expect_used)]
        let unbound = UnboundKey::new(&AES_256_GCM, key).expect("32-byte AES-256 key");
        Self { key: LessSafeKey::new(unbound), random: SystemRandom::new() }
    }

    /// `pa1:` + a random nonce + the ciphertext and its tag.
    pub fn seal(&self, context: &str, plaintext: &[u8]) -> Result<Vec<u8>, SealError> {
        let mut nonce = [0u8; NONCE_LEN];
        self.random.fill(&mut nonce).map_err(|_| SealError::Random)?;
        let mut buffer = plaintext.to_vec();
        self.key
            .seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce), Aad::from(context.as_bytes()), &mut buffer)
            .map_err(|_| SealError::Random)?;
        let mut out = Vec::with_capacity(TAG.len() + NONCE_LEN + buffer.len());
        out.extend_from_slice(TAG);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&buffer);
        Ok(out)
    }

    /// Opens what [`Self::seal`] made for the same `context`.
    pub fn open(&self, context: &str, sealed: &[u8]) -> Result<Vec<u8>, SealError> {
        let rest = sealed.strip_prefix(TAG).ok_or(SealError::Format)?;
        if rest.len() < NONCE_LEN {
            return Err(SealError::Format);
        }
        let (nonce, ciphertext) = rest.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| SealError::Format)?;
        let mut buffer = ciphertext.to_vec();
        let plain =
            self.key.open_in_place(nonce, Aad::from(context.as_bytes()), &mut buffer).map_err(|_| SealError::Open)?;
        Ok(plain.to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_hides_the_plaintext() {
        let sealer = Sealer::new(&[7; 32]);
        let secret = b"-----BEGIN PRIVATE KEY-----\nMIGHAgEA\n-----END PRIVATE KEY-----\n";
        let sealed = sealer.seal("certs/web", secret).unwrap();
        assert!(!sealed.windows(11).any(|w| w == b"PRIVATE KEY"));
        assert_eq!(sealer.open("certs/web", &sealed).unwrap(), secret);
        // A fresh nonce each time.
        assert_ne!(sealer.seal("certs/web", secret).unwrap(), sealed);
    }

    #[test]
    fn refuses_another_key_another_name_or_altered_bytes() {
        let sealer = Sealer::new(&[7; 32]);
        let sealed = sealer.seal("certs/web", b"key").unwrap();
        assert_eq!(Sealer::new(&[8; 32]).open("certs/web", &sealed), Err(SealError::Open));
        assert_eq!(sealer.open("certs/api", &sealed), Err(SealError::Open));
        let mut altered = sealed;
        let last = altered.len() - 1;
        altered[last] ^= 1;
        assert_eq!(sealer.open("certs/web", &altered), Err(SealError::Open));
        assert_eq!(sealer.open("certs/web", b"plain"), Err(SealError::Format));
    }
}
