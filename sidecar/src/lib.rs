//! proxy-acme: ACME certificates for Envoy and nginx.
//!
//! A certificate request from the configuration becomes an order ([`acme`]),
//! is proven by a solver ([`solvers`]), lands in the [`store`] and is
//! deployed ([`deploy`]) to every proxy. [`schedule`] decides when; [`api`]
//! answers the CA's validator through the proxy; [`daemon`] wires it up.

pub mod acme;
pub mod admin;
pub mod api;
pub mod atomic;
pub mod cert;
pub mod cli;
pub mod config;
pub mod daemon;
pub mod deploy;
pub mod discover;
pub mod dns;
pub mod health;
pub mod import;
pub mod metrics;
pub mod names;
pub mod nginx_config;
pub mod prepare;
pub mod process;
pub mod schedule;
pub mod served;
pub mod solvers;
pub mod store;
pub mod watch;

#[cfg(test)]
#[path = "architecture_tests.rs"]
mod architecture_tests;
