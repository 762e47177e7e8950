//! Three etcd members (Debian's `/usr/bin/etcd`) forming one cluster on free loopback ports,
//! each with a data folder of its own; stopped by pid with their guards.
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};

use super::Env;
use super::procs::Proc;
use crate::api;
use crate::interrupt;

/// Where Debian puts the server.
pub const ETCD_BIN: &str = "/usr/bin/etcd";

/// A running 3-member cluster.
pub struct Etcd {
    pub endpoints: Vec<String>,
    _members: Vec<Proc>,
}

/// A free loopback port that is none of the well-known ones a packaged service may use.
pub fn safe_port() -> Result<u16> {
    loop {
        let p = api::free_port()?;
        if ![2379, 2380, 9090, 9100].contains(&p) {
            return Ok(p);
        }
    }
}

impl Etcd {
    /// Starts three members with etcd's default raft timing (heartbeat 100 ms, election
    /// 1 s: the store as it would be deployed, not tuned for the benchmark) and waits until
    /// every one is healthy.
    pub fn start(env: &Env, dir: &Path) -> Result<Etcd> {
        if !Path::new(ETCD_BIN).exists() {
            bail!("{ETCD_BIN} is missing: install etcd-server (`make test-deps` does)");
        }
        let ports: Vec<(u16, u16)> = (0..3)
            .map(|_| Ok((safe_port()?, safe_port()?)))
            .collect::<Result<_>>()?;
        let cluster: Vec<String> = ports
            .iter()
            .enumerate()
            .map(|(i, (_, peer))| format!("e{i}=http://127.0.0.1:{peer}"))
            .collect();
        let token = format!("bench-{}", env.run_id);
        let mut members = Vec::new();
        for (i, (client, peer)) in ports.iter().enumerate() {
            let c = format!("http://127.0.0.1:{client}");
            let p = format!("http://127.0.0.1:{peer}");
            let mut cmd = Command::new(ETCD_BIN);
            cmd.args(["--name", &format!("e{i}")])
                .arg("--data-dir")
                .arg(dir.join(format!("e{i}")))
                .args(["--listen-client-urls", &c, "--advertise-client-urls", &c])
                .args([
                    "--listen-peer-urls",
                    &p,
                    "--initial-advertise-peer-urls",
                    &p,
                ])
                .args(["--initial-cluster", &cluster.join(",")])
                .args(["--initial-cluster-state", "new"])
                .args(["--initial-cluster-token", &token])
                .args(["--logger", "zap", "--log-level", "warn"]);
            let log = dir.join(format!("e{i}.log"));
            members.push(Proc::spawn(env, &format!("etcd e{i}"), cmd, &log)?);
        }
        let endpoints: Vec<String> = ports
            .iter()
            .map(|(c, _)| format!("http://127.0.0.1:{c}"))
            .collect();
        let deadline = Instant::now() + Duration::from_secs(30);
        for (i, (client, _)) in ports.iter().enumerate() {
            let addr = format!("127.0.0.1:{client}");
            loop {
                interrupt::check()?;
                let r = api::request(&addr, "GET", "/health", None, Duration::from_secs(2));
                if matches!(&r, Ok((200, body)) if body.contains("true")) {
                    break;
                }
                if !members[i].alive() {
                    bail!("etcd member e{i} exited:\n{}", members[i].log_tail(20));
                }
                if Instant::now() > deadline {
                    bail!(
                        "etcd member e{i} not healthy within 30 s:\n{}",
                        members[i].log_tail(20)
                    );
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        Ok(Etcd {
            endpoints,
            _members: members,
        })
    }

    /// The client URLs as one `--etcd=` value.
    pub fn arg(&self) -> String {
        self.endpoints.join(",")
    }
}
