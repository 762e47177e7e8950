//! `Lease::resume` against a real etcd: a live lease is taken up again and kept alive, a
//! revoked one is not.
#![allow(clippy::unwrap_used)]
use std::time::Duration;

use cluster::{Lease, connect};
use testkit::Etcd;

#[tokio::test(flavor = "multi_thread")]
async fn a_live_lease_is_taken_up_again_and_a_gone_one_is_not() {
    let etcd = Etcd::start();
    let client = connect(&etcd.endpoints()).await.unwrap();
    let first = Lease::grant(&client, Duration::from_secs(2)).await.unwrap();
    let id = first.id();
    drop(first); // its keep-alive stops, as when a session ends
    let resumed = Lease::resume(&client, id, Duration::from_secs(2))
        .await
        .unwrap()
        .expect("the lease is still alive");
    assert_eq!(resumed.id(), id);
    // Kept alive by the resumed lease: well past its TTL it is still there.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(!resumed.is_lost());
    let mut c = client.clone();
    assert!(c.lease_time_to_live(id, None).await.unwrap().ttl() > 0);
    resumed.revoke(&client).await;
    let again = Lease::resume(&client, id, Duration::from_secs(2))
        .await
        .unwrap();
    assert!(again.is_none(), "a revoked lease is not taken up");
}
