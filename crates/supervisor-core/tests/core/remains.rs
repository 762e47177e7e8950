//! A leader's death that leaves processes of its instance behind: they are killed, and gone,
//! before the port is judged and before the replacement starts.
use crate::sim::*;
use std::time::Duration;
use supervisor_core::{Action, Event, Group, GroupKey, Sig, TaskState};

/// The instance groups that `acts` signals with KILL.
fn killed(acts: &[Action]) -> Vec<u64> {
    acts.iter()
        .filter_map(|a| match a {
            Action::Signal {
                group: Group::Instance { generation, .. },
                sig: Sig::Kill,
                ..
            } => Some(*generation),
            _ => None,
        })
        .collect()
}

#[test]
fn remains_are_killed_and_gone_before_the_replacement_starts() {
    let mut sim = Sim::new(policy(), Some("8000-8009"));
    sim.add("w", true);
    let dead_gen = sim.view("w").generation;
    sim.advance(secs(5));
    sim.group_empty = false;
    let acts = sim.exit_with("w", SIGKILL, true);
    assert_eq!(
        killed(&acts),
        [dead_gen],
        "the dead instance's group gets SIGKILL"
    );
    assert!(
        spawns(&acts).is_empty(),
        "no replacement while its remains live"
    );
    assert_eq!(
        count(&acts, |e| matches!(e, Event::RemainsKilled { .. })),
        1
    );
    let v = sim.view("w");
    assert_eq!(
        (v.state, v.waiting_for, v.restarts),
        (TaskState::Starting, 1, 1)
    );
    assert_eq!(
        v.port,
        Some(8000),
        "the port stays with the dead instance until judged"
    );
    // Checked again within 1 ms, 2 ms, ...; survivors of the KILL get it again.
    let acts = sim.advance(ms(1));
    assert_eq!(killed(&acts), [dead_gen]);
    sim.group_empty = true;
    let acts = sim.advance(ms(2));
    assert_eq!(spawns(&acts).len(), 1, "restarted as soon as they are gone");
    assert!(sim.released.contains(&GroupKey::Instance(dead_gen)));
    let v = sim.view("w");
    assert_eq!(
        (v.state, v.restarts, v.waiting_for),
        (TaskState::Running, 1, 0)
    );
    assert_eq!(v.port, Some(8001), "round robin as ever");
    assert_eq!(
        count(
            &sim.log.iter().map(|(_, a)| a.clone()).collect::<Vec<_>>(),
            |e| {
                matches!(
                    e,
                    Event::Exited {
                        expected: false,
                        ..
                    }
                )
            }
        ),
        1,
        "one death, counted once"
    );
}

#[test]
fn a_quick_death_is_blamed_on_the_port_only_when_nothing_of_ours_holds_it() {
    // The dead leader's worker held the port: once it is gone the port is free, so this was
    // the program's own quick death, not a port conflict.
    let mut sim = Sim::new(policy(), Some("8000-8009"));
    sim.add("w", true);
    sim.advance(ms(100));
    sim.group_empty = false;
    sim.exit_with("w", SIGKILL, true);
    sim.group_empty = true;
    let acts = sim.advance(ms(1));
    let probes: Vec<u16> = acts
        .iter()
        .filter_map(|a| match a {
            Action::ProbePort { port, .. } => Some(*port),
            _ => None,
        })
        .collect();
    assert_eq!(probes, [8000], "probed after the remains were gone");
    assert_eq!(
        count(&acts, |e| matches!(e, Event::PortConflictDeath { .. })),
        0
    );
    assert_eq!(sim.view("w").quick_deaths, 1, "counted as a quick death");
    assert_eq!(
        spawns(&acts).len(),
        1,
        "and restarted at once (first quick death)"
    );

    // A stranger holding the port after our remains are gone: the death is the port's fault.
    sim.advance(ms(100));
    let port = sim.port("w").unwrap();
    sim.taken_after_death.insert(port);
    let acts = sim.exit_with("w", SIGKILL, false);
    assert_eq!(
        count(&acts, |e| matches!(e, Event::PortConflictDeath { .. })),
        1
    );
    assert_eq!(sim.view("w").quick_deaths, 1, "not counted");
}

#[test]
fn no_probe_and_no_wait_for_a_lone_leader_that_ran_long() {
    let mut sim = Sim::new(policy(), Some("8000-8009"));
    sim.add("w", true);
    sim.advance(secs(5));
    let acts = sim.kill("w");
    assert!(
        !acts
            .iter()
            .any(|a| matches!(a, Action::ProbePort { .. } | Action::CheckGroup { .. }))
    );
    // The replacement's Spawn comes before anything else the death causes.
    assert!(
        matches!(acts.first(), Some(Action::Spawn { .. }))
            || matches!(acts.first(), Some(Action::Event(Event::Exited { .. })))
    );
    assert_eq!(spawns(&acts).len(), 1);
}

#[test]
fn a_stop_asked_while_remains_are_killed_ends_stopped_once_they_are_gone() {
    let mut sim = Sim::new(policy(), Some("8000-8009"));
    sim.add("w", true);
    sim.advance(secs(5));
    sim.group_empty = false;
    sim.exit_with("w", SIGKILL, true);
    sim.core.stop(sim.now, "w").unwrap();
    sim.drain();
    assert_eq!(sim.state("w"), TaskState::Stopping);
    assert!(sim.core.stop(sim.now, "w").is_err(), "already stopping");
    sim.group_empty = true;
    let acts = sim.advance(ms(5));
    assert!(spawns(&acts).is_empty());
    let v = sim.view("w");
    assert_eq!((v.state, v.port), (TaskState::Stopped, None));
}

#[test]
fn remains_that_survive_sigkill_are_given_up_on_after_the_kill_timeout() {
    let mut sim = Sim::new(policy(), None);
    sim.add("w", false);
    sim.advance(secs(5));
    sim.group_empty = false;
    sim.exit_with("w", SIGKILL, true);
    let acts = sim.advance(secs(5) - Duration::from_nanos(1));
    assert!(spawns(&acts).is_empty());
    let acts = sim.advance(Duration::from_nanos(1));
    assert_eq!(count(&acts, |e| matches!(e, Event::StopFailed { .. })), 1);
    assert_eq!(spawns(&acts).len(), 1, "the task is not held forever");
}
