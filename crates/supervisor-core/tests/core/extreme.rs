//! Settings at and beyond their bounds: the core never panics on instant arithmetic, and its
//! timers stay bounded however long a stop lasts.
use crate::sim::*;
use proptest::prelude::*;
use std::time::Duration;
use supervisor_core::{Policy, TaskState};

fn huge() -> impl Strategy<Value = Duration> {
    prop_oneof![
        Just(Duration::MAX),
        Just(Duration::from_secs(u64::MAX / 2)),
        (0u64..=u64::MAX).prop_map(Duration::from_secs),
        (0u64..2_000).prop_map(Duration::from_millis),
        Just(Duration::ZERO),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn extreme_durations_never_panic(
        min_uptime in huge(), stable_after in huge(), stop_timeout in huge(),
        kill_timeout in huge(), group_poll in huge(), port_retry in huge(), log_every in huge(),
        interval in huge(), coalesce in huge(), base in huge(), cap in huge(),
        steps in prop::collection::vec((0u8..6, 0u64..100_000), 1..40),
    ) {
        let p = Policy {
            min_uptime, stable_after, stop_timeout, kill_timeout, group_poll, port_retry,
            log_every, checkpoint_interval: Some(interval), checkpoint_coalesce: coalesce,
            backoff: supervisor_core::Backoff { base, cap, jitter: 0.25 },
            ..policy()
        };
        let mut sim = Sim::new(p, Some("7000-7001"));
        sim.add("a", true);
        sim.add("b", false);
        for (what, ms_) in steps {
            match what {
                0 => { if sim.core.view(sim.id("a")).and_then(|v| v.pid).is_some() { sim.kill("a"); } }
                1 => { let _ = sim.core.stop(sim.now, "b"); sim.drain(); }
                2 => { let _ = sim.core.restart(sim.now, "a"); sim.drain(); }
                3 => { sim.group_empty = !sim.group_empty; }
                4 => { sim.core.shutdown(sim.now, ms_ % 2 == 0); sim.drain(); }
                _ => { sim.advance(ms(ms_)); }
            }
            prop_assert!(sim.core.timer_count() <= sim.core.task_count() + sim.core.stop_jobs());
        }
    }

}

/// Stops whose leaders exit on TERM while their workers stay: every stop polls its group until
/// it gives up, for `stop` and then `kill` more. Returns the most timers seen at once.
fn never_ending_stops(tasks: usize, stop: Duration, step: Duration) -> Result<usize, String> {
    let p = Policy {
        stop_timeout: stop,
        kill_timeout: stop,
        ..policy()
    };
    let mut sim = Sim::new(p, None);
    let names: Vec<String> = (0..tasks).map(|i| format!("t{i}")).collect();
    for n in &names {
        sim.add(n, false);
    }
    sim.die_on_signal = true;
    sim.group_empty = false;
    for n in &names {
        sim.core.stop(sim.now, n).unwrap();
    }
    sim.drain();
    let end = sim.now + stop * 2 + secs(1);
    let mut most = 0;
    while sim.now < end {
        sim.advance(step);
        most = most.max(sim.core.timer_count());
        if sim.core.timer_count() > sim.core.task_count() + sim.core.stop_jobs() {
            return Err(format!(
                "{} timers at {:?}",
                sim.core.timer_count(),
                sim.at()
            ));
        }
    }
    for n in &names {
        if sim.state(n) != TaskState::Stopped {
            return Err(format!("{n} is {:?}", sim.state(n)));
        }
    }
    if sim.core.timer_count() != 0 {
        return Err("timers left after every stop ended".into());
    }
    Ok(most)
}

/// Ten-minute stops (and ten more of kill timeout), checked every 20 ms for twenty minutes:
/// still one timer per stopping task.
#[test]
fn ten_minute_stops_keep_one_timer_per_group() {
    let most = never_ending_stops(3, secs(600), secs(1)).unwrap();
    assert_eq!(most, 3);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 16, ..ProptestConfig::default() })]

    #[test]
    fn long_stops_keep_one_timer_per_group(
        tasks in 1usize..6,
        stop_secs in 1u64..60,
        step_ms in 7u64..3_000,
    ) {
        let most = never_ending_stops(tasks, secs(stop_secs), ms(step_ms));
        prop_assert!(matches!(most, Ok(n) if n <= tasks), "{most:?}");
    }
}
