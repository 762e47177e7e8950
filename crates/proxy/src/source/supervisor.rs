//! The local supervisor's API as a source: the running tasks whose names match a pattern.
//!
//! # Theory of operation
//! A session subscribes to `GET /events` first, then reads `GET /tasks`: whatever changes
//! after the read arrives as an event, so nothing falls between the two. Each event about a
//! matching task is applied at once to the local view (a `started`/`restarted` event carries
//! the new port; `exited`/`stopping`/`stopped` take the task out; stale events, whose pid or
//! generation is older than the view's, are ignored), and schedules a re-read of `GET /tasks`
//! that confirms it: 10 ms after the event, and never sooner than 100 ms after the previous
//! read, so a burst of events costs a few reads, not one each. A `lagged` event (the
//! supervisor dropped events for us) schedules a re-read too, and so does a 30 s timer, as a
//! safety net.
//!
//! When the supervisor cannot be reached, or the stream ends, the session ends: the source
//! says so on the status page, keeps the last list in force, and reconnects after 100 ms,
//! doubling to 2 s while it keeps failing.
//!
//! A later supervisor will offer `GET /state?since=REV&wait=30s` (a long poll answering
//! `{"revision": N, "tasks": [...]}`). Only [`Supervisor::session`] would change: a session
//! loops on that request and calls [`View::replace`] with each answer; matching, publishing and
//! reconnecting stay as they are.
use std::collections::BTreeMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use servicekit::http_client::{self, Url};
use tokio::time::Instant;

use super::sse::Stream;
use super::{
    CONNECT_TIMEOUT, DEBOUNCE, Feed, MIN_READ_GAP, READ_TIMEOUT, Reconnect, SILENCE, Source,
    Target, api_and_name,
};

const RESYNC: Duration = Duration::from_secs(30);

/// `supervisor:http://HOST:PORT/PATTERN`, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spec {
    pub api: Url,
    /// Where the tasks listen: the API's host.
    pub host: IpAddr,
    pub pattern: String,
}

impl Spec {
    pub fn parse(s: &str) -> Result<Spec, String> {
        let (api, pattern) = api_and_name("supervisor", s, "task pattern", "/timeserver-*")?;
        if let Some(c) = pattern
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || "._-*?".contains(*c)))
        {
            return Err(format!(
                "supervisor:{s}: {c:?} cannot be in a task pattern (task names are made of \
                 A-Z a-z 0-9 . _ -, and * and ? are wildcards)"
            ));
        }
        let host = api
            .authority
            .to_socket_addrs()
            .map_err(|e| format!("supervisor:{s}: cannot resolve {}: {e}", api.authority))?
            .next()
            .ok_or_else(|| format!("supervisor:{s}: {} resolves to nothing", api.authority))?
            .ip();
        Ok(Spec { api, host, pattern })
    }
}

/// `*` matches any run of characters, `?` any one.
pub fn glob(pattern: &str, name: &str) -> bool {
    let (p, n): (Vec<char>, Vec<char>) = (pattern.chars().collect(), name.chars().collect());
    let (mut pi, mut ni) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ni < n.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == n[ni]) {
            pi += 1;
            ni += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ni));
            pi += 1;
        } else if let Some((sp, sn)) = star {
            pi = sp + 1;
            ni = sn + 1;
            star = Some((sp, sn + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

/// A task as `GET /tasks` shows it (only what is needed).
#[derive(Debug, Clone, Deserialize)]
pub struct TaskJson {
    pub name: String,
    pub state: String,
    pub port: Option<u16>,
    pub pid: Option<u32>,
    #[serde(default)]
    pub generation: u64,
}

/// A task event as `GET /events` sends it (only what is needed).
#[derive(Debug, Clone, Deserialize)]
pub struct EventJson {
    #[serde(rename = "type")]
    pub kind: String,
    pub task: String,
    pub pid: Option<u32>,
    pub port: Option<u16>,
    pub generation: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct TaskView {
    up: bool,
    port: Option<u16>,
    pid: Option<u32>,
    generation: u64,
}

/// The matching tasks as last known.
#[derive(Debug, Default)]
pub struct View {
    tasks: BTreeMap<String, TaskView>,
}

impl View {
    /// Replaces everything with a `GET /tasks` answer.
    pub fn replace(&mut self, pattern: &str, tasks: &[TaskJson]) {
        self.tasks = tasks
            .iter()
            .filter(|t| glob(pattern, &t.name))
            .map(|t| {
                let v = TaskView {
                    up: t.state == "running",
                    port: t.port,
                    pid: t.pid,
                    generation: t.generation,
                };
                (t.name.clone(), v)
            })
            .collect();
    }

    /// Applies one event; false when it was stale or says nothing about reachability.
    pub fn apply(&mut self, e: &EventJson) -> bool {
        match e.kind.as_str() {
            "started" | "restarted" => {
                let g = e.generation.unwrap_or(0);
                let v = self.tasks.entry(e.task.clone()).or_insert(TaskView {
                    up: false,
                    port: None,
                    pid: None,
                    generation: 0,
                });
                if g < v.generation {
                    return false;
                }
                *v = TaskView {
                    up: true,
                    port: e.port,
                    pid: e.pid,
                    generation: g,
                };
                true
            }
            "exited" | "stopping" | "stopped" => match self.tasks.get_mut(&e.task) {
                Some(v) if v.up && (e.pid.is_none() || e.pid == v.pid) => {
                    v.up = false;
                    true
                }
                _ => false,
            },
            "removed" => self.tasks.remove(&e.task).is_some(),
            _ => false,
        }
    }

    /// The running tasks with a port, reached at `host`, sorted by name.
    pub fn targets(&self, host: IpAddr) -> Vec<Target> {
        self.tasks
            .iter()
            .filter(|(_, v)| v.up)
            .filter_map(|(name, v)| {
                Some(Target {
                    name: Arc::new(name.clone()),
                    addr: SocketAddr::new(host, v.port?),
                })
            })
            .collect()
    }
}

pub struct Supervisor {
    spec: Spec,
    token: Option<String>,
}

/// Why a session ended.
type SessionEnd = String;

impl Supervisor {
    pub fn new(spec: Spec, token: Option<String>) -> Supervisor {
        Supervisor { spec, token }
    }

    async fn read_tasks(&self) -> Result<Vec<TaskJson>, String> {
        let url = self.spec.api.join("/tasks");
        let auth = self.token.as_ref().map(|t| format!("Bearer {t}"));
        let headers: Vec<(&str, &str)> = auth
            .as_deref()
            .map(|a| vec![("Authorization", a)])
            .unwrap_or_default();
        let r = http_client::request("GET", &url, &headers, None, READ_TIMEOUT)
            .await
            .map_err(|e| e.to_string())?;
        if r.status != 200 {
            let hint = if r.status == 401 {
                " (check --backends-token-file)"
            } else {
                ""
            };
            return Err(format!(
                "GET http://{}/tasks answered {}{hint}: {}",
                url.authority,
                r.status,
                r.body.trim()
            ));
        }
        serde_json::from_str(&r.body).map_err(|e| {
            format!(
                "GET http://{}/tasks: not a list of tasks: {e}",
                url.authority
            )
        })
    }

    /// One subscription, until the supervisor goes away. `Err` says why it ended; `Ok` means
    /// the stream ended cleanly (the supervisor stopped).
    async fn session(
        &self,
        feed: &Feed,
        view: &mut View,
        published: &mut Option<Vec<Target>>,
    ) -> Result<(), SessionEnd> {
        let mut events = Stream::open(
            &self.spec.api.authority,
            "/events",
            self.token.as_deref(),
            CONNECT_TIMEOUT,
            SILENCE,
        )
        .await?;
        let tasks = self.read_tasks().await?;
        let mut last_read = Instant::now();
        feed.connected();
        view.replace(&self.spec.pattern, &tasks);
        self.publish(feed, view, published);
        tracing::info!(source = %self.describe(), "following the supervisor's events");
        let mut next_read: Option<Instant> = None;
        loop {
            let resync = last_read + RESYNC;
            let wake = next_read.unwrap_or(resync).min(resync);
            tokio::select! {
                ev = events.next() => {
                    let Some(ev) = ev? else { return Ok(()) };
                    let changed = match ev.kind.as_str() {
                        "task" => match serde_json::from_str::<EventJson>(&ev.data) {
                            Ok(e) if glob(&self.spec.pattern, &e.task) => {
                                let now = Instant::now();
                                next_read = next_read.or(Some((now + DEBOUNCE).max(last_read + MIN_READ_GAP)));
                                view.apply(&e)
                            }
                            Ok(_) => false,
                            Err(err) => {
                                tracing::warn!(error = %err, data = %ev.data, "unreadable task event; re-reading the tasks");
                                next_read = next_read.or(Some(Instant::now()));
                                false
                            }
                        },
                        "lagged" | "resync" => {
                            tracing::info!("the supervisor dropped events for us; re-reading the tasks");
                            next_read = Some(Instant::now().max(last_read + MIN_READ_GAP));
                            false
                        }
                        _ => false,
                    };
                    if changed {
                        self.publish(feed, view, published);
                    }
                }
                _ = tokio::time::sleep_until(wake) => {
                    let tasks = self.read_tasks().await?;
                    last_read = Instant::now();
                    next_read = None;
                    view.replace(&self.spec.pattern, &tasks);
                    self.publish(feed, view, published);
                }
            }
        }
    }

    fn publish(&self, feed: &Feed, view: &View, published: &mut Option<Vec<Target>>) {
        feed.publish_if_changed(view.targets(self.spec.host), published);
    }
}

impl Source for Supervisor {
    fn describe(&self) -> String {
        format!(
            "supervisor http://{} tasks {}",
            self.spec.api.authority, self.spec.pattern
        )
    }

    fn run(self: Box<Self>, feed: Feed) -> Pin<Box<dyn Future<Output = ()> + Send>> {
        Box::pin(async move {
            let mut view = View::default();
            let mut published = None;
            let mut reconnect = Reconnect::default();
            loop {
                let started = Instant::now();
                let why = match self.session(&feed, &mut view, &mut published).await {
                    Ok(()) => "the supervisor ended the event stream".to_string(),
                    Err(e) => e,
                };
                reconnect
                    .after(started, &feed, &self.describe(), "supervisor", why)
                    .await;
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        for (p, n, want) in [
            ("timeserver-*", "timeserver-1", true),
            ("timeserver-*", "timeserver-", true),
            ("timeserver-*", "timeserver", false),
            ("timeserver-?", "timeserver-12", false),
            ("*-1", "timeserver-1", true),
            ("web", "web", true),
            ("web", "webs", false),
            ("a*b*c", "aXXbYYc", true),
            ("a*b*c", "aXXbYY", false),
            ("*", "", true),
        ] {
            assert_eq!(glob(p, n), want, "{p} vs {n}");
        }
    }

    #[test]
    fn spec() {
        let s = Spec::parse("http://127.0.0.1:7171/timeserver-*").expect("parses");
        assert_eq!(s.api.authority, "127.0.0.1:7171");
        assert_eq!(s.pattern, "timeserver-*");
        assert_eq!(s.host.to_string(), "127.0.0.1");
        for (bad, needle) in [
            ("http://127.0.0.1:7171", "no task pattern"),
            ("http://127.0.0.1:7171/", "no task pattern"),
            ("http://127.0.0.1:7171/a/b", "cannot be in a task pattern"),
            ("https://127.0.0.1/x", "not an http:// URL"),
        ] {
            let e = Spec::parse(bad).expect_err(bad);
            assert!(e.contains(needle), "{bad}: {e}");
        }
    }

    fn task(name: &str, state: &str, port: u16, pid: u32, generation: u64) -> TaskJson {
        TaskJson {
            name: name.into(),
            state: state.into(),
            port: Some(port),
            pid: Some(pid),
            generation,
        }
    }

    fn event(kind: &str, task: &str, pid: u32, port: Option<u16>, generation: u64) -> EventJson {
        EventJson {
            kind: kind.into(),
            task: task.into(),
            pid: Some(pid),
            port,
            generation: Some(generation),
        }
    }

    fn ports(v: &View) -> Vec<(String, u16)> {
        v.targets("127.0.0.1".parse().expect("ip"))
            .into_iter()
            .map(|t| (t.name.to_string(), t.addr.port()))
            .collect()
    }

    #[test]
    fn a_restart_moves_the_backend_and_stale_events_are_ignored() {
        let mut v = View::default();
        v.replace(
            "timeserver-*",
            &[
                task("timeserver-1", "running", 8000, 10, 1),
                task("timeserver-2", "running", 8001, 11, 2),
                task("authserver", "running", 7070, 12, 3),
                task("timeserver-3", "backoff", 8002, 13, 4),
            ],
        );
        assert_eq!(
            ports(&v),
            [("timeserver-1".into(), 8000), ("timeserver-2".into(), 8001)]
        );
        // timeserver-1 dies and comes back on 8003.
        assert!(v.apply(&event("exited", "timeserver-1", 10, None, 0)));
        assert_eq!(ports(&v), [("timeserver-2".into(), 8001)]);
        assert!(v.apply(&event("restarted", "timeserver-1", 20, Some(8003), 5)));
        assert_eq!(
            ports(&v),
            [("timeserver-1".into(), 8003), ("timeserver-2".into(), 8001)]
        );
        // A late event about the old process changes nothing.
        assert!(!v.apply(&event("exited", "timeserver-1", 10, None, 0)));
        assert!(!v.apply(&event("restarted", "timeserver-1", 10, Some(8000), 1)));
        assert_eq!(ports(&v)[0], ("timeserver-1".into(), 8003));
        // Stopping takes it out before it is gone; removal forgets it.
        assert!(v.apply(&event("stopping", "timeserver-2", 11, None, 0)));
        assert!(v.apply(&EventJson {
            kind: "removed".into(),
            task: "timeserver-2".into(),
            pid: None,
            port: None,
            generation: None,
        }));
        assert_eq!(ports(&v), [("timeserver-1".into(), 8003)]);
        assert!(!v.apply(&event("backoff", "timeserver-1", 20, None, 0)));
    }
}
