use super::*;
use crate::view::Placed;
use cluster::TaskStatus;
use serde_json::json;

const CFG: Config = Config {
    delay: Duration::from_millis(200),
    budget: 2,
    window: Duration::from_secs(60),
    recover_after: Duration::from_secs(1),
};

fn job(name: &str, count: u32) -> Job {
    Job {
        v: VERSION,
        name: name.into(),
        task: json!({"command": ["true"]}),
        count,
        cpu: 100,
        mem: 10,
        avoid: vec![],
        generation: 1,
    }
}

/// Nodes n1..=n`nodes`, job `web` of `count`, instance i on node n`i`.
fn view(nodes: usize, count: u32) -> View {
    let mut v = View {
        synced: true,
        revision: 10,
        ..View::default()
    };
    for i in 1..=nodes {
        let n = format!("n{i}");
        v.nodes.insert(n.clone(), crate::view::test_node(&n));
    }
    let j = job("web", count);
    for i in 1..=count {
        put(
            &mut v,
            &j,
            &format!("n{i}"),
            i,
            "running",
            false,
            i64::from(i),
        );
    }
    v.jobs.insert("web".into(), (j, 1));
    v
}

fn put(v: &mut View, j: &Job, node: &str, i: u32, state: &str, yoyo: bool, alloc: i64) {
    let inst = instance_name(&j.name, i);
    v.assigns.retain(|(_, x), _| *x != inst);
    v.statuses.retain(|(_, x), _| *x != inst);
    v.assigns.insert(
        (node.into(), inst.clone()),
        Placed {
            node: node.into(),
            assignment: crate::reconcile::assignment(j, &inst),
            create_revision: alloc,
        },
    );
    status(v, node, &inst, state, yoyo);
}

fn status(v: &mut View, node: &str, inst: &str, state: &str, yoyo: bool) {
    // From JSON, as a node writes it: fields added later keep their defaults.
    let st: TaskStatus =
        serde_json::from_value(json!({"v": VERSION, "name": inst, "state": state, "yoyo": yoyo}))
            .unwrap();
    v.statuses.insert((node.into(), inst.into()), st);
}

/// Applies decisions to the view as the store would, so a scenario can run round after round.
fn apply(v: &mut View, ds: &[Decision]) {
    for d in ds {
        v.revision += 1;
        match d {
            Decision::Move {
                from,
                to,
                to_node,
                record,
                ..
            } => {
                v.assigns.remove(&(from.clone(), to.instance.clone()));
                v.statuses.remove(&(from.clone(), to.instance.clone()));
                v.assigns.insert(
                    (to_node.clone(), to.instance.clone()),
                    Placed {
                        node: to_node.clone(),
                        assignment: to.clone(),
                        create_revision: v.revision,
                    },
                );
                v.resched
                    .insert(record.job.clone(), (record.clone(), v.revision));
            }
            Decision::Fail { record, .. }
            | Decision::Recover { record, .. }
            | Decision::Prune { record, .. } => {
                v.resched
                    .insert(record.job.clone(), (record.clone(), v.revision));
            }
            Decision::Forget { job, .. } => {
                v.resched.remove(job);
            }
        }
    }
}

fn node_of(v: &View, inst: &str) -> String {
    v.assigns
        .keys()
        .find(|(_, i)| i == inst)
        .map(|(n, _)| n.clone())
        .unwrap()
}

#[test]
fn a_yoyo_instance_moves_after_the_delay_to_a_node_it_has_not_yoyoed_on() {
    let mut v = view(3, 1);
    let mut c = Clocks::default();
    status(&mut v, "n1", "web-1", "yoyo", true);
    assert!(plan(&v, 1000, &CFG, &mut c).is_empty(), "seen, not yet due");
    assert!(plan(&v, 1199, &CFG, &mut c).is_empty(), "199 ms < 200 ms");
    let ds = plan(&v, 1200, &CFG, &mut c);
    let [
        Decision::Move {
            from,
            to_node,
            record,
            rev: 0,
            alloc: 1,
            ..
        },
    ] = ds.as_slice()
    else {
        panic!("{ds:?}")
    };
    assert_eq!(from, "n1");
    assert_ne!(to_node, "n1");
    assert_eq!(record.moves.len(), 1);
    apply(&mut v, &ds);
    // Yo-yo again on its new node: the delay doubled, and it never goes back to n1.
    let second = node_of(&v, "web-1");
    status(&mut v, &second, "web-1", "yoyo", true);
    assert!(plan(&v, 2000, &CFG, &mut c).is_empty());
    assert!(plan(&v, 2399, &CFG, &mut c).is_empty(), "400 ms now");
    let ds = plan(&v, 2400, &CFG, &mut c);
    apply(&mut v, &ds);
    let third = node_of(&v, "web-1");
    assert!(![from.as_str(), second.as_str()].contains(&third.as_str()));
    assert_eq!(v.resched["web"].0.moves.len(), 2);
    assert_eq!(
        avoid(&v, &v.jobs["web"].0, "web-1"),
        vec![from.clone(), second]
    );
}

#[test]
fn a_spent_budget_fails_the_job_and_it_recovers_once_healthy_for_a_while() {
    let mut v = view(4, 1);
    let mut c = Clocks::default();
    let mut t = 0;
    for _ in 0..2 {
        let n = node_of(&v, "web-1");
        status(&mut v, &n, "web-1", "yoyo", true);
        plan(&v, t, &CFG, &mut c);
        t += 1000;
        let ds = plan(&v, t, &CFG, &mut c);
        assert!(matches!(ds.as_slice(), [Decision::Move { .. }]), "{ds:?}");
        apply(&mut v, &ds);
    }
    let n = node_of(&v, "web-1");
    status(&mut v, &n, "web-1", "yoyo", true);
    plan(&v, t, &CFG, &mut c);
    t += 800;
    let ds = plan(&v, t, &CFG, &mut c);
    let [Decision::Fail { record, .. }] = ds.as_slice() else {
        panic!("{ds:?}")
    };
    let reason = &record.failed.as_ref().unwrap().reason;
    assert!(
        reason.contains("budget") && reason.contains("2/60s"),
        "{reason}"
    );
    apply(&mut v, &ds);
    assert_eq!(node_of(&v, "web-1"), n, "a failed job's instance stays");
    // Failed: no more moves, however long it yo-yos.
    assert!(
        plan(&v, t + 5_000, &CFG, &mut c).is_empty(),
        "failed: no more moves"
    );
    // Healthy: recovers after --recover-after, not before; a relapse restarts the clock.
    status(&mut v, &n, "web-1", "running", false);
    let t = t + 1000;
    assert!(plan(&v, t, &CFG, &mut c).is_empty());
    status(&mut v, &n, "web-1", "yoyo", true);
    assert!(plan(&v, t + 500, &CFG, &mut c).is_empty());
    status(&mut v, &n, "web-1", "running", false);
    assert!(plan(&v, t + 600, &CFG, &mut c).is_empty());
    assert!(plan(&v, t + 1599, &CFG, &mut c).is_empty());
    let ds = plan(&v, t + 1600, &CFG, &mut c);
    let [Decision::Recover { record, why, .. }] = ds.as_slice() else {
        panic!("{ds:?}")
    };
    assert!(record.failed.is_none() && why.contains("1s"), "{why}");
}

#[test]
fn no_node_left_fails_and_a_changed_task_clears_the_failure() {
    let mut v = view(2, 1);
    let mut c = Clocks::default();
    status(&mut v, "n1", "web-1", "yoyo", true);
    plan(&v, 0, &CFG, &mut c);
    let ds = plan(&v, 200, &CFG, &mut c);
    apply(&mut v, &ds);
    assert_eq!(node_of(&v, "web-1"), "n2");
    status(&mut v, "n2", "web-1", "yoyo", true);
    plan(&v, 300, &CFG, &mut c);
    let ds = plan(&v, 700, &CFG, &mut c);
    let [Decision::Fail { record, .. }] = ds.as_slice() else {
        panic!("{ds:?}")
    };
    let reason = &record.failed.as_ref().unwrap().reason;
    assert!(
        reason.contains("no other node") && reason.contains("n1, n2"),
        "{reason}"
    );
    apply(&mut v, &ds);
    v.jobs.get_mut("web").unwrap().0.generation = 2;
    let ds = plan(&v, 800, &CFG, &mut c);
    assert!(
        matches!(ds.as_slice(), [Decision::Recover { why, .. }] if why.contains("task changed")),
        "{ds:?}"
    );
}

#[test]
fn old_moves_are_pruned_and_a_deleted_jobs_record_is_forgotten() {
    let mut v = view(3, 1);
    let mut c = Clocks::default();
    status(&mut v, "n1", "web-1", "yoyo", true);
    plan(&v, 0, &CFG, &mut c);
    let ds = plan(&v, 200, &CFG, &mut c);
    apply(&mut v, &ds);
    assert_eq!(avoid(&v, &v.jobs["web"].0, "web-1"), ["n1"]);
    assert_eq!(avoid(&v, &v.jobs["web"].0, "web-2"), Vec::<String>::new());
    let ds = plan(&v, 200 + 60_000, &CFG, &mut c);
    assert!(
        matches!(ds.as_slice(), [Decision::Prune { record, .. }] if record.moves.is_empty()),
        "{ds:?}"
    );
    apply(&mut v, &ds);
    assert!(avoid(&v, &v.jobs["web"].0, "web-1").is_empty());
    v.jobs.clear();
    let ds = plan(&v, 70_000, &CFG, &mut c);
    assert!(
        matches!(ds.as_slice(), [Decision::Forget { job, .. }] if job == "web"),
        "{ds:?}"
    );
}

#[test]
fn statuses_of_lost_nodes_and_running_instances_move_nothing() {
    let mut v = view(3, 2);
    let mut c = Clocks::default();
    status(&mut v, "n2", "web-2", "running", false);
    assert!(plan(&v, 0, &CFG, &mut c).is_empty());
    assert!(plan(&v, 10_000, &CFG, &mut c).is_empty());
    status(&mut v, "n1", "web-1", "yoyo", true);
    v.nodes.remove("n1");
    plan(&v, 10_000, &CFG, &mut c);
    assert!(plan(&v, 20_000, &CFG, &mut c).is_empty(), "n1 is lost");
}

#[test]
fn the_move_is_one_transaction_fenced_on_what_was_seen() {
    let keys = Keys::new("/p/");
    let mut v = view(2, 1);
    let mut c = Clocks::default();
    status(&mut v, "n1", "web-1", "yoyo", true);
    plan(&v, 0, &CFG, &mut c);
    let ds = plan(&v, 200, &CFG, &mut c);
    let (when, then) = txn(&keys, &ds[0]);
    assert_eq!((when.len(), then.len()), (4, 3));
    assert!(delay_after(&CFG, 100) >= delay_after(&CFG, 31));
    assert_eq!(delay_after(&CFG, 3), Duration::from_millis(1600));
    // The placement a pending instance gets avoids the nodes it yo-yoed on.
    apply(&mut v, &ds);
    v.assigns.clear();
    let (ops, _) = crate::reconcile::reconcile(&v);
    assert!(
        matches!(ops.as_slice(), [crate::reconcile::Op::Assign { node, .. }] if node == "n2"),
        "{ops:?}"
    );
}

#[test]
fn an_instance_its_node_refuses_moves_like_a_yoyo_one() {
    let mut v = view(2, 1);
    let mut c = Clocks::default();
    status(&mut v, "n1", "web-1", "refused", false);
    assert!(plan(&v, 1000, &CFG, &mut c).is_empty(), "seen, not yet due");
    let ds = plan(&v, 1200, &CFG, &mut c);
    assert!(
        matches!(ds.as_slice(), [Decision::Move { from, to_node, .. }] if from == "n1" && to_node == "n2"),
        "{ds:?}"
    );
}
