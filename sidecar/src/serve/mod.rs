//! The sidecar's listeners and what they show: the challenge API, the
//! TLS-ALPN-01 responder, the ops listener (`/healthz`, `/readyz`,
//! `/metrics`), the admin API, each behind one [`door`] (accept errors,
//! connection cap, timeouts); the readiness checks, the metrics registry and the served-certificate check. No
//! business logic: the admin API reaches the daemon through
//! [`admin::Operations`] only.

pub mod admin;
pub mod api;
mod cert_metrics;
pub mod door;
pub mod health;
pub mod metrics;
pub mod ops;
pub mod served;
pub mod tls_alpn;
