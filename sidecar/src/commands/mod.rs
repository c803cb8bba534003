//! The CLI verbs besides `run` (which is [`crate::daemon::run`]): each one
//! reads the configuration, opens the store with [`crate::store::open`] like
//! the daemon, does its work and reports for people. Exit codes live in
//! `main.rs`.

pub mod import;
pub mod nginx_config;
pub mod operate;
pub mod prepare;
pub mod watch;
