//! Recovery: what the shell found at start is judged; what is provably ours is stopped in
//! parallel, and each task starts as soon as its own leftovers are gone.
use crate::sim::*;
use std::collections::HashSet;
use supervisor_core::{
    Action, EntryFacts, Event, Evidence, Found, Group, LeftAlone, ProcessFacts, Sig, TaskState,
    Writer,
};

fn cgroup(id: u64, task: &str, generation: u64) -> Found {
    Found {
        id,
        task: Some(task.into()),
        generation: Some(generation),
        pid: None,
        evidence: Evidence::OwnCgroup,
    }
}

fn entry(id: u64, task: &str, pid: u32, facts: EntryFacts, writer_alive: bool) -> Found {
    Found {
        id,
        task: Some(task.into()),
        generation: None,
        pid: Some(pid),
        evidence: Evidence::DumpEntry {
            entry: facts,
            process: ProcessFacts::default(),
            writer: Writer {
                pid: 42,
                alive: writer_alive,
            },
        },
    }
}

const GOOD: EntryFacts = EntryFacts {
    recorded_in_this_boot: true,
    alive: true,
    has_start_time: true,
    start_matches: true,
    leads_session: true,
    marked: true,
};

/// The found groups `acts` signals.
fn found_signals(acts: &[Action]) -> Vec<(u64, Sig)> {
    acts.iter()
        .filter_map(|a| match a {
            Action::Signal {
                group: Group::Found { id },
                sig,
                ..
            } => Some((*id, *sig)),
            _ => None,
        })
        .collect()
}

#[test]
fn each_task_starts_as_soon_as_its_own_leftovers_are_gone() {
    let mut sim = Sim::new(policy(), None);
    sim.found_alive.extend([1, 2]);
    sim.core.recover(
        sim.now,
        vec![cgroup(1, "slow", 7), cgroup(2, "quick", 9)],
        9,
    );
    let acts = sim.drain();
    let mut sigs = found_signals(&acts);
    sigs.sort_by_key(|(id, _)| *id);
    assert_eq!(
        sigs,
        [(1, Sig::Term), (2, Sig::Term)],
        "both at once, in parallel"
    );
    assert!(sim.core.recovering());
    sim.add("slow", false);
    sim.add("quick", false);
    sim.add("fresh", false);
    assert_eq!(
        sim.state("fresh"),
        TaskState::Running,
        "nothing of it was found"
    );
    assert_eq!(sim.state("slow"), TaskState::Starting);
    assert_eq!(sim.view("slow").waiting_for, 1);
    assert!(
        sim.view("fresh").generation > 9,
        "generations continue above the predecessor's"
    );
    // Only quick's leftover goes on TERM: only quick starts, within milliseconds.
    sim.found_alive.remove(&2);
    sim.advance(ms(5));
    assert_eq!(sim.state("quick"), TaskState::Running);
    assert_eq!(sim.state("slow"), TaskState::Starting);
    // slow's leftover ignores TERM: KILL after the stop timeout, then it goes.
    let acts = sim.advance(secs(10));
    assert!(found_signals(&acts).contains(&(1, Sig::Kill)));
    assert_eq!(sim.state("slow"), TaskState::Running);
    let all: Vec<Action> = sim.log.iter().map(|(_, a)| a.clone()).collect();
    assert_eq!(
        count(&all, |e| matches!(
            e,
            Event::RecoveryFinished {
                stopped: 2,
                failed: 0,
                ..
            }
        )),
        1
    );
    assert!(!sim.core.recovering());
}

#[test]
fn dump_entries_are_stopped_only_when_every_check_passes() {
    let cases: [(EntryFacts, bool, Option<LeftAlone>); 9] = [
        (GOOD, false, None),
        (
            EntryFacts {
                recorded_in_this_boot: false,
                ..GOOD
            },
            false,
            Some(LeftAlone::OtherBoot),
        ),
        (
            EntryFacts {
                alive: false,
                ..GOOD
            },
            false,
            Some(LeftAlone::Gone),
        ),
        (
            EntryFacts {
                has_start_time: false,
                start_matches: false,
                ..GOOD
            },
            false,
            Some(LeftAlone::NoStartTime),
        ),
        (
            EntryFacts {
                start_matches: false,
                ..GOOD
            },
            false,
            Some(LeftAlone::PidReused),
        ),
        (
            EntryFacts {
                leads_session: false,
                ..GOOD
            },
            false,
            Some(LeftAlone::NotALeader),
        ),
        // A hand-edited dump naming an unrelated process with the right pid and start time.
        (
            EntryFacts {
                marked: false,
                ..GOOD
            },
            false,
            Some(LeftAlone::Unmarked),
        ),
        // A copy of a live supervisor's dump.
        (GOOD, true, Some(LeftAlone::WriterAlive)),
        (
            EntryFacts {
                marked: false,
                ..GOOD
            },
            true,
            Some(LeftAlone::Unmarked),
        ),
    ];
    for (facts, writer_alive, want) in cases {
        let mut sim = Sim::new(policy(), None);
        sim.core
            .recover(sim.now, vec![entry(1, "web", 4242, facts, writer_alive)], 0);
        let acts = sim.drain();
        let alone: Vec<(LeftAlone, Vec<String>, Vec<u32>)> = events(&acts)
            .into_iter()
            .filter_map(|e| match e {
                Event::LeftAlone {
                    reason,
                    tasks,
                    pids,
                    ..
                } => Some((*reason, tasks.clone(), pids.clone())),
                _ => None,
            })
            .collect();
        match want {
            None => {
                assert_eq!(found_signals(&acts), [(1, Sig::Term)], "{facts:?}");
                assert!(alone.is_empty());
            }
            Some(reason) => {
                assert!(
                    found_signals(&acts).is_empty(),
                    "{facts:?} must be left alone"
                );
                assert_eq!(alone, [(reason, vec!["web".to_string()], vec![4242])]);
            }
        }
    }
}

#[test]
fn a_copied_dump_of_a_live_supervisor_is_left_alone_once_naming_every_task() {
    let mut sim = Sim::new(policy(), None);
    let found = vec![
        entry(1, "web", 100, GOOD, true),
        entry(2, "api", 101, GOOD, true),
        Found {
            id: 3,
            task: Some("web".into()),
            generation: Some(3),
            pid: None,
            evidence: Evidence::OtherCgroup {
                writer: Writer {
                    pid: 42,
                    alive: true,
                },
            },
        },
    ];
    sim.core.recover(sim.now, found, 3);
    let acts = sim.drain();
    assert!(found_signals(&acts).is_empty());
    let alone: Vec<&Event> = events(&acts)
        .into_iter()
        .filter(|e| matches!(e, Event::LeftAlone { .. }))
        .collect();
    assert_eq!(alone.len(), 1, "one message: {alone:?}");
    let Event::LeftAlone {
        reason,
        tasks,
        writer,
        ..
    } = alone[0]
    else {
        unreachable!()
    };
    assert_eq!(*reason, LeftAlone::WriterAlive);
    assert_eq!(tasks, &["web".to_string(), "api".to_string()]);
    assert_eq!(*writer, Some(42));
    // With the writer gone, the same dump's cgroup is ours to clean.
    let mut sim = Sim::new(policy(), None);
    let gone = Found {
        id: 3,
        task: Some("web".into()),
        generation: Some(3),
        pid: None,
        evidence: Evidence::OtherCgroup {
            writer: Writer {
                pid: 42,
                alive: false,
            },
        },
    };
    sim.core.recover(sim.now, vec![gone], 3);
    assert_eq!(found_signals(&sim.drain()), [(3, Sig::Term)]);
}

#[test]
fn marked_processes_are_stopped_unless_protected_or_a_live_supervisors_child() {
    let marked = |id, process| Found {
        id,
        task: Some("w".into()),
        generation: None,
        pid: Some(id as u32 + 100),
        evidence: Evidence::Marked { process },
    };
    let mut sim = Sim::new(policy(), None);
    sim.core.recover(
        sim.now,
        vec![
            marked(1, ProcessFacts::default()),
            marked(
                2,
                ProcessFacts {
                    protected: true,
                    ..ProcessFacts::default()
                },
            ),
            marked(
                3,
                ProcessFacts {
                    parent_is_live_supervisor: true,
                    ..ProcessFacts::default()
                },
            ),
            // Inside a found cgroup: stopping the cgroup stops it; no separate job.
            marked(
                4,
                ProcessFacts {
                    in_found_cgroup: true,
                    ..ProcessFacts::default()
                },
            ),
            cgroup(5, "w", 1),
        ],
        1,
    );
    let acts = sim.drain();
    let stopped: HashSet<u64> = found_signals(&acts).into_iter().map(|(id, _)| id).collect();
    assert_eq!(stopped, HashSet::from([1, 5]));
    let reasons: Vec<LeftAlone> = events(&acts)
        .into_iter()
        .filter_map(|e| match e {
            Event::LeftAlone { reason, .. } => Some(*reason),
            _ => None,
        })
        .collect();
    assert_eq!(
        reasons,
        [LeftAlone::Protected, LeftAlone::ChildOfLiveSupervisor]
    );
}

#[test]
fn recovery_with_nothing_found_is_finished_at_once() {
    let mut sim = Sim::new(policy(), None);
    sim.core.recover(sim.now, Vec::new(), 0);
    let acts = sim.drain();
    assert_eq!(
        count(&acts, |e| matches!(
            e,
            Event::RecoveryFinished { stopped: 0, .. }
        )),
        1
    );
    assert!(!sim.core.recovering());
}

#[test]
fn the_final_sweep_stops_strays_before_shutdown_finishes() {
    let mut sim = Sim::new(policy(), None);
    sim.die_on_signal = true;
    sim.add("w", false);
    sim.sweep_finds = vec![Found {
        id: 9,
        task: Some("w".into()),
        generation: None,
        pid: Some(777),
        evidence: Evidence::Marked {
            process: ProcessFacts::default(),
        },
    }];
    sim.found_alive.insert(9);
    sim.group_empty = false;
    sim.core.shutdown(sim.now, false);
    sim.drain();
    assert_eq!(
        sim.sweeps, 0,
        "no sweep while the task's own group is being stopped"
    );
    // The stray ignores TERM.
    sim.die_on_signal = false;
    sim.group_empty = true;
    let acts = sim.advance(ms(10));
    assert_eq!(sim.sweeps, 1);
    assert_eq!(found_signals(&acts), [(9, Sig::Term)]);
    assert!(!sim.core.is_finished(), "the stray is still there");
    let acts = sim.advance(secs(2));
    assert_eq!(
        found_signals(&acts),
        [(9, Sig::Kill)],
        "KILL after the sweep's grace"
    );
    assert!(sim.core.is_finished());
    assert_eq!(sim.sweeps, 1, "one sweep");
}
