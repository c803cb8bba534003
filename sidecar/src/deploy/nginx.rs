//! The nginx target: PEM files per certificate (a [`PemTree`] under
//! `[nginx] directory`), then **one** checked reload for a batch of changes.
//!
//! `deploy` writes the new version and swaps `live` atomically, then tells
//! the reloader. The reloader waits `reload_delay_ms` for more changes,
//! runs the check command (`nginx -t`), and reloads (SIGHUP to the pid in
//! `pid_file`, or `reload_command`). A failed check means no reload: `live`
//! is pointed back at the previous files, the error is logged with nginx's
//! own words, and the same files are tried again after `retry_secs` (or with
//! the next change), so fixing the nginx config is enough to recover.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::mpsc;

use super::settings as config;
use super::{DeployError, Sink};
use crate::cert::Bundle;
use crate::process::{self as command, CommandError};
use crate::store::{PemTree, Swap};

/// Why a batch was not reloaded.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    #[error("nginx refused the configuration, not reloading: {0}")]
    Check(CommandError),
    #[error("reload command: {0}")]
    Command(CommandError),
    #[error("cannot signal nginx (pid file {path}): {message}")]
    Signal { path: String, message: String },
}

/// Writes PEM files for nginx and asks the reloader for a reload.
#[derive(Debug)]
pub struct NginxSink {
    tree: PemTree,
    changes: mpsc::UnboundedSender<Swap>,
}

impl NginxSink {
    /// Creates the directory and starts the reloader task.
    pub fn start(config: &config::Nginx) -> Result<(Self, tokio::task::JoinHandle<()>), DeployError> {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&config.directory)
            .map_err(|source| DeployError::Directory { path: config.directory.display().to_string(), source })?;
        let tree = PemTree::new(config.directory.clone());
        let (tx, rx) = mpsc::unbounded_channel();
        let reloader = Reloader { config: Arc::new(config.clone()), tree: tree.clone() };
        let task = if config.reload {
            tokio::spawn(reloader.run(rx))
        } else {
            tracing::info!(directory = %config.directory.display(), "nginx files only: another process reloads nginx");
            tokio::spawn(async move { drop((reloader, rx)) })
        };
        Ok((Self { tree, changes: tx }, task))
    }
}

#[async_trait]
impl Sink for NginxSink {
    async fn deploy(&self, name: &str, bundle: &Arc<Bundle>) -> Result<(), DeployError> {
        let (tree, owned_name, bundle) = (self.tree.clone(), name.to_owned(), bundle.clone());
        let swap = tokio::task::spawn_blocking(move || {
            if let Ok(info) = crate::cert::inspect(&bundle, None) {
                if let Err(e) = link_names(tree.root(), &owned_name, &info.names) {
                    tracing::warn!(certificate = %owned_name, error = %e, "cannot update the by-name links");
                }
            }
            let unchanged = tree.read_live(&owned_name).is_some_and(|live| {
                live.fullchain_pem == bundle.fullchain_pem && live.key_pem.expose() == bundle.key_pem.expose()
            });
            if unchanged {
                return Ok(None);
            }
            tree.write(&owned_name, &bundle).map(Some)
        })
        .await
        .map_err(|e| DeployError::Directory {
            path: name.to_owned(),
            source: std::io::Error::other(e.to_string()),
        })??;
        match swap {
            Some(swap) => {
                tracing::info!(certificate = name, version = %swap.current, "nginx files written");
                let _ = self.changes.send(swap);
            }
            None => tracing::debug!(certificate = name, "nginx files unchanged"),
        }
        Ok(())
    }
}

/// `<root>/by-name/<domain>` -> `../<name>` for each name of the
/// certificate (wildcards excepted), so one nginx `server` block can serve
/// every certificate by SNI:
/// `ssl_certificate <root>/by-name/$ssl_server_name/live/fullchain.pem;`
/// Each link is replaced with a rename, never removed first.
/// `by-name` must be a real directory: a symlink planted there is refused.
fn link_names(root: &Path, name: &str, names: &[String]) -> Result<(), crate::atomic::FileError> {
    let dir = root.join(BY_NAME);
    crate::atomic::own_dir(&dir, 0o700)?;
    let target = format!("../{name}");
    for domain in names {
        if domain.starts_with("*.") || domain.starts_with('.') || domain.contains('/') {
            continue;
        }
        let link = dir.join(domain);
        if std::fs::read_link(&link).is_ok_and(|t| t.as_os_str() == target.as_str()) {
            continue;
        }
        let tmp = dir.join(format!(".tmp-{domain}"));
        let _ = std::fs::remove_file(&tmp);
        std::os::unix::fs::symlink(&target, &tmp).map_err(crate::atomic::on(&tmp))?;
        std::fs::rename(&tmp, &link).map_err(crate::atomic::on(&link))?;
    }
    Ok(())
}

/// The directory of per-name links under `[nginx] directory`.
pub const BY_NAME: &str = "by-name";

#[derive(Debug)]
struct Reloader {
    config: Arc<config::Nginx>,
    tree: PemTree,
}

impl Reloader {
    async fn run(self, mut changes: mpsc::UnboundedReceiver<Swap>) {
        let delay = Duration::from_millis(self.config.reload_delay_ms);
        let retry = Duration::from_secs(self.config.retry_secs);
        let mut failed: Vec<Swap> = Vec::new();
        loop {
            let mut batch = std::mem::take(&mut failed);
            if batch.is_empty() {
                match changes.recv().await {
                    Some(swap) => batch.push(swap),
                    None => return,
                }
            } else {
                tokio::select! {
                    swap = changes.recv() => match swap {
                        Some(swap) => batch.push(swap),
                        None => return,
                    },
                    () = tokio::time::sleep(retry) => {}
                }
            }
            tokio::time::sleep(delay).await;
            while let Ok(swap) = changes.try_recv() {
                batch.push(swap);
            }
            let batch = coalesce(batch);
            if let Err(e) = self.apply(&batch) {
                tracing::error!(error = %e, "cannot point the nginx files at the new versions");
            }
            let names: Vec<&str> = batch.iter().map(|s| s.name.as_str()).collect();
            let started = std::time::Instant::now();
            let outcome = check_and_reload(&self.config).await;
            let result = match &outcome {
                Ok(()) => "ok",
                Err(ReloadError::Check(_)) => "check_failed",
                Err(_) => "failed",
            };
            crate::serve::metrics::metrics().nginx_reload(result);
            match outcome {
                Ok(()) => tracing::info!(
                    certificates = ?names,
                    elapsed_ms = started.elapsed().as_millis() as u64,
                    "nginx reloaded"
                ),
                Err(e @ ReloadError::Check(_)) => {
                    self.roll_back(&batch);
                    tracing::error!(
                        certificates = ?names,
                        error = %e,
                        retry_in_secs = retry.as_secs(),
                        "nginx check failed: not reloaded, previous files restored"
                    );
                    failed = batch;
                }
                Err(e) => tracing::error!(certificates = ?names, error = %e, "nginx reload failed"),
            }
        }
    }

    /// Points every name of the batch at its newest version (again, after
    /// a roll-back).
    fn apply(&self, batch: &[Swap]) -> Result<(), crate::store::StoreError> {
        for swap in batch {
            if self.tree.live_version(&swap.name)?.as_deref() != Some(swap.current.as_str()) {
                self.tree.point_live(&swap.name, &swap.current)?;
            }
        }
        Ok(())
    }

    fn roll_back(&self, batch: &[Swap]) {
        for swap in batch {
            let Some(previous) = &swap.previous else { continue };
            if let Err(e) = self.tree.point_live(&swap.name, previous) {
                tracing::error!(certificate = %swap.name, error = %e, "cannot restore the previous nginx files");
            }
        }
    }
}

/// One entry per name: the oldest `previous` (what nginx last loaded) and
/// the newest `current`.
fn coalesce(batch: Vec<Swap>) -> Vec<Swap> {
    let mut by_name: BTreeMap<String, Swap> = BTreeMap::new();
    for swap in batch {
        match by_name.get_mut(&swap.name) {
            Some(seen) => seen.current = swap.current,
            None => {
                by_name.insert(swap.name.clone(), swap);
            }
        }
    }
    by_name.into_values().collect()
}

/// The check, then the reload.
pub async fn check_and_reload(config: &config::Nginx) -> Result<(), ReloadError> {
    let timeout = Duration::from_secs(config.command_timeout_secs);
    if !config.check_command.is_empty() {
        command::run(&config.check_command, &[], timeout).await.map_err(ReloadError::Check)?;
    }
    if let Some(reload) = &config.reload_command {
        return command::run(reload, &[], timeout).await.map(|_| ()).map_err(ReloadError::Command);
    }
    signal_master(&config.pid_file)
}

/// SIGHUP to nginx's master: it re-reads its config and the files, starts
/// new workers and lets the old ones finish their requests.
fn signal_master(pid_file: &Path) -> Result<(), ReloadError> {
    let fail = |message: String| ReloadError::Signal { path: pid_file.display().to_string(), message };
    let text = match std::fs::read_to_string(pid_file) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            tracing::warn!(pid_file = %pid_file.display(), "nginx is not running: it reads the new files when it starts");
            return Ok(());
        }
        Err(e) => return Err(fail(e.to_string())),
    };
    let pid = text.trim().parse::<i32>().ok().and_then(rustix::process::Pid::from_raw);
    let pid = pid.ok_or_else(|| fail(format!("{:?} is not a pid", text.trim())))?;
    rustix::process::kill_process(pid, rustix::process::Signal::HUP).map_err(|e| fail(e.to_string()))
}

#[cfg(test)]
#[path = "nginx_tests.rs"]
mod tests;
