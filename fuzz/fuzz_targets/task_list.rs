//! The task list parser never panics, and what it accepts is well formed: unique valid names,
//! non-empty argv, and a re-serialised list parses back to the same tasks.
#![no_main]
use libfuzzer_sys::fuzz_target;
use std::collections::HashSet;
use supervisor_core::{PortRange, TaskSpec, parse_task_list};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // The first byte picks the port range, so both "no range" and tight ranges are explored.
    let ports = match data.first().map(|b| b % 3) {
        Some(0) | None => None,
        Some(1) => Some(PortRange {
            first: 8000,
            last: 8001,
        }),
        _ => Some(PortRange {
            first: 1,
            last: 65535,
        }),
    };
    let Ok(specs) = parse_task_list(text, ports) else {
        return;
    };
    let mut names = HashSet::new();
    for s in &specs {
        assert!(!s.command.is_empty() && !s.command[0].is_empty(), "{s:?}");
        assert!(!s.name.is_empty() && s.name.len() <= 64, "{s:?}");
        assert!(names.insert(s.name.clone()), "duplicate name {}", s.name);
        assert!(ports.is_some() || !s.uses_port(), "{s:?}");
    }
    let again: Vec<&TaskSpec> = specs.iter().collect();
    let json = serde_json::to_string(&again).expect("specs serialise");
    let back = parse_task_list(&json, ports).expect("a serialised valid list parses again");
    assert_eq!(back, specs);
});
