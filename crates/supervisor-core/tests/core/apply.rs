//! Apply (converge on a desired set) and the per-task controls: restart policy, stop signal
//! and timeout, autostart, and identity.
use crate::sim::*;
use supervisor_core::{Event, ExitStatus, RestartPolicy, Sig, TaskSpec, TaskState};

fn with(name: &str, f: impl FnOnce(&mut TaskSpec)) -> TaskSpec {
    let mut s = spec(name, false);
    f(&mut s);
    s
}

#[test]
fn apply_converges_and_applying_again_changes_nothing() {
    let mut sim = Sim::new(policy(), None);
    sim.die_on_signal = true;
    let plan = sim
        .core
        .apply(sim.now, vec![spec("a", false), spec("b", false)], true)
        .unwrap();
    sim.drain();
    assert_eq!(plan.added, ["a", "b"]);
    assert!(plan.removed.is_empty() && plan.replaced.is_empty());
    let (a, b) = (sim.pid("a"), sim.pid("b"));
    let rev = plan.revision;
    assert!(rev > 0);

    let again = sim
        .core
        .apply(sim.now, vec![spec("a", false), spec("b", false)], true)
        .unwrap();
    let acts = sim.drain();
    assert!(again.is_noop(), "{again:?}");
    assert_eq!(again.unchanged, ["a", "b"]);
    assert!(spawns(&acts).is_empty() && signals(&acts).is_empty());
    assert_eq!((sim.pid("a"), sim.pid("b")), (a, b), "nothing restarted");

    // One changed field replaces only that task; a missing one is removed; a new one added.
    let changed = with("b", |s| s.command.push("--verbose".into()));
    let dry = sim
        .core
        .plan(&[spec("a", false), changed.clone(), spec("c", false)], true)
        .unwrap();
    assert_eq!(dry.replaced, ["b"]);
    assert_eq!(dry.added, ["c"]);
    assert!(sim.drain().is_empty(), "a dry run does nothing");
    let plan = sim
        .core
        .apply(sim.now, vec![changed.clone(), spec("c", false)], true)
        .unwrap();
    let acts = sim.drain();
    assert_eq!(
        (plan.added, plan.removed, plan.replaced),
        (
            vec!["c".to_string()],
            vec!["a".to_string()],
            vec!["b".to_string()]
        )
    );
    assert!(plan.revision > rev);
    assert!(sim.core.task_id("a").is_none(), "a removed");
    assert_ne!(sim.pid("b"), b, "b replaced");
    assert_eq!(sim.view("b").spec.command, changed.command);
    assert!(signals(&acts).iter().any(|(p, _)| *p == b));
    assert_eq!(sim.state("c"), TaskState::Running);
}

#[test]
fn stop_first_replacement_starts_the_new_spec_only_once_the_old_instance_is_gone() {
    let mut sim = Sim::new(policy(), None);
    sim.add("w", false);
    let old = sim.pid("w");
    let uid = sim.view("w").uid.clone();
    let new = with("w", |s| {
        s.env.insert("V".into(), "2".into()).map_or((), |_| ())
    });
    sim.core.apply(sim.now, vec![new.clone()], false).unwrap();
    let acts = sim.drain();
    assert_eq!(signals(&acts), [(old, Sig::Term)]);
    assert!(spawns(&acts).is_empty(), "the old one is still stopping");
    assert_eq!(sim.state("w"), TaskState::Stopping);
    // Applying the same spec again while the replacement is under way is no change.
    let again = sim.core.apply(sim.now, vec![new.clone()], false).unwrap();
    assert!(again.is_noop(), "{again:?}");
    let acts = sim.exit_with(
        "w",
        ExitStatus::Signal {
            signal: 15,
            core_dumped: false,
        },
        false,
    );
    assert_eq!(spawns(&acts).len(), 1);
    let v = sim.view("w");
    assert_eq!(v.state, TaskState::Running);
    assert_eq!(v.spec.env.get("V").map(String::as_str), Some("2"));
    assert_eq!(v.uid, uid, "a replacement keeps the task's identity");
}

#[test]
fn a_name_being_removed_can_be_added_again_at_once() {
    let mut sim = Sim::new(policy(), None);
    sim.add("w", false);
    let old = sim.pid("w");
    sim.core.remove(sim.now, "w").unwrap();
    sim.drain();
    assert_eq!(sim.state("w"), TaskState::Stopping);
    let plan = sim
        .core
        .apply(
            sim.now,
            vec![with("w", |s| s.cwd = Some("/tmp".into()))],
            true,
        )
        .unwrap();
    assert_eq!(plan.added, ["w"]);
    sim.drain();
    let acts = sim.exit_with(
        "w",
        ExitStatus::Signal {
            signal: 15,
            core_dumped: false,
        },
        false,
    );
    assert!(
        !events(&acts)
            .iter()
            .any(|e| matches!(e, Event::Removed { .. }))
    );
    assert_eq!(
        spawns(&acts).len(),
        1,
        "starts once the old instance is gone"
    );
    assert_ne!(sim.pid("w"), old);
    assert_eq!(sim.view("w").spec.cwd.as_deref(), Some("/tmp"));
}

#[test]
fn restart_policies_decide_what_follows_a_death() {
    let mut sim = Sim::new(policy(), None);
    for (name, policy) in [
        ("never", RestartPolicy::Never),
        ("onfail", RestartPolicy::OnFailure),
        ("always", RestartPolicy::Always),
    ] {
        sim.core
            .add_task(sim.now, with(name, |s| s.restart = policy))
            .unwrap();
    }
    sim.drain();
    sim.advance(secs(5));
    let ok = ExitStatus::Code { code: 0 };
    let acts = sim.exit("never", ok, false);
    assert!(spawns(&acts).is_empty());
    assert_eq!(sim.state("never"), TaskState::Stopped);
    assert!(events(&acts).iter().any(|e| matches!(
        e,
        Event::NotRestarted {
            policy: RestartPolicy::Never,
            ..
        }
    )));
    let acts = sim.exit("onfail", ok, false);
    assert!(
        spawns(&acts).is_empty(),
        "on-failure: exit 0 is not a failure"
    );
    assert_eq!(sim.state("onfail"), TaskState::Stopped);
    sim.core.start(sim.now, "onfail").unwrap();
    sim.drain();
    sim.advance(secs(5));
    let acts = sim.exit("onfail", ExitStatus::Code { code: 3 }, false);
    assert_eq!(spawns(&acts).len(), 1, "on-failure: exit 3 is restarted");
    let acts = sim.exit("always", ok, false);
    assert_eq!(spawns(&acts).len(), 1);
}

#[test]
fn a_task_is_stopped_with_its_own_signal_and_timeout() {
    let mut sim = Sim::new(policy(), None);
    sim.core
        .add_task(
            sim.now,
            with("pg", |s| {
                s.stop_signal = Some(2);
                s.stop_timeout = Some(secs(30));
            }),
        )
        .unwrap();
    sim.drain();
    let pid = sim.pid("pg");
    sim.core.stop(sim.now, "pg").unwrap();
    let acts = sim.drain();
    assert_eq!(signals(&acts), [(pid, Sig::Other(2))]);
    // The default stop timeout (10 s) passes: no KILL yet.
    let acts = sim.advance(secs(20));
    assert!(signals(&acts).is_empty(), "{:?}", signals(&acts));
    let acts = sim.advance(secs(11));
    assert_eq!(signals(&acts), [(pid, Sig::Kill)]);
}

#[test]
fn autostart_false_adds_a_stopped_task_that_starts_on_request() {
    let mut sim = Sim::new(policy(), None);
    let plan = sim
        .core
        .apply(sim.now, vec![with("manual", |s| s.autostart = false)], true)
        .unwrap();
    assert_eq!(plan.added, ["manual"]);
    let acts = sim.drain();
    assert!(spawns(&acts).is_empty());
    assert_eq!(sim.state("manual"), TaskState::Stopped);
    sim.core.start(sim.now, "manual").unwrap();
    assert_eq!(spawns(&sim.drain()).len(), 1);
}

#[test]
fn identities_outlive_the_core_through_what_it_hands_the_dump() {
    let mut sim = Sim::new(policy(), None);
    sim.add("w", false);
    sim.kill("w");
    let uid = sim.view("w").uid.clone();
    let generation = sim.view("w").generation;
    let ids = sim.core.identities();
    let (rev, next) = (sim.core.revision(), sim.core.next_generation());
    assert_eq!(ids.get("w"), Some(&uid));

    let mut later = Sim::with_seed(policy(), None, 99);
    later.core.adopt_identities(ids, rev, next);
    later.add("w", false);
    later.add("fresh", false);
    let v = later.view("w");
    assert_eq!(v.uid, uid, "same name, same uid");
    assert!(v.generation > generation, "generations only grow");
    assert_ne!(later.view("fresh").uid, uid);
    assert!(later.core.revision() > rev);
}
