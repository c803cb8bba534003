//! In-memory store for unit tests and for the placeholder-only mode.

use std::collections::HashMap;
use std::sync::Mutex;

use async_trait::async_trait;

use super::{check_key, PendingOrder, Store, StoreError};
use crate::cert::{self, Bundle};

/// Keeps everything in maps; lost on exit.
#[derive(Debug, Default)]
pub struct MemoryStore {
    accounts: Mutex<HashMap<String, Vec<u8>>>,
    certificates: Mutex<HashMap<String, Bundle>>,
    revoked: Mutex<HashMap<String, String>>,
    pending: Mutex<HashMap<String, PendingOrder>>,
    issuers: Mutex<HashMap<String, String>>,
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }
}

#[async_trait]
impl Store for MemoryStore {
    async fn load_account(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        check_key(key)?;
        Ok(self.accounts.lock().unwrap_or_else(|e| e.into_inner()).get(key).cloned())
    }

    async fn save_account(&self, key: &str, data: &[u8]) -> Result<(), StoreError> {
        check_key(key)?;
        self.accounts.lock().unwrap_or_else(|e| e.into_inner()).insert(key.to_owned(), data.to_vec());
        Ok(())
    }

    async fn forget_account(&self, key: &str) -> Result<(), StoreError> {
        check_key(key)?;
        self.accounts.lock().unwrap_or_else(|e| e.into_inner()).remove(key);
        Ok(())
    }

    async fn load_certificate(&self, name: &str) -> Result<Option<Bundle>, StoreError> {
        check_key(name)?;
        Ok(self.certificates.lock().unwrap_or_else(|e| e.into_inner()).get(name).cloned())
    }

    async fn save_certificate(&self, name: &str, bundle: &Bundle) -> Result<(), StoreError> {
        check_key(name)?;
        cert::inspect(bundle, None)
            .map_err(|source| StoreError::InvalidCertificate { name: name.to_owned(), source })?;
        self.certificates.lock().unwrap_or_else(|e| e.into_inner()).insert(name.to_owned(), bundle.clone());
        Ok(())
    }

    async fn mark_revoked(&self, name: &str, serial: &str) -> Result<(), StoreError> {
        check_key(name)?;
        self.revoked.lock().unwrap_or_else(|e| e.into_inner()).insert(name.to_owned(), serial.to_owned());
        Ok(())
    }

    async fn revoked(&self, name: &str) -> Result<Option<String>, StoreError> {
        check_key(name)?;
        Ok(self.revoked.lock().unwrap_or_else(|e| e.into_inner()).get(name).cloned())
    }

    async fn clear_revoked(&self, name: &str) -> Result<(), StoreError> {
        check_key(name)?;
        self.revoked.lock().unwrap_or_else(|e| e.into_inner()).remove(name);
        Ok(())
    }

    async fn save_pending(&self, name: &str, order: &PendingOrder) -> Result<(), StoreError> {
        check_key(name)?;
        self.pending.lock().unwrap_or_else(|e| e.into_inner()).insert(name.to_owned(), order.clone());
        Ok(())
    }

    async fn load_pending(&self, name: &str) -> Result<Option<PendingOrder>, StoreError> {
        check_key(name)?;
        Ok(self.pending.lock().unwrap_or_else(|e| e.into_inner()).get(name).cloned())
    }

    async fn load_issuer(&self, name: &str) -> Result<Option<String>, StoreError> {
        check_key(name)?;
        Ok(self.issuers.lock().unwrap_or_else(|e| e.into_inner()).get(name).cloned())
    }

    async fn save_issuer(&self, name: &str, resolver: &str) -> Result<(), StoreError> {
        check_key(name)?;
        self.issuers.lock().unwrap_or_else(|e| e.into_inner()).insert(name.to_owned(), resolver.to_owned());
        Ok(())
    }

    async fn clear_pending(&self, name: &str) -> Result<(), StoreError> {
        check_key(name)?;
        self.pending.lock().unwrap_or_else(|e| e.into_inner()).remove(name);
        Ok(())
    }
}
