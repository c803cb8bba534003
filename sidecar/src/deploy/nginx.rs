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
use tokio::sync::{mpsc, watch};

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
    #[error(
        "nginx (pid {pid}) did not start new workers within {waited_secs} s of the reload signal: it kept its old \
         configuration and certificates; its error log says why (a listen address already in use?)"
    )]
    NotApplied { pid: i32, waited_secs: u64 },
}

/// Writes PEM files for nginx and asks the reloader for a reload.
#[derive(Debug)]
pub struct NginxSink {
    tree: PemTree,
    changes: mpsc::UnboundedSender<Swap>,
    outcomes: Arc<Outcomes>,
    /// Whether this sidecar reloads nginx (else another process does).
    reloads: bool,
}

/// The version written for a name, and the reload's result once known.
type Written = (String, Option<Result<(), NotLoaded>>);

/// Why nginx does not serve the newest files of a certificate (what
/// `Sink::settled` answers). Both are retried: a refused check with the
/// same files every `retry_secs`, a failed reload with the next change.
#[derive(Debug, Clone, thiserror::Error)]
pub enum NotLoaded {
    #[error("{reason}; nginx keeps serving the previous files, and the reload is tried again every {retry_secs} s")]
    CheckFailed { reason: String, retry_secs: u64 },
    #[error("{0}")]
    ReloadFailed(String),
    #[error("the nginx reloader stopped")]
    ReloaderStopped,
}

/// What became of each certificate's newest files: the version written and,
/// once the reloader has tried, whether nginx serves it (or why not).
#[derive(Debug)]
struct Outcomes {
    by_name: std::sync::Mutex<BTreeMap<String, Written>>,
    /// Bumped whenever an outcome is recorded.
    changed: watch::Sender<u64>,
}

impl Outcomes {
    fn new() -> Self {
        Self { by_name: std::sync::Mutex::default(), changed: watch::channel(0).0 }
    }

    fn written(&self, name: &str, version: &str) {
        self.lock().insert(name.to_owned(), (version.to_owned(), None));
    }

    /// Records the reload's result for a batch (unless a newer version of a
    /// name was written since).
    fn reloaded(&self, batch: &[Swap], result: &Result<(), NotLoaded>) {
        let mut by_name = self.lock();
        for swap in batch {
            if let Some((version, outcome)) = by_name.get_mut(&swap.name) {
                if *version == swap.current {
                    *outcome = Some(result.clone());
                }
            }
        }
        drop(by_name);
        self.changed.send_modify(|n| *n += 1);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Written>> {
        self.by_name.lock().unwrap_or_else(|e| e.into_inner())
    }
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
        let outcomes = Arc::new(Outcomes::new());
        let reloader =
            Reloader { config: Arc::new(config.clone()), tree: tree.clone(), outcomes: Arc::clone(&outcomes) };
        let task = if config.reload {
            tokio::spawn(reloader.run(rx))
        } else {
            tracing::info!(directory = %config.directory.display(), "nginx files only: another process reloads nginx");
            tokio::spawn(async move { drop((reloader, rx)) })
        };
        Ok((Self { tree, changes: tx, outcomes, reloads: config.reload }, task))
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
                if self.reloads {
                    self.outcomes.written(name, &swap.current);
                }
                let _ = self.changes.send(swap);
            }
            None => tracing::debug!(certificate = name, "nginx files unchanged"),
        }
        Ok(())
    }

    /// Waits for the reload that loads the newest files of `name`: `Ok`
    /// once nginx serves them, the reason when the check or the reload
    /// failed (the previous files stay served and the reload is retried).
    /// With `reload = false` another process reloads nginx: `Ok` at once.
    async fn settled(&self, name: &str) -> Result<(), DeployError> {
        let mut changed = self.outcomes.changed.subscribe();
        loop {
            match self.outcomes.lock().get(name) {
                None | Some((_, Some(Ok(())))) => return Ok(()),
                Some((_, Some(Err(reason)))) => return Err(DeployError::NotServed(reason.clone())),
                Some((_, None)) => {}
            }
            if changed.changed().await.is_err() {
                return Err(DeployError::NotServed(NotLoaded::ReloaderStopped));
            }
        }
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
    outcomes: Arc<Outcomes>,
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
            let told = match &outcome {
                Ok(()) => Ok(()),
                Err(e @ ReloadError::Check(_)) => {
                    Err(NotLoaded::CheckFailed { reason: e.to_string(), retry_secs: retry.as_secs() })
                }
                Err(e) => Err(NotLoaded::ReloadFailed(e.to_string())),
            };
            self.outcomes.reloaded(&batch, &told);
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
    super::nginx_master::reload(&config.pid_file, timeout).await
}

#[cfg(test)]
#[path = "nginx_tests.rs"]
mod tests;
