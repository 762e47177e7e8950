//! How a process ended, in words a person on call understands.
use serde::{Deserialize, Serialize};
use std::fmt;

/// The end of a process, decoded from a wait status by the shell.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ExitStatus {
    /// `exit(code)`.
    Code { code: i32 },
    /// Terminated by a signal.
    Signal { signal: i32, core_dumped: bool },
}

impl ExitStatus {
    /// Decodes a raw `waitpid` status word (the `WIFEXITED` / `WIFSIGNALED` layout of Linux).
    pub fn from_wait_status(raw: i32) -> Self {
        let sig = raw & 0x7f;
        if sig == 0 {
            ExitStatus::Code {
                code: (raw >> 8) & 0xff,
            }
        } else {
            ExitStatus::Signal {
                signal: sig,
                core_dumped: raw & 0x80 != 0,
            }
        }
    }

    /// True for `exit(0)`.
    pub fn success(&self) -> bool {
        matches!(self, ExitStatus::Code { code: 0 })
    }
}

impl fmt::Display for ExitStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            ExitStatus::Code { code } => write!(f, "exit code {code}"),
            ExitStatus::Signal {
                signal,
                core_dumped,
            } => {
                write!(f, "killed by {}", signal_name(signal))?;
                if core_dumped {
                    write!(f, " (core dumped)")?;
                }
                Ok(())
            }
        }
    }
}

/// The conventional name of a Linux signal number (`SIGKILL`), or `signal N` when unknown.
pub fn signal_name(signal: i32) -> String {
    const NAMES: [&str; 32] = [
        "",
        "SIGHUP",
        "SIGINT",
        "SIGQUIT",
        "SIGILL",
        "SIGTRAP",
        "SIGABRT",
        "SIGBUS",
        "SIGFPE",
        "SIGKILL",
        "SIGUSR1",
        "SIGSEGV",
        "SIGUSR2",
        "SIGPIPE",
        "SIGALRM",
        "SIGTERM",
        "SIGSTKFLT",
        "SIGCHLD",
        "SIGCONT",
        "SIGSTOP",
        "SIGTSTP",
        "SIGTTIN",
        "SIGTTOU",
        "SIGURG",
        "SIGXCPU",
        "SIGXFSZ",
        "SIGVTALRM",
        "SIGPROF",
        "SIGWINCH",
        "SIGIO",
        "SIGPWR",
        "SIGSYS",
    ];
    match usize::try_from(signal).ok().and_then(|i| NAMES.get(i)) {
        Some(n) if !n.is_empty() => (*n).to_string(),
        _ => format!("signal {signal}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_wait_statuses() {
        let cases = [
            (0x0000, "exit code 0"),
            (0x0300, "exit code 3"),
            (9, "killed by SIGKILL"),
            (11 | 0x80, "killed by SIGSEGV (core dumped)"),
            (15, "killed by SIGTERM"),
            (40, "killed by signal 40"),
        ];
        for (raw, text) in cases {
            assert_eq!(
                ExitStatus::from_wait_status(raw).to_string(),
                text,
                "raw {raw:#x}"
            );
        }
        assert!(ExitStatus::from_wait_status(0).success());
        assert!(!ExitStatus::from_wait_status(0x100).success());
    }
}
