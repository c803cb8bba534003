//! `proxy-acme prepare`: writes, for every certificate, what `run` would
//! serve right now (the stored certificate, else the default certificate,
//! else a placeholder) into the file targets (`[envoy] sds_directory`,
//! `[nginx] directory`), then exits. An init container runs it so that a
//! proxy that refuses to start without its files (Envoy's file SDS, nginx's
//! `ssl_certificate`) can start before the daemon does. Nothing is reloaded.

use std::sync::Arc;

use super::CommandError;
use crate::cert::{self, Bundle};
use crate::config::Config;
use crate::deploy::file_sds::FileSdsSink;
use crate::deploy::nginx::NginxSink;
use crate::deploy::Sink;

/// What was written for one certificate.
fn choose(
    stored: Option<Bundle>,
    default: Option<&Bundle>,
    domains: &[String],
) -> Result<(Bundle, &'static str), CommandError> {
    if let Some(bundle) = stored.filter(|b| cert::inspect(b, None).is_ok()) {
        return Ok((bundle, "stored certificate"));
    }
    if let Some(bundle) = default {
        return Ok((bundle.clone(), "default certificate"));
    }
    Ok(cert::placeholder(domains).map(|b| (b, "placeholder"))?)
}

pub async fn prepare(config: &Config) -> Result<(), CommandError> {
    let mut sinks: Vec<Arc<dyn Sink>> = Vec::new();
    if let Some(dir) = &config.envoy.sds_directory {
        sinks.push(Arc::new(FileSdsSink::new(dir)?));
    }
    if let Some(nginx) = &config.nginx {
        let files_only = crate::deploy::settings::Nginx { reload: false, ..nginx.clone() };
        let (sink, _task) = NginxSink::start(&files_only)?;
        sinks.push(Arc::new(sink));
    }
    if sinks.is_empty() {
        return Err(CommandError::NoFileTarget);
    }
    let store = crate::store::open(&config.storage).await?.store;
    let default = crate::daemon::load_default(config)?;
    for certificate in &config.managed() {
        let stored = store.load_certificate(&certificate.name).await?;
        let revoked = store.revoked(&certificate.name).await?.is_some();
        let stored = stored.filter(|_| !revoked);
        let (bundle, what) = choose(stored, default.as_ref(), &certificate.domains)?;
        let bundle = Arc::new(bundle);
        for sink in &sinks {
            let certificate = certificate.name.clone();
            sink.deploy(&certificate, &bundle).await.map_err(|source| CommandError::Prepare { certificate, source })?;
        }
        println!("prepared {}: {what}", certificate.name);
    }
    Ok(())
}
