//! What an operator installs: the shipped systemd unit passes
//! `systemd-analyze verify` without a warning, and the daemon speaks
//! systemd's readiness protocol (`Type=notify`): `READY=1` only once its
//! listeners accept, `RELOADING=1` then `READY=1` around a SIGHUP reload,
//! `STOPPING=1` on SIGTERM.

use std::os::unix::net::UnixDatagram;
use std::process::Command;
use std::time::{Duration, Instant};

use proxy_acme_e2e::*;

#[test]
fn the_shipped_unit_verifies_without_a_warning() {
    let analyze = require("systemd-analyze", "apt-get install systemd");
    let unit = std::fs::read_to_string(workspace_root().join("packaging/proxy-acme.service"))
        .unwrap_or_else(|e| panic!("{e}"));
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    // The binary where this test built it, for the `is executable` checks.
    let path = dir.path().join("proxy-acme.service");
    write(&path, &render(&unit, &[("/usr/bin/proxy-acme", proxy_acme_bin().display().to_string())]));
    let out = Command::new(analyze).arg("verify").arg(&path).output().unwrap_or_else(|e| panic!("{e}"));
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && said.trim().is_empty(), "systemd-analyze verify: {said}");
    for needed in [
        "Type=notify",
        "ExecReload=",
        "ExecStartPre=",
        "ProtectSystem=strict",
        "NoNewPrivileges=yes",
        "CapabilityBoundingSet=\n",
        "SystemCallFilter=@system-service",
        "StateDirectory=",
        "RuntimeDirectory=",
        "PrivateTmp=yes",
    ] {
        assert!(unit.contains(needed), "the unit lacks {needed:?}");
    }
}

/// The next datagram, within `within`.
fn next(socket: &UnixDatagram, within: Duration) -> String {
    socket.set_read_timeout(Some(within)).unwrap_or_else(|e| panic!("{e}"));
    let mut buf = [0u8; 4096];
    let n = socket.recv(&mut buf).unwrap_or_else(|e| panic!("no notification within {within:?}: {e}"));
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

#[test]
fn readiness_reload_and_stop_are_told_to_the_service_manager() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let d = dir.path();
    std::fs::create_dir_all(d.join("state")).unwrap_or_else(|e| panic!("{e}"));
    std::fs::set_permissions(d.join("state"), std::os::unix::fs::PermissionsExt::from_mode(0o700))
        .unwrap_or_else(|e| panic!("{e}"));
    let (http, ops, ca) = (free_port(), free_port(), free_port());
    let config = format!(
        "[storage]\ndirectory = \"{s}\"\n[listen]\nhttp = \"127.0.0.1:{http}\"\nops = \"127.0.0.1:{ops}\"\n\
         [envoy]\nsds_socket = \"{d}/sds.sock\"\n[admin]\nsocket = \"{d}/admin.sock\"\n\
         [resolvers.le]\nca_server = \"https://127.0.0.1:{ca}/dir\"\nhttp_challenge = {{}}\n\
         [[certificates]]\nname = \"www\"\ndomains = [\"www.notify.test\"]\nresolver = \"le\"\n",
        s = d.join("state").display(),
        d = d.display(),
    );
    let path = d.join("proxy-acme.toml");
    write(&path, &config);
    let socket_path = d.join("notify.sock");
    let socket = UnixDatagram::bind(&socket_path).unwrap_or_else(|e| panic!("{e}"));
    let mut sidecar = Proc::spawn(
        "proxy-acme",
        Command::new(proxy_acme_bin()).args(["run", "--config"]).arg(&path).env("NOTIFY_SOCKET", &socket_path),
        d,
    );
    let started = Instant::now();
    let ready = next(&socket, Duration::from_secs(30));
    assert!(ready.starts_with("READY=1") && ready.contains("STATUS=managing 1 certificates"), "{ready}");
    // Ready means ready: the listeners accept now, not a moment later.
    assert!(std::net::TcpStream::connect(("127.0.0.1", http)).is_ok(), "challenge API not accepting at READY=1");
    assert!(std::net::TcpStream::connect(("127.0.0.1", ops)).is_ok(), "ops not accepting at READY=1");
    assert!(d.join("admin.sock").exists() && d.join("sds.sock").exists());
    eprintln!("READY=1 after {:?}", started.elapsed());

    let pid = rustix::process::Pid::from_raw(i32::try_from(sidecar.pid()).unwrap_or_default())
        .unwrap_or_else(|| panic!("pid"));
    rustix::process::kill_process(pid, rustix::process::Signal::HUP).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(next(&socket, Duration::from_secs(10)), "RELOADING=1");
    assert_eq!(next(&socket, Duration::from_secs(10)), "READY=1");
    sidecar.assert_running();

    rustix::process::kill_process(pid, rustix::process::Signal::TERM).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(next(&socket, Duration::from_secs(10)), "STOPPING=1");
}
