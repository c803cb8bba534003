//! A real etcd cluster (Debian `etcd-server`) on free loopback ports, one
//! process per member, each stopped and started again by the test.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use super::net::{free_port, http_get};
use super::procs::{require, Proc};

struct Member {
    name: String,
    client: u16,
    peer: u16,
    proc: Option<Proc>,
}

/// An etcd cluster of `n` members.
pub struct EtcdCluster {
    members: Vec<Member>,
    dir: PathBuf,
    initial_cluster: String,
}

impl EtcdCluster {
    /// Starts `n` members and waits until the cluster answers on each.
    pub async fn start(dir: &Path, n: usize) -> Self {
        let members: Vec<Member> = (0..n)
            .map(|i| Member { name: format!("m{i}"), client: free_port(), peer: free_port(), proc: None })
            .collect();
        let initial_cluster =
            members.iter().map(|m| format!("{}=http://127.0.0.1:{}", m.name, m.peer)).collect::<Vec<_>>().join(",");
        let mut cluster = Self { members, dir: dir.to_owned(), initial_cluster };
        for i in 0..n {
            cluster.spawn(i);
        }
        for i in 0..n {
            cluster.wait_healthy(i).await;
        }
        cluster
    }

    fn spawn(&mut self, i: usize) {
        let bin = require("etcd", "apt-get install etcd-server");
        let member = &self.members[i];
        let data = self.dir.join(format!("etcd-{}", member.name));
        let proc = Proc::spawn(
            &format!("etcd-{}", member.name),
            Command::new(bin)
                .arg("--name")
                .arg(&member.name)
                .arg("--data-dir")
                .arg(&data)
                .arg("--listen-client-urls")
                .arg(format!("http://127.0.0.1:{}", member.client))
                .arg("--advertise-client-urls")
                .arg(format!("http://127.0.0.1:{}", member.client))
                .arg("--listen-peer-urls")
                .arg(format!("http://127.0.0.1:{}", member.peer))
                .arg("--initial-advertise-peer-urls")
                .arg(format!("http://127.0.0.1:{}", member.peer))
                .arg("--initial-cluster")
                .arg(&self.initial_cluster)
                .arg("--initial-cluster-token")
                .arg("proxy-acme-test")
                .arg("--initial-cluster-state")
                .arg("new")
                .arg("--heartbeat-interval")
                .arg("50")
                .arg("--election-timeout")
                .arg("500"),
            &self.dir,
        );
        self.members[i].proc = Some(proc);
    }

    async fn wait_healthy(&mut self, i: usize) {
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        loop {
            let port = self.members[i].client;
            if let Ok((200, body)) = http_get(("127.0.0.1", port), "localhost", "/health", &[]).await {
                if body.contains("\"health\":\"true\"") {
                    return;
                }
            }
            if let Some(proc) = self.members[i].proc.as_mut() {
                proc.assert_running();
            }
            assert!(
                std::time::Instant::now() < deadline,
                "etcd member {i} not healthy:\n{}",
                self.members[i].proc.as_ref().map(Proc::tail).unwrap_or_default()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// The client URLs, for `[storage.etcd] endpoints`.
    pub fn endpoints(&self) -> Vec<String> {
        self.members.iter().map(|m| format!("http://127.0.0.1:{}", m.client)).collect()
    }

    /// Stops member `i` (SIGKILL).
    pub fn stop(&mut self, i: usize) {
        if let Some(mut proc) = self.members[i].proc.take() {
            proc.kill();
        }
    }

    /// Starts member `i` again on its data directory (it rejoins).
    pub fn restart(&mut self, i: usize) {
        self.stop(i);
        self.spawn(i);
    }

    /// Waits until member `i` reports healthy (needs a quorum).
    pub async fn healthy(&mut self, i: usize) {
        self.wait_healthy(i).await;
    }
}
