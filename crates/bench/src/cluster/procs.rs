//! One started process as a guard: it carries the run's mark and one of its own, so stopping
//! it reaches everything it forked (a supervisor's tasks too), by pid, never by name.
use std::fs::File;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use super::Env;
use crate::launch::{MARK_VAR, RUN_VAR};
use crate::procs::{Pidfd, kill_marked};

/// A running process; dropping it kills it and everything with its mark.
pub struct Proc {
    pub name: String,
    pub log: PathBuf,
    mark: String,
    child: Option<Child>,
}

impl Proc {
    /// Starts `cmd` with stdin from /dev/null, stdout and stderr into `log`.
    pub fn spawn(env: &Env, name: &str, mut cmd: Command, log: &Path) -> Result<Proc> {
        let out = File::create(log).with_context(|| format!("cannot create {}", log.display()))?;
        let err = out
            .try_clone()
            .context("cannot duplicate a file descriptor")?;
        let mark = format!("{}-{}", env.run_id, env.next());
        cmd.stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .env(RUN_VAR, &env.run_id)
            .env(MARK_VAR, &mark)
            // Ctrl-C in the terminal reaches the harness only; it stops these itself.
            .process_group(0);
        let child = cmd
            .spawn()
            .with_context(|| format!("cannot start {name} ({:?})", cmd.get_program()))?;
        Ok(Proc {
            name: name.to_string(),
            log: log.to_path_buf(),
            mark,
            child: Some(child),
        })
    }

    pub fn pid(&self) -> Option<i32> {
        self.child.as_ref().map(|c| c.id() as i32)
    }

    /// True while the process runs (it has not exited, nor been killed by us).
    pub fn alive(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// SIGKILLs it and everything carrying its mark at once (all stopped first, then all
    /// killed: a supervisor cannot restart a task in between), and reaps it.
    pub fn kill(&mut self) {
        kill_marked(MARK_VAR, &self.mark, Duration::from_secs(30));
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM, up to `grace` for it to exit by itself (a supervisor stops its tasks and
    /// removes its cgroups), then [`Proc::kill`] for whatever is left.
    pub fn terminate(&mut self, grace: Duration) {
        if let Some(c) = self.child.as_mut() {
            // The child is not reaped yet, so its pid cannot have been reused.
            if let Some(fd) = Pidfd::open_now(c.id() as i32) {
                let _ = fd.signal(libc::SIGTERM);
            }
            let until = Instant::now() + grace;
            while Instant::now() < until {
                if !matches!(c.try_wait(), Ok(None)) {
                    break;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        self.kill();
    }

    /// The last `n` lines of its output, for error messages.
    pub fn log_tail(&self, n: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Kills what is left in the task cgroups a SIGKILLed supervisor announced in its log (`tasks
/// are tracked by cgroup cgroup=PATH`) and removes the folders, which it can no longer do.
pub fn clean_cgroups(log: &Path) {
    procio::cgroup::clean_announced(&std::fs::read_to_string(log).unwrap_or_default());
}
