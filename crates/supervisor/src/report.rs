//! Reports to an ubervisor (`--report-url`): a heartbeat with the `/health` body every
//! `--report-interval`, and every yo-yo entry or exit at once.
//!
//! The reporter is its own task: a slow or dead receiver delays only the reports, never the
//! event loop. Failed posts are retried with growing delays (1 s doubling to 60 s); events wait
//! in a bounded queue (oldest dropped past 1 000); of heartbeats only the newest is kept.
use crate::control::{Envelope, Reply, Request};
use servicekit::http_client::{self, Url};
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{broadcast, mpsc, oneshot};
use tokio::time::Instant;

const MAX_QUEUED: usize = 1_000;
const POST_TIMEOUT: Duration = Duration::from_secs(5);

/// Runs until the control channel closes.
pub async fn run(
    url: Url,
    every: Duration,
    control: mpsc::Sender<Envelope>,
    mut events: broadcast::Receiver<Arc<str>>,
) {
    let mut queue: VecDeque<String> = VecDeque::new();
    let mut heartbeat: Option<String> = None;
    let mut tick = tokio::time::interval(every.max(Duration::from_millis(10)));
    let mut retry_at: Option<Instant> = None;
    let mut failures = 0u32;
    let mut next_complaint = Instant::now();
    loop {
        let wake = retry_at.unwrap_or_else(|| Instant::now() + Duration::from_secs(3600));
        tokio::select! {
            _ = tick.tick() => {
                let (tx, rx) = oneshot::channel();
                if control.send(Envelope { request: Request::Snapshot, reply: tx }).await.is_err() {
                    return;
                }
                if let Ok(Reply::Snapshot(snap)) = rx.await {
                    heartbeat = Some(serde_json::json!({"type": "heartbeat", "health": snap.health()}).to_string());
                }
            }
            ev = events.recv() => match ev {
                Ok(json) => {
                    let wanted = json.contains("\"type\":\"yoyo_entered\"") || json.contains("\"type\":\"yoyo_left\"");
                    if wanted {
                        if queue.len() >= MAX_QUEUED {
                            queue.pop_front();
                        }
                        queue.push_back(format!("{{\"type\":\"event\",\"event\":{json}}}"));
                    }
                }
                Err(broadcast::error::RecvError::Lagged(n)) => tracing::warn!(missed = n, "report queue lagged behind the event stream"),
                Err(broadcast::error::RecvError::Closed) => return,
            },
            _ = tokio::time::sleep_until(wake), if retry_at.is_some() => { retry_at = None; }
        }
        if retry_at.is_some() {
            continue;
        }
        // Events first (in order), then the newest heartbeat.
        while let Some(body) = queue.front().cloned().or_else(|| heartbeat.clone()) {
            let from_queue = !queue.is_empty();
            let result = http_client::request(
                "POST",
                &url,
                &[("Content-Type", "application/json")],
                Some(body.as_bytes()),
                POST_TIMEOUT,
            )
            .await;
            let ok = matches!(&result, Ok(r) if (200..300).contains(&r.status));
            if ok {
                if from_queue {
                    queue.pop_front();
                } else {
                    heartbeat = None;
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
                tracing::warn!(error = %why, queued = queue.len(), retry_in_secs = delay.as_secs(), "cannot send report upstream");
                next_complaint = Instant::now() + Duration::from_secs(60);
            }
            break;
        }
    }
}
