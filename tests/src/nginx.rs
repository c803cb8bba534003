//! A real nginx (Debian's package) on a config the test writes, in the
//! test's temp dir, killed by pid on drop.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use super::net::wait_for_port;
use super::procs::{require, write, Proc};

/// Where Debian's dynamic modules live.
const MODULES: &str = "/usr/lib/nginx/modules";

pub struct Nginx {
    pub proc: Proc,
    pub conf: PathBuf,
}

/// The shipped nginx/proxy-acme.conf for one site: this stack's ports,
/// `domain` as the server name, certificate files in `live`.
pub fn shipped_site(ports: &super::StackPorts, domain: &str, live: &Path) -> String {
    let shipped = std::fs::read_to_string(super::workspace_root().join("nginx/proxy-acme.conf"))
        .unwrap_or_else(|e| panic!("{e}"));
    super::render(
        &shipped,
        &[
            ("listen 80;", format!("listen 127.0.0.1:{};", ports.http)),
            ("listen 443 ssl;", format!("listen 127.0.0.1:{} ssl;", ports.https)),
            ("server_name example.com www.example.com;", format!("server_name {domain};")),
            ("127.0.0.1:8555", format!("127.0.0.1:{}", ports.sidecar)),
            ("/etc/nginx/proxy-acme/www/live", live.display().to_string()),
            ("127.0.0.1:8081", format!("127.0.0.1:{}", ports.app)),
        ],
    )
}

impl Nginx {
    /// The top of an nginx.conf for a test: foreground, everything under
    /// `dir`, the stream module loaded when it is a dynamic module.
    pub fn preamble(dir: &Path) -> String {
        let stream = Path::new(MODULES).join("ngx_stream_module.so");
        let load = if stream.is_file() { format!("load_module {};\n", stream.display()) } else { String::new() };
        let d = dir.display();
        format!(
            "{load}daemon off;\nmaster_process on;\nworker_processes 1;\nuser root;\npid {d}/nginx.pid;\n\
             error_log {d}/nginx-error.log info;\nevents {{ worker_connections 256; }}\n"
        )
    }

    /// Temp paths for an `http {}` block, all under `dir`.
    pub fn http_paths(dir: &Path) -> String {
        let d = dir.display();
        format!(
            "access_log {d}/nginx-access.log;\nclient_body_temp_path {d}/nginx-body;\nproxy_temp_path {d}/nginx-proxy;\n\
             fastcgi_temp_path {d}/nginx-fastcgi;\nuwsgi_temp_path {d}/nginx-uwsgi;\nscgi_temp_path {d}/nginx-scgi;\n"
        )
    }

    /// `nginx -t` on `config` (the whole file), then nginx itself; ready
    /// when `port` accepts connections.
    pub fn start(dir: &Path, config: &str, port: u16) -> Self {
        let bin = require("nginx", "apt-get install nginx-light libnginx-mod-stream");
        let conf = dir.join("nginx.conf");
        write(&conf, config);
        let check = Command::new(&bin).arg("-t").arg("-p").arg(dir).arg("-c").arg(&conf).output();
        let check = check.unwrap_or_else(|e| panic!("nginx -t: {e}"));
        assert!(
            check.status.success(),
            "nginx -t refused the config:\n{}\n--- nginx.conf\n{config}",
            String::from_utf8_lossy(&check.stderr)
        );
        let mut proc = Proc::spawn("nginx", Command::new(&bin).arg("-p").arg(dir).arg("-c").arg(&conf), dir);
        wait_for_port(port, Duration::from_secs(20), &mut proc);
        Self { proc, conf }
    }
}

impl Drop for Nginx {
    /// SIGTERM first: nginx's master then stops its workers, which a SIGKILL
    /// of the master alone would leave running (and listening).
    fn drop(&mut self) {
        let pid = rustix::process::Pid::from_raw(i32::try_from(self.proc.pid()).unwrap_or(0));
        if let Some(pid) = pid {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
            let deadline = std::time::Instant::now() + Duration::from_secs(5);
            while self.proc.is_running() && std::time::Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
}
