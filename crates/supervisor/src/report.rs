//! Reports to an ubervisor (`--report-url`): the *level*, not edges. Each report is the whole
//! current picture: health, which tasks are in yo-yo mode (with their uids and since when), and
//! the revision it was taken at. One goes out at every change (batched over 50 ms) and every
//! `--report-interval`, so a receiver that missed one, restarted, or was unreachable for an
//! hour is up to date with the next one it gets; nothing it needs is ever in a report it missed.
//!
//! The reporter is its own task: a slow or dead receiver delays only the reports, never the
//! event loop. A failed post is retried with growing delays (1 s doubling to 60 s), always with
//! the newest level.
use crate::control::{Envelope, Reply, Request, Snapshot};
use crate::event_log::Stamped;
use servicekit::http_client::{self, Url};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{broadcast, mpsc, oneshot};
use tokio::time::Instant;

const POST_TIMEOUT: Duration = Duration::from_secs(5);
const BATCH: Duration = Duration::from_millis(50);

/// The report body for a snapshot.
pub fn level(snap: &Snapshot) -> serde_json::Value {
    let yoyo: Vec<serde_json::Value> = snap
        .views
        .iter()
        .filter_map(|v| {
            let since = v.yoyo_since?;
            Some(serde_json::json!({
                "task": v.spec.name,
                "uid": v.uid,
                "since_unix_ms": snap.clock.unix_ms(since),
                "quick_deaths": v.quick_deaths,
            }))
        })
        .collect();
    serde_json::json!({
        "type": "level",
        "revision": snap.revision,
        "instance": snap.instance,
        "health": snap.health(),
        "yoyo": yoyo,
    })
}

/// Runs until the control channel closes.
pub async fn run(
    url: Url,
    every: Duration,
    control: mpsc::Sender<Envelope>,
    mut events: broadcast::Receiver<Arc<Stamped>>,
) {
    let mut tick = tokio::time::interval(every.max(Duration::from_millis(10)));
    let mut pending: Option<String> = None;
    let mut dirty = true;
    let mut retry_at: Option<Instant> = None;
    let mut failures = 0u32;
    let mut next_complaint = Instant::now();
    loop {
        let wake = retry_at.unwrap_or_else(|| Instant::now() + Duration::from_secs(3600));
        tokio::select! {
            _ = tick.tick() => dirty = true,
            ev = events.recv() => match ev {
                Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {
                    // A change: report once the burst it belongs to is over.
                    tokio::time::sleep(BATCH).await;
                    while events.try_recv().is_ok() {}
                    dirty = true;
                }
                Err(broadcast::error::RecvError::Closed) => return,
            },
            _ = tokio::time::sleep_until(wake), if retry_at.is_some() => retry_at = None,
        }
        if dirty {
            let (tx, rx) = oneshot::channel();
            if control
                .send(Envelope {
                    request: Request::Snapshot,
                    reply: tx,
                })
                .await
                .is_err()
            {
                return;
            }
            if let Ok(Reply::Snapshot(snap)) = rx.await {
                pending = Some(level(&snap).to_string());
                dirty = false;
            }
        }
        if retry_at.is_some() {
            continue;
        }
        let Some(body) = pending.clone() else {
            continue;
        };
        let result = http_client::request(
            "POST",
            &url,
            &[("Content-Type", "application/json")],
            Some(body.as_bytes()),
            POST_TIMEOUT,
        )
        .await;
        if matches!(&result, Ok(r) if (200..300).contains(&r.status)) {
            if pending.as_deref() == Some(body.as_str()) {
                pending = None;
            }
            if failures > 0 {
                tracing::info!(
                    after_failures = failures,
                    "reports reach the ubervisor again"
                );
            }
            failures = 0;
            continue;
        }
        failures += 1;
        let delay = Duration::from_secs(1u64 << failures.min(6).saturating_sub(1))
            .min(Duration::from_secs(60));
        retry_at = Some(Instant::now() + delay);
        if Instant::now() >= next_complaint {
            let why = match result {
                Ok(r) => format!("HTTP {}", r.status),
                Err(e) => e.to_string(),
            };
            tracing::warn!(error = %why, retry_in_secs = delay.as_secs(), "cannot send report upstream");
            next_complaint = Instant::now() + Duration::from_secs(60);
        }
    }
}
