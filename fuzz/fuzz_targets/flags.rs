//! Flag values: `--port-range` and durations never panic; a parsed range is never reversed.
#![no_main]
use libfuzzer_sys::fuzz_target;
use servicekit::duration::parse_duration;
use supervisor_core::PortRange;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(r) = text.parse::<PortRange>() {
        assert!(r.first >= 1 && r.first <= r.last && !r.is_empty());
        assert_eq!(r.to_string().parse::<PortRange>(), Ok(r));
    }
    let _ = parse_duration(text).map_err(|e| e.to_string());
});
