//! What the scheduler gets out of the store: assignments written per second while jobs
//! arrive, against the raw put rate of the same store from the same kind of client; and the
//! time from `POST /jobs` to the assignment key on a quiet cluster.
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use cluster::Capacity;
use etcd_client::{Client, EventType, GetOptions, Txn, TxnOp, WatchOptions};
use serde_json::{Value, json};
use tokio::runtime::Runtime;

use super::Env;
use super::etcd::Etcd;
use super::rig::Rig;
use crate::interrupt;

/// Nodes of the rigs: big enough that capacity never limits the rows (the throughput row
/// enlarges them for more than its default load).
pub const RIG_NODES: usize = 100;
pub const RIG_NODE: Capacity = Capacity {
    cpu: 64_000,
    mem: 262_144,
};
/// Most operations per transaction, as the leader writes them.
pub const TXN_OPS: usize = 100;

/// One assignment key seen created.
pub struct Seen {
    pub key: String,
    pub at: Instant,
    pub bytes: usize,
}

/// Assignment keys created under a prefix, as the watch delivers them: from the revision the
/// watch was set up at, so nothing written after [`Watch::start`] returns is missed.
pub struct Watch {
    rx: mpsc::Receiver<Seen>,
    task: tokio::task::JoinHandle<()>,
}

impl Watch {
    pub fn start(rt: &Runtime, client: &Client, prefix: &str) -> Result<Watch> {
        let mut c = client.clone();
        let stream = rt
            .block_on(async {
                let opts = GetOptions::new().with_prefix().with_count_only();
                let now = c.get(prefix, Some(opts)).await?;
                let rev = now.header().map_or(0, |h| h.revision());
                let opts = WatchOptions::new()
                    .with_prefix()
                    .with_start_revision(rev + 1);
                c.watch(prefix, Some(opts)).await
            })
            .with_context(|| format!("watch {prefix}"))?;
        let (tx, rx) = mpsc::channel();
        let task = rt.spawn(async move {
            let mut stream = stream;
            while let Ok(Some(resp)) = stream.message().await {
                let at = Instant::now();
                for ev in resp.events() {
                    let Some(kv) = ev.kv() else { continue };
                    // A creation (version 1), not a rewrite or a delete.
                    if ev.event_type() != EventType::Put || kv.version() != 1 {
                        continue;
                    }
                    let seen = Seen {
                        key: String::from_utf8_lossy(kv.key()).into_owned(),
                        at,
                        bytes: kv.value().len(),
                    };
                    if tx.send(seen).is_err() {
                        return;
                    }
                }
            }
        });
        Ok(Watch { rx, task })
    }

    /// The next creation, or `None` once `deadline` passed.
    pub fn next(&self, deadline: Instant) -> Result<Option<Seen>> {
        loop {
            interrupt::check()?;
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(None);
            }
            match self.rx.recv_timeout(left.min(Duration::from_millis(100))) {
                Ok(s) => return Ok(Some(s)),
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => bail!("the assignment watch ended"),
            }
        }
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A job of `count` instances whose task is the real timeserver (never run here: the rig's
/// agents only record their assignments).
pub fn job(env: &Env, name: &str, count: u32, cpu: u64, mem: u64) -> Value {
    json!({
        "name": name, "count": count, "cpu": cpu, "mem": mem,
        "task": {"command": [env.timeserver.display().to_string(), "--port={{port}}"]},
    })
}

/// The sustained placement rate, and the raw store's put rate beside it.
pub struct Throughput {
    pub placements: usize,
    pub jobs: usize,
    /// First `POST /jobs` sent → last assignment created.
    pub secs: f64,
    /// First → last `POST /jobs` answered.
    pub submit_secs: f64,
    /// Mean size of an assignment value, the size the baseline puts.
    pub value_bytes: usize,
    pub raw_secs: f64,
}

impl Throughput {
    pub fn rate(&self) -> f64 {
        self.placements as f64 / self.secs
    }
    pub fn raw_rate(&self) -> f64 {
        self.placements as f64 / self.raw_secs
    }
}

/// `jobs` jobs of `count` instances, submitted back to back; counts the assignment keys
/// created until all `jobs × count` are there.
pub fn throughput(
    env: &Env,
    rt: &Runtime,
    etcd: &Etcd,
    dir: &std::path::Path,
    jobs: usize,
    count: u32,
) -> Result<Throughput> {
    let total = jobs * count as usize;
    let shapes: [(u64, u64); 4] = [(100, 64), (250, 128), (500, 256), (1_000, 512)];
    // Capacity must never limit the row: nodes get twice their share of the whole demand
    // when that is more than RIG_NODE (more than about 130 jobs of 100).
    let demand = (0..jobs).fold((0, 0), |(c, m), j| {
        let (cpu, mem) = shapes[j % shapes.len()];
        (c + cpu * u64::from(count), m + mem * u64::from(count))
    });
    let share = |d: u64| 2 * d / RIG_NODES as u64;
    let capacity = Capacity {
        cpu: RIG_NODE.cpu.max(share(demand.0)),
        mem: RIG_NODE.mem.max(share(demand.1)),
    };
    let rig = Rig::start(env, etcd, RIG_NODES, capacity, dir)?;
    let client = rt.block_on(cluster::connect(&etcd.endpoints))?;
    let watch = Watch::start(rt, &client, &rig.keys.assign_all())?;
    let t0 = Instant::now();
    for j in 0..jobs {
        interrupt::check()?;
        let (cpu, mem) = shapes[j % shapes.len()];
        rig.uv
            .submit(&job(env, &format!("tp{j}"), count, cpu, mem))?;
    }
    let submit_secs = t0.elapsed().as_secs_f64();
    let deadline = t0 + Duration::from_secs(120);
    let mut seen = 0;
    let mut bytes = 0;
    let mut last = t0;
    while seen < total {
        let Some(s) = watch.next(deadline)? else {
            bail!("{seen} of {total} assignments within 120 s");
        };
        seen += 1;
        bytes += s.bytes;
        last = s.at;
    }
    let secs = last.duration_since(t0).as_secs_f64();
    // The assignments reached the agents (each applies its whole set).
    let until = Instant::now() + Duration::from_secs(30);
    while rig.applied_total() != total {
        interrupt::check()?;
        if Instant::now() > until {
            bail!(
                "the agents were given {} of {total} assignments",
                rig.applied_total()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let value_bytes = bytes / total.max(1);
    let raw_secs = raw_puts(rt, &client, &env.prefix("raw"), total, value_bytes)?;
    Ok(Throughput {
        placements: total,
        jobs,
        secs,
        submit_secs,
        value_bytes,
        raw_secs,
    })
}

/// `n` puts of `size`-byte values in transactions of [`TXN_OPS`], one after another: the
/// store's own rate for what the leader writes. Seconds taken.
fn raw_puts(rt: &Runtime, client: &Client, prefix: &str, n: usize, size: usize) -> Result<f64> {
    let value = vec![b'x'; size];
    let mut c = client.clone();
    let t = Instant::now();
    rt.block_on(async {
        let mut i = 0;
        while i < n {
            let ops: Vec<TxnOp> = (i..(i + TXN_OPS).min(n))
                .map(|k| TxnOp::put(format!("{prefix}k{k}"), value.clone(), None))
                .collect();
            i += ops.len();
            c.txn(Txn::new().and_then(ops)).await?;
        }
        Ok::<_, etcd_client::Error>(())
    })
    .context("raw puts")?;
    Ok(t.elapsed().as_secs_f64())
}

/// `POST /jobs` → assignment samples, milliseconds.
pub struct Latency {
    pub answered_ms: Vec<f64>,
    pub assigned_ms: Vec<f64>,
}

/// `n` jobs of one instance, one at a time, 10 ms apart: from sending the POST to the watch
/// delivering the instance's assignment key.
pub fn latency(
    env: &Env,
    rt: &Runtime,
    etcd: &Etcd,
    dir: &std::path::Path,
    n: usize,
) -> Result<Latency> {
    let rig = Rig::start(env, etcd, RIG_NODES, RIG_NODE, dir)?;
    let client = rt.block_on(cluster::connect(&etcd.endpoints))?;
    let watch = Watch::start(rt, &client, &rig.keys.assign_all())?;
    let mut out = Latency {
        answered_ms: Vec::new(),
        assigned_ms: Vec::new(),
    };
    for i in 0..n {
        let name = format!("lat{i}");
        let want = format!("/{name}-1");
        let t = Instant::now();
        rig.uv.submit(&job(env, &name, 1, 100, 64))?;
        out.answered_ms.push(t.elapsed().as_secs_f64() * 1e3);
        let deadline = t + Duration::from_secs(10);
        loop {
            let Some(s) = watch.next(deadline)? else {
                bail!("no assignment of {name} within 10 s");
            };
            if s.key.ends_with(&want) {
                out.assigned_ms
                    .push(s.at.duration_since(t).as_secs_f64() * 1e3);
                break;
            }
        }
        interrupt::sleep(Duration::from_millis(10))?;
    }
    Ok(out)
}
