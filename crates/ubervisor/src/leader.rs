//! Campaigning, and the leader's placement loop.
//!
//! A replica grants a lease of `--election-ttl`, campaigns (blocking while another leads),
//! and on winning runs [`lead`]: on every new view (and a 200 ms tick) it asks
//! [`reconcile`] what to change and writes it in fenced transactions of at most 100
//! operations, after [`lost::decide`] said which nodes are lost and which of their instances
//! may move this round (its records, pages and remediation go first). After a write it waits
//! until its own view has caught up with that revision before planning again, so it never
//! plans twice from the same stale picture. A fenced write
//! that finds the leader key gone, or a lost lease, ends the term: the replica turns standby
//! and campaigns again. When a round has nothing to place or remove, [`reschedule`] decides
//! the yo-yo moves, failures and recoveries, written the same fenced way.
use std::sync::Arc;
use std::time::Duration;

use cluster::{Fenced, Keys, Leadership, Lease, campaign, encode};
use etcd_client::{Client, Compare, CompareOp, TxnOp};
use tokio::sync::watch;

use crate::lost;
use crate::page::{Page, Pager, now_ms};
use crate::reconcile::{Op, reconcile};
use crate::reschedule;
use crate::view::View;

/// Most operations in one transaction (etcd allows 128 by default).
pub const MAX_TXN_OPS: usize = 100;

/// This replica's part right now.
#[derive(Debug, Clone)]
pub enum Role {
    Standby,
    Leader(Leadership),
}

/// What the leader loop and the HTTP API share: handles, never locks.
pub struct Shared {
    pub id: String,
    /// This replica's API address, the value it campaigns with.
    pub addr: String,
    pub keys: Keys,
    pub client: Client,
    pub view: watch::Receiver<Arc<View>>,
    pub role: watch::Sender<Role>,
    pub pager: Pager,
    /// Node loss handling: grace, storm share, move rate, automatic cordon.
    pub lost: lost::Config,
    /// `--remediate-command`, run for each node declared lost.
    pub remediate: Option<Arc<str>>,
    /// The reschedule flags.
    pub resched: reschedule::Config,
}

/// Campaigns forever; leads whenever elected.
pub async fn run(shared: Arc<Shared>, ttl: Duration) {
    let mut backoff = Duration::from_millis(100);
    loop {
        let lease = match Lease::grant(&shared.client, ttl).await {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!(error = %e, "cannot grant the election lease; retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
                continue;
            }
        };
        backoff = Duration::from_millis(100);
        let name = shared.keys.election();
        let won = tokio::select! {
            r = campaign(&shared.client, &name, &shared.addr, lease.id()) => r,
            _ = lease.lost() => continue,
        };
        let leadership = match won {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!(error = %e, "campaign failed; retrying");
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
        };
        tracing::info!(id = %shared.id, term = leadership.term(), "leading");
        shared.role.send_replace(Role::Leader(leadership.clone()));
        let why = lead(&shared, &leadership, &lease).await;
        shared.role.send_replace(Role::Standby);
        tracing::warn!(id = %shared.id, term = leadership.term(), why, "no longer leading");
    }
}

async fn lead(shared: &Shared, l: &Leadership, lease: &Lease) -> &'static str {
    let mut view_rx = shared.view.clone();
    let mut tick = tokio::time::interval(Duration::from_millis(200));
    let mut seen_rev = 0;
    let started = tokio::time::Instant::now();
    let mut bucket = lost::Bucket::new(shared.lost.max_moves, started);
    let mut clocks = reschedule::Clocks::default();
    loop {
        tokio::select! {
            _ = lease.lost() => return "election lease lost",
            _ = view_rx.changed() => {}
            _ = tick.tick() => {}
        }
        let mut view = view_rx.borrow_and_update().clone();
        if !view.synced || view.revision < seen_rev || view.degraded.is_some() {
            continue;
        }
        let now = tokio::time::Instant::now();
        let d = lost::decide(
            &view,
            &shared.lost,
            now - started,
            crate::page::now_ms(),
            bucket.available(now),
        );
        if !d.writes_nothing() {
            match l
                .txn_at(&shared.client, vec![], loss_ops(&shared.keys, &d))
                .await
            {
                Ok((Fenced::Applied, rev)) => {
                    seen_rev = rev;
                    act_on_losses(shared, &d);
                }
                Ok((Fenced::Deposed, _)) => return "deposed: a fenced write found another term",
                Ok((Fenced::Conflict, _)) => continue,
                Err(e) => {
                    tracing::warn!(error = %e, "writing node losses failed");
                    continue;
                }
            }
        }
        if !d.released.is_empty() {
            bucket.spend(d.released.len());
            let mut v = (*view).clone();
            v.released = d.released;
            view = Arc::new(v);
        }
        let (ops, _) = reconcile(&view);
        // Yo-yo moves only from a settled view, so a move and a placement never plan
        // against the same free capacity.
        if ops.is_empty() {
            match reschedule_round(shared, l, &view, &mut clocks).await {
                Ok(Some(rev)) => seen_rev = rev,
                Ok(None) => {}
                Err(why) => return why,
            }
            continue;
        }
        for (when, then) in batches(&shared.keys, &ops) {
            match l.txn_at(&shared.client, when, then).await {
                Ok((Fenced::Applied, rev)) => seen_rev = rev,
                Ok((Fenced::Conflict, _)) => {
                    tracing::debug!("placement conflict; planning again from a fresh view");
                    break;
                }
                Ok((Fenced::Deposed, _)) => return "deposed: a fenced write found another term",
                Err(e) => {
                    tracing::warn!(error = %e, "placement write failed");
                    break;
                }
            }
        }
    }
}

/// The records a loss decision writes (a handful: one per node that changed, at most).
fn loss_ops(keys: &Keys, d: &lost::Decision) -> Vec<TxnOp> {
    let mut ops: Vec<TxnOp> = d
        .losses
        .iter()
        .map(|r| TxnOp::put(keys.losses(&r.node), encode(r), None))
        .collect();
    ops.extend(
        d.cordons
            .iter()
            .map(|(n, c)| TxnOp::put(keys.cordon(n), encode(c), None)),
    );
    if let Some(m) = &d.moves {
        ops.push(TxnOp::put(keys.moves(), encode(m), None));
    }
    ops
}

/// Once the decision is stored: pages, and the remediation command for each node declared
/// lost (in the background, so a slow command never holds up scheduling).
fn act_on_losses(shared: &Shared, d: &lost::Decision) {
    for r in d.losses.iter().filter(|r| !r.lost) {
        tracing::info!(node = %r.node, "a lost node registered again: alive");
    }
    for n in &d.declared {
        let reason = format!("{n} holds assignments but its info key is gone (its lease expired)");
        tracing::warn!(node = %n, "node declared lost: its instances move elsewhere");
        let Some(cmd) = shared.remediate.clone() else {
            continue;
        };
        let event = Page::new("node_lost", n, reason, &shared.id);
        let json = serde_json::to_vec(&event).unwrap_or_default();
        let node = n.clone();
        tokio::spawn(async move {
            match crate::page::run_command_with(&cmd, &json, &[("UV_NODE", &node)]).await {
                Ok(()) => tracing::info!(%node, "--remediate-command done"),
                Err(e) => tracing::error!(%node, error = %e, "--remediate-command failed"),
            }
        });
    }
    if let Some(m) = d.moves.as_ref().filter(|m| !m.frozen) {
        tracing::warn!(reason = %m.reason, "moves unfrozen");
    }
    for (kind, subject, reason) in &d.pages {
        shared
            .pager
            .page(Page::new(kind, subject, reason.clone(), &shared.id));
    }
}

/// Writes what [`reschedule::plan`] decides, one fenced transaction per job, and pages
/// failures and recoveries. The revision of the last write, if any; `Err` when deposed.
async fn reschedule_round(
    shared: &Shared,
    l: &Leadership,
    view: &View,
    clocks: &mut reschedule::Clocks,
) -> Result<Option<i64>, &'static str> {
    let mut last = None;
    for d in reschedule::plan(view, now_ms(), &shared.resched, clocks) {
        let (when, then) = reschedule::txn(&shared.keys, &d);
        match l.txn_at(&shared.client, when, then).await {
            Ok((Fenced::Applied, rev)) => last = Some(rev),
            Ok((Fenced::Conflict, _)) => {
                tracing::debug!("reschedule conflict; planning again from a fresh view");
                break;
            }
            Ok((Fenced::Deposed, _)) => return Err("deposed: a fenced write found another term"),
            Err(e) => {
                tracing::warn!(error = %e, "reschedule write failed");
                break;
            }
        }
        match d {
            reschedule::Decision::Move {
                from, to, to_node, ..
            } => tracing::warn!(instance = %to.instance, %from, to = %to_node,
                "moved an instance in yo-yo mode"),
            reschedule::Decision::Fail { record, .. } => {
                let reason = record.failed.map(|f| f.reason).unwrap_or_default();
                shared
                    .pager
                    .page(Page::new("job_failed", &record.job, reason, &shared.id));
            }
            reschedule::Decision::Recover { record, why, .. } => {
                tracing::info!(job = %record.job, %why, "job recovered");
                shared.pager.page(Page::new(
                    "job_recovered",
                    &record.job,
                    format!("no longer failed: {why}"),
                    &shared.id,
                ));
            }
            reschedule::Decision::Prune { .. } | reschedule::Decision::Forget { .. } => {}
        }
    }
    Ok(last)
}

/// Most compares in one transaction: etcd's limit of 128 counts compares too.
const MAX_TXN_COMPARES: usize = 120;

/// The ops cut into transactions: an assignment is created only on a live node and only
/// where none exists; at most [`MAX_TXN_OPS`] operations and [`MAX_TXN_COMPARES`] compares
/// (plus the fence) each.
pub fn batches(keys: &Keys, ops: &[Op]) -> Vec<(Vec<Compare>, Vec<TxnOp>)> {
    let mut out = Vec::new();
    let mut when: Vec<Compare> = Vec::new();
    let mut then: Vec<TxnOp> = Vec::new();
    let mut live_checked: Vec<&str> = Vec::new();
    for op in ops {
        let needs = match op {
            Op::Assign { node, .. } if !live_checked.contains(&node.as_str()) => 2,
            Op::Assign { .. } => 1,
            _ => 0,
        };
        if then.len() == MAX_TXN_OPS || when.len() + needs > MAX_TXN_COMPARES {
            out.push((std::mem::take(&mut when), std::mem::take(&mut then)));
            live_checked.clear();
        }
        match op {
            Op::Assign { node, a } => {
                let key = keys.assign(node, &a.instance);
                if !live_checked.contains(&node.as_str()) {
                    live_checked.push(node);
                    when.push(Compare::version(
                        keys.node_info(node),
                        CompareOp::Greater,
                        0,
                    ));
                }
                when.push(Compare::create_revision(key.clone(), CompareOp::Equal, 0));
                then.push(TxnOp::put(key, encode(a), None));
            }
            Op::Update { node, a } => {
                then.push(TxnOp::put(keys.assign(node, &a.instance), encode(a), None));
            }
            Op::Unassign { node, instance } => {
                then.push(TxnOp::delete(keys.assign(node, instance), None));
            }
        }
    }
    if !then.is_empty() {
        out.push((when, then));
    }
    out
}
