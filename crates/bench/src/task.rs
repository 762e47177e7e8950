//! The task program, `bench-task` (`crates/bench-task`): a `no_std` package of its own, outside
//! the workspace (it links without libc, with its own flags), built into `target/bench-task/`.
//! The harness builds and finds it here; so does `tests/task.rs`.
use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The workspace this harness was built from.
pub fn workspace_root() -> PathBuf {
    let bench = Path::new(env!("CARGO_MANIFEST_DIR"));
    bench
        .parent()
        .and_then(Path::parent)
        .unwrap_or(bench)
        .to_path_buf()
}

/// The package's manifest.
pub fn manifest() -> PathBuf {
    workspace_root()
        .join("crates")
        .join("bench-task")
        .join("Cargo.toml")
}

/// Its own target folder (a separate cargo root: its build never touches the workspace's).
pub fn target_dir() -> PathBuf {
    workspace_root().join("target").join("bench-task")
}

/// Where the release build puts the binary.
pub fn binary() -> PathBuf {
    target_dir().join("release").join("bench-task")
}

/// `cargo build --release --manifest-path <workspace>/crates/bench-task/Cargo.toml
/// --target-dir <workspace>/target/bench-task`, run with `cargo`. RUSTFLAGS are dropped: the
/// task's flags are its own (`build.rs`), and flags meant for the workspace (coverage,
/// `crt-static`) would break a `no_std` binary linked without libc.
pub fn build_command(cargo: &OsStr) -> Command {
    let mut cmd = Command::new(cargo);
    cmd.arg("build")
        .arg("--release")
        .arg("--manifest-path")
        .arg(manifest())
        .arg("--target-dir")
        .arg(target_dir())
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("CARGO_BUILD_RUSTFLAGS");
    cmd
}

/// The command line of [`build_command`], for messages.
pub fn describe(cmd: &Command) -> String {
    cmd.get_args()
        .map(|a| a.to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}
