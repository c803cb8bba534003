//! `duckdns`: DuckDNS with the account token. DuckDNS keeps ONE TXT value
//! per domain, answered for every name under it: `GET /update?domains=
//! <name>&token=<token>&txt=<value>` replaces it and `&clear=true` empties
//! it; the answer is the text `OK` or `KO`. So two values cannot coexist: a
//! wildcard and its apex (`*.x.duckdns.org` and `x.duckdns.org`) cannot be
//! validated at the same moment. `cleanup` clears the value only if the
//! last value this provider set for the domain is ours, so it never removes
//! a value presented after it.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use http::Method;
use serde::Deserialize;

use super::http::{relative, ApiClient};
use super::settings::{http_url, redacted, required, Env, ProviderSettings, SettingsError};
use super::{DnsError, DnsProvider, TxtRecord};

const PROVIDER: &str = "duckdns";
const SUFFIX: &str = ".duckdns.org";

// === settings ===

/// `[dns_challenge.duckdns]`: the account token (`DUCKDNS_TOKEN`).
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DuckDns {
    #[serde(default)]
    pub token: Option<String>,
    #[serde(default)]
    pub token_file: Option<PathBuf>,
    /// The update URL; change only for tests or a proxy.
    #[serde(default = "default_base_url")]
    pub base_url: String,
}

fn default_base_url() -> String {
    "https://www.duckdns.org".into()
}

impl std::fmt::Debug for DuckDns {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DuckDns")
            .field("token", &redacted(self.token.as_ref()))
            .field("token_file", &self.token_file)
            .field("base_url", &self.base_url)
            .finish()
    }
}

impl ProviderSettings for DuckDns {
    const NAME: &'static str = PROVIDER;

    fn read_secrets(&mut self, field: &str, env: &Env) -> Result<(), SettingsError> {
        let file = self.token_file.as_deref();
        env.secret(&format!("{field}.token"), &mut self.token, file, "DUCKDNS_TOKEN")
    }

    fn validate(&self, field: &str) -> Result<(), SettingsError> {
        required(&format!("{field}.token"), self.token.as_ref())?;
        http_url(&format!("{field}.base_url"), &self.base_url)
    }

    fn build(&self, _ttl: u32) -> Result<Arc<dyn DnsProvider>, DnsError> {
        Ok(Arc::new(DuckDnsProvider::new(self)?))
    }
}

// === impl DuckDnsProvider ===

pub struct DuckDnsProvider {
    base: String,
    token: String,
    client: ApiClient,
    /// The last value set per DuckDNS domain.
    current: Mutex<HashMap<String, String>>,
}

impl std::fmt::Debug for DuckDnsProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DuckDnsProvider").field("base", &self.base).finish_non_exhaustive()
    }
}

/// The DuckDNS domain a record name is under: `x` for
/// `_acme-challenge.a.x.duckdns.org.`.
fn duck_domain(fqdn: &str) -> Result<String, DnsError> {
    let name = relative(fqdn);
    name.strip_suffix(SUFFIX)
        .and_then(|rest| rest.rsplit('.').next())
        .filter(|label| !label.is_empty() && *label != "_acme-challenge")
        .map(str::to_owned)
        .ok_or_else(|| DnsError::provider(PROVIDER, format!("{name} is not under a <name>.duckdns.org domain"), false))
}

/// Query-string encoding (tokens and values are URL-safe already; this keeps
/// anything else from breaking the query).
fn encode(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

impl DuckDnsProvider {
    pub fn new(config: &DuckDns) -> Result<Self, DnsError> {
        let token = config.token.clone().ok_or_else(|| DnsError::provider(PROVIDER, "no token", false))?;
        Ok(Self {
            base: config.base_url.trim_end_matches('/').to_owned(),
            token,
            client: ApiClient::new(PROVIDER)?,
            current: Mutex::new(HashMap::new()),
        })
    }

    async fn update(&self, domain: &str, txt: &str, clear: bool) -> Result<(), DnsError> {
        let url = format!(
            "{}/update?domains={domain}&token={}&txt={}&clear={clear}",
            self.base,
            encode(&self.token),
            encode(txt)
        );
        let what = if clear { "clearing the TXT value" } else { "setting the TXT value" };
        let answer = self.client.send(Method::GET, &url, &[], None).await?;
        let text = answer.text();
        if !answer.status.is_success() {
            return Err(answer.error(PROVIDER, what, &text));
        }
        match text.trim() {
            "OK" => Ok(()),
            "KO" => Err(DnsError::provider(
                PROVIDER,
                format!(
                    "{what} of {domain}.duckdns.org: HTTP {}: KO (a wrong token, or a domain not in the account)",
                    answer.status.as_u16()
                ),
                false,
            )),
            other => Err(DnsError::provider(PROVIDER, format!("{what}: unexpected answer: {other:.100}"), true)),
        }
    }
}

#[async_trait]
impl DnsProvider for DuckDnsProvider {
    async fn present(&self, record: &TxtRecord) -> Result<(), DnsError> {
        let domain = duck_domain(&record.fqdn)?;
        let previous = self.current.lock().unwrap_or_else(|e| e.into_inner()).get(&domain).cloned();
        if let Some(previous) = previous.filter(|p| *p != record.value) {
            tracing::warn!(
                provider = PROVIDER,
                domain,
                "DuckDNS holds one TXT value per domain: replacing the one presented for another challenge ({previous:.8}...), which fails if the CA has not checked it yet"
            );
        }
        self.update(&domain, &record.value, false).await?;
        self.current.lock().unwrap_or_else(|e| e.into_inner()).insert(domain.clone(), record.value.clone());
        tracing::info!(provider = PROVIDER, fqdn = %record.fqdn, domain, "TXT value set");
        Ok(())
    }

    async fn cleanup(&self, record: &TxtRecord) -> Result<(), DnsError> {
        let domain = duck_domain(&record.fqdn)?;
        let ours = self.current.lock().unwrap_or_else(|e| e.into_inner()).get(&domain).cloned();
        if ours.as_deref() != Some(record.value.as_str()) {
            // Another value replaced ours since (or this process never set it).
            return Ok(());
        }
        self.update(&domain, "", true).await?;
        self.current.lock().unwrap_or_else(|e| e.into_inner()).remove(&domain);
        tracing::info!(provider = PROVIDER, fqdn = %record.fqdn, domain, "TXT value cleared");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use http::StatusCode;

    use super::*;
    use crate::dns::mock_tests::{query, serve, Seen};

    /// DuckDNS's update API: one TXT value per domain, `OK`/`KO` as text
    /// with HTTP 200, the token in the query.
    fn api(txt: Arc<Mutex<HashMap<String, String>>>) -> impl Fn(&Seen) -> (StatusCode, String) {
        move |seen| {
            assert_eq!(seen.target.split('?').next(), Some("/update"));
            let domains = query(&seen.target, "domains").unwrap_or_default();
            if query(&seen.target, "token") != Some("duck-token") || !["myhome", "office"].contains(&domains) {
                return (StatusCode::OK, "KO".into());
            }
            let mut txt = txt.lock().unwrap();
            if query(&seen.target, "clear") == Some("true") {
                txt.remove(domains);
            } else {
                txt.insert(domains.to_owned(), query(&seen.target, "txt").unwrap_or_default().to_owned());
            }
            (StatusCode::OK, "OK".into())
        }
    }

    fn provider(url: &str, token: &str) -> DuckDnsProvider {
        DuckDnsProvider::new(&DuckDns { token: Some(token.into()), token_file: None, base_url: url.into() }).unwrap()
    }

    #[tokio::test]
    async fn one_value_per_domain_and_cleanup_never_clears_a_later_value() {
        let txt = Arc::new(Mutex::new(HashMap::new()));
        let (url, log) = serve(Arc::new(api(Arc::clone(&txt)))).await;
        let duck = provider(&url, "duck-token");
        let (apex, wildcard) =
            (TxtRecord::new("myhome.duckdns.org", "v-apex", 60), TxtRecord::new("*.myhome.duckdns.org", "v-wild", 60));
        duck.present(&apex).await.unwrap();
        assert_eq!(txt.lock().unwrap()["myhome"], "v-apex");
        duck.present(&TxtRecord::new("a.office.duckdns.org", "v-office", 60)).await.unwrap();
        assert_eq!(txt.lock().unwrap()["office"], "v-office", "a name under the domain uses the domain");
        duck.present(&wildcard).await.unwrap(); // replaces v-apex: DuckDNS's limit
        duck.cleanup(&apex).await.unwrap(); // not ours any more: nothing sent
        assert_eq!(txt.lock().unwrap()["myhome"], "v-wild");
        duck.cleanup(&wildcard).await.unwrap();
        assert!(!txt.lock().unwrap().contains_key("myhome"));
        assert_eq!(txt.lock().unwrap()["office"], "v-office");
        assert_eq!(log.lock().unwrap().len(), 4);

        let refused = provider(&url, "wrong").present(&apex).await.unwrap_err();
        assert!(!refused.is_retryable());
        assert!(refused.to_string().starts_with("duckdns: setting the TXT value of myhome.duckdns.org: HTTP 200: KO (a wrong token"));
        let elsewhere = duck.present(&TxtRecord::new("example.com", "v", 60)).await.unwrap_err();
        assert!(elsewhere.to_string().contains("not under a <name>.duckdns.org domain"), "{elsewhere}");
    }

    #[test]
    fn the_token_comes_from_legos_variable_and_never_shows_in_debug() {
        let mut settings: crate::dns::DnsChallenge = toml::from_str("[duckdns]\n").unwrap();
        settings.read_secrets_from("dns", &Env::from_vars([("DUCKDNS_TOKEN", "duck-secret")])).unwrap();
        settings.validate("dns").unwrap();
        assert_eq!(settings.provider_settings::<DuckDns>().unwrap().token.as_deref(), Some("duck-secret"));
        assert!(!format!("{settings:?}").contains("duck-secret"));
    }
}
