//! A real BIND 9 (`named`, Debian's bind9) on a free loopback port, primary
//! for one test zone, taking RFC 2136 updates signed with a TSIG key.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use super::net::free_port;
use super::procs::{require, write, Proc};

pub struct Bind {
    pub address: SocketAddr,
    pub zone: String,
    pub key_name: String,
    /// Base64 HMAC-SHA256 secret of `key_name`.
    pub secret: String,
    pub secret_file: PathBuf,
    pub proc: Proc,
}

impl Bind {
    /// `named -g` for `zone` (NS `ns1.<zone>` at 127.0.0.1, apex
    /// A record 127.0.0.1), updates allowed for TXT with the key.
    pub fn start(dir: &Path, zone: &str) -> Self {
        use base64::Engine;
        let named = require("named", "apt-get install bind9");
        let port = free_port();
        let key_name = "proxy-acme-test".to_owned();
        let secret = base64::engine::general_purpose::STANDARD.encode(rand::random::<[u8; 32]>());
        let d = dir.display();
        write(
            &dir.join(format!("{zone}.zone")),
            &format!(
                "$TTL 60\n@ IN SOA ns1.{zone}. hostmaster.{zone}. 1 60 60 600 60\n@ IN NS ns1.{zone}.\n\
                 ns1 IN A 127.0.0.1\n@ IN A 127.0.0.1\n"
            ),
        );
        write(
            &dir.join("named.conf"),
            &format!(
                "options {{\n  directory \"{d}\";\n  pid-file \"{d}/named.pid\";\n  listen-on port {port} {{ 127.0.0.1; }};\n  \
                 listen-on-v6 {{ none; }};\n  recursion no;\n  allow-query {{ any; }};\n  dnssec-validation no;\n  \
                 notify no;\n}};\ncontrols {{ }};\n\
                 key \"{key_name}\" {{ algorithm hmac-sha256; secret \"{secret}\"; }};\n\
                 zone \"{zone}\" {{\n  type primary;\n  file \"{d}/{zone}.zone\";\n  \
                 update-policy {{ grant {key_name} zonesub TXT; }};\n}};\n"
            ),
        );
        let secret_file = dir.join("tsig.secret");
        write(&secret_file, &format!("{secret}\n"));
        let mut proc = Proc::spawn(
            "named",
            Command::new(named).arg("-g").arg("-c").arg(dir.join("named.conf")).arg("-n").arg("1"),
            dir,
        );
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        loop {
            proc.assert_running();
            let log = std::fs::read_to_string(&proc.log).unwrap_or_default();
            assert!(
                !log.contains("address in use"),
                "named could not listen on port {port} (taken by another process):\n{}",
                proc.tail()
            );
            if log.contains("running") && answers_soa(port, zone) {
                break;
            }
            assert!(std::time::Instant::now() < deadline, "named did not start:\n{}", proc.tail());
            std::thread::sleep(Duration::from_millis(50));
        }
        Self {
            address: SocketAddr::from(([127, 0, 0, 1], port)),
            zone: zone.to_owned(),
            key_name,
            secret,
            secret_file,
            proc,
        }
    }
}

impl Bind {
    /// Sends `commands` (`update add <record>` lines, as an operator types
    /// them) to this BIND as one signed dynamic update, the way an operator
    /// would: `server`, `zone` and a default `ttl 60` come first, `send`
    /// last, through BIND's `nsupdate` (Debian `bind9-dnsutils`).
    pub fn nsupdate(&self, commands: &str) -> Result<(), String> {
        use std::io::Write;
        let script = format!(
            "server {} {}\nzone {}\nttl 60\n{}\nsend\n",
            self.address.ip(),
            self.address.port(),
            self.zone,
            commands.trim_end()
        );
        let key = format!("hmac-sha256:{}:{}", self.key_name, self.secret);
        // BIND's own client, as an operator would type it.
        let mut command = Command::new(require("nsupdate", "apt-get install bind9-dnsutils"));
        let mut child = command
            .arg("-y")
            .arg(&key)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .map_err(|e| format!("nsupdate: {e}"))?;
        child
            .stdin
            .take()
            .ok_or("nsupdate: no stdin")?
            .write_all(script.as_bytes())
            .map_err(|e| format!("nsupdate: {e}"))?;
        let out = child.wait_with_output().map_err(|e| format!("nsupdate: {e}"))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "nsupdate {}: {}{}\n--- script\n{script}",
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ))
        }
    }
}

/// Whether the server on `port` answers the zone's SOA with authority.
fn answers_soa(port: u16, zone: &str) -> bool {
    let zone = zone.to_owned();
    std::thread::spawn(move || {
        use std::str::FromStr;
        let Ok(runtime) = tokio::runtime::Builder::new_current_thread().enable_all().build() else { return false };
        runtime.block_on(async move {
            use hickory_client::client::{Client, ClientHandle};
            let server = SocketAddr::from(([127, 0, 0, 1], port));
            let stream = hickory_proto::udp::UdpClientStream::builder(
                server,
                hickory_proto::runtime::TokioRuntimeProvider::default(),
            )
            .with_timeout(Some(Duration::from_secs(1)))
            .build();
            let Ok((mut client, background)) = Client::connect(stream).await else { return false };
            tokio::spawn(background);
            let Ok(name) = hickory_proto::rr::Name::from_str(&format!("{zone}.")) else { return false };
            match client.query(name, hickory_proto::rr::DNSClass::IN, hickory_proto::rr::RecordType::SOA).await {
                Ok(response) => response.authoritative() && !response.answers().is_empty(),
                Err(_) => false,
            }
        })
    })
    .join()
    .unwrap_or(false)
}
