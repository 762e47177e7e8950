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

fn ready_check() -> supervisor_core::checks::Check {
    supervisor_core::checks::Check {
        probe: supervisor_core::checks::Probe::Tcp,
        interval: ms(100),
        timeout: secs(1),
        failures: 2,
    }
}

fn checked(
    sim: &mut Sim,
    name: &str,
    kind: supervisor_core::checks::CheckKind,
    ok: bool,
) -> Vec<supervisor_core::Action> {
    let v = sim.view(name);
    sim.handle(supervisor_core::Input::Checked {
        task: v.id,
        generation: v.generation,
        kind,
        ok,
        detail: if ok { String::new() } else { "refused".into() },
    })
}

#[test]
fn a_dependent_starts_only_once_what_it_depends_on_is_ready() {
    use supervisor_core::checks::CheckKind;
    let mut sim = Sim::new(policy(), Some("8000-8009"));
    let mut db = spec("db", true);
    db.ready = Some(ready_check());
    let app = with("app", |s| s.depends_on = vec!["db".into()]);
    let plan = sim.core.apply(sim.now, vec![db, app], true).unwrap();
    assert_eq!(plan.added, ["app", "db"]);
    let acts = sim.drain();
    assert_eq!(spawns(&acts), [(sim.id("db"), Some(8000))], "app waits");
    assert_eq!(sim.view("app").waiting_on, ["db"]);
    assert!(!sim.view("db").ready);
    let acts = checked(&mut sim, "db", CheckKind::Ready, false);
    assert!(spawns(&acts).is_empty());
    let acts = checked(&mut sim, "db", CheckKind::Ready, true);
    assert_eq!(spawns(&acts), [(sim.id("app"), None)]);
    assert!(sim.view("db").ready);
    assert!(sim.view("app").ready, "no ready check: ready once running");
}

#[test]
fn a_failing_health_check_restarts_the_task_after_its_limit() {
    use supervisor_core::checks::CheckKind;
    let mut sim = Sim::new(policy(), Some("8000-8009"));
    sim.die_on_signal = true;
    let mut w = spec("w", true);
    w.health = Some(ready_check());
    sim.core.add_task(sim.now, w).unwrap();
    sim.drain();
    let pid = sim.pid("w");
    let acts = checked(&mut sim, "w", CheckKind::Health, false);
    assert!(signals(&acts).is_empty(), "one failure of two");
    assert_eq!(sim.view("w").health_failures, 1);
    checked(&mut sim, "w", CheckKind::Health, true);
    assert_eq!(sim.view("w").health_failures, 0, "an ok resets the count");
    checked(&mut sim, "w", CheckKind::Health, false);
    let acts = checked(&mut sim, "w", CheckKind::Health, false);
    assert_eq!(signals(&acts)[0], (pid, Sig::Term));
    assert!(
        events(&acts)
            .iter()
            .any(|e| matches!(e, Event::CheckFailed { restart: true, .. }))
    );
    assert_eq!(spawns(&acts).len(), 1, "started again");
    assert_ne!(sim.pid("w"), pid);
}

#[test]
fn start_first_keeps_the_old_instance_until_the_new_one_is_ready() {
    use supervisor_core::checks::CheckKind;
    let mut sim = Sim::new(policy(), Some("8000-8009"));
    sim.die_on_signal = true;
    let mut w = spec("w", true);
    w.replace = supervisor_core::controls::ReplaceMode::StartFirst;
    w.ready = Some(ready_check());
    sim.core.add_task(sim.now, w.clone()).unwrap();
    sim.drain();
    checked(&mut sim, "w", CheckKind::Ready, true);
    let (old_pid, old_port) = (sim.pid("w"), sim.port("w"));
    let mut w2 = w.clone();
    w2.env.insert("V".into(), "2".into());
    let plan = sim.core.apply(sim.now, vec![w2], true).unwrap();
    assert_eq!(plan.replaced, ["w"]);
    let acts = sim.drain();
    assert!(signals(&acts).is_empty(), "the old one keeps running");
    let new_port = spawns(&acts)[0].1;
    assert_ne!(new_port, old_port, "the new one gets its own port");
    assert_ne!(sim.pid("w"), old_pid);
    // Not ready yet: still no stop of the old one.
    let acts = checked(&mut sim, "w", CheckKind::Ready, false);
    assert!(signals(&acts).is_empty());
    let acts = checked(&mut sim, "w", CheckKind::Ready, true);
    assert_eq!(
        signals(&acts),
        [(old_pid, Sig::Term)],
        "ready: now the old one goes"
    );
    assert_eq!(sim.state("w"), TaskState::Running);
    assert_eq!(
        sim.view("w").spec.env.get("V").map(String::as_str),
        Some("2")
    );
}

#[test]
fn a_sticky_task_keeps_its_port_across_restarts() {
    let mut sim = Sim::new(policy(), Some("8000-8009"));
    let mut s = spec("s", true);
    s.port = supervisor_core::controls::PortMode::Sticky;
    sim.core.add_task(sim.now, s).unwrap();
    sim.add("r", true);
    sim.drain();
    let (sp, rp) = (sim.port("s"), sim.port("r"));
    sim.advance(secs(5));
    sim.kill("s");
    sim.kill("r");
    assert_eq!(sim.port("s"), sp, "sticky");
    assert_ne!(sim.port("r"), rp, "rotate");
}
