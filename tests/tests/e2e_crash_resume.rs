//! Issue 21, end to end with real parts: a certificate the CA issued is
//! never thrown away. The certificate's store directory is a 8 KiB tmpfs:
//! the pending order (one small file) fits, the certificate's version
//! (four files) does not, as on a full disk. The sidecar serves the
//! certificate from memory, is killed with SIGKILL before any write could
//! succeed, the disk grows, and the restarted sidecar downloads the same
//! certificate from Pebble instead of ordering again.
//!
//! Needs root with mount rights (CAP_SYS_ADMIN), as the other suites need
//! Pebble and Envoy: it mounts and unmounts a tmpfs in its own temp dir.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use proxy_acme_e2e::*;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;

const DOMAIN: &str = "resume.proxy-acme.test";

/// A tmpfs mounted at a path, unmounted when dropped.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(at: &Path, options: &str) -> Self {
        std::fs::create_dir_all(at).unwrap_or_else(|e| panic!("{e}"));
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", options, "tmpfs"])
            .arg(at)
            .status()
            .unwrap_or_else(|e| panic!("run mount: {e}"));
        assert!(status.success(), "this suite needs root with mount rights (CAP_SYS_ADMIN) to mount a tmpfs");
        Self(at.to_owned())
    }

    fn grow(&self, size: &str) {
        let status = Command::new("mount")
            .args(["-o", &format!("remount,size={size}")])
            .arg(&self.0)
            .status()
            .unwrap_or_else(|e| panic!("run mount: {e}"));
        assert!(status.success(), "cannot remount {}", self.0.display());
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

fn pebble_count(pebble: &Pebble, what: &str) -> usize {
    std::fs::read_to_string(&pebble.pebble.log).unwrap_or_default().lines().filter(|l| l.contains(what)).count()
}

fn log_has(proc: &Proc, what: &str) -> bool {
    std::fs::read_to_string(&proc.log).unwrap_or_default().contains(what)
}

/// The serial of the certificate in the store's `live/cert.pem`.
fn stored_serial(cert_dir: &Path) -> Result<String, String> {
    let pem = std::fs::read(cert_dir.join("live/cert.pem")).map_err(|e| format!("live/cert.pem: {e}"))?;
    let der = CertificateDer::from_pem_slice(&pem).map_err(|e| format!("live/cert.pem: {e}"))?;
    Ok(serial_of(&der))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_issued_certificate_the_disk_refused_survives_a_kill_and_is_not_ordered_again() {
    let tmp = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let cert_dir = tmp.path().join("state/certificates/resume");
    let ports = StackPorts::free();
    // Before the sidecar: its certificate's directory is nearly full.
    std::fs::create_dir_all(tmp.path().join("state")).unwrap_or_else(|e| panic!("{e}"));
    let disk = Tmpfs::mount(&cert_dir, "size=8k,mode=0700");
    let pebble = Pebble::start_with(tmp.path(), ports.http, ports.https, &PebbleOptions::default());
    let mut stack = Stack::start_with_pebble(
        tmp,
        ports,
        pebble,
        "",
        |_| certificate("resume", &[DOMAIN], "pebble"),
        |c| with_secrets(c, &["resume"]),
    )
    .await;

    // 1. Issued, refused by the disk, served from memory all the same.
    let served = stack.wait_for_new_serial(DOMAIN, None, Duration::from_secs(120)).await;
    assert!(stored_serial(&cert_dir).is_err(), "the certificate fit on the full disk: the test proves nothing");
    assert!(cert_dir.join("PENDING").is_file(), "the order was not recorded");
    let refused = eventually(Duration::from_secs(10), || async {
        if log_has(&stack.sidecar, "the issued certificate cannot be stored") {
            Ok(())
        } else {
            Err("no log line".to_owned())
        }
    })
    .await;
    refused.unwrap_or_else(|e| panic!("the refused write was not reported: {e}\n{}", stack.sidecar.tail()));
    assert_eq!(pebble_count(&stack.pebble, "Added order"), 1);

    // 2. Killed before the write could succeed; the disk grows; restart.
    stack.sidecar.kill();
    disk.grow("1m");
    let config = std::fs::read_to_string(&stack.config_path).unwrap_or_else(|e| panic!("{e}"));
    stack.sidecar = start_sidecar(&stack.dir, &config);

    // 3. The same certificate, downloaded and stored; no new order.
    let stored = eventually(Duration::from_secs(60), || async { stored_serial(&cert_dir) }).await;
    let stored = stored.unwrap_or_else(|e| panic!("never stored after the restart: {e}\n{}", stack.sidecar.tail()));
    assert_eq!(stored, served, "the stored certificate is not the one served before the kill");
    assert!(log_has(&stack.sidecar, "downloaded the certificate of an interrupted order"), "{}", stack.sidecar.tail());
    assert_eq!(pebble_count(&stack.pebble, "Added order"), 1, "ordered again after the restart");
    assert_eq!(pebble_count(&stack.pebble, "Issued certificate serial"), 1);
    // Forgotten just after the certificate is written.
    let forgotten = eventually(Duration::from_secs(10), || async {
        if cert_dir.join("PENDING").exists() {
            Err("PENDING is still there".to_owned())
        } else {
            Ok(())
        }
    })
    .await;
    forgotten.unwrap_or_else(|e| panic!("the pending order outlived its certificate: {e}"));
    let again = stack.served_serial_unverified(DOMAIN).await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(again, served);
    stack.sidecar.kill();
    drop(disk);
}
