//! The table of allowed phase changes. `Core::set_phase` checks every change against it; a test
//! walks the whole table, and another checks it against the list in docs/ARCHITECTURE.md.
use crate::task::PhaseKind;

/// `(from, to, why)`; `None` is "no task" (before `add`, after `remove`).
pub const TRANSITIONS: &[(Option<PhaseKind>, Option<PhaseKind>, &str)] = {
    use PhaseKind::*;
    &[
        (None, Some(Queued), "added"),
        (None, Some(Stopped), "added with autostart false"),
        (
            None,
            Some(Held),
            "added while leftovers of its name are being stopped",
        ),
        (Some(Stopped), Some(Queued), "start, restart"),
        (Some(Stopped), Some(Stopped), "remove of a stopped task"),
        (Some(Stopped), None, "removed"),
        (
            Some(Held),
            Some(Queued),
            "nothing holds it any more: start, or restart after a death",
        ),
        (
            Some(Held),
            Some(Probing),
            "remains gone after a quick death on a port",
        ),
        (
            Some(Held),
            Some(Backoff),
            "remains gone after a death in yo-yo mode",
        ),
        (
            Some(Held),
            Some(Stopped),
            "remains gone, and a stop was asked meanwhile (or no restart is wanted)",
        ),
        (
            Some(Held),
            Some(Held),
            "a stop, start or restart asked while held",
        ),
        (Some(Queued), Some(Spawning), "a spawn token"),
        (Some(Queued), Some(Backoff), "no free port"),
        (Some(Queued), Some(Stopped), "stop, remove, shutdown"),
        (Some(Spawning), Some(Running), "spawned"),
        (Some(Spawning), Some(Backoff), "spawn failed"),
        (
            Some(Spawning),
            Some(Queued),
            "port busy: the next port at once",
        ),
        (
            Some(Spawning),
            Some(Stopped),
            "spawn failed, with a stop pending",
        ),
        (
            Some(Spawning),
            Some(Spawning),
            "a stop asked during the spawn",
        ),
        (
            Some(Running),
            Some(Stopping),
            "stop, restart, remove, shutdown",
        ),
        (
            Some(Running),
            Some(Held),
            "died, and processes of its instance live on",
        ),
        (
            Some(Running),
            Some(Probing),
            "died soon after start, holding a port",
        ),
        (Some(Running), Some(Queued), "died: restart at once"),
        (
            Some(Running),
            Some(Backoff),
            "died in yo-yo mode: restart later",
        ),
        (
            Some(Running),
            Some(Stopped),
            "died, and its restart policy says no; a stop without a leader",
        ),
        (Some(Probing), Some(Queued), "probed: restart at once"),
        (Some(Probing), Some(Backoff), "probed: yo-yo, restart later"),
        (Some(Probing), Some(Stopped), "probed, with a stop pending"),
        (
            Some(Probing),
            Some(Probing),
            "a stop asked during the probe",
        ),
        (Some(Backoff), Some(Queued), "retry timer, start, restart"),
        (Some(Backoff), Some(Stopped), "stop, remove, shutdown"),
        (
            Some(Stopping),
            Some(Stopped),
            "its group is gone (or survived SIGKILL)",
        ),
        (
            Some(Stopping),
            Some(Stopping),
            "another stop reason (restart → shutdown)",
        ),
    ]
};

/// True when a task may go from `from` to `to`.
pub fn allowed(from: Option<PhaseKind>, to: Option<PhaseKind>) -> bool {
    TRANSITIONS.iter().any(|(f, t, _)| *f == from && *t == to)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn the_table_has_no_duplicates_and_every_phase_is_reachable_and_leavable() {
        let mut seen = HashSet::new();
        for (f, t, why) in TRANSITIONS {
            assert!(seen.insert((*f, *t)), "{f:?} → {t:?} twice");
            assert!(!why.is_empty());
        }
        for k in PhaseKind::ALL {
            assert!(
                TRANSITIONS.iter().any(|(_, t, _)| *t == Some(k)),
                "{k:?} cannot be reached"
            );
            assert!(
                TRANSITIONS
                    .iter()
                    .any(|(f, t, _)| *f == Some(k) && *t != Some(k)),
                "{k:?} cannot be left"
            );
        }
        // Only a stopped task is ever forgotten.
        for (f, t, _) in TRANSITIONS {
            if t.is_none() {
                assert_eq!(*f, Some(PhaseKind::Stopped));
            }
        }
        // Every phase can end stopped: nothing is a trap.
        for k in PhaseKind::ALL {
            let mut reach = HashSet::from([k]);
            loop {
                let more: Vec<PhaseKind> = TRANSITIONS
                    .iter()
                    .filter(|(f, _, _)| f.is_some_and(|f| reach.contains(&f)))
                    .filter_map(|(_, t, _)| *t)
                    .filter(|t| !reach.contains(t))
                    .collect();
                if more.is_empty() {
                    break;
                }
                reach.extend(more);
            }
            assert!(
                reach.contains(&PhaseKind::Stopped),
                "{k:?} never ends stopped"
            );
        }
    }

    #[test]
    fn allowed_answers_exactly_the_table() {
        let all: Vec<Option<PhaseKind>> = std::iter::once(None)
            .chain(PhaseKind::ALL.iter().copied().map(Some))
            .collect();
        let table: HashSet<_> = TRANSITIONS.iter().map(|(f, t, _)| (*f, *t)).collect();
        for f in &all {
            for t in &all {
                assert_eq!(allowed(*f, *t), table.contains(&(*f, *t)), "{f:?} → {t:?}");
            }
        }
        assert!(
            !allowed(Some(PhaseKind::Running), None),
            "a running task is never forgotten"
        );
        assert!(!allowed(
            Some(PhaseKind::Stopping),
            Some(PhaseKind::Running)
        ));
    }
}

#[cfg(test)]
mod doc_tests {
    use super::*;
    use std::collections::BTreeSet;

    fn name(k: Option<PhaseKind>, missing: &str) -> String {
        k.map_or(missing.to_string(), |k| k.as_str().to_string())
    }

    /// docs/ARCHITECTURE.md lists every transition with its reason: the list and the table
    /// must say the same.
    #[test]
    fn the_architecture_document_lists_exactly_these_transitions() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/ARCHITECTURE.md");
        let doc = std::fs::read_to_string(path).expect("docs/ARCHITECTURE.md");
        let start = doc
            .find("<!-- transitions -->")
            .expect("the transitions marker");
        let end = doc.find("<!-- /transitions -->").expect("the end marker");
        let listed: BTreeSet<String> = doc[start..end]
            .lines()
            .filter(|l| l.contains(" → "))
            .map(|l| l.trim().to_string())
            .collect();
        let table: BTreeSet<String> = TRANSITIONS
            .iter()
            .map(|(f, t, why)| format!("{} → {}: {why}", name(*f, "(new)"), name(*t, "(gone)")))
            .collect();
        let missing: Vec<&String> = table.difference(&listed).collect();
        let extra: Vec<&String> = listed.difference(&table).collect();
        assert!(
            missing.is_empty() && extra.is_empty(),
            "not in the document: {missing:#?}\nnot in the table: {extra:#?}"
        );
    }
}
