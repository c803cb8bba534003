//! proxy-acme: ACME certificates for Envoy and nginx.
//!
//! A certificate request from the configuration becomes an order ([`acme`]),
//! is proven by a solver ([`solvers`]), lands in the [`store`] and is
//! deployed ([`deploy`]) to every proxy. [`schedule`] decides when; the
//! [`serve`] listeners answer the CA's validator through the proxy and the
//! operator; [`daemon`] wires it up; [`commands`] are the CLI verbs.
//! `docs/architecture.md` draws it.

pub mod acme;
pub mod atomic;
pub mod cert;
pub mod commands;
pub mod config;
pub mod daemon;
pub mod deploy;
pub mod discover;
pub mod dns;
pub mod egress;
pub mod fetch;
pub mod flush;
pub mod names;
pub mod notify;
pub mod process;
pub mod schedule;
pub mod serve;
pub mod solvers;
pub mod store;

#[cfg(test)]
#[path = "architecture_tests.rs"]
mod architecture_tests;
