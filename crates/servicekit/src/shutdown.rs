//! Waiting for the signals that mean "stop cleanly": SIGTERM (supervisors, `kill`) and SIGINT
//! (Ctrl-C).
use std::fmt;
use std::future::Future;

use tokio::signal::unix::{SignalKind, signal};

/// Which signal asked us to stop; shown in the log line that announces the drain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopSignal {
    Term,
    Int,
}

impl fmt::Display for StopSignal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            StopSignal::Term => "SIGTERM",
            StopSignal::Int => "SIGINT",
        })
    }
}

/// Installs the SIGTERM and SIGINT handlers *now* and returns a future that resolves when either
/// arrives.
///
/// The handlers are installed eagerly, not on first poll: a signal that arrives between start-up
/// and the first poll must still mean "stop cleanly", not the default action (death without a
/// final dump). Must be called inside a tokio runtime.
pub fn shutdown_signal() -> std::io::Result<impl Future<Output = StopSignal> + Send + 'static> {
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => StopSignal::Term,
            _ = int.recv() => StopSignal::Int,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn resolves_on_sigterm() {
        let fut = shutdown_signal().expect("install");
        // Raise after installing: the process must not die of the default action.
        std::process::Command::new("kill")
            .args(["-TERM", &std::process::id().to_string()])
            .status()
            .expect("run kill");
        let got = tokio::time::timeout(std::time::Duration::from_secs(10), fut)
            .await
            .expect("signal seen in time");
        assert_eq!(got, StopSignal::Term);
        assert_eq!(got.to_string(), "SIGTERM");
    }
}
