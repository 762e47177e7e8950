//! Keeping a client off dead etcd members.
//!
//! etcd-client balances requests over every endpoint it was given (tonic's balance channel),
//! and a member that is down stays in the balance: its connection looks ready and a request
//! sent to it fails ("tcp connect error"), so with one member of three killed a share of all
//! calls fail, watches and lease keep-alives included (etcd-client issue #39: "it's your
//! responsibility"). So [`connect`](crate::connect) builds the balance channel itself, keeps
//! its endpoint updater, and runs [`watch_members`]: every [`PROBE_EVERY`] it opens a TCP
//! connection to each member; the ones that refuse are taken out of the balance, and put back
//! once they answer again. When none answers, all stay in (calls then fail at once rather
//! than wait for a member). The task ends when the client's channel is gone.
use std::time::Duration;

use etcd_client::{BalancedChannelBuilder, Channel};
use http::Uri;
use tokio::sync::mpsc::Sender;
use tonic::transport::Endpoint;
use tonic::transport::channel::Change;

/// How often each member is probed.
pub const PROBE_EVERY: Duration = Duration::from_millis(250);

/// A balance channel whose endpoint updater is also handed to us.
pub struct Balanced {
    pub updater: tokio::sync::oneshot::Sender<Sender<Change<Uri, Endpoint>>>,
}

impl BalancedChannelBuilder for Balanced {
    type Error = tonic::transport::Error;

    fn balanced_channel(
        self,
        buffer_size: usize,
    ) -> Result<(Channel, Sender<Change<Uri, Endpoint>>), Self::Error> {
        let (chan, tx) = tonic::transport::Channel::balance_channel(buffer_size);
        let _ = self.updater.send(tx.clone());
        Ok((Channel::Tonic(chan), tx))
    }
}

/// One member: its URL, how to connect to it, and whether it is in the balance now.
pub struct Member {
    pub uri: Uri,
    pub endpoint: Endpoint,
    pub addr: String,
    pub in_balance: bool,
}

/// Probes the members until the channel behind `tx` is dropped.
pub async fn watch_members(tx: Sender<Change<Uri, Endpoint>>, mut members: Vec<Member>) {
    let mut tick = tokio::time::interval(PROBE_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if tx.is_closed() {
            return;
        }
        let mut live = Vec::with_capacity(members.len());
        for m in &members {
            let probe = tokio::net::TcpStream::connect(m.addr.as_str());
            live.push(matches!(
                tokio::time::timeout(PROBE_EVERY, probe).await,
                Ok(Ok(_))
            ));
        }
        let any = live.iter().any(|l| *l);
        for (m, up) in members.iter_mut().zip(live) {
            let want = up || !any;
            if want == m.in_balance {
                continue;
            }
            let change = if want {
                tracing::info!(member = %m.uri, "etcd member answers again: back in the balance");
                Change::Insert(m.uri.clone(), m.endpoint.clone())
            } else {
                tracing::warn!(member = %m.uri, "etcd member does not answer: out of the balance");
                Change::Remove(m.uri.clone())
            };
            if tx.send(change).await.is_err() {
                return;
            }
            m.in_balance = want;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(port: u16) -> Member {
        let uri: Uri = format!("http://127.0.0.1:{port}").parse().unwrap();
        Member {
            endpoint: Endpoint::from(uri.clone()),
            uri,
            addr: format!("127.0.0.1:{port}"),
            in_balance: true,
        }
    }

    fn what(c: &Change<Uri, Endpoint>) -> (&'static str, u16) {
        match c {
            Change::Insert(u, _) => ("insert", u.port_u16().unwrap_or(0)),
            Change::Remove(u) => ("remove", u.port_u16().unwrap_or(0)),
        }
    }

    #[tokio::test]
    async fn a_refusing_member_leaves_the_balance_and_returns_when_it_answers() {
        let live = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let dead = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let (lp, dp) = (
            live.local_addr().unwrap().port(),
            dead.local_addr().unwrap().port(),
        );
        drop(dead);
        let (tx, mut rx) = tokio::sync::mpsc::channel(8);
        let task = tokio::spawn(watch_members(tx, vec![member(lp), member(dp)]));
        let first = tokio::time::timeout(Duration::from_secs(5), rx.recv())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(what(&first), ("remove", dp));
        let _back = tokio::net::TcpListener::bind(("127.0.0.1", dp))
            .await
            .unwrap();
        let second = tokio::time::timeout(Duration::from_secs(5), rx.recv())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(what(&second), ("insert", dp));
        // Nobody left to tell: the watcher ends.
        drop(rx);
        drop(live);
        tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .unwrap()
            .unwrap();
    }

    #[tokio::test]
    async fn when_no_member_answers_all_stay_in() {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let p = l.local_addr().unwrap().port();
        drop(l);
        let (tx, mut rx) = tokio::sync::mpsc::channel(8);
        let task = tokio::spawn(watch_members(tx, vec![member(p), member(p)]));
        let got = tokio::time::timeout(PROBE_EVERY * 4, rx.recv()).await;
        assert!(
            got.is_err(),
            "a change was sent: {:?}",
            got.map(|c| c.map(|c| what(&c)))
        );
        task.abort();
    }
}
