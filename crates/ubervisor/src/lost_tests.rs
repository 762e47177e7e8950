use super::*;
use cluster::Assignment;
use serde_json::json;

use crate::view::Placed;

const NOW: u64 = 1_000_000_000;

fn cfg() -> Config {
    Config {
        grace: Duration::from_secs(10),
        freeze_share: 1.0 / 3.0,
        max_moves: Rate::parse("100/1s").unwrap(),
        cordon: Rate::parse("3/1h").unwrap(),
    }
}

/// `alive` nodes registered; `held` (node, instance) assignments.
fn view(alive: &[&str], held: &[(&str, &str)]) -> View {
    let mut v = View {
        synced: true,
        ..View::default()
    };
    for n in alive {
        v.nodes.insert(n.to_string(), crate::view::test_node(n));
    }
    for (n, i) in held {
        v.assigns.insert(
            (n.to_string(), i.to_string()),
            Placed {
                node: n.to_string(),
                assignment: Assignment {
                    v: 1,
                    job: "web".into(),
                    instance: i.to_string(),
                    generation: 0,
                    cpu: 1,
                    mem: 1,
                    task: json!({}),
                },
                create_revision: 1,
            },
        );
    }
    v
}

fn lost_record(node: &str, at: &[u64], lost: bool) -> NodeLosses {
    NodeLosses {
        v: 1,
        node: node.into(),
        lost_at_ms: at.to_vec(),
        lost,
    }
}

const LED: Duration = Duration::from_secs(60);

#[test]
fn a_missing_node_is_declared_lost_and_its_instances_released() {
    let v = view(
        &["a", "b", "c"],
        &[("a", "web-1"), ("d", "web-2"), ("d", "web-3")],
    );
    let d = decide(&v, &cfg(), LED, NOW, 100);
    assert_eq!(d.declared, ["d"]);
    assert_eq!(d.losses, [lost_record("d", &[NOW], true)]);
    let want: BTreeSet<(String, String)> = [("d", "web-2"), ("d", "web-3")]
        .iter()
        .map(|(n, i)| (n.to_string(), i.to_string()))
        .collect();
    assert_eq!(d.released, want);
    assert!(d.moves.is_none() && d.pages.is_empty() && d.cordons.is_empty());
    // A node that is missing but holds nothing is nobody's concern.
    let v = view(&["a"], &[("a", "web-1")]);
    assert!(decide(&v, &cfg(), LED, NOW, 100).writes_nothing());
}

#[test]
fn a_new_leader_declares_nothing_within_its_grace_but_moves_what_was_declared() {
    let mut v = view(&["a", "b", "c"], &[("d", "web-1"), ("e", "web-2")]);
    v.losses
        .insert("e".into(), lost_record("e", &[NOW - 20_000], true));
    let d = decide(&v, &cfg(), Duration::from_secs(9), NOW, 100);
    assert!(d.declared.is_empty(), "{d:?}");
    assert_eq!(
        d.released.into_iter().collect::<Vec<_>>(),
        [("e".to_string(), "web-2".to_string())],
        "a predecessor's declaration stands"
    );
    let d = decide(&v, &cfg(), Duration::from_secs(10), NOW, 100);
    assert_eq!(d.declared, ["d"]);
}

#[test]
fn a_lost_node_that_registers_again_is_alive_and_keeps_its_history() {
    let mut v = view(&["a", "d"], &[("a", "web-1")]);
    v.losses
        .insert("d".into(), lost_record("d", &[NOW - 5_000], true));
    let d = decide(&v, &cfg(), LED, NOW, 100);
    assert_eq!(d.losses, [lost_record("d", &[NOW - 5_000], false)]);
    assert!(d.declared.is_empty() && d.released.is_empty());
}

#[test]
fn the_rate_limit_releases_at_most_the_tokens_given() {
    let held: Vec<(&str, &str)> = vec![("d", "w-1"), ("d", "w-2"), ("d", "w-3"), ("d", "w-4")];
    let v = view(&["a", "b", "c"], &held);
    assert_eq!(decide(&v, &cfg(), LED, NOW, 1).released.len(), 1);
    assert_eq!(decide(&v, &cfg(), LED, NOW, 0).released.len(), 0);
    assert_eq!(decide(&v, &cfg(), LED, NOW, 9).released.len(), 4);
    let mut b = Bucket::new(Rate::parse("2/1s").unwrap(), tokio::time::Instant::now());
    let t0 = tokio::time::Instant::now();
    assert_eq!(b.available(t0), 2);
    b.spend(2);
    assert_eq!(b.available(t0), 0);
    assert_eq!(b.available(t0 + Duration::from_millis(500)), 1);
    assert_eq!(b.available(t0 + Duration::from_secs(60)), 2, "capped at N");
}

#[test]
fn more_than_a_third_lost_at_once_freezes_moves_and_pages() {
    // 2 of 3 nodes gone in the same round.
    let v = view(&["a"], &[("a", "w-1"), ("b", "w-2"), ("c", "w-3")]);
    let d = decide(&v, &cfg(), LED, NOW, 100);
    assert_eq!(d.declared, ["b", "c"]);
    let m = d.moves.as_ref().expect("frozen");
    assert!(
        m.frozen && m.reason.contains("2 of 3 nodes"),
        "{}",
        m.reason
    );
    assert!(d.released.is_empty(), "nothing moves while frozen");
    assert_eq!(d.pages.len(), 1);
    assert_eq!(d.pages[0].0, "moves_frozen");
    // One round later (the declaration and the freeze stored): still frozen, nothing moves.
    let mut v2 = v.clone();
    for n in ["b", "c"] {
        v2.losses.insert(n.into(), lost_record(n, &[NOW], true));
    }
    v2.moves = d.moves.clone();
    let d2 = decide(&v2, &cfg(), LED, NOW + 200, 100);
    assert!(d2.writes_nothing() && d2.released.is_empty() && d2.pages.is_empty());
    // Long after the window, the nodes still gone: still frozen (the window only starts it).
    let d3 = decide(&v2, &cfg(), LED, NOW + 3_600_000, 100);
    assert!(d3.released.is_empty() && d3.moves.is_none());
    // One of them back: 1 of 3 still lost, not more than a third: unfrozen, c's moves go.
    let mut v3 = v2.clone();
    v3.nodes.insert("b".into(), v.nodes["a"].clone());
    let d4 = decide(&v3, &cfg(), LED, NOW + 5_000, 100);
    let m = d4.moves.expect("unfrozen");
    assert!(!m.frozen && m.unfrozen_at_ms == NOW + 5_000, "{m:?}");
    assert_eq!(
        d4.released.into_iter().collect::<Vec<_>>(),
        [("c".to_string(), "w-3".to_string())]
    );
}

#[test]
fn one_node_of_three_is_not_a_storm_and_an_unfreeze_accepts_the_losses() {
    let v = view(&["a", "b"], &[("a", "w-1"), ("b", "w-2"), ("c", "w-3")]);
    let d = decide(&v, &cfg(), LED, NOW, 100);
    assert!(d.moves.is_none());
    assert_eq!(d.released.len(), 1);
    // Frozen, then unfrozen by an operator at NOW: the losses before do not freeze again.
    let mut v = view(&["a"], &[("a", "w-1"), ("b", "w-2"), ("c", "w-3")]);
    for n in ["b", "c"] {
        v.losses
            .insert(n.into(), lost_record(n, &[NOW - 1_000], true));
    }
    v.moves = Some(Moves {
        v: 1,
        frozen: false,
        reason: "unfrozen by an operator".into(),
        since_ms: NOW,
        unfrozen_at_ms: NOW,
    });
    let d = decide(&v, &cfg(), LED, NOW + 100, 100);
    assert!(d.moves.is_none(), "{d:?}");
    assert_eq!(d.released.len(), 2);
    // A share of 1 never freezes.
    let mut c = cfg();
    c.freeze_share = 1.0;
    let v = view(&[], &[("b", "w-2"), ("c", "w-3")]);
    assert!(decide(&v, &c, LED, NOW, 100).moves.is_none());
}

#[test]
fn a_node_lost_three_times_within_the_window_is_cordoned_and_paged() {
    let mut v = view(&["a", "b", "c"], &[("d", "w-1")]);
    let hour = 3_600_000;
    // Two losses in the window and one long before: this is the third in the window.
    v.losses.insert(
        "d".into(),
        lost_record("d", &[NOW - 2 * hour, NOW - 600_000, NOW - 60_000], false),
    );
    let d = decide(&v, &cfg(), LED, NOW, 100);
    assert_eq!(
        d.losses,
        [lost_record("d", &[NOW - 600_000, NOW - 60_000, NOW], true)],
        "old losses are pruned"
    );
    assert_eq!(d.cordons.len(), 1);
    assert!(
        d.cordons[0].1.reason.contains("lost 3 times within 1h"),
        "{:?}",
        d.cordons
    );
    assert_eq!(d.pages[0].0, "node_cordoned");
    assert_eq!(d.pages[0].1, "d");
    // Twice only: no cordon; already cordoned: not again.
    v.losses
        .insert("d".into(), lost_record("d", &[NOW - 60_000], false));
    assert!(decide(&v, &cfg(), LED, NOW, 100).cordons.is_empty());
    v.losses.insert(
        "d".into(),
        lost_record("d", &[NOW - 70_000, NOW - 60_000], false),
    );
    v.cordons.insert(
        "d".into(),
        Cordon {
            v: 1,
            reason: "cordon".into(),
        },
    );
    let d = decide(&v, &cfg(), LED, NOW, 100);
    assert!(d.cordons.is_empty() && d.pages.is_empty());
}

#[test]
fn flags_parse_or_say_what_was_expected() {
    assert_eq!(
        Rate::parse("3/1h").unwrap(),
        Rate {
            n: 3,
            period: Duration::from_secs(3600)
        }
    );
    assert_eq!(Rate::parse("100/s").unwrap().period, Duration::from_secs(1));
    assert_eq!(
        Rate::parse("0/10s").unwrap().n,
        0,
        "a budget of none is allowed"
    );
    for bad in ["3", "x/1h", "3/", "3/0s", "-1/1h", "3/soon"] {
        let e = Rate::parse(bad).unwrap_err();
        assert!(e.contains("N/PERIOD") && e.contains(bad), "{e}");
    }
    assert!((parse_share("1/3").unwrap() - 1.0 / 3.0).abs() < 1e-12);
    assert_eq!(parse_share("0.5").unwrap(), 0.5);
    for bad in ["0", "2", "1/0", "a"] {
        assert!(parse_share(bad).unwrap_err().contains("(0, 1]"), "{bad}");
    }
}
