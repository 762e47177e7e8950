//! Placement: worked cases, then properties over generated clusters.
use placement::{
    Input, Instance, Node, Placement, Reason, Resource, Resources, could_ever_fit, place,
};
use proptest::prelude::*;
use std::collections::HashMap;

fn node(name: &str, cpu: u64, mem: u64) -> Node {
    Node {
        name: name.into(),
        capacity: Resources::new(cpu, mem),
        allocated: Resources::default(),
        cordoned: false,
        alive: true,
    }
}

fn inst(job: &str, i: u32, cpu: u64, mem: u64) -> Instance {
    Instance {
        job: job.into(),
        instance: format!("{job}-{i}"),
        demand: Resources::new(cpu, mem),
        avoid: vec![],
    }
}

fn nodes_of(plan: &placement::Plan) -> Vec<(&str, &str)> {
    plan.placed
        .iter()
        .map(|p| (p.instance.as_str(), p.node.as_str()))
        .collect()
}

#[test]
fn count_three_spreads_over_three_nodes() {
    let input = Input {
        nodes: vec![
            node("a", 4000, 4096),
            node("b", 4000, 4096),
            node("c", 4000, 4096),
        ],
        pending: (1..=3).map(|i| inst("web", i, 500, 256)).collect(),
        existing: vec![],
    };
    let plan = place(&input);
    assert!(plan.unplaced.is_empty());
    assert_eq!(
        nodes_of(&plan),
        vec![("web-1", "a"), ("web-2", "b"), ("web-3", "c")]
    );
}

#[test]
fn best_fit_prefers_the_tighter_node() {
    // One instance per job, so spreading does not decide: the small node is the tighter fit.
    let input = Input {
        nodes: vec![node("big", 8000, 8192), node("small", 1000, 1024)],
        pending: vec![inst("db", 1, 900, 900)],
        existing: vec![],
    };
    assert_eq!(nodes_of(&place(&input)), vec![("db-1", "small")]);
}

#[test]
fn cordoned_lost_and_avoided_nodes_take_nothing() {
    let mut a = node("a", 4000, 4096);
    a.cordoned = true;
    let mut b = node("b", 4000, 4096);
    b.alive = false;
    let c = node("c", 4000, 4096);
    let mut i = inst("web", 1, 100, 100);
    i.avoid = vec!["c".into()];
    let plan = place(&Input {
        nodes: vec![a, b, c],
        pending: vec![i],
        existing: vec![],
    });
    assert!(plan.placed.is_empty());
    assert_eq!(
        plan.unplaced[0].reason,
        Reason::NoEligibleNode {
            job: "web".into(),
            cordoned: 1,
            avoided: 1
        }
    );
}

#[test]
fn a_short_resource_is_named() {
    let plan = place(&Input {
        nodes: vec![node("a", 1000, 4096), node("b", 2000, 512)],
        pending: vec![inst("big", 1, 1500, 1024)],
        existing: vec![],
    });
    let r = &plan.unplaced[0].reason;
    assert_eq!(
        *r,
        Reason::NotTogether {
            job: "big".into(),
            need: Resources::new(1500, 1024)
        }
    );
    let plan = place(&Input {
        nodes: vec![node("a", 1000, 4096)],
        pending: vec![inst("big", 1, 1500, 10)],
        existing: vec![],
    });
    let r = &plan.unplaced[0].reason;
    assert_eq!(
        *r,
        Reason::Short {
            job: "big".into(),
            resource: Resource::Cpu,
            need: 1500,
            best_free: 1000
        }
    );
    assert!(r.to_string().contains("job big"), "{r}");
    assert!(r.to_string().contains("cpu"), "{r}");
}

#[test]
fn existing_placements_use_capacity() {
    let existing = vec![Placement {
        job: "old".into(),
        instance: "old-1".into(),
        node: "a".into(),
        demand: Resources::new(900, 100),
    }];
    let plan = place(&Input {
        nodes: vec![node("a", 1000, 1000), node("b", 1000, 1000)],
        pending: vec![inst("new", 1, 200, 100)],
        existing,
    });
    assert_eq!(nodes_of(&plan), vec![("new-1", "b")]);
}

#[test]
fn could_ever_fit_names_the_resource() {
    let nodes = [node("a", 2000, 1024), node("b", 1000, 4096)];
    assert!(could_ever_fit("ok", Resources::new(1500, 1000), &nodes).is_ok());
    let e = could_ever_fit("huge", Resources::new(100, 8192), &nodes).unwrap_err();
    assert_eq!(
        e,
        Reason::TooBig {
            job: "huge".into(),
            resource: Resource::Mem,
            need: 8192,
            largest: 4096
        }
    );
    assert!(e.to_string().contains("mem"), "{e}");
    // No live node yet: one may register that fits.
    assert!(could_ever_fit("x", Resources::new(1, 1), &[]).is_ok());
}

fn arb_input() -> impl Strategy<Value = Input> {
    let nodes = prop::collection::vec(
        (
            0u64..4000,
            0u64..4096,
            0u64..500,
            any::<bool>(),
            prop::bool::weighted(0.85),
        ),
        0..12,
    )
    .prop_map(|v| {
        v.into_iter()
            .enumerate()
            .map(|(i, (cpu, mem, alloc, cordoned, alive))| Node {
                name: format!("n{i:02}"),
                capacity: Resources::new(cpu, mem),
                allocated: Resources::new(alloc.min(cpu), alloc.min(mem)),
                cordoned,
                alive,
            })
            .collect::<Vec<_>>()
    });
    let jobs = prop::collection::vec((1u32..5, 0u64..1500, 0u64..1500, 0usize..3), 0..20);
    (nodes, jobs).prop_map(|(nodes, jobs)| {
        let mut pending = Vec::new();
        for (j, (count, cpu, mem, navoid)) in jobs.into_iter().enumerate() {
            for i in 1..=count {
                let mut x = inst(&format!("j{j}"), i, cpu, mem);
                x.avoid = (0..navoid)
                    .map(|k| format!("n{:02}", (j + k) % 12))
                    .collect();
                pending.push(x);
            }
        }
        Input {
            nodes,
            pending,
            existing: vec![],
        }
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn never_overcommits_and_respects_eligibility(input in arb_input()) {
        let plan = place(&input);
        prop_assert_eq!(plan.placed.len() + plan.unplaced.len(), input.pending.len());
        let by_name: HashMap<&str, &Node> =
            input.nodes.iter().map(|n| (n.name.as_str(), n)).collect();
        let mut used: HashMap<&str, Resources> =
            input.nodes.iter().map(|n| (n.name.as_str(), n.allocated)).collect();
        for p in &plan.placed {
            let n = by_name[p.node.as_str()];
            prop_assert!(n.alive, "placed on lost node {}", n.name);
            prop_assert!(!n.cordoned, "placed on cordoned node {}", n.name);
            let i = input.pending.iter().find(|i| i.instance == p.instance && i.job == p.job);
            let i = i.expect("placed instance was pending");
            prop_assert!(!i.avoid.contains(&n.name), "placed on avoided node {}", n.name);
            let u = used.get_mut(n.name.as_str()).expect("node");
            *u = u.saturating_add(p.demand);
        }
        for n in &input.nodes {
            prop_assert!(n.capacity.covers(used[n.name.as_str()]), "node {} over-committed", n.name);
        }
    }

    #[test]
    fn same_input_same_plan_in_any_order(input in arb_input(), seed in any::<u64>()) {
        let plan = place(&input);
        prop_assert_eq!(&plan, &place(&input));
        let mut shuffled = input.clone();
        let mut s = seed | 1;
        let mut next = || { s ^= s << 13; s ^= s >> 7; s ^= s << 17; s };
        for i in (1..shuffled.nodes.len()).rev() {
            let j = (next() % (i as u64 + 1)) as usize;
            shuffled.nodes.swap(i, j);
        }
        for i in (1..shuffled.pending.len()).rev() {
            let j = (next() % (i as u64 + 1)) as usize;
            shuffled.pending.swap(i, j);
        }
        prop_assert_eq!(plan, place(&shuffled));
    }

    #[test]
    fn an_unplaced_instance_really_fits_nowhere(input in arb_input()) {
        let plan = place(&input);
        // Replay the plan's allocations: an instance left out must not fit any eligible node
        // with everything placed counted.
        let mut used: HashMap<&str, Resources> =
            input.nodes.iter().map(|n| (n.name.as_str(), n.allocated)).collect();
        for p in &plan.placed {
            let u = used.get_mut(p.node.as_str()).expect("node");
            *u = u.saturating_add(p.demand);
        }
        for u in &plan.unplaced {
            let i = input.pending.iter().find(|i| i.instance == u.instance).expect("pending");
            for n in &input.nodes {
                if !n.alive || n.cordoned || i.avoid.contains(&n.name) { continue; }
                let free = n.capacity.checked_sub(used[n.name.as_str()]).unwrap_or_default();
                prop_assert!(!free.covers(i.demand), "{} fits {} but was left out: {}", i.instance, n.name, u.reason);
            }
        }
    }
}
