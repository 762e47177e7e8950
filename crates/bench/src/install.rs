//! Installing the peers from Debian's packages when they are missing. Only binaries are used:
//! the harness never enables, starts or touches a system service (`/etc/service`, systemd,
//! `/etc/supervisor`); each peer runs under a temporary folder of the harness.
use crate::kind::{Kind, which};
use std::path::Path;
use std::process::{Command, Stdio};

/// Whether each peer in `kinds` is usable, with a reason when it is not.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PeerInfo {
    pub kind: Kind,
    pub available: bool,
    pub version: Option<String>,
    pub note: Option<String>,
}

fn missing(kind: Kind) -> bool {
    kind.binaries().iter().any(|b| which(b).is_none())
}

fn apt(args: &[&str], log: &Path) -> bool {
    let out = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log);
    let mut cmd = Command::new("apt-get");
    cmd.args(args)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .stdin(Stdio::null());
    if let Ok(f) = out {
        if let Ok(g) = f.try_clone() {
            cmd.stdout(f).stderr(g);
        }
    }
    cmd.status().is_ok_and(|s| s.success())
}

/// The installed version of a Debian package.
pub fn package_version(pkg: &str) -> Option<String> {
    let out = Command::new("dpkg-query")
        .args(["-W", "-f", "${Version}", pkg])
        .stderr(Stdio::null())
        .output()
        .ok()?;
    let v = String::from_utf8_lossy(&out.stdout).trim().to_string();
    (out.status.success() && !v.is_empty()).then_some(v)
}

/// Installs what is missing (unless `install` is false), then reports on every peer.
pub fn ensure(kinds: &[Kind], install: bool, log: &Path) -> Vec<PeerInfo> {
    let want: Vec<&str> = kinds
        .iter()
        .filter(|k| missing(**k))
        .filter_map(|k| k.package())
        .collect();
    if install && !want.is_empty() {
        eprintln!(
            "bench: installing {} with apt-get (log: {})",
            want.join(", "),
            log.display()
        );
        let mut args = vec!["install", "-y", "-q", "--no-install-recommends"];
        args.extend(&want);
        if !apt(&args, log) {
            eprintln!("bench: apt-get install failed; running apt-get update and trying again");
            apt(&["update", "-q"], log);
            apt(&args, log);
        }
    }
    kinds
        .iter()
        .map(|&kind| {
            let version = kind.package().and_then(package_version);
            let gone: Vec<&str> = kind
                .binaries()
                .iter()
                .copied()
                .filter(|b| which(b).is_none())
                .collect();
            let note = (!gone.is_empty()).then(|| {
                format!(
                    "not installed ({} missing{})",
                    gone.join(", "),
                    if install {
                        "; apt-get install failed, see the apt log"
                    } else {
                        "; --no-install given"
                    }
                )
            });
            PeerInfo {
                kind,
                available: gone.is_empty(),
                version,
                note,
            }
        })
        .collect()
}

/// Installs the Debian packages of the `(binary, package)` pairs whose binary is missing
/// (unless `install` is false); returns the binaries still missing afterwards.
pub fn ensure_binaries(wanted: &[(&str, &str)], install: bool, log: &Path) -> Vec<String> {
    let absent = |w: &[(&str, &str)]| -> Vec<(String, String)> {
        w.iter()
            .filter(|(b, _)| which(b).is_none())
            .map(|(b, p)| (b.to_string(), p.to_string()))
            .collect()
    };
    let want = absent(wanted);
    if install && !want.is_empty() {
        let pkgs: Vec<&str> = want.iter().map(|(_, p)| p.as_str()).collect();
        eprintln!(
            "bench: installing {} with apt-get (log: {})",
            pkgs.join(", "),
            log.display()
        );
        let mut args = vec!["install", "-y", "-q", "--no-install-recommends"];
        args.extend(&pkgs);
        if !apt(&args, log) {
            apt(&["update", "-q"], log);
            apt(&args, log);
        }
    }
    absent(wanted).into_iter().map(|(b, _)| b).collect()
}
