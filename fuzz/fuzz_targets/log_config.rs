//! The seelog log-config parser never panics; what it accepts has at least one output.
#![no_main]
use libfuzzer_sys::fuzz_target;
use servicekit::logconfig::LogConfig;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(cfg) = LogConfig::parse(text) {
        assert!(!cfg.outputs.is_empty());
    }
    // Errors render (line/column arithmetic included) without panicking.
    if let Err(e) = LogConfig::parse(text) {
        let _ = e.to_string();
    }
});
