//! The host-wide spawn rate cap, and when checkpoints are asked for and what they hold.
use crate::sim::*;
use std::collections::BTreeSet;
use std::time::Duration;
use supervisor_core::{Action, Policy, TaskState};

fn spawn_times(sim: &Sim) -> Vec<Duration> {
    sim.log
        .iter()
        .filter(|(_, a)| matches!(a, Action::Spawn { .. }))
        .map(|(at, _)| *at)
        .collect()
}

fn assert_near(got: &[Duration], want: &[Duration]) {
    assert_eq!(got.len(), want.len(), "{got:?} vs {want:?}");
    for (g, w) in got.iter().zip(want) {
        let diff = if g > w { *g - *w } else { *w - *g };
        assert!(diff < Duration::from_micros(10), "{got:?} vs {want:?}");
    }
}

#[test]
fn the_spawn_rate_cap_lets_a_burst_through_then_one_per_interval() {
    let p = Policy {
        spawn_rate: 10.0,
        spawn_burst: 2.0,
        ..policy()
    };
    let mut sim = Sim::new(p, None);
    let names: Vec<String> = (0..10).map(|i| format!("t{i}")).collect();
    for n in &names {
        sim.add(n, false);
    }
    assert_eq!(spawn_times(&sim).len(), 2, "the burst");
    assert_eq!(
        sim.core
            .views()
            .iter()
            .filter(|v| v.state == TaskState::Starting)
            .count(),
        8,
        "the rest wait their turn"
    );
    assert_eq!(sim.core.poll_timeout(), Some(sim.t0 + ms(100)));
    sim.advance(secs(2));
    let want: Vec<Duration> = [0, 0, 100, 200, 300, 400, 500, 600, 700, 800]
        .into_iter()
        .map(ms)
        .collect();
    assert_near(&spawn_times(&sim), &want);
    assert!(
        sim.core
            .views()
            .iter()
            .all(|v| v.state == TaskState::Running)
    );
    // A mass death long after: the bucket is full again (2), the rest follow at 10/s, in order.
    sim.advance_to(secs(60));
    sim.log.clear();
    for n in &names {
        sim.kill(n);
    }
    sim.advance(secs(2));
    let want: Vec<Duration> = [0, 0, 100, 200, 300, 400, 500, 600, 700, 800]
        .into_iter()
        .map(|m| secs(60) + ms(m))
        .collect();
    assert_near(&spawn_times(&sim), &want);
    let order: Vec<String> = sim
        .log
        .iter()
        .filter_map(|(_, a)| match a {
            Action::Spawn { spec, .. } => Some(spec.name.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(order, names, "first come, first served");
}

#[test]
fn an_awkward_rate_never_spins_the_timer() {
    // 3/s: 1/3 s is not a whole number of nanoseconds; each wake-up must still spawn.
    let p = Policy {
        spawn_rate: 3.0,
        spawn_burst: 1.0,
        ..policy()
    };
    let mut sim = Sim::new(p, None);
    for i in 0..30 {
        sim.add(&format!("t{i}"), false);
    }
    let mut wakeups = 0;
    while let Some(t) = sim.core.poll_timeout() {
        assert!(
            t > sim.now || wakeups == 0,
            "a wake-up in the past at {:?}",
            sim.at()
        );
        sim.now = sim.now.max(t);
        sim.core.handle_timeout(sim.now);
        sim.drain();
        wakeups += 1;
        assert!(wakeups < 200, "spinning");
    }
    assert_eq!(spawn_times(&sim).len(), 30);
    assert!(wakeups <= 31, "one wake-up per spawn: {wakeups}");
    let last = *spawn_times(&sim).last().unwrap();
    assert!(last >= ms(9_666) && last <= ms(9_667), "{last:?}");
}

fn checkpointing() -> Policy {
    Policy {
        checkpoint_interval: Some(secs(5)),
        checkpoint_coalesce: ms(100),
        ..policy()
    }
}

#[test]
fn checkpoints_come_soon_after_a_change_and_periodically() {
    let mut sim = Sim::new(checkpointing(), None);
    assert_eq!(
        sim.core.poll_timeout(),
        Some(sim.t0),
        "a first one at start"
    );
    sim.advance(secs(12));
    assert_eq!(sim.checkpoints, [secs(0), secs(5), secs(10)]);
    sim.add("w", false);
    sim.advance_to(secs(20));
    assert_eq!(
        sim.checkpoints[3..],
        [secs(12) + ms(100), secs(17) + ms(100)],
        "coalesced change, then periodic"
    );
    sim.kill("w");
    sim.advance(ms(100) - Duration::from_nanos(1));
    assert_eq!(sim.checkpoints.len(), 5, "not yet");
    sim.advance(Duration::from_nanos(1));
    assert_eq!(
        sim.checkpoints.last(),
        Some(&(secs(20) + ms(100))),
        "death and restart in one checkpoint"
    );
    // Many changes within the coalescing window give one checkpoint.
    sim.advance_to(secs(30));
    let n = sim.checkpoints.len();
    for i in 0..5 {
        sim.add(&format!("x{i}"), false);
        sim.advance(ms(10));
    }
    sim.advance(ms(60));
    assert_eq!(sim.checkpoints.len(), n + 1);
}

#[test]
fn no_checkpoint_is_asked_while_one_is_in_flight() {
    let mut sim = Sim::new(checkpointing(), None);
    sim.auto_checkpoint = false;
    sim.advance(ms(1));
    assert_eq!(sim.checkpoints, [secs(0)]);
    sim.advance(secs(1));
    sim.add("w", false);
    sim.advance(secs(30));
    assert_eq!(
        sim.checkpoints,
        [secs(0)],
        "still in flight: nothing more, however due"
    );
    assert_eq!(sim.core.poll_timeout(), None, "and no wake-up for it");
    let written = sim.at();
    sim.core.checkpoint_written(sim.now);
    sim.advance(ms(1));
    assert_eq!(
        sim.checkpoints,
        [secs(0), written],
        "the change still owed is asked for at once"
    );
    let written = sim.at();
    sim.core.checkpoint_written(sim.now);
    sim.advance(secs(5));
    assert_eq!(
        sim.checkpoints.last(),
        Some(&(written + secs(5))),
        "then periodic again"
    );
}

#[test]
fn without_a_dump_file_no_checkpoint_is_asked() {
    let mut sim = Sim::new(policy(), None);
    sim.add("w", false);
    sim.advance(secs(60));
    sim.kill("w");
    sim.advance(secs(60));
    assert!(sim.checkpoints.is_empty());
    assert_eq!(sim.core.poll_timeout(), None);
}

#[test]
fn checkpoint_records_list_exactly_the_live_processes() {
    let mut sim = Sim::new(policy(), Some("8000-8009"));
    sim.fail.insert("waiting".into());
    sim.add("up", true);
    sim.add("down", false);
    sim.die_on_signal = true;
    sim.core.stop(sim.now, "down").unwrap();
    sim.drain();
    sim.die_on_signal = false;
    assert_eq!(sim.state("down"), TaskState::Stopped);
    sim.add("waiting", false);
    sim.add("stopping", false);
    sim.core.stop(sim.now, "stopping").unwrap();
    sim.drain();
    assert_eq!(sim.state("stopping"), TaskState::Stopping);
    let records = sim.core.checkpoint_records();
    let pids: BTreeSet<u32> = records.iter().map(|r| r.pid).collect();
    assert_eq!(pids, BTreeSet::from([sim.pid("up"), sim.pid("stopping")]));
    assert_eq!(
        pids,
        sim.procs.keys().copied().collect(),
        "exactly the processes alive"
    );
    let up = records.iter().find(|r| r.name == "up").unwrap();
    let v = sim.view("up");
    assert_eq!(up.index, v.id.0);
    assert_eq!(up.argv, ["./bin/up", "--port=8000"]);
    assert_eq!(
        (
            up.port,
            up.generation,
            up.pgid,
            up.start_time,
            up.boot_id.clone()
        ),
        (
            Some(8000),
            v.generation,
            up.pid,
            Some(u64::from(up.pid) * 7),
            None
        )
    );
    // Once a leader is reaped it is not listed, and a restarted task is listed with its new pid.
    sim.group_empty = false;
    sim.exit("stopping", SIGKILL, false);
    sim.kill("up");
    let pids: BTreeSet<u32> = sim
        .core
        .checkpoint_records()
        .iter()
        .map(|r| r.pid)
        .collect();
    assert_eq!(pids, BTreeSet::from([sim.pid("up")]));
}
