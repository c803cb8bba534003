//! A real PowerDNS Authoritative server (Debian's pdns-server with
//! pdns-backend-sqlite3) on free loopback ports: DNS on one, the webserver
//! with the HTTP API and an API key on another, its zones in an SQLite
//! database made from the schema the package ships. The test zone is
//! created through the API, as an operator's tooling would.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use super::net::free_port;
use super::procs::{require, write, Proc};

/// Where Debian's pdns-backend-sqlite3 puts the schema.
const SCHEMAS: [&str; 2] = [
    "/usr/share/pdns-backend-sqlite3/schema/schema.sqlite3.sql",
    "/usr/share/doc/pdns-backend-sqlite3/schema.sqlite3.sql",
];

pub struct PowerDns {
    /// DNS, UDP and TCP.
    pub address: SocketAddr,
    /// The API's base URL, `http://127.0.0.1:<port>`.
    pub api_url: String,
    pub api_key: String,
    pub zone: String,
    pub proc: Proc,
}

/// `name` on PATH, or in /usr/sbin (where Debian puts pdns_server, and
/// which a non-root PATH may lack).
fn find(name: &str, hint: &str) -> PathBuf {
    let sbin = Path::new("/usr/sbin").join(name);
    if sbin.is_file() {
        sbin
    } else {
        require(name, hint)
    }
}

impl PowerDns {
    /// `pdns_server` serving `zone` (NS `ns1.<zone>` at 127.0.0.1, apex A
    /// 127.0.0.1), created through the API; caches off so every query sees
    /// the API's last change.
    pub async fn start(dir: &Path, zone: &str) -> Self {
        let hint = "apt-get install pdns-server pdns-backend-sqlite3";
        let server = find("pdns_server", hint);
        let sqlite = find("sqlite3", "apt-get install sqlite3");
        let schema = SCHEMAS.iter().map(Path::new).find(|p| p.is_file()).unwrap_or_else(|| {
            panic!("no PowerDNS SQLite schema in {SCHEMAS:?}: {hint} (`make setup` installs everything)")
        });
        let db = dir.join("pdns.sqlite3");
        let schema_sql = std::fs::File::open(schema).unwrap_or_else(|e| panic!("{}: {e}", schema.display()));
        let made = Command::new(&sqlite).arg(&db).stdin(schema_sql).output().unwrap_or_else(|e| panic!("sqlite3: {e}"));
        assert!(made.status.success(), "sqlite3 {}: {}", db.display(), String::from_utf8_lossy(&made.stderr));

        let (port, api_port) = (free_port(), free_port());
        let api_key = format!("pdns-test-{:016x}", rand::random::<u64>());
        // pdns_server reads <config-dir>/pdns.conf, and nothing from /etc.
        write(
            &dir.join("pdns.conf"),
            &format!(
                "launch=gsqlite3\ngsqlite3-database={db}\nlocal-address=127.0.0.1\nlocal-port={port}\n\
                 api=yes\napi-key={api_key}\nwebserver=yes\nwebserver-address=127.0.0.1\nwebserver-port={api_port}\n\
                 webserver-allow-from=127.0.0.0/8\nsocket-dir={d}\ndaemon=no\nguardian=no\ndisable-syslog=yes\n\
                 security-poll-suffix=\ncache-ttl=0\nnegquery-cache-ttl=0\nquery-cache-ttl=0\nconsistent-backends=yes\n\
                 loglevel=5\n",
                db = db.display(),
                d = dir.display(),
            ),
        );
        let mut proc =
            Proc::spawn("pdns_server", Command::new(server).arg(format!("--config-dir={}", dir.display())), dir);
        let api_url = format!("http://127.0.0.1:{api_port}");
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        loop {
            proc.assert_running();
            let log = std::fs::read_to_string(&proc.log).unwrap_or_default();
            assert!(
                !log.contains("Address already in use"),
                "pdns_server could not listen on {port} or {api_port} (taken by another process):\n{}",
                proc.tail()
            );
            if log.contains("ready to distribute questions") {
                if let Ok((200, _)) = api(&api_url, &api_key, "GET", "/api/v1/servers/localhost", None).await {
                    break;
                }
            }
            assert!(std::time::Instant::now() < deadline, "pdns_server did not start:\n{}", proc.tail());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let body = serde_json::json!({
            "name": format!("{zone}."),
            "kind": "Native",
            "nameservers": [format!("ns1.{zone}.")],
            "rrsets": [
                {"name": format!("ns1.{zone}."), "type": "A", "ttl": 60, "changetype": "REPLACE",
                 "records": [{"content": "127.0.0.1", "disabled": false}]},
                {"name": format!("{zone}."), "type": "A", "ttl": 60, "changetype": "REPLACE",
                 "records": [{"content": "127.0.0.1", "disabled": false}]},
            ],
        });
        let created = api(&api_url, &api_key, "POST", "/api/v1/servers/localhost/zones", Some(&body)).await;
        assert!(matches!(created, Ok((201, _))), "creating zone {zone}: {created:?}\n{}", proc.tail());
        Self { address: SocketAddr::from(([127, 0, 0, 1], port)), api_url, api_key, zone: zone.to_owned(), proc }
    }
}

/// One API call: (status, body).
pub async fn api(
    base: &str,
    key: &str,
    method: &str,
    path: &str,
    body: Option<&serde_json::Value>,
) -> Result<(u16, String), String> {
    let port = base.rsplit(':').next().and_then(|p| p.parse::<u16>().ok()).ok_or("no port in the URL")?;
    let body = body.map(ToString::to_string).unwrap_or_default();
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nX-API-Key: {key}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    super::net::raw_request(("127.0.0.1", port), request.as_bytes()).await
}
