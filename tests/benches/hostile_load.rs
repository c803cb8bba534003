//! Hostile load on one sidecar (etcd store, Pebble, Envoy with the filter),
//! for docs/reliability.md; not a timed test.
//!
//! - Random tokens: `HOSTILE_TOKENS` (10,000) requests for unknown tokens
//!   through Envoy's public HTTP port; the sidecar's own count of board
//!   lookups that reached etcd (`proxy_acme_challenge_board_lookups_total
//!   {source="store"}`), and etcd's Range calls in the same time (the
//!   store probe reads too, every 2 s).
//! - Slow clients: `HOSTILE_CONNECTIONS` (20,000) connections to the
//!   challenge API, each sending half a request header and nothing more,
//!   held for 20 s (the sidecar closes what exceeds its cap); then 20 s of
//!   churn (the oldest client connection replaced by a new one, as fast as
//!   the client can). Meanwhile: `/healthz` on the ops listener every 50 ms
//!   (latency percentiles), a valid token (another replica's post in etcd)
//!   through Envoy every second, and the sidecar's RSS. Then the flood
//!   ends and RSS is read again after 10 s.
//!
//! `cargo bench -p proxy-acme-e2e --bench hostile_load` prints a Markdown
//! section.

use std::collections::VecDeque;
use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

use proxy_acme_e2e::etcd::EtcdCluster;
use proxy_acme_e2e::*;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

const NAME: &str = "hostile.proxy-acme.test";
const PREFIX: &str = "/bench/";

fn env_or(key: &str, default: usize) -> usize {
    std::env::var(key).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

async fn metric(port: u16, series: &str) -> f64 {
    let (_, text) = http_get(("127.0.0.1", port), "localhost", "/metrics", &[]).await.unwrap_or_default();
    let series = format!("{series} ");
    text.lines().find_map(|l| l.strip_prefix(&series)).and_then(|v| v.trim().parse().ok()).unwrap_or(0.0)
}

/// Range requests etcd served, by its own metrics.
async fn etcd_ranges(endpoint: &str) -> f64 {
    let port: u16 = endpoint.rsplit(':').next().and_then(|p| p.parse().ok()).unwrap_or(0);
    let (_, text) = http_get(("127.0.0.1", port), "localhost", "/metrics", &[]).await.unwrap_or_default();
    text.lines()
        .filter(|l| l.starts_with("grpc_server_handled_total{") && l.contains("grpc_method=\"Range\""))
        .filter_map(|l| l.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()))
        .sum()
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

async fn slow_client(port: u16) -> Option<TcpStream> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).await.ok()?;
    stream.write_all(b"GET /.well-known/acme-challenge/slow HTTP/1.1\r\nHost: a").await.ok()?;
    Some(stream)
}

/// Flood processes, each holding its share of the slow connections (one
/// process may not hold 20,000 descriptors).
const FLOOD_PROCESSES: usize = 2;
const HOLD: Duration = Duration::from_secs(20);
const CHURN: Duration = Duration::from_secs(20);

/// A flood process: opens `count` slow connections to `port`, prints
/// `opened <n> <refused>`, holds them for [`HOLD`], then for [`CHURN`]
/// replaces the oldest with a new one as fast as it can, prints
/// `churned <n>` and exits (closing them all).
async fn flood_child(port: u16, count: usize) {
    let mut flood = VecDeque::with_capacity(count);
    let mut refused = 0;
    while flood.len() < count && refused <= count {
        match slow_client(port).await {
            Some(stream) => flood.push_back(stream),
            None => refused += 1,
        }
    }
    println!("opened {} {refused}", flood.len());
    tokio::time::sleep(HOLD).await;
    let (started, mut churned) = (Instant::now(), 0);
    while started.elapsed() < CHURN {
        flood.pop_front();
        if let Some(stream) = slow_client(port).await {
            flood.push_back(stream);
            churned += 1;
        }
    }
    println!("churned {churned}");
}

/// Starts the flood processes; returns them and their stdout lines.
fn spawn_floods(
    port: u16,
    connections: usize,
) -> Vec<(tokio::process::Child, tokio::io::Lines<tokio::io::BufReader<tokio::process::ChildStdout>>)> {
    use tokio::io::AsyncBufReadExt;
    let exe = std::env::current_exe().unwrap_or_else(|e| panic!("{e}"));
    (0..FLOOD_PROCESSES)
        .map(|_| {
            let mut child = tokio::process::Command::new(&exe)
                .env("HOSTILE_FLOOD_CHILD", format!("{port}:{}", connections / FLOOD_PROCESSES))
                .stdout(std::process::Stdio::piped())
                .kill_on_drop(true)
                .spawn()
                .unwrap_or_else(|e| panic!("flood process: {e}"));
            let stdout = child.stdout.take().unwrap_or_else(|| panic!("no stdout"));
            (child, tokio::io::BufReader::new(stdout).lines())
        })
        .collect()
}

/// The numbers on the next line starting with `word` from each flood process.
async fn floods_say(
    floods: &mut [(tokio::process::Child, tokio::io::Lines<tokio::io::BufReader<tokio::process::ChildStdout>>)],
    word: &str,
) -> Vec<usize> {
    let mut sums = Vec::new();
    for (_, lines) in floods.iter_mut() {
        let line = lines.next_line().await.ok().flatten().unwrap_or_default();
        let numbers: Vec<usize> =
            line.strip_prefix(word).unwrap_or_default().split_whitespace().filter_map(|n| n.parse().ok()).collect();
        for (i, n) in numbers.into_iter().enumerate() {
            if sums.len() <= i {
                sums.push(0);
            }
            sums[i] += n;
        }
    }
    sums
}

struct Probe {
    healthz: Vec<Duration>,
    healthz_failed: usize,
    token_ok: usize,
    token_failed: usize,
    rss_peak: f64,
}

/// Probes the sidecar until `stop` is set.
async fn probe(ports: StackPorts, pid: u32, token: String, stop: tokio::sync::watch::Receiver<bool>) -> Probe {
    let mut out = Probe { healthz: vec![], healthz_failed: 0, token_ok: 0, token_failed: 0, rss_peak: 0.0 };
    let mut last_token = Instant::now() - Duration::from_secs(1);
    while !*stop.borrow() {
        let started = Instant::now();
        let answer =
            tokio::time::timeout(Duration::from_secs(5), http_get(("127.0.0.1", ports.ops), "x", "/healthz", &[]))
                .await;
        match answer {
            Ok(Ok((200, _))) => out.healthz.push(started.elapsed()),
            _ => out.healthz_failed += 1,
        }
        if last_token.elapsed() >= Duration::from_secs(1) {
            last_token = Instant::now();
            let path = format!("/.well-known/acme-challenge/{token}");
            match http_get(("127.0.0.1", ports.http), NAME, &path, &[]).await {
                Ok((200, body)) if body == format!("{token}.thumbprint") => out.token_ok += 1,
                _ => out.token_failed += 1,
            }
        }
        out.rss_peak = out.rss_peak.max(memory_mib(pid).0);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    out
}

fn main() {
    let tokens = env_or("HOSTILE_TOKENS", 10_000);
    let connections = env_or("HOSTILE_CONNECTIONS", 20_000);
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build();
    let runtime = runtime.unwrap_or_else(|e| panic!("{e}"));
    if let Ok(spec) = std::env::var("HOSTILE_FLOOD_CHILD") {
        let (port, count) = spec.split_once(':').unwrap_or_else(|| panic!("HOSTILE_FLOOD_CHILD={spec}"));
        let (port, count) = (port.parse().unwrap_or(0), count.parse().unwrap_or(0));
        runtime.block_on(flood_child(port, count));
        return;
    }
    let section = runtime.block_on(async {
        let tmp = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let dir = tmp.path();
        let etcd = EtcdCluster::start(dir, 1).await;
        let endpoint = etcd.endpoints()[0].clone();
        let ports = StackPorts::free();
        let pebble = Pebble::start(dir, ports.http, ports.https);
        let _app = start_echo_app(ports.app).await;
        let envoy = Envoy::start(dir, &shipped_envoy_config(&ports, &dir.join("sds.sock")), ports.admin).await;
        let key_file = dir.join("store.key");
        write(&key_file, "q83vEjRWeJq7zN3uASNFZ4mrze8BI0VniavN7wEjRWc=\n");
        std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o600)).unwrap_or_else(|e| panic!("{e}"));
        let etcd_toml = format!(
            "\n[storage.etcd]\nendpoints = [\"{endpoint}\"]\nprefix = \"{PREFIX}\"\nencryption_key_file = \"{}\"\n",
            key_file.display()
        );
        let config = sidecar_config(dir, &ports, &pebble, "", &format!("{}{etcd_toml}", certificate("demo", &[NAME], "pebble")))
            .replacen("[storage]\n", "[storage]\nstore = \"etcd\"\n", 1);
        let mut sidecar = start_sidecar(dir, &config);
        wait_for_port(ports.ops, Duration::from_secs(30), &mut sidecar);
        let root = pebble.root_pem().await;
        eventually(Duration::from_secs(60), || tls_leaf(tls_config(&root, &[]), ("127.0.0.1", ports.https), NAME))
            .await
            .unwrap_or_else(|e| panic!("never issued: {e}\n{}", sidecar.tail()));
        let pid = sidecar.pid();
        let (rss_idle, _) = memory_mib(pid);

        // Another replica's pending challenge, posted the way it would be.
        let token = "bench-valid-token_0123456789";
        let mut client = etcd_client::Client::connect([endpoint.as_str()], None).await.unwrap_or_else(|e| panic!("{e}"));
        let post = serde_json::json!({ "identifier": NAME, "key_authorization": format!("{token}.thumbprint") });
        client
            .put(format!("{PREFIX}challenges/http-01/{token}"), post.to_string(), None)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let path = format!("/.well-known/acme-challenge/{token}");
        eventually(Duration::from_secs(10), || async {
            match http_get(("127.0.0.1", ports.http), NAME, &path, &[]).await {
                Ok((200, _)) => Ok(()),
                other => Err(format!("{other:?}")),
            }
        })
        .await
        .unwrap_or_else(|e| panic!("the posted token is not answered through Envoy: {e}"));

        // 1. Random tokens through Envoy.
        let store = "proxy_acme_challenge_board_lookups_total{source=\"store\"}";
        let copy = "proxy_acme_challenge_board_lookups_total{source=\"copy\"}";
        let (store_before, copy_before, ranges_before) =
            (metric(ports.ops, store).await, metric(ports.ops, copy).await, etcd_ranges(&endpoint).await);
        let started = Instant::now();
        let mut not_404 = 0;
        for i in 0..tokens {
            let path = format!("/.well-known/acme-challenge/random{i}x{:016x}", rand::random::<u64>());
            if !matches!(http_get(("127.0.0.1", ports.http), NAME, &path, &[]).await, Ok((404, _))) {
                not_404 += 1;
            }
        }
        let token_secs = started.elapsed().as_secs_f64();
        let store_reads = metric(ports.ops, store).await - store_before;
        let copy_reads = metric(ports.ops, copy).await - copy_before;
        let ranges = etcd_ranges(&endpoint).await - ranges_before;
        eprintln!("hostile: {tokens} random tokens in {token_secs:.1} s: store {store_reads}, copy {copy_reads}, etcd ranges {ranges}");

        // 2. Slow clients.
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let prober = tokio::spawn(probe(ports, pid, token.to_owned(), stop_rx));
        let started = Instant::now();
        let mut floods = spawn_floods(ports.sidecar, connections);
        let opened = floods_say(&mut floods, "opened").await;
        let opened_in = started.elapsed().as_secs_f64();
        let (open, refused) = (opened.first().copied().unwrap_or(0), opened.get(1).copied().unwrap_or(0));
        eprintln!("hostile: {open} slow connections open in {opened_in:.1} s ({refused} refused)");
        tokio::time::sleep(HOLD - Duration::from_secs(2)).await;
        let (rss_held, _) = memory_mib(pid);
        let churned = floods_say(&mut floods, "churned").await.first().copied().unwrap_or(0);
        let (rss_churn, hwm) = memory_mib(pid);
        let open_at_end = metric(ports.ops, "proxy_acme_connections_open{listener=\"challenge_api\"}").await;
        stop_tx.send_replace(true);
        let mut probe = prober.await.unwrap_or_else(|e| panic!("{e}"));
        for (mut child, _) in floods {
            let _ = child.wait().await;
        }
        tokio::time::sleep(Duration::from_secs(10)).await;
        let (rss_after, _) = memory_mib(pid);
        probe.healthz.sort();
        let closed = |reason: &str| {
            let series = format!("proxy_acme_connections_closed_total{{listener=\"challenge_api\",reason=\"{reason}\"}}");
            async move { metric(ports.ops, &series).await }
        };
        let (timeouts, cap, shed) = (closed("timeout").await, closed("cap").await, closed("shed").await);
        sidecar.assert_running();
        drop(envoy);
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        format!(
            "### Hostile load (`cargo bench -p proxy-acme-e2e --bench hostile_load`)\n\n\
             One sidecar (etcd store, one member), Pebble, Envoy with the filter, on this 2-core machine; \
             the load comes from the same machine.\n\n\
             | measure | result |\n| --- | --- |\n\
             | {tokens} random-token requests through Envoy ({token_secs:.1} s) | {store_reads} board lookups reached etcd, {copy_reads} answered from the copy; {not_404} not 404; etcd served {ranges} Range calls in that time (the 2 s store probe and lock checks) |\n\
             | {connections} slow connections to the challenge API ({FLOOD_PROCESSES} client processes) | {open} opened in {opened_in:.1} s ({refused} refused), held 20 s, then {churned} more in 20 s of churn |\n\
             | sidecar RSS: idle / held / churn / peak (VmHWM) | {rss_idle:.1} / {rss_held:.1} / {rss_churn:.1} / {hwm:.1} MiB |\n\
             | sidecar RSS 10 s after the flood | {rss_after:.1} MiB |\n\
             | challenge API connections open at the end of the flood | {open_at_end} (cap 1024) |\n\
             | connections the sidecar closed | {timeouts} header/idle timeout, {cap} for room under the cap, {shed} shed |\n\
             | `/healthz` on the ops listener during the flood | {} answers: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms; {} failed |\n\
             | a valid token through Envoy during the flood (every second) | {} answered, {} failed |\n",
            probe.healthz.len(),
            ms(percentile(&probe.healthz, 0.5)),
            ms(percentile(&probe.healthz, 0.99)),
            ms(probe.healthz.last().copied().unwrap_or_default()),
            probe.healthz_failed,
            probe.token_ok,
            probe.token_failed,
        ) + &format!("| sidecar RSS peak seen by the prober | {:.1} MiB |\n", probe.rss_peak)
    });
    println!("{section}");
}
