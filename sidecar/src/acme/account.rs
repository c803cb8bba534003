//! ACME accounts: load from the store or register (with EAB), contact
//! updates, key rollover.

use std::ops::{Deref, DerefMut};

use instant_acme::{Account, AccountCredentials, ExternalAccountKey, NewAccount};
use serde::{Deserialize, Serialize};

use super::bounds::{step, Bounded, CONNECT_TIMEOUT};
use super::chains::{Downloads, Recording};
use super::persist_fields::ChallengeFields;
use super::AcmeError;
use crate::config::Resolver;
use crate::fetch::MaxBody;
use crate::store::Store;

/// What is stored for an account: the CA it belongs to, the contacts it was
/// registered with, and its credentials (which hold its private key).
#[derive(Serialize, Deserialize)]
struct StoredAccount {
    ca_server: String,
    contact: Vec<String>,
    credentials: AccountCredentials,
}

/// The stored form of an account imported from another ACME client
/// (`proxy-acme import`): its URL at `ca_server` and its ECDSA P-256 key as
/// PKCS#8 DER, the only key type instant-acme signs with.
pub(crate) fn imported_account(
    ca_server: &str,
    contact: Vec<String>,
    account_url: &str,
    key_pkcs8: &[u8],
) -> Result<Vec<u8>, serde_json::Error> {
    use base64::Engine;
    // AccountCredentials is opaque but deserializable: build it the way
    // instant-acme serializes it.
    let credentials: AccountCredentials = serde_json::from_value(serde_json::json!({
        "id": account_url,
        "key_pkcs8": base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(key_pkcs8),
        "directory": ca_server,
    }))?;
    serde_json::to_vec(&StoredAccount { ca_server: ca_server.to_owned(), contact, credentials })
}

/// An account with the record of the chains its client downloaded (for
/// `preferred_chain`). Dereferences to instant-acme's `Account`.
#[derive(Clone)]
pub struct AcmeAccount {
    account: Account,
    pub(crate) downloads: Downloads,
    /// dns-persist-01 challenge fields its client saw.
    pub(crate) challenges: ChallengeFields,
}

impl std::fmt::Debug for AcmeAccount {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AcmeAccount").field("id", &self.account.id()).finish_non_exhaustive()
    }
}

impl Deref for AcmeAccount {
    type Target = Account;
    fn deref(&self) -> &Account {
        &self.account
    }
}

impl DerefMut for AcmeAccount {
    fn deref_mut(&mut self) -> &mut Account {
        &mut self.account
    }
}

fn contacts(resolver: &Resolver) -> Vec<String> {
    resolver.email.iter().map(|e| format!("mailto:{e}")).collect()
}

/// Loads the account for resolver `name` from `store`, or registers a new one
/// with the CA (binding it with EAB when configured) and stores it. A stored
/// account for another CA is not reused; a changed email is sent to the CA.
pub async fn account(store: &dyn Store, name: &str, resolver: &Resolver) -> Result<AcmeAccount, AcmeError> {
    let downloads = Downloads::default();
    let challenges = ChallengeFields::default();
    let builder = || builder(resolver, &downloads, &challenges);
    let contact = contacts(resolver);
    if let Some(data) = store.load_account(name).await? {
        let parse = || serde_json::from_slice::<StoredAccount>(&data).map_err(AcmeError::StoredAccount);
        let stored = parse()?;
        if stored.ca_server == resolver.ca_server {
            super::bounds::set_step("loading the CA's directory");
            let account = builder()?.from_credentials(stored.credentials).await?;
            tracing::info!(resolver = name, account = account.id(), "loaded ACME account");
            if stored.contact != contact {
                let refs: Vec<&str> = contact.iter().map(String::as_str).collect();
                step!("updating the account's contacts", account.update_contacts(&refs).await)?;
                tracing::info!(resolver = name, contact = ?contact, "updated account contact");
                // The credentials moved into the account; parse them again to store.
                save(store, name, &StoredAccount { contact, ..parse()? }).await?;
            }
            return Ok(AcmeAccount { account, downloads, challenges });
        }
        tracing::info!(resolver = name, old = %stored.ca_server, new = %resolver.ca_server, "CA changed: registering a new account");
    }
    let eab = match &resolver.eab {
        Some(eab) => Some(ExternalAccountKey::new(eab.kid.clone(), &eab.hmac().ok_or(AcmeError::EabKey)?)),
        None => None,
    };
    let refs: Vec<&str> = contact.iter().map(String::as_str).collect();
    let new_account = NewAccount { contact: &refs, terms_of_service_agreed: true, only_return_existing: false };
    let (account, credentials) = step!(
        "registering the account",
        builder()?.create(&new_account, resolver.ca_server.clone(), eab.as_ref()).await
    )?;
    save(store, name, &StoredAccount { ca_server: resolver.ca_server.clone(), contact, credentials }).await?;
    tracing::info!(resolver = name, account = account.id(), eab = resolver.eab.is_some(), "registered ACME account");
    Ok(AcmeAccount { account, downloads, challenges })
}

/// The URL of the account stored for resolver `name` at its CA, read from
/// the store without asking the CA: `None` when none is stored yet, or the
/// stored one is for another CA (the next order registers a new one).
pub async fn stored_account_uri(
    store: &dyn Store,
    name: &str,
    resolver: &Resolver,
) -> Result<Option<String>, AcmeError> {
    #[derive(Deserialize)]
    struct Id {
        id: String,
    }
    #[derive(Deserialize)]
    struct Stored {
        ca_server: String,
        credentials: Id,
    }
    let Some(data) = store.load_account(name).await? else { return Ok(None) };
    let stored: Stored = serde_json::from_slice(&data).map_err(AcmeError::StoredAccount)?;
    Ok((stored.ca_server == resolver.ca_server).then_some(stored.credentials.id))
}

/// Replaces the account's key with a new one at the CA (RFC 8555 §7.3.5) and
/// stores the new credentials. The old key stops working at once.
pub async fn rollover(store: &dyn Store, name: &str, resolver: &Resolver) -> Result<String, AcmeError> {
    let mut account = account(store, name, resolver).await?;
    let credentials = step!("rolling the account key over", account.update_key().await)?;
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

/// instant-acme with our own HTTP client: the CA's roots (or the
/// platform's), bounded in time and size (`bounds::Bounded`), wrapped to
/// record certificate downloads.
fn builder(
    resolver: &Resolver,
    downloads: &Downloads,
    challenges: &ChallengeFields,
) -> Result<instant_acme::AccountBuilder, AcmeError> {
    let connector = https_connector(resolver)?;
    let client: hyper_util::client::legacy::Client<_, instant_acme::BodyWrapper<bytes::Bytes>> =
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new()).build(connector);
    let bounded = Bounded::new(client);
    let recording =
        Recording { inner: Box::new(bounded), downloads: downloads.clone(), challenges: challenges.clone() };
    Ok(Account::builder_with_http(Box::new(recording)))
}

/// Whether the resolver's ACME directory answers 200 with a `newNonce` URL
/// (the `/readyz` CA probe). Ten seconds at most.
pub async fn directory_reachable(resolver: &Resolver) -> Result<(), AcmeError> {
    directory(resolver, &resolver.ca_server).await.map(drop)
}

/// The ACME directory at `url` (RFC 8555 §7.1.1), fetched the way orders
/// reach the CA (its roots, the egress proxy); ten seconds at most.
pub async fn directory(resolver: &Resolver, url: &str) -> Result<serde_json::Value, AcmeError> {
    let connector = https_connector(resolver)?;
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new()).build(connector);
    let directory = crate::fetch::get_json(&client, url, std::time::Duration::from_secs(10), MaxBody(1 << 20))
        .await
        .map_err(|e| match e {
            crate::fetch::FetchError::Request { url, cause } => {
                crate::fetch::FetchError::Request { url, cause: super::advice::explain_connection(cause) }
            }
            other => other,
        })?;
    match directory.get("newNonce") {
        Some(_) => Ok(directory),
        None => Err(AcmeError::NotADirectory(url.to_owned())),
    }
}

/// HTTPS to the CA: its own roots when `ca_certificate` is set, else the platform's.
fn https_connector(resolver: &Resolver) -> Result<hyper_rustls::HttpsConnector<crate::egress::Egress>, AcmeError> {
    use hyper_rustls::HttpsConnectorBuilder;
    let ca_error = |source: String| AcmeError::CaCertificate {
        path: resolver.ca_certificate.as_ref().map(|p| p.display().to_string()).unwrap_or_else(|| "(platform)".into()),
        source: instant_acme::Error::Other(source.into()),
    };
    let https = match &resolver.ca_certificate {
        Some(path) => {
            use rustls_pki_types::pem::PemObject;
            let mut roots = rustls::RootCertStore::empty();
            for cert in rustls_pki_types::CertificateDer::pem_file_iter(path).map_err(|e| ca_error(e.to_string()))? {
                roots.add(cert.map_err(|e| ca_error(e.to_string()))?).map_err(|e| ca_error(e.to_string()))?;
            }
            let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
            let tls = rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .map_err(|e| ca_error(e.to_string()))?
                .with_root_certificates(roots)
                .with_no_client_auth();
            HttpsConnectorBuilder::new().with_tls_config(tls)
        }
        None => HttpsConnectorBuilder::new().try_with_platform_verifier().map_err(|e| ca_error(e.to_string()))?,
    };
    // Direct, or through the forward proxy of `[network]` / HTTPS_PROXY.
    let tcp = crate::egress::connector(CONNECT_TIMEOUT);
    Ok(https.https_only().enable_http1().enable_http2().wrap_connector(tcp))
}
