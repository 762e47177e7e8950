//! Ports: round robin over the range, held ports skipped, busy ports skipped, an exhausted range
//! waited out, deaths blamed on a taken port.
use crate::sim::*;
use proptest::prelude::*;
use std::collections::HashSet;
use supervisor_core::{BackoffReason, Event, Input, TaskState};

#[test]
fn each_restart_gets_the_next_port_round_robin() {
    let mut sim = Sim::new(policy(), Some("8000-8003"));
    sim.add("w", true);
    let mut got = vec![sim.port("w").unwrap()];
    for _ in 0..5 {
        sim.advance(secs(5));
        sim.kill("w");
        got.push(sim.port("w").unwrap());
    }
    assert_eq!(got, [8000, 8001, 8002, 8003, 8000, 8001]);
    assert!(
        sim.view("w").argv().contains(&"--port=8001".to_string()),
        "{:?}",
        sim.view("w").argv()
    );
}

#[test]
fn a_live_tasks_port_is_never_handed_to_another() {
    let mut sim = Sim::new(policy(), Some("8000-8003"));
    sim.die_on_signal = true;
    for n in ["a", "b", "c"] {
        sim.add(n, true);
    }
    assert_eq!(
        [sim.port("a"), sim.port("b"), sim.port("c")],
        [Some(8000), Some(8001), Some(8002)]
    );
    sim.advance(secs(5));
    sim.kill("a");
    assert_eq!(sim.port("a"), Some(8003));
    sim.advance(secs(5));
    sim.kill("a");
    assert_eq!(
        sim.port("a"),
        Some(8000),
        "8001 and 8002 are held by b and c"
    );
    sim.core.stop(sim.now, "b").unwrap();
    sim.drain();
    assert_eq!((sim.state("b"), sim.port("b")), (TaskState::Stopped, None));
    sim.advance(secs(5));
    sim.kill("a");
    assert_eq!(sim.port("a"), Some(8001), "b's port is free again");
}

#[test]
fn a_stopping_task_keeps_its_port_until_its_group_is_gone() {
    let mut sim = Sim::new(policy(), Some("8000-8001"));
    sim.die_on_signal = true;
    sim.add("a", true);
    sim.add("b", true);
    sim.group_empty = false;
    sim.core.stop(sim.now, "a").unwrap();
    sim.drain();
    assert_eq!(
        (sim.state("a"), sim.port("a")),
        (TaskState::Stopping, Some(8000)),
        "leader gone, group not yet"
    );
    for _ in 0..3 {
        sim.advance(secs(2));
        sim.kill("b");
        assert_eq!(sim.port("b"), Some(8001), "8000 still belongs to a's group");
    }
    sim.group_empty = true;
    sim.advance(ms(20));
    assert_eq!((sim.state("a"), sim.port("a")), (TaskState::Stopped, None));
    sim.kill("b");
    assert_eq!(sim.port("b"), Some(8000));
}

#[test]
fn a_busy_port_moves_on_to_the_next_at_once() {
    let mut sim = Sim::new(policy(), Some("8000-8009"));
    sim.busy_ports.extend([8000, 8001]);
    let acts = sim.add("w", true);
    let ports: Vec<_> = spawns(&acts).into_iter().map(|(_, p)| p).collect();
    assert_eq!(
        ports,
        [Some(8000), Some(8001), Some(8002)],
        "all within the one call"
    );
    let busy: Vec<u16> = events(&acts)
        .into_iter()
        .filter_map(|e| match e {
            Event::PortBusy { port, .. } => Some(*port),
            _ => None,
        })
        .collect();
    assert_eq!(busy, [8000, 8001]);
    assert_eq!(
        (sim.state("w"), sim.port("w")),
        (TaskState::Running, Some(8002))
    );
}

#[test]
fn a_port_busy_answer_never_releases_another_tasks_port() {
    let mut sim = Sim::new(policy(), Some("8000-8002"));
    sim.add("a", true);
    sim.answer_spawns = false;
    sim.add("b", true);
    let (task, generation, port, _) = sim.pending_spawns.remove(0);
    assert_eq!(port, Some(8001));
    // A confused answer naming a's port: b's own port is the one given up.
    sim.answer_spawns = true;
    let acts = sim.handle(Input::PortBusy {
        task,
        generation,
        port: 8000,
    });
    let busy: Vec<u16> = events(&acts)
        .into_iter()
        .filter_map(|e| match e {
            Event::PortBusy { port, .. } => Some(*port),
            _ => None,
        })
        .collect();
    assert_eq!(busy, [8001], "b's own port is the one reported and skipped");
    assert_eq!(sim.port("a"), Some(8000));
    assert_eq!(sim.port("b"), Some(8002));
    // 8001 is marked busy, not held: once every other port is taken, it is tried again.
    sim.die_on_signal = true;
    sim.core.stop(sim.now, "b").unwrap();
    sim.drain();
    sim.add("c", true);
    assert_eq!(sim.port("c"), Some(8002));
    sim.add("d", true);
    assert_eq!(
        sim.view("d").backoff_reason,
        Some(BackoffReason::NoFreePort)
    );
    sim.advance(secs(1));
    assert_eq!(sim.port("d"), Some(8001), "b's first port was not leaked");
    assert_eq!(sim.port("a"), Some(8000));
}

#[test]
fn an_exhausted_range_waits_with_no_free_port_then_starts() {
    let mut sim = Sim::new(policy(), Some("8000-8001"));
    sim.die_on_signal = true;
    sim.add("a", true);
    sim.add("b", true);
    let acts = sim.add("c", true);
    let no_port: Vec<_> = events(&acts)
        .into_iter()
        .filter_map(|e| match e {
            Event::NoFreePort {
                retry_in, quiet, ..
            } => Some((*retry_in, *quiet)),
            _ => None,
        })
        .collect();
    assert_eq!(no_port, [(secs(1), false)]);
    let v = sim.view("c");
    assert_eq!(
        (v.state, v.backoff_reason, v.port),
        (TaskState::Backoff, Some(BackoffReason::NoFreePort), None)
    );
    assert_eq!(sim.retry_in("c"), Some(secs(1)));
    let acts = sim.advance(secs(1));
    assert!(spawns(&acts).is_empty());
    assert_eq!(
        count(&acts, |e| matches!(
            e,
            Event::NoFreePort { quiet: true, .. }
        )),
        1,
        "repeats are quiet"
    );
    sim.advance(ms(300));
    sim.core.stop(sim.now, "a").unwrap();
    sim.drain();
    assert_eq!(sim.state("c"), TaskState::Backoff, "waits for its retry");
    let acts = sim.advance(ms(700));
    assert_eq!(spawns(&acts), [(sim.id("c"), Some(8000))]);
    assert_eq!(sim.state("c"), TaskState::Running);
}

#[test]
fn a_range_all_in_use_by_strangers_is_retried() {
    let mut sim = Sim::new(policy(), Some("8000-8002"));
    sim.busy_ports.extend([8000, 8001, 8002]);
    let acts = sim.add("w", true);
    assert_eq!(spawns(&acts).len(), 3, "each port probed once");
    assert_eq!(count(&acts, |e| matches!(e, Event::NoFreePort { .. })), 1);
    assert_eq!(
        sim.view("w").backoff_reason,
        Some(BackoffReason::NoFreePort)
    );
    let acts = sim.advance(secs(1));
    assert_eq!(
        spawns(&acts).len(),
        3,
        "busy marks are forgotten after a fruitless turn: probed again"
    );
    sim.busy_ports.remove(&8001);
    sim.advance(secs(1));
    assert_eq!(
        (sim.state("w"), sim.port("w")),
        (TaskState::Running, Some(8001))
    );
}

#[test]
fn a_quick_death_on_a_taken_port_moves_on_without_counting_until_the_fourth() {
    let mut sim = Sim::new(policy(), Some("8000-8099"));
    sim.add("w", true);
    let mut ports = vec![sim.port("w").unwrap()];
    for n in 1..=3 {
        sim.advance(ms(10));
        let acts = sim.exit("w", SIGKILL, true);
        assert_eq!(
            count(&acts, |e| matches!(e, Event::PortConflictDeath { .. })),
            1,
            "death {n}"
        );
        assert_eq!(spawns(&acts).len(), 1, "death {n}: restarted at once");
        let v = sim.view("w");
        assert_eq!(
            (v.quick_deaths, v.yoyo_since),
            (0, None),
            "death {n} is not the program's fault"
        );
        ports.push(v.port.unwrap());
    }
    assert_eq!(ports, [8000, 8001, 8002, 8003], "each on the next port");
    sim.advance(ms(10));
    let acts = sim.exit("w", SIGKILL, true);
    assert_eq!(
        count(&acts, |e| matches!(e, Event::PortConflictDeath { .. })),
        0
    );
    assert_eq!(sim.view("w").quick_deaths, 1, "the fourth in a row counts");
    assert_eq!(
        spawns(&acts).len(),
        1,
        "as a first quick death: restarted at once"
    );
    sim.advance(ms(10));
    let acts = sim.exit("w", SIGKILL, true);
    assert_eq!(
        count(&acts, |e| matches!(e, Event::YoyoEntered { .. })),
        1,
        "and so does the fifth"
    );
}

#[test]
fn port_taken_is_ignored_after_a_long_run_or_without_a_port() {
    let mut sim = Sim::new(policy(), Some("8000-8099"));
    sim.add("w", true);
    sim.advance(secs(5));
    let acts = sim.exit("w", SIGKILL, true);
    assert_eq!(
        count(&acts, |e| matches!(e, Event::PortConflictDeath { .. })),
        0,
        "not quick: an ordinary death"
    );
    assert_eq!(sim.view("w").quick_deaths, 0);
    sim.add("n", false);
    sim.advance(ms(10));
    sim.exit("n", SIGKILL, true);
    assert_eq!(
        sim.view("n").quick_deaths,
        1,
        "a task without a port cannot lose a port race"
    );
}

#[derive(Debug, Clone)]
enum Op {
    Kill(usize, u64),
    PortTaken(usize),
    Stop(usize),
    Start(usize),
    Restart(usize),
    Busy(u16),
    GroupEmpty(bool),
    Wait(u64),
}

fn op(tasks: usize, range: u16) -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0..tasks, 0u64..3000).prop_map(|(i, up)| Op::Kill(i, up)),
        1 => (0..tasks).prop_map(Op::PortTaken),
        1 => (0..tasks).prop_map(Op::Stop),
        1 => (0..tasks).prop_map(Op::Start),
        1 => (0..tasks).prop_map(Op::Restart),
        1 => (0..range).prop_map(Op::Busy),
        1 => any::<bool>().prop_map(Op::GroupEmpty),
        2 => (0u64..20_000).prop_map(Op::Wait),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    /// Whatever happens, the ports of live tasks (starting, running, or stopping with their group
    /// still around) are distinct and inside the range.
    #[test]
    fn ports_of_live_tasks_never_collide(
        size in 3u16..8,
        ops in prop::collection::vec(op(4, 8), 1..120),
    ) {
        let range = format!("9000-{}", 9000 + size - 1);
        let mut sim = Sim::new(policy(), Some(&range));
        sim.die_on_signal = true;
        let names = ["t0", "t1", "t2", "t3"];
        for n in names {
            sim.add(n, true);
        }
        for op in ops {
            let live = |sim: &Sim, i: usize| sim.core.view(sim.id(names[i])).and_then(|v| v.pid).is_some();
            match op {
                Op::Kill(i, up) => if live(&sim, i) {
                    sim.advance(ms(up));
                    if live(&sim, i) { sim.kill(names[i]); }
                },
                Op::PortTaken(i) => if live(&sim, i) { sim.exit(names[i], SIGKILL, true); },
                Op::Stop(i) => { let _ = sim.core.stop(sim.now, names[i]); sim.drain(); }
                Op::Start(i) => { let _ = sim.core.start(sim.now, names[i]); sim.drain(); }
                Op::Restart(i) => { let _ = sim.core.restart(sim.now, names[i]); sim.drain(); }
                Op::Busy(p) => { let p = 9000 + p % size; if !sim.busy_ports.remove(&p) { sim.busy_ports.insert(p); } }
                Op::GroupEmpty(e) => sim.group_empty = e,
                Op::Wait(d) => { sim.advance(ms(d)); }
            }
            let mut seen = HashSet::new();
            for v in sim.core.views() {
                if let Some(p) = v.port {
                    prop_assert!((9000..9000 + size).contains(&p), "{} on {} outside {}", v.spec.name, p, range);
                    prop_assert!(seen.insert(p), "port {} held twice: {:?}", p, sim.core.views().iter().map(|v| (&v.spec.name, v.state, v.port)).collect::<Vec<_>>());
                }
                match v.state {
                    TaskState::Running => prop_assert!(v.port.is_some(), "a running port user has its port"),
                    TaskState::Backoff | TaskState::Stopped => prop_assert_eq!(v.port, None),
                    TaskState::Starting | TaskState::Stopping => {}
                }
            }
        }
    }
}
