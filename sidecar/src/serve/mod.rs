//! The sidecar's listeners and what they show: the challenge API (with
//! `/healthz`, `/readyz` and `/metrics`), the admin API, the readiness
//! checks, the metrics registry and the served-certificate check. No
//! business logic: the admin API reaches the daemon through
//! [`admin::Operations`] only.

pub mod admin;
pub mod api;
pub mod health;
pub mod metrics;
pub mod served;
