//! On-demand issuance, end to end: a real Envoy runs the filter on every
//! route with `on_demand: true`, so it reports the hosts of ordinary
//! requests to the sidecar, which orders only where its policy allows. An
//! allowed host gets a certificate without asking; a flood of random hosts
//! gets no order while the `ask` endpoint says no, and at most the budget
//! once it says yes.

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use proxy_acme_e2e::mesh::{http_bootstrap, item};
use proxy_acme_e2e::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const BUDGET: usize = 3;

/// The operator's `ask` endpoint: 200 while `yes`, else 403; counts calls.
async fn ask_server(yes: Arc<AtomicBool>, asked: Arc<AtomicUsize>) -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap_or_else(|e| panic!("{e}"));
    let port = listener.local_addr().map(|a| a.port()).unwrap_or_else(|e| panic!("{e}"));
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let (yes, asked) = (Arc::clone(&yes), Arc::clone(&asked));
            tokio::spawn(async move {
                let mut buf = [0u8; 2048];
                let _ = stream.read(&mut buf).await;
                asked.fetch_add(1, Ordering::SeqCst);
                let status = if yes.load(Ordering::SeqCst) { "200 OK" } else { "403 Forbidden" };
                let _ = stream
                    .write_all(
                        format!("HTTP/1.1 {status}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n").as_bytes(),
                    )
                    .await;
            });
        }
    });
    port
}

/// Names `certs` lists, with a serial (issued).
fn issued(dir: &Path) -> Vec<String> {
    let out = std::process::Command::new(proxy_acme_bin())
        .args(["certs", "--config"])
        .arg(dir.join("proxy-acme.toml"))
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    // Blocks of "NAME", "  domains: ...", "  serial: HEX" ...
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let mut names = Vec::new();
    let mut current = None;
    for line in text.lines() {
        if !line.starts_with(' ') {
            current = Some(line.trim().to_owned());
        } else if let (Some(serial), Some(name)) = (line.trim().strip_prefix("serial:"), &current) {
            if serial.trim() != "-" {
                names.push(name.clone());
            }
        }
    }
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_allowed_or_approved_hosts_are_ordered_and_never_beyond_the_budget() {
    let tmp = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let dir = tmp.path();
    let ports = StackPorts::free();
    let pebble = Pebble::start_with(dir, ports.http, ports.https, &PebbleOptions::default());
    let (yes, asked) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicUsize::new(0)));
    let ask = ask_server(Arc::clone(&yes), Arc::clone(&asked)).await;
    let tail = format!(
        "[on_demand]\nresolver = \"pebble\"\nallow = [\"allowed.od.test\"]\ndeny = [\".evil.test\"]\n\
         ask = \"http://127.0.0.1:{ask}/check\"\norders_per_minute = {BUDGET}\n"
    );
    let config = sidecar_config(dir, &ports, &pebble, "", &tail);
    let mut sidecar = start_sidecar(dir, &config);
    wait_for_port(ports.sidecar, Duration::from_secs(30), &mut sidecar);

    // Envoy: the filter on every route, reporting hosts.
    let filter = item(&format!(
        "name: envoy.filters.http.wasm\ntyped_config:\n  \"@type\": type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm\n  config:\n    name: proxy_acme\n    root_id: proxy_acme\n    configuration:\n      \"@type\": type.googleapis.com/google.protobuf.StringValue\n      value: '{{\"cluster\": \"proxy_acme_sidecar\", \"on_demand\": true, \"on_demand_per_second\": 1000}}'\n    vm_config:\n      vm_id: proxy_acme\n      runtime: envoy.wasm.runtime.v8\n      code: {{ local: {{ filename: {} }} }}\n",
        wasm_path().display()
    ));
    let routes =
        ["match: { prefix: \"/\" }\ndirect_response: { status: 200, body: { inline_string: \"app\" } }\n".to_owned()];
    let yaml = http_bootstrap(ports.http, ports.admin, &routes, &filter, &[("proxy_acme_sidecar", ports.sidecar)]);
    let _envoy = Envoy::start(dir, &yaml, ports.admin).await;
    let request = |host: String| async move {
        let answer = http_get(("127.0.0.1", ports.http), &host, "/", &[]).await;
        assert_eq!(answer, Ok((200, "app".to_owned())), "{host}: the request itself is never held up");
    };

    // 1. An allowed host: ordered without asking.
    request("allowed.od.test".to_owned()).await;
    eventually(Duration::from_secs(60), || async {
        if issued(dir).contains(&"allowed.od.test".to_owned()) {
            Ok(())
        } else {
            Err(format!("{:?}", issued(dir)))
        }
    })
    .await
    .unwrap_or_else(|e| panic!("allowed host not issued: {e:?}\n{}", sidecar.tail()));
    assert_eq!(asked.load(Ordering::SeqCst), 0, "the allow list needs no ask");

    // 2. A flood of random hosts while `ask` says no (and denied ones): no order.
    for i in 0..40 {
        request(format!("no-{i}.od.test")).await;
        request(format!("x{i}.evil.test")).await;
    }
    eventually(Duration::from_secs(20), || async {
        let n = asked.load(Ordering::SeqCst);
        if n >= 40 {
            Ok(())
        } else {
            Err(format!("{n}"))
        }
    })
    .await
    .unwrap_or_else(|n| panic!("only {n} hosts were asked about\n{}", sidecar.tail()));
    assert_eq!(asked.load(Ordering::SeqCst), 40, "denied hosts are never asked about");
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(issued(dir), vec!["allowed.od.test".to_owned()]);

    // 3. `ask` says yes: the flood is held to the budget (3 a minute, 1 used).
    yes.store(true, Ordering::SeqCst);
    for i in 0..40 {
        request(format!("yes-{i}.od.test")).await;
    }
    eventually(Duration::from_secs(60), || async {
        let now = issued(dir);
        if now.len() == BUDGET {
            Ok(())
        } else {
            Err(format!("{now:?}"))
        }
    })
    .await
    .unwrap_or_else(|e| panic!("expected {BUDGET} certificates, got {e:?}\n{}", sidecar.tail()));
    tokio::time::sleep(Duration::from_secs(3)).await;
    let last = issued(dir);
    assert_eq!(last.len(), BUDGET, "{last:?}");
    assert!(last.iter().all(|n| n == "allowed.od.test" || n.starts_with("yes-")), "{last:?}");
    assert!(sidecar.tail().contains("budget used up"));
    assert!(!pebble.pebble.tail().contains("evil.test") && !pebble.pebble.tail().contains("no-1.od.test"));
}
