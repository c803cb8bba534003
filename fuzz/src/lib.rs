//! What the fuzz targets share: the configuration an import is matched
//! against, the clock they run at, and the check every import plan must
//! pass.

use std::sync::LazyLock;
use std::time::{Duration, SystemTime};

use proxy_acme::cert;
use proxy_acme::commands::import::Plan;
use proxy_acme::config::Config;

/// Certificates for the names the seeds use, under both key types a
/// resolver may ask for, and one resolver per CA so accounts can attach.
const IMPORT_CONFIG: &str = r#"
[envoy]
sds_socket = "/run/proxy-acme/sds.sock"

[resolvers.le]
email = "ops@example.com"
ca_server = "https://acme-v02.api.letsencrypt.org/directory"
http_challenge = {}

[resolvers.rsa]
email = "ops@example.com"
ca_server = "https://ca.test:14000/dir"
key_type = "rsa2048"
http_challenge = {}

[[certificates]]
name = "a"
domains = ["a.test"]
resolver = "le"

[[certificates]]
name = "bc"
domains = ["b.test", "c.test"]
resolver = "le"

[[certificates]]
name = "r"
domains = ["r.test"]
resolver = "rsa"
"#;

/// The configuration import plans are made for.
pub fn import_config() -> &'static Config {
    static CONFIG: LazyLock<Config> = LazyLock::new(|| {
        let config: Config = IMPORT_CONFIG.parse().expect("the import configuration parses");
        config.validate().expect("the import configuration is valid");
        config
    });
    &CONFIG
}

/// The fuzzing clock: 2026-01-01T00:00:00Z, inside the seeds' validity.
pub fn now() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_767_225_600)
}

/// Every certificate a plan keeps really covers its entry's names, matches
/// its key and is still valid; every account it attaches goes to a resolver
/// of the configuration.
pub fn check_plan(config: &Config, plan: &Plan) {
    for planned in &plan.certificates {
        let entry = config.certificates.iter().find(|c| c.name == planned.name).expect("planned for an entry");
        let info = cert::inspect(&planned.bundle, Some(&entry.domains))
            .unwrap_or_else(|e| panic!("{} planned for {} but: {e}", planned.origin, planned.name));
        assert!(info.not_after > now(), "{} is expired", planned.origin);
    }
    for account in &plan.accounts {
        assert!(config.resolvers.contains_key(&account.resolver), "account for unknown {}", account.resolver);
    }
    let _ = format!("{plan:?}");
}

/// Splits `data` at NUL bytes into at most `n` parts, missing ones empty.
pub fn parts(data: &[u8], n: usize) -> Vec<&[u8]> {
    let mut parts: Vec<&[u8]> = data.splitn(n, |&b| b == 0).collect();
    parts.resize(n, &[]);
    parts
}
