//! Several replicas on one shared etcd store, all real processes: a
//! 3-member etcd cluster, 3 sidecars, 3 Envoys on the shipped bootstrap and
//! one Pebble whose HTTP-01 and TLS-ALPN-01 validations all go to replica
//! 2's Envoy, so every certificate ordered by replica 0 or 1 is proven
//! through a replica that did not order it.
//!
//! One test, in phases, since the cluster and the fleet take a while to
//! start: exactly one order per certificate with 3 replicas asking at once;
//! a lock holder SIGKILLed mid-order and the order taken over; one etcd
//! member down; all of them down (Envoys keep serving, sidecars not ready,
//! no orders); etcd back (caught up with no operator action).

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use proxy_acme_e2e::etcd::EtcdCluster;
use proxy_acme_e2e::*;

const CERTS: usize = 20;
const PREFIX: &str = "/proxy-acme-test/";
const KILL_NAME: &str = "takeover";
const KILL_DOMAIN: &str = "takeover.replicas.test";
/// Validated with TLS-ALPN-01, also at replica 2.
const ALPN_NAME: &str = "alpn";
const ALPN_DOMAIN: &str = "alpn.replicas.test";
/// The replica whose Envoy Pebble validates at.
const VALIDATED_AT: usize = 2;

fn name(i: usize) -> String {
    format!("c{i:02}")
}

fn domain(i: usize) -> String {
    format!("c{i:02}.replicas.test")
}

struct Replica {
    dir: PathBuf,
    ports: StackPorts,
    config: String,
    sidecar: Proc,
    _envoy: Envoy,
}

impl Replica {
    async fn served_serial(&self, root: &str, sni: &str) -> Result<String, String> {
        let der = tls_leaf(tls_config(root, &[]), ("127.0.0.1", self.ports.https), sni).await?;
        Ok(serial_of(&der))
    }

    /// Waits until this replica's Envoy serves `sni` with a serial other than `old`.
    async fn wait_for_new_serial(&self, root: &str, sni: &str, old: &str, timeout: Duration) -> Result<(), String> {
        eventually(timeout, || async {
            match self.served_serial(root, sni).await? {
                serial if serial == old => Err("old serial".to_owned()),
                _ => Ok(()),
            }
        })
        .await
    }

    async fn readyz(&self) -> (u16, String) {
        http_get(("127.0.0.1", self.ports.ops), "localhost", "/readyz", &[]).await.unwrap_or((0, String::new()))
    }

    fn cli(&self, args: &[&str]) -> (i32, String) {
        let out = std::process::Command::new(proxy_acme_bin())
            .args(args)
            .arg("--config")
            .arg(self.dir.join("proxy-acme.toml"))
            .output()
            .unwrap_or_else(|e| panic!("run proxy-acme: {e}"));
        let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        (out.status.code().unwrap_or(-1), text)
    }
}

/// Pebble's count of lines starting with `what` in its log.
fn pebble_count(pebble: &Pebble, what: &str) -> usize {
    std::fs::read_to_string(&pebble.pebble.log).unwrap_or_default().lines().filter(|l| l.contains(what)).count()
}

/// The DNS-01 hook for the take-over certificate: it waits until the test
/// creates `go`, then publishes in challtestsrv, unless the sidecar that
/// started it has died in the meantime (an orphan must not overwrite the
/// record of the replica that took over).
fn write_hook(path: &Path, go: &Path, log: &Path, management: u16) {
    let script = format!(
        "#!/usr/bin/env python3\nimport json, os, sys, time, urllib.request\n\
         action, fqdn, value = sys.argv[1:4]\n\
         parent = os.getppid()\n\
         open('{log}', 'a').write(f'{{action}} {{fqdn}} {{value}} {{parent}}\\n')\n\
         while action == 'present' and not os.path.exists('{go}'):\n    time.sleep(0.1)\n\
         if os.getppid() != parent:\n    sys.exit(0)\n\
         path, body = ('/set-txt', {{'host': fqdn, 'value': value}}) if action == 'present' else ('/clear-txt', {{'host': fqdn}})\n\
         req = urllib.request.Request('http://127.0.0.1:{management}' + path, data=json.dumps(body).encode(), method='POST')\n\
         urllib.request.urlopen(req, timeout=10)\n",
        log = log.display(),
        go = go.display(),
    );
    std::fs::write(path, script).unwrap_or_else(|e| panic!("{e}"));
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap_or_else(|e| panic!("{e}"));
}

/// Who holds the lock of certificate `name` (etcd, read directly).
async fn lock_holder(endpoints: &[String], name: &str) -> Option<String> {
    let mut client = etcd_client::Client::connect(endpoints, None).await.ok()?;
    let key = format!("{PREFIX}locks/certificates/{name}");
    let response = client.get(key, None).await.ok()?;
    response.kvs().first().map(|kv| String::from_utf8_lossy(kv.value()).into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_replicas_share_one_etcd_store() {
    let tmp = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let root_dir = tmp.path();
    let mut etcd = EtcdCluster::start(root_dir, 3).await;
    let endpoints = etcd.endpoints();
    let ports: Vec<StackPorts> = (0..3).map(|_| StackPorts::free()).collect();
    let pebble_dir = root_dir.join("pebble");
    std::fs::create_dir_all(&pebble_dir).unwrap_or_else(|e| panic!("{e}"));
    // Every validation reaches replica 2's Envoy; nonces are never refused,
    // so each order Pebble records is one a replica meant.
    let options = PebbleOptions { nonce_reject: Some(0), ..PebbleOptions::default() };
    let pebble = Pebble::start_with(&pebble_dir, ports[VALIDATED_AT].http, ports[VALIDATED_AT].https, &options);
    let root = pebble.root_pem().await;

    let key_file = root_dir.join("store.key");
    write(&key_file, "q83vEjRWeJq7zN3uASNFZ4mrze8BI0VniavN7wEjRWc=\n");
    std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o600)).unwrap_or_else(|e| panic!("{e}"));
    let (hook, go, hook_log) = (root_dir.join("hook.py"), root_dir.join("go"), root_dir.join("hook.log"));
    write_hook(&hook, &go, &hook_log, pebble.challtestsrv_management);

    let (mut prepared, mut replicas) = (Vec::new(), Vec::new());
    for (i, ports) in ports.iter().enumerate() {
        let dir = root_dir.join(format!("replica-{i}"));
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
        let mut names: Vec<String> = (0..CERTS).map(name).collect();
        names.push(KILL_NAME.to_owned());
        names.push(ALPN_NAME.to_owned());
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        let bootstrap = with_secrets(shipped_envoy_config(ports, &dir.join("sds.sock")), &names);
        let envoy = Envoy::start(&dir, &bootstrap, ports.admin).await;
        let mut certificates: String = (0..CERTS).map(|c| certificate(&name(c), &[&domain(c)], "pebble")).collect();
        certificates.push_str(&format!(
            "[resolvers.alpn]\nca_server = \"{}\"\nca_certificate = \"{}\"\ntls_challenge = {{}}\n\n{}",
            pebble.directory_url(),
            pebble.minica.root_pem_path.display(),
            certificate(ALPN_NAME, &[ALPN_DOMAIN], "alpn"),
        ));
        // The take-over certificate is managed by replicas 1 and 2 only.
        if i > 0 {
            certificates.push_str(&format!(
                "[resolvers.dns]\nemail = \"ops@proxy-acme.test\"\nca_server = \"{}\"\nca_certificate = \"{}\"\n\
                 [resolvers.dns.dns_challenge]\ncheck_all_nameservers = false\nresolvers = [\"127.0.0.1:{}\"]\n\
                 timeout_secs = 30\ninterval_secs = 1\n[resolvers.dns.dns_challenge.exec]\nprogram = \"{}\"\ntimeout_secs = 300\n\n{}",
                pebble.directory_url(),
                pebble.minica.root_pem_path.display(),
                pebble.dns_port,
                hook.display(),
                certificate(KILL_NAME, &[KILL_DOMAIN], "dns"),
            ));
        }
        let endpoints_toml: Vec<String> = endpoints.iter().map(|e| format!("\"{e}\"")).collect();
        certificates.push_str(&format!(
            "\n[storage.etcd]\nendpoints = [{}]\nprefix = \"{PREFIX}\"\nreplica = \"replica-{i}\"\n\
             encryption_key_file = \"{}\"\nlock_ttl_secs = 3\ntimeout_secs = 2\n",
            endpoints_toml.join(", "),
            key_file.display()
        ));
        let config = sidecar_config(&dir, ports, &pebble, "", &certificates).replacen(
            "[storage]\n",
            "[storage]\nstore = \"etcd\"\n",
            1,
        );
        prepared.push((dir, *ports, config, envoy));
    }
    // The three sidecars start together and all ask for every certificate.
    for (dir, ports, config, envoy) in prepared {
        let sidecar = start_sidecar(&dir, &config);
        replicas.push(Replica { dir, ports, config, sidecar, _envoy: envoy });
    }
    let tails = |replicas: &[Replica]| -> String {
        let tail = |r: &Replica| {
            let log = std::fs::read_to_string(&r.sidecar.log).unwrap_or_default();
            let lines: Vec<&str> = log.lines().filter(|l| !l.contains("deploy::sds: SDS")).collect();
            lines[lines.len().saturating_sub(30)..].join("\n")
        };
        replicas.iter().map(|r| format!("--- {}\n{}\n", r.dir.display(), tail(r))).collect()
    };

    // 1. Twenty certificates asked for by all three replicas at once: one
    //    order each, every Envoy serves every one.
    for replica in &replicas {
        for sni in (0..CERTS).map(domain).chain([ALPN_DOMAIN.to_owned()]) {
            let served = eventually(Duration::from_secs(120), || replica.served_serial(&root, &sni)).await;
            if let Err(e) = served {
                panic!("{sni} not served by {}: {e}\n{}", replica.dir.display(), tails(&replicas));
            }
        }
    }
    assert_eq!(pebble_count(&pebble, "Issued certificate serial"), CERTS + 1, "one certificate per name");
    // The take-over certificate's first order is placed and held in its hook.
    let orders = eventually(Duration::from_secs(30), || async {
        match pebble_count(&pebble, "Added order") {
            n if n == CERTS + 2 => Ok(()),
            n => Err(format!("{n} orders")),
        }
    })
    .await;
    orders.unwrap_or_else(|e| panic!("one order per certificate: {e}"));
    // No private key reaches etcd in the clear.
    let mut client = etcd_client::Client::connect(&endpoints, None).await.unwrap_or_else(|e| panic!("{e}"));
    let all =
        client.get(PREFIX, Some(etcd_client::GetOptions::new().with_prefix())).await.unwrap_or_else(|e| panic!("{e}"));
    let mut certificates_stored = 0;
    let mut stored_by = std::collections::BTreeSet::new();
    for kv in all.kvs() {
        let value = String::from_utf8_lossy(kv.value());
        assert!(!value.contains("PRIVATE KEY"), "{} holds a clear private key", String::from_utf8_lossy(kv.key()));
        if kv.key().starts_with(format!("{PREFIX}certificates/").as_bytes()) {
            certificates_stored += 1;
            let record: serde_json::Value = serde_json::from_slice(kv.value()).unwrap_or_default();
            stored_by.insert(record["replica"].as_str().unwrap_or_default().to_owned());
        }
    }
    assert_eq!(certificates_stored, CERTS + 1);
    // Orders placed by replicas 0 and 1 were proven through replica 2.
    let validator = format!("replica-{VALIDATED_AT}");
    assert!(
        stored_by.iter().any(|r| *r != validator),
        "every certificate was ordered by {validator} ({stored_by:?}); nothing was proven across replicas"
    );

    // Unknown tokens from the internet are answered from the replica's
    // watched copy of the board: not one etcd read.
    let validated = &replicas[VALIDATED_AT];
    let lookups = |source: &'static str| {
        let port = validated.ports.ops;
        async move {
            let (_, text) = http_get(("127.0.0.1", port), "localhost", "/metrics", &[]).await.unwrap_or_default();
            let series = format!("proxy_acme_challenge_board_lookups_total{{source=\"{source}\"}} ");
            text.lines().find_map(|l| l.strip_prefix(&series)).and_then(|v| v.trim().parse::<u64>().ok()).unwrap_or(0)
        }
    };
    let (copy_before, store_before) = (lookups("copy").await, lookups("store").await);
    for i in 0..300 {
        let path = format!("/.well-known/acme-challenge/random-token-{i}-{}", rand::random::<u64>());
        let (status, _) =
            http_get(("127.0.0.1", validated.ports.http), &domain(0), &path, &[]).await.unwrap_or_default();
        assert_eq!(status, 404, "{path}");
    }
    assert!(lookups("copy").await >= copy_before + 300, "the random tokens were looked up in the copy");
    assert_eq!(lookups("store").await, store_before, "an unknown token reached etcd");

    // 2. The replica holding the take-over certificate's lock is SIGKILLed
    //    mid-order (its DNS-01 hook is waiting); the other one takes over
    //    once the lease expires, resumes the same order, and only one
    //    certificate is issued.
    let holder = eventually(Duration::from_secs(30), || async {
        lock_holder(&endpoints, KILL_NAME).await.ok_or_else(|| "no lock holder yet".to_owned())
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", tails(&replicas)));
    let killed: usize = holder.trim_start_matches("replica-").parse().unwrap_or_else(|e| panic!("{holder}: {e}"));
    assert!(killed == 1 || killed == 2, "{holder} does not manage {KILL_NAME}");
    let other = 3 - killed;
    replicas[killed].sidecar.kill();
    write(&go, "");
    let served = eventually(Duration::from_secs(60), || replicas[other].served_serial(&root, KILL_DOMAIN)).await;
    let takeover_serial = served.unwrap_or_else(|e| panic!("no take-over: {e}\n{}", tails(&replicas)));
    assert_eq!(pebble_count(&pebble, "Issued certificate serial"), CERTS + 2, "issued twice");
    // The killed replica recorded its order in etcd: the take-over proves
    // and finalizes that same order (issue 21) rather than placing one more.
    assert_eq!(pebble_count(&pebble, "Added order"), CERTS + 2, "the abandoned order was not resumed");
    // The record the killed replica was publishing is removed by the one
    // that took over (its post outlived the replica).
    let hook_calls = std::fs::read_to_string(&hook_log).unwrap_or_default();
    let first_value = hook_calls
        .lines()
        .find_map(|l| l.strip_prefix("present ").and_then(|rest| rest.split(' ').nth(1)))
        .unwrap_or_else(|| panic!("no present call: {hook_calls}"));
    assert!(
        hook_calls.lines().any(|l| l.starts_with("cleanup ") && l.split(' ').nth(2) == Some(first_value)),
        "the killed replica's record was not removed: {hook_calls}"
    );
    let other_log = std::fs::read_to_string(&replicas[other].sidecar.log).unwrap_or_default();
    assert!(other_log.contains(&holder), "{other} never saw {holder} holding the lock");
    assert!(
        other_log.contains("downloaded the certificate of an interrupted order"),
        "{other} did not resume the order"
    );
    // The killed replica comes back and serves what the other stored.
    let config = replicas[killed].config.clone();
    replicas[killed].sidecar = start_sidecar(&replicas[killed].dir, &config);
    let back = eventually(Duration::from_secs(60), || async {
        let serial = replicas[killed].served_serial(&root, KILL_DOMAIN).await?;
        if serial == takeover_serial {
            Ok(())
        } else {
            Err(format!("serves {serial}"))
        }
    })
    .await;
    back.unwrap_or_else(|e| panic!("{e}\n{}", tails(&replicas)));

    // 3. One etcd member down: a forced renewal still happens, and reaches
    //    every Envoy through the store's watch.
    etcd.stop(2);
    let before = replicas[0].served_serial(&root, &domain(0)).await.unwrap_or_else(|e| panic!("{e}"));
    let (code, out) = replicas[0].cli(&["renew", &name(0), "--force"]);
    assert_eq!(code, 0, "{out}\n{}", tails(&replicas));
    for replica in &replicas {
        let renewed = replica.wait_for_new_serial(&root, &domain(0), &before, Duration::from_secs(20)).await;
        renewed.unwrap_or_else(|e| panic!("{}: {e}", replica.dir.display()));
    }

    // 4. All members down: every Envoy keeps serving, every sidecar reports
    //    not ready, and a renewal asked for is not ordered on its own.
    etcd.stop(0);
    etcd.stop(1);
    for replica in &replicas {
        let not_ready = eventually(Duration::from_secs(20), || async {
            match replica.readyz().await {
                (503, body) if body.contains("fail store") => Ok(()),
                other => Err(format!("{other:?}")),
            }
        })
        .await;
        not_ready.unwrap_or_else(|e| panic!("{} still ready: {e}", replica.dir.display()));
        for c in [1, 2] {
            replica.served_serial(&root, &domain(c)).await.unwrap_or_else(|e| panic!("{e}"));
        }
    }
    let orders = pebble_count(&pebble, "Added order");
    let before = replicas[1].served_serial(&root, &domain(1)).await.unwrap_or_else(|e| panic!("{e}"));
    let (code, out) = replicas[1].cli(&["renew", &name(1), "--force"]);
    assert_ne!(code, 0, "a renewal without the store: {out}");
    assert!(out.contains("shared store is unreachable"), "{out}");
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(pebble_count(&pebble, "Added order"), orders, "ordered without the lock");

    // 5. etcd back: every replica is ready again on its own, and the next
    //    renewal reaches every Envoy through the re-established watches.
    for i in 0..3 {
        etcd.restart(i);
    }
    for i in 0..3 {
        etcd.healthy(i).await;
    }
    for replica in &replicas {
        let ready = eventually(Duration::from_secs(30), || async {
            match replica.readyz().await {
                (200, _) => Ok(()),
                other => Err(format!("{other:?}")),
            }
        })
        .await;
        ready.unwrap_or_else(|e| panic!("{} not ready again: {e}", replica.dir.display()));
    }
    let (code, out) = replicas[1].cli(&["renew", &name(1), "--force"]);
    assert_eq!(code, 0, "{out}\n{}", tails(&replicas));
    for replica in &replicas {
        let renewed = replica.wait_for_new_serial(&root, &domain(1), &before, Duration::from_secs(30)).await;
        renewed.unwrap_or_else(|e| panic!("{}: {e}\n{}", replica.dir.display(), tails(&replicas)));
    }
    for replica in &mut replicas {
        replica.sidecar.assert_running();
    }
}
