//! RFC 2136 dynamic update through hickory-dns, signed with TSIG (RFC 8945,
//! hmac-sha256 or hmac-sha512). Works with BIND, Knot, PowerDNS and any
//! server that takes signed updates. A value is *appended* to the TXT RRset
//! and removed with a delete-by-rdata, so other values at the name survive.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use base64::Engine;
use hickory_client::client::{Client, ClientHandle};
use hickory_proto::dnssec::rdata::tsig::TsigAlgorithm;
use hickory_proto::dnssec::tsig::TSigner;
use hickory_proto::op::{MessageFinalizer, ResponseCode};
use hickory_proto::rr::rdata::TXT;
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};
use hickory_proto::runtime::TokioRuntimeProvider;
use hickory_proto::udp::UdpClientStream;
use serde::Deserialize;

use super::settings::{redacted, Env, ProviderSettings, SettingsError};
use super::{DnsError, DnsProvider, TxtRecord};

const PROVIDER: &str = "rfc2136";
const TIMEOUT: Duration = Duration::from_secs(5);
/// Allowed clock difference with the server, in seconds (RFC 8945 §5.2.3).
const FUDGE: u16 = 300;

// === settings ===

/// `[dns_challenge.rfc2136]`: RFC 2136 dynamic update, signed with TSIG
/// (lego's `RFC2136_*`).
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rfc2136 {
    /// The primary nameserver that takes updates (`RFC2136_NAMESERVER`).
    pub nameserver: SocketAddr,
    /// The zone to update; found with an SOA lookup when absent.
    #[serde(default)]
    pub zone: Option<String>,
    /// TSIG key name (`RFC2136_TSIG_KEY`); no TSIG when absent.
    #[serde(default)]
    pub tsig_key: Option<String>,
    /// `hmac-sha256` (default) or `hmac-sha512` (`RFC2136_TSIG_ALGORITHM`).
    #[serde(default = "default_tsig_algorithm")]
    pub tsig_algorithm: String,
    /// Base64 TSIG secret (`RFC2136_TSIG_SECRET`).
    #[serde(default)]
    pub tsig_secret: Option<String>,
    #[serde(default)]
    pub tsig_secret_file: Option<PathBuf>,
}

fn default_tsig_algorithm() -> String {
    "hmac-sha256".into()
}

impl std::fmt::Debug for Rfc2136 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rfc2136")
            .field("nameserver", &self.nameserver)
            .field("zone", &self.zone)
            .field("tsig_key", &self.tsig_key)
            .field("tsig_algorithm", &self.tsig_algorithm)
            .field("tsig_secret", &redacted(self.tsig_secret.as_ref()))
            .field("tsig_secret_file", &self.tsig_secret_file)
            .finish()
    }
}

impl ProviderSettings for Rfc2136 {
    const NAME: &'static str = PROVIDER;

    fn read_secrets(&mut self, field: &str, env: &Env) -> Result<(), SettingsError> {
        let file = self.tsig_secret_file.as_deref();
        env.secret(&format!("{field}.tsig_secret"), &mut self.tsig_secret, file, "RFC2136_TSIG_SECRET")?;
        env.fill(&mut self.tsig_key, "RFC2136_TSIG_KEY");
        // `tsig-keygen` prints a whole `key "name" { ... };` block: take
        // the secret from it, and the name and algorithm unless given.
        if let Some(block) = self.tsig_secret.as_deref().and_then(KeyBlock::parse) {
            self.tsig_key.get_or_insert(block.name);
            if let Some(algorithm) = block.algorithm {
                self.tsig_algorithm = algorithm;
            }
            self.tsig_secret = Some(block.secret);
        }
        Ok(())
    }

    fn validate(&self, field: &str) -> Result<(), SettingsError> {
        if !matches!(self.tsig_algorithm.as_str(), "hmac-sha256" | "hmac-sha512") {
            return Err(SettingsError::new(
                format!("{field}.tsig_algorithm"),
                format!("'{}' is not hmac-sha256 or hmac-sha512", self.tsig_algorithm),
            ));
        }
        if self.tsig_key.is_some() != self.tsig_secret.is_some() {
            return Err(SettingsError::new(
                format!("{field}.tsig_secret"),
                "set both tsig_key and tsig_secret, or neither",
            ));
        }
        if let Some(secret) = &self.tsig_secret {
            if base64::engine::general_purpose::STANDARD.decode(secret.trim()).is_err() {
                return Err(SettingsError::new(
                    format!("{field}.tsig_secret"),
                    "is not base64: give the quoted `secret` of tsig-keygen's output, or the whole `key \"name\" { ... };` block",
                ));
            }
        }
        Ok(())
    }

    fn build(&self, ttl: u32) -> Result<Arc<dyn DnsProvider>, DnsError> {
        Ok(Arc::new(Rfc2136Provider::new(self, ttl)?))
    }
}

/// A BIND `key` statement, as `tsig-keygen` prints it:
/// `key "name" { algorithm hmac-sha256; secret "base64"; };`.
#[derive(Debug, PartialEq, Eq)]
struct KeyBlock {
    name: String,
    algorithm: Option<String>,
    secret: String,
}

impl KeyBlock {
    fn parse(text: &str) -> Option<Self> {
        let rest = text.trim().strip_prefix("key")?.trim_start();
        let (name, body) = rest.split_once('{')?;
        let name = name.trim().trim_matches('"').to_owned();
        let (mut algorithm, mut secret) = (None, None);
        for statement in body.split(';') {
            let statement = statement.trim().trim_start_matches('}').trim();
            if let Some(value) = statement.strip_prefix("algorithm") {
                algorithm = Some(value.trim().trim_matches('"').to_ascii_lowercase());
            } else if let Some(value) = statement.strip_prefix("secret") {
                secret = Some(value.trim().trim_matches('"').to_owned());
            }
        }
        (!name.is_empty()).then_some(())?;
        Some(Self { name, algorithm, secret: secret? })
    }
}

// === impl Rfc2136Provider ===

/// Dynamic updates to one primary nameserver.
pub struct Rfc2136Provider {
    nameserver: SocketAddr,
    zone: Option<Name>,
    signer: Option<Arc<TSigner>>,
    key_name: Option<String>,
}

impl std::fmt::Debug for Rfc2136Provider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rfc2136Provider")
            .field("nameserver", &self.nameserver)
            .field("zone", &self.zone)
            .field("tsig_key", &self.key_name)
            .finish_non_exhaustive()
    }
}

fn permanent(message: impl Into<String>) -> DnsError {
    DnsError::provider(PROVIDER, message, false)
}

impl Rfc2136Provider {
    pub fn new(config: &Rfc2136, _ttl: u32) -> Result<Self, DnsError> {
        let zone = match &config.zone {
            Some(zone) => Some(fqdn_name(zone).map_err(|e| permanent(format!("zone '{zone}': {e}")))?),
            None => None,
        };
        let signer = match (&config.tsig_key, &config.tsig_secret) {
            (Some(key), Some(secret)) => {
                let bytes = base64::engine::general_purpose::STANDARD
                    .decode(secret.trim())
                    .map_err(|_| permanent("tsig_secret is not base64"))?;
                let algorithm = match config.tsig_algorithm.as_str() {
                    "hmac-sha512" => TsigAlgorithm::HmacSha512,
                    _ => TsigAlgorithm::HmacSha256,
                };
                let name = fqdn_name(key).map_err(|e| permanent(format!("tsig_key '{key}': {e}")))?;
                Some(Arc::new(TSigner::new(bytes, algorithm, name, FUDGE).map_err(|e| permanent(e.to_string()))?))
            }
            _ => None,
        };
        Ok(Self { nameserver: config.nameserver, zone, signer, key_name: config.tsig_key.clone() })
    }

    async fn client(&self) -> Result<Client, DnsError> {
        let signer = self.signer.clone().map(|s| s as Arc<dyn MessageFinalizer>);
        let stream = UdpClientStream::builder(self.nameserver, TokioRuntimeProvider::default())
            .with_timeout(Some(TIMEOUT))
            .with_signer(signer)
            .build();
        let (client, background) = Client::connect(stream)
            .await
            .map_err(|e| DnsError::provider(PROVIDER, format!("{}: {e}", self.nameserver), true))?;
        tokio::spawn(background);
        Ok(client)
    }

    /// The configured zone, else the one whose SOA the nameserver gives
    /// for the record's name (in the answer or the authority section).
    async fn zone(&self, client: &mut Client, fqdn: &Name) -> Result<Name, DnsError> {
        if let Some(zone) = &self.zone {
            return Ok(zone.clone());
        }
        let response = client.query(fqdn.clone(), DNSClass::IN, RecordType::SOA).await.map_err(|e| {
            DnsError::provider(PROVIDER, format!("SOA lookup for {fqdn} at {}: {e}", self.nameserver), true)
        })?;
        response
            .answers()
            .iter()
            .chain(response.name_servers())
            .find(|r| r.record_type() == RecordType::SOA)
            .map(|r| r.name().clone())
            .ok_or_else(|| {
                permanent(format!("{} is not authoritative for {fqdn} (no SOA); set `zone`", self.nameserver))
            })
    }

    async fn update(&self, record: &TxtRecord, add: bool) -> Result<(), DnsError> {
        let name = fqdn_name(&record.fqdn).map_err(|e| permanent(format!("{}: {e}", record.fqdn)))?;
        let rr = Record::from_rdata(name.clone(), record.ttl, RData::TXT(TXT::new(vec![record.value.clone()])));
        let mut client = self.client().await?;
        let zone = self.zone(&mut client, &name).await?;
        let response = if add {
            client.append(rr, zone.clone(), false).await
        } else {
            client.delete_by_rdata(rr, zone.clone()).await
        };
        let response = response.map_err(|e| DnsError::provider(PROVIDER, format!("update of {zone}: {e}"), true))?;
        match response.response_code() {
            ResponseCode::NoError => Ok(()),
            code @ (ResponseCode::ServFail | ResponseCode::Refused) => Err(DnsError::provider(
                PROVIDER,
                format!("{} answered {code} to the update of {zone}", self.nameserver),
                code == ResponseCode::ServFail,
            )),
            code => Err(permanent(format!(
                "{} answered {code} to the update of {zone} (NOTAUTH: TSIG key or zone; NOTZONE: wrong zone)",
                self.nameserver
            ))),
        }
    }
}

fn fqdn_name(text: &str) -> Result<Name, hickory_proto::ProtoError> {
    let mut name = Name::from_str(text)?;
    name.set_fqdn(true);
    Ok(name)
}

#[async_trait]
impl DnsProvider for Rfc2136Provider {
    async fn present(&self, record: &TxtRecord) -> Result<(), DnsError> {
        self.update(record, true).await?;
        tracing::info!(provider = PROVIDER, fqdn = %record.fqdn, nameserver = %self.nameserver, "TXT record added");
        Ok(())
    }

    async fn cleanup(&self, record: &TxtRecord) -> Result<(), DnsError> {
        self.update(record, false).await?;
        tracing::info!(provider = PROVIDER, fqdn = %record.fqdn, nameserver = %self.nameserver, "TXT record removed");
        Ok(())
    }
}
