//! DNS-01 end to end through the `exec` and `httpreq` providers, with helper
//! programs written by the test: an exec script (lego's `present|cleanup
//! FQDN VALUE`) and an httpreq server (lego's JSON contract), both of which
//! publish TXT records in pebble-challtestsrv, the DNS Pebble validates
//! with. The certificates (a wildcard with its apex, through exec) are
//! issued by Pebble and served by Envoy over SDS; every present is cleaned
//! up.
//!
//! One Pebble, one Envoy and one sidecar for the whole binary.

use std::convert::Infallible;
use std::os::unix::fs::PermissionsExt;
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use proxy_acme_e2e::*;

const EXEC_APEX: &str = "exec.proxy-acme.test";
const EXEC_WILDCARD: &str = "*.exec.proxy-acme.test";
const HTTPREQ: &str = "httpreq.proxy-acme.test";

/// POSTs JSON to pebble-challtestsrv's management API.
async fn challtestsrv(port: u16, path: &str, body: &serde_json::Value) -> Result<u16, String> {
    let body = body.to_string();
    let request = format!(
        "POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    raw_request(("127.0.0.1", port), request.as_bytes()).await.map(|(status, _)| status)
}

/// lego's httpreq contract in front of challtestsrv, recording each call.
/// `management` is filled in once Pebble (and so challtestsrv) runs.
async fn httpreq_server(management: Arc<AtomicU16>, calls: Arc<Mutex<Vec<String>>>) -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap_or_else(|e| panic!("{e}"));
    let port = listener.local_addr().map(|a| a.port()).unwrap_or_else(|e| panic!("{e}"));
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let (calls, management) = (Arc::clone(&calls), Arc::clone(&management));
            tokio::spawn(async move {
                let service = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                    let calls = Arc::clone(&calls);
                    let management = management.load(Ordering::SeqCst);
                    async move {
                        let path = req.uri().path().to_owned();
                        let body = req.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
                        let json: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
                        let (fqdn, value) =
                            (json["fqdn"].as_str().unwrap_or_default(), json["value"].as_str().unwrap_or_default());
                        let status = match path.as_str() {
                            "/present" => {
                                challtestsrv(management, "/set-txt", &serde_json::json!({"host": fqdn, "value": value}))
                                    .await
                            }
                            "/cleanup" => {
                                challtestsrv(management, "/clear-txt", &serde_json::json!({"host": fqdn})).await
                            }
                            _ => Ok(404),
                        };
                        calls.lock().unwrap_or_else(|e| e.into_inner()).push(format!("{path} {fqdn} {value}"));
                        let code = if status == Ok(200) { 200 } else { 502 };
                        let mut rsp = hyper::Response::new(Full::new(Bytes::new()));
                        *rsp.status_mut() = hyper::StatusCode::from_u16(code).unwrap_or(hyper::StatusCode::BAD_GATEWAY);
                        Ok::<_, Infallible>(rsp)
                    }
                });
                let _ =
                    hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
            });
        }
    });
    port
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dns01_through_exec_and_httpreq_helper_programs() {
    let helpers = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let exec_log = helpers.path().join("exec.log");
    let script = helpers.path().join("dns-hook.py");
    let calls = Arc::new(Mutex::new(Vec::new()));
    let management = Arc::new(AtomicU16::new(0));
    let httpreq_port = httpreq_server(Arc::clone(&management), Arc::clone(&calls)).await;
    let tail = |pebble: &Pebble| {
        management.store(pebble.challtestsrv_management, Ordering::SeqCst);
        std::fs::write(
            &script,
            format!(
                "#!/usr/bin/env python3\nimport json, sys, urllib.request\n\
                 action, fqdn, value = sys.argv[1:4]\n\
                 path, body = ('/set-txt', {{'host': fqdn, 'value': value}}) if action == 'present' else ('/clear-txt', {{'host': fqdn}})\n\
                 req = urllib.request.Request('http://127.0.0.1:{port}' + path, data=json.dumps(body).encode(), method='POST')\n\
                 urllib.request.urlopen(req, timeout=10)\n\
                 open('{log}', 'a').write(' '.join([action, fqdn, value]) + '\\n')\n",
                port = pebble.challtestsrv_management,
                log = exec_log.display()
            ),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap_or_else(|e| panic!("{e}"));
        let checks = format!(
            "check_all_nameservers = false\nresolvers = [\"127.0.0.1:{}\"]\ntimeout_secs = 30\ninterval_secs = 1\n",
            pebble.dns_port
        );
        let exec = resolver(pebble, "exec", "").replace("http_challenge = {}\n", "");
        let httpreq = resolver(pebble, "httpreq", "").replace("http_challenge = {}\n", "");
        format!(
            "{exec}\n[resolvers.exec.dns_challenge]\n{checks}\n[resolvers.exec.dns_challenge.exec]\nprogram = \"{script}\"\n\n\
             {httpreq}\n[resolvers.httpreq.dns_challenge]\n{checks}\n[resolvers.httpreq.dns_challenge.httpreq]\n\
             endpoint = \"http://127.0.0.1:{httpreq_port}\"\n\n{}\n{}",
            certificate("exec", &[EXEC_APEX, EXEC_WILDCARD], "exec"),
            certificate("httpreq", &[HTTPREQ], "httpreq"),
            script = script.display(),
        )
    };
    let mut stack = Stack::start(&PebbleOptions::default(), "", tail, |c| with_secrets(c, &["exec", "httpreq"])).await;

    stack.wait_for_new_serial("a.exec.proxy-acme.test", None, Duration::from_secs(90)).await;
    for sni in ["a.exec.proxy-acme.test", EXEC_APEX] {
        let der = stack.served(sni).await.unwrap_or_else(|e| panic!("{sni}: {e}"));
        assert_eq!(sans(&der), [format!("DNSName({EXEC_WILDCARD})"), format!("DNSName({EXEC_APEX})")], "{sni}");
    }
    stack.wait_for_new_serial(HTTPREQ, None, Duration::from_secs(90)).await;

    // Every present was cleaned up, by each helper.
    let exec_calls = eventually(Duration::from_secs(10), || async {
        let log = std::fs::read_to_string(&exec_log).unwrap_or_default();
        let (presents, cleanups) = (log.matches("present ").count(), log.matches("cleanup ").count());
        if presents >= 2 && cleanups == presents {
            Ok(log)
        } else {
            Err(log)
        }
    })
    .await
    .unwrap_or_else(|log| panic!("exec calls: {log}"));
    assert!(exec_calls.contains("present _acme-challenge.exec.proxy-acme.test. "), "{exec_calls}");
    let httpreq_calls = eventually(Duration::from_secs(10), || async {
        let calls = calls.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let presents =
            calls.iter().filter(|c| c.starts_with("/present _acme-challenge.httpreq.proxy-acme.test. ")).count();
        let cleanups = calls.iter().filter(|c| c.starts_with("/cleanup ")).count();
        if presents >= 1 && cleanups == presents {
            Ok(())
        } else {
            Err(format!("{calls:?}"))
        }
    })
    .await;
    assert_eq!(httpreq_calls, Ok(()));
}
