//! Leader failover: three ubervisor replicas; the leader is SIGKILLed; the time until one
//! of the others says it leads (`GET /health` → `"role": "leader"`), and until it accepts a
//! write (`POST /jobs` answered 201).
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use serde_json::json;

use super::Env;
use super::etcd::Etcd;
use super::rig::Ubervisor;
use crate::interrupt;

/// One failover, in ms from the SIGKILL.
#[derive(Debug, Clone, Copy)]
pub struct Failover {
    pub leading_ms: f64,
    pub write_ms: f64,
}

/// `reps` failovers with `--election-ttl` (`None`: the default, 5 s).
pub fn failover(
    env: &Env,
    etcd: &Etcd,
    dir: &Path,
    ttl: Option<Duration>,
    reps: usize,
) -> Result<Vec<Failover>> {
    let ttl_arg = ttl.map(|t| format!("{}s", t.as_secs()));
    let ttl_d = ttl.unwrap_or(Duration::from_secs(5));
    let prefix = env.prefix("failover");
    let ids = ["uv-a", "uv-b", "uv-c"];
    let mut uvs = Vec::new();
    for id in ids {
        uvs.push(Ubervisor::start(
            env,
            etcd,
            &prefix,
            id,
            ttl_arg.as_deref(),
            dir,
        )?);
    }
    let mut out = Vec::new();
    for rep in 0..reps {
        let leader = wait_one_leader(&uvs, ttl_d + Duration::from_secs(30))?;
        let t0 = Instant::now();
        uvs[leader].proc.kill();
        let probe = json!({"name": format!("probe{rep}"), "count": 0, "cpu": 1, "mem": 1,
                           "task": {"command": [env.timeserver.display().to_string()]}});
        let deadline = t0 + ttl_d + Duration::from_secs(30);
        let mut leading_ms = None;
        let write_ms = loop {
            interrupt::check()?;
            if Instant::now() > deadline {
                bail!(
                    "no replica led and accepted a write {:?} after the leader's SIGKILL",
                    t0.elapsed()
                );
            }
            let mut done = None;
            for (i, uv) in uvs.iter().enumerate() {
                if i == leader || !uv.leads() {
                    continue;
                }
                leading_ms.get_or_insert(t0.elapsed().as_secs_f64() * 1e3);
                if matches!(uv.call("POST", "/jobs", Some(&probe)), Ok((201, _))) {
                    done = Some(t0.elapsed().as_secs_f64() * 1e3);
                    break;
                }
            }
            if let Some(ms) = done {
                break ms;
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        let f = Failover {
            leading_ms: leading_ms.unwrap_or(write_ms),
            write_ms,
        };
        eprintln!(
            "bench-cluster: failover (election ttl {ttl_d:?}) {}/{reps}: leading after {:.0} ms, write accepted after {:.0} ms",
            rep + 1,
            f.leading_ms,
            f.write_ms
        );
        out.push(f);
        // The killed replica comes back as a standby.
        let id = uvs[leader].id.clone();
        uvs[leader] = Ubervisor::start(env, etcd, &prefix, &id, ttl_arg.as_deref(), dir)?;
    }
    Ok(out)
}

/// The index of the one replica that leads, once exactly one says so.
fn wait_one_leader(uvs: &[Ubervisor], limit: Duration) -> Result<usize> {
    let deadline = Instant::now() + limit;
    loop {
        interrupt::check()?;
        let leading: Vec<usize> = (0..uvs.len()).filter(|&i| uvs[i].leads()).collect();
        if let [one] = leading.as_slice() {
            return Ok(*one);
        }
        if Instant::now() > deadline {
            bail!("{} replicas leading after {limit:?}", leading.len());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
