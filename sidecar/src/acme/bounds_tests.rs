use std::time::{Duration, SystemTime};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use super::*;

/// A one-connection HTTP server that reads a request and then does
/// `answer` with the socket; its URL.
async fn server<F, Fut>(answer: F) -> String
where
    F: FnOnce(tokio::net::TcpStream) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let address = listener.local_addr().expect("address");
    tokio::spawn(async move {
        let (mut socket, _) = listener.accept().await.expect("accept");
        let mut buffer = [0_u8; 4096];
        let _ = socket.read(&mut buffer).await;
        answer(socket).await;
    });
    format!("http://{address}/acme/new-order")
}

fn client(timeout: Duration, max_body: usize) -> Bounded<hyper_util::client::legacy::connect::HttpConnector> {
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build(hyper_util::client::legacy::connect::HttpConnector::new());
    Bounded { inner: client, timeout, max_body }
}

fn post(url: &str) -> Request<BodyWrapper<Bytes>> {
    Request::builder().method("POST").uri(url).body(BodyWrapper::from(b"{}".to_vec())).expect("request")
}

fn message(result: Result<BytesResponse, instant_acme::Error>) -> String {
    match result {
        Ok(rsp) => panic!("expected an error, got {}", rsp.parts.status),
        Err(e) => e.to_string(),
    }
}

#[tokio::test]
async fn a_stalled_answer_times_out_naming_the_request() {
    let url = server(|socket| async move {
        // Accepted, read, never answered.
        tokio::time::sleep(Duration::from_secs(30)).await;
        drop(socket);
    })
    .await;
    let started = std::time::Instant::now();
    let error = message(client(Duration::from_millis(300), MAX_BODY).request(post(&url)).await);
    assert!(started.elapsed() < Duration::from_secs(5), "took {:?}", started.elapsed());
    assert!(error.contains("POST http://127.0.0.1:") && error.contains("/acme/new-order"), "{error}");
    assert!(error.contains("no complete answer within 0 s"), "{error}");
}

#[tokio::test]
async fn a_body_that_never_ends_times_out_too() {
    let url = server(|mut socket| async move {
        let head = "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{";
        let _ = socket.write_all(head.as_bytes()).await;
        tokio::time::sleep(Duration::from_secs(30)).await;
    })
    .await;
    let error = message(client(Duration::from_millis(300), MAX_BODY).request(post(&url)).await);
    assert!(error.contains("no complete answer"), "{error}");
}

#[tokio::test]
async fn a_body_over_the_cap_is_refused_without_reading_it_all() {
    let url = server(|mut socket| async move {
        let head = "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n";
        let _ = socket.write_all(head.as_bytes()).await;
        let chunk = format!("{:x}\r\n{}\r\n", 64 * 1024, "x".repeat(64 * 1024));
        // 10 MiB offered; the client stops at 64 KiB.
        for _ in 0..160 {
            if socket.write_all(chunk.as_bytes()).await.is_err() {
                return;
            }
        }
    })
    .await;
    let error = message(client(Duration::from_secs(10), 64 * 1024).request(post(&url)).await);
    assert!(error.contains("the answer's body is over 65536 bytes; refused"), "{error}");
}

#[tokio::test]
async fn a_refused_connection_says_why() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}/dir", listener.local_addr().expect("address"));
    drop(listener);
    let error = message(client(Duration::from_secs(10), MAX_BODY).request(post(&url)).await);
    assert!(error.contains("Connection refused") || error.contains("connection refused"), "{error}");
}

#[tokio::test]
async fn an_error_answer_with_retry_after_is_carried_by_the_orders_error() {
    let url = server(|mut socket| async move {
        let body = r#"{"type":"urn:ietf:params:acme:error:serverInternal","detail":"down"}"#;
        let answer = format!(
            "HTTP/1.1 503 Service Unavailable\r\nretry-after: 120\r\ncontent-type: application/problem+json\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        );
        let _ = socket.write_all(answer.as_bytes()).await;
    })
    .await;
    let http = client(Duration::from_secs(10), MAX_BODY);
    let result: Result<(), AcmeError> = within(Duration::from_secs(10), "creating the order", None, async {
        let rsp = http.request(post(&url)).await?;
        assert_eq!(rsp.parts.status, 503);
        Err(AcmeError::Protocol(instant_acme::Error::Str("the CA is down")))
    })
    .await;
    let error = result.expect_err("an error");
    let now = SystemTime::now();
    let at = error.retry_after(now).expect("the CA's Retry-After");
    let wait = at.duration_since(now).unwrap_or_default();
    assert!(wait > Duration::from_secs(110) && wait <= Duration::from_secs(120), "{wait:?}");
    assert!(error.to_string().contains("the CA is down (the CA asks to retry after "), "{error}");
    assert!(!error.is_permanent());
}

#[tokio::test]
async fn a_later_good_answer_forgets_the_retry_after() {
    let url = server(|mut socket| async move {
        let answer = "HTTP/1.1 200 OK\r\nretry-after: 120\r\ncontent-length: 2\r\n\r\n{}";
        let _ = socket.write_all(answer.as_bytes()).await;
    })
    .await;
    let http = client(Duration::from_secs(10), MAX_BODY);
    let result: Result<(), AcmeError> = within(Duration::from_secs(10), "polling", None, async {
        http.request(post(&url)).await?;
        Err(AcmeError::NoChallenge("http-01", "a.test".into()))
    })
    .await;
    let error = result.expect_err("an error");
    assert_eq!(error.retry_after(SystemTime::now()), None, "{error}");
}

#[tokio::test]
async fn the_deadline_names_the_step_it_stopped() {
    let result: Result<(), AcmeError> = within(Duration::from_secs(1), "loading the account", None, async {
        set_step("waiting for the CA to validate");
        tokio::time::sleep(Duration::from_secs(30)).await;
        Ok(())
    })
    .await;
    let error = result.expect_err("past the deadline");
    assert_eq!(error.to_string(), "order deadline of 1 s passed while waiting for the CA to validate");
    assert!(!error.is_permanent());
}

#[test]
fn retry_after_is_seconds_or_a_date_and_is_capped() {
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000_000);
    assert_eq!(parse_retry_after(" 150 ", now), Some(now + Duration::from_secs(150)));
    assert_eq!(
        parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT", now),
        Some(SystemTime::UNIX_EPOCH + Duration::from_secs(784_111_777))
    );
    assert_eq!(parse_retry_after("soon", now), None);
    let far = AcmeError::CaSaidWait {
        source: Box::new(AcmeError::Protocol(instant_acme::Error::Str("busy"))),
        until: SystemTime::now() + Duration::from_secs(10 * 24 * 3600),
    };
    assert_eq!(far.retry_after(now), Some(now + MAX_RETRY_AFTER));
}

#[test]
fn the_retry_after_wrapper_keeps_what_the_error_is() {
    let problem = |kind: &str| {
        AcmeError::Protocol(instant_acme::Error::Api(instant_acme::Problem {
            r#type: Some(format!("urn:ietf:params:acme:error:{kind}")),
            detail: None,
            status: Some(429),
            subproblems: Vec::new(),
        }))
    };
    let wrapped = |e| AcmeError::CaSaidWait { source: Box::new(e), until: SystemTime::now() };
    assert!(wrapped(problem("rateLimited")).is_rate_limited());
    assert_eq!(wrapped(problem("rateLimited")).problem_type(), Some("rateLimited"));
    assert!(wrapped(problem("rejectedIdentifier")).is_permanent());
    assert!(wrapped(problem("unauthorized")).is_invalid());
    assert!(wrapped(problem("badNonce")).is_bad_nonce());
}

fn bad_nonce() -> instant_acme::Error {
    instant_acme::Error::Api(instant_acme::Problem {
        r#type: Some("urn:ietf:params:acme:error:badNonce".into()),
        detail: Some("JWS has an invalid anti-replay nonce".into()),
        status: Some(400),
        subproblems: Vec::new(),
    })
}

#[tokio::test]
async fn a_refused_nonce_is_sent_again_until_it_is_taken() {
    let mut calls = 0;
    let mut call = || {
        calls += 1;
        std::future::ready(if calls <= 20 { Err(bad_nonce()) } else { Ok(calls) })
    };
    let result = step!("creating the order", call().await);
    assert_eq!(result.ok(), Some(21));
}

#[tokio::test]
async fn refused_nonces_give_up_after_the_bound_and_other_errors_at_once() {
    let mut calls = 0_u32;
    let mut call = || {
        calls += 1;
        std::future::ready(Err::<(), _>(bad_nonce()))
    };
    let result = step!("creating the order", call().await);
    assert!(result.as_ref().is_err_and(is_bad_nonce));
    assert_eq!(calls, MAX_NONCE_REFUSALS + 1);
    let mut calls = 0_u32;
    let mut call = || {
        calls += 1;
        std::future::ready(Err::<(), _>(instant_acme::Error::Str("no")))
    };
    let _ = step!("creating the order", call().await);
    assert_eq!(calls, 1);
}
