//! The sidecar's configuration: TOML parsing and validation, the two steps
//! `Config::load_valid` runs after reading the file (the `*_file` secrets it
//! then reads are I/O and left out).
//!
//! Input: the TOML text.
#![no_main]

use libfuzzer_sys::fuzz_target;
use proxy_acme::config::{Config, ConfigError};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let config: Config = match text.parse() {
        Ok(config) => config,
        Err(err) => return message(&err),
    };
    if let Err(err) = config.validate() {
        message(&err);
        assert!(matches!(err, ConfigError::Invalid { .. }), "validation names a field: {err:?}");
    }
    // What `proxy-acme check` and the logs show of a configuration.
    let _ = format!("{config:?}");
});

/// The message an operator sees: must render, and never be empty.
fn message(err: &ConfigError) {
    assert!(!err.to_string().is_empty(), "{err:?}");
}
