//! Start-up at 50,000 certificates (`SCALE_ALONE_CERTS`), the sidecar
//! alone: no Envoy is connected, so what is measured is the sidecar's own
//! load (read, parse and check every stored certificate, build the SDS
//! snapshot) and the memory it then holds.
//!
//! - The store is filled as in the `scale` bench (`FileStore::save_certificate`,
//!   ECDSA P-256, 90 days, none due), the config has one `[[certificates]]`
//!   per name on a Pebble resolver.
//! - Load time: from spawning `proxy-acme run` to the timestamp of the
//!   sidecar's `n`-th "SDS snapshot updated" log line (every certificate
//!   loaded and ready to push).
//! - RSS: VmRSS and VmHWM 3 s after that, and the CPU time (utime + stime)
//!   spent until then.
//!
//! `cargo bench -p proxy-acme-e2e --bench scale_alone` (`make bench-scale`
//! runs it after `scale`); `SCALE_ALONE_RUNS` (default 1) cold starts on
//! the same store; writes target/bench/scale_alone.md.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use proxy_acme_e2e::scale::{cpu_model, fill_store, kernel, loaded_at, name, thousands};
use proxy_acme_e2e::*;

struct Run {
    loaded: Duration,
    rss: (f64, f64),
    cpu: f64,
}

async fn cold_start(dir: &Path, config: &Path, n: usize) -> Run {
    let ticks = clock_ticks();
    let spawned_at = time::OffsetDateTime::now_utc();
    let started = Instant::now();
    let mut sidecar = Proc::spawn(
        "proxy-acme",
        Command::new(proxy_acme_bin())
            .arg("run")
            .arg("--config")
            .arg(config)
            .env("PROXY_ACME_LOG", std::env::var("SCALE_BENCH_LOG").unwrap_or_else(|_| "info".into())),
        dir,
    );
    let loaded = loop {
        sidecar.assert_running();
        if let Some(at) = loaded_at(&sidecar.log, n) {
            break (at - spawned_at).unsigned_abs();
        }
        assert!(started.elapsed() < Duration::from_secs(600), "{n} certificates not loaded in 10 min");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    tokio::time::sleep(Duration::from_secs(3)).await;
    sidecar.assert_running();
    let run = Run { loaded, rss: memory_mib(sidecar.pid()), cpu: cpu_secs(sidecar.pid(), ticks) };
    sidecar.kill();
    run
}

fn main() {
    let n: usize = std::env::var("SCALE_ALONE_CERTS").ok().and_then(|v| v.parse().ok()).unwrap_or(50_000);
    let runs: usize = std::env::var("SCALE_ALONE_RUNS").ok().and_then(|v| v.parse().ok()).unwrap_or(1).max(1);
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build();
    let runtime = runtime.unwrap_or_else(|e| panic!("{e}"));
    let section = runtime.block_on(async {
        let tmp = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let dir = tmp.path().to_owned();
        let ports = StackPorts::free();
        let pebble = Pebble::start_with(&dir, ports.sidecar, ports.tls_alpn, &PebbleOptions::default());
        let certificates: String =
            (0..n).map(|i| certificate(&name(i), &[&format!("{}.test", name(i))], "pebble")).collect();
        let config = sidecar_config(&dir, &ports, &pebble, "", &certificates);
        let config_path = dir.join("proxy-acme.toml");
        write(&config_path, &config);
        let fill = fill_store(&dir.join("state"), n).await;
        eprintln!("scale_alone: {n} certificates stored in {fill:?}");
        let mut all = Vec::new();
        for run in 0..runs {
            let r = cold_start(&dir, &config_path, n).await;
            eprintln!(
                "scale_alone: run {}: loaded in {:?}, VmRSS {:.1} MiB, VmHWM {:.1} MiB, CPU {:.2} s",
                run + 1,
                r.loaded,
                r.rss.0,
                r.rss.1,
                r.cpu
            );
            all.push(r);
        }
        all.sort_by_key(|r| r.loaded);
        let median = &all[all.len() / 2];
        let load_goal = median.loaded <= Duration::from_secs(8);
        let rss_goal = median.rss.0 <= 300.0 && median.rss.1 <= 300.0;
        let met = |ok: bool| if ok { "met" } else { "**missed**" };
        let mut md = format!("## Start-up: {} certificates, the sidecar alone\n\n", thousands(n));
        md.push_str(&format!(
            "One sidecar with {n} stored certificates (as in the scale bench: ECDSA P-256, 90 days, none due) and no \
             proxy connected. Load time runs from spawning `proxy-acme run` to the `SDS snapshot updated` log \
             line with `version={n}` (every certificate read, parsed, checked and ready to push); memory and CPU are read 3 s later. \
             {runs} run(s) on the same store; the median run.\n\n- Machine: {} × {}, Linux {}.\n- Command: `make \
             bench-scale` (`cargo bench -p proxy-acme-e2e --bench scale_alone`; `SCALE_ALONE_CERTS={n} \
             SCALE_ALONE_RUNS={runs}`).\n\n",
            std::thread::available_parallelism().map_or(0, |p| p.get()),
            cpu_model(),
            kernel()
        ));
        md.push_str("| figure | value | goal | |\n| --- | --- | --- | --- |\n");
        md.push_str(&format!("| store fill (generate + `save_certificate`) | {} ms | | |\n", fill.as_millis()));
        md.push_str(&format!(
            "| load: spawn → every certificate ready | {} ms ({:.0} µs per certificate) | ≤ 8 s | {} |\n",
            median.loaded.as_millis(),
            median.loaded.as_secs_f64() * 1e6 / n as f64,
            met(load_goal)
        ));
        md.push_str(&format!(
            "| sidecar VmRSS / VmHWM, 3 s after | {:.1} / {:.1} MiB | ≤ 300 MiB | {} |\n",
            median.rss.0,
            median.rss.1,
            met(rss_goal)
        ));
        md.push_str(&format!("| sidecar CPU until then (utime + stime) | {:.2} s | | |\n", median.cpu));
        drop(pebble);
        md
    });
    let out = workspace_root().join("target/bench");
    std::fs::create_dir_all(&out).unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(out.join("scale_alone.md"), &section).unwrap_or_else(|e| panic!("{e}"));
    println!("{section}");
}
