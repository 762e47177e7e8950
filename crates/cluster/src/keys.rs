//! The key layout in etcd, built and parsed in one place.
//!
//! ```text
//! <p>jobs/<job>                      Job         written by the leader (fenced), no lease
//! <p>nodes/<node>/info               NodeInfo    written by the node agent, node lease
//! <p>nodes/<node>/cordon             Cordon      written by the leader (fenced), no lease
//! <p>assign/<node>/<instance>        Assignment  written by the leader (fenced), no lease
//! <p>status/<node>/<instance>        TaskStatus  written by the node agent, node lease
//! <p>resched/<job>                   Reschedule  written by the leader (fenced), no lease
//! <p>losses/<node>                   NodeLosses  written by the leader (fenced), no lease
//! <p>moves                           Moves       written by the leader (fenced), no lease
//! <p>election/ubervisor              etcd Election API name; value = leader's HTTP address
//! ```
//! Assignments are keyed node first, so a node agent watches one prefix and wakes only for
//! its own work. Names never contain `/` (they are validated as task names), so a key parses
//! back without ambiguity.

/// What a key under the prefix means.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Key {
    Job(String),
    NodeInfo(String),
    Cordon(String),
    Assign {
        node: String,
        instance: String,
    },
    Status {
        node: String,
        instance: String,
    },
    /// A job's reschedule budget and history (yo-yo moves), kept across leader changes.
    Resched(String),
    /// When a node was lost, kept across leader changes (for automatic cordoning).
    Losses(String),
    /// Whether moves off lost nodes are frozen (a storm of losses), kept across leader changes.
    Moves,
}

/// Builds and parses keys under one prefix (default `/uv/`), so test runs and clusters can
/// share an etcd without seeing each other.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Keys {
    prefix: String,
}

impl Default for Keys {
    fn default() -> Self {
        Keys::new(DEFAULT_PREFIX)
    }
}

/// The prefix when none is configured.
pub const DEFAULT_PREFIX: &str = "/uv/";

impl Keys {
    /// `prefix` gets a trailing `/` if it lacks one.
    pub fn new(prefix: &str) -> Self {
        let mut prefix = prefix.to_string();
        if !prefix.ends_with('/') {
            prefix.push('/');
        }
        Keys { prefix }
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }
    pub fn jobs(&self) -> String {
        format!("{}jobs/", self.prefix)
    }
    pub fn job(&self, job: &str) -> String {
        format!("{}jobs/{job}", self.prefix)
    }
    pub fn nodes(&self) -> String {
        format!("{}nodes/", self.prefix)
    }
    pub fn node_info(&self, node: &str) -> String {
        format!("{}nodes/{node}/info", self.prefix)
    }
    pub fn cordon(&self, node: &str) -> String {
        format!("{}nodes/{node}/cordon", self.prefix)
    }
    /// Every assignment of every node.
    pub fn assign_all(&self) -> String {
        format!("{}assign/", self.prefix)
    }
    /// One node's assignments: what its agent watches.
    pub fn assign_node(&self, node: &str) -> String {
        format!("{}assign/{node}/", self.prefix)
    }
    pub fn assign(&self, node: &str, instance: &str) -> String {
        format!("{}assign/{node}/{instance}", self.prefix)
    }
    pub fn status_all(&self) -> String {
        format!("{}status/", self.prefix)
    }
    pub fn status_node(&self, node: &str) -> String {
        format!("{}status/{node}/", self.prefix)
    }
    pub fn status(&self, node: &str, instance: &str) -> String {
        format!("{}status/{node}/{instance}", self.prefix)
    }
    pub fn resched(&self, job: &str) -> String {
        format!("{}resched/{job}", self.prefix)
    }
    pub fn losses(&self, node: &str) -> String {
        format!("{}losses/{node}", self.prefix)
    }
    pub fn moves(&self) -> String {
        format!("{}moves", self.prefix)
    }
    /// The Election API name the ubervisor replicas campaign on.
    pub fn election(&self) -> String {
        format!("{}election/ubervisor", self.prefix)
    }

    /// What `key` is, or `None` for a key outside the layout.
    pub fn parse(&self, key: &str) -> Option<Key> {
        let rest = key.strip_prefix(&self.prefix)?;
        let parts: Vec<&str> = rest.split('/').collect();
        let ok = |s: &str| !s.is_empty();
        match parts.as_slice() {
            ["jobs", j] if ok(j) => Some(Key::Job((*j).into())),
            ["nodes", n, "info"] if ok(n) => Some(Key::NodeInfo((*n).into())),
            ["nodes", n, "cordon"] if ok(n) => Some(Key::Cordon((*n).into())),
            ["assign", n, i] if ok(n) && ok(i) => Some(Key::Assign {
                node: (*n).into(),
                instance: (*i).into(),
            }),
            ["status", n, i] if ok(n) && ok(i) => Some(Key::Status {
                node: (*n).into(),
                instance: (*i).into(),
            }),
            ["resched", j] if ok(j) => Some(Key::Resched((*j).into())),
            ["losses", n] if ok(n) => Some(Key::Losses((*n).into())),
            ["moves"] => Some(Key::Moves),
            _ => None,
        }
    }
}

/// The task name of instance `i` (1-based) of `job`: job `web` count 3 runs `web-1..web-3`.
pub fn instance_name(job: &str, i: u32) -> String {
    format!("{job}-{i}")
}

/// The 1-based index of `instance` if it is an instance of `job`.
pub fn instance_index(job: &str, instance: &str) -> Option<u32> {
    let n = instance.strip_prefix(job)?.strip_prefix('-')?;
    if n.starts_with('0') {
        return None;
    }
    n.parse().ok().filter(|&i| i > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip() {
        let k = Keys::new("/t/x");
        assert_eq!(k.prefix(), "/t/x/");
        assert_eq!(k.parse(&k.job("web")), Some(Key::Job("web".into())));
        assert_eq!(
            k.parse(&k.node_info("n1")),
            Some(Key::NodeInfo("n1".into()))
        );
        assert_eq!(k.parse(&k.cordon("n1")), Some(Key::Cordon("n1".into())));
        assert_eq!(
            k.parse(&k.assign("n1", "web-2")),
            Some(Key::Assign {
                node: "n1".into(),
                instance: "web-2".into()
            })
        );
        assert_eq!(
            k.parse(&k.status("n1", "web-2")),
            Some(Key::Status {
                node: "n1".into(),
                instance: "web-2".into()
            })
        );
        assert_eq!(k.parse(&k.resched("web")), Some(Key::Resched("web".into())));
        assert_eq!(k.parse(&k.losses("n1")), Some(Key::Losses("n1".into())));
        assert_eq!(k.parse(&k.moves()), Some(Key::Moves));
        assert_eq!(k.parse("/uv/jobs/web"), None);
        assert_eq!(k.parse(&format!("{}jobs/", k.prefix())), None);
        assert_eq!(k.parse(&format!("{}assign/n1/a/b", k.prefix())), None);
        assert!(k.assign("n1", "a").starts_with(&k.assign_node("n1")));
        assert!(!k.assign("n10", "a").starts_with(&k.assign_node("n1")));
    }

    #[test]
    fn instance_names() {
        assert_eq!(instance_name("web", 3), "web-3");
        assert_eq!(instance_index("web", "web-3"), Some(3));
        assert_eq!(instance_index("web", "web-03"), None);
        assert_eq!(instance_index("web", "web-0"), None);
        assert_eq!(instance_index("web", "webx-3"), None);
        assert_eq!(instance_index("web-1", "web-1-2"), Some(2));
    }
}
