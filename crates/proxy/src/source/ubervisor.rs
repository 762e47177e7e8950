//! The ubervisor as a source (cluster mode): the running instances of one job, wherever the
//! scheduler placed them: `ubervisor:http://HOST:PORT/JOB`.
//!
//! A session subscribes to the ubervisor's `GET /events` (one `change` per new view of the
//! cluster) and reads `GET /jobs/JOB`, whose instances carry each node's reported state, host
//! and port. Each change schedules a re-read 10 ms later and never sooner than 100 ms after the
//! previous one; a 5 s timer re-reads anyway. The whole list is published each time (level,
//! not edges). Any replica answers reads, so a leader change costs nothing here. When the
//! ubervisor cannot be reached the last list stays in force and the session starts again after
//! 100 ms, doubling to 2 s.
use std::future::Future;
use std::net::{SocketAddr, ToSocketAddrs};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use servicekit::http_client::{self, Url};
use tokio::time::Instant;

use super::sse::Stream;
use super::{
    CONNECT_TIMEOUT, DEBOUNCE, Feed, MIN_READ_GAP, READ_TIMEOUT, Reconnect, SILENCE, Source,
    Target, api_and_name,
};

const RESYNC: Duration = Duration::from_secs(5);

/// `ubervisor:http://HOST:PORT/JOB`, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spec {
    pub api: Url,
    pub job: String,
}

impl Spec {
    pub fn parse(s: &str) -> Result<Spec, String> {
        let (api, job) = api_and_name("ubervisor", s, "job name", "/timeserver")?;
        if let Some(c) = job
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || "._-".contains(*c)))
        {
            return Err(format!("ubervisor:{s}: {c:?} cannot be in a job name"));
        }
        Ok(Spec { api, job })
    }
}

pub struct Ubervisor {
    spec: Spec,
}

impl Ubervisor {
    pub fn new(spec: Spec) -> Ubervisor {
        Ubervisor { spec }
    }

    /// The job's running instances, by instance name.
    async fn read(&self) -> Result<Vec<Target>, String> {
        let path = format!("/jobs/{}", self.spec.job);
        let url = self.spec.api.join(&path);
        let r = http_client::request("GET", &url, &[], None, READ_TIMEOUT)
            .await
            .map_err(|e| e.to_string())?;
        if r.status == 404 {
            // No such job (yet): no backends, and the answer is not an error of the source.
            return Ok(Vec::new());
        }
        if r.status != 200 {
            return Err(format!(
                "GET http://{}{path} answered {}: {}",
                url.authority,
                r.status,
                r.body.trim()
            ));
        }
        let v: serde_json::Value = serde_json::from_str(&r.body)
            .map_err(|e| format!("GET http://{}{path}: not a job: {e}", url.authority))?;
        Ok(targets(&v))
    }

    async fn session(
        &self,
        feed: &Feed,
        published: &mut Option<Vec<Target>>,
    ) -> Result<(), String> {
        let mut events = Stream::open(
            &self.spec.api.authority,
            "/events",
            None,
            CONNECT_TIMEOUT,
            SILENCE,
        )
        .await?;
        let list = self.read().await?;
        let mut last_read = Instant::now();
        feed.connected();
        feed.publish_if_changed(list, published);
        tracing::info!(source = %self.describe(), "following the ubervisor's view");
        let mut next_read: Option<Instant> = None;
        loop {
            let resync = last_read + RESYNC;
            let wake = next_read.unwrap_or(resync).min(resync);
            tokio::select! {
                ev = events.next() => {
                    if ev?.is_none() {
                        return Ok(());
                    }
                    let now = Instant::now();
                    next_read = next_read.or(Some((now + DEBOUNCE).max(last_read + MIN_READ_GAP)));
                }
                _ = tokio::time::sleep_until(wake) => {
                    let list = self.read().await?;
                    last_read = Instant::now();
                    next_read = None;
                    feed.publish_if_changed(list, published);
                }
            }
        }
    }
}

/// The running instances of a `GET /jobs/JOB` answer that have a host and a port.
pub fn targets(job: &serde_json::Value) -> Vec<Target> {
    let mut out: Vec<Target> = job["instances"]
        .as_array()
        .map(|a| a.as_slice())
        .unwrap_or_default()
        .iter()
        .filter(|i| i["state"] == "running")
        .filter_map(|i| {
            let host = i["host"].as_str()?;
            let port = u16::try_from(i["port"].as_u64()?).ok()?;
            let addr: SocketAddr = (host, port).to_socket_addrs().ok()?.next()?;
            Some(Target {
                name: Arc::new(i["instance"].as_str()?.to_string()),
                addr,
            })
        })
        .collect();
    out.sort();
    out
}

impl Source for Ubervisor {
    fn describe(&self) -> String {
        format!(
            "ubervisor http://{} job {}",
            self.spec.api.authority, self.spec.job
        )
    }

    fn run(self: Box<Self>, feed: Feed) -> Pin<Box<dyn Future<Output = ()> + Send>> {
        Box::pin(async move {
            let mut published = None;
            let mut reconnect = Reconnect::default();
            loop {
                let started = Instant::now();
                let why = match self.session(&feed, &mut published).await {
                    Ok(()) => "the ubervisor ended the event stream".to_string(),
                    Err(e) => e,
                };
                reconnect
                    .after(started, &feed, &self.describe(), "ubervisor", why)
                    .await;
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_picks_running_instances_with_an_address() {
        let s = Spec::parse("http://127.0.0.1:7272/timeserver").expect("spec");
        assert_eq!(s.job, "timeserver");
        assert!(Spec::parse("http://127.0.0.1:7272/").is_err());
        assert!(Spec::parse("http://127.0.0.1:7272/a b").is_err());
        let job = serde_json::json!({"instances": [
            {"instance": "ts-2", "state": "running", "host": "127.0.0.1", "port": 8002},
            {"instance": "ts-1", "state": "running", "host": "127.0.0.1", "port": 8001},
            {"instance": "ts-3", "state": "backoff", "host": "127.0.0.1", "port": 8003},
            {"instance": "ts-4", "state": "assigned", "host": null, "port": null},
        ]});
        let t = targets(&job);
        assert_eq!(
            t.iter().map(|t| t.name.as_str()).collect::<Vec<_>>(),
            ["ts-1", "ts-2"]
        );
        assert_eq!(t[0].addr.port(), 8001);
    }
}
