//! Crash trials (issue 21): the sidecar with 20 certificates on short-lived
//! Pebble certificates renews continuously and is killed with SIGKILL at a
//! random moment, again and again. After each kill the store is checked as
//! a restarted sidecar would find it; at the end Pebble's log is compared
//! with what reached the store.
//!
//! - corrupt states: a certificate whose `live` files do not load, whose key
//!   does not match, a key not 0600 or a directory not 0700, or a `live`
//!   older than one seen before (a serial going back);
//! - orders (Pebble's `Added order`), issued (`Issued certificate serial`),
//!   stored (issued serials seen in the store after a kill or at the end);
//! - extra orders per crash: orders that yielded no certificate;
//! - lost issued certificates per crash: issued but never stored.
//!
//! `cargo bench -p proxy-acme-e2e --bench crash_trials` (`make chaos`).
//! Environment: `CHAOS_TRIALS` (default 1000), `CHAOS_VALIDITY_SECS` (Pebble's
//! certificate lifetime, default 40: renewed at half-life), `CHAOS_MAX_GAP_MS`
//! (the longest run between two kills, default 3000). Writes
//! `target/bench/crash_trials.md` too.

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, Instant, SystemTime};

use proxy_acme::cert::{self, Bundle, SecretPem};
use proxy_acme_e2e::*;
use rand::Rng;

const NAMES: usize = 20;

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.trim().parse().ok()).unwrap_or(default)
}

/// A serial as Pebble logs it: lower-case hex, no leading zeros.
fn normalize(serial: &str) -> String {
    let s = serial.trim().to_ascii_lowercase().replace(':', "");
    let s = s.trim_start_matches('0');
    if s.is_empty() {
        "0".into()
    } else {
        s.to_owned()
    }
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).map(|m| m.permissions().mode() & 0o777).unwrap_or(0)
}

/// What the checks after the kills found.
#[derive(Default)]
struct Findings {
    /// Trials with at least one corrupt certificate, and what was wrong.
    corrupt_states: usize,
    problems: Vec<String>,
    /// Issued serials seen in the store.
    stored: BTreeSet<String>,
    /// The newest `live` notBefore seen per certificate.
    newest: BTreeMap<String, SystemTime>,
    /// Temps found after a kill (removed at the next start).
    temps: usize,
}

impl Findings {
    /// Checks the store the way a restarted sidecar finds it.
    fn check(&mut self, certificates: &Path, trial: usize) {
        let mut problems = Vec::new();
        for i in 0..NAMES {
            let name = format!("c{i:02}");
            let dir = certificates.join(&name);
            if !dir.exists() {
                continue;
            }
            if mode(&dir) != 0o700 {
                problems.push(format!("{name}: directory mode {:o}", mode(&dir)));
            }
            let Ok(entries) = std::fs::read_dir(&dir) else { continue };
            for entry in entries.flatten() {
                let file = entry.file_name().to_string_lossy().into_owned();
                let path = entry.path();
                if file.contains(".tmp-") {
                    self.temps += 1;
                } else if file.starts_with('v') && path.is_dir() {
                    if mode(&path) != 0o700 {
                        problems.push(format!("{name}/{file}: mode {:o}", mode(&path)));
                    }
                    if let Ok(info) = load(&path) {
                        self.stored.insert(normalize(&info.serial_hex));
                    }
                } else if file == "PENDING" && mode(&path) != 0o600 {
                    problems.push(format!("{name}/PENDING: mode {:o}", mode(&path)));
                }
            }
            let live = dir.join("live");
            if std::fs::symlink_metadata(&live).is_err() {
                continue; // never stored yet
            }
            match load(&live) {
                Ok(info) => {
                    self.stored.insert(normalize(&info.serial_hex));
                    let newest = self.newest.entry(name.clone()).or_insert(info.not_before);
                    if info.not_before < *newest {
                        problems.push(format!("{name}: live went back to serial {}", info.serial_hex));
                    } else {
                        *newest = info.not_before;
                    }
                }
                Err(e) => problems.push(format!("{name}: {e}")),
            }
            if mode(&live.join("privkey.pem")) != 0o600 {
                problems.push(format!("{name}: privkey.pem mode {:o}", mode(&live.join("privkey.pem"))));
            }
        }
        if !problems.is_empty() {
            self.corrupt_states += 1;
            self.problems.extend(problems.into_iter().map(|p| format!("trial {trial}: {p}")));
        }
    }
}

/// A version directory's certificate, checked against its key.
fn load(dir: &Path) -> Result<cert::CertInfo, String> {
    let read = |f: &str| std::fs::read_to_string(dir.join(f)).map_err(|e| format!("{f}: {e}"));
    let bundle = Bundle { fullchain_pem: read("fullchain.pem")?, key_pem: SecretPem::new(read("privkey.pem")?) };
    cert::inspect(&bundle, None).map_err(|e| e.to_string())
}

/// Serials in Pebble's log, and its order count.
fn pebble_figures(pebble: &Pebble) -> (usize, BTreeSet<String>) {
    let log = std::fs::read_to_string(&pebble.pebble.log).unwrap_or_default();
    let orders = log.lines().filter(|l| l.contains("Added order")).count();
    let issued = log
        .lines()
        .filter_map(|l| l.split("Issued certificate serial ").nth(1))
        .filter_map(|rest| rest.split_whitespace().next())
        .map(normalize)
        .collect();
    (orders, issued)
}

fn pending_orders(certificates: &Path) -> usize {
    (0..NAMES).filter(|i| certificates.join(format!("c{i:02}/PENDING")).exists()).count()
}

async fn run() {
    let trials = usize::try_from(env_number("CHAOS_TRIALS", 1000)).unwrap_or(1000);
    let validity = env_number("CHAOS_VALIDITY_SECS", 40);
    let max_gap = env_number("CHAOS_MAX_GAP_MS", 3000).max(100);
    let options = PebbleOptions { validity_secs: Some(validity), ..PebbleOptions::default() };
    let certificates: String = (0..NAMES)
        .map(|i| certificate(&format!("c{i:02}"), &[&format!("c{i:02}.chaos.proxy-acme.test")], "pebble"))
        .collect();
    let started = Instant::now();
    let mut stack = Stack::start(&options, "rate_limit = { orders = 1000000 }", |_| certificates.clone(), |c| c).await;
    let config = std::fs::read_to_string(&stack.config_path).unwrap_or_else(|e| panic!("{e}"));
    let store = stack.dir.join("state/certificates");
    let mut findings = Findings::default();
    let mut rng = rand::rng();
    for trial in 1..=trials {
        tokio::time::sleep(Duration::from_millis(rng.random_range(100..=max_gap))).await;
        stack.sidecar.kill();
        findings.check(&store, trial);
        keep_log(&stack.sidecar.log, trial);
        stack.sidecar = start_sidecar(&stack.dir, &config);
        if trial % 50 == 0 {
            let (orders, issued) = pebble_figures(&stack.pebble);
            eprintln!("{trial} trials: {orders} orders, {} issued, {} stored", issued.len(), findings.stored.len());
        }
    }
    // The last restart resumes what the last kill interrupted; then once
    // more to the store, with no kill pending.
    let _ = eventually(Duration::from_secs(30), || async {
        match pending_orders(&store) {
            0 => Ok(()),
            n => Err(format!("{n} pending")),
        }
    })
    .await;
    stack.sidecar.kill();
    findings.check(&store, trials + 1);
    let (orders, issued) = pebble_figures(&stack.pebble);
    let stored = issued.intersection(&findings.stored).count();
    let lost = issued.len() - stored;
    let per_crash = |n: usize| n as f64 / trials.max(1) as f64;
    let extra = orders.saturating_sub(issued.len());
    let report = format!(
        "## Crash trials\n\n\
         `CHAOS_TRIALS={trials} CHAOS_VALIDITY_SECS={validity} make chaos`: {NAMES} certificates, \
         Pebble lifetime {validity} s, SIGKILL every 0.1-{:.1} s, {:.0} s in all.\n\n\
         | trials | corrupt states | orders | issued | stored | extra orders per crash | lost issued per crash | temps left by kills |\n\
         | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n\
         | {trials} | {} | {orders} | {} | {stored} | {:.3} | {:.3} | {} |\n",
        max_gap as f64 / 1000.0,
        started.elapsed().as_secs_f64(),
        findings.corrupt_states,
        issued.len(),
        per_crash(extra),
        per_crash(lost),
        findings.temps,
    );
    println!("{report}");
    for problem in findings.problems.iter().take(20) {
        println!("- {problem}");
    }
    let out = workspace_root().join("target/bench");
    let _ = std::fs::create_dir_all(&out);
    if std::env::var_os("CHAOS_KEEP_LOGS").is_some() {
        let _ = std::fs::copy(&stack.pebble.pebble.log, out.join("chaos-pebble.log"));
    }
    let _ = std::fs::write(out.join("crash_trials.md"), &report);
    assert_eq!(findings.corrupt_states, 0, "corrupt states: {:?}", findings.problems);
}

/// With `CHAOS_KEEP_LOGS` set, every run's sidecar log is appended to
/// `target/bench/chaos-sidecar.log` (each restart truncates its own), to
/// tell afterwards what each extra order was.
fn keep_log(log: &Path, trial: usize) {
    use std::io::Write;
    if std::env::var_os("CHAOS_KEEP_LOGS").is_none() {
        return;
    }
    let out = workspace_root().join("target/bench");
    let _ = std::fs::create_dir_all(&out);
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let file = std::fs::OpenOptions::new().create(true).append(true).open(out.join("chaos-sidecar.log"));
    if let Ok(mut file) = file {
        let _ = writeln!(file, "=== killed at trial {trial}\n{text}");
    }
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("{e}"));
    runtime.block_on(run());
}
