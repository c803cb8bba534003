//! Clients the way a user's tools see the stack: raw HTTP/1.1, a TLS client
//! that verifies against a given root, and a small upstream app that reports
//! exactly what reached it.

use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::procs::Proc;

/// A port free on 127.0.0.1 right now, and reserved for this process.
///
/// Ports come from 10000-32767, below Linux's ephemeral range (32768+), so
/// an outgoing connection of Envoy, Pebble or another test cannot take one
/// between this check and the component's bind. Each port is drawn at
/// random and reserved with a lock on `$TMPDIR/proxy-acme-test-ports/<port>`
/// held until this process exits (the kernel drops it even after a
/// `kill -9`): nextest runs every test in its own process, and two of them
/// must never hand out the same port before either component binds it
/// (seen once in CI: two Envoys, one admin port).
pub fn free_port() -> u16 {
    use std::sync::{Mutex, OnceLock};
    static HELD: OnceLock<Mutex<std::collections::HashMap<u16, std::fs::File>>> = OnceLock::new();
    let held = HELD.get_or_init(|| Mutex::new(std::collections::HashMap::new()));
    let mut held = held.lock().unwrap_or_else(|e| e.into_inner());
    let dir = std::env::temp_dir().join("proxy-acme-test-ports");
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    for _ in 0..20_000 {
        let port: u16 = rand::random_range(10_000..32_768);
        if held.contains_key(&port) {
            continue;
        }
        let path = dir.join(port.to_string());
        let Ok(lock) = std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(&path) else {
            continue;
        };
        if rustix::fs::flock(&lock, rustix::fs::FlockOperation::NonBlockingLockExclusive).is_err() {
            continue;
        }
        let free = std::net::TcpListener::bind(("127.0.0.1", port)).is_ok()
            && std::net::UdpSocket::bind(("127.0.0.1", port)).is_ok();
        if free {
            held.insert(port, lock);
            return port;
        }
    }
    panic!("no free port in 10000-32767")
}

/// Waits until something accepts on `port`, failing with `proc`'s log.
pub fn wait_for_port(port: u16, timeout: Duration, proc: &mut Proc) {
    let deadline = std::time::Instant::now() + timeout;
    while std::time::Instant::now() < deadline {
        proc.assert_running();
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("{} did not listen on {port} within {timeout:?}:\n{}", proc.name, proc.tail());
}

/// A rustls client config trusting only `root_pem`.
pub fn tls_config(root_pem: &str, alpn: &[&str]) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(root_pem.as_bytes()) {
        roots.add(cert.unwrap_or_else(|e| panic!("root PEM: {e}"))).unwrap_or_else(|e| panic!("root: {e}"));
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap_or_else(|e| panic!("{e}"))
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.as_bytes().to_vec()).collect();
    Arc::new(config)
}

/// Connects with SNI `sni`, verifies the chain against the config's roots and
/// returns the leaf certificate served.
pub async fn tls_leaf(
    config: Arc<rustls::ClientConfig>,
    addr: (&str, u16),
    sni: &str,
) -> Result<CertificateDer<'static>, String> {
    let tcp = TcpStream::connect(addr).await.map_err(|e| format!("connect {addr:?}: {e}"))?;
    let name = ServerName::try_from(sni.to_owned()).map_err(|e| e.to_string())?;
    let tls = tokio_rustls::TlsConnector::from(config)
        .connect(name, tcp)
        .await
        .map_err(|e| format!("TLS handshake with SNI {sni}: {e}"))?;
    let (_, conn) = tls.get_ref();
    conn.peer_certificates()
        .and_then(|c| c.first())
        .map(|c| c.clone().into_owned())
        .ok_or_else(|| "no peer certificate".to_owned())
}

/// `GET path` over TLS with HTTP/1.0 (no chunking), returning status and body.
pub async fn https_get(config: Arc<rustls::ClientConfig>, addr: (&str, u16), sni: &str, path: &str) -> (u16, String) {
    let (status, _, body) = https_get_with_headers(config, addr, sni, path).await;
    (status, body)
}

/// `GET path` over TLS with HTTP/1.0, returning status, headers (names
/// lower-cased, in order) and body: for checking `Retry-After` and
/// content types. It sends `Host: <sni>:<port>`, as real clients do:
/// Pebble builds its directory URLs from the Host header.
pub async fn https_get_with_headers(
    config: Arc<rustls::ClientConfig>,
    addr: (&str, u16),
    sni: &str,
    path: &str,
) -> (u16, Vec<(String, String)>, String) {
    let tcp = TcpStream::connect(addr).await.unwrap_or_else(|e| panic!("connect {addr:?}: {e}"));
    let name = ServerName::try_from(sni.to_owned()).unwrap_or_else(|e| panic!("{e}"));
    let mut tls = tokio_rustls::TlsConnector::from(config)
        .connect(name, tcp)
        .await
        .unwrap_or_else(|e| panic!("TLS to {addr:?}: {e}"));
    let request = format!("GET {path} HTTP/1.0\r\nHost: {sni}:{}\r\n\r\n", addr.1);
    tls.write_all(request.as_bytes()).await.unwrap_or_else(|e| panic!("write to {addr:?}: {e}"));
    let mut raw = Vec::new();
    match tokio::time::timeout(Duration::from_secs(10), tls.read_to_end(&mut raw)).await {
        Ok(Ok(_)) => {}
        // A peer closing without close_notify still gave us the response.
        Ok(Err(_)) if !raw.is_empty() => {}
        Ok(Err(e)) => panic!("read from {addr:?}: {e}"),
        Err(_) => panic!("response from {addr:?} timed out"),
    }
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or_else(|| panic!("no HTTP response: {text:?}"));
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad status line: {status_line:?}"));
    let headers = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.trim().to_ascii_lowercase(), value.trim().to_owned()))
        .collect();
    (status, headers, body.to_owned())
}

/// The first value of header `name` (any case) in `headers`.
pub fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
}

/// A plain HTTP/1.1 request with `Connection: close`; `extra` raw header lines.
pub async fn http_get(addr: (&str, u16), host: &str, path: &str, extra: &[&str]) -> Result<(u16, String), String> {
    let mut request = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n");
    for line in extra {
        request.push_str(line);
        request.push_str("\r\n");
    }
    request.push_str("\r\n");
    raw_request(addr, request.as_bytes()).await
}

/// Sends raw bytes (hostile requests included) and parses the answer.
pub async fn raw_request(addr: (&str, u16), request: &[u8]) -> Result<(u16, String), String> {
    let mut tcp = TcpStream::connect(addr).await.map_err(|e| format!("connect {addr:?}: {e}"))?;
    let raw = exchange(&mut tcp, request).await?;
    parse_response(&raw)
}

async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(stream: &mut S, request: &[u8]) -> Result<Vec<u8>, String> {
    stream.write_all(request).await.map_err(|e| e.to_string())?;
    let mut raw = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut raw)).await;
    match read {
        Ok(Ok(_)) => Ok(raw),
        // A TLS peer closing without close_notify still gave us the response.
        Ok(Err(_)) if !raw.is_empty() => Ok(raw),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("response timed out".into()),
    }
}

fn parse_response(raw: &[u8]) -> Result<(u16, String), String> {
    let text = String::from_utf8_lossy(raw);
    let (head, body) = text.split_once("\r\n\r\n").ok_or_else(|| format!("no HTTP response: {text:?}"))?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("bad status line: {head:?}"))?;
    let chunked = head.lines().any(|l| l.to_ascii_lowercase().starts_with("transfer-encoding: chunked"));
    Ok((status, if chunked { dechunk(body) } else { body.to_owned() }))
}

fn dechunk(body: &str) -> String {
    let mut out = String::new();
    let mut rest = body;
    while let Some((size, after)) = rest.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else { break };
        if n == 0 || after.len() < n {
            break;
        }
        out.push_str(&after[..n]);
        rest = after[n..].trim_start_matches("\r\n");
    }
    out
}

/// The upstream "app": answers every request with what it saw, so a test can
/// check that a request passed through Envoy unchanged.
pub async fn start_echo_app(port: u16) -> tokio::task::JoinHandle<()> {
    let listener = TcpListener::bind(("127.0.0.1", port)).await.unwrap_or_else(|e| panic!("app bind: {e}"));
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
                let head = String::from_utf8_lossy(&buf).into_owned();
                let head = head.split("\r\n\r\n").next().unwrap_or_default().to_owned();
                let response = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{head}",
                    head.len()
                );
                let _ = stream.write_all(response.as_bytes()).await;
            });
        }
    })
}

/// Accepts any certificate: for looking at what is served when it is not
/// supposed to verify (a placeholder, an expired certificate). Handshake
/// signatures are still checked, unless `check_signatures` is off: webpki
/// refuses to parse a certificate with an unknown critical extension, which
/// the TLS-ALPN-01 certificate has by design (RFC 8737 §3).
#[derive(Debug)]
struct AcceptAnything(Arc<rustls::crypto::CryptoProvider>, bool);

impl rustls::client::danger::ServerCertVerifier for AcceptAnything {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        if !self.1 {
            return Ok(rustls::client::danger::HandshakeSignatureValid::assertion());
        }
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        if !self.1 {
            return Ok(rustls::client::danger::HandshakeSignatureValid::assertion());
        }
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// A client config that verifies nothing (see [`AcceptAnything`]).
pub fn tls_config_unverified() -> Arc<rustls::ClientConfig> {
    unverified(&[], true)
}

/// A TLS-ALPN-01 validator's view: offers `acme-tls/1` and accepts the
/// self-signed challenge certificate (its contents are the test's to check).
pub fn tls_config_validator() -> Arc<rustls::ClientConfig> {
    unverified(&["acme-tls/1"], false)
}

fn unverified(alpn: &[&str], check_signatures: bool) -> Arc<rustls::ClientConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .unwrap_or_else(|e| panic!("{e}"))
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AcceptAnything(provider, check_signatures)))
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.as_bytes().to_vec()).collect();
    Arc::new(config)
}

/// Hex serial (lower case, no colons) of a DER certificate.
pub fn serial_of(der: &[u8]) -> String {
    use x509_parser::prelude::{FromDer, X509Certificate};
    let (_, cert) = X509Certificate::from_der(der).unwrap_or_else(|e| panic!("served certificate: {e}"));
    cert.raw_serial_as_string().replace(':', "")
}

/// A kept-alive HTTPS connection, to show that renewals do not cut
/// established connections.
pub struct KeptAlive {
    stream: tokio_rustls::client::TlsStream<TcpStream>,
    host: String,
}

impl KeptAlive {
    pub async fn open(config: Arc<rustls::ClientConfig>, addr: (&str, u16), sni: &str) -> Self {
        let tcp = TcpStream::connect(addr).await.unwrap_or_else(|e| panic!("connect {addr:?}: {e}"));
        let name = ServerName::try_from(sni.to_owned()).unwrap_or_else(|e| panic!("{e}"));
        let stream = tokio_rustls::TlsConnector::from(config)
            .connect(name, tcp)
            .await
            .unwrap_or_else(|e| panic!("TLS to {addr:?}: {e}"));
        Self { stream, host: sni.to_owned() }
    }

    /// The serial of the certificate this connection was opened with.
    pub fn serial(&self) -> String {
        let (_, conn) = self.stream.get_ref();
        let leaf = conn.peer_certificates().and_then(|c| c.first()).unwrap_or_else(|| panic!("no peer certificate"));
        serial_of(leaf)
    }

    /// One request on the same connection; returns the status.
    pub async fn get(&mut self, path: &str) -> Result<u16, String> {
        let request = format!("GET {path} HTTP/1.1\r\nHost: {}\r\n\r\n", self.host);
        self.stream.write_all(request.as_bytes()).await.map_err(|e| e.to_string())?;
        let mut raw = Vec::new();
        let mut chunk = [0u8; 4096];
        loop {
            let n = tokio::time::timeout(Duration::from_secs(10), self.stream.read(&mut chunk))
                .await
                .map_err(|_| "timed out".to_owned())?
                .map_err(|e| e.to_string())?;
            if n == 0 {
                return Err("connection closed".into());
            }
            raw.extend_from_slice(&chunk[..n]);
            let text = String::from_utf8_lossy(&raw).into_owned();
            let Some((head, body)) = text.split_once("\r\n\r\n") else { continue };
            let length = head
                .lines()
                .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().to_owned()))
                .and_then(|v| v.parse::<usize>().ok())
                .unwrap_or(0);
            if body.len() >= length {
                return parse_response(&raw).map(|(status, _)| status);
            }
        }
    }
}

/// Verifies a PEM chain (leaf first) for `name` against `root_pem`, as a TLS
/// client would; returns the leaf's serial.
pub fn verify_chain(root_pem: &str, fullchain_pem: &str, name: &str) -> Result<String, String> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(root_pem.as_bytes()) {
        roots.add(cert.map_err(|e| e.to_string())?).map_err(|e| e.to_string())?;
    }
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(fullchain_pem.as_bytes())
        .collect::<Result<_, _>>()
        .map_err(|e| e.to_string())?;
    let (leaf, intermediates) = chain.split_first().ok_or("empty chain")?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = rustls::client::WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
        .build()
        .map_err(|e| e.to_string())?;
    let server_name = ServerName::try_from(name.to_owned()).map_err(|e| e.to_string())?;
    rustls::client::danger::ServerCertVerifier::verify_server_cert(
        verifier.as_ref(),
        leaf,
        intermediates,
        &server_name,
        &[],
        rustls::pki_types::UnixTime::now(),
    )
    .map_err(|e| e.to_string())?;
    Ok(serial_of(leaf))
}

/// The subject alternative names of a DER certificate, sorted, as
/// x509-parser prints them (`DNSName(a.example)`).
pub fn sans(der: &[u8]) -> Vec<String> {
    use x509_parser::prelude::{FromDer, X509Certificate};
    let (_, cert) = X509Certificate::from_der(der).unwrap_or_else(|e| panic!("{e}"));
    let mut names: Vec<String> = cert
        .subject_alternative_name()
        .ok()
        .flatten()
        .map(|san| san.value.general_names.iter().map(ToString::to_string).collect())
        .unwrap_or_default();
    names.sort();
    names
}

/// The TXT values the DNS server at `server` answers at `name` (sorted).
pub async fn txt_values(server: std::net::SocketAddr, name: &str) -> Vec<String> {
    use hickory_client::client::{Client, ClientHandle};
    use hickory_proto::rr::{DNSClass, Name, RData, RecordType};
    use hickory_proto::runtime::TokioRuntimeProvider;
    use hickory_proto::udp::UdpClientStream;
    use std::str::FromStr;
    let stream = UdpClientStream::builder(server, TokioRuntimeProvider::default()).build();
    let (mut client, background) = Client::connect(stream).await.unwrap_or_else(|e| panic!("{e}"));
    tokio::spawn(background);
    let name = Name::from_str(name).unwrap_or_else(|e| panic!("{e}"));
    let response = client.query(name, DNSClass::IN, RecordType::TXT).await.unwrap_or_else(|e| panic!("{e}"));
    let mut values: Vec<String> = response
        .answers()
        .iter()
        .filter_map(|r| match r.data() {
            RData::TXT(txt) => Some(txt.to_string()),
            _ => None,
        })
        .collect();
    values.sort();
    values
}

/// The sidecar's `/metrics` on `port` as `series -> value` (`name{labels}`
/// exactly as exposed); panics unless it answers 200.
pub async fn scrape_metrics(port: u16) -> std::collections::BTreeMap<String, f64> {
    let (status, body) = http_get(("127.0.0.1", port), "localhost", "/metrics", &[]).await.unwrap_or_default();
    assert_eq!(status, 200, "{body}");
    body.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.rsplit_once(' ').and_then(|(k, v)| v.parse().ok().map(|v| (k.to_owned(), v))))
        .collect()
}
