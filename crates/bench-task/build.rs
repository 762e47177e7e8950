//! Links `bench-task` as a static ELF without the C runtime: no crt1.o/crti.o (it has its own
//! `_start`), no libc, no dynamic loader.
fn main() {
    for arg in [
        "-nostartfiles",
        "-nostdlib",
        "-static",
        // rustc asks for a PIE; a static PIE would have to relocate itself, which only libc's
        // start files do.
        "-no-pie",
        "-Wl,--build-id=none",
    ] {
        println!("cargo:rustc-link-arg-bins={arg}");
    }
    println!("cargo:rerun-if-changed=build.rs");
}
