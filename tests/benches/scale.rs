//! Scale: one sidecar with 10,000 stored certificates (`SCALE_BENCH_CERTS`)
//! and one real Envoy that has an SDS secret for each.
//!
//! - The store is filled with the library's own `FileStore::save_certificate`
//!   (local test CA, ECDSA P-256, `c-00001.test`, ..., valid 90 days, so none
//!   is due); the config has one `[[certificates]]` per name, on a Pebble
//!   resolver.
//! - Envoy (`--concurrency 1`, generated JSON bootstrap) has one filter chain
//!   per certificate, matched by `server_names`, each with its SDS secret
//!   from the sidecar over one incremental ADS stream, as the shipped
//!   envoy.yaml (gRPC on the Unix socket, `initial_fetch_timeout: 0s`,
//!   reconnect backoff 50-200 ms). Envoy is started first and waits.
//! - Cold start: from spawning `proxy-acme run` until Envoy is LIVE
//!   (`/ready`, polled every 10 ms), which with `initial_fetch_timeout: 0s`
//!   it is only once every secret is applied; then Envoy's
//!   `sds.<name>.update_success` must be non-zero for every name. The stats
//!   are not polled while Envoy works: a regex over tens of thousands of
//!   stats runs on the main thread that builds the TLS contexts, and polling
//!   it every 50 ms made the same start take twice as long (4.9 s, not 2.5 s).
//! - RSS: VmRSS and VmHWM of the sidecar, 3 s after the cold start.
//! - One change: `proxy-acme renew c-00001 --force` (Pebble, HTTP-01 answered
//!   by the sidecar's own challenge endpoint); the clock runs from the store's
//!   `live` link moving to the new version until a TLS client with that SNI
//!   is served the new serial; Envoy's listener_manager stats before/after
//!   show whether a listener was modified or drained.
//!
//! 100 certificates are the same-run baseline; the cold starts of both sizes
//! are interleaved. `SCALE_BENCH_RUNS` (default 3) repeats each figure.
//! `cargo bench -p proxy-acme-e2e --bench scale` (`make bench-scale`); writes
//! target/bench/scale.md.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use proxy_acme_e2e::scale::{cpu_model, envoy_bootstrap, fill_store, kernel, loaded_at, name, thousands};
use proxy_acme_e2e::*;

const BASELINE: usize = 100;

/// One size: its state, config, bootstrap and CA.
struct Scale {
    n: usize,
    dir: PathBuf,
    ports: StackPorts,
    pebble: Pebble,
    config_path: PathBuf,
    fill: Duration,
    _tmp: tempfile::TempDir,
}

/// A running pair after a cold start.
struct Running {
    envoy: Proc,
    sidecar: Proc,
    /// Spawn to every secret accepted by Envoy.
    all_acked: Duration,
    /// Spawn to Envoy's `/ready` answering 200.
    live: Duration,
    /// Envoy's start-up before the sidecar was spawned (admin up).
    envoy_boot: Duration,
    /// Spawn to the sidecar having every certificate in its SDS snapshot
    /// (the timestamp of its n-th "SDS snapshot updated" log line).
    loaded: Option<Duration>,
}

impl Scale {
    async fn prepare(n: usize) -> Self {
        let tmp = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let dir = tmp.path().to_owned();
        let ports = StackPorts::free();
        // Pebble validates HTTP-01 at the sidecar's own challenge endpoint.
        let pebble = Pebble::start_with(&dir, ports.sidecar, ports.tls_alpn, &PebbleOptions::default());
        let certificates: String =
            (0..n).map(|i| certificate(&name(i), &[&format!("{}.test", name(i))], "pebble")).collect();
        let config = sidecar_config(&dir, &ports, &pebble, "", &certificates);
        let config_path = dir.join("proxy-acme.toml");
        write(&config_path, &config);
        let fill = fill_store(&dir.join("state"), n).await;
        write(&dir.join("envoy.json"), &envoy_bootstrap(n, &ports, &dir.join("sds.sock")));
        if std::env::var_os("SCALE_BENCH_KEEP").is_some() {
            eprintln!("scale: keeping {}", dir.display());
            std::mem::forget(tmp);
            let tmp = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
            return Self { n, dir, ports, pebble, config_path, fill, _tmp: tmp };
        }
        Self { n, dir, ports, pebble, config_path, fill, _tmp: tmp }
    }

    async fn admin(&self, path: &str) -> Result<(u16, String), String> {
        http_get(("127.0.0.1", self.ports.admin), "localhost", path, &[]).await
    }

    async fn stat(&self, name: &str) -> u64 {
        let (_, body) = self.admin(&format!("/stats?filter=^{name}$")).await.unwrap_or_default();
        body.lines()
            .find_map(|l| l.strip_prefix(&format!("{name}: ")).and_then(|v| v.trim().parse().ok()))
            .unwrap_or_else(|| panic!("no stat {name} in {body:?}"))
    }

    /// How many secrets Envoy has accepted at least once.
    async fn accepted(&self) -> usize {
        let path = "/stats?usedonly&filter=^sds%5C..*%5C.update_success$";
        let (_, body) = self.admin(path).await.unwrap_or_default();
        body.lines().filter(|l| l.rsplit(": ").next().is_some_and(|v| v.trim() != "0")).count()
    }

    /// Envoy, then (once its admin answers) the sidecar; waits for every secret.
    async fn cold_start(&self) -> Running {
        let log = self.dir.join("envoy-run");
        std::fs::create_dir_all(&log).unwrap_or_else(|e| panic!("{e}"));
        let booting = Instant::now();
        let mut envoy = Proc::spawn(
            "envoy",
            Command::new(envoy_bin()).arg("-c").arg(self.dir.join("envoy.json")).args([
                "--concurrency",
                "1",
                "--disable-hot-restart",
                "--log-level",
                "warn",
            ]),
            &self.dir,
        );
        loop {
            envoy.assert_running();
            if self.admin("/ready").await.is_ok() {
                break;
            }
            assert!(booting.elapsed() < Duration::from_secs(240), "Envoy admin not up:\n{}", envoy.tail());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let envoy_boot = booting.elapsed();
        let started = Instant::now();
        let spawned_at = time::OffsetDateTime::now_utc();
        let mut sidecar = Proc::spawn(
            "proxy-acme",
            Command::new(proxy_acme_bin())
                .arg("run")
                .arg("--config")
                .arg(&self.config_path)
                .env("PROXY_ACME_LOG", std::env::var("SCALE_BENCH_LOG").unwrap_or_else(|_| "info".into())),
            &self.dir,
        );
        // `/ready` is a constant-time admin handler; the stats query is a
        // regex over every stat (tens of thousands here) on Envoy's main
        // thread, the thread that builds the TLS contexts, so it is asked
        // only once Envoy says it is LIVE, not while it works.
        let live = loop {
            sidecar.assert_running();
            envoy.assert_running();
            if matches!(self.admin("/ready").await, Ok((200, _))) {
                break started.elapsed();
            }
            assert!(started.elapsed() < Duration::from_secs(180), "{}: Envoy not LIVE", self.n);
            tokio::time::sleep(Duration::from_millis(10)).await;
        };
        // LIVE means the listener warmed, and with `initial_fetch_timeout: 0s`
        // it warms only once every secret is applied: the stats confirm it.
        let mut all_acked = live;
        while self.accepted().await < self.n {
            sidecar.assert_running();
            envoy.assert_running();
            assert!(started.elapsed() < Duration::from_secs(180), "{}: not all secrets accepted", self.n);
            tokio::time::sleep(Duration::from_millis(100)).await;
            all_acked = started.elapsed();
        }
        let loaded = loaded_at(&sidecar.log, self.n).map(|at| (at - spawned_at).unsigned_abs());
        Running { envoy, sidecar, all_acked, live, envoy_boot, loaded }
    }

    async fn serial(&self, sni: &str) -> Result<String, String> {
        let der = tls_leaf(tls_config_unverified(), ("127.0.0.1", self.ports.https), sni).await?;
        Ok(serial_of(&der))
    }

    /// Renews `name` at Pebble; returns (store -> served, CLI return -> served, CLI).
    async fn push_one(&self, name: &str) -> (Duration, Duration, Duration) {
        let sni = format!("{name}.test");
        let before = self.serial(&sni).await.unwrap_or_else(|e| panic!("{sni}: {e}"));
        let live_link = self.dir.join("state/certificates").join(name).join("live");
        let old_link = std::fs::read_link(&live_link).unwrap_or_else(|e| panic!("{e}"));
        // The store's swap, seen from a thread spinning on readlink.
        let (link_tx, link_rx) = std::sync::mpsc::channel();
        let watcher = std::thread::spawn({
            let live_link = live_link.clone();
            move || {
                let deadline = Instant::now() + Duration::from_secs(60);
                while Instant::now() < deadline {
                    if std::fs::read_link(&live_link).is_ok_and(|l| l != old_link) {
                        let _ = link_tx.send(Instant::now());
                        return;
                    }
                    std::thread::sleep(Duration::from_micros(200));
                }
            }
        });
        let cli_started = Instant::now();
        let out = tokio::process::Command::new(proxy_acme_bin())
            .args(["renew", name, "--force", "--config"])
            .arg(&self.config_path)
            .output()
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let cli_returned = Instant::now();
        assert!(out.status.success(), "renew {name}: {}", String::from_utf8_lossy(&out.stderr));
        let served = loop {
            if self.serial(&sni).await.is_ok_and(|s| s != before) {
                break Instant::now();
            }
            assert!(cli_returned.elapsed() < Duration::from_secs(30), "{name}: no new serial");
            tokio::time::sleep(Duration::from_millis(2)).await;
        };
        let _ = watcher.join();
        let stored = link_rx.try_recv().unwrap_or_else(|_| panic!("{name}: live link did not move"));
        (served - stored, served.saturating_duration_since(cli_returned), cli_returned - cli_started)
    }
}

fn count_in(path: &Path, needle: &str) -> usize {
    std::fs::read_to_string(path).unwrap_or_default().matches(needle).count()
}

fn median(samples: &[Duration]) -> Duration {
    let mut sorted = samples.to_vec();
    sorted.sort();
    sorted[sorted.len() / 2]
}

fn ms(d: Duration) -> String {
    if d >= Duration::from_secs(10) {
        format!("{:.1} s", d.as_secs_f64())
    } else {
        format!("{:.0} ms", d.as_secs_f64() * 1000.0)
    }
}

/// "median (min-max)".
fn spread(samples: &[Duration]) -> String {
    let (min, max) = (samples.iter().min().copied(), samples.iter().max().copied());
    match (min, max) {
        (Some(min), Some(max)) if samples.len() > 1 => format!("{} ({}–{})", ms(median(samples)), ms(min), ms(max)),
        _ => ms(median(samples)),
    }
}

fn met(ok: bool) -> &'static str {
    if ok {
        "**met**"
    } else {
        "**missed**"
    }
}

fn main() {
    let n: usize = std::env::var("SCALE_BENCH_CERTS").ok().and_then(|v| v.parse().ok()).unwrap_or(10_000);
    let runs: usize = std::env::var("SCALE_BENCH_RUNS").ok().and_then(|v| v.parse().ok()).unwrap_or(3).max(1);
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build();
    let runtime = runtime.unwrap_or_else(|e| panic!("{e}"));
    let section = runtime.block_on(async {
        let small = Scale::prepare(BASELINE.min(n)).await;
        let big = Scale::prepare(n).await;
        eprintln!("scale: stores filled ({} in {:?}, {} in {:?})", small.n, small.fill, big.n, big.fill);
        let (mut small_acked, mut big_acked, mut boots) = (vec![], vec![], vec![]);
        let (mut big_loaded, mut envoy_tail) = (vec![], vec![]);
        let mut small_mem = (0.0, 0.0);
        let mut last = None;
        let mut ari_before = 0;
        for run in 0..runs {
            let s = small.cold_start().await;
            small_acked.push(s.all_acked);
            tokio::time::sleep(Duration::from_secs(3)).await;
            small_mem = memory_mib(s.sidecar.pid());
            drop(s);
            drop(last.take());
            ari_before = count_in(&big.pebble.pebble.log, "renewal-info");
            let b = big.cold_start().await;
            eprintln!(
                "scale: run {}: {} acked in {:?}, {} acked in {:?} (live {:?}, Envoy boot {:?})",
                run + 1,
                small.n,
                small_acked[run],
                big.n,
                b.all_acked,
                b.live,
                b.envoy_boot
            );
            big_acked.push(b.all_acked);
            if let Some(loaded) = b.loaded {
                big_loaded.push(loaded);
                envoy_tail.push(b.all_acked.saturating_sub(loaded));
            }
            boots.push(b.envoy_boot);
            last = Some(b);
        }
        let Some(mut running) = last else { unreachable!() };
        tokio::time::sleep(Duration::from_secs(3)).await;
        let big_mem = memory_mib(running.sidecar.pid());
        let ari_requests = count_in(&big.pebble.pebble.log, "renewal-info") - ari_before;

        let stats = ["listener_manager.listener_modified", "listener_manager.total_filter_chains_draining"];
        let mut before = Vec::new();
        for stat in stats {
            before.push(big.stat(stat).await);
        }
        let (mut store_served, mut cli_served, mut cli) = (vec![], vec![], vec![]);
        for run in 0..runs {
            let (a, b, c) = big.push_one(&name(run)).await;
            eprintln!("scale: push {}: store → served {a:?}, CLI return → served {b:?}, CLI {c:?}", run + 1);
            store_served.push(a);
            cli_served.push(b);
            cli.push(c);
        }
        let mut after = Vec::new();
        for stat in stats {
            after.push(big.stat(stat).await);
        }
        running.sidecar.assert_running();
        running.envoy.assert_running();
        let modified = after[0] - before[0];
        let draining = after[1];

        let ratio = median(&big_acked).as_secs_f64() / median(&small_acked).as_secs_f64().max(1e-9);
        let start_goal = median(&big_acked) < Duration::from_secs(5);
        let rss_goal = big_mem.0 < 100.0 && big_mem.1 < 100.0;
        let push_goal = median(&store_served) < Duration::from_secs(1) && modified == 0 && draining == 0;
        let mut md = String::new();
        md.push_str(&format!("## Scale: {} certificates\n\n", thousands(n)));
        md.push_str(&format!(
            "One sidecar with {n} stored certificates (local test CA, ECDSA P-256, 90 days, none due; written with \
             `FileStore::save_certificate`) and one real Envoy {} (`--concurrency 1`) whose HTTPS listener has one \
             filter chain per certificate (`server_names`), each with its SDS secret from the sidecar over one \
             incremental ADS stream (`DELTA_GRPC`, Unix socket), as in the shipped envoy.yaml. Envoy starts first and waits; cold start runs from spawning `proxy-acme run` until Envoy is LIVE \
             (`/ready`, polled every 10 ms; with `initial_fetch_timeout: 0s` its listener warms only once every \
             secret is applied), confirmed by Envoy's `sds.<name>.update_success` being non-zero for every name \
             (read once, after: the stats regex runs on Envoy's main thread, and polling it while Envoy works \
             doubled the start in an earlier version of this bench). A change is `proxy-acme renew NAME --force` at \
             Pebble, timed from the store's `live` link moving until a TLS client with that SNI gets the new serial. \
             {BASELINE} certificates are the same-run baseline (cold starts interleaved). {runs} runs each: median \
             (min–max).\n\n",
            envoy_version()
        ));
        md.push_str(&format!(
            "- Machine: {} × {}, Linux {}.\n- Command: `make bench-scale` (`cargo bench -p proxy-acme-e2e --bench scale`; \
             `SCALE_BENCH_CERTS={n} SCALE_BENCH_RUNS={runs}`).\n\n",
            std::thread::available_parallelism().map_or(0, |p| p.get()),
            cpu_model(),
            kernel()
        ));
        md.push_str(&format!(
            "| figure | {BASELINE} certificates | {n} certificates | goal | |\n| --- | --- | --- | --- | --- |\n"
        ));
        md.push_str(&format!(
            "| store fill (generate + `save_certificate`) | {} | {} | | |\n",
            ms(small.fill),
            ms(big.fill)
        ));
        md.push_str(&format!("| Envoy boot before the sidecar (admin up) | | {} | | |\n", spread(&boots)));
        md.push_str(&format!(
            "| cold start: spawn → Envoy LIVE, every secret accepted | {} | {} ({ratio:.1}× baseline) | < 5 s | {} |\n",
            spread(&small_acked),
            spread(&big_acked),
            met(start_goal)
        ));
        md.push_str(&format!(
            "| of which the sidecar: spawn → every certificate loaded into its snapshot (its log) | | {} | | |\n",
            spread(&big_loaded)
        ));
        md.push_str(&format!(
            "| of which Envoy alone: last certificate loaded → every secret accepted | | {} | | |\n",
            spread(&envoy_tail)
        ));
        md.push_str(&format!(
            "| sidecar VmRSS / VmHWM, 3 s after start | {:.1} / {:.1} MiB | {:.1} / {:.1} MiB | < 100 MiB | {} |\n",
            small_mem.0,
            small_mem.1,
            big_mem.0,
            big_mem.1,
            met(rss_goal)
        ));
        md.push_str(&format!(
            "| one change: store → served (new serial by SNI) | | {} | < 1 s | {} |\n",
            spread(&store_served),
            met(push_goal)
        ));
        md.push_str(&format!("| one change: CLI return → served | | {} | | |\n", spread(&cli_served)));
        md.push_str(&format!("| one change: `renew --force` CLI (whole ACME order) | | {} | | |\n", spread(&cli)));
        md.push_str(&format!(
            "| Envoy `listener_modified` during the changes / `total_filter_chains_draining` after | | {modified} / \
             {draining} | 0 / 0 | {} |\n",
            met(modified == 0 && draining == 0)
        ));
        md.push_str(&format!(
            "| ARI requests at Pebble since the last start (`renewal-info` in its log) | | {ari_requests} | | |\n"
        ));
        let loaded = if big_loaded.is_empty() { Duration::ZERO } else { median(&big_loaded) };
        let tail = if envoy_tail.is_empty() { Duration::ZERO } else { median(&envoy_tail) };
        md.push_str(&format!(
            "\nWhat limits start-up: {}. The sidecar reads, parses and checks (key against certificate) every \
             stored certificate, about {:.0} µs each here, and streams each to Envoy as it is loaded, {} at most per \
             response; Envoy builds one TLS context a secret on its main thread and acknowledges each response \
             after applying it. The two share the machine's 2 cores. Before ADS, with one SDS stream per secret, \
             this start took 58 s and 1.29 GiB (commit b596818; another machine, stats still polled).\n",
            if loaded >= tail { "the sidecar's own load, then Envoy" } else { "Envoy, then the sidecar's own load" },
            loaded.as_secs_f64() * 1e6 / n as f64,
            proxy_acme::deploy::xds::CHUNK
        ));
        md
    });
    println!("{section}");
    let out = workspace_root().join("target/bench");
    std::fs::create_dir_all(&out).unwrap_or_else(|e| panic!("{e}"));
    write(&out.join("scale.md"), &section);
}
