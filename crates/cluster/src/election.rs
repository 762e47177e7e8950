//! Leadership through etcd's Election API, and writes fenced on it.
//!
//! A replica campaigns with a lease; `campaign` returns when it leads, with a leader key
//! whose create revision identifies this term. Every write the leader makes is a transaction
//! whose first compare is `create_revision(leader key) == term`: once the lease expires the
//! key is deleted (or a successor's is created), the compare fails and the write changes
//! nothing, however late a paused old leader wakes up.
use etcd_client::{Client, Compare, CompareOp, LeaderKey, ResignOptions, Txn, TxnOp};

use crate::store::StoreError;

/// This replica's term as leader.
#[derive(Debug, Clone)]
pub struct Leadership {
    key: LeaderKey,
}

/// What a fenced transaction did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fenced {
    /// Every compare held; the operations were applied.
    Applied,
    /// Still leader, but another compare failed (someone changed the data first).
    Conflict,
    /// No longer leader: nothing was written, and nothing more should be.
    Deposed,
}

/// Blocks until this replica leads `name`; `value` is what observers read (the API address).
pub async fn campaign(
    client: &Client,
    name: &str,
    value: &str,
    lease: i64,
) -> Result<Leadership, StoreError> {
    let mut c = client.clone();
    let mut resp = c
        .campaign(name, value, lease)
        .await
        .map_err(|e| StoreError::new(format!("campaign on {name}"), e))?;
    let key = resp.take_leader().ok_or_else(|| {
        StoreError::new(
            format!("campaign on {name}"),
            etcd_client::Error::ElectError("no leader key in the answer".into()),
        )
    })?;
    Ok(Leadership { key })
}

/// The current leader's value (its API address), or `None` when there is none.
pub async fn leader_value(client: &Client, name: &str) -> Result<Option<String>, StoreError> {
    let mut c = client.clone();
    match c.leader(name).await {
        Ok(r) => Ok(r
            .kv()
            .map(|kv| String::from_utf8_lossy(kv.value()).into_owned())),
        // etcd answers "election: no leader" as an error.
        Err(etcd_client::Error::GRpcStatus(s)) if s.message().contains("no leader") => Ok(None),
        Err(e) => Err(StoreError::new(format!("leader of {name}"), e)),
    }
}

impl Leadership {
    /// The leader key (under the election name), whose existence is the leadership.
    pub fn key(&self) -> &[u8] {
        self.key.key()
    }

    /// The term: the leader key's create revision.
    pub fn term(&self) -> i64 {
        self.key.rev()
    }

    /// The compare every leader write starts with.
    pub fn fence(&self) -> Compare {
        Compare::create_revision(self.key.key().to_vec(), CompareOp::Equal, self.key.rev())
    }

    /// Applies `ops` if still leader and every compare in `when` holds.
    pub async fn txn(
        &self,
        client: &Client,
        when: Vec<Compare>,
        ops: Vec<TxnOp>,
    ) -> Result<Fenced, StoreError> {
        Ok(self.txn_at(client, when, ops).await?.0)
    }

    /// [`Leadership::txn`], also giving the store revision after it, so a caller can wait
    /// until its own copy of the store has seen the write.
    pub async fn txn_at(
        &self,
        client: &Client,
        when: Vec<Compare>,
        ops: Vec<TxnOp>,
    ) -> Result<(Fenced, i64), StoreError> {
        let mut c = client.clone();
        let mut compares = Vec::with_capacity(when.len() + 1);
        compares.push(self.fence());
        compares.extend(when);
        let resp = c
            .txn(Txn::new().when(compares).and_then(ops))
            .await
            .map_err(|e| StoreError::new("fenced transaction", e))?;
        let rev = resp.header().map(|h| h.revision()).unwrap_or(0);
        if resp.succeeded() {
            return Ok((Fenced::Applied, rev));
        }
        let still = c
            .txn(Txn::new().when(vec![self.fence()]))
            .await
            .map_err(|e| StoreError::new("check the leader key", e))?;
        let outcome = if still.succeeded() {
            Fenced::Conflict
        } else {
            Fenced::Deposed
        };
        Ok((outcome, rev))
    }

    /// Gives leadership up so a standby takes over at once (graceful stop).
    pub async fn resign(self, client: &Client) {
        let mut c = client.clone();
        let _ = c
            .resign(Some(ResignOptions::new().with_leader(self.key)))
            .await;
    }
}
