//! The results of one run: the table (Markdown), the target checks of issue 6, the JSON.
use crate::install::PeerInfo;
use crate::kind::Kind;
use crate::latency::{Case, CaseResult};
use crate::scale::{ApiLoad, ScaleResult};
use crate::stats::Summary;
use crate::timeserver::TimeserverResult;
use serde::Serialize;
use std::fmt::Write as _;

/// Where the run happened.
#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    pub cores: usize,
    pub cpu: String,
    pub memory_gib: f64,
    pub kernel: String,
    /// `/proc/loadavg` when the run started (other work on the machine adds noise).
    pub loadavg_at_start: String,
}

impl Machine {
    pub fn read() -> Machine {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu = cpuinfo
            .lines()
            .find_map(|l| {
                l.strip_prefix("model name")?
                    .split_once(':')
                    .map(|(_, v)| v.trim().to_string())
            })
            .unwrap_or_default();
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        let kb: f64 = meminfo
            .lines()
            .find_map(|l| {
                l.strip_prefix("MemTotal:")?
                    .trim()
                    .trim_end_matches("kB")
                    .trim()
                    .parse()
                    .ok()
            })
            .unwrap_or(0.0);
        Machine {
            cores: std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(0),
            cpu,
            memory_gib: kb / 1024.0 / 1024.0,
            kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
                .unwrap_or_default()
                .trim()
                .to_string(),
            loadavg_at_start: std::fs::read_to_string("/proc/loadavg")
                .unwrap_or_default()
                .trim()
                .to_string(),
        }
    }
}

/// Latency results of one supervisor.
#[derive(Debug, Clone, Serialize)]
pub struct KindLatency {
    pub kind: Kind,
    pub cases: Vec<CaseResult>,
    pub error: Option<String>,
}

/// One target of issue 6, item 2.
#[derive(Debug, Clone, Serialize)]
pub struct Target {
    pub name: String,
    pub limit: String,
    pub measured: String,
    /// `None`: not measured in this run.
    pub pass: Option<bool>,
}

/// Everything a run produced.
#[derive(Debug, Clone, Serialize)]
pub struct Results {
    pub date_utc: String,
    pub command: String,
    pub quick: bool,
    pub machine: Machine,
    pub sizes: Vec<usize>,
    pub idle_secs: f64,
    pub restarts_per_series: usize,
    pub series: usize,
    pub kinds: Vec<Kind>,
    pub task_program: String,
    /// Our supervisor's binary and when it was built.
    pub supervisor_binary: String,
    pub peers: Vec<PeerInfo>,
    pub latency: Vec<KindLatency>,
    pub scale: Vec<ScaleResult>,
    pub errors: Vec<String>,
    pub timeserver: Option<TimeserverResult>,
    pub api_enabled: bool,
    /// Our supervisor has the API (`--listen`).
    pub api_available: bool,
    pub targets: Vec<Target>,
    pub wall_secs: f64,
}

/// UTC date and time from the system clock, `YYYY-MM-DD HH:MM:SS`.
pub fn utc_now() -> String {
    utc(std::time::SystemTime::now())
}

/// `t` in UTC, `YYYY-MM-DD HH:MM:SS`.
pub fn utc(t: std::time::SystemTime) -> String {
    let secs = t
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil from days (H. Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// A number with about three significant digits.
pub fn num(v: f64) -> String {
    let a = v.abs();
    if a == 0.0 {
        "0".into()
    } else if a < 0.01 {
        format!("{v:.4}")
    } else if a < 1.0 {
        format!("{v:.3}")
    } else if a < 10.0 {
        format!("{v:.2}")
    } else if a < 100.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.0}")
    }
}

/// How ours compares with the best (lowest) peer value.
pub fn ratio(ours: Option<f64>, peers: &[(Kind, Option<f64>)]) -> String {
    let best = peers
        .iter()
        .filter_map(|(k, v)| Some((*k, (*v)?)))
        .min_by(|a, b| a.1.total_cmp(&b.1));
    match (ours, best) {
        (Some(o), Some((k, b))) if o > 0.0 && b > 0.0 => {
            if o <= b {
                format!("{}× lower ({})", num(b / o), k.name())
            } else {
                format!("{}× higher ({})", num(o / b), k.name())
            }
        }
        (Some(_), Some((k, _))) => format!("n/a ({})", k.name()),
        _ => "n/a".into(),
    }
}

/// Picks a scale cell's text and value out of a result.
type ScaleCellFn = dyn Fn(&ScaleResult) -> Option<(String, f64)>;

/// A cell: value or the reason there is none.
#[derive(Debug, Clone)]
struct Cell {
    text: String,
    value: Option<f64>,
}

impl Cell {
    fn val(text: String, value: f64) -> Cell {
        Cell {
            text,
            value: Some(value),
        }
    }
    fn note(text: impl Into<String>) -> Cell {
        Cell {
            text: text.into(),
            value: None,
        }
    }
}

fn spread(s: &Summary) -> String {
    format!("{} ({}–{})", num(s.median), num(s.p10), num(s.p90))
}

/// The cell of the "restart under API load" row:
/// `median (p10–p90) under load; idle: median (p10–p90); N req/s`, with ` ⚠` when something
/// fell short (the notes say what).
pub fn api_load_text(l: &ApiLoad) -> String {
    let part = |s: Option<&Summary>| s.map(spread).unwrap_or_else(|| "no sample".into());
    format!(
        "{} under load; idle: {}; {} req/s{}",
        part(l.loaded_ms.as_ref()),
        part(l.idle_ms.as_ref()),
        num(l.requests_per_s),
        if l.note.is_some() { " ⚠" } else { "" }
    )
}

impl Results {
    fn latency_of(&self, kind: Kind) -> Option<&KindLatency> {
        self.latency.iter().find(|l| l.kind == kind)
    }

    fn case(&self, kind: Kind, case: Case) -> Option<&CaseResult> {
        self.latency_of(kind)?.cases.iter().find(|c| c.case == case)
    }

    fn scale_of(&self, kind: Kind, n: usize) -> Option<&ScaleResult> {
        self.scale.iter().find(|s| s.kind == kind && s.n == n)
    }

    fn missing_cell(&self, kind: Kind) -> Cell {
        if let Some(p) = self.peers.iter().find(|p| p.kind == kind && !p.available) {
            return Cell::note(p.note.clone().unwrap_or_else(|| "not installed".into()));
        }
        if let Some(e) = self.latency_of(kind).and_then(|l| l.error.as_ref()) {
            return Cell::note(format!("error: {}", e.lines().next().unwrap_or("")));
        }
        Cell::note("—")
    }

    fn first_cell(&self, kind: Kind, case: Case) -> Cell {
        match self.case(kind, case) {
            Some(c) => match &c.first {
                Some(s) if kind == Kind::Ours && case == Case::A => Cell::val(spread(s), s.median),
                Some(s) => Cell::val(
                    format!("{} ({}–{})", num(s.median), num(s.min), num(s.max)),
                    s.median,
                ),
                None => Cell::note(c.notes().unwrap_or_else(|| "no restart".into())),
            },
            None => self.missing_cell(kind),
        }
    }

    fn all_cell(&self, kind: Kind, case: Case) -> Cell {
        if kind == Kind::Ours && case == Case::A && self.case(kind, case).is_some() {
            return Cell::note("n/a: yo-yo after the 1st (100 ms × 2ⁿ)");
        }
        match self.case(kind, case) {
            Some(c) => match &c.all {
                Some(s) => {
                    let mut t = spread(s);
                    if c.notes().is_some() {
                        t.push_str(" ⚠");
                    }
                    Cell::val(t, s.median)
                }
                None => Cell::note(c.notes().unwrap_or_else(|| "no restart".into())),
            },
            None => self.missing_cell(kind),
        }
    }

    fn scale_cell(
        &self,
        kind: Kind,
        n: usize,
        f: impl Fn(&ScaleResult) -> Option<(String, f64)>,
    ) -> Cell {
        match self.scale_of(kind, n) {
            Some(s) => match f(s) {
                Some((t, v)) => Cell::val(t, v),
                None if s.reached < n => Cell::note(match &s.note {
                    Some(note) if note.starts_with("not run") => note.clone(),
                    _ => format!("only {}/{n} running", s.reached),
                }),
                None => Cell::note("—"),
            },
            None => self.missing_cell(kind),
        }
    }

    fn row(&self, out: &mut String, label: &str, cells: Vec<(Kind, Cell)>) {
        let ours = cells
            .iter()
            .find(|(k, _)| *k == Kind::Ours)
            .and_then(|(_, c)| c.value);
        let peers: Vec<(Kind, Option<f64>)> = cells
            .iter()
            .filter(|(k, _)| k.is_peer())
            .map(|(k, c)| (*k, c.value))
            .collect();
        let _ = write!(out, "| {label} |");
        for (_, c) in &cells {
            let _ = write!(out, " {} |", c.text.replace('|', "/"));
        }
        let _ = writeln!(out, " {} |", ratio(ours, &peers));
    }

    /// The table, in Markdown.
    pub fn table(&self) -> String {
        let mut out = String::new();
        let kinds = &self.kinds;
        let _ = write!(out, "| metric |");
        for k in kinds {
            let _ = write!(out, " {} |", k.name());
        }
        let _ = writeln!(out, " ours vs best peer |");
        let _ = writeln!(out, "|---|{}---|", "---|".repeat(kinds.len()));
        let cases: &[Case] = if self.latency.is_empty() {
            &[]
        } else {
            &[Case::A, Case::B, Case::C]
        };
        for &case in cases {
            let cells = kinds
                .iter()
                .map(|k| (*k, self.first_cell(*k, case)))
                .collect();
            self.row(
                &mut out,
                &format!(
                    "restart {} ({}): first restart, ms",
                    case.label(),
                    case.describe()
                ),
                cells,
            );
            let cells = kinds
                .iter()
                .map(|k| (*k, self.all_cell(*k, case)))
                .collect();
            self.row(
                &mut out,
                &format!("restart {}: all restarts, ms", case.label()),
                cells,
            );
        }
        for &n in &self.sizes {
            let rows: [(&str, &ScaleCellFn); 5] = [
                ("all running, s", &|s| s.all_running_s.map(|v| (num(v), v))),
                ("supervisor RSS (PSS), MB", &|s| {
                    s.idle
                        .as_ref()
                        .map(|i| (format!("{} ({})", num(i.rss_mb), num(i.pss_mb)), i.rss_mb))
                }),
                ("idle CPU, % of a core", &|s| {
                    s.idle.as_ref().map(|i| match i.cpu_excl_checkpoint_pct {
                        Some(x) => (
                            format!("{} ({} w/o checkpoint)", num(i.cpu_pct), num(x)),
                            i.cpu_pct,
                        ),
                        None => (num(i.cpu_pct), i.cpu_pct),
                    })
                }),
                ("idle wake-ups/s", &|s| {
                    s.idle
                        .as_ref()
                        .map(|i| match i.wakeups_excl_checkpoint_per_s {
                            Some(x) => (
                                format!("{} ({} w/o checkpoint)", num(i.wakeups_per_s), num(x)),
                                i.wakeups_per_s,
                            ),
                            None => (num(i.wakeups_per_s), i.wakeups_per_s),
                        })
                }),
                ("storm: all replaced, s", &|s| {
                    s.storm.as_ref().map(|st| match st.secs {
                        Some(v) => (
                            if st.live_after != st.killed {
                                format!("{} ({} live after)", num(v), st.live_after)
                            } else {
                                num(v)
                            },
                            v,
                        ),
                        None => (format!("{} of {} lost", st.lost, st.killed), f64::NAN),
                    })
                }),
            ];
            for (label, f) in rows {
                let cells = kinds
                    .iter()
                    .map(|k| (*k, self.scale_cell(*k, n, f)))
                    .map(|(k, c)| {
                        (
                            k,
                            if c.value.is_some_and(f64::is_nan) {
                                Cell::note(c.text)
                            } else {
                                c
                            },
                        )
                    })
                    .collect();
                self.row(&mut out, &format!("N={n}: {label}"), cells);
            }
        }
        if kinds.contains(&Kind::Ours) {
            let ours_only = |out: &mut String, label: &str, text: String| {
                let mut row = format!("| {label} |");
                for k in kinds {
                    let _ = write!(
                        row,
                        " {} |",
                        if *k == Kind::Ours {
                            text.as_str()
                        } else {
                            "—"
                        }
                    );
                }
                row.push_str(" ours only |\n");
                out.push_str(&row);
            };
            let big = self.sizes.iter().copied().max();
            if let Some(big) = big {
                let ck = self
                    .scale_of(Kind::Ours, big)
                    .and_then(|s| s.checkpoint.as_ref());
                ours_only(
                    &mut out,
                    &format!("checkpoint write at N={big}, ms"),
                    match ck {
                        Some(c) => format!(
                            "{} ({} bytes{})",
                            spread(&c.write_ms),
                            c.bytes,
                            c.main_thread_cpu_ms_per_checkpoint
                                .map(|m| format!("; +{} ms encoding on the loop", num(m)))
                                .unwrap_or_default()
                        ),
                        None => "not measured".into(),
                    },
                );
                let api = self.scale_of(Kind::Ours, big);
                // The rows that need the API: the same wording when it is off.
                let api_cell = |value: Option<String>, note: Option<&String>| -> String {
                    match (self.api_enabled, value, note) {
                        (false, _, _) if self.api_available => "n/a (--no-api)".into(),
                        (false, _, _) => "n/a (no API yet)".into(),
                        (true, Some(v), _) => v,
                        (true, None, Some(e)) => format!("error: {e}"),
                        (true, None, None) => "not measured".into(),
                    }
                };
                ours_only(
                    &mut out,
                    &format!("GET /tasks at N={big}, ms"),
                    api_cell(
                        api.and_then(|s| s.api_tasks_ms.as_ref()).map(spread),
                        api.and_then(|s| s.api_note.as_ref()),
                    ),
                );
                ours_only(
                    &mut out,
                    &format!(
                        "restart under API load at N={big} (GET /tasks + /metrics looped), ms"
                    ),
                    api_cell(
                        api.and_then(|s| s.api_load.as_ref()).map(api_load_text),
                        api.and_then(|s| s.api_load_note.as_ref()),
                    ),
                );
            }
            if let Some(t) = &self.timeserver {
                ours_only(
                    &mut out,
                    "timeserver SIGKILL → answers HTTP, ms",
                    match t.to_http_ms.as_ref() {
                        Some(s) => format!(
                            "{}{}",
                            spread(s),
                            t.supervisor_since_death_ms
                                .as_ref()
                                .map(|d| format!("; respawn {}", spread(d)))
                                .unwrap_or_default()
                        ),
                        None => t.note.clone().unwrap_or_else(|| "no sample".into()),
                    },
                );
            }
        }
        out
    }

    /// Checks the targets of issue 6, item 2, against ours.
    pub fn check_targets(&mut self) {
        let mut t = Vec::new();
        for case in [Case::A, Case::B, Case::C] {
            let s = self
                .case(Kind::Ours, case)
                .and_then(|c| if case == Case::A { c.first } else { c.all });
            for (what, limit, get) in [("p50", 0.5, 0usize), ("p90", 1.0, 1usize)] {
                let v = s.map(|s| if get == 0 { s.median } else { s.p90 });
                t.push(Target {
                    name: format!(
                        "restart latency {what}, case {} (first restarts)",
                        case.label()
                    ),
                    limit: format!("≤ {limit} ms"),
                    measured: v
                        .map(|v| format!("{} ms", num(v)))
                        .unwrap_or_else(|| "not measured".into()),
                    pass: v.map(|v| v <= limit),
                });
            }
        }
        let big = self.scale_of(Kind::Ours, 10_000);
        let mut add =
            |name: &str, limit: &str, v: Option<f64>, unit: &str, ok: &dyn Fn(f64) -> bool| {
                t.push(Target {
                    name: name.into(),
                    limit: limit.into(),
                    measured: v
                        .map(|v| format!("{}{unit}", num(v)))
                        .unwrap_or_else(|| "not measured (needs N=10000)".into()),
                    pass: v.map(ok),
                })
            };
        add(
            "10 000 tasks all running",
            "≤ 3 s",
            big.and_then(|s| s.all_running_s),
            " s",
            &|v| v <= 3.0,
        );
        add(
            "supervisor RSS at 10 000 tasks",
            "≤ 40 MB",
            big.and_then(|s| s.idle.as_ref().map(|i| i.rss_mb)),
            " MB",
            &|v| v <= 40.0,
        );
        let with_ckpt = big
            .and_then(|s| {
                s.idle
                    .as_ref()
                    .map(|i| format!(" (with the checkpoint: {} %)", num(i.cpu_pct)))
            })
            .unwrap_or_default();
        add(
            "idle CPU at 10 000 tasks, apart from the checkpoint",
            "≤ 0.1 % of a core",
            big.and_then(|s| s.idle.as_ref().and_then(|i| i.cpu_excl_checkpoint_pct)),
            &format!(" %{with_ckpt}"),
            &|v| v <= 0.1,
        );
        add(
            "idle wake-ups at 10 000 tasks, apart from the checkpoint",
            "≤ 1 /s",
            big.and_then(|s| {
                s.idle
                    .as_ref()
                    .and_then(|i| i.wakeups_excl_checkpoint_per_s)
            }),
            " /s",
            &|v| v <= 1.0,
        );
        add(
            "storm of 10 000 replaced (spawn-rate cap on), none lost",
            "≤ 5 s",
            big.and_then(|s| {
                s.storm.as_ref().map(|st| {
                    if st.lost == 0 {
                        st.secs.unwrap_or(f64::INFINITY)
                    } else {
                        f64::INFINITY
                    }
                })
            }),
            " s",
            &|v| v <= 5.0,
        );
        add(
            "checkpoint write at 10 000 tasks (p90)",
            "≤ 20 ms",
            big.and_then(|s| s.checkpoint.as_ref().map(|c| c.write_ms.p90)),
            " ms",
            &|v| v <= 20.0,
        );
        self.targets = t;
    }

    /// The target lines, PASS/FAIL/SKIP.
    pub fn targets_text(&self) -> String {
        let mut out = String::new();
        for t in &self.targets {
            let verdict = match t.pass {
                Some(true) => "PASS",
                Some(false) => "FAIL",
                None => "SKIP",
            };
            let _ = writeln!(out, "{verdict}  {} {}: {}", t.name, t.limit, t.measured);
        }
        out
    }

    /// Notes: what fell short, per supervisor.
    pub fn notes_text(&self) -> String {
        let mut out = String::new();
        for l in &self.latency {
            for c in &l.cases {
                if let Some(n) = c.notes() {
                    let _ = writeln!(out, "- {} case {}: {n}", l.kind.name(), c.case.label());
                }
            }
            if let Some(e) = &l.error {
                let _ = writeln!(out, "- {} latency: {e}", l.kind.name());
            }
        }
        for s in &self.scale {
            if let Some(n) = &s.note {
                let _ = writeln!(out, "- {} N={}: {n}", s.kind.name(), s.n);
            }
            if let Some(st) = &s.storm {
                if st.lost > 0 || st.live_after != st.killed {
                    let _ = writeln!(
                        out,
                        "- {} N={} storm: {} killed, {} replaced, {} lost, {} live after",
                        s.kind.name(),
                        s.n,
                        st.killed,
                        st.replaced,
                        st.lost,
                        st.live_after
                    );
                }
            }
            if let Some(n) = s
                .api_load
                .as_ref()
                .and_then(|l| l.note.as_ref())
                .or(s.api_load_note.as_ref())
            {
                let _ = writeln!(
                    out,
                    "- {} N={}: restart under API load: {n}",
                    s.kind.name(),
                    s.n
                );
            }
            if let Some(stop) = &s.stop {
                if s.kind == Kind::Ours
                    && (stop.exit.as_deref() != Some("exit status: 0") || stop.swept > 0)
                {
                    let _ = writeln!(
                        out,
                        "- ours N={}: after SIGTERM: {:?}, {} leftover processes swept",
                        s.n, stop.exit, stop.swept
                    );
                }
            }
        }
        for e in &self.errors {
            let _ = writeln!(out, "- error: {e}");
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_and_ratios() {
        assert_eq!(num(0.4567), "0.457");
        assert_eq!(num(12.34), "12.3");
        assert_eq!(num(1234.0), "1234");
        assert_eq!(
            ratio(Some(0.5), &[(Kind::Runit, Some(1000.0)), (Kind::S6, None)]),
            "2000× lower (runit)"
        );
        assert_eq!(
            ratio(
                Some(4.0),
                &[(Kind::Runit, Some(2.0)), (Kind::S6, Some(3.0))]
            ),
            "2.00× higher (runit)"
        );
        assert_eq!(ratio(None, &[(Kind::Runit, Some(2.0))]), "n/a");
    }

    fn load(note: Option<&str>) -> ApiLoad {
        ApiLoad {
            method: String::new(),
            idle_samples_ms: vec![0.3, 0.2, 0.4],
            idle_ms: Summary::of(&[0.3, 0.2, 0.4]),
            loaded_samples_ms: vec![4.0, 1.0, 12.0],
            loaded_ms: Summary::of(&[4.0, 1.0, 12.0]),
            idle_victims: Vec::new(),
            loaded_victims: Vec::new(),
            clients: Vec::new(),
            load_secs: 2.0,
            requests_per_s: 96.5,
            running_after: 100,
            note: note.map(str::to_string),
        }
    }

    #[test]
    fn api_load_cell() {
        assert_eq!(
            api_load_text(&load(None)),
            "4.00 (1.60–10.4) under load; idle: 0.300 (0.220–0.380); 96.5 req/s"
        );
        assert!(api_load_text(&load(Some("x"))).ends_with("req/s ⚠"));
        let mut l = load(None);
        l.loaded_ms = None;
        l.requests_per_s = 0.0;
        assert_eq!(
            api_load_text(&l),
            "no sample under load; idle: 0.300 (0.220–0.380); 0 req/s"
        );
    }

    fn results(api_enabled: bool, api_available: bool, scale: ScaleResult) -> Results {
        Results {
            date_utc: String::new(),
            command: String::new(),
            quick: true,
            machine: Machine {
                cores: 2,
                cpu: String::new(),
                memory_gib: 1.0,
                kernel: String::new(),
                loadavg_at_start: String::new(),
            },
            sizes: vec![100],
            idle_secs: 5.0,
            restarts_per_series: 8,
            series: 1,
            kinds: vec![Kind::Ours],
            task_program: String::new(),
            supervisor_binary: String::new(),
            peers: Vec::new(),
            latency: Vec::new(),
            scale: vec![scale],
            errors: Vec::new(),
            timeserver: None,
            api_enabled,
            api_available,
            targets: Vec::new(),
            wall_secs: 0.0,
        }
    }

    /// The ours-only cell of the row whose label starts with `label`.
    fn cell(table: &str, label: &str) -> String {
        let line = table
            .lines()
            .find(|l| l.starts_with(&format!("| {label}")))
            .unwrap_or_else(|| panic!("no row {label:?} in\n{table}"));
        line.split(" | ").nth(1).unwrap().to_string()
    }

    #[test]
    fn api_load_row() {
        let row = "restart under API load at N=100 (GET /tasks + /metrics looped), ms";
        let empty = || ScaleResult::empty(Kind::Ours, 100, None);
        // API off: the same wording as the GET /tasks row.
        for (available, want) in [(true, "n/a (--no-api)"), (false, "n/a (no API yet)")] {
            let t = results(false, available, empty()).table();
            assert_eq!(cell(&t, row), want);
            assert_eq!(cell(&t, "GET /tasks at N=100"), want);
        }
        let mut s = empty();
        s.api_load = Some(load(None));
        let t = results(true, true, s).table();
        assert_eq!(cell(&t, row), api_load_text(&load(None)));
        assert!(t.contains(&format!("| {row} |")));
        let mut s = empty();
        s.api_load_note = Some("the supervisor has no --listen".into());
        let r = results(true, true, s);
        assert_eq!(
            cell(&r.table(), row),
            "error: the supervisor has no --listen"
        );
        assert!(
            r.notes_text()
                .contains("restart under API load: the supervisor")
        );
        assert_eq!(
            cell(&results(true, true, empty()).table(), row),
            "not measured"
        );
    }

    #[test]
    fn dates() {
        let d = utc_now();
        assert_eq!(d.len(), 19);
        assert!(d.starts_with("20"));
    }
}
