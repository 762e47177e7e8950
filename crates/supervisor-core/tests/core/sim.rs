//! A fake shell around [`Core`]: fake pids, a hand-driven clock, and automatic answers to the
//! core's actions (configurable per scenario).
use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, Instant};
use supervisor_core::{
    Action, Core, Event, ExitStatus, Group, Input, Policy, PortRange, Sig, TaskId, TaskSpec,
    TaskState, TaskView,
};

pub fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

pub fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

/// A task spec; `port` puts `{{port}}` in its argv.
pub fn spec(name: &str, port: bool) -> TaskSpec {
    let mut command = vec![format!("./bin/{name}")];
    if port {
        command.push("--port={{port}}".into());
    }
    TaskSpec {
        name: name.into(),
        command,
        input: None,
        output: None,
        error: None,
        env: BTreeMap::new(),
        cwd: None,
        ..TaskSpec::default()
    }
}

/// The defaults of DESIGN.md, spelt out so that a change of `Policy::default` does not silently
/// change what these tests check.
pub fn policy() -> Policy {
    Policy {
        min_uptime: secs(1),
        yoyo_after: 2,
        stable_after: secs(60),
        backoff: supervisor_core::Backoff {
            base: ms(100),
            cap: secs(30),
            jitter: 0.25,
        },
        stop_timeout: secs(10),
        kill_timeout: secs(5),
        group_poll: ms(20),
        port_retry: secs(1),
        log_every: secs(30),
        spawn_rate: 5_000.0,
        spawn_burst: 1_000.0,
        checkpoint_interval: None,
        checkpoint_coalesce: ms(100),
        sweep_grace: secs(2),
    }
}

pub const SIGKILL: ExitStatus = ExitStatus::Signal {
    signal: 9,
    core_dumped: false,
};

pub struct Sim {
    pub core: Core,
    pub t0: Instant,
    pub now: Instant,
    next_pid: u32,
    /// Fake live processes (group leaders): pid → task.
    pub procs: HashMap<u32, TaskId>,
    /// Every action the core emitted, with its time (since `t0`).
    pub log: Vec<(Duration, Action)>,
    /// Answer `Spawn` at once; when false, spawns wait in `pending_spawns` for `answer_spawn`.
    pub answer_spawns: bool,
    pub pending_spawns: Vec<(TaskId, u64, Option<u16>, String)>,
    /// Tasks (by name) whose spawns fail.
    pub fail: HashSet<String>,
    /// Ports the bind probe finds in use.
    pub busy_ports: HashSet<u16>,
    /// Ports the next post-mortem probe finds in use (once each).
    pub taken_after_death: HashSet<u16>,
    /// Every group the core released.
    pub released: Vec<supervisor_core::GroupKey>,
    /// Found groups (recovery's leftovers, the sweep's strays) still alive. TERM empties one
    /// when `die_on_signal`; KILL always does.
    pub found_alive: HashSet<u64>,
    /// Sweeps asked, and what the next one finds.
    pub sweeps: usize,
    pub sweep_finds: Vec<supervisor_core::Found>,
    /// Answer to `CheckGroup` once the leader is gone.
    pub group_empty: bool,
    /// A process dies as soon as it is signalled.
    pub die_on_signal: bool,
    /// A KILL empties the group (its stragglers die too).
    pub kill_empties_group: bool,
    /// Answer `Checkpoint` with `checkpoint_written` at once.
    pub auto_checkpoint: bool,
    /// `CheckGroup`s asked, `Checkpoint`s asked.
    pub group_checks: usize,
    pub checkpoints: Vec<Duration>,
}

impl Sim {
    pub fn new(policy: Policy, range: Option<&str>) -> Sim {
        Sim::with_seed(policy, range, 42)
    }

    pub fn with_seed(policy: Policy, range: Option<&str>, seed: u64) -> Sim {
        let t0 = Instant::now();
        let range: Option<PortRange> = range.map(|r| r.parse().unwrap());
        Sim {
            core: Core::new(t0, policy, range, seed),
            t0,
            now: t0,
            next_pid: 1000,
            procs: HashMap::new(),
            log: Vec::new(),
            answer_spawns: true,
            pending_spawns: Vec::new(),
            fail: HashSet::new(),
            busy_ports: HashSet::new(),
            taken_after_death: HashSet::new(),
            released: Vec::new(),
            found_alive: HashSet::new(),
            sweeps: 0,
            sweep_finds: Vec::new(),
            group_empty: true,
            die_on_signal: false,
            kill_empties_group: false,
            auto_checkpoint: true,
            group_checks: 0,
            checkpoints: Vec::new(),
        }
    }

    /// Time since `t0`.
    pub fn at(&self) -> Duration {
        self.now - self.t0
    }

    /// Takes every pending action, answering the ones the shell answers, until none is left.
    /// Returns what was taken, in order.
    pub fn drain(&mut self) -> Vec<Action> {
        let mut out = Vec::new();
        let mut guard = 0;
        while let Some(a) = self.core.poll_action() {
            guard += 1;
            assert!(guard < 100_000, "the core keeps emitting actions: {a:?}");
            self.log.push((self.at(), a.clone()));
            out.push(a.clone());
            match a {
                Action::Spawn {
                    task,
                    generation,
                    spec,
                    argv,
                    port,
                } => {
                    if let Some(p) = port {
                        let range = self.core.port_range().unwrap();
                        assert!(range.contains(p), "port {p} outside {range}");
                        assert!(
                            argv.iter().any(|a| a.contains(&p.to_string())),
                            "{argv:?} carries port {p}"
                        );
                    }
                    assert!(
                        !argv.iter().any(|a| a.contains("{{port}}")),
                        "placeholders replaced: {argv:?}"
                    );
                    if self.answer_spawns {
                        self.answer(task, generation, port, &spec.name);
                    } else {
                        self.pending_spawns
                            .push((task, generation, port, spec.name.clone()));
                    }
                }
                Action::Signal { group, sig, .. } => {
                    let leader = match &group {
                        Group::Instance { leader, .. } => *leader,
                        Group::Found { id } => {
                            if sig == Sig::Kill || self.die_on_signal {
                                self.found_alive.remove(id);
                            }
                            None
                        }
                    };
                    assert_ne!(
                        leader,
                        Some(0),
                        "never signal group 0 (the supervisor's own)"
                    );
                    if self.kill_empties_group && sig == Sig::Kill {
                        self.group_empty = true;
                    }
                    let dies = self.die_on_signal
                        && leader.is_some_and(|pid| self.procs.remove(&pid).is_some());
                    if let (true, Some(pid)) = (dies, leader) {
                        let signal = match sig {
                            Sig::Term => 15,
                            Sig::Kill => 9,
                            Sig::Other(n) => n,
                        };
                        let status = ExitStatus::Signal {
                            signal,
                            core_dumped: false,
                        };
                        let remains = !self.group_empty;
                        self.core.handle(
                            self.now,
                            Input::Exited {
                                pid,
                                status,
                                remains,
                            },
                        );
                    }
                }
                Action::CheckGroup { group } => {
                    self.group_checks += 1;
                    let empty = match &group {
                        Group::Instance { leader, .. } => {
                            self.group_empty && !leader.is_some_and(|p| self.procs.contains_key(&p))
                        }
                        Group::Found { id } => !self.found_alive.contains(id),
                    };
                    self.core.handle(
                        self.now,
                        Input::GroupStatus {
                            group: group.key(),
                            empty,
                        },
                    );
                }
                Action::ProbePort {
                    task,
                    generation,
                    port,
                } => {
                    let free =
                        !self.busy_ports.contains(&port) && !self.taken_after_death.remove(&port);
                    self.core.handle(
                        self.now,
                        Input::PortProbed {
                            task,
                            generation,
                            port,
                            free,
                        },
                    );
                }
                Action::Release { group } => self.released.push(group.key()),
                Action::Sweep => {
                    self.sweeps += 1;
                    let found = std::mem::take(&mut self.sweep_finds);
                    self.core.handle(self.now, Input::Swept { found });
                }
                Action::Checkpoint => {
                    self.checkpoints.push(self.at());
                    if self.auto_checkpoint {
                        self.core.checkpoint_written(self.now);
                    }
                }
                Action::Event(_) => {}
            }
        }
        out
    }

    /// What the shell would answer to a `Spawn`.
    fn answer(&mut self, task: TaskId, generation: u64, port: Option<u16>, name: &str) {
        let input = match port {
            Some(p) if self.busy_ports.contains(&p) => Input::PortBusy {
                task,
                generation,
                port: p,
            },
            _ if self.fail.contains(name) => Input::SpawnFailed {
                task,
                generation,
                error: "No such file or directory (os error 2)".into(),
            },
            _ => {
                let pid = self.next_pid;
                self.next_pid += 1;
                self.procs.insert(pid, task);
                Input::Spawned {
                    task,
                    generation,
                    pid,
                    start_ticks: Some(u64::from(pid) * 7),
                }
            }
        };
        self.core.handle(self.now, input);
    }

    /// Answers the oldest spawn held back by `answer_spawns = false`.
    pub fn answer_spawn(&mut self) -> Vec<Action> {
        let (task, generation, port, name) = self.pending_spawns.remove(0);
        self.answer(task, generation, port, &name);
        self.drain()
    }

    /// Adds a task and drains.
    pub fn add(&mut self, name: &str, port: bool) -> Vec<Action> {
        self.core.add_task(self.now, spec(name, port)).unwrap();
        self.drain()
    }

    /// Runs the clock forward to `now + d`, waking the core whenever it asked to be woken.
    pub fn advance(&mut self, d: Duration) -> Vec<Action> {
        let target = self.now + d;
        let mut out = Vec::new();
        let mut guard = 0;
        while let Some(t) = self.core.poll_timeout() {
            if t > target {
                break;
            }
            guard += 1;
            assert!(guard < 1_000_000, "timer loop at {:?}", self.at());
            self.now = self.now.max(t);
            self.core.handle_timeout(self.now);
            out.extend(self.drain());
        }
        self.now = target;
        out
    }

    /// Advances to `t0 + at`.
    pub fn advance_to(&mut self, at: Duration) -> Vec<Action> {
        let d = (self.t0 + at).saturating_duration_since(self.now);
        self.advance(d)
    }

    /// The task's process exits on its own; what else is in its group is `group_empty`.
    /// `port_taken`: the post-mortem probe finds its port held by another process.
    pub fn exit(&mut self, name: &str, status: ExitStatus, port_taken: bool) -> Vec<Action> {
        if port_taken {
            if let Some(p) = self.port(name) {
                self.taken_after_death.insert(p);
            }
        }
        let remains = !self.group_empty;
        self.exit_with(name, status, remains)
    }

    /// The task's process exits; `remains`: processes of its instance live on.
    pub fn exit_with(&mut self, name: &str, status: ExitStatus, remains: bool) -> Vec<Action> {
        let pid = self.pid(name);
        self.procs.remove(&pid);
        self.core.handle(
            self.now,
            Input::Exited {
                pid,
                status,
                remains,
            },
        );
        self.drain()
    }

    /// The task's process, alone in its group, is killed from outside (SIGKILL).
    pub fn kill(&mut self, name: &str) -> Vec<Action> {
        self.exit_with(name, SIGKILL, false)
    }

    /// Feeds an input and drains.
    pub fn handle(&mut self, input: Input) -> Vec<Action> {
        self.core.handle(self.now, input);
        self.drain()
    }

    pub fn id(&self, name: &str) -> TaskId {
        self.core
            .task_id(name)
            .unwrap_or_else(|| panic!("no task {name}"))
    }

    pub fn view(&self, name: &str) -> TaskView {
        self.core.view(self.id(name)).unwrap()
    }

    pub fn state(&self, name: &str) -> TaskState {
        self.view(name).state
    }

    pub fn pid(&self, name: &str) -> u32 {
        self.view(name)
            .pid
            .unwrap_or_else(|| panic!("{name} has no pid: {:?}", self.view(name).state))
    }

    pub fn port(&self, name: &str) -> Option<u16> {
        self.view(name).port
    }

    /// Delay until the task's retry, when it is waiting.
    pub fn retry_in(&self, name: &str) -> Option<Duration> {
        self.view(name)
            .retry_at
            .map(|t| t.saturating_duration_since(self.now))
    }
}

pub fn events(actions: &[Action]) -> Vec<&Event> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Event(e) => Some(e),
            _ => None,
        })
        .collect()
}

/// `(task, port)` of every `Spawn` in `actions`.
pub fn spawns(actions: &[Action]) -> Vec<(TaskId, Option<u16>)> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Spawn { task, port, .. } => Some((*task, *port)),
            _ => None,
        })
        .collect()
}

/// `(leader, signal)` of every `Signal` to a task instance in `actions`.
pub fn signals(actions: &[Action]) -> Vec<(u32, Sig)> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Signal {
                group: Group::Instance {
                    leader: Some(pid), ..
                },
                sig,
                ..
            } => Some((*pid, *sig)),
            _ => None,
        })
        .collect()
}

pub fn count(actions: &[Action], f: impl Fn(&Event) -> bool) -> usize {
    events(actions).into_iter().filter(|e| f(e)).count()
}
