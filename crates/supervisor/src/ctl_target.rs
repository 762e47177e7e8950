//! Which supervisor `supervisor ctl` talks to, and how it words the answers that say it reached
//! the wrong one (or none).
//!
//! In order: `--api`; else the runtime file of `--dumpfile`; else `run/supervisor.dump.api` when
//! it exists (where `make run` puts it); else the default address. When a runtime file named
//! the supervisor, every request carries its instance, so that another supervisor answering at
//! that address (the one named crashed and another took its port) refuses instead of acting.
use crate::cli::DEFAULT_LISTEN;
use crate::runtime::{self, Liveness, RuntimeInfo};
use servicekit::http_client::Url;
use std::path::{Path, PathBuf};

/// Where `make run` puts the dump, relative to the repository root.
pub const DEFAULT_RUN_DUMP: &str = "run/supervisor.dump";

/// The supervisor to talk to.
#[derive(Debug, Clone)]
pub struct Target {
    pub base: Url,
    /// `http://host:port`, for messages.
    pub shown: String,
    /// The runtime file that named it: the instance ctl insists on.
    pub expected: Option<Expected>,
}

/// A supervisor as its runtime file describes it.
#[derive(Debug, Clone)]
pub struct Expected {
    pub info: RuntimeInfo,
    /// The runtime file's path, for messages.
    pub file: PathBuf,
}

impl Target {
    /// Resolves `--api` and `--dumpfile` (see the module docs).
    pub fn resolve(api: Option<&str>, dumpfile: Option<&Path>) -> Result<Target, String> {
        let expected = Expected::find(api, dumpfile)?;
        let shown = match (api, &expected) {
            (Some(a), _) => a.trim_end_matches('/').to_string(),
            (None, Some(e)) => match &e.info.api {
                Some(addr) => format!("http://{addr}"),
                None => {
                    return Err(format!(
                        "the supervisor of {} ({}) runs without an API (--listen=none)",
                        e.file.display(),
                        e.info.describe()
                    ));
                }
            },
            (None, None) => format!("http://{DEFAULT_LISTEN}"),
        };
        Ok(Target {
            base: Url::parse(&shown)?,
            shown,
            expected,
        })
    }

    /// The instance to send in `X-Timeservice-Expect-Instance`.
    pub fn expected_instance(&self) -> Option<&str> {
        self.expected.as_ref().map(|e| e.info.instance.as_str())
    }

    /// The token file the runtime file names, when `--token-file` was not given.
    pub fn token_file(&self) -> Option<&Path> {
        self.expected.as_ref()?.info.token_file.as_deref()
    }

    /// The error for a request that got no answer.
    pub fn unreachable(&self, error: &str) -> String {
        let mut msg = format!("cannot reach the supervisor at {}: {error}", self.shown);
        if let Some(e) = &self.expected {
            msg.push_str(&format!(
                "\n  {} names it ({}); {}",
                e.file.display(),
                e.info.describe(),
                e.liveness_note()
            ));
        } else {
            msg.push_str(
                "\n  is it running? Point ctl at it with --dumpfile=PATH (its --dumpfile) or --api=URL",
            );
        }
        msg
    }

    /// The error for a 412: another supervisor answered.
    pub fn wrong_instance(&self, body: &serde_json::Value) -> String {
        let field = |k: &str| {
            body.get(k)
                .map(|v| v.to_string().trim_matches('"').to_string())
        };
        let dump = field("dump")
            .map(|d| format!(", dump file {d}"))
            .unwrap_or_default();
        let answered = format!(
            "instance {} (pid {}{dump})",
            field("instance").unwrap_or_else(|| "?".into()),
            field("pid").unwrap_or_else(|| "?".into())
        );
        match &self.expected {
            Some(e) => format!(
                "refusing to act: the supervisor answering at {} is {answered}, but {} names {}; {}",
                self.shown,
                e.file.display(),
                e.info.describe(),
                e.liveness_note()
            ),
            None => format!(
                "the supervisor answering at {} is {answered}, not the one expected",
                self.shown
            ),
        }
    }

    /// The error for a 401.
    pub fn needs_token(&self, given: Option<&Path>, api_error: &str) -> String {
        let hint = match (given, self.token_file()) {
            (Some(p), _) => format!(
                "the token in {} is not the one the supervisor was given (its --api-token-file)",
                p.display()
            ),
            (None, Some(p)) => format!(
                "pass --token-file=PATH; the supervisor was started with --api-token-file={}",
                p.display()
            ),
            (None, None) => {
                "pass --token-file=PATH: the file given to the supervisor's --api-token-file"
                    .to_string()
            }
        };
        format!(
            "the supervisor at {} needs its API token: {hint}\n  (the API said: {api_error})",
            self.shown
        )
    }
}

impl Expected {
    /// The runtime file `--dumpfile` names, or (without `--api`) the one of
    /// [`DEFAULT_RUN_DUMP`] when it exists; `None` when neither applies.
    pub fn find(api: Option<&str>, dumpfile: Option<&Path>) -> Result<Option<Expected>, String> {
        let default_run = Path::new(DEFAULT_RUN_DUMP);
        let dump = match dumpfile {
            Some(d) => d,
            None if api.is_none() && runtime::runtime_path(default_run).exists() => default_run,
            None => return Ok(None),
        };
        Ok(Some(Expected {
            info: runtime::read(dump).map_err(|e| e.to_string())?,
            file: runtime::runtime_path(dump),
        }))
    }

    /// Whether the named process still runs, in words.
    pub fn liveness_note(&self) -> String {
        match self.info.liveness() {
            Liveness::Alive => format!("pid {} is alive", self.info.pid),
            Liveness::Gone => format!(
                "pid {} is no longer running (the supervisor crashed or was killed: see its log; a new one recovers its tasks from the dump)",
                self.info.pid
            ),
            Liveness::OtherBoot => "the file was written before the last reboot".to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_explicit_api_wins_and_the_default_is_the_default_address() {
        let t = Target::resolve(Some("http://127.0.0.1:9/"), None).expect("resolves");
        assert_eq!(t.shown, "http://127.0.0.1:9");
        assert!(t.expected.is_none());
    }

    #[test]
    fn a_dumpfile_without_runtime_file_says_none_runs() {
        let dir = tempfile::tempdir().expect("tempdir");
        let e = Target::resolve(None, Some(&dir.path().join("x.dump"))).expect_err("no file");
        assert!(e.contains("no supervisor is running"), "{e}");
        assert!(e.contains("x.dump.api"), "{e}");
    }
}
