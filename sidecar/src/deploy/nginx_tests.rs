use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;

use super::*;
use crate::cert::placeholder;

fn bundle(domain: &str) -> Bundle {
    placeholder(&[domain.to_owned()]).unwrap()
}

/// A target whose check passes while `<dir>/ok` exists and whose reload
/// appends a line to `<dir>/reloads`.
fn config(dir: &Path) -> config::Nginx {
    let sh = |script: String| vec!["sh".to_owned(), "-c".to_owned(), script];
    config::Nginx {
        directory: dir.join("certs"),
        reload: true,
        pid_file: dir.join("nginx.pid"),
        reload_command: Some(sh(format!("echo reload >> {}/reloads", dir.display()))),
        check_command: sh(format!(
            "test -f {0}/ok || {{ echo 'nginx: [emerg] broken config' >&2; exit 1; }}",
            dir.display()
        )),
        reload_delay_ms: 200,
        retry_secs: 1,
        command_timeout_secs: 5,
    }
}

fn reloads(dir: &Path) -> usize {
    std::fs::read_to_string(dir.join("reloads")).map(|t| t.lines().count()).unwrap_or(0)
}

fn live_fullchain(dir: &Path, name: &str) -> String {
    std::fs::read_to_string(dir.join("certs").join(name).join("live/fullchain.pem")).unwrap_or_default()
}

async fn settle() {
    tokio::time::sleep(Duration::from_millis(700)).await;
}

#[test]
fn coalescing_keeps_what_nginx_last_loaded_and_the_newest() {
    let swap = |name: &str, previous: Option<&str>, current: &str| Swap {
        name: name.into(),
        previous: previous.map(Into::into),
        current: current.into(),
    };
    let batch = vec![swap("a", Some("v1"), "v2"), swap("b", None, "v1"), swap("a", Some("v2"), "v3")];
    assert_eq!(coalesce(batch), vec![swap("a", Some("v1"), "v3"), swap("b", None, "v1")]);
}

#[tokio::test]
async fn a_burst_of_changes_is_one_reload_and_unchanged_files_none() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("ok"), "").unwrap();
    let (sink, _task) = NginxSink::start(&config(dir.path())).unwrap();
    let (a, b) = (bundle("a.example"), bundle("b.example"));
    sink.deploy("a", &Arc::new(a.clone())).await.unwrap();
    sink.deploy("b", &Arc::new(b.clone())).await.unwrap();
    settle().await;
    assert_eq!(reloads(dir.path()), 1);
    assert_eq!(live_fullchain(dir.path(), "a"), a.fullchain_pem);
    let key = dir.path().join("certs/b/live/privkey.pem");
    assert_eq!(std::fs::metadata(&key).unwrap().permissions().mode() & 0o777, 0o600);

    sink.deploy("a", &Arc::new(a.clone())).await.unwrap();
    settle().await;
    assert_eq!(reloads(dir.path()), 1, "the same certificate again is no reload");
}

#[tokio::test]
async fn a_failed_check_restores_the_previous_files_and_retries() {
    let dir = tempfile::tempdir().unwrap();
    let ok = dir.path().join("ok");
    std::fs::write(&ok, "").unwrap();
    let (sink, _task) = NginxSink::start(&config(dir.path())).unwrap();
    let (first, second) = (bundle("a.example"), bundle("a.example"));
    sink.deploy("web", &Arc::new(first.clone())).await.unwrap();
    settle().await;
    assert_eq!(reloads(dir.path()), 1);

    std::fs::remove_file(&ok).unwrap();
    sink.deploy("web", &Arc::new(second.clone())).await.unwrap();
    settle().await;
    assert_eq!(reloads(dir.path()), 1, "no reload after a failed check");
    assert_eq!(live_fullchain(dir.path(), "web"), first.fullchain_pem, "previous files restored");

    // The operator fixes nginx: the next retry reloads with the new files.
    std::fs::write(&ok, "").unwrap();
    tokio::time::sleep(Duration::from_millis(1800)).await;
    assert_eq!(reloads(dir.path()), 2);
    assert_eq!(live_fullchain(dir.path(), "web"), second.fullchain_pem);
}

#[tokio::test]
async fn the_reload_is_a_sighup_to_the_pid_in_the_pid_file() {
    use std::os::unix::process::ExitStatusExt;
    let dir = tempfile::tempdir().unwrap();
    let mut child = std::process::Command::new("sleep").arg("30").spawn().unwrap();
    let pid_file: PathBuf = dir.path().join("nginx.pid");
    std::fs::write(&pid_file, format!("{}\n", child.id())).unwrap();
    let config = config::Nginx { reload_command: None, check_command: Vec::new(), ..config(dir.path()) };
    let (sink, _task) = NginxSink::start(&config).unwrap();
    sink.deploy("web", &Arc::new(bundle("a.example"))).await.unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(std::time::Instant::now() < deadline, "no signal reached the pid");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(status.signal(), Some(1), "SIGHUP");

    // No pid file: nginx is not running, which is no error.
    std::fs::remove_file(&pid_file).unwrap();
    assert!(check_and_reload(&config).await.is_ok());
    std::fs::write(&pid_file, "not-a-pid").unwrap();
    assert!(matches!(check_and_reload(&config).await, Err(ReloadError::Signal { .. })));
}

#[tokio::test]
async fn a_symlink_planted_at_a_certificate_directory_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let outside = tempfile::tempdir().unwrap();
    let mut config = config(dir.path());
    config.reload = false;
    let (sink, _task) = NginxSink::start(&config).unwrap();
    let link = dir.path().join("certs/web");
    std::os::unix::fs::symlink(outside.path(), &link).unwrap();
    let err = sink.deploy("web", &Arc::new(bundle("a.example"))).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "writing PEM files: {}: is a symlink proxy-acme did not create; refusing to write through it",
            link.display()
        )
    );
    // by-name as a planted link: no per-name link is made through it
    std::fs::remove_file(&link).unwrap();
    let by_name = dir.path().join("certs").join(BY_NAME);
    std::fs::remove_dir_all(&by_name).unwrap();
    std::os::unix::fs::symlink(outside.path(), &by_name).unwrap();
    sink.deploy("web", &Arc::new(bundle("a.example"))).await.unwrap();
    assert!(live_fullchain(dir.path(), "web").contains("BEGIN CERTIFICATE"));
    assert_eq!(std::fs::read_dir(outside.path()).unwrap().count(), 0, "written outside");
}

#[tokio::test]
async fn settled_answers_once_nginx_reloaded_and_says_why_when_the_check_failed() {
    let dir = tempfile::tempdir().unwrap();
    let (sink, _task) = NginxSink::start(&config(dir.path())).unwrap();
    let bound = Duration::from_secs(5);

    // The check fails: the answer has nginx's words and what happens next.
    sink.deploy("a", &Arc::new(bundle("a.example"))).await.unwrap();
    let refused = tokio::time::timeout(bound, sink.settled("a")).await.expect("settled did not answer");
    let reason = refused.expect_err("a refused configuration counted as served").to_string();
    assert!(reason.contains("broken config") && reason.contains("tried again every 1 s"), "{reason}");
    assert_eq!(reloads(dir.path()), 0);

    // Fixed: the next version is answered only after its reload.
    std::fs::write(dir.path().join("ok"), "").unwrap();
    sink.deploy("a", &Arc::new(bundle("a.example"))).await.unwrap();
    let served = tokio::time::timeout(bound, sink.settled("a")).await.expect("settled did not answer");
    assert!(served.is_ok(), "{served:?}");
    assert!(reloads(dir.path()) >= 1, "answered before nginx was reloaded");

    // Nothing new written: nothing to wait for.
    let reloaded = reloads(dir.path());
    sink.deploy("a", &Arc::new(live_bundle(dir.path(), "a"))).await.unwrap();
    assert!(tokio::time::timeout(Duration::from_millis(100), sink.settled("a")).await.is_ok_and(|r| r.is_ok()));
    assert!(sink.settled("never-deployed").await.is_ok());
    settle().await;
    assert_eq!(reloads(dir.path()), reloaded);
}

/// What `live` holds for `name` now, as a bundle.
fn live_bundle(dir: &Path, name: &str) -> Bundle {
    let live = dir.join("certs").join(name).join("live");
    Bundle {
        fullchain_pem: std::fs::read_to_string(live.join("fullchain.pem")).unwrap(),
        key_pem: crate::cert::SecretPem::new(std::fs::read_to_string(live.join("privkey.pem")).unwrap()),
    }
}
