//! ACME accounts: load from the store or register (with EAB), contact
//! updates, key rollover.

use instant_acme::{Account, AccountCredentials, ExternalAccountKey, NewAccount};
use serde::{Deserialize, Serialize};

use super::AcmeError;
use crate::config::Resolver;
use crate::store::Store;

/// What is stored for an account: the CA it belongs to, the contacts it was
/// registered with, and its credentials (which hold its private key).
#[derive(Serialize, Deserialize)]
struct StoredAccount {
    ca_server: String,
    contact: Vec<String>,
    credentials: AccountCredentials,
}

fn contacts(resolver: &Resolver) -> Vec<String> {
    resolver.email.iter().map(|e| format!("mailto:{e}")).collect()
}

/// Loads the account for resolver `name` from `store`, or registers a new one
/// with the CA (binding it with EAB when configured) and stores it. A stored
/// account for another CA is not reused; a changed email is sent to the CA.
pub async fn account(store: &dyn Store, name: &str, resolver: &Resolver) -> Result<Account, AcmeError> {
    let contact = contacts(resolver);
    if let Some(data) = store.load_account(name).await? {
        let parse = || serde_json::from_slice::<StoredAccount>(&data).map_err(AcmeError::StoredAccount);
        let stored = parse()?;
        if stored.ca_server == resolver.ca_server {
            let account = builder(resolver)?.from_credentials(stored.credentials).await?;
            tracing::info!(resolver = name, account = account.id(), "loaded ACME account");
            if stored.contact != contact {
                let refs: Vec<&str> = contact.iter().map(String::as_str).collect();
                account.update_contacts(&refs).await?;
                tracing::info!(resolver = name, contact = ?contact, "updated account contact");
                // The credentials moved into the account; parse them again to store.
                save(store, name, &StoredAccount { contact, ..parse()? }).await?;
            }
            return Ok(account);
        }
        tracing::info!(resolver = name, old = %stored.ca_server, new = %resolver.ca_server, "CA changed: registering a new account");
    }
    let eab = match &resolver.eab {
        Some(eab) => Some(ExternalAccountKey::new(eab.kid.clone(), &eab.hmac().ok_or(AcmeError::EabKey)?)),
        None => None,
    };
    let refs: Vec<&str> = contact.iter().map(String::as_str).collect();
    let new_account = NewAccount { contact: &refs, terms_of_service_agreed: true, only_return_existing: false };
    let (account, credentials) =
        builder(resolver)?.create(&new_account, resolver.ca_server.clone(), eab.as_ref()).await?;
    save(store, name, &StoredAccount { ca_server: resolver.ca_server.clone(), contact, credentials }).await?;
    tracing::info!(resolver = name, account = account.id(), eab = resolver.eab.is_some(), "registered ACME account");
    Ok(account)
}

/// Replaces the account's key with a new one at the CA (RFC 8555 §7.3.5) and
/// stores the new credentials. The old key stops working at once.
pub async fn rollover(store: &dyn Store, name: &str, resolver: &Resolver) -> Result<String, AcmeError> {
    let mut account = account(store, name, resolver).await?;
    let credentials = account.update_key().await?;
    save(
        store,
        name,
        &StoredAccount { ca_server: resolver.ca_server.clone(), contact: contacts(resolver), credentials },
    )
    .await?;
    tracing::info!(resolver = name, account = account.id(), "account key rolled over");
    Ok(account.id().to_owned())
}

async fn save(store: &dyn Store, name: &str, stored: &StoredAccount) -> Result<(), AcmeError> {
    let data = serde_json::to_vec(stored).map_err(AcmeError::StoredAccount)?;
    store.save_account(name, &data).await?;
    Ok(())
}

fn builder(resolver: &Resolver) -> Result<instant_acme::AccountBuilder, AcmeError> {
    match &resolver.ca_certificate {
        Some(path) => Account::builder_with_root(path)
            .map_err(|source| AcmeError::CaCertificate { path: path.display().to_string(), source }),
        None => Ok(Account::builder()?),
    }
}
