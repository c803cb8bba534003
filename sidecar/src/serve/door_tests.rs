use super::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const SHORT: Limits =
    Limits { max_connections: 2, header_timeout: Duration::from_millis(300), idle_timeout: Duration::from_millis(600) };

async fn listener() -> (TcpListener, std::net::SocketAddr) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let address = listener.local_addr().expect("address");
    (listener, address)
}

/// True when the server closed `stream` within `within` (EOF or reset).
async fn closed_within(stream: &mut TcpStream, within: Duration) -> bool {
    let mut byte = [0u8; 1];
    match tokio::time::timeout(within, stream.read(&mut byte)).await {
        Ok(Ok(0) | Err(_)) => true,
        Ok(Ok(_)) | Err(_) => false,
    }
}

/// An echo-nothing HTTP server: 200 "hi" for every request.
fn hi(listener: TcpListener, limits: Limits) -> tokio::task::JoinHandle<()> {
    serve_http(listener, "test", limits, |_req| async { Response::new(Full::new(Bytes::from_static(b"hi"))) })
}

async fn request(stream: &mut TcpStream, head: &str) -> String {
    stream.write_all(head.as_bytes()).await.expect("write");
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf)).await.expect("answer").expect("read");
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

#[tokio::test]
async fn a_half_sent_header_is_closed_after_the_header_timeout() {
    let (listener, address) = listener().await;
    let server = hi(listener, SHORT);
    let mut slow = TcpStream::connect(address).await.expect("connect");
    slow.write_all(b"GET / HTTP/1.1\r\nHost: a").await.expect("write");
    assert!(!closed_within(&mut slow, Duration::from_millis(100)).await, "closed too early");
    assert!(closed_within(&mut slow, Duration::from_secs(2)).await, "a slow header must be cut off");
    server.abort();
}

#[tokio::test]
async fn keep_alive_connections_are_closed_when_idle_and_not_while_used() {
    let (listener, address) = listener().await;
    let server = hi(listener, SHORT);
    let mut client = TcpStream::connect(address).await.expect("connect");
    // Requests every 200 ms outlive the 300 ms header timeout: an answered
    // connection runs on the idle timeout.
    for _ in 0..4 {
        assert!(request(&mut client, "GET / HTTP/1.1\r\nHost: a\r\n\r\n").await.starts_with("HTTP/1.1 200"));
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(closed_within(&mut client, Duration::from_secs(2)).await, "an idle keep-alive must end");
    server.abort();
}

#[tokio::test]
async fn over_the_cap_the_longest_idle_connection_makes_room() {
    let (listener, address) = listener().await;
    let limits = Limits { header_timeout: Duration::from_secs(30), idle_timeout: Duration::from_secs(30), ..SHORT };
    let server = hi(listener, limits);
    let mut first = TcpStream::connect(address).await.expect("connect");
    tokio::time::sleep(Duration::from_millis(50)).await;
    let mut second = TcpStream::connect(address).await.expect("connect");
    tokio::time::sleep(Duration::from_millis(50)).await;
    let mut third = TcpStream::connect(address).await.expect("connect");
    assert!(closed_within(&mut first, Duration::from_secs(2)).await, "the oldest idle one goes");
    assert!(!closed_within(&mut second, Duration::from_millis(100)).await);
    assert!(request(&mut third, "GET / HTTP/1.1\r\nHost: a\r\n\r\n").await.starts_with("HTTP/1.1 200"));
    server.abort();
}

#[tokio::test]
async fn when_every_connection_is_busy_a_new_one_is_shed() {
    let (listener, address) = listener().await;
    let limits = Limits { max_connections: 1, ..SHORT };
    let (release, wait) = tokio::sync::watch::channel(false);
    let server = serve_http(listener, "test", limits, move |_req| {
        let mut wait = wait.clone();
        async move {
            let _ = wait.wait_for(|go| *go).await;
            Response::new(Full::new(Bytes::from_static(b"done")))
        }
    });
    let mut busy = TcpStream::connect(address).await.expect("connect");
    busy.write_all(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n").await.expect("write");
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut shed = TcpStream::connect(address).await.expect("connect");
    assert!(closed_within(&mut shed, Duration::from_secs(2)).await, "no room: shed");
    // The busy one outlives its timeouts and gets its answer.
    tokio::time::sleep(Duration::from_millis(800)).await;
    release.send_replace(true);
    let mut buf = vec![0u8; 1024];
    let n = busy.read(&mut buf).await.expect("read");
    assert!(String::from_utf8_lossy(&buf[..n]).ends_with("done"));
    server.abort();
}

#[tokio::test]
async fn bodies_and_huge_headers_are_refused() {
    let (listener, address) = listener().await;
    let server = hi(listener, SHORT);
    let mut client = TcpStream::connect(address).await.expect("connect");
    let answer = request(&mut client, "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 100000000\r\n\r\n").await;
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    let mut client = TcpStream::connect(address).await.expect("connect");
    let answer = request(&mut client, "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n").await;
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    let mut client = TcpStream::connect(address).await.expect("connect");
    let huge = format!("GET / HTTP/1.1\r\nHost: a\r\nX-Big: {}\r\n\r\n", "a".repeat(MAX_HEADER_BYTES + 1));
    let _ = client.write_all(huge.as_bytes()).await;
    let mut buf = vec![0u8; 4096];
    let answer = match tokio::time::timeout(Duration::from_secs(5), client.read(&mut buf)).await {
        Ok(Ok(n)) => String::from_utf8_lossy(&buf[..n]).into_owned(),
        other => format!("{other:?}"),
    };
    assert!(!answer.contains("200 OK"), "a header over the cap must not be answered: {answer}");
    server.abort();
}

#[tokio::test]
async fn incoming_passes_connections_and_ends_with_its_reader() {
    use tokio_stream::StreamExt;
    let (listener, address) = listener().await;
    let mut stream = incoming(listener, "test");
    let _client = TcpStream::connect(address).await.expect("connect");
    let accepted = tokio::time::timeout(Duration::from_secs(2), stream.next()).await.expect("in time");
    assert!(matches!(accepted, Some(Ok(_))));
}

#[test]
fn the_backoff_grows_to_a_second() {
    assert_eq!(backoff(1), Duration::from_millis(20));
    assert_eq!(backoff(100), Duration::from_secs(1));
    let emfile = std::io::Error::from_raw_os_error(rustix::io::Errno::MFILE.raw_os_error());
    assert!(out_of_descriptors(&emfile));
    assert!(!out_of_descriptors(&std::io::Error::from(std::io::ErrorKind::ConnectionAborted)));
}
