//! Hostile load against a real stack (Pebble, Envoy with the filter, the
//! sidecar): out of file descriptors, slow clients, floods. What is
//! asserted is what an operator sees afterwards: `/healthz` answers,
//! `proxy-acme renew` reaches the running daemon through the admin socket,
//! the renewal is validated through Envoy and the challenge API, and Envoy
//! serves the new certificate.

use std::time::Duration;

use proxy_acme_e2e::*;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

const NAME: &str = "flood.proxy-acme.test";

/// The sidecar's open-file limit in this test: low enough to exhaust.
const NOFILE: u64 = 192;

fn set_nofile(pid: u32, limit: u64) {
    let pid = rustix::process::Pid::from_raw(i32::try_from(pid).unwrap_or_else(|e| panic!("{e}")))
        .unwrap_or_else(|| panic!("pid 0"));
    let limit = rustix::process::Rlimit { current: Some(limit), maximum: Some(limit) };
    rustix::process::prlimit(Some(pid), rustix::process::Resource::Nofile, limit)
        .unwrap_or_else(|e| panic!("prlimit: {e}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn out_of_descriptors_and_slow_clients_then_everything_works_again() {
    let stack = Stack::start(&PebbleOptions::default(), "", |_| certificate("demo", &[NAME], "pebble"), |c| c).await;
    let first = eventually(Duration::from_secs(60), || stack.served(NAME)).await.unwrap_or_else(|e| panic!("{e}"));
    let first = serial_of(&first);
    set_nofile(stack.sidecar.pid(), NOFILE);

    // 1. Slow clients: more connections than the sidecar has descriptors,
    //    each sending half a request header and then nothing.
    let mut slow = Vec::new();
    for _ in 0..(2 * NOFILE) {
        if let Ok(mut stream) = TcpStream::connect(("127.0.0.1", stack.ports.sidecar)).await {
            let _ = stream.write_all(b"GET /.well-known/acme-challenge/x HTTP/1.1\r\nHost: a").await;
            slow.push(stream);
        }
    }
    let log_says = |what: &'static str| {
        let log = std::fs::read_to_string(&stack.sidecar.log).unwrap_or_default();
        async move {
            if log.contains(what) {
                Ok(())
            } else {
                Err(format!("no {what:?} in the log yet"))
            }
        }
    };
    eventually(Duration::from_secs(20), || log_says("Too many open files"))
        .await
        .unwrap_or_else(|e| panic!("the flood never exhausted the descriptors: {e}\n{}", stack.sidecar.tail()));

    // 2. Meanwhile the admin socket is flooded too (it has its own cap).
    let admin = stack.dir.join("admin.sock");
    let mut idle_admin = Vec::new();
    for _ in 0..100 {
        if let Ok(stream) = tokio::net::UnixStream::connect(&admin).await {
            idle_admin.push(stream);
        }
    }

    // 3. The flood ends: everything works again, nothing was restarted.
    drop(slow);
    drop(idle_admin);
    let healthz = eventually(Duration::from_secs(20), || async {
        match http_get(("127.0.0.1", stack.ports.ops), "localhost", "/healthz", &[]).await {
            Ok((200, body)) => Ok(body),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    assert_eq!(healthz.as_deref(), Ok("ok\n"));
    let (code, out, err) = stack.cli(&["renew", "demo", "--force"]);
    assert_eq!(code, 0, "renew after the flood: {out}{err}\n{}", stack.sidecar.tail());
    assert!(!err.contains("not running"), "{err}");
    let renewed = eventually(Duration::from_secs(30), || async {
        match stack.served(NAME).await.map(|der| serial_of(&der)) {
            Ok(serial) if serial != first => Ok(serial),
            Ok(serial) => Err(format!("still {serial}")),
            Err(e) => Err(e),
        }
    })
    .await;
    assert!(renewed.is_ok(), "Envoy never served the renewal: {renewed:?}\n{}", stack.sidecar.tail());
    let (code, out, _) = stack.cli(&["certs"]);
    assert_eq!(code, 0);
    assert!(!out.contains("not running"), "certs fell back to offline output: {out}");

    // 4. The header timeout: a half-sent header does not stay open.
    let mut lingering = TcpStream::connect(("127.0.0.1", stack.ports.sidecar)).await.unwrap_or_else(|e| panic!("{e}"));
    lingering.write_all(b"GET / HTTP/1.1\r\nHost: a").await.unwrap_or_else(|e| panic!("{e}"));
    let mut byte = [0u8; 1];
    let closed =
        tokio::time::timeout(Duration::from_secs(20), tokio::io::AsyncReadExt::read(&mut lingering, &mut byte))
            .await
            .is_ok();
    assert!(closed, "a half-sent header was still open after 20 s");
}
