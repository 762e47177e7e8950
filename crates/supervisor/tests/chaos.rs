//! Chaos: the supervisor is SIGKILLed at random moments (idle, right after a restart, during a
//! stop, during its own start-up and recovery), tasks are SIGKILLed with and without it, and
//! after every recovery the machine must be exactly as the task list says: one live instance of
//! each task, all started by the current supervisor, nothing of an earlier incarnation left
//! (grandchildren included), the test's own sentinel processes untouched, and a dump that lists
//! exactly the live task leaders.
//!
//! Also the restart storm: many tasks die together and come back under the host-wide spawn cap.
//!
//! `CHAOS_ITERATIONS` (default 30) and `CHAOS_SEED` (default: from the clock; always printed)
//! replay or extend a run.
use crate::common::*;
use crate::timeservice::lay_out_time_service;
use proc_util::*;
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::Child;
use std::time::{Duration, Instant};
use supervisor_core::{Checkpoint, SplitMix64};
use testkit::{Spawner, wait_for, wait_for_value};

/// `/proc` reading for the fault tests: stat fields, environment markers, CPU, memory, fds.
pub mod proc_util {
    use std::fs;

    /// The fields of `/proc/PID/stat` the tests look at.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub struct Proc {
        pub pid: i32,
        pub state: char,
        pub ppid: i32,
        pub pgid: i32,
        pub sid: i32,
        /// utime + stime, clock ticks.
        pub cpu: u64,
        /// Field 22, clock ticks after boot.
        pub start: u64,
    }

    impl Proc {
        /// True while this very process (same pid *and* start time) exists and is not a zombie.
        pub fn alive(&self) -> bool {
            stat(self.pid).is_some_and(|p| p.start == self.start && !p.zombie())
        }

        pub fn zombie(&self) -> bool {
            matches!(self.state, 'Z' | 'X')
        }
    }

    pub fn stat(pid: i32) -> Option<Proc> {
        let text = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        let (_, rest) = text.rsplit_once(')')?;
        let f: Vec<&str> = rest.split_whitespace().collect();
        // f[0] is field 3.
        let n = |i: usize| -> Option<u64> { f.get(i - 3)?.parse().ok() };
        Some(Proc {
            pid,
            state: f.first()?.chars().next()?,
            ppid: f.get(1)?.parse().ok()?,
            pgid: f.get(2)?.parse().ok()?,
            sid: f.get(3)?.parse().ok()?,
            cpu: n(14)? + n(15)?,
            start: n(22)?,
        })
    }

    /// `var` in the initial environment of `pid`.
    pub fn env_var(pid: i32, var: &str) -> Option<String> {
        let env = fs::read(format!("/proc/{pid}/environ")).ok()?;
        let prefix = format!("{var}=");
        env.split(|b| *b == 0)
            .find(|kv| kv.starts_with(prefix.as_bytes()))
            .map(|kv| String::from_utf8_lossy(&kv[prefix.len()..]).into_owned())
    }

    /// argv joined by spaces.
    pub fn cmdline(pid: i32) -> String {
        let raw = fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        raw.split(|b| *b == 0)
            .filter(|a| !a.is_empty())
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// Every live (non-zombie) process whose initial environment has `var=value`.
    pub fn procs_with_env(var: &str, value: &str) -> Vec<Proc> {
        testkit::pids_with_env(var, value)
            .into_iter()
            .filter_map(stat)
            .filter(|p| !p.zombie())
            .collect()
    }

    /// Resident memory in KiB.
    pub fn rss_kib(pid: i32) -> u64 {
        let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or(0)
    }

    /// Open descriptors.
    pub fn fd_count(pid: i32) -> usize {
        fs::read_dir(format!("/proc/{pid}/fd"))
            .map(|d| d.count())
            .unwrap_or(0)
    }

    /// Direct children of `pid` (every thread's), zombies included.
    pub fn children(pid: i32) -> Vec<i32> {
        let mut out = Vec::new();
        if let Ok(dir) = fs::read_dir(format!("/proc/{pid}/task")) {
            for t in dir.flatten() {
                let s = fs::read_to_string(t.path().join("children")).unwrap_or_default();
                out.extend(s.split_whitespace().filter_map(|p| p.parse::<i32>().ok()));
            }
        }
        out
    }

    /// Clock ticks since boot, now (the unit of `Proc::start`).
    pub fn now_ticks() -> u64 {
        let up = fs::read_to_string("/proc/uptime").unwrap_or_default();
        let secs: f64 = up
            .split_whitespace()
            .next()
            .and_then(|s| s.parse().ok())
            .unwrap_or(0.0);
        (secs * ticks_per_sec() as f64) as u64
    }

    pub fn ticks_per_sec() -> u64 {
        // SAFETY: sysconf has no preconditions.
        let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
        if t > 0 { t as u64 } else { 100 }
    }
}

const INSTANCE_VAR: &str = "TIMESERVICE_SUPERVISOR";
const TASK_VAR: &str = "TIMESERVICE_TASK";
const DUMP: &str = "run/sup.dump";
/// Long enough for a loaded 2-core machine; a healthy run settles in well under a second.
const SETTLE: Duration = Duration::from_secs(30);

/// One task of the chaos list: its name, the argv of its leader once it has exec'd, and the argv
/// of the other processes it keeps (children in its group, escaped grandchildren).
struct Expect {
    name: &'static str,
    leader: String,
    helpers: Vec<&'static str>,
}

/// Tasks that may be SIGKILLed while a supervisor watches them: all of them. When `daemon`'s
/// leader dies, the grandchild that escaped its group is stopped with it.
const KILLABLE_WHILE_SUPERVISED: &[&str] = &[
    "authserver",
    "timeserver-1",
    "timeserver-2",
    "plain",
    "forker",
    "daemon",
    "stubborn",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Death {
    /// SIGKILL at a random moment of calm.
    Idle,
    /// SIGKILL a task, wait for its replacement to appear, SIGKILL the supervisor at once
    /// (before the restart can reach the dump).
    AfterRestart,
    /// SIGTERM, then SIGKILL while the stop is under way.
    DuringStop,
    /// SIGKILL, then SIGKILL some of the orphaned tasks before the next start.
    TasksToo,
    /// SIGTERM and a clean exit.
    Clean,
}

struct Chaos {
    dir: tempfile::TempDir,
    spawner: Spawner,
    rng: SplitMix64,
    seed: u64,
    tasks: String,
    expect: Vec<Expect>,
    args: Vec<String>,
    authport: u16,
    sup: Option<Child>,
    incarnation: usize,
    /// Everything done so far, shown when a check fails.
    history: Vec<String>,
    sentinels: Vec<(Child, Proc)>,
    instance: Option<String>,
}

/// What a settled incarnation looks like.
struct Settled {
    leaders: BTreeMap<String, Proc>,
    all: Vec<Proc>,
    dump: Checkpoint,
}

impl Chaos {
    fn new(seed: u64) -> Chaos {
        let dir = tempfile::tempdir().unwrap();
        lay_out_time_service(dir.path());
        let authport = testkit::free_port();
        let (first, last) = testkit::free_port_range(20);
        let ts = |log: &str, inflight: &str, avg: &str, dev: &str| {
            vec![
                "./bin/timeserver".to_string(),
                format!("--log=etc/{log}"),
                "--port={{port}}".into(),
                format!("--authport={authport}"),
                format!("--max-inflight={inflight}"),
                format!("--avg-response-ms={avg}"),
                format!("--response-deviation-ms={dev}"),
            ]
        };
        let ts1 = ts("log-01.xml", "80", "500", "300");
        let ts2 = ts("log-02.xml", "2", "20000", "1000");
        let auth = vec![
            "./bin/authserver".to_string(),
            "--log=etc/auth.xml".into(),
            format!("--authport={authport}"),
        ];
        let tasks = serde_json::json!([
            {"name": "authserver", "command": auth, "output": "out/auth.out", "error": "out/auth.err"},
            {"name": "timeserver-1", "command": ts1, "output": "out/ts1.out", "error": "out/ts1.err"},
            {"name": "timeserver-2", "command": ts2, "output": "out/ts2.out", "error": "out/ts2.err"},
            {"name": "plain", "command": ["sh", "-c", "exec sleep 1000"]},
            // A child in the task's own process group.
            {"name": "forker", "command": ["sh", "-c", "sleep 1002 & exec sleep 1000"]},
            // A grandchild that leaves the group and the session (reparented to the supervisor).
            {"name": "daemon", "command": ["sh", "-c", "setsid -f sleep 1001; exec sleep 1000"]},
            // Ignores SIGTERM: every stop of it (shutdown, recovery) needs the grace period and KILL.
            {"name": "stubborn", "command": ["sh", "-c", "trap '' TERM; exec sleep 1003"]},
        ])
        .to_string();
        let argv_of = |v: &[String]| {
            v.iter()
                .map(|s| s.replace("{{port}}", "*"))
                .collect::<Vec<_>>()
                .join(" ")
        };
        let expect = vec![
            Expect {
                name: "authserver",
                leader: argv_of(&auth),
                helpers: vec![],
            },
            Expect {
                name: "timeserver-1",
                leader: argv_of(&ts1),
                helpers: vec![],
            },
            Expect {
                name: "timeserver-2",
                leader: argv_of(&ts2),
                helpers: vec![],
            },
            Expect {
                name: "plain",
                leader: "sleep 1000".into(),
                helpers: vec![],
            },
            Expect {
                name: "forker",
                leader: "sleep 1000".into(),
                helpers: vec!["sleep 1002"],
            },
            Expect {
                name: "daemon",
                leader: "sleep 1000".into(),
                helpers: vec!["sleep 1001"],
            },
            Expect {
                name: "stubborn",
                leader: "sleep 1003".into(),
                helpers: vec![],
            },
        ];
        let args = vec![
            format!("--port-range={first}-{last}"),
            format!("--dumpfile={DUMP}"),
            "--checkpoint-interval=1s".into(),
            "--stop-timeout=500ms".into(),
            // A taken API address is fatal; these supervisors need no API.
            "--listen=none".into(),
        ];
        let spawner = Spawner::new();
        // Sentinels: processes of the test's own. One even carries a task name and a marker of
        // another supervisor instance, to prove that markers are matched exactly.
        let mut sentinels = Vec::new();
        for decoy in [false, true] {
            let mut cmd = spawner.command("sleep");
            cmd.arg("1000");
            if decoy {
                cmd.env(TASK_VAR, "plain")
                    .env(INSTANCE_VAR, "dump-0123456789abcdef");
            }
            let child = cmd.spawn().unwrap();
            let p = stat(child.id() as i32).unwrap();
            sentinels.push((child, p));
        }
        Chaos {
            dir,
            spawner,
            rng: SplitMix64::new(seed),
            seed,
            tasks,
            expect,
            args,
            authport,
            sup: None,
            incarnation: 0,
            history: Vec::new(),
            sentinels,
            instance: None,
        }
    }

    fn note(&mut self, what: String) {
        self.history.push(format!("[{}] {what}", self.incarnation));
    }

    fn log_path(&self, n: usize) -> PathBuf {
        self.dir.path().join(format!("sup-{n}.log"))
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.log_path(self.incarnation)).unwrap_or_default()
    }

    /// Fails with the seed, the history and the current log.
    fn fail(&self, what: &str) -> ! {
        let mut all_logs = String::new();
        for n in self.incarnation.saturating_sub(2)..=self.incarnation {
            all_logs.push_str(&format!(
                "---- sup-{n}.log ----\n{}\n",
                std::fs::read_to_string(self.log_path(n)).unwrap_or_default()
            ));
        }
        panic!(
            "chaos failure (replay with CHAOS_SEED={}): {what}\n---- history ----\n{}\n{all_logs}",
            self.seed,
            self.history.join("\n")
        );
    }

    fn chance(&mut self, p: f64) -> bool {
        self.rng.next_f64() < p
    }

    fn below(&mut self, n: u64) -> u64 {
        self.rng.next_u64() % n.max(1)
    }

    fn sup_pid(&self) -> i32 {
        self.sup.as_ref().map_or(0, |c| c.id() as i32)
    }

    fn start_supervisor(&mut self) {
        self.incarnation += 1;
        let mut args = self.args.clone();
        args.push(format!("--log=sup-{}.log", self.incarnation));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let mut cmd = self.spawner.bin("supervisor");
        cmd.current_dir(self.dir.path()).args(&args);
        cmd.stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        let mut child = cmd.spawn().unwrap();
        use std::io::Write;
        let _ = child.stdin.take().unwrap().write_all(self.tasks.as_bytes());
        self.note(format!("supervisor started, pid {}", child.id()));
        self.sup = Some(child);
    }

    /// SIGKILLs the supervisor (our unreaped child: its pid cannot have been reused) and reaps it.
    fn kill_supervisor(&mut self) {
        if let Some(mut c) = self.sup.take() {
            let _ = c.kill();
            let status = c.wait().unwrap();
            self.note(format!("supervisor {} SIGKILLed ({status})", c.id()));
        }
    }

    /// Every live process carrying the instance marker (any incarnation).
    fn marked(&self) -> Vec<Proc> {
        match &self.instance {
            Some(i) => procs_with_env(INSTANCE_VAR, i),
            // Before the first dump: every task process carries the test's mark and a task name.
            None => self
                .spawner
                .pids()
                .into_iter()
                .filter(|p| env_var(*p, TASK_VAR).is_some())
                .filter_map(stat)
                .collect(),
        }
    }

    fn leader_of(&self, name: &str) -> Option<Proc> {
        let sup = self.sup_pid();
        let e = self.expect.iter().find(|e| e.name == name)?;
        self.marked().into_iter().find(|p| {
            p.ppid == sup
                && p.pid == p.pgid
                && env_var(p.pid, TASK_VAR).as_deref() == Some(name)
                && matches(&cmdline(p.pid), &e.leader)
        })
    }

    /// Waits until the current incarnation has recovered and runs exactly the task list, then
    /// checks every invariant. `old`: processes of earlier incarnations alive when it started.
    fn settle(&mut self, old: &[Proc]) -> Settled {
        let deadline = Instant::now() + SETTLE;
        let mut recovery_checked = false;
        let mut last_problem: String;
        loop {
            if let Some(c) = self.sup.as_mut() {
                if let Ok(Some(status)) = c.try_wait() {
                    self.fail(&format!("the supervisor exited by itself: {status}"));
                }
            }
            // The moment recovery is logged, every leftover must already be gone: not "soon".
            if !recovery_checked && self.log().contains("recovery: leftovers") {
                recovery_checked = true;
                let alive: Vec<String> = old
                    .iter()
                    .filter(|p| p.alive())
                    .map(|p| format!("{} ({})", p.pid, cmdline(p.pid)))
                    .collect();
                if !alive.is_empty() {
                    self.fail(&format!(
                        "processes of an earlier incarnation survived recovery: {alive:?}"
                    ));
                }
            }
            match self.check_state(old) {
                Ok(s) if recovery_checked => return s,
                Ok(_) => last_problem = "no recovery line in the log yet".into(),
                Err(e) => last_problem = e,
            }
            if Instant::now() > deadline {
                self.fail(&format!("did not settle within {SETTLE:?}: {last_problem}"));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// `Ok` when every invariant holds right now.
    fn check_state(&mut self, old: &[Proc]) -> Result<Settled, String> {
        let sup = self.sup_pid();
        let sup_stat = stat(sup).ok_or("supervisor gone")?;
        let text = std::fs::read_to_string(self.dir.path().join(DUMP))
            .map_err(|e| format!("no dump: {e}"))?;
        let dump = Checkpoint::parse(&text).map_err(|e| format!("dump does not parse: {e}"))?;
        if dump.supervisor.pid != sup as u32 {
            return Err(format!(
                "dump written by pid {}, not the current supervisor {sup}",
                dump.supervisor.pid
            ));
        }
        match &self.instance {
            None => self.instance = Some(dump.supervisor.instance.clone()),
            Some(i) if *i != dump.supervisor.instance => self.fail(&format!(
                "instance changed from {i} to {}",
                dump.supervisor.instance
            )),
            Some(_) => {}
        }
        if let Some(p) = old.iter().find(|p| p.alive()) {
            return Err(format!("old process {} ({}) alive", p.pid, cmdline(p.pid)));
        }
        let all = self.marked();
        let mut leaders = BTreeMap::new();
        for e in &self.expect {
            let mine: Vec<&Proc> = all
                .iter()
                .filter(|p| env_var(p.pid, TASK_VAR).as_deref() == Some(e.name))
                .collect();
            let mut want: Vec<&str> = e.helpers.clone();
            want.push(&e.leader);
            let mut got: Vec<String> = mine.iter().map(|p| cmdline(p.pid)).collect();
            got.sort();
            let ok = got.len() == want.len()
                && want.iter().all(|w| {
                    got.iter().filter(|g| matches(g, w)).count()
                        == want.iter().filter(|x| *x == w).count()
                });
            if !ok {
                return Err(format!("task {}: processes {got:?}, want {want:?}", e.name));
            }
            let leader = mine
                .iter()
                .find(|p| {
                    p.ppid == sup
                        && p.pid == p.pgid
                        && p.pid == p.sid
                        && matches(&cmdline(p.pid), &e.leader)
                })
                .ok_or_else(|| {
                    format!(
                        "task {}: no leader that is a child of {sup} and leads its own session",
                        e.name
                    )
                })?;
            leaders.insert(e.name.to_string(), **leader);
        }
        for p in &all {
            if p.start < sup_stat.start {
                return Err(format!(
                    "process {} ({}) started before the current supervisor",
                    p.pid,
                    cmdline(p.pid)
                ));
            }
        }
        // The dump lists exactly the live leaders, with their start times and this boot.
        let boot = std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
            .unwrap()
            .trim()
            .to_string();
        let recorded: BTreeSet<(String, u32, Option<u64>)> = dump
            .tasks
            .iter()
            .map(|t| (t.name.clone(), t.pid, t.start_time))
            .collect();
        let live: BTreeSet<(String, u32, Option<u64>)> = leaders
            .iter()
            .map(|(n, p)| (n.clone(), p.pid as u32, Some(p.start)))
            .collect();
        if recorded != live {
            return Err(format!(
                "dump lists {recorded:?}, live leaders are {live:?}"
            ));
        }
        if dump.clean
            || dump
                .tasks
                .iter()
                .any(|t| t.boot_id.as_deref() != Some(boot.as_str()) || t.pgid != t.pid)
        {
            return Err(format!("dump fields wrong: {text}"));
        }
        Ok(Settled { leaders, all, dump })
    }

    /// The sentinels are alive, unchanged and not stopped.
    fn check_sentinels(&mut self) {
        for i in 0..self.sentinels.len() {
            let (child, p) = &mut self.sentinels[i];
            let now = stat(p.pid);
            let exited = child.try_wait().unwrap();
            if exited.is_some() || now.is_none_or(|n| n.start != p.start || n.state == 'T') {
                let msg = format!(
                    "sentinel {} was touched: exit {exited:?}, now {now:?}",
                    p.pid
                );
                self.fail(&msg);
            }
        }
    }

    /// The time service answers: both time servers on their recorded ports, the auth server on
    /// its own.
    fn check_service(&mut self, s: &Settled) {
        for t in s
            .dump
            .tasks
            .iter()
            .filter(|t| t.name.starts_with("timeserver"))
        {
            let port = t.port.unwrap_or(0);
            let ok = wait_for(SETTLE, || {
                testkit::http_get(&format!("127.0.0.1:{port}"), "/", &[])
                    .is_ok_and(|r| r.status == 200)
            });
            if !ok {
                self.fail(&format!("{} does not answer on port {port}", t.name));
            }
        }
        let auth = self.authport;
        if !wait_for(SETTLE, || {
            std::net::TcpStream::connect(("127.0.0.1", auth)).is_ok()
        }) {
            self.fail(&format!("the auth server does not listen on {auth}"));
        }
    }

    /// SIGKILLs the leaders of up to `n` random tasks from `pool`.
    fn kill_some_leaders(&mut self, s: &Settled, pool: &[&str], n: u64) -> Vec<String> {
        let mut killed = Vec::new();
        for _ in 0..n {
            let name = pool[self.below(pool.len() as u64) as usize];
            if killed.iter().any(|k| k == name) {
                continue;
            }
            if let Some(p) = s.leaders.get(name).filter(|p| p.alive()) {
                // Checked alive with its start time just above; the pid is a live stranger's only
                // if it died and was reused within microseconds.
                unsafe { libc::kill(p.pid, libc::SIGKILL) };
                killed.push(name.to_string());
            }
        }
        self.note(format!("SIGKILLed the leaders of {killed:?}"));
        killed
    }
}

/// `pattern` matches `argv` exactly, `*` standing for one whole argument.
fn matches(argv: &str, pattern: &str) -> bool {
    let (a, p): (Vec<&str>, Vec<&str>) = (argv.split(' ').collect(), pattern.split(' ').collect());
    a.len() == p.len()
        && a.iter()
            .zip(&p)
            .all(|(x, y)| *y == "*" || x == y || (y.contains('*') && glob1(x, y)))
}

/// `--port=*` style: a literal prefix, then anything.
fn glob1(s: &str, pat: &str) -> bool {
    pat.split_once('*').is_some_and(|(pre, post)| {
        s.starts_with(pre) && s.ends_with(post) && s.len() >= pre.len() + post.len()
    })
}

impl Drop for Chaos {
    fn drop(&mut self) {
        if let Some(mut c) = self.sup.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        for (c, _) in &mut self.sentinels {
            let _ = c.kill();
            let _ = c.wait();
        }
        self.spawner.kill_all();
    }
}

#[test]
fn chaos_supervisor_and_task_kills_always_end_in_exactly_one_instance_of_each_task() {
    let seed = chaos_seed();
    let iterations = env_u64("CHAOS_ITERATIONS").unwrap_or(30);
    eprintln!("chaos: CHAOS_SEED={seed} CHAOS_ITERATIONS={iterations}");
    let t0 = Instant::now();
    let mut c = Chaos::new(seed);
    c.start_supervisor();
    let mut s = c.settle(&[]);
    c.check_service(&s);
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for i in 0..iterations {
        c.note(format!("---- iteration {i}"));
        // Sometimes tasks die under a live supervisor first.
        if c.chance(0.4) {
            let n = 1 + c.below(2);
            c.kill_some_leaders(&s, KILLABLE_WHILE_SUPERVISED, n);
            if c.chance(0.5) {
                c.settle(&[]);
            }
        }
        let death = match c.below(100) {
            0..30 => Death::Idle,
            30..55 => Death::AfterRestart,
            55..75 => Death::DuringStop,
            75..92 => Death::TasksToo,
            _ => Death::Clean,
        };
        *counts.entry(format!("{death:?}")).or_default() += 1;
        c.note(format!("death: {death:?}"));
        match death {
            Death::Idle => {
                let ms = c.below(300);
                std::thread::sleep(Duration::from_millis(ms));
                c.kill_supervisor();
            }
            Death::AfterRestart => {
                let victim = KILLABLE_WHILE_SUPERVISED
                    [c.below(KILLABLE_WHILE_SUPERVISED.len() as u64) as usize];
                let Some(before) = wait_for_value(SETTLE, || c.leader_of(victim)) else {
                    c.fail(&format!("no leader of {victim} to kill"))
                };
                unsafe { libc::kill(before.pid, libc::SIGKILL) };
                let replaced = wait_for_value(SETTLE, || {
                    c.leader_of(victim).filter(|p| p.pid != before.pid)
                });
                if replaced.is_none() {
                    c.fail(&format!("{victim} was not restarted after SIGKILL"));
                }
                c.note(format!(
                    "{victim} {} → {}",
                    before.pid,
                    replaced.map_or(0, |p| p.pid)
                ));
                c.kill_supervisor();
            }
            Death::DuringStop => {
                let sup = c.sup_pid();
                unsafe { libc::kill(sup, libc::SIGTERM) };
                if c.chance(0.5) {
                    wait_for(SETTLE, || c.log().contains("stopping task"));
                }
                let ms = c.below(400);
                std::thread::sleep(Duration::from_millis(ms));
                c.note(format!("SIGTERM, then SIGKILL after {ms} ms"));
                c.kill_supervisor();
            }
            Death::TasksToo => c.kill_supervisor(),
            Death::Clean => {
                let sup = c.sup_pid();
                unsafe { libc::kill(sup, libc::SIGTERM) };
                let mut child = c.sup.take().unwrap();
                let status = wait_for_value(SETTLE, || child.try_wait().unwrap());
                c.note(format!("clean stop: {status:?}"));
                if status.and_then(|s| s.code()) != Some(0) {
                    let _ = child.kill();
                    c.fail(&format!("a clean stop must exit 0, got {status:?}"));
                }
                let left = c.marked();
                if !left.is_empty() {
                    c.fail(&format!("left running after a clean stop: {left:?}"));
                }
                let dump =
                    Checkpoint::parse(&std::fs::read_to_string(c.dir.path().join(DUMP)).unwrap())
                        .unwrap();
                if !dump.clean || !dump.tasks.is_empty() {
                    c.fail("the final dump of a clean stop must be clean and empty");
                }
            }
        }
        // Everything of the dead incarnation still alive now.
        let mut old = c.marked();
        if death == Death::TasksToo {
            let n = 1 + c.below(old.len() as u64);
            for _ in 0..n {
                let p = old[c.below(old.len() as u64) as usize];
                if p.alive() {
                    unsafe { libc::kill(p.pid, libc::SIGKILL) };
                }
            }
            c.note(format!("SIGKILLed {n} orphaned task processes"));
        }
        // Sometimes the next supervisor dies during its own start-up or recovery, too.
        while c.chance(0.2) {
            c.start_supervisor();
            let ms = c.below(250);
            std::thread::sleep(Duration::from_millis(ms));
            c.note(format!("killed {ms} ms into start-up"));
            c.kill_supervisor();
            old = c.marked();
        }
        c.start_supervisor();
        s = c.settle(&old);
        c.check_sentinels();
        if c.chance(0.3) {
            c.check_service(&s);
        }
        assert!(s.all.len() >= c.expect.len());
    }
    // A clean end: nothing of ours is left, the sentinels live on.
    let sup = c.sup_pid();
    unsafe { libc::kill(sup, libc::SIGTERM) };
    let mut child = c.sup.take().unwrap();
    let status = wait_for_value(SETTLE, || child.try_wait().unwrap());
    assert_eq!(status.and_then(|s| s.code()), Some(0), "seed {seed}");
    assert!(
        c.marked().is_empty(),
        "seed {seed}: left running: {:?}",
        c.marked()
    );
    c.check_sentinels();
    eprintln!(
        "chaos: {iterations} iterations, {} supervisor starts, {counts:?}, {:.1}s",
        c.incarnation,
        t0.elapsed().as_secs_f64()
    );
}

/// Many tasks die together: they all come back, and spawns never outrun `--spawn-rate` (a token
/// bucket whose burst equals the rate).
#[test]
fn chaos_restart_storm_follows_the_spawn_rate_cap_and_loses_nothing() {
    const TASKS: usize = 200;
    const RATE: f64 = 50.0;
    let mut sup = Sup::new();
    let tasks: Vec<String> = (0..TASKS)
        .map(|i| {
            serde_json::json!({"name": format!("t{i:03}"), "command": ["sleep", "1000"]})
                .to_string()
        })
        .collect();
    sup.start(
        &list(&tasks),
        &[&format!("--spawn-rate={RATE}"), "--log-level=warn"],
    );
    let sup_pid = sup.pid();
    let leaders = |sup_pid: i32| -> BTreeMap<String, Proc> {
        children(sup_pid)
            .into_iter()
            .filter_map(stat)
            .filter(|p| !p.zombie())
            .filter_map(|p| Some((env_var(p.pid, TASK_VAR)?, p)))
            .collect()
    };
    assert!(
        wait_for(Duration::from_secs(60), || leaders(sup_pid).len() == TASKS),
        "all {TASKS} tasks start"
    );
    let first = leaders(sup_pid);
    check_rate(
        &first.values().map(|p| p.start).collect::<Vec<_>>(),
        RATE,
        RATE,
        "initial start",
    );

    // Let the bucket fill up again, then kill every leader at once.
    std::thread::sleep(Duration::from_millis(1200));
    for p in first.values() {
        if p.alive() {
            unsafe { libc::kill(p.pid, libc::SIGKILL) };
        }
    }
    let back = wait_for_value(Duration::from_secs(60), || {
        let now = leaders(sup_pid);
        let renewed = now
            .iter()
            .filter(|(n, p)| first.get(*n).is_some_and(|f| f.pid != p.pid))
            .count();
        (renewed == TASKS).then_some(now)
    });
    let back = back.unwrap_or_else(|| {
        panic!(
            "not every task came back: {} of {TASKS}",
            leaders(sup_pid).len()
        )
    });
    assert_eq!(
        back.keys().collect::<Vec<_>>(),
        first.keys().collect::<Vec<_>>(),
        "nothing lost, nothing doubled"
    );
    let starts: Vec<u64> = back.values().map(|p| p.start).collect();
    check_rate(&starts, RATE, RATE, "restart storm");
    let span = (starts.iter().max().unwrap() - starts.iter().min().unwrap()) as f64
        / ticks_per_sec() as f64;
    // 200 spawns at 50/s with a burst of 50 need about 3 s; they must not all go at once.
    assert!(
        span >= (TASKS as f64 - RATE) / RATE * 0.8,
        "restarts spread over {span:.2}s only"
    );
    assert!(
        span < 20.0,
        "restarts took {span:.2}s: the cap is far slower than configured"
    );
    assert!(sup.marked_pids().len() > TASKS);
    sup.signal(libc::SIGTERM);
    assert_eq!(sup.wait_exit(), Some(0));
    assert!(sup.marked_pids().is_empty());
}

/// Spawn start times (clock ticks) never exceed `burst + rate × span` in any window.
fn check_rate(starts: &[u64], rate: f64, burst: f64, what: &str) {
    let mut t: Vec<u64> = starts.to_vec();
    t.sort();
    let tick = 1.0 / ticks_per_sec() as f64;
    for i in 0..t.len() {
        for j in i..t.len() {
            let n = (j - i + 1) as f64;
            // Start times are whole ticks: the window may be up to a tick longer than it reads.
            let span = (t[j] - t[i]) as f64 * tick + tick;
            // Plus two: one token of float rounding at the window edge, one of scheduling
            // jitter between the spawn and the moment the process is counted as started.
            let allowed = burst + rate * span + 2.0;
            assert!(
                n <= allowed,
                "{what}: {n} spawns within {span:.3}s, cap allows {allowed:.1}"
            );
        }
    }
}
