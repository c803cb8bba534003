//! ACME through instant-acme: accounts and orders. No storage decisions and no
//! scheduling here: `daemon` calls `issue` when the schedule says so, and
//! stores what comes back.

use std::time::Duration;

use instant_acme::{
    Account, AccountCredentials, AuthorizationStatus, ChallengeType, Identifier, NewAccount, NewOrder, OrderStatus,
    RetryPolicy,
};
use serde::{Deserialize, Serialize};

use crate::cert::{self, Bundle, CertError, SecretPem};
use crate::config::{KeyType, Resolver};
use crate::solvers::http01::Http01Tokens;
use crate::store::{Store, StoreError};

/// Why an account or an order failed.
#[derive(Debug, thiserror::Error)]
pub enum AcmeError {
    #[error("ACME request failed: {0}")]
    Protocol(#[from] instant_acme::Error),
    #[error("cannot read CA certificate {path}: {source}")]
    CaCertificate { path: String, source: instant_acme::Error },
    #[error("authorization for {identifier} is {status}: {detail}")]
    Authorization { identifier: String, status: String, detail: String },
    #[error("the CA offered no {0} challenge for {1}")]
    NoChallenge(&'static str, String),
    #[error("order ended {0:?}")]
    OrderStatus(OrderStatus),
    #[error("issued certificate rejected: {0}")]
    Certificate(#[from] CertError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("stored account is unreadable: {0}")]
    StoredAccount(serde_json::Error),
    #[error("no resolver named {0}")]
    UnknownResolver(String),
}

impl AcmeError {
    /// Permanent errors will fail again the same way until config changes;
    /// the rest (network, CA outage, rate limits) are worth retrying.
    pub fn is_permanent(&self) -> bool {
        match self {
            Self::Protocol(instant_acme::Error::Api(problem)) => matches!(
                problem.r#type.as_deref(),
                Some(
                    "urn:ietf:params:acme:error:rejectedIdentifier"
                        | "urn:ietf:params:acme:error:unsupportedIdentifier"
                        | "urn:ietf:params:acme:error:malformed"
                        | "urn:ietf:params:acme:error:externalAccountRequired"
                )
            ),
            Self::Protocol(_) | Self::Authorization { .. } | Self::OrderStatus(_) | Self::NoChallenge(..) => false,
            Self::Store(e) => e.is_permanent(),
            Self::CaCertificate { .. } | Self::Certificate(_) | Self::StoredAccount(_) | Self::UnknownResolver(_) => {
                true
            }
        }
    }
}

/// What is stored for an account: the CA it belongs to and its credentials.
#[derive(Serialize, Deserialize)]
struct StoredAccount {
    ca_server: String,
    contact: Vec<String>,
    credentials: AccountCredentials,
}

/// Loads the account for resolver `name` from `store`, or registers a new one
/// with the CA and stores it. A stored account for another CA is not reused.
pub async fn account(store: &dyn Store, name: &str, resolver: &Resolver) -> Result<Account, AcmeError> {
    let contact: Vec<String> = resolver.email.iter().map(|e| format!("mailto:{e}")).collect();
    if let Some(data) = store.load_account(name).await? {
        let stored: StoredAccount = serde_json::from_slice(&data).map_err(AcmeError::StoredAccount)?;
        if stored.ca_server == resolver.ca_server {
            let account = builder(resolver)?.from_credentials(stored.credentials).await?;
            tracing::info!(resolver = name, account = account.id(), "loaded ACME account");
            return Ok(account);
        }
        tracing::info!(resolver = name, old = %stored.ca_server, new = %resolver.ca_server, "CA changed: registering a new account");
    }
    let contact_refs: Vec<&str> = contact.iter().map(String::as_str).collect();
    let new_account = NewAccount { contact: &contact_refs, terms_of_service_agreed: true, only_return_existing: false };
    let (account, credentials) = builder(resolver)?.create(&new_account, resolver.ca_server.clone(), None).await?;
    let stored = StoredAccount { ca_server: resolver.ca_server.clone(), contact, credentials };
    let data = serde_json::to_vec(&stored).map_err(AcmeError::StoredAccount)?;
    store.save_account(name, &data).await?;
    tracing::info!(resolver = name, account = account.id(), "registered ACME account");
    Ok(account)
}

fn builder(resolver: &Resolver) -> Result<instant_acme::AccountBuilder, AcmeError> {
    match &resolver.ca_certificate {
        Some(path) => Account::builder_with_root(path)
            .map_err(|source| AcmeError::CaCertificate { path: path.display().to_string(), source }),
        None => Ok(Account::builder()?),
    }
}

/// Orders a certificate for `domains` and proves control with HTTP-01 through
/// `tokens`. The chain is checked against the key and the names before it is
/// returned. Tokens are withdrawn on every exit path.
pub async fn issue(
    account: &Account,
    domains: &[String],
    key_type: KeyType,
    tokens: &Http01Tokens,
) -> Result<Bundle, AcmeError> {
    let identifiers: Vec<Identifier> = domains.iter().map(|d| Identifier::Dns(d.clone())).collect();
    let mut order = account.new_order(&NewOrder::new(&identifiers)).await?;
    tracing::info!(order = order.url(), domains = ?domains, "order created");

    let mut published = Vec::new();
    let mut authorizations = order.authorizations();
    while let Some(authz) = authorizations.next().await {
        let mut authz = authz?;
        match authz.status {
            AuthorizationStatus::Valid => continue,
            AuthorizationStatus::Pending => {}
            status => {
                return Err(AcmeError::Authorization {
                    identifier: authz.identifier().to_string(),
                    status: format!("{status:?}"),
                    detail: "not pending at order start".into(),
                })
            }
        }
        let identifier = authz.identifier().to_string();
        let mut challenge = authz
            .challenge(ChallengeType::Http01)
            .ok_or_else(|| AcmeError::NoChallenge("http-01", identifier.clone()))?;
        let key_authorization = challenge.key_authorization();
        published.push(tokens.publish(&challenge.token, &identifier, key_authorization.as_str()));
        challenge.set_ready().await?;
        tracing::debug!(identifier, token = %challenge.token, "http-01 challenge ready");
    }

    let retries =
        RetryPolicy::new().initial_delay(Duration::from_millis(250)).backoff(1.5).timeout(Duration::from_secs(120));
    let status = order.poll_ready(&retries).await?;
    drop(published);
    if status != OrderStatus::Ready {
        return Err(authorization_failure(&mut order).await.unwrap_or(AcmeError::OrderStatus(status)));
    }

    let key = tokio::task::spawn_blocking(move || cert::generate_key(key_type))
        .await
        .map_err(|e| CertError::Generate(e.to_string()))??;
    let csr = cert::csr_der(domains, &key)?;
    order.finalize_csr(&csr).await?;
    let fullchain_pem = order.poll_certificate(&retries).await?;
    let bundle = Bundle { fullchain_pem, key_pem: SecretPem::new(key.serialize_pem()) };
    let info = cert::inspect(&bundle, Some(domains))?;
    tracing::info!(order = order.url(), serial = %info.serial_hex, "certificate issued");
    Ok(bundle)
}

/// The first failed authorization of an invalid order, with the CA's words.
async fn authorization_failure(order: &mut instant_acme::Order) -> Option<AcmeError> {
    let mut authorizations = order.authorizations();
    while let Some(Ok(mut authz)) = authorizations.next().await {
        let state = authz.refresh().await.ok()?;
        if state.status != AuthorizationStatus::Valid {
            let detail = state
                .challenges
                .iter()
                .find_map(|c| c.error.as_ref().map(ToString::to_string))
                .unwrap_or_else(|| "no detail from the CA".into());
            return Some(AcmeError::Authorization {
                identifier: state.identifier().to_string(),
                status: format!("{:?}", state.status),
                detail,
            });
        }
    }
    None
}
