//! Node loss and its storm guards, decided without IO: the view, the clock and the config in;
//! the records to write, the pages, the nodes to remediate and the assignments that may move
//! out.
//!
//! A node *holds* assignments; it is *missing* while its `info` key is gone (its lease
//! expired); the leader *declares* it lost ([`decide`]) when it is missing and this leader has
//! led for one full grace (`--lost-grace`), so a new leader, whose view of who heartbeats is
//! fresh, never takes a leader change for a node loss. The declaration goes to etcd
//! (`losses/<node>`: `lost`, and when), so a later leader neither repeats it nor forgets how
//! often the node was lost; a node lost `--lost-cordon` times within the window is cordoned.
//! A lost node that registers again is simply alive (its record's `lost` is cleared).
//!
//! Moves (deleting a lost node's assignment so that `reconcile` places the instance elsewhere)
//! are rate-limited (`--max-moves`, a token bucket the leader keeps) and frozen when more than
//! `--freeze-share` of the known nodes were lost within one grace and are still gone: a storm
//! is more likely the network or etcd than the machines, and moving everything at once onto
//! the survivors would overload them. The freeze is stored (`moves`), paged, and lifts by
//! itself once the nodes still lost are back under the share, or by `POST /moves/unfreeze`,
//! which accepts the losses so far (only losses declared after it count toward a new freeze).
use std::collections::BTreeSet;
use std::time::Duration;

use cluster::{Cordon, Moves, NodeLosses, VERSION};

use crate::view::View;

/// `N/PERIOD`: at most `n` per `period`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rate {
    pub n: u32,
    pub period: Duration,
}

impl Rate {
    /// `N/DURATION` (`3/1h`, `100/1s`), the duration also bare `s`, `m` or `h`.
    pub fn parse(s: &str) -> Result<Rate, String> {
        let err = |why: &str| format!("{s:?}: {why}; expected N/PERIOD such as 3/1h or 100/1s");
        let (n, per) = s.split_once('/').ok_or_else(|| err("no '/'"))?;
        let n: u32 = n
            .trim()
            .parse()
            .map_err(|_| err("N is not a whole number"))?;
        let per = per.trim();
        let per = match per {
            "s" => "1s",
            "m" => "1m",
            "h" => "1h",
            p => p,
        };
        let period = servicekit::duration::parse_duration(per)
            .map_err(|e| err(&format!("bad period: {e}")))?;
        if period.is_zero() {
            return Err(err("the period must be longer than zero"));
        }
        Ok(Rate { n, period })
    }
}

/// `A/B` or a decimal, in (0, 1]: the share of known nodes lost at once that freezes moves.
pub fn parse_share(s: &str) -> Result<f64, String> {
    let v = match s.split_once('/') {
        Some((a, b)) => match (a.trim().parse::<f64>(), b.trim().parse::<f64>()) {
            (Ok(a), Ok(b)) if b > 0.0 => a / b,
            _ => f64::NAN,
        },
        None => s.trim().parse::<f64>().unwrap_or(f64::NAN),
    };
    if v > 0.0 && v <= 1.0 {
        Ok(v)
    } else {
        Err(format!(
            "{s:?}: expected a share of the nodes in (0, 1], as A/B or a decimal (1/3, 0.5; 1 \
             never freezes)"
        ))
    }
}

/// The loss handling's flags.
#[derive(Debug, Clone)]
pub struct Config {
    /// `--lost-grace`: how long a new leader waits before declaring any node lost, and the
    /// window in which losses count as one storm.
    pub grace: Duration,
    /// `--freeze-share`: more than this share of the known nodes lost within one grace freezes
    /// moves.
    pub freeze_share: f64,
    /// `--max-moves`: instances moved off lost nodes, at most this many per period.
    pub max_moves: Rate,
    /// `--lost-cordon`: lost this many times within the period, a node is cordoned.
    pub cordon: Rate,
}

/// What the leader should do this round.
#[derive(Debug, Default, PartialEq)]
pub struct Decision {
    /// Records to write at `losses/<node>` (newly lost, or back).
    pub losses: Vec<NodeLosses>,
    /// Nodes declared lost just now (the remediation command runs for each).
    pub declared: Vec<String>,
    /// Automatic cordons to write.
    pub cordons: Vec<(String, Cordon)>,
    /// A new `moves` record (frozen or unfrozen just now).
    pub moves: Option<Moves>,
    /// (kind, subject, reason) for the pager.
    pub pages: Vec<(String, String, String)>,
    /// Assignments on lost nodes that may move now (at most the tokens given).
    pub released: BTreeSet<(String, String)>,
}

impl Decision {
    /// True when there is nothing to write to etcd.
    pub fn writes_nothing(&self) -> bool {
        self.losses.is_empty() && self.cordons.is_empty() && self.moves.is_none()
    }
}

fn human(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0 => format!("{}ms", d.as_millis()),
        s if s % 3600 == 0 => format!("{}h", s / 3600),
        s if s % 60 == 0 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

/// One round of loss handling. `led_for` is how long this replica has led, `now_ms` the wall
/// clock (Unix ms, the unit of the stored records), `tokens` the moves the rate limit allows.
pub fn decide(
    view: &View,
    cfg: &Config,
    led_for: Duration,
    now_ms: u64,
    tokens: usize,
) -> Decision {
    let mut d = Decision::default();
    let alive = |n: &str| view.nodes.contains_key(n);
    let holding: BTreeSet<&str> = view.assigns.keys().map(|(n, _)| n.as_str()).collect();

    for (n, l) in &view.losses {
        if l.lost && alive(n) {
            d.losses.push(NodeLosses {
                lost: false,
                ..l.clone()
            });
        }
    }
    if led_for >= cfg.grace {
        let window = cfg.cordon.period.as_millis() as u64;
        for n in holding.iter().filter(|n| !alive(n) && !view.lost(n)) {
            let mut rec = view.losses.get(*n).cloned().unwrap_or(NodeLosses {
                v: VERSION,
                node: n.to_string(),
                lost_at_ms: Vec::new(),
                lost: false,
            });
            rec.lost_at_ms
                .retain(|t| now_ms.saturating_sub(*t) < window);
            rec.lost_at_ms.push(now_ms);
            rec.lost = true;
            let times = rec.lost_at_ms.len();
            if cfg.cordon.n > 0 && times >= cfg.cordon.n as usize && !view.cordons.contains_key(*n)
            {
                let reason = format!(
                    "lost {times} times within {} (--lost-cordon={}/{}): cordoned automatically",
                    human(cfg.cordon.period),
                    cfg.cordon.n,
                    human(cfg.cordon.period)
                );
                d.cordons.push((
                    n.to_string(),
                    Cordon {
                        v: VERSION,
                        reason: reason.clone(),
                    },
                ));
                d.pages
                    .push(("node_cordoned".into(), n.to_string(), reason));
            }
            d.declared.push(n.to_string());
            d.losses.push(rec);
        }
    }

    let lost_now: BTreeSet<&str> = view
        .losses
        .keys()
        .map(String::as_str)
        .filter(|n| view.lost(n))
        .chain(d.declared.iter().map(String::as_str))
        .collect();
    let known: BTreeSet<&str> = view
        .nodes
        .keys()
        .map(String::as_str)
        .chain(holding.iter().copied())
        .chain(lost_now.iter().copied())
        .collect();
    let accepted = view.moves.as_ref().map_or(0, |m| m.unfrozen_at_ms);
    let grace_ms = cfg.grace.as_millis() as u64;
    let recent: BTreeSet<&str> = view
        .losses
        .iter()
        .filter(|(_, l)| {
            l.lost_at_ms
                .last()
                .is_some_and(|t| *t > accepted && now_ms.saturating_sub(*t) <= grace_ms)
        })
        .map(|(n, _)| n.as_str())
        .chain(d.declared.iter().map(String::as_str))
        .collect();
    let over = |k: usize| k as f64 > cfg.freeze_share * known.len() as f64 + 1e-9;
    let mut frozen = view.frozen();
    if !frozen && over(recent.len()) && over(lost_now.len()) {
        frozen = true;
        let names: Vec<&str> = recent.iter().copied().collect();
        let reason = format!(
            "{} of {} nodes lost within {} ({}): more than --freeze-share={:.2}, so moves are \
             frozen; they resume by themselves once the nodes still lost are back under that \
             share, or with POST /moves/unfreeze (ubervisor ctl unfreeze)",
            recent.len(),
            known.len(),
            human(cfg.grace),
            names.join(", "),
            cfg.freeze_share
        );
        d.pages
            .push(("moves_frozen".into(), "cluster".into(), reason.clone()));
        d.moves = Some(Moves {
            v: VERSION,
            frozen: true,
            reason,
            since_ms: now_ms,
            unfrozen_at_ms: accepted,
        });
    } else if frozen && !over(lost_now.len()) {
        frozen = false;
        d.moves = Some(Moves {
            v: VERSION,
            frozen: false,
            reason: format!(
                "unfrozen by itself: {} of {} nodes still lost",
                lost_now.len(),
                known.len()
            ),
            since_ms: now_ms,
            unfrozen_at_ms: now_ms,
        });
    }
    if !frozen {
        d.released = view
            .assigns
            .keys()
            .filter(|(n, _)| lost_now.contains(n.as_str()) && !alive(n))
            .take(tokens)
            .cloned()
            .collect();
    }
    d
}

/// The leader's token bucket for moves: full (`n`) when a term starts, refilled at `n` per
/// period.
#[derive(Debug)]
pub struct Bucket {
    rate: Rate,
    tokens: f64,
    at: tokio::time::Instant,
}

impl Bucket {
    pub fn new(rate: Rate, now: tokio::time::Instant) -> Bucket {
        Bucket {
            rate,
            tokens: f64::from(rate.n),
            at: now,
        }
    }

    /// Whole tokens available at `now`.
    pub fn available(&mut self, now: tokio::time::Instant) -> usize {
        let per_sec = f64::from(self.rate.n) / self.rate.period.as_secs_f64();
        let dt = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + dt * per_sec).min(f64::from(self.rate.n));
        self.at = now;
        self.tokens.floor() as usize
    }

    pub fn spend(&mut self, n: usize) {
        self.tokens = (self.tokens - n as f64).max(0.0);
    }
}

#[cfg(test)]
#[path = "lost_tests.rs"]
mod tests;
