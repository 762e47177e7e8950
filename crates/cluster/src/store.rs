//! etcd wrappers both sides use: connecting, leases kept alive, prefixes mirrored by
//! list-then-watch.
use std::collections::BTreeMap;
use std::time::Duration;

use etcd_client::{
    Client, ConnectOptions, EventType, GetOptions, LeaseKeepAliveStream, LeaseKeeper, WatchOptions,
    WatchStream,
};
use tokio::sync::watch;

use crate::failover::{Balanced, Member, watch_members};
use tokio::task::JoinHandle;
use tokio::time::{Instant, MissedTickBehavior};

/// An etcd call failed; `what` says which.
#[derive(Debug, thiserror::Error)]
#[error("etcd: {what}: {source}")]
pub struct StoreError {
    pub what: String,
    #[source]
    pub source: etcd_client::Error,
}

impl StoreError {
    pub fn new(what: impl Into<String>, source: etcd_client::Error) -> Self {
        StoreError {
            what: what.into(),
            source,
        }
    }
}

/// Connects to `endpoints` with request timeouts, so a call to an unreachable etcd fails
/// (and is retried by the caller) instead of hanging.
///
/// Members that do not answer are kept out of the client's balance while they are down
/// (see [`crate::failover`]), so one dead member of three costs nothing but a moment.
///
/// HTTP/2 pings stay within what etcd's gRPC server tolerates by default: no more often than
/// `--grpc-keepalive-min-time` (5 s) on a connection with streams, and none on an idle one.
/// A client that pings more often is sent GOAWAY ("too_many_pings") after three pings, which
/// breaks its quiet watches every ~8 s; a node agent then starts a new session and its node
/// is seen lost until the old lease expires (found by `bench-cluster` with the default 10 s
/// node TTL: every idle node churned).
pub async fn connect(endpoints: &[String]) -> Result<Client, StoreError> {
    const CONNECT: Duration = Duration::from_secs(2);
    const CALL: Duration = Duration::from_secs(3);
    const PING: Duration = Duration::from_secs(10);
    const PING_TIMEOUT: Duration = Duration::from_secs(5);
    let opts = ConnectOptions::new()
        .with_connect_timeout(CONNECT)
        .with_timeout(CALL)
        .with_keep_alive(PING, PING_TIMEOUT)
        .with_keep_alive_while_idle(false);
    let (updater, rx) = tokio::sync::oneshot::channel();
    let client = Client::connect_with_balanced_channel(endpoints, Some(opts), Balanced { updater })
        .await
        .map_err(|e| StoreError::new(format!("connect to {}", endpoints.join(",")), e))?;
    let members: Vec<Member> = endpoints
        .iter()
        .filter_map(|e| {
            let uri: http::Uri = e.parse().ok()?;
            let addr = uri.authority()?.to_string();
            let endpoint = tonic::transport::Endpoint::from(uri.clone())
                .keep_alive_while_idle(false)
                .http2_keep_alive_interval(PING)
                .keep_alive_timeout(PING_TIMEOUT)
                .timeout(CALL)
                .connect_timeout(CONNECT);
            Some(Member {
                uri,
                endpoint,
                addr,
                in_balance: true,
            })
        })
        .collect();
    if let Ok(tx) = rx.await
        && members.len() > 1
    {
        tokio::spawn(watch_members(tx, members));
    }
    Ok(client)
}

/// A lease granted with `ttl` and kept alive at a third of it by a task of its own.
///
/// `lost()` turns true once etcd says the lease is gone (a keep-alive answer with TTL 0) or
/// when no keep-alive succeeded for a whole TTL (so the lease has surely expired). Keys put
/// with [`Lease::id`] vanish with it. Dropping the lease stops the keep-alive; [`Lease::revoke`]
/// deletes its keys at once.
pub struct Lease {
    id: i64,
    lost: watch::Receiver<bool>,
    task: JoinHandle<()>,
}

impl Lease {
    pub async fn grant(client: &Client, ttl: Duration) -> Result<Lease, StoreError> {
        let secs = ttl.as_secs().max(1) as i64;
        let mut c = client.clone();
        let granted = c
            .lease_grant(secs, None)
            .await
            .map_err(|e| StoreError::new(format!("grant a lease of {secs} s"), e))?;
        let id = granted.id();
        let (tx, lost) = watch::channel(false);
        let task = tokio::spawn(keep_alive(c, id, Duration::from_secs(secs as u64), tx));
        Ok(Lease { id, lost, task })
    }

    /// Takes up lease `id` again (after etcd was unreachable for a while) if etcd still has
    /// it: etcd gives every lease a fresh TTL when its cluster elects a leader, so a node
    /// whose etcd was down entirely keeps its lease, and its keys, if it comes back within
    /// one TTL of etcd's return. `None` when the lease is gone.
    pub async fn resume(
        client: &Client,
        id: i64,
        ttl: Duration,
    ) -> Result<Option<Lease>, StoreError> {
        let mut c = client.clone();
        let left = match c.lease_time_to_live(id, None).await {
            Ok(r) => r.ttl(),
            Err(etcd_client::Error::GRpcStatus(s)) if s.message().contains("not found") => -1,
            Err(e) => return Err(StoreError::new(format!("look up lease {id:x}"), e)),
        };
        if left <= 0 {
            return Ok(None);
        }
        let secs = ttl.as_secs().max(1);
        let (tx, lost) = watch::channel(false);
        let task = tokio::spawn(keep_alive(c, id, Duration::from_secs(secs), tx));
        Ok(Some(Lease { id, lost, task }))
    }

    pub fn id(&self) -> i64 {
        self.id
    }

    /// True once the lease is known gone.
    pub fn is_lost(&self) -> bool {
        *self.lost.borrow()
    }

    /// Resolves when the lease is lost.
    pub async fn lost(&self) {
        let mut rx = self.lost.clone();
        let _ = rx.wait_for(|l| *l).await;
    }

    /// Revokes the lease (its keys go at once), best effort.
    pub async fn revoke(self, client: &Client) {
        self.task.abort();
        let mut c = client.clone();
        let _ = tokio::time::timeout(Duration::from_secs(2), c.lease_revoke(self.id)).await;
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn keep_alive(mut client: Client, id: i64, ttl: Duration, lost: watch::Sender<bool>) {
    let period = (ttl / 3).max(Duration::from_millis(100));
    let mut last_ok = Instant::now();
    let mut stream: Option<(LeaseKeeper, LeaseKeepAliveStream)> = None;
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if last_ok.elapsed() >= ttl {
            tracing::warn!(
                lease = id,
                "no keep-alive succeeded for a whole TTL: lease lost"
            );
            let _ = lost.send(true);
            return;
        }
        if stream.is_none() {
            match client.lease_keep_alive(id).await {
                Ok(s) => stream = Some(s),
                Err(e) => {
                    tracing::debug!(lease = id, error = %e, "keep-alive stream");
                    continue;
                }
            }
        }
        let Some((keeper, replies)) = stream.as_mut() else {
            continue;
        };
        let answer = async {
            keeper.keep_alive().await?;
            replies.message().await
        };
        match tokio::time::timeout(period, answer).await {
            Ok(Ok(Some(r))) if r.ttl() > 0 => last_ok = Instant::now(),
            Ok(Ok(Some(_))) => {
                tracing::warn!(lease = id, "etcd says the lease expired");
                let _ = lost.send(true);
                return;
            }
            other => {
                tracing::debug!(lease = id, answer = ?other.map(|r| r.map(|_| ())), "keep-alive failed");
                stream = None;
            }
        }
    }
}

/// One key's value and the revisions fencing and generations need.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub value: Vec<u8>,
    pub create_revision: i64,
    pub mod_revision: i64,
}

/// A local copy of every key under a prefix, kept current by list-then-watch.
///
/// [`Mirror::sync`] lists at revision R and watches from R+1; [`Mirror::changed`] applies the
/// next batch of events. A watch cancelled because R+1 was compacted re-lists, so the copy is
/// never silently missing a change. Errors (etcd unreachable) are returned; the copy keeps
/// its last known content and the caller decides (retry `sync` later).
pub struct Mirror {
    client: Client,
    prefix: String,
    entries: BTreeMap<String, Entry>,
    revision: i64,
    stream: Option<WatchStream>,
}

impl Mirror {
    pub fn new(client: Client, prefix: impl Into<String>) -> Self {
        Mirror {
            client,
            prefix: prefix.into(),
            entries: BTreeMap::new(),
            revision: 0,
            stream: None,
        }
    }

    pub fn entries(&self) -> &BTreeMap<String, Entry> {
        &self.entries
    }

    /// The store revision this copy reflects.
    pub fn revision(&self) -> i64 {
        self.revision
    }

    /// Lists the prefix afresh and starts watching right after the listed revision.
    pub async fn sync(&mut self) -> Result<(), StoreError> {
        self.stream = None;
        let resp = self
            .client
            .get(self.prefix.as_str(), Some(GetOptions::new().with_prefix()))
            .await
            .map_err(|e| StoreError::new(format!("list {}", self.prefix), e))?;
        self.revision = resp.header().map(|h| h.revision()).unwrap_or(0);
        self.entries = resp
            .kvs()
            .iter()
            .map(|kv| {
                (
                    String::from_utf8_lossy(kv.key()).into_owned(),
                    Entry {
                        value: kv.value().to_vec(),
                        create_revision: kv.create_revision(),
                        mod_revision: kv.mod_revision(),
                    },
                )
            })
            .collect();
        let opts = WatchOptions::new()
            .with_prefix()
            .with_start_revision(self.revision + 1);
        let stream = self
            .client
            .watch(self.prefix.as_str(), Some(opts))
            .await
            .map_err(|e| StoreError::new(format!("watch {}", self.prefix), e))?;
        self.stream = Some(stream);
        Ok(())
    }

    /// Waits for the next change and applies it (re-listing after a compaction).
    pub async fn changed(&mut self) -> Result<(), StoreError> {
        if self.stream.is_none() {
            return self.sync().await;
        }
        loop {
            let Some(stream) = self.stream.as_mut() else {
                return self.sync().await;
            };
            let msg = stream
                .message()
                .await
                .map_err(|e| StoreError::new(format!("watch {}", self.prefix), e))?;
            let Some(resp) = msg else {
                self.stream = None;
                return Err(StoreError::new(
                    format!("watch {}", self.prefix),
                    etcd_client::Error::WatchError("stream ended".into()),
                ));
            };
            if resp.canceled() || resp.compact_revision() > 0 {
                tracing::info!(prefix = %self.prefix, compacted = resp.compact_revision(),
                    reason = resp.cancel_reason(), "watch cancelled: listing again");
                return self.sync().await;
            }
            if resp.events().is_empty() {
                continue;
            }
            for ev in resp.events() {
                let Some(kv) = ev.kv() else { continue };
                let key = String::from_utf8_lossy(kv.key()).into_owned();
                self.revision = self.revision.max(kv.mod_revision());
                match ev.event_type() {
                    EventType::Put => {
                        self.entries.insert(
                            key,
                            Entry {
                                value: kv.value().to_vec(),
                                create_revision: kv.create_revision(),
                                mod_revision: kv.mod_revision(),
                            },
                        );
                    }
                    EventType::Delete => {
                        self.entries.remove(&key);
                    }
                }
            }
            return Ok(());
        }
    }
}
