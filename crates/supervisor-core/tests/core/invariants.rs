//! Random sequences of inputs, control requests and time steps: no panic, and the invariants
//! hold after every step.
use crate::sim::*;
use proptest::prelude::*;
use std::collections::{BTreeSet, HashSet};
use supervisor_core::{Action, Event, ExitStatus, Input, Policy, TaskId, TaskRecord, TaskState};

const NAMES: [&str; 6] = ["n0", "n1", "n2", "n3", "n4", "n5"];

#[derive(Debug, Clone)]
enum Op {
    Add(usize),
    Remove(usize),
    Stop(usize),
    Start(usize),
    Restart(usize),
    Exit {
        task: usize,
        after_ms: u64,
        code: i32,
        port_taken: bool,
        remains: bool,
    },
    Wait(u64),
    ToggleFail(usize),
    ToggleBusy(u16),
    GroupEmpty(bool),
    DieOnSignal(bool),
    AnswerSpawns(bool),
    AnswerPending,
    Stale {
        task: usize,
        pid: u32,
        which: u8,
    },
    CheckpointWritten,
    Shutdown(bool),
}

fn op() -> impl Strategy<Value = Op> {
    let t = 0..NAMES.len();
    prop_oneof![
        3 => t.clone().prop_map(Op::Add),
        1 => t.clone().prop_map(Op::Remove),
        2 => t.clone().prop_map(Op::Stop),
        2 => t.clone().prop_map(Op::Start),
        2 => t.clone().prop_map(Op::Restart),
        6 => (t.clone(), 0u64..2_000, -1i32..3, any::<bool>(), prop::bool::weighted(0.2)).prop_map(|(task, after_ms, code, port_taken, remains)| Op::Exit { task, after_ms, code, port_taken, remains }),
        5 => prop_oneof![0u64..50, 0u64..2_000, 0u64..120_000].prop_map(Op::Wait),
        1 => t.clone().prop_map(Op::ToggleFail),
        1 => (0u16..5).prop_map(Op::ToggleBusy),
        1 => any::<bool>().prop_map(Op::GroupEmpty),
        1 => any::<bool>().prop_map(Op::DieOnSignal),
        1 => any::<bool>().prop_map(Op::AnswerSpawns),
        2 => Just(Op::AnswerPending),
        1 => (0usize..8, any::<u32>(), 0u8..5).prop_map(|(task, pid, which)| Op::Stale { task, pid, which }),
        1 => Just(Op::CheckpointWritten),
        1 => prop_oneof![9 => Just(None), 1 => any::<bool>().prop_map(Some)].prop_map(|s| s.map_or(Op::Wait(0), Op::Shutdown)),
    ]
}

/// Wakes the core at each time it asked for, up to `d` from now, checking that right after
/// `handle_timeout(now)` the next wake-up is in the future.
fn wait(sim: &mut Sim, d: std::time::Duration) -> Result<(), TestCaseError> {
    let target = sim.now + d;
    let mut guard = 0;
    while let Some(t) = sim.core.poll_timeout() {
        if t > target {
            break;
        }
        guard += 1;
        prop_assert!(guard < 100_000, "timer loop");
        sim.now = sim.now.max(t);
        sim.core.handle_timeout(sim.now);
        if let Some(next) = sim.core.poll_timeout() {
            prop_assert!(
                next > sim.now,
                "after handle_timeout({:?}) the core asks to be woken at {:?}",
                sim.at(),
                next - sim.t0
            );
        }
        sim.drain();
    }
    sim.now = target;
    Ok(())
}

struct World {
    sim: Sim,
    /// Leaders the core gave up on (StopFailed): alive, but no longer its business.
    abandoned: HashSet<u32>,
    shutdown_at: Option<usize>,
    seen_actions: usize,
    /// `changes()` and the checkpoint records at the last check.
    last_records: Option<(u64, Vec<TaskRecord>)>,
}

impl World {
    fn check(&mut self) -> Result<(), TestCaseError> {
        let sim = &self.sim;
        for (_, a) in &sim.log[self.seen_actions..] {
            if let Action::Event(Event::StopFailed { task: Some(id), .. }) = a {
                let given_up: Vec<u32> = sim
                    .procs
                    .iter()
                    .filter(|(_, t)| *t == id)
                    .map(|(p, _)| *p)
                    .collect();
                self.abandoned.extend(given_up);
            }
        }
        if let Some(from) = self.shutdown_at {
            prop_assert!(
                !sim.log[from..]
                    .iter()
                    .any(|(_, a)| matches!(a, Action::Spawn { .. })),
                "a spawn after shutdown"
            );
        }
        self.seen_actions = sim.log.len();
        // One timer per task and per stop job at most, however long the stops poll.
        prop_assert!(
            sim.core.timer_count() <= sim.core.task_count() + sim.core.stop_jobs(),
            "{} timers for {} tasks and {} stop jobs",
            sim.core.timer_count(),
            sim.core.task_count(),
            sim.core.stop_jobs()
        );
        let views = sim.core.views();
        prop_assert_eq!(views.len(), sim.core.task_count());
        let range = sim.core.port_range().unwrap();
        let (mut pids, mut ports) = (HashSet::new(), HashSet::new());
        for v in &views {
            prop_assert_eq!(sim.core.task_id(&v.spec.name), Some(v.id));
            if let Some(pid) = v.pid {
                prop_assert!(pids.insert(pid), "pid {} shared", pid);
                prop_assert_eq!(
                    sim.core.task_by_pid(pid),
                    Some(v.id),
                    "pid {} of {} not indexed",
                    pid,
                    v.spec.name
                );
            }
            if let Some(port) = v.port {
                prop_assert!(
                    ports.insert(port),
                    "port {} shared: {:?}",
                    port,
                    views
                        .iter()
                        .map(|v| (&v.spec.name, v.state, v.port))
                        .collect::<Vec<_>>()
                );
                prop_assert!(range.contains(port));
            }
            match v.state {
                TaskState::Running => {
                    prop_assert!(v.pid.is_some(), "{} running without a pid", v.spec.name);
                    prop_assert_eq!(v.port.is_some(), v.spec.uses_port());
                }
                TaskState::Backoff => {
                    prop_assert!(v.pid.is_none() && v.port.is_none() && v.retry_at.is_some());
                }
                TaskState::Stopped => prop_assert!(v.pid.is_none() && v.port.is_none()),
                TaskState::Starting | TaskState::Stopping => {}
            }
        }
        // Every process the fake shell started and that has not exited is known to the core
        // (or was explicitly given up on): nothing leaks.
        for pid in sim.procs.keys() {
            prop_assert!(
                sim.core.task_by_pid(*pid).is_some() || self.abandoned.contains(pid),
                "process {} leaked",
                pid
            );
        }
        let recorded: BTreeSet<u32> = sim
            .core
            .checkpoint_records()
            .iter()
            .map(|r| r.pid)
            .collect();
        prop_assert_eq!(recorded, pids.into_iter().collect::<BTreeSet<u32>>());
        // The shell reuses the encoded records while `changes()` stands still.
        let records = sim.core.checkpoint_records();
        let changes = sim.core.changes();
        if let Some((before, old)) = &self.last_records {
            if *before == changes {
                prop_assert_eq!(old, &records, "records changed without a change count");
            }
        }
        self.last_records = Some((changes, records));
        if sim.core.is_finished() {
            prop_assert!(views.iter().all(|v| v.state == TaskState::Stopped));
        }
        Ok(())
    }

    fn apply(&mut self, op: Op) -> Result<(), TestCaseError> {
        let sim = &mut self.sim;
        let now = sim.now;
        match op {
            Op::Add(i) => {
                let existed = sim.core.task_id(NAMES[i]).is_some();
                match sim.core.add_task(now, spec(NAMES[i], i % 2 == 0)) {
                    Ok(id) => {
                        prop_assert!(!existed && !sim.core.is_shutting_down());
                        prop_assert_eq!(sim.core.task_id(NAMES[i]), Some(id));
                    }
                    Err(e) => prop_assert!(existed || sim.core.is_shutting_down(), "{}", e),
                }
            }
            Op::Remove(i) => {
                let _ = sim.core.remove(now, NAMES[i]);
            }
            Op::Stop(i) => {
                let _ = sim.core.stop(now, NAMES[i]);
            }
            Op::Start(i) => {
                let _ = sim.core.start(now, NAMES[i]);
            }
            Op::Restart(i) => {
                let _ = sim.core.restart(now, NAMES[i]);
            }
            Op::Exit {
                task,
                after_ms,
                code,
                port_taken,
                remains,
            } => {
                wait(sim, ms(after_ms))?;
                let pid = sim
                    .core
                    .task_id(NAMES[task])
                    .and_then(|id| sim.core.view(id))
                    .and_then(|v| v.pid);
                if let Some(pid) = pid {
                    if port_taken {
                        if let Some(p) = sim.port(NAMES[task]) {
                            sim.taken_after_death.insert(p);
                        }
                    }
                    sim.procs.remove(&pid);
                    let status = if code < 0 {
                        SIGKILL
                    } else {
                        ExitStatus::Code { code }
                    };
                    sim.core.handle(
                        sim.now,
                        Input::Exited {
                            pid,
                            status,
                            remains,
                        },
                    );
                }
            }
            Op::Wait(d) => wait(sim, ms(d))?,
            Op::ToggleFail(i) => {
                if !sim.fail.remove(NAMES[i]) {
                    sim.fail.insert(NAMES[i].to_string());
                }
            }
            Op::ToggleBusy(p) => {
                let p = 7000 + p;
                if !sim.busy_ports.remove(&p) {
                    sim.busy_ports.insert(p);
                }
            }
            Op::GroupEmpty(e) => sim.group_empty = e,
            Op::DieOnSignal(d) => sim.die_on_signal = d,
            Op::AnswerSpawns(a) => sim.answer_spawns = a,
            Op::AnswerPending => {
                if !sim.pending_spawns.is_empty() {
                    sim.answer_spawn();
                }
            }
            Op::Stale { task, pid, which } => {
                let task = TaskId(task);
                let generation = u64::MAX - u64::from(pid % 7);
                let pid = 1_000_000 + pid % 1_000_000;
                let input = match which {
                    0 => Input::Spawned {
                        task,
                        generation,
                        pid,
                        start_ticks: None,
                    },
                    1 => Input::SpawnFailed {
                        task,
                        generation,
                        error: "stale".into(),
                    },
                    2 => Input::PortBusy {
                        task,
                        generation,
                        port: 7000,
                    },
                    3 => Input::GroupStatus {
                        group: supervisor_core::GroupKey::Instance(generation),
                        empty: true,
                    },
                    _ => Input::Exited {
                        pid,
                        status: SIGKILL,
                        remains: true,
                    },
                };
                let before = sim.core.views();
                sim.core.handle(now, input);
                prop_assert!(
                    sim.core.poll_action().is_none(),
                    "a stale input caused an action"
                );
                prop_assert_eq!(sim.core.views(), before, "a stale input changed something");
            }
            Op::CheckpointWritten => sim.core.checkpoint_written(now),
            Op::Shutdown(force) => {
                sim.core.shutdown(now, force);
                if self.shutdown_at.is_none() {
                    self.shutdown_at = Some(sim.log.len());
                }
            }
        }
        self.sim.drain();
        Ok(())
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn random_sequences_keep_the_invariants(
        seed: u64,
        yoyo_after in 1u32..4,
        checkpoints: bool,
        ops in prop::collection::vec(op(), 1..150),
    ) {
        let p = Policy {
            yoyo_after,
            checkpoint_interval: checkpoints.then_some(secs(5)),
            spawn_rate: 20.0,
            spawn_burst: 3.0,
            ..policy()
        };
        let mut w = World { sim: Sim::with_seed(p, Some("7000-7004"), seed), abandoned: HashSet::new(), shutdown_at: None, seen_actions: 0, last_records: None };
        for n in &NAMES[..3] {
            w.sim.add(n, true);
        }
        w.check()?;
        for op in ops {
            w.apply(op)?;
            w.check()?;
        }
        // Whatever state it is in, a shutdown with cooperative processes finishes, within the
        // stop and kill timeouts, and leaves nothing running.
        w.sim.die_on_signal = true;
        w.sim.group_empty = true;
        w.sim.answer_spawns = true;
        while !w.sim.pending_spawns.is_empty() {
            w.sim.answer_spawn();
        }
        w.apply(Op::Shutdown(false))?;
        w.check()?;
        wait(&mut w.sim, secs(16))?;
        w.check()?;
        prop_assert!(w.sim.core.is_finished(), "not finished: {:?}", w.sim.core.views().iter().map(|v| (&v.spec.name, v.state)).collect::<Vec<_>>());
        let leftover: Vec<&u32> = w.sim.procs.keys().filter(|p| !w.abandoned.contains(p)).collect();
        prop_assert!(leftover.is_empty(), "processes left: {:?}", leftover);
    }
}
