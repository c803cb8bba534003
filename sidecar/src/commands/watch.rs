//! `proxy-acme watch`: runs beside nginx when the sidecar can only share a
//! directory with it (another container of the pod). It watches the
//! directory with inotify (notify), waits for changes to settle, checks that
//! every certificate's files parse and that each key matches its
//! certificate, runs the check command (`nginx -t`), then reloads nginx (pid
//! file + SIGHUP, or a command). A half-written or mismatched pair never
//! triggers a reload: it is reported, and the next change is awaited.
//!
//! Certificates are the directories `<dir>/<name>/live/` (what the `[nginx]`
//! target writes) or `<dir>/<name>/` holding `fullchain.pem` and
//! `privkey.pem`.

use super::CommandError;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use notify::{RecursiveMode, Watcher};

use crate::cert::{self, Bundle, SecretPem};
use crate::deploy::nginx::check_and_reload;

/// What `watch` was told on the command line.
#[derive(Debug, Clone)]
pub struct WatchOptions {
    pub dir: PathBuf,
    pub pid_file: PathBuf,
    /// argv of the check; empty disables it.
    pub check: Vec<String>,
    /// argv of the reload; `None` signals the pid in `pid_file`.
    pub reload: Option<Vec<String>>,
    pub debounce: Duration,
}

/// One certificate directory's state: the chain when usable, else why not.
type Scan = BTreeMap<String, Result<String, String>>;

fn read_pair(dir: &Path) -> Option<Result<String, String>> {
    let chain_path = dir.join("fullchain.pem");
    if !chain_path.exists() {
        return None;
    }
    let read = |name: &str| std::fs::read_to_string(dir.join(name)).map_err(|e| format!("{name}: {e}"));
    let pair = read("fullchain.pem").and_then(|chain| Ok((chain, read("privkey.pem")?)));
    Some(pair.and_then(|(fullchain_pem, key)| {
        let bundle = Bundle { fullchain_pem, key_pem: SecretPem::new(key) };
        cert::inspect(&bundle, None).map(|_| bundle.fullchain_pem).map_err(|e| e.to_string())
    }))
}

/// Every certificate under `dir` and whether its files are usable.
pub fn scan(dir: &Path) -> Scan {
    let mut out = Scan::new();
    let Ok(entries) = std::fs::read_dir(dir) else { return out };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') {
            continue;
        }
        let path = entry.path();
        if let Some(state) = read_pair(&path.join("live")).or_else(|| read_pair(&path)) {
            out.insert(name, state);
        }
    }
    out
}

/// What to do after a change settled.
#[derive(Debug, PartialEq, Eq)]
pub enum Decision {
    /// Some files are unusable: no reload, with the reasons.
    Refuse(Vec<String>),
    /// Nothing nginx has not loaded already.
    Unchanged,
    Reload,
}

/// Compares a new scan with what nginx last loaded.
pub fn decide(loaded: &BTreeMap<String, String>, scan: &Scan) -> Decision {
    let bad: Vec<String> =
        scan.iter().filter_map(|(name, state)| state.as_ref().err().map(|why| format!("{name}: {why}"))).collect();
    if !bad.is_empty() {
        return Decision::Refuse(bad);
    }
    let now: BTreeMap<&String, &String> = scan.iter().filter_map(|(n, s)| s.as_ref().ok().map(|c| (n, c))).collect();
    let before: BTreeMap<&String, &String> = loaded.iter().collect();
    if now == before {
        Decision::Unchanged
    } else {
        Decision::Reload
    }
}

fn usable(scan: &Scan) -> BTreeMap<String, String> {
    scan.iter().filter_map(|(n, s)| s.as_ref().ok().map(|c| (n.clone(), c.clone()))).collect()
}

/// Runs until the process is stopped.
pub async fn watch(options: WatchOptions) -> Result<(), CommandError> {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        if event.is_ok_and(|e| changes_files(&e.kind)) {
            let _ = tx.send(());
        }
    })
    .map_err(|source| CommandError::Watch { path: "inotify".into(), source })?;
    watcher
        .watch(&options.dir, RecursiveMode::Recursive)
        .map_err(|source| CommandError::Watch { path: options.dir.display().to_string(), source })?;
    let nginx = crate::deploy::settings::Nginx {
        directory: options.dir.clone(),
        pid_file: options.pid_file.clone(),
        reload: true,
        reload_command: options.reload.clone(),
        check_command: options.check.clone(),
        reload_delay_ms: 0,
        retry_secs: 60,
        command_timeout_secs: 30,
    };
    // What nginx serves now: the files as they are when we start.
    let mut loaded = usable(&scan(&options.dir));
    tracing::info!(dir = %options.dir.display(), certificates = loaded.len(), "watching");
    let retry = Duration::from_secs(nginx.retry_secs);
    // After a failed check or reload: when to try again (changes meanwhile
    // wait for it, as the `[nginx]` target waits `retry_secs`).
    let mut retry_at: Option<tokio::time::Instant> = None;
    loop {
        let changed = match retry_at {
            Some(at) => tokio::select! {
                event = rx.recv() => match event {
                    Some(()) => continue,
                    None => return Ok(()),
                },
                () = tokio::time::sleep_until(at) => false,
            },
            None => match rx.recv().await {
                Some(()) => true,
                None => return Ok(()),
            },
        };
        if changed {
            // Settle: no event for `debounce`.
            while let Ok(Some(())) = tokio::time::timeout(options.debounce, rx.recv()).await {}
        }
        retry_at = None;
        let now = scan(&options.dir);
        match decide(&loaded, &now) {
            Decision::Refuse(reasons) => {
                tracing::warn!(problems = ?reasons, "not reloading nginx: certificate files are unusable")
            }
            Decision::Unchanged => tracing::debug!("no certificate changed"),
            Decision::Reload => match check_and_reload(&nginx).await {
                Ok(()) => {
                    loaded = usable(&now);
                    tracing::info!(certificates = loaded.len(), "nginx reloaded");
                }
                Err(e) => {
                    tracing::error!(error = %e, retry_in_secs = retry.as_secs(), "nginx not reloaded");
                    retry_at = Some(tokio::time::Instant::now() + retry);
                }
            },
        }
    }
}

/// Whether an inotify event may have changed the certificate files: not
/// an open, read or close-after-read (the scan's own reads, which
/// otherwise started the next scan every `debounce`, forever).
fn changes_files(kind: &notify::EventKind) -> bool {
    !matches!(kind, notify::EventKind::Access(_))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, bundle: &Bundle) {
        let live = dir.join(name).join("live");
        std::fs::create_dir_all(&live).unwrap();
        std::fs::write(live.join("fullchain.pem"), &bundle.fullchain_pem).unwrap();
        std::fs::write(live.join("privkey.pem"), bundle.key_pem.expose()).unwrap();
    }

    #[test]
    fn reading_the_files_is_not_a_change() {
        use notify::event::{AccessKind, AccessMode, CreateKind, ModifyKind};
        use notify::EventKind;
        assert!(!changes_files(&EventKind::Access(AccessKind::Open(AccessMode::Any))));
        assert!(!changes_files(&EventKind::Access(AccessKind::Close(AccessMode::Read))));
        assert!(changes_files(&EventKind::Create(CreateKind::Folder)));
        assert!(changes_files(&EventKind::Modify(ModifyKind::Any)));
        assert!(changes_files(&EventKind::Any));
    }

    #[test]
    fn reloads_only_for_usable_changed_files() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) =
            (cert::placeholder(&["a.example".into()]).unwrap(), cert::placeholder(&["b.example".into()]).unwrap());
        write(dir.path(), "web", &a);
        let loaded = usable(&scan(dir.path()));
        assert_eq!(decide(&loaded, &scan(dir.path())), Decision::Unchanged);

        write(dir.path(), "web", &b);
        assert_eq!(decide(&loaded, &scan(dir.path())), Decision::Reload);

        // A key that is not the certificate's, and a truncated key.
        std::fs::write(dir.path().join("web/live/privkey.pem"), a.key_pem.expose()).unwrap();
        let Decision::Refuse(why) = decide(&loaded, &scan(dir.path())) else { panic!("accepted a mismatched pair") };
        assert!(why[0].starts_with("web: "), "{why:?}");
        let key = b.key_pem.expose();
        std::fs::write(dir.path().join("web/live/privkey.pem"), &key[..key.len() / 2]).unwrap();
        assert!(matches!(decide(&loaded, &scan(dir.path())), Decision::Refuse(_)));
    }
}
