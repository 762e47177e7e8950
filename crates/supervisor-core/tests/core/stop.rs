//! Stopping: TERM, grace, KILL, group checks, giving up; shutdown.
use crate::sim::*;
use std::time::Duration;
use supervisor_core::{Action, Event, ExitStatus, Sig, StopReason, TaskState};

const SIGTERM: ExitStatus = ExitStatus::Signal {
    signal: 15,
    core_dumped: false,
};

fn stopped_events(actions: &[Action]) -> usize {
    count(actions, |e| matches!(e, Event::Stopped { .. }))
}

#[test]
fn stop_sends_term_then_kill_after_stop_timeout() {
    let mut sim = Sim::new(policy(), Some("8000-8009"));
    sim.add("w", true);
    let pid = sim.pid("w");
    sim.advance(secs(5));
    sim.core.stop(sim.now, "w").unwrap();
    let acts = sim.drain();
    assert_eq!(signals(&acts), [(pid, Sig::Term)]);
    assert_eq!(
        count(&acts, |e| matches!(
            e,
            Event::Stopping {
                reason: StopReason::Requested,
                ..
            }
        )),
        1
    );
    assert_eq!(sim.state("w"), TaskState::Stopping);
    assert_eq!(sim.core.poll_timeout(), Some(sim.now + secs(10)));
    let acts = sim.advance(secs(10) - Duration::from_nanos(1));
    assert!(signals(&acts).is_empty(), "no KILL during the grace period");
    let acts = sim.advance(Duration::from_nanos(1));
    assert_eq!(signals(&acts), [(pid, Sig::Kill)]);
    let after: Vec<Duration> = events(&acts)
        .into_iter()
        .filter_map(|e| match e {
            Event::StopEscalated { after, .. } => Some(*after),
            _ => None,
        })
        .collect();
    assert_eq!(after, [secs(10)]);
    let acts = sim.exit("w", SIGKILL, false);
    assert_eq!(
        count(&acts, |e| matches!(e, Event::Exited { expected: true, .. })),
        1
    );
    assert!(
        !acts.iter().any(|a| matches!(a, Action::CheckGroup { .. })),
        "the shell said nothing of the group remains: no check needed"
    );
    assert_eq!(stopped_events(&acts), 1);
    let v = sim.view("w");
    assert_eq!((v.state, v.pid, v.port), (TaskState::Stopped, None, None));
    assert_eq!(sim.core.task_by_pid(pid), None);
    assert!(
        spawns(&sim.advance(secs(600))).is_empty(),
        "a stopped task stays down"
    );
}

#[test]
fn a_leader_that_exits_on_term_is_not_killed() {
    let mut sim = Sim::new(policy(), None);
    sim.add("w", false);
    sim.core.stop(sim.now, "w").unwrap();
    sim.drain();
    sim.advance(ms(300));
    let acts = sim.exit("w", SIGTERM, false);
    assert_eq!(stopped_events(&acts), 1);
    assert_eq!(sim.core.poll_timeout(), None, "no timer left behind");
    let all: Vec<Action> = sim.log.iter().map(|(_, a)| a.clone()).collect();
    assert!(!signals(&all).iter().any(|(_, s)| *s == Sig::Kill));
}

#[test]
fn a_group_that_outlives_its_leader_is_rechecked_then_killed() {
    let mut sim = Sim::new(policy(), None);
    sim.die_on_signal = true;
    sim.group_empty = false;
    sim.kill_empties_group = true;
    sim.add("w", false);
    let pid = sim.pid("w");
    sim.core.stop(sim.now, "w").unwrap();
    sim.drain();
    assert_eq!(
        sim.state("w"),
        TaskState::Stopping,
        "leader gone, group still there"
    );
    assert_eq!(sim.group_checks, 1);
    sim.advance(secs(1));
    assert!(
        (45..=55).contains(&sim.group_checks),
        "checked every 20 ms: {}",
        sim.group_checks
    );
    assert_eq!(sim.state("w"), TaskState::Stopping);
    // At the stop timeout the group gets a KILL, and is checked right after it: the stop ends
    // as soon as the group is empty, not at the kill deadline.
    let acts = sim.advance(secs(9));
    assert_eq!(
        signals(&acts).last(),
        Some(&(pid, Sig::Kill)),
        "the leader's pid is the group"
    );
    assert_eq!(sim.state("w"), TaskState::Stopped);
    assert_eq!(count(&acts, |e| matches!(e, Event::StopFailed { .. })), 0);
    let stopped_at = sim
        .log
        .iter()
        .find(|(_, a)| matches!(a, Action::Event(Event::Stopped { .. })))
        .map(|(at, _)| *at);
    assert_eq!(stopped_at, Some(secs(10)));
}

#[test]
fn stop_fails_after_kill_timeout_when_the_group_will_not_die() {
    let mut sim = Sim::new(policy(), Some("8000-8001"));
    sim.add("w", true);
    let pid = sim.pid("w");
    sim.core.stop(sim.now, "w").unwrap();
    sim.drain();
    let acts = sim.advance(secs(10));
    assert_eq!(signals(&acts), [(pid, Sig::Kill)]);
    let acts = sim.advance(secs(5) - Duration::from_nanos(1));
    assert_eq!(count(&acts, |e| matches!(e, Event::StopFailed { .. })), 0);
    let acts = sim.advance(Duration::from_nanos(1));
    let failed: Vec<&str> = events(&acts)
        .into_iter()
        .filter_map(|e| match e {
            Event::StopFailed { task, name } => {
                assert_eq!(*task, Some(sim.id("w")));
                Some(name.as_str())
            }
            _ => None,
        })
        .collect();
    assert_eq!(failed, ["w"]);
    assert_eq!(stopped_events(&acts), 1);
    let v = sim.view("w");
    assert_eq!((v.state, v.pid, v.port), (TaskState::Stopped, None, None));
    assert_eq!(sim.core.poll_timeout(), None);
}

#[test]
fn a_group_check_that_finds_stragglers_keeps_the_task_stopping() {
    let mut sim = Sim::new(policy(), None);
    sim.add("w", false);
    sim.core.stop(sim.now, "w").unwrap();
    sim.drain();
    sim.group_empty = false;
    sim.advance(ms(100));
    let before = sim.group_checks;
    sim.exit("w", SIGTERM, false);
    assert_eq!(sim.state("w"), TaskState::Stopping);
    assert_eq!(sim.group_checks, before + 1, "looked at once");
    // Then again after 1 ms, 2 ms, 4 ms ... up to every 20 ms: a group that empties quickly
    // is seen gone quickly, and a slow one costs one check per 20 ms.
    let mut gaps = Vec::new();
    let mut last = sim.now;
    for _ in 0..8 {
        let next = sim.core.poll_timeout().unwrap();
        gaps.push(next - last);
        last = next;
        sim.advance(next - sim.now);
    }
    assert_eq!(
        gaps,
        [ms(1), ms(2), ms(4), ms(8), ms(16), ms(20), ms(20), ms(20)]
    );
    assert_eq!(sim.group_checks, before + 9, "asked at every wake-up");
    sim.group_empty = true;
    let acts = sim.advance(ms(20));
    assert_eq!(stopped_events(&acts), 1);
    assert!(signals(&acts).is_empty(), "no KILL needed");
}

#[test]
fn shutdown_stops_every_task_and_finishes_when_every_group_is_gone() {
    let mut sim = Sim::new(policy(), Some("8000-8009"));
    sim.fail.insert("broken".into());
    sim.add("a", true);
    sim.add("b", false);
    sim.add("broken", false);
    sim.add("idle", false);
    sim.die_on_signal = true;
    sim.core.stop(sim.now, "idle").unwrap();
    sim.drain();
    sim.die_on_signal = false;
    assert_eq!(sim.state("idle"), TaskState::Stopped);
    sim.advance(secs(1));
    let (pa, pb) = (sim.pid("a"), sim.pid("b"));
    assert!(!sim.core.is_finished(), "not shutting down");
    assert_eq!(sim.state("broken"), TaskState::Backoff);
    sim.core.shutdown(sim.now, false);
    let acts = sim.drain();
    let mut sig = signals(&acts);
    sig.sort_by_key(|(pid, _)| *pid);
    assert_eq!(sig, [(pa, Sig::Term), (pb, Sig::Term)]);
    assert_eq!(
        stopped_events(&acts),
        1,
        "the waiting task is stopped at once; the stopped one is not reported again"
    );
    assert_eq!(sim.state("broken"), TaskState::Stopped);
    assert!(sim.core.is_shutting_down() && !sim.core.is_finished());
    sim.exit("a", SIGTERM, false);
    assert!(!sim.core.is_finished(), "b is still up");
    sim.group_empty = false;
    sim.exit("b", SIGTERM, false);
    assert!(!sim.core.is_finished(), "b's group is not empty");
    sim.group_empty = true;
    sim.advance(ms(20));
    assert!(sim.core.is_finished());
    assert!(
        sim.core
            .views()
            .iter()
            .all(|v| v.state == TaskState::Stopped && v.pid.is_none() && v.port.is_none())
    );
    let t = sim.at();
    sim.advance(secs(600));
    assert!(
        !sim.log
            .iter()
            .any(|(at, a)| *at >= t && matches!(a, Action::Spawn { .. })),
        "nothing spawns after shutdown"
    );
}

#[test]
fn forced_shutdown_kills_at_once() {
    let mut sim = Sim::new(policy(), None);
    sim.add("a", false);
    sim.add("b", false);
    let (pa, pb) = (sim.pid("a"), sim.pid("b"));
    sim.core.shutdown(sim.now, true);
    let acts = sim.drain();
    let kills: Vec<u32> = signals(&acts)
        .into_iter()
        .filter(|(_, s)| *s == Sig::Kill)
        .map(|(p, _)| p)
        .collect();
    assert_eq!(kills, [pa, pb]);
    sim.exit("a", SIGKILL, false);
    sim.exit("b", SIGKILL, false);
    assert!(sim.core.is_finished());
}

#[test]
fn a_second_shutdown_with_force_kills_what_the_first_is_waiting_for() {
    let mut sim = Sim::new(policy(), None);
    sim.add("a", false);
    let pa = sim.pid("a");
    sim.core.shutdown(sim.now, false);
    assert_eq!(signals(&sim.drain()), [(pa, Sig::Term)]);
    sim.advance(secs(1));
    sim.core.shutdown(sim.now, true);
    assert_eq!(signals(&sim.drain()), [(pa, Sig::Kill)]);
    sim.exit("a", SIGKILL, false);
    assert!(sim.core.is_finished());
}

#[test]
fn shutdown_waits_for_a_spawn_under_way_and_stops_its_process() {
    for force in [false, true] {
        let mut sim = Sim::new(policy(), None);
        sim.answer_spawns = false;
        sim.add("w", false);
        sim.core.shutdown(sim.now, force);
        sim.drain();
        assert_eq!(sim.state("w"), TaskState::Stopping, "force={force}");
        assert!(
            !sim.core.is_finished(),
            "force={force}: a process may be starting"
        );
        let acts = sim.answer_spawn();
        let pid = sim.procs.keys().copied().next().unwrap();
        let want = if force { Sig::Kill } else { Sig::Term };
        assert!(
            signals(&acts).contains(&(pid, want)),
            "force={force}: {acts:?}"
        );
        assert!(!sim.core.is_finished());
        sim.exit("w", SIGKILL, false);
        assert!(sim.core.is_finished(), "force={force}");
    }
}

#[test]
fn a_restart_under_way_at_shutdown_ends_in_a_stop() {
    let mut sim = Sim::new(policy(), None);
    sim.add("w", false);
    sim.core.restart(sim.now, "w").unwrap();
    sim.drain();
    sim.core.shutdown(sim.now, false);
    sim.drain();
    sim.exit("w", SIGTERM, false);
    assert!(sim.core.is_finished());
    assert_eq!(sim.state("w"), TaskState::Stopped);
    assert!(spawns(&sim.advance(secs(60))).is_empty());
}

#[test]
fn a_removal_under_way_at_shutdown_still_removes() {
    let mut sim = Sim::new(policy(), None);
    sim.add("w", false);
    sim.core.remove(sim.now, "w").unwrap();
    sim.drain();
    sim.core.shutdown(sim.now, false);
    sim.drain();
    let acts = sim.exit("w", SIGTERM, false);
    assert_eq!(count(&acts, |e| matches!(e, Event::Removed { .. })), 1);
    assert_eq!((sim.core.task_count(), sim.core.is_finished()), (0, true));
}
