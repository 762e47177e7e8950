//! The dump parser never panics, and a dump it accepts survives a write/read round trip.
#![no_main]
use libfuzzer_sys::fuzz_target;
use supervisor_core::Checkpoint;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(c) = Checkpoint::parse(text) else {
        return;
    };
    let back = Checkpoint::parse(&c.to_json()).expect("a dump we wrote parses");
    assert_eq!(back, c);
});
