//! Control requests: restart, stop, start, remove, add, and the ways each is refused.
use crate::sim::*;
use supervisor_core::{Action, ControlError, Event, StopReason, TaskState};

#[test]
fn restart_stops_then_starts_on_the_next_port() {
    let mut sim = Sim::new(policy(), Some("8000-8009"));
    sim.die_on_signal = true;
    sim.add("w", true);
    let old = sim.pid("w");
    sim.advance(secs(30));
    sim.core.restart(sim.now, "w").unwrap();
    let acts = sim.drain();
    assert_eq!(
        count(&acts, |e| matches!(
            e,
            Event::Stopping {
                reason: StopReason::Restart,
                ..
            }
        )),
        1
    );
    assert_eq!(
        count(&acts, |e| matches!(e, Event::Exited { expected: true, .. })),
        1
    );
    assert_eq!(count(&acts, |e| matches!(e, Event::Stopped { .. })), 1);
    assert_eq!(spawns(&acts), [(sim.id("w"), Some(8001))]);
    let started: Vec<bool> = events(&acts)
        .into_iter()
        .filter_map(|e| match e {
            Event::Started { restart, .. } => Some(*restart),
            _ => None,
        })
        .collect();
    assert_eq!(started, [true]);
    let v = sim.view("w");
    assert_eq!(
        (v.state, v.restarts, v.quick_deaths),
        (TaskState::Running, 1, 0)
    );
    assert_ne!(v.pid, Some(old));
}

#[test]
fn restart_starts_a_waiting_or_stopped_task_at_once() {
    let mut sim = Sim::new(policy(), None);
    sim.add("w", false);
    sim.kill("w");
    sim.kill("w");
    assert_eq!(sim.state("w"), TaskState::Backoff, "yo-yo");
    sim.core.restart(sim.now, "w").unwrap();
    assert_eq!(spawns(&sim.drain()).len(), 1, "no waiting for the delay");
    assert_eq!(sim.state("w"), TaskState::Running);
    sim.die_on_signal = true;
    sim.core.stop(sim.now, "w").unwrap();
    sim.drain();
    assert_eq!(sim.state("w"), TaskState::Stopped);
    sim.core.restart(sim.now, "w").unwrap();
    assert_eq!(spawns(&sim.drain()).len(), 1);
    assert_eq!(sim.state("w"), TaskState::Running);
}

#[test]
fn stop_keeps_a_task_down_and_start_brings_it_back() {
    let mut sim = Sim::new(policy(), None);
    sim.die_on_signal = true;
    sim.add("w", false);
    sim.core.stop(sim.now, "w").unwrap();
    sim.drain();
    assert_eq!(sim.state("w"), TaskState::Stopped);
    assert!(spawns(&sim.advance(secs(3600))).is_empty());
    sim.core.start(sim.now, "w").unwrap();
    let acts = sim.drain();
    assert_eq!(spawns(&acts).len(), 1);
    assert_eq!(sim.state("w"), TaskState::Running);
}

#[test]
fn stopping_a_waiting_task_cancels_its_retry() {
    let mut sim = Sim::new(policy(), None);
    sim.fail.insert("w".into());
    sim.add("w", false);
    assert_eq!(sim.state("w"), TaskState::Backoff);
    sim.core.stop(sim.now, "w").unwrap();
    let acts = sim.drain();
    assert!(signals(&acts).is_empty(), "nothing to signal");
    assert_eq!(count(&acts, |e| matches!(e, Event::Stopped { .. })), 1);
    assert!(
        spawns(&sim.advance(secs(60))).is_empty(),
        "the retry is cancelled"
    );
    // start clears the failure count: the next failure is the first again.
    sim.core.start(sim.now, "w").unwrap();
    let acts = sim.drain();
    assert_eq!(
        count(&acts, |e| matches!(
            e,
            Event::SpawnFailed { failures: 1, .. }
        )),
        1
    );
}

#[test]
fn remove_stops_and_forgets_a_task() {
    let mut sim = Sim::new(policy(), Some("8000-8001"));
    sim.die_on_signal = true;
    sim.add("a", true);
    sim.add("b", true);
    let a = sim.id("a");
    sim.core.remove(sim.now, "a").unwrap();
    let acts = sim.drain();
    assert_eq!(
        count(
            &acts,
            |e| matches!(e, Event::Removed { task, .. } if *task == a)
        ),
        1
    );
    assert_eq!(
        (
            sim.core.task_id("a"),
            sim.core.view(a),
            sim.core.task_count()
        ),
        (None, None, 1)
    );
    // Its port and name are free again.
    sim.add("a", true);
    assert_eq!(sim.port("a"), Some(8000));
    // A stopped task is removed at once.
    sim.core.stop(sim.now, "b").unwrap();
    sim.drain();
    sim.core.remove(sim.now, "b").unwrap();
    assert_eq!(
        count(&sim.drain(), |e| matches!(e, Event::Removed { .. })),
        1
    );
    assert_eq!(sim.core.task_count(), 1);
}

#[test]
fn a_stop_asked_during_a_spawn_is_carried_out_once_the_process_exists() {
    let mut sim = Sim::new(policy(), None);
    sim.answer_spawns = false;
    sim.add("w", false);
    assert_eq!(sim.state("w"), TaskState::Starting);
    sim.core.stop(sim.now, "w").unwrap();
    sim.drain();
    assert_eq!(sim.state("w"), TaskState::Stopping);
    assert_eq!(
        sim.core.stop(sim.now, "w"),
        Err(ControlError::Conflict {
            name: "w".into(),
            state: "stopping",
            what: "it is already stopping"
        })
    );
    let acts = sim.answer_spawn();
    let pid = *sim.procs.keys().next().unwrap();
    assert_eq!(
        signals(&acts),
        [(pid, supervisor_core::Sig::Term)],
        "the new process is not left behind"
    );
    sim.exit("w", SIGKILL, false);
    let v = sim.view("w");
    assert_eq!((v.state, v.pid), (TaskState::Stopped, None));
    assert_eq!(sim.core.task_by_pid(pid), None);
}

#[test]
fn a_remove_asked_during_a_spawn_that_fails_removes_without_backoff() {
    let mut sim = Sim::new(policy(), None);
    sim.answer_spawns = false;
    sim.fail.insert("w".into());
    sim.add("w", false);
    sim.core.remove(sim.now, "w").unwrap();
    assert!(
        sim.core.task_id("w").is_some(),
        "kept until the spawn's answer"
    );
    let acts = sim.answer_spawn();
    assert_eq!(count(&acts, |e| matches!(e, Event::Removed { .. })), 1);
    assert_eq!(sim.core.task_count(), 0);
    assert_eq!(sim.core.poll_timeout(), None);
}

#[test]
fn a_restart_asked_during_a_spawn_changes_nothing() {
    let mut sim = Sim::new(policy(), None);
    sim.answer_spawns = false;
    sim.add("w", false);
    sim.core.restart(sim.now, "w").unwrap();
    assert!(sim.drain().is_empty());
    sim.answer_spawn();
    assert_eq!(sim.state("w"), TaskState::Running);
    let n = sim
        .log
        .iter()
        .filter(|(_, a)| matches!(a, Action::Spawn { .. }))
        .count();
    assert_eq!(n, 1, "the fresh process is the restart");
}

#[test]
fn refused_requests_say_why() {
    let mut sim = Sim::new(policy(), None);
    sim.add("run", false);
    sim.add("down", false);
    sim.die_on_signal = true;
    sim.core.stop(sim.now, "down").unwrap();
    sim.drain();
    sim.die_on_signal = false;
    sim.add("going", false);
    sim.core.stop(sim.now, "going").unwrap();
    sim.add("gone", false);
    sim.core.remove(sim.now, "gone").unwrap();
    sim.drain();
    let now = sim.now;
    let conflict = |name: &str, state: &'static str, what: &'static str| {
        Err(ControlError::Conflict {
            name: name.into(),
            state,
            what,
        })
    };
    let c = &mut sim.core;
    assert_eq!(
        c.start(now, "nope"),
        Err(ControlError::NotFound("nope".into()))
    );
    assert_eq!(
        c.stop(now, "nope"),
        Err(ControlError::NotFound("nope".into()))
    );
    assert_eq!(
        c.restart(now, "nope"),
        Err(ControlError::NotFound("nope".into()))
    );
    assert_eq!(
        c.remove(now, "nope"),
        Err(ControlError::NotFound("nope".into()))
    );
    assert_eq!(
        c.stop(now, "down"),
        conflict("down", "stopped", "it is already stopped")
    );
    assert_eq!(
        c.stop(now, "going"),
        conflict("going", "stopping", "it is already stopping")
    );
    assert_eq!(
        c.start(now, "run"),
        conflict(
            "run",
            "running",
            "only a stopped or waiting task can be started"
        )
    );
    assert_eq!(
        c.start(now, "going"),
        conflict(
            "going",
            "stopping",
            "only a stopped or waiting task can be started"
        )
    );
    assert_eq!(
        c.stop(now, "gone"),
        conflict("gone", "stopping", "it is being removed")
    );
    assert_eq!(
        c.restart(now, "gone"),
        conflict("gone", "stopping", "it is being removed")
    );
    assert_eq!(
        c.add_task(now, spec("run", false)),
        Err(ControlError::Exists("run".into()))
    );
    assert_eq!(
        c.add_task(now, spec("gone", false)),
        Err(ControlError::Exists("gone".into())),
        "until removed"
    );
    assert_eq!(
        c.add_task(now, spec("p", true)),
        Err(ControlError::NoPortRange { name: "p".into() })
    );
    assert_eq!(c.task_id("p"), None, "a refused add leaves nothing behind");
    let msg = c.add_task(now, spec("p", true)).unwrap_err().to_string();
    assert_eq!(
        msg,
        "task \"p\" uses {{port}} but the supervisor has no --port-range"
    );
    assert_eq!(
        c.stop(now, "down").unwrap_err().to_string(),
        "task \"down\" is stopped: it is already stopped"
    );
    c.shutdown(now, false);
    assert_eq!(
        c.add_task(now, spec("new", false)),
        Err(ControlError::ShuttingDown)
    );
    assert_eq!(c.start(now, "down"), Err(ControlError::ShuttingDown));
    assert_eq!(c.restart(now, "run"), Err(ControlError::ShuttingDown));
    assert_eq!(
        ControlError::ShuttingDown.to_string(),
        "the supervisor is shutting down"
    );
    sim.drain();
    assert_eq!(sim.state("down"), TaskState::Stopped);
}
