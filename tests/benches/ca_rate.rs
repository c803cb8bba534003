//! Issuance behind a CA that limits new orders to a rate (issue 23): N
//! certificates (`CA_RATE_N`, default 1,000) start cold on one resolver
//! whose CA is real Pebble behind the test CA front, letting through
//! `CA_RATE_PER_SECOND` new orders a second (default 20; a token bucket
//! with a burst of as many) and answering the rest 429 `rateLimited` with
//! `Retry-After`, as Let's Encrypt does.
//!
//! - Time: from the sidecar's first request at the CA to the last
//!   certificate downloaded (both as the front saw them), beside N over
//!   the rate, the least time the CA allows.
//! - Orders: new-order requests, orders created (N means none failed or
//!   was placed twice), 429s and their share; sidecar CPU and peak RSS.
//!
//! `cargo bench -p proxy-acme-e2e --bench ca_rate` (`make bench-rate`);
//! writes target/bench/ca_rate.md (and every request the front saw to the
//! file `CA_RATE_SEEN` names, and the sidecar's log to `CA_RATE_LOG`, if set).

use std::time::{Duration, SystemTime};

use proxy_acme_e2e::ca_front::{CaFront, Seen};
use proxy_acme_e2e::scale::{cpu_model, kernel, thousands};
use proxy_acme_e2e::stack::{certificate, resolver, Stack};
use proxy_acme_e2e::*;

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn secs(from: SystemTime, to: SystemTime) -> f64 {
    to.duration_since(from).unwrap_or_default().as_secs_f64()
}

struct Run {
    took: f64,
    new_orders: usize,
    created: usize,
    throttled: Vec<f64>,
    cpu: f64,
    /// VmRSS and VmHWM, MiB.
    rss: (f64, f64),
}

async fn once(n: usize, per_second: u32) -> Run {
    let tmp = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let ports = StackPorts::free();
    let pebble = Pebble::start_with(tmp.path(), ports.http, ports.https, &PebbleOptions::default());
    let root = std::fs::read_to_string(&pebble.minica.root_pem_path).unwrap_or_else(|e| panic!("{e}"));
    let front = CaFront::start(pebble.acme_port, &root, &pebble.minica.cert_path, &pebble.minica.key_path).await;
    front.rate_limit("/order-plz", per_second, per_second);
    let budget = format!("rate_limit = {{ orders = {} }}", n + 100);
    let mut tail = resolver(&pebble, "limited", &budget).replace(&pebble.directory_url(), &front.directory_url());
    for i in 0..n {
        tail += &certificate(&format!("r{i}"), &[&format!("r{i}.rate.test")], "limited");
    }
    let ticks = clock_ticks();
    let stack = Stack::start_with_pebble(tmp, ports, pebble, "", |_| tail, |c| c).await;
    let downloaded = |seen: &[Seen]| {
        seen.iter().filter(|s| s.path.starts_with("/certZ/") && s.answer.starts_with("pebble 200")).count()
    };
    let limit = Duration::from_secs(120 + 3 * (n as u64) / u64::from(per_second));
    let all = eventually(limit, || async {
        let got = downloaded(&front.seen());
        if got >= n {
            Ok(())
        } else {
            Err(format!("{got} of {n} certificates downloaded"))
        }
    })
    .await;
    all.unwrap_or_else(|e| panic!("{e}\n--- sidecar\n{}", stack.sidecar.tail()));
    let pid = stack.sidecar.pid();
    if let Some(path) = std::env::var_os("CA_RATE_LOG") {
        std::fs::copy(&stack.sidecar.log, path).unwrap_or_else(|e| panic!("{e}"));
    }
    let (cpu, rss) = (cpu_secs(pid, ticks), memory_mib(pid));
    let seen = front.seen();
    if let Some(path) = std::env::var_os("CA_RATE_SEEN") {
        let first = seen.first().map_or(SystemTime::UNIX_EPOCH, |s| s.arrived);
        let lines: String = seen
            .iter()
            .map(|s| {
                format!("{:.3} {:.3} {} {} {}\n", secs(first, s.arrived), secs(first, s.at), s.method, s.path, s.answer)
            })
            .collect();
        std::fs::write(path, lines).unwrap_or_else(|e| panic!("{e}"));
    }
    let first = seen.first().map_or(SystemTime::UNIX_EPOCH, |s| s.arrived);
    let last = seen.iter().filter(|s| s.path.starts_with("/certZ/")).map(|s| s.at).max().unwrap_or(first);
    let new_orders: Vec<&Seen> = seen.iter().filter(|s| s.path == "/order-plz").collect();
    let created = new_orders.iter().filter(|s| s.answer.starts_with("pebble 201")).count();
    let throttled =
        new_orders.iter().filter(|s| s.answer.starts_with("RateLimited")).map(|s| secs(first, s.at)).collect();
    Run { took: secs(first, last), new_orders: new_orders.len(), created, throttled, cpu, rss }
}

fn main() {
    let n = env_or("CA_RATE_N", 1_000);
    let per_second = u32::try_from(env_or("CA_RATE_PER_SECOND", 20)).unwrap_or(20).max(1);
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build();
    let run = runtime.unwrap_or_else(|e| panic!("{e}")).block_on(once(n, per_second));
    let floor = n as f64 / f64::from(per_second);
    let share = run.throttled.len() as f64 * 100.0 / run.new_orders.max(1) as f64;
    let met = |ok: bool| if ok { "met" } else { "**missed**" };
    let at: Vec<String> = run.throttled.iter().map(|t| format!("{t:.2} s")).collect();
    let mut md = format!("## Behind a CA allowing {per_second} new orders a second: {} certificates\n\n", thousands(n));
    md.push_str(&format!(
        "{n} certificates start cold on one resolver whose CA is Pebble behind the test front (`ca_front.rs`), which \
         lets {per_second} new orders a second through (a token bucket, burst {per_second}) and answers the others 429 \
         `rateLimited` with `Retry-After`, as Let's Encrypt does. Envoy validates HTTP-01 through the filter. Time runs \
         from the sidecar's first request at the CA to the last certificate downloaded, as the front saw them. CPU \
         (utime + stime) and memory (VmRSS, VmHWM) of the sidecar are read after the last download. One run.\n\n\
         - Machine: {} × {}, Linux {}.\n- Command: `make bench-rate` (`cargo bench -p proxy-acme-e2e --bench \
         ca_rate`; `CA_RATE_N={n} CA_RATE_PER_SECOND={per_second}`).\n\n",
        std::thread::available_parallelism().map_or(0, |p| p.get()),
        cpu_model(),
        kernel()
    ));
    md.push_str("| figure | value | goal | |\n| --- | --- | --- | --- |\n");
    md.push_str(&format!(
        "| time to the last certificate | {:.1} s ({:.2}× {n} / {per_second} = {floor:.0} s) | within 15 % | {} |\n",
        run.took,
        run.took / floor,
        met(run.took <= floor * 1.15)
    ));
    md.push_str(&format!(
        "| orders created at the CA | {} | {n}, none failed | {} |\n",
        run.created,
        met(run.created == n)
    ));
    md.push_str(&format!(
        "| new-order requests answered 429 | {} of {} ({share:.2} %) | ≤ 1 % | {} |\n",
        run.throttled.len(),
        run.new_orders,
        met(share <= 1.0)
    ));
    md.push_str(&format!("| sidecar CPU | {:.2} s | | |\n", run.cpu));
    md.push_str(&format!("| sidecar VmRSS / VmHWM | {:.1} / {:.1} MiB | | |\n\n", run.rss.0, run.rss.1));
    md.push_str(&format!("The 429s came at {}.\n", if at.is_empty() { "no time".to_owned() } else { at.join(", ") }));
    let out = workspace_root().join("target/bench");
    std::fs::create_dir_all(&out).unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(out.join("ca_rate.md"), &md).unwrap_or_else(|e| panic!("{e}"));
    println!("{md}");
}
