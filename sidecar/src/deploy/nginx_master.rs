//! Reloading nginx's master with SIGHUP, and knowing that it took: nginx
//! answers a SIGHUP whose configuration it cannot apply (a listen address
//! in use, a file it cannot read) by logging an error and keeping its old
//! workers, so "signal sent" is not "new certificate served". A reload took
//! when the master has started a worker it did not have before.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, Instant};

use super::nginx::ReloadError;

/// How often the master's workers are looked at while a reload is confirmed.
const LOOK_EVERY: Duration = Duration::from_millis(20);

/// SIGHUP to the master in `pid_file`, then waits (at most `bound`) for a
/// new worker. Without a pid file nginx is not running: it reads the new
/// files when it starts.
pub(super) async fn reload(pid_file: &Path, bound: Duration) -> Result<(), ReloadError> {
    let fail = |message: String| ReloadError::Signal { path: pid_file.display().to_string(), message };
    let text = match std::fs::read_to_string(pid_file) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            tracing::warn!(pid_file = %pid_file.display(), "nginx is not running: it reads the new files when it starts");
            return Ok(());
        }
        Err(e) => return Err(fail(e.to_string())),
    };
    let raw = text.trim().parse::<i32>().ok();
    let pid =
        raw.and_then(rustix::process::Pid::from_raw).ok_or_else(|| fail(format!("{:?} is not a pid", text.trim())))?;
    let master = pid.as_raw_nonzero().get();
    let before = children(master);
    rustix::process::kill_process(pid, rustix::process::Signal::HUP).map_err(|e| fail(e.to_string()))?;
    // No workers to compare (`master_process off`, or no /proc): the signal
    // is all there is to go on.
    if before.is_empty() {
        return Ok(());
    }
    let deadline = Instant::now() + bound;
    while !children(master).iter().any(|pid| !before.contains(pid)) {
        if Instant::now() >= deadline {
            return Err(ReloadError::NotApplied { pid: master, waited_secs: bound.as_secs() });
        }
        tokio::time::sleep(LOOK_EVERY).await;
    }
    // The new workers run; the master lets them start for 100 ms before it
    // tells the old ones to stop, and until then an old worker still takes
    // new connections with the old certificate. An old worker told to stop
    // closes its listeners and says so in its title.
    while before.iter().any(|&pid| still_accepting(pid)) {
        if Instant::now() >= deadline {
            tracing::warn!(pid = master, "nginx reloaded, but an old worker has not begun shutting down");
            break;
        }
        tokio::time::sleep(LOOK_EVERY).await;
    }
    Ok(())
}

/// Whether `pid` (an old worker) still runs and has not begun shutting down.
fn still_accepting(pid: i32) -> bool {
    match std::fs::read(format!("/proc/{pid}/cmdline")) {
        Ok(title) => !title.is_empty() && !String::from_utf8_lossy(&title).contains("shutting down"),
        Err(_) => false,
    }
}

/// The processes whose parent is `parent`, from /proc (empty when /proc
/// cannot be read).
pub(super) fn children(parent: i32) -> BTreeSet<i32> {
    let Ok(entries) = std::fs::read_dir("/proc") else { return BTreeSet::new() };
    entries
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/stat")).ok().and_then(|s| parent_of(&s)) == Some(parent)
        })
        .collect()
}

/// The parent pid in a `/proc/<pid>/stat` line: the second field after the
/// command name, which is in parentheses and may itself hold `)` or spaces.
fn parent_of(stat: &str) -> Option<i32> {
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(1)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_parent_is_read_past_a_command_name_with_parentheses_and_spaces() {
        assert_eq!(parent_of("4242 (nginx: worker (x) y) S 4241 4241 4241 0 -1"), Some(4241));
        assert_eq!(parent_of("garbage"), None);
    }

    /// A shell standing in for nginx's master: `on_hup` is its SIGHUP trap,
    /// and it starts with one "worker".
    fn master(dir: &Path, on_hup: &str) -> (std::process::Child, std::path::PathBuf) {
        let script = format!("trap '{on_hup}' HUP; sleep 30 & w=$!; while :; do wait; done");
        let child = std::process::Command::new("sh").arg("-c").arg(script).spawn().unwrap();
        let pid_file = dir.join(format!("{}.pid", child.id()));
        std::fs::write(&pid_file, format!("{}\n", child.id())).unwrap();
        let pid = i32::try_from(child.id()).unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        while children(pid).is_empty() {
            assert!(Instant::now() < deadline, "the stand-in master started no worker");
            std::thread::sleep(LOOK_EVERY);
        }
        (child, pid_file)
    }

    fn stop(mut child: std::process::Child) {
        let workers = children(i32::try_from(child.id()).unwrap());
        child.kill().unwrap();
        child.wait().unwrap();
        for pid in workers {
            let _ = rustix::process::kill_process(
                rustix::process::Pid::from_raw(pid).unwrap(),
                rustix::process::Signal::KILL,
            );
        }
    }

    #[tokio::test]
    async fn a_reload_counts_once_the_master_has_a_new_worker_and_fails_when_it_keeps_the_old_ones() {
        let dir = tempfile::tempdir().unwrap();
        let (like_nginx, pid_file) = master(dir.path(), "kill $w; sleep 30 & w=$!");
        let result = reload(&pid_file, Duration::from_secs(5)).await;
        stop(like_nginx);
        assert!(result.is_ok(), "{result:?}");

        // nginx that cannot apply the new configuration keeps its workers.
        let (refusing, pid_file) = master(dir.path(), ":");
        let started = Instant::now();
        let result = reload(&pid_file, Duration::from_secs(1)).await;
        stop(refusing);
        assert!(started.elapsed() >= Duration::from_secs(1));
        let message = result.expect_err("a reload that started no worker").to_string();
        assert!(message.contains("did not start new workers") && message.contains("error log"), "{message}");
    }

    #[tokio::test]
    async fn no_pid_file_means_nginx_reads_the_files_when_it_starts() {
        let dir = tempfile::tempdir().unwrap();
        assert!(reload(&dir.path().join("nginx.pid"), Duration::from_secs(1)).await.is_ok());
        std::fs::write(dir.path().join("bad.pid"), "not a pid").unwrap();
        let error = reload(&dir.path().join("bad.pid"), Duration::from_secs(1)).await.unwrap_err();
        assert!(error.to_string().contains("is not a pid"), "{error}");
    }

    #[test]
    fn a_child_process_is_seen() {
        let mut child = std::process::Command::new("sleep").arg("5").spawn().unwrap();
        let id = i32::try_from(child.id()).unwrap();
        let seen = children(i32::try_from(std::process::id()).unwrap());
        child.kill().unwrap();
        child.wait().unwrap();
        assert!(seen.contains(&id), "{seen:?} lacks {id}");
    }
}
