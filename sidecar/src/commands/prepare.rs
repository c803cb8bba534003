//! `proxy-acme prepare`: writes, for every certificate, what `run` would
//! serve right now (the stored certificate, else the default certificate,
//! else a placeholder) into the file targets (`[envoy] sds_directory`,
//! `[nginx] directory`), then exits. An init container runs it so that a
//! proxy that refuses to start without its files (Envoy's file SDS, nginx's
//! `ssl_certificate`) can start before the daemon does. Nothing is reloaded.

use std::sync::Arc;

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
) -> Result<(Bundle, &'static str), String> {
    if let Some(bundle) = stored.filter(|b| cert::inspect(b, None).is_ok()) {
        return Ok((bundle, "stored certificate"));
    }
    if let Some(bundle) = default {
        return Ok((bundle.clone(), "default certificate"));
    }
    cert::placeholder(domains).map(|b| (b, "placeholder")).map_err(|e| e.to_string())
}

pub async fn prepare(config: &Config) -> Result<(), String> {
    let mut sinks: Vec<Arc<dyn Sink>> = Vec::new();
    if let Some(dir) = &config.envoy.sds_directory {
        sinks.push(Arc::new(FileSdsSink::new(dir).map_err(|e| e.to_string())?));
    }
    if let Some(nginx) = &config.nginx {
        let files_only = crate::deploy::settings::Nginx { reload: false, ..nginx.clone() };
        let (sink, _task) = NginxSink::start(&files_only).map_err(|e| e.to_string())?;
        sinks.push(Arc::new(sink));
    }
    if sinks.is_empty() {
        return Err("no file target: set [envoy] sds_directory or [nginx] directory".into());
    }
    let store = crate::store::open(&config.storage).await.map_err(|e| e.to_string())?.store;
    let default = crate::daemon::load_default(config).map_err(|e| e.to_string())?;
    for certificate in &config.certificates {
        let stored = store.load_certificate(&certificate.name).await.map_err(|e| e.to_string())?;
        let revoked = store.revoked(&certificate.name).await.map_err(|e| e.to_string())?.is_some();
        let stored = stored.filter(|_| !revoked);
        let (bundle, what) = choose(stored, default.as_ref(), &certificate.domains)?;
        let bundle = std::sync::Arc::new(bundle);
        for sink in &sinks {
            sink.deploy(&certificate.name, &bundle).await.map_err(|e| format!("{}: {e}", certificate.name))?;
        }
        println!("prepared {}: {what}", certificate.name);
    }
    Ok(())
}
