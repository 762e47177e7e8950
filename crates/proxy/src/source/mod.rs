//! Where the backends come from.
//!
//! A source is a task that publishes the whole list of backends ([`Target`]s) through a
//! [`Feed`] whenever it learns of a change, and says how it is doing (connected, last error)
//! for the status page. Publishing the whole list, not deltas, keeps every source
//! level-triggered: a missed notification costs a late update, never a wrong one.
//!
//! Adding a source is one module implementing [`Source`] and one arm in [`Spec::parse`] and
//! [`Spec::into_source`]: the local supervisor (`supervisor:URL/PATTERN`), the ubervisor
//! (cluster mode, `ubervisor:URL/JOB`) and a static list are.
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use servicekit::http_client::Url;
use tokio::time::Instant;

use crate::backends::Registry;

pub mod sse;
pub mod statics;
pub mod supervisor;
pub mod ubervisor;

/// One backend as a source names it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Target {
    /// What the metrics and the status page call it: the task name, or the address.
    pub name: Arc<String>,
    pub addr: SocketAddr,
}

/// How a source is doing, for the status page and `/backends`.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct SourceStatus {
    /// What the source is (`supervisor http://127.0.0.1:7171 tasks timeserver-*`).
    pub describe: String,
    /// True while the source follows its origin live.
    pub connected: bool,
    /// Lists published so far.
    pub updates: u64,
    /// When the last list was published (Unix ms).
    pub last_update_unix_ms: Option<u64>,
    /// The last failure to reach the origin, if the source is not connected now.
    pub last_error: Option<String>,
}

/// A source's way to publish.
#[derive(Clone)]
pub struct Feed {
    registry: Arc<Registry>,
}

impl Feed {
    pub fn new(registry: Arc<Registry>) -> Feed {
        Feed { registry }
    }

    /// Replaces the whole backend list.
    pub fn publish(&self, targets: Vec<Target>) {
        self.registry.replace(targets);
    }

    /// Publishes `targets` unless they are what `published` says went out last.
    pub fn publish_if_changed(&self, targets: Vec<Target>, published: &mut Option<Vec<Target>>) {
        if published.as_ref() != Some(&targets) {
            self.publish(targets.clone());
            *published = Some(targets);
        }
    }

    /// The source follows its origin live again.
    pub fn connected(&self) {
        self.registry.source_status(|s| {
            s.connected = true;
            s.last_error = None;
        });
    }

    /// The source lost its origin; the last list stays in force.
    pub fn disconnected(&self, error: String) {
        self.registry.source_status(|s| {
            s.connected = false;
            s.last_error = Some(error);
        });
    }
}

/// How a following source (supervisor, ubervisor) reads its origin: a re-read this long
/// after an event, never sooner than [`MIN_READ_GAP`] after the previous read.
pub const DEBOUNCE: Duration = Duration::from_millis(10);
pub const MIN_READ_GAP: Duration = Duration::from_millis(100);
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
pub const READ_TIMEOUT: Duration = Duration::from_secs(5);
/// Both origins send a keep-alive comment every 15 s: this much silence means the stream died.
pub const SILENCE: Duration = Duration::from_secs(45);

/// `http://HOST:PORT/NAME` of a `kind:` source: the API (empty path) and the name after it.
/// `what` and `example` say what the name is, for the error when it is missing.
pub fn api_and_name(
    kind: &str,
    s: &str,
    what: &str,
    example: &str,
) -> Result<(Url, String), String> {
    let url = Url::parse(s)?;
    let name = url.path.trim_start_matches('/').to_string();
    if name.is_empty() {
        return Err(format!(
            "{kind}:{s}: no {what} after the address (e.g. {example})"
        ));
    }
    Ok((
        Url {
            authority: url.authority,
            path: String::new(),
        },
        name,
    ))
}

/// The pause between a source's sessions when its origin cannot be reached: 100 ms, doubling to
/// 2 s while it keeps failing, and from 100 ms again after a session that ran a while.
pub struct Reconnect {
    delay: Duration,
}

impl Default for Reconnect {
    fn default() -> Self {
        Reconnect { delay: FIRST }
    }
}

const FIRST: Duration = Duration::from_millis(100);
const MAX: Duration = Duration::from_secs(2);
/// A session that lasted this long was a success: the backoff starts over.
const GOOD_SESSION: Duration = Duration::from_secs(5);

impl Reconnect {
    /// After a session that began at `started` ended with `why`: logs that `source` lost its
    /// `origin` (keeping the last list), tells the status page, and waits the backoff.
    pub async fn after(
        &mut self,
        started: Instant,
        feed: &Feed,
        source: &str,
        origin: &str,
        why: String,
    ) {
        if started.elapsed() > GOOD_SESSION {
            self.delay = FIRST;
        }
        tracing::warn!(source = %source, error = %why, retry_in_ms = self.delay.as_millis() as u64,
            "lost the {origin}; keeping the last known backends");
        feed.disconnected(why);
        tokio::time::sleep(self.delay).await;
        self.delay = (self.delay * 2).min(MAX);
    }
}

/// A running source of backends.
pub trait Source: Send + 'static {
    /// One line for the log and the status page.
    fn describe(&self) -> String;
    /// Publishes lists through `feed` until the process ends.
    fn run(self: Box<Self>, feed: Feed) -> Pin<Box<dyn Future<Output = ()> + Send>>;
}

/// `--backends` as given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Spec {
    Static(Vec<SocketAddr>),
    Supervisor(supervisor::Spec),
    Ubervisor(ubervisor::Spec),
}

impl Spec {
    /// `supervisor:URL/PATTERN`, `static:ADDR,ADDR` or `ADDR,ADDR`.
    pub fn parse(s: &str) -> Result<Spec, String> {
        if let Some(rest) = s.strip_prefix("supervisor:") {
            return supervisor::Spec::parse(rest).map(Spec::Supervisor);
        }
        if let Some(rest) = s.strip_prefix("ubervisor:") {
            return ubervisor::Spec::parse(rest).map(Spec::Ubervisor);
        }
        let list = s.strip_prefix("static:").unwrap_or(s);
        statics::parse(list).map(Spec::Static)
    }

    /// [`Spec::parse`] for clap, with the accepted forms in the message.
    pub fn parse_arg(s: &str) -> Result<Spec, String> {
        Spec::parse(s).map_err(|e| {
            format!(
                "{e}\n  expected supervisor:http://HOST:PORT/PATTERN (e.g. \
                 supervisor:http://127.0.0.1:7171/timeserver-*), ubervisor:http://HOST:PORT/JOB \
                 (e.g. ubervisor:http://127.0.0.1:7272/timeserver) or static:HOST:PORT,HOST:PORT"
            )
        })
    }

    pub fn into_source(self, token: Option<String>) -> Box<dyn Source> {
        match self {
            Spec::Static(addrs) => Box::new(statics::Static { addrs }),
            Spec::Supervisor(spec) => Box::new(supervisor::Supervisor::new(spec, token)),
            Spec::Ubervisor(spec) => Box::new(ubervisor::Ubervisor::new(spec)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_three_forms() {
        assert_eq!(
            Spec::parse("127.0.0.1:1,127.0.0.1:2"),
            Spec::parse("static:127.0.0.1:1, 127.0.0.1:2")
        );
        assert!(matches!(
            Spec::parse("supervisor:http://127.0.0.1:7171/timeserver-*"),
            Ok(Spec::Supervisor(_))
        ));
        assert!(matches!(
            Spec::parse("ubervisor:http://127.0.0.1:7272/web"),
            Ok(Spec::Ubervisor(_))
        ));
    }
}
