//! A real forward proxy (Debian's tinyproxy) on a free loopback port, for
//! the egress tests: HTTP `CONNECT`, optionally with Basic authentication,
//! every connection logged (`LogLevel Connect`).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use super::net::{free_port, wait_for_port};
use super::procs::{require, Proc};

pub struct Tinyproxy {
    pub port: u16,
    pub proc: Proc,
    log: PathBuf,
}

impl Tinyproxy {
    /// Started in the foreground with its own config in `dir`; `auth` is
    /// the user and password it demands.
    pub fn start(dir: &Path, auth: Option<(&str, &str)>) -> Self {
        let bin = require("tinyproxy", "apt-get install tinyproxy");
        let port = free_port();
        let log = dir.join("tinyproxy-connections.log");
        let mut conf = format!(
            "Port {port}\nListen 127.0.0.1\nTimeout 60\nMaxClients 64\nAllow 127.0.0.1\nLogLevel Connect\n\
             LogFile \"{}\"\nPidFile \"{}\"\n",
            log.display(),
            dir.join("tinyproxy.pid").display()
        );
        if let Some((user, password)) = auth {
            conf.push_str(&format!("BasicAuth {user} {password}\n"));
        }
        let path = dir.join("tinyproxy.conf");
        std::fs::write(&path, conf).unwrap_or_else(|e| panic!("{e}"));
        let mut proc = Proc::spawn("tinyproxy", Command::new(bin).arg("-d").arg("-c").arg(&path), dir);
        wait_for_port(port, Duration::from_secs(10), &mut proc);
        Self { port, proc, log }
    }

    /// What it logged: one `CONNECT` line per tunnel, refusals too.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}
