//! Restart policy: immediate first restart, yo-yo mode entered, grown, rate-limited and left,
//! spawn failures, stale inputs.
use crate::sim::*;
use proptest::prelude::*;
use std::time::Duration;
use supervisor_core::{
    Action, BackoffReason, Event, ExitStatus, GroupKey, Input, TaskId, TaskState,
};

/// Kills `name` after `uptime` of running, then waits for its restart. Returns the delay the
/// core chose (zero for an immediate restart) and the actions of the death.
fn die_and_restart(sim: &mut Sim, name: &str, uptime: Duration) -> (Duration, Vec<Action>) {
    sim.advance(uptime);
    let acts = sim.kill(name);
    if sim.state(name) == TaskState::Running {
        return (Duration::ZERO, acts);
    }
    let delay = sim.retry_in(name).unwrap();
    sim.advance(delay);
    assert_eq!(
        sim.state(name),
        TaskState::Running,
        "restarted after its delay"
    );
    (delay, acts)
}

#[test]
fn first_restart_after_a_death_is_immediate() {
    let mut sim = Sim::new(policy(), Some("8000-8009"));
    sim.add("web", true);
    let first = sim.pid("web");
    sim.advance(secs(5));
    sim.core.handle(
        sim.now,
        Input::Exited {
            pid: first,
            status: ExitStatus::Code { code: 3 },
            remains: false,
        },
    );
    // Before the shell answers anything: the Spawn is already out, from this very call.
    let out: Vec<Action> = std::iter::from_fn(|| sim.core.poll_action()).collect();
    assert_eq!(spawns(&out).len(), 1, "{out:?}");
    assert_eq!(sim.core.poll_timeout(), None, "no timer involved");
    let (task, generation, port) = match out.iter().find(|a| matches!(a, Action::Spawn { .. })) {
        Some(Action::Spawn {
            task,
            generation,
            port,
            ..
        }) => (*task, *generation, *port),
        _ => unreachable!(),
    };
    let died = events(&out)
        .into_iter()
        .find_map(|e| match e {
            Event::Exited {
                pid,
                status,
                uptime,
                expected,
                quiet,
                ..
            } => Some((*pid, *status, *uptime, *expected, *quiet)),
            _ => None,
        })
        .unwrap();
    assert_eq!(
        died,
        (first, ExitStatus::Code { code: 3 }, secs(5), false, false)
    );
    let acts = sim.handle(Input::Spawned {
        task,
        generation,
        pid: 4242,
        start_ticks: None,
    });
    let started = events(&acts)
        .into_iter()
        .find_map(|e| match e {
            Event::Started {
                pid,
                port: p,
                restart,
                since_death,
                quiet,
                ..
            } => Some((*pid, *p, *restart, *since_death, *quiet)),
            _ => None,
        })
        .unwrap();
    assert_eq!(started, (4242, port, true, Some(Duration::ZERO), false));
    let v = sim.view("web");
    assert_eq!(
        (v.state, v.pid, v.restarts, v.quick_deaths),
        (TaskState::Running, Some(4242), 1, 0)
    );
    assert_eq!(
        v.last_exit.map(|e| (e.pid, e.uptime)),
        Some((first, secs(5)))
    );
}

#[test]
fn a_death_after_a_long_run_restarts_immediately_and_resets_quick_deaths() {
    let mut sim = Sim::new(policy_with_yoyo_after(3), None);
    sim.add("w", false);
    let (d, _) = die_and_restart(&mut sim, "w", ms(10));
    assert_eq!((d, sim.view("w").quick_deaths), (Duration::ZERO, 1));
    let (d, _) = die_and_restart(&mut sim, "w", ms(10));
    assert_eq!((d, sim.view("w").quick_deaths), (Duration::ZERO, 2));
    let (d, _) = die_and_restart(&mut sim, "w", secs(1));
    assert_eq!(
        (d, sim.view("w").quick_deaths),
        (Duration::ZERO, 0),
        "uptime == min_uptime is not quick"
    );
    let (d, _) = die_and_restart(&mut sim, "w", ms(999));
    assert_eq!((d, sim.view("w").quick_deaths), (Duration::ZERO, 1));
    assert_eq!(sim.view("w").yoyo_since, None);
    assert_eq!(sim.view("w").restarts, 4);
}

fn policy_with_yoyo_after(n: u32) -> supervisor_core::Policy {
    supervisor_core::Policy {
        yoyo_after: n,
        ..policy()
    }
}

#[test]
fn consecutive_quick_deaths_enter_yoyo_at_the_configured_count() {
    for yoyo_after in 1..=4 {
        let mut sim = Sim::new(policy_with_yoyo_after(yoyo_after), None);
        sim.add("w", false);
        for n in 1..yoyo_after {
            let (d, acts) = die_and_restart(&mut sim, "w", ms(10));
            assert_eq!(
                d,
                Duration::ZERO,
                "yoyo_after={yoyo_after}: death {n} restarts at once"
            );
            assert_eq!(count(&acts, |e| matches!(e, Event::YoyoEntered { .. })), 0);
        }
        sim.advance(ms(10));
        let entered_at = sim.now;
        let acts = sim.kill("w");
        assert!(
            spawns(&acts).is_empty(),
            "yoyo_after={yoyo_after}: the death that enters yo-yo waits"
        );
        let v = sim.view("w");
        assert_eq!(
            (v.state, v.backoff_reason, v.yoyo_since, v.quick_deaths),
            (
                TaskState::Backoff,
                Some(BackoffReason::Crashed),
                Some(entered_at),
                yoyo_after
            )
        );
        let entered: Vec<_> = events(&acts)
            .into_iter()
            .filter_map(|e| match e {
                Event::YoyoEntered {
                    quick_deaths,
                    next_delay,
                    ..
                } => Some((*quick_deaths, *next_delay)),
                _ => None,
            })
            .collect();
        assert_eq!(entered.len(), 1);
        assert_eq!(entered[0].0, yoyo_after);
        assert_eq!(Some(entered[0].1), sim.retry_in("w"));
        assert!(
            (ms(75)..=ms(100)).contains(&entered[0].1),
            "{:?}",
            entered[0].1
        );
        // Nothing starts before the delay is over; the restart comes exactly at its end.
        let delay = entered[0].1;
        assert!(spawns(&sim.advance(delay - Duration::from_nanos(1))).is_empty());
        assert_eq!(spawns(&sim.advance(Duration::from_nanos(1))).len(), 1);
        // Further deaths in yo-yo mode never announce it again.
        for _ in 0..5 {
            die_and_restart(&mut sim, "w", ms(10));
        }
        let all: Vec<Action> = sim.log.iter().map(|(_, a)| a.clone()).collect();
        assert_eq!(
            count(&all, |e| matches!(e, Event::YoyoEntered { .. })),
            1,
            "yoyo_after={yoyo_after}"
        );
    }
}

#[test]
fn a_death_in_yoyo_after_a_long_but_unstable_run_still_counts() {
    let mut sim = Sim::new(policy(), None);
    sim.add("w", false);
    die_and_restart(&mut sim, "w", ms(10));
    die_and_restart(&mut sim, "w", ms(10));
    assert!(sim.view("w").yoyo_since.is_some());
    let (d, _) = die_and_restart(&mut sim, "w", secs(30));
    assert!(
        d > Duration::ZERO,
        "30 s is more than min_uptime but less than stable_after: still yo-yo"
    );
    assert_eq!(sim.view("w").quick_deaths, 3);
}

#[test]
fn yoyo_continues_is_rate_limited() {
    let mut p = policy();
    p.backoff.cap = secs(2);
    let mut sim = Sim::new(p, None);
    sim.add("w", false);
    die_and_restart(&mut sim, "w", ms(10));
    die_and_restart(&mut sim, "w", ms(10));
    let entered = sim.view("w").yoyo_since.unwrap() - sim.t0;
    let mut deaths_after = 0;
    while sim.at() < secs(600) {
        let (_, acts) = die_and_restart(&mut sim, "w", ms(10));
        deaths_after += 1;
        for e in events(&acts) {
            if let Event::Exited { quiet, .. } = e {
                assert!(*quiet, "deaths in yo-yo mode are quiet");
            }
        }
    }
    let continues: Vec<(Duration, u32)> = sim
        .log
        .iter()
        .filter_map(|(at, a)| match a {
            Action::Event(Event::YoyoContinues { suppressed, .. }) => Some((*at, *suppressed)),
            _ => None,
        })
        .collect();
    assert!(
        continues.len() >= 15,
        "about one every 30 s over ~10 min: {}",
        continues.len()
    );
    let mut last = entered;
    for (at, suppressed) in &continues {
        assert!(
            *at - last >= secs(30),
            "{at:?} only {:?} after the previous line",
            *at - last
        );
        assert!(*suppressed > 0, "the deaths in between were counted");
        last = *at;
    }
    let reported: u32 = continues.iter().map(|(_, s)| s + 1).sum();
    assert!(
        reported <= deaths_after && deaths_after - reported < 30,
        "{reported} of {deaths_after} deaths accounted for"
    );
}

#[test]
fn yoyo_is_left_after_a_stable_run() {
    let mut sim = Sim::new(policy(), None);
    sim.add("w", false);
    die_and_restart(&mut sim, "w", ms(10));
    die_and_restart(&mut sim, "w", ms(10));
    let started = sim.view("w").started_at.unwrap();
    assert!(sim.view("w").yoyo_since.is_some());
    let acts = sim.advance_to(started - sim.t0 + secs(60) - ms(1));
    assert_eq!(count(&acts, |e| matches!(e, Event::YoyoLeft { .. })), 0);
    assert!(sim.view("w").yoyo_since.is_some(), "not yet stable");
    let acts = sim.advance(ms(1));
    let left: Vec<Duration> = events(&acts)
        .into_iter()
        .filter_map(|e| match e {
            Event::YoyoLeft { stable_for, .. } => Some(*stable_for),
            _ => None,
        })
        .collect();
    assert_eq!(left, [secs(60)]);
    let v = sim.view("w");
    assert_eq!(
        (v.yoyo_since, v.quick_deaths, v.state),
        (None, 0, TaskState::Running)
    );
    // The next death, quick as it is, is restarted at once, and does not re-enter yo-yo.
    let acts = sim.kill("w");
    assert_eq!(spawns(&acts).len(), 1);
    assert_eq!(count(&acts, |e| matches!(e, Event::YoyoEntered { .. })), 0);
    assert!(
        count(&acts, |e| matches!(e, Event::Exited { quiet: false, .. })) == 1,
        "out of yo-yo, deaths are logged again"
    );
}

#[test]
fn a_stable_run_leaves_yoyo_even_if_the_death_beats_the_timer() {
    let mut sim = Sim::new(policy(), None);
    sim.add("w", false);
    die_and_restart(&mut sim, "w", ms(10));
    die_and_restart(&mut sim, "w", ms(10));
    // The death is handled at the very instant the stability timer is due, before it fires.
    sim.now += secs(60);
    let acts = sim.kill("w");
    assert_eq!(count(&acts, |e| matches!(e, Event::YoyoLeft { .. })), 1);
    assert_eq!(
        spawns(&acts).len(),
        1,
        "a stable run's death restarts at once"
    );
    assert_eq!(sim.view("w").yoyo_since, None);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// In yo-yo mode, the k-th delay lies in the jitter band below base × 2^k, never above the
    /// cap, and grows strictly until the cap is reached.
    #[test]
    fn yoyo_delays_grow_within_the_jitter_band_and_never_exceed_the_cap(
        seed: u64,
        yoyo_after in 1u32..5,
        deaths in 1usize..30,
        cap_ms in 150u64..5_000,
        base_ms in 1u64..200,
    ) {
        let mut p = policy_with_yoyo_after(yoyo_after);
        p.backoff.base = ms(base_ms);
        p.backoff.cap = ms(cap_ms);
        let b = p.backoff;
        let mut sim = Sim::with_seed(p, None, seed);
        sim.add("w", false);
        for _ in 1..yoyo_after {
            let (d, _) = die_and_restart(&mut sim, "w", ms(5));
            prop_assert_eq!(d, Duration::ZERO);
        }
        let mut prev: Option<Duration> = None;
        for k in 0..deaths as u32 {
            let (d, _) = die_and_restart(&mut sim, "w", ms(5));
            let nominal = b.nominal(k);
            prop_assert!(d <= b.cap, "delay {:?} above cap {:?}", d, b.cap);
            prop_assert!(d <= nominal, "k={} delay {:?} above {:?}", k, d, nominal);
            prop_assert!(d + Duration::from_nanos(1) >= nominal.mul_f64(0.75), "k={} delay {:?} below the band of {:?}", k, d, nominal);
            if let Some(prev) = prev {
                if b.nominal(k) < b.cap {
                    prop_assert!(d > prev, "k={} delay {:?} does not grow from {:?}", k, d, prev);
                }
            }
            prev = Some(d);
        }
    }
}

#[test]
fn spawn_failures_back_off_with_rate_limited_events() {
    let mut sim = Sim::new(policy(), None);
    sim.fail.insert("w".into());
    let acts = sim.add("w", false);
    let first = events(&acts)
        .into_iter()
        .find_map(|e| match e {
            Event::SpawnFailed {
                failures,
                retry_in,
                quiet,
                suppressed,
                error,
                ..
            } => Some((*failures, *retry_in, *quiet, *suppressed, error.clone())),
            _ => None,
        })
        .unwrap();
    assert_eq!((first.0, first.2, first.3), (1, false, 0));
    assert!((ms(75)..=ms(100)).contains(&first.1), "{:?}", first.1);
    assert!(first.4.contains("No such file"));
    let v = sim.view("w");
    assert_eq!(
        (v.state, v.backoff_reason),
        (TaskState::Backoff, Some(BackoffReason::SpawnFailed))
    );
    assert!(v.last_error.is_some());
    sim.advance(secs(300));
    let failed: Vec<(Duration, u32, Duration, bool, u32)> = sim
        .log
        .iter()
        .filter_map(|(at, a)| match a {
            Action::Event(Event::SpawnFailed {
                failures,
                retry_in,
                quiet,
                suppressed,
                ..
            }) => Some((*at, *failures, *retry_in, *quiet, *suppressed)),
            _ => None,
        })
        .collect();
    assert!(failed.len() > 10, "{}", failed.len());
    for (i, (_, failures, retry_in, _, _)) in failed.iter().enumerate() {
        assert_eq!(*failures as usize, i + 1);
        assert!(*retry_in <= secs(30));
    }
    let loud: Vec<_> = failed.iter().filter(|f| !f.3).collect();
    assert!(
        loud.len() >= 2 && loud.len() < failed.len(),
        "some lines logged, some held back"
    );
    for w in loud.windows(2) {
        assert!(
            w[1].0 - w[0].0 >= secs(30),
            "logged lines are 30 s apart at least"
        );
        assert!(w[1].4 > 0, "and say how many were held back");
    }
    assert_eq!(
        sim.view("w").yoyo_since,
        None,
        "spawn failures are not yo-yo"
    );
    // Once the program can be started, it is, at its next retry.
    sim.fail.clear();
    let wait = sim.retry_in("w").unwrap();
    sim.advance(wait);
    let v = sim.view("w");
    assert_eq!((v.state, v.last_error), (TaskState::Running, None));
    assert_eq!(v.restarts, 0, "nothing had run, so nothing was restarted");
}

#[test]
fn stale_inputs_are_ignored() {
    let mut sim = Sim::new(policy(), Some("8000-8009"));
    sim.add("w", true);
    let old_gen = sim.view("w").generation;
    let old_pid = sim.pid("w");
    sim.advance(secs(5));
    sim.kill("w");
    let id = sim.id("w");
    let before = sim.view("w");
    assert_ne!(before.generation, old_gen);
    let stale = [
        Input::Exited {
            pid: old_pid,
            status: SIGKILL,
            remains: false,
        },
        Input::Exited {
            pid: 99_999,
            status: SIGKILL,
            remains: true,
        },
        Input::Spawned {
            task: id,
            generation: old_gen,
            pid: 5555,
            start_ticks: None,
        },
        Input::Spawned {
            task: id,
            generation: before.generation,
            pid: 5556,
            start_ticks: None,
        },
        Input::Spawned {
            task: TaskId(77),
            generation: 1,
            pid: 5557,
            start_ticks: None,
        },
        Input::SpawnFailed {
            task: id,
            generation: old_gen,
            error: "x".into(),
        },
        Input::SpawnFailed {
            task: TaskId(77),
            generation: 1,
            error: "x".into(),
        },
        Input::PortBusy {
            task: id,
            generation: old_gen,
            port: before.port.unwrap(),
        },
        Input::PortBusy {
            task: id,
            generation: before.generation,
            port: before.port.unwrap(),
        },
        Input::GroupStatus {
            group: GroupKey::Instance(before.generation),
            empty: true,
        },
        Input::GroupStatus {
            group: GroupKey::Instance(old_gen),
            empty: false,
        },
        Input::GroupStatus {
            group: GroupKey::Found(0),
            empty: true,
        },
        Input::PortProbed {
            task: id,
            generation: before.generation,
            port: before.port.unwrap(),
            free: false,
        },
    ];
    for input in stale {
        let acts = sim.handle(input.clone());
        assert!(acts.is_empty(), "{input:?} → {acts:?}");
        assert_eq!(sim.view("w"), before, "{input:?} changed the task");
    }
    for pid in [5555, 5556, 5557] {
        assert_eq!(sim.core.task_by_pid(pid), None);
    }
}

#[test]
fn an_answer_for_a_removed_task_does_not_reach_the_task_that_reuses_its_slot() {
    let mut sim = Sim::new(policy(), None);
    sim.fail.insert("a".into());
    sim.add("a", false);
    let a = sim.view("a");
    assert_eq!(a.state, TaskState::Backoff);
    sim.core.remove(sim.now, "a").unwrap();
    sim.drain();
    sim.answer_spawns = false;
    sim.add("b", false);
    let b = sim.view("b");
    assert_eq!(b.id, a.id, "the slot is reused");
    assert_ne!(b.generation, a.generation, "but never a generation");
    let acts = sim.handle(Input::Spawned {
        task: a.id,
        generation: a.generation,
        pid: 777,
        start_ticks: None,
    });
    assert!(acts.is_empty());
    assert_eq!(
        (sim.state("b"), sim.core.task_by_pid(777)),
        (TaskState::Starting, None)
    );
    sim.answer_spawn();
    assert_eq!(sim.state("b"), TaskState::Running);
}
