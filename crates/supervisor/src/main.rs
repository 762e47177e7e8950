//! `supervisor`: see the crate docs (`src/lib.rs`) and `supervisor --help`.
use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = supervisor::cli::Cli::parse();
    match cli.command {
        Some(supervisor::cli::Command::Ctl(args)) => supervisor::ctl::main(args),
        None => supervisor::startup::main(cli.run),
    }
}
