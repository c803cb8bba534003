//! Orders (RFC 8555 §7.4), revocation and renewal information (ARI,
//! RFC 9773).

use std::net::IpAddr;
use std::time::{Duration, SystemTime};

use instant_acme::{
    Account, AuthorizationStatus, CertificateIdentifier, Identifier, NewOrder, OrderStatus, RevocationReason,
    RevocationRequest,
};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;

use super::bounds::step;
use super::chains;
use super::{AcmeAccount, AcmeError};
use crate::cert::KeyType;
use crate::cert::{self, Bundle, CertError, SecretPem};
use crate::solvers::Solver;

/// What to order.
#[derive(Debug, Clone)]
pub struct OrderRequest<'a> {
    /// DNS names or IP addresses; the first may be the subject CN.
    pub domains: &'a [String],
    pub key_type: KeyType,
    /// Profile name; checked against the directory's profiles.
    pub profile: Option<&'a str>,
    /// Whether the CSR may name the first name as its subject common name.
    pub common_name: bool,
    /// Issuer common name of the root the chain should lead to.
    pub preferred_chain: Option<&'a str>,
    /// The certificate this order replaces. Sent as ARI's `replaces` only
    /// when the caller has seen the CA answer renewal information.
    pub replaces: Option<&'a Bundle>,
    /// Sign the CSR with this key instead of a new one (`reuse_key`; the
    /// caller checked it is of `key_type`).
    pub reuse_key: Option<&'a SecretPem>,
}

/// Orders a certificate and proves control through `solver`; the order
/// and its key go to `checkpoint` as soon as the order exists.
/// The chain is checked against the key and the names before it is returned.
/// Answers are withdrawn on every exit path.
pub async fn issue(
    account: &AcmeAccount,
    request: &OrderRequest<'_>,
    solver: &dyn Solver,
    checkpoint: &dyn Checkpoint,
) -> Result<Bundle, AcmeError> {
    let identifiers: Vec<Identifier> = request
        .domains
        .iter()
        .map(|d| match d.parse::<IpAddr>() {
            Ok(ip) => Identifier::Ip(ip),
            Err(_) => Identifier::Dns(d.clone()),
        })
        .collect();
    if let Some(profile) = request.profile {
        if !account.profiles().any(|p| p.name == profile) {
            let offered: Vec<&str> = account.profiles().map(|p| p.name).collect();
            return Err(AcmeError::UnknownProfile { wanted: profile.to_owned(), offered: offered.join(", ") });
        }
    }
    let new_order = || {
        let order = NewOrder::new(&identifiers);
        match request.profile {
            Some(profile) => order.profile(profile),
            None => order,
        }
    };
    // The key first: the order is recorded with it as soon as it exists.
    let (key, key_pem) = match request.reuse_key {
        Some(pem) => (rcgen::KeyPair::from_pem(pem.expose()).map_err(|e| CertError::Key(e.to_string()))?, pem.clone()),
        None => {
            let key_type = request.key_type;
            let key = tokio::task::spawn_blocking(move || cert::generate_key(key_type))
                .await
                .map_err(|e| CertError::Generate(e.to_string()))??;
            let pem = SecretPem::new(key.serialize_pem());
            (key, pem)
        }
    };
    let replaces = request.replaces.and_then(certificate_id);
    // Whether the order that exists carries `replaces` (not just wanted it).
    let mut sent_replaces = replaces.is_some();
    let mut order = match &replaces {
        Some(id) => match step!("creating the order", account.new_order(&new_order().replaces(id.clone())).await) {
            Ok(order) => order,
            // RFC 9773 §5: when `replaces` is refused (the certificate was
            // already replaced, or the CA does not reflect the field), order
            // again without it rather than not at all.
            Err(e) if replaces_refused(&e) => {
                tracing::warn!(error = %e, "the CA did not take `replaces`; ordering without it");
                sent_replaces = false;
                step!("creating the order", account.new_order(&new_order()).await)?
            }
            Err(e) => return Err(e.into()),
        },
        None => step!("creating the order", account.new_order(&new_order()).await)?,
    };
    tracing::info!(
        order = order.url(),
        domains = ?request.domains,
        challenge = %solver.kind(),
        replaces = sent_replaces,
        "order created"
    );
    checkpoint.record(order.url(), &key_pem).await;

    let status = super::prove::prove(&mut order, account, solver).await?;
    if status != OrderStatus::Ready {
        return Err(authorization_failure(&mut order).await.unwrap_or(AcmeError::OrderStatus(status)));
    }

    finalize_and_download(account, &mut order, request, &key, key_pem).await
}

/// Where an order is recorded as soon as the CA created it, before it is
/// proven and finalized: a crash must lose neither the order nor what the
/// CA issues for it.
#[async_trait::async_trait]
pub trait Checkpoint: Send + Sync {
    /// Records `order_url` and the key its CSR will be made with. A failure
    /// is the implementation's to log: the order goes on (its certificate
    /// is kept in memory and written later).
    async fn record(&self, order_url: &str, key_pem: &SecretPem);
}

/// What became of an order reopened from its URL.
#[derive(Debug)]
pub enum Reopened {
    /// Its certificate, downloaded (finalized first if it was only ready).
    Issued(Bundle),
    /// Nothing to download: the order is invalid (or failed validation
    /// now), or the CA no longer knows it (why).
    Gone(String),
}

/// Reopens the order at `url` (recorded by an earlier run) with `account`
/// and downloads its certificate: proves it with `solver` if it is still
/// `pending`, finalizes it with `key_pem` if it is `ready`, polls it while
/// `processing`. The chain is checked against the key and the names, as
/// after a new order.
pub async fn resume(
    account: &AcmeAccount,
    url: &str,
    key_pem: &SecretPem,
    request: &OrderRequest<'_>,
    solver: &dyn Solver,
) -> Result<Reopened, AcmeError> {
    let mut order = match step!("reopening the order", account.order(url.to_owned()).await) {
        Ok(order) => order,
        // 404, unauthorized (another account), malformed: the CA's answer.
        Err(instant_acme::Error::Api(problem)) => return Ok(Reopened::Gone(problem.to_string())),
        Err(e) => return Err(e.into()),
    };
    let status = order.state().status;
    tracing::info!(order = url, ?status, "reopened an order recorded before a restart");
    let key = match rcgen::KeyPair::from_pem(key_pem.expose()) {
        Ok(key) => key,
        Err(e) => return Ok(Reopened::Gone(format!("the recorded key does not parse: {e}"))),
    };
    match status {
        OrderStatus::Ready | OrderStatus::Processing | OrderStatus::Valid => {}
        OrderStatus::Invalid => return Ok(Reopened::Gone("the order is Invalid".into())),
        OrderStatus::Pending => match super::prove::prove(&mut order, account, solver).await? {
            OrderStatus::Ready => {}
            status => return Ok(Reopened::Gone(format!("the order is {status:?} after validation"))),
        },
    }
    match finalize_and_download(account, &mut order, request, &key, key_pem.clone()).await {
        Ok(bundle) => Ok(Reopened::Issued(bundle)),
        Err(AcmeError::Certificate(e)) => Ok(Reopened::Gone(format!("its certificate does not fit: {e}"))),
        Err(AcmeError::Protocol(instant_acme::Error::Api(problem))) => Ok(Reopened::Gone(problem.to_string())),
        Err(e) => Err(e),
    }
}

/// Finalizes `order` (unless the CA already did) with a CSR signed by
/// `key`, downloads the chain (the preferred one if asked) and checks it.
async fn finalize_and_download(
    account: &AcmeAccount,
    order: &mut instant_acme::Order,
    request: &OrderRequest<'_>,
    key: &rcgen::KeyPair,
    key_pem: SecretPem,
) -> Result<Bundle, AcmeError> {
    if order.state().status == OrderStatus::Ready {
        let csr = cert::csr_der(request.domains, key, request.common_name)?;
        step!("finalizing the order", order.finalize_csr(&csr).await)?;
    }
    let mut fullchain_pem = download_when_issued(order).await?;
    if let Some(preferred) = request.preferred_chain {
        let certificate_url = order.state().certificate.clone().unwrap_or_default();
        if let Some(chain) = preferred_chain(account, &certificate_url, preferred).await {
            fullchain_pem = chain;
        }
    }
    let bundle = Bundle { fullchain_pem, key_pem };
    let info = cert::inspect(&bundle, Some(request.domains))?;
    tracing::info!(order = order.url(), serial = %info.serial_hex, "certificate issued");
    Ok(bundle)
}

/// The waits for an order still `processing` when the CA gave no
/// `Retry-After`, after the first (learned per CA, `acme::poll`): this,
/// doubling up to [`PROCESSING_MAX_WAIT`].
const PROCESSING_NEXT_WAIT: Duration = Duration::from_millis(250);
const PROCESSING_MAX_WAIT: Duration = Duration::from_secs(10);

/// The certificate of a finalized order. A CA that issues at once (Let's
/// Encrypt mostly does; Pebble within milliseconds) is asked once; one that
/// finalizes asynchronously (the order stays `processing`) is asked again
/// when its `Retry-After` says, never sooner, else first when the CA had
/// issued the last times (learned per CA), then after waits doubling from
/// 250 ms to 10 s. The order's deadline bounds it all.
async fn download_when_issued(order: &mut instant_acme::Order) -> Result<String, AcmeError> {
    let learned = super::bounds::first_looks();
    let mut looks = super::poll::Looks::new(PROCESSING_NEXT_WAIT, PROCESSING_MAX_WAIT);
    let mut first = true;
    loop {
        // Whether this look is at the learned time (the first, when the
        // CA said nothing): only such looks teach it.
        let mut at_learned = false;
        if order.state().status == OrderStatus::Processing {
            at_learned = std::mem::take(&mut first) && super::bounds::last_retry_after().is_none();
            let wait = if at_learned { learned.issuance.wait() } else { looks.next(SystemTime::now()) };
            tracing::debug!(order = order.url(), wait_ms = wait.as_millis(), "the CA is still issuing the certificate");
            tokio::time::sleep(wait).await;
        }
        let chain = step!("downloading the certificate", order.certificate().await)?;
        if at_learned {
            learned.issuance.learn(chain.is_some());
        }
        if let Some(chain) = chain {
            return Ok(chain);
        }
    }
}

/// The chain leading to `preferred` among the default and the alternates
/// the CA announced; `None` keeps the default (as lego does when no chain
/// matches).
async fn preferred_chain(account: &AcmeAccount, certificate_url: &str, preferred: &str) -> Option<String> {
    let download = account.downloads.take(certificate_url)?;
    if chains::top_issuer(&download.chain).as_deref() == Some(preferred) {
        return None;
    }
    for url in &download.alternates {
        // A signed POST-as-GET through instant-acme; it cannot parse the PEM
        // body as an order, which is expected: the recording client kept it.
        let _ = step!("downloading an alternate chain", account.order(url.clone()).await);
        let Some(alternate) = account.downloads.take(url) else { continue };
        if chains::top_issuer(&alternate.chain).as_deref() == Some(preferred) {
            tracing::info!(chain = url, issuer = preferred, "using the preferred alternate chain");
            return Some(alternate.chain);
        }
    }
    tracing::info!(
        issuer = preferred,
        alternates = download.alternates.len(),
        "no chain leads to the preferred issuer; keeping the default"
    );
    None
}

fn replaces_refused(error: &instant_acme::Error) -> bool {
    match error {
        instant_acme::Error::Api(problem) => {
            problem.r#type.as_deref() == Some("urn:ietf:params:acme:error:alreadyReplaced")
        }
        instant_acme::Error::Other(e) => e.to_string().starts_with("replaces field mismatch"),
        _ => false,
    }
}

/// The first failed authorization of an invalid order, with the CA's words.
pub(super) async fn authorization_failure(order: &mut instant_acme::Order) -> Option<AcmeError> {
    let mut authorizations = order.authorizations();
    while let Some(Ok(mut authz)) = authorizations.next().await {
        let state = step!("reading the failed authorization", authz.refresh().await).ok()?;
        if state.status != AuthorizationStatus::Valid {
            let detail = state
                .challenges
                .iter()
                .find_map(|c| c.error.as_ref().map(|e| super::advice::explain(&c.r#type, e.to_string())))
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

fn leaf_der(bundle: &Bundle) -> Option<CertificateDer<'static>> {
    CertificateDer::pem_slice_iter(bundle.fullchain_pem.as_bytes()).next()?.ok()
}

fn certificate_id(bundle: &Bundle) -> Option<CertificateIdentifier<'static>> {
    let der = leaf_der(bundle)?;
    match CertificateIdentifier::try_from(&der) {
        Ok(id) => Some(id.into_owned()),
        Err(e) => {
            tracing::warn!(error = %e, "cannot build the ARI certificate identifier");
            None
        }
    }
}

/// A CA's suggested renewal window for `bundle` (RFC 9773), or `None` when
/// the CA has no ARI. Errors mean the answer was unusable (malformed, or the
/// CA unreachable): the caller falls back to the lifetime rule.
pub async fn renewal_info(account: &Account, bundle: &Bundle) -> Result<Option<Window>, AcmeError> {
    let id = certificate_id(bundle).ok_or(AcmeError::Certificate(CertError::Parse("no AKI for ARI".into())))?;
    // instant-acme answers Unsupported, without a request, when the
    // directory has no renewalInfo.
    let (info, retry_after) = match step!("asking for renewal information", account.renewal_info(&id).await) {
        Ok(answer) => answer,
        Err(instant_acme::Error::Unsupported(_)) => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let to_system = |t: time::OffsetDateTime| SystemTime::from(t);
    Ok(Some(Window {
        start: to_system(info.suggested_window.start),
        end: to_system(info.suggested_window.end),
        retry_after,
        explanation_url: info.explanation_url,
    }))
}

/// An ARI suggested window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Window {
    pub start: SystemTime,
    pub end: SystemTime,
    pub retry_after: Duration,
    pub explanation_url: Option<String>,
}

/// Revokes `bundle`'s leaf with `reason` (RFC 5280 code).
pub async fn revoke(account: &Account, bundle: &Bundle, reason: Option<u8>) -> Result<(), AcmeError> {
    let der = leaf_der(bundle).ok_or(AcmeError::Certificate(CertError::Empty))?;
    let reason = reason.map(|code| match code {
        1 => RevocationReason::KeyCompromise,
        2 => RevocationReason::CaCompromise,
        3 => RevocationReason::AffiliationChanged,
        4 => RevocationReason::Superseded,
        5 => RevocationReason::CessationOfOperation,
        6 => RevocationReason::CertificateHold,
        9 => RevocationReason::PrivilegeWithdrawn,
        _ => RevocationReason::Unspecified,
    });
    let request = RevocationRequest { certificate: &der, reason };
    step!("revoking", account.revoke(&request).await)?;
    Ok(())
}
