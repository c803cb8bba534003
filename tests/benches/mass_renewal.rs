//! Mass renewal (issue 23): `MASS_BENCH_CERTS` (default 10,000) stored
//! certificates, all made due at once through ARI, as a CA does after a
//! mis-issuance, with a real Envoy serving every one of them.
//!
//! - The store is filled as in the scale bench (local test CA, ECDSA P-256,
//!   90 days, AKI set so ARI can name each); Envoy has one filter chain and
//!   SDS secret per certificate.
//! - The resolver's directory is an ARI front before a CA front before
//!   Pebble (the CA front passes `MASS_BENCH_UPSTREAM` requests, default
//!   2, at once: Pebble 2.4's in-memory store deadlocks under a long
//!   storm of concurrent orders). Renewal
//!   information answers a window 60 days ahead with `Retry-After: 60`, the least the sidecar heeds; once
//!   every certificate has been asked about, the window of every stored
//!   certificate moves into the past (the storm); the renewed ones are
//!   answered the window ahead.
//! - During the storm a client makes TLS handshakes with Envoy round the
//!   names, one after another: every one must get a certificate (the old
//!   one until the new one arrives).
//! - It ends when the sidecar's `proxy_acme_orders_total{result="success"}`
//!   reaches N. Recorded: the storm's wall time, orders by result,
//!   handshakes and failed ones, renewal-information requests sent before
//!   the `Retry-After` of the previous answer for that certificate, the
//!   sidecar's CPU during the storm and its peak RSS, Pebble's CPU, and the
//!   per-CA pace from `/metrics`.
//!
//! `cargo bench -p proxy-acme-e2e --bench mass_renewal` (`make bench-mass`);
//! writes target/bench/mass_renewal.md.

use std::collections::BTreeMap;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use proxy_acme_e2e::ari_front::{cert_id, Answer, AriFront};
use proxy_acme_e2e::ca_front::CaFront;
use proxy_acme_e2e::scale::{cpu_model, envoy_bootstrap, fill_store, kernel, name, thousands};
use proxy_acme_e2e::*;
use rustls::pki_types::pem::PemObject;

/// The sidecar polls no sooner than a minute, whatever Retry-After says.
const RETRY_AFTER_SECS: u64 = 60;
const DAY: Duration = Duration::from_secs(86_400);

fn orders(metrics: &BTreeMap<String, f64>, result: &str) -> u64 {
    let series = format!("proxy_acme_orders_total{{resolver=\"pebble\",result=\"{result}\"}}");
    metrics.get(&series).copied().unwrap_or(0.0) as u64
}

fn main() {
    let n: usize = std::env::var("MASS_BENCH_CERTS").ok().and_then(|v| v.parse().ok()).unwrap_or(10_000);
    let upstream: usize = std::env::var("MASS_BENCH_UPSTREAM").ok().and_then(|v| v.parse().ok()).unwrap_or(2);
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build();
    let runtime = runtime.unwrap_or_else(|e| panic!("{e}"));
    let section = runtime.block_on(storm(n, upstream));
    let out = workspace_root().join("target/bench");
    std::fs::create_dir_all(&out).unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(out.join("mass_renewal.md"), &section).unwrap_or_else(|e| panic!("{e}"));
    println!("{section}");
}

async fn storm(n: usize, upstream: usize) -> String {
    let tmp = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let dir = tmp.path().to_owned();
    let ports = StackPorts::free();
    // Pebble validates HTTP-01 at the sidecar's own challenge endpoint.
    let pebble = Pebble::start_with(&dir, ports.sidecar, ports.tls_alpn, &PebbleOptions::default());
    let listener_root = std::fs::read_to_string(&pebble.minica.root_pem_path).unwrap_or_else(|e| panic!("{e}"));
    // Pebble 2.4's in-memory store deadlocks in a long storm of concurrent
    // orders (seen after 940 and 6,682 renewals with 16 of ours in flight):
    // a CA front lets at most `upstream` requests reach it at once, as a
    // CA's own load balancer would.
    let ca = CaFront::start(pebble.acme_port, &listener_root, &pebble.minica.cert_path, &pebble.minica.key_path).await;
    ca.upstream_limit(upstream);
    let front =
        AriFront::start(&ca.directory_url(), &listener_root, &pebble.minica.cert_path, &pebble.minica.key_path).await;
    let ahead = SystemTime::now() + 60 * DAY;
    front.set_default(Answer::Window { start: ahead, end: ahead + DAY, retry_after_secs: RETRY_AFTER_SECS });
    let certificates: String =
        (0..n).map(|i| certificate(&name(i), &[&format!("{}.test", name(i))], "pebble")).collect();
    // The self-imposed budget (Let's Encrypt's 300 orders in 3 h by default)
    // would stop a storm of this size by design: raised, as an operator
    // with this many certificates does.
    let budget = format!("rate_limit = {{ orders = {} }}", 2 * n + 100);
    let config = sidecar_config(&dir, &ports, &pebble, &budget, &certificates)
        .replace(&pebble.directory_url(), &front.directory_url());
    let config_path = dir.join("proxy-acme.toml");
    write(&config_path, &config);
    let fill = fill_store(&dir.join("state"), n).await;
    write(&dir.join("envoy.json"), &envoy_bootstrap(n, &ports, &dir.join("sds.sock")));
    eprintln!("mass_renewal: {n} certificates stored in {fill:?}");

    let admin = |path: &'static str| http_get(("127.0.0.1", ports.admin), "localhost", path, &[]);
    let mut envoy = Proc::spawn(
        "envoy",
        Command::new(envoy_bin()).arg("-c").arg(dir.join("envoy.json")).args([
            "--concurrency",
            "1",
            "--disable-hot-restart",
            "--log-level",
            "warn",
        ]),
        &dir,
    );
    let booting = Instant::now();
    while admin("/ready").await.is_err() {
        envoy.assert_running();
        assert!(booting.elapsed() < Duration::from_secs(300), "Envoy admin not up:\n{}", envoy.tail());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut sidecar = Proc::spawn(
        "proxy-acme",
        Command::new(proxy_acme_bin())
            .arg("run")
            .arg("--config")
            .arg(&config_path)
            .env("PROXY_ACME_LOG", std::env::var("MASS_BENCH_LOG").unwrap_or_else(|_| "info".into())),
        &dir,
    );
    let started = Instant::now();
    while !matches!(admin("/ready").await, Ok((200, _))) {
        sidecar.assert_running();
        envoy.assert_running();
        assert!(started.elapsed() < Duration::from_secs(300), "Envoy not LIVE");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Every certificate asks about its renewal once at start.
    while front.timed_requests().len() < n {
        sidecar.assert_running();
        assert!(started.elapsed() < Duration::from_secs(900), "only {} ARI polls", front.timed_requests().len());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let settled = started.elapsed();
    eprintln!("mass_renewal: Envoy LIVE and {n} ARI polls answered {settled:?} after the sidecar's start");

    // The storm: the window of every stored certificate moves into the
    // past (the new ones get the default, 60 days ahead).
    let past = SystemTime::now() - DAY;
    for i in 0..n {
        let pem = dir.join("state/certificates").join(name(i)).join("live/cert.pem");
        let pem = std::fs::read(&pem).unwrap_or_else(|e| panic!("{}: {e}", pem.display()));
        let der = rustls::pki_types::CertificateDer::from_pem_slice(&pem).unwrap_or_else(|e| panic!("{e}"));
        let window = Answer::Window { start: past, end: past + DAY / 2, retry_after_secs: RETRY_AFTER_SECS };
        front.set_answer_for(&cert_id(&der), window);
    }
    let storm_started = Instant::now();
    let ticks = clock_ticks();
    let (cpu_before, pebble_cpu_before) = (cpu_secs(sidecar.pid(), ticks), cpu_secs(pebble.pebble.pid(), ticks));
    let stop = Arc::new(AtomicBool::new(false));
    let (handshakes, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let prober = tokio::spawn({
        let (stop, handshakes, failed, https) =
            (Arc::clone(&stop), Arc::clone(&handshakes), Arc::clone(&failed), ports.https);
        async move {
            let tls = tls_config_unverified();
            let mut i = 0;
            let mut first_failure = None;
            while !stop.load(Ordering::Relaxed) {
                let sni = format!("{}.test", name(i % n));
                if let Err(e) = tls_leaf(Arc::clone(&tls), ("127.0.0.1", https), &sni).await {
                    failed.fetch_add(1, Ordering::Relaxed);
                    first_failure.get_or_insert(format!("{sni}: {e}"));
                }
                handshakes.fetch_add(1, Ordering::Relaxed);
                i += 7919; // a prime: round all names, not in order
            }
            first_failure
        }
    });
    let mut first_renewed = None;
    let (ok, failed_orders) = loop {
        sidecar.assert_running();
        envoy.assert_running();
        let metrics = scrape_metrics(ports.ops).await;
        let (ok, failed_orders) = (orders(&metrics, "success"), orders(&metrics, "failure"));
        if ok > 0 && first_renewed.is_none() {
            first_renewed = Some(storm_started.elapsed());
        }
        if ok >= n as u64 {
            break (ok, failed_orders);
        }
        assert!(storm_started.elapsed() < Duration::from_secs(7200), "{ok} of {n} renewed in 2 h");
        if storm_started.elapsed().as_secs() % 30 == 0 {
            eprintln!("mass_renewal: {ok} renewed, {failed_orders} failed after {:?}", storm_started.elapsed());
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    };
    let storm_time = storm_started.elapsed();
    stop.store(true, Ordering::Relaxed);
    let first_failure = prober.await.unwrap_or_default();
    let cpu = cpu_secs(sidecar.pid(), ticks) - cpu_before;
    let pebble_cpu = cpu_secs(pebble.pebble.pid(), ticks) - pebble_cpu_before;
    let (rss, hwm) = memory_mib(sidecar.pid());
    let early = front.early_requests(Duration::from_millis(500));
    for example in front.early_examples(Duration::from_millis(500), 5) {
        eprintln!("mass_renewal: early ARI request: {example}");
    }
    let ari_requests = front.timed_requests().len();
    let metrics = scrape_metrics(ports.ops).await;
    let pace: Vec<String> =
        metrics.iter().filter(|(k, _)| k.starts_with("proxy_acme_ca_")).map(|(k, v)| format!("`{k}` {v}")).collect();
    let (handshakes, failed) = (handshakes.load(Ordering::Relaxed), failed.load(Ordering::Relaxed));
    envoy.assert_running();
    sidecar.assert_running();
    eprintln!(
        "mass_renewal: {ok} renewed in {storm_time:?}; {failed}/{handshakes} handshakes failed {first_failure:?}"
    );

    let met = |ok: bool| if ok { "met" } else { "**missed**" };
    let mut md = format!("## Mass renewal: {} certificates due at once through ARI\n\n", thousands(n));
    md.push_str(&format!(
        "One sidecar with {n} stored certificates (as in the scale bench) and one real Envoy {} serving each over \
         SDS. The resolver's directory is an ARI front before a CA front before Pebble (the CA front passes at most \
         {upstream} requests to Pebble at once: Pebble 2.4's in-memory store deadlocks in a long storm of \
         concurrent orders): renewal information first answers a window 60 days ahead (`Retry-After: {RETRY_AFTER_SECS}`); once every certificate has asked, every window moves into \
         the past, as after a CA's mis-issuance (the resolver's self-imposed order budget is raised to 2 N + \
         100 orders). The storm runs from that moment until the sidecar counts {n} \
         successful orders; meanwhile a client makes TLS handshakes with Envoy round the names, one after another.\n\n\
         - Machine: {} × {}, Linux {}.\n- Command: `make bench-mass` (`cargo bench -p proxy-acme-e2e --bench \
         mass_renewal`; `MASS_BENCH_CERTS={n} MASS_BENCH_UPSTREAM={upstream}`).\n\n",
        envoy_version(),
        std::thread::available_parallelism().map_or(0, |p| p.get()),
        cpu_model(),
        kernel()
    ));
    md.push_str("| figure | value | goal | |\n| --- | --- | --- | --- |\n");
    md.push_str(&format!(
        "| storm: windows moved → {n} renewed | {:.1} s ({:.1} orders/s) | | |\n",
        storm_time.as_secs_f64(),
        ok as f64 / storm_time.as_secs_f64()
    ));
    let first = first_renewed.unwrap_or_default();
    md.push_str(&format!(
        "| first renewal → last (after the next poll, up to {RETRY_AFTER_SECS} s in) | {:.1} s ({:.1} orders/s) | | |\n",
        (storm_time - first).as_secs_f64(),
        ok as f64 / (storm_time - first).as_secs_f64().max(1e-3)
    ));
    md.push_str(&format!("| orders ok / failed | {ok} / {failed_orders} | 0 failed | {} |\n", met(failed_orders == 0)));
    md.push_str(&format!(
        "| TLS handshakes with Envoy during the storm, failed | {handshakes}, {failed} failed | 0 failed | {} |\n",
        met(failed == 0 && handshakes > 0)
    ));
    md.push_str(&format!(
        "| renewal-information requests before the previous answer's Retry-After (0.5 s slack) | {early} of {ari_requests} | 0 | {} |\n",
        met(early == 0)
    ));
    md.push_str(&format!("| sidecar CPU during the storm (utime + stime) | {cpu:.1} s | | |\n"));
    md.push_str(&format!("| sidecar VmRSS / VmHWM after the storm | {rss:.1} / {hwm:.1} MiB | | |\n"));
    md.push_str(&format!("| Pebble CPU during the storm (the floor) | {pebble_cpu:.1} s | | |\n"));
    md.push_str(&format!(
        "| start-up before the storm (Envoy LIVE, {n} ARI polls) | {:.1} s | | |\n",
        settled.as_secs_f64()
    ));
    if !pace.is_empty() {
        md.push_str(&format!("\nThe CA's pace after the storm: {}.\n", pace.join(", ")));
    }
    if let Some(first) = first_failure {
        md.push_str(&format!("\nFirst failed handshake: {first}.\n"));
    }
    md
}
