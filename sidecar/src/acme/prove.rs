//! Proving control of an order's identifiers: each pending authorization's
//! challenge of the solver's type is presented through the [`Solver`], the
//! CA is told to validate once the answer is visible, and the order is
//! polled until it is ready or invalid.
//!
//! An answer visible at once (HTTP-01, TLS-ALPN-01) is followed by the CA's
//! go-ahead right away. Otherwise (DNS-01) every answer is presented first,
//! the solver waits until all are visible, then the CA is told. Answers are
//! withdrawn on every exit path, also when the order task is aborted (the
//! guards' `Drop`). A resumed order's answers are shown again, but a
//! challenge the validator already has (`processing`) is not told again.

use std::time::Duration;

use instant_acme::{AuthorizationStatus, ChallengeStatus, Order, OrderStatus};

use super::bounds::{is_bad_nonce, set_step, step, MAX_NONCE_REFUSALS};
use super::{AcmeAccount, AcmeError};
use crate::solvers::{Challenge, Presented, Solver, SolverError};

/// Later looks without `Retry-After`: this, doubling up to [`MAX_WAIT`].
const NEXT_WAIT: Duration = Duration::from_millis(250);
const MAX_WAIT: Duration = Duration::from_secs(5);
/// The longest the order is looked at while it stays pending (within the
/// order's own deadline).
const POLL_TIMEOUT: Duration = Duration::from_secs(120);

/// Proves every pending authorization of `order` with `solver`; the order's
/// status once the CA is done (`Ready` or not).
pub(super) async fn prove(
    order: &mut Order,
    account: &AcmeAccount,
    solver: &dyn Solver,
) -> Result<OrderStatus, AcmeError> {
    // Owned here, so that an aborted order drops (and so withdraws) them.
    let mut presented = Vec::new();
    let result = prove_inner(order, account, solver, &mut presented).await;
    solver.clean_up(presented).await;
    result
}

async fn prove_inner(
    order: &mut Order,
    account: &AcmeAccount,
    solver: &dyn Solver,
    presented: &mut Vec<Presented>,
) -> Result<OrderStatus, AcmeError> {
    let kind = solver.kind();
    fetch_authorizations(order).await?;
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
        if !solver.supports(&identifier) {
            return Err(SolverError::Unsupported { kind, identifier }.into());
        }
        let mut challenge = authz
            .challenge(kind.acme_type())
            .ok_or_else(|| AcmeError::NoChallenge(kind.as_str(), identifier.clone()))?;
        let key_authorization = challenge.key_authorization();
        // dns-persist-01's own fields, as the account's client saw them.
        let fields = account.challenges.get(&challenge.url).unwrap_or_default();
        let answer = Challenge {
            identifier: &identifier,
            token: &challenge.token,
            key_authorization: key_authorization.as_str(),
            account_uri: fields.accounturi.as_deref().unwrap_or(account.id()),
            issuer_domain_names: &fields.issuer_domain_names,
        };
        set_step("presenting the challenge");
        presented.push(solver.present(answer).await?);
        // A resumed order's challenge may already be with the validator
        // (the killed process said ready): shown again, not told twice.
        if solver.visible_at_once() && challenge.status == ChallengeStatus::Pending {
            step!("telling the CA the challenge is ready", challenge.set_ready().await)?;
            tracing::debug!(identifier, token = %challenge.token, challenge = %kind, "challenge ready");
        }
    }

    if !solver.visible_at_once() && !presented.is_empty() {
        set_step("waiting for the challenge answers to be visible");
        solver.wait_visible(presented).await?;
        let mut authorizations = order.authorizations();
        while let Some(authz) = authorizations.next().await {
            let mut authz = authz?;
            if authz.status != AuthorizationStatus::Pending {
                continue;
            }
            let identifier = authz.identifier().to_string();
            let mut challenge = authz
                .challenge(kind.acme_type())
                .ok_or_else(|| AcmeError::NoChallenge(kind.as_str(), identifier.clone()))?;
            if challenge.status == ChallengeStatus::Pending {
                step!("telling the CA the challenge is ready", challenge.set_ready().await)?;
                tracing::debug!(identifier, challenge = %kind, "challenge ready");
            }
        }
    }

    let ready = poll_ready(order).await;
    if let Err(instant_acme::Error::Timeout(None)) = &ready {
        // Some CAs (acme2certifier) mark the authorization invalid and
        // leave the order pending: the poll then only times out. Say which
        // name failed, as for an invalid order; a CA that is merely slow
        // (still pending) keeps the time-out.
        if let Some(failure @ AcmeError::Authorization { .. }) = super::order::authorization_failure(order).await {
            if matches!(&failure, AcmeError::Authorization { status, .. } if status == "Invalid") {
                return Err(failure);
            }
        }
    }
    Ok(ready.map_err(|e| super::advice::explain_error(&kind.acme_type(), e))?)
}

/// Looks at `order` until the CA is done validating (`Ready` or
/// `Invalid`): a first look at the wait learned for this CA, then when
/// the CA's `Retry-After` says, else after a wait doubling from 250 ms to
/// 5 s (`acme::poll`). An order
/// still pending after [`POLL_TIMEOUT`], or whose `Retry-After` points past
/// it, ends in instant-acme's time-out, as its own polling did.
async fn poll_ready(order: &mut Order) -> Result<OrderStatus, instant_acme::Error> {
    let started = std::time::Instant::now();
    let mut looks = super::poll::Looks::new(NEXT_WAIT, MAX_WAIT);
    // The first look is learned per CA (`acme::poll::FirstLook`).
    let learned = super::bounds::first_looks();
    let mut wait = learned.validation.wait();
    let mut first = true;
    loop {
        let next = started.elapsed() + wait;
        if next > POLL_TIMEOUT {
            // Past it because the CA said so: when it said to come back.
            let said = super::bounds::last_retry_after().is_some_and(|at| at > std::time::SystemTime::now());
            let at = std::time::Instant::now() + wait;
            return Err(instant_acme::Error::Timeout(said.then_some(at)));
        }
        tokio::time::sleep(wait).await;
        let state = step!("waiting for the CA to validate", order.refresh().await)?;
        if let Some(error) = &state.error {
            return Err(instant_acme::Error::Api(error.clone()));
        }
        let done = matches!(state.status, OrderStatus::Ready | OrderStatus::Invalid);
        if std::mem::take(&mut first) {
            learned.validation.learn(done);
        }
        if done {
            return Ok(state.status);
        }
        wait = looks.next(std::time::SystemTime::now());
    }
}

/// Fetches every authorization of `order` once (instant-acme keeps them),
/// each sent again while the CA refuses the nonce: a failed fetch skips its
/// authorization in instant-acme's stream, so the stream starts over and
/// fetches only those still missing.
async fn fetch_authorizations(order: &mut Order) -> Result<(), AcmeError> {
    set_step("fetching the authorizations");
    let mut refused = 0;
    'again: loop {
        let mut authorizations = order.authorizations();
        while let Some(authz) = authorizations.next().await {
            match authz {
                Ok(_) => {}
                Err(e) if is_bad_nonce(&e) && refused < MAX_NONCE_REFUSALS => {
                    refused += 1;
                    super::bounds::note_refused_nonce();
                    tracing::debug!(refused, "the CA refused the nonce; fetching the authorizations again");
                    continue 'again;
                }
                Err(e) => return Err(e.into()),
            }
        }
        return Ok(());
    }
}
