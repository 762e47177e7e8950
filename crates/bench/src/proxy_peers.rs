//! The three front doors compared, each started in a folder of its own on one thread:
//!
//! - ours: `proxy --threads=1 --access-log=off --admin=none --backends=supervisor:...`, which
//!   follows the supervisor by itself;
//! - HAProxy 2.6: `nbthread 1`, `balance leastconn`, and for retries what its manual
//!   recommends: `retries 3`, `option redispatch 1`, `retry-on all-retryable-errors`, with an
//!   HTTP health check (`option httpchk GET /about`, `check inter 500ms fall 2 rise 1`);
//! - nginx: one worker, `least_conn`, upstream keep-alive (`keepalive 64`,
//!   `proxy_http_version 1.1`, an empty `Connection` header, as its docs say for keep-alive),
//!   `proxy_next_upstream error timeout http_503`, `max_fails=1 fail_timeout=1s`.
//!
//! The peers cannot ask the supervisor where the time servers are: they are given a list of
//! ports. For the throughput and latency runs it is the two ports in use (their best case);
//! for the kill run it is every port of the supervisor's range, so that wherever a time server
//! comes back, the peer knows the port. None logs requests.
use crate::interrupt;
use crate::launch::{Ctx, MARK_VAR, RUN_VAR};
use crate::procs::{self, Pidfd};
use anyhow::{Context, Result, bail};
use serde::Serialize;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Front {
    Ours,
    Haproxy,
    Nginx,
}

impl Front {
    pub const ALL: [Front; 3] = [Front::Ours, Front::Haproxy, Front::Nginx];

    pub fn name(self) -> &'static str {
        match self {
            Front::Ours => "ours",
            Front::Haproxy => "haproxy",
            Front::Nginx => "nginx",
        }
    }
}

/// Where the backends are, told each front door its own way.
#[derive(Debug, Clone)]
pub struct Backends {
    /// The supervisor's API, `127.0.0.1:PORT`.
    pub api: String,
    pub pattern: String,
    /// The ports the peers are given.
    pub ports: Vec<u16>,
}

/// A running front door; stopped (with everything carrying its mark) on drop.
pub struct Running {
    pub front: Front,
    pub port: u16,
    pub dir: PathBuf,
    mark: String,
    child: Option<Child>,
}

pub fn haproxy_config(port: u16, ports: &[u16]) -> String {
    let mut c = format!(
        "global\n  nbthread 1\n  maxconn 4096\n\
         defaults\n  mode http\n  timeout connect 1s\n  timeout client 30s\n  timeout server 30s\n\
         \x20 retries 3\n  option redispatch 1\n  retry-on all-retryable-errors\n\
         frontend fe\n  bind 127.0.0.1:{port}\n  default_backend be\n\
         backend be\n  balance leastconn\n  option httpchk GET /about\n\
         \x20 default-server inter 500ms fall 2 rise 1\n"
    );
    for (i, p) in ports.iter().enumerate() {
        let _ = writeln!(c, "  server s{i} 127.0.0.1:{p} check");
    }
    c
}

pub fn nginx_config(dir: &Path, port: u16, ports: &[u16]) -> String {
    let d = dir.display();
    let mut servers = String::new();
    for p in ports {
        let _ = writeln!(
            servers,
            "    server 127.0.0.1:{p} max_fails=1 fail_timeout=1s;"
        );
    }
    format!(
        "worker_processes 1;\ndaemon off;\npid {d}/nginx.pid;\nerror_log {d}/error.log;\n\
         events {{ worker_connections 4096; }}\n\
         http {{\n  access_log off;\n  client_body_temp_path {d}/body;\n  proxy_temp_path {d}/proxy;\n\
         \x20 fastcgi_temp_path {d}/fastcgi;\n  uwsgi_temp_path {d}/uwsgi;\n  scgi_temp_path {d}/scgi;\n\
         \x20 upstream be {{\n    least_conn;\n{servers}    keepalive 64;\n  }}\n\
         \x20 server {{\n    listen 127.0.0.1:{port};\n    location / {{\n      proxy_pass http://be;\n\
         \x20     proxy_http_version 1.1;\n      proxy_set_header Connection \"\";\n\
         \x20     proxy_connect_timeout 1s;\n      proxy_next_upstream error timeout http_503;\n    }}\n  }}\n}}\n"
    )
}

/// Starts `front` on a free port in `dir`, and waits until `GET /time` through it answers 200.
pub fn start(
    ctx: &Ctx,
    front: Front,
    b: &Backends,
    proxy_bin: &Path,
    dir: &Path,
) -> Result<Running> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let port = crate::api::free_port()?;
    let mut cmd = match front {
        Front::Ours => {
            let mut c = Command::new(proxy_bin);
            c.args([
                &format!("--listen=127.0.0.1:{port}"),
                "--admin=none",
                "--threads=1",
                "--access-log=off",
                &format!("--backends=supervisor:http://{}/{}", b.api, b.pattern),
            ]);
            c
        }
        Front::Haproxy => {
            let cfg = dir.join("haproxy.cfg");
            std::fs::write(&cfg, haproxy_config(port, &b.ports))?;
            let mut c = Command::new("haproxy");
            c.arg("-db").arg("-f").arg(&cfg);
            c
        }
        Front::Nginx => {
            let cfg = dir.join("nginx.conf");
            std::fs::write(&cfg, nginx_config(dir, port, &b.ports))?;
            let mut c = Command::new("nginx");
            c.arg("-c")
                .arg(&cfg)
                .arg("-p")
                .arg(dir)
                .arg("-e")
                .arg(dir.join("error.log"));
            c
        }
    };
    let mark = format!("{}-front-{}-{port}", ctx.run_id, front.name());
    let log = std::fs::File::create(dir.join("output.log"))?;
    cmd.env(RUN_VAR, &ctx.run_id)
        .env(MARK_VAR, &mark)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log);
    let child = cmd
        .spawn()
        .with_context(|| format!("cannot start {}", front.name()))?;
    let mut r = Running {
        front,
        port,
        dir: dir.to_path_buf(),
        mark,
        child: Some(child),
    };
    let until = Instant::now() + Duration::from_secs(15);
    loop {
        interrupt::check()?;
        if matches!(
            crate::api::get(port, "/time", Duration::from_secs(2)),
            Ok((200, _))
        ) {
            return Ok(r);
        }
        if let Some(Ok(Some(st))) = r.child.as_mut().map(Child::try_wait) {
            bail!("{} exited ({st}): {}", front.name(), r.output());
        }
        if Instant::now() > until {
            bail!(
                "{} did not answer GET /time within 15 s: {}",
                front.name(),
                r.output()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

impl Running {
    pub fn output(&self) -> String {
        std::fs::read_to_string(self.dir.join("output.log")).unwrap_or_default()
    }

    /// CPU time its processes (the child and its descendants: nginx's worker) used so far,
    /// user and system, seconds.
    pub fn cpu_secs(&self) -> f64 {
        let Some(root) = self.child.as_ref().map(|c| c.id() as i32) else {
            return 0.0;
        };
        std::iter::once(root)
            .chain(descendants(root).into_iter().map(|(p, _)| p))
            .filter_map(cpu_ticks)
            .sum::<u64>() as f64
            / ticks_per_sec() as f64
    }

    /// SIGTERM, up to 5 s to exit, then SIGKILL to whatever is left of it. nginx rewrites its
    /// processes' environment with their titles, so the mark cannot find them: its processes
    /// are found as the child's descendants, before the child is signalled.
    pub fn stop(&mut self) {
        let Some(mut c) = self.child.take() else {
            return;
        };
        let root = c.id() as i32;
        let mut family = descendants(root);
        family.extend(
            procio::procfs::stat(root)
                .ok()
                .map(|s| (root, s.start_ticks)),
        );
        // Our own unreaped child: its pid cannot have been reused.
        if let Some(fd) = Pidfd::open_now(root) {
            let _ = fd.signal(libc::SIGTERM);
        }
        let until = Instant::now() + Duration::from_secs(5);
        while Instant::now() < until && matches!(c.try_wait(), Ok(None)) {
            std::thread::sleep(Duration::from_millis(10));
        }
        for (pid, start) in family {
            if let Some(fd) = Pidfd::open(pid, start) {
                let _ = fd.signal(libc::SIGKILL);
            }
        }
        procs::kill_marked(MARK_VAR, &self.mark, Duration::from_secs(10));
        let _ = c.wait();
    }
}

/// (pid, start time) of every live descendant of `root`, from the parent links in `/proc`.
fn descendants(root: i32) -> Vec<(i32, u64)> {
    let all: Vec<procio::Stat> = procs::all_pids()
        .into_iter()
        .filter_map(|p| procio::procfs::stat(p).ok())
        .collect();
    let mut out: Vec<(i32, u64)> = Vec::new();
    let mut frontier = vec![root];
    while let Some(parent) = frontier.pop() {
        for s in all.iter().filter(|s| s.ppid == parent && !s.is_zombie()) {
            if !out.iter().any(|(p, _)| *p == s.pid) {
                out.push((s.pid, s.start_ticks));
                frontier.push(s.pid);
            }
        }
    }
    out
}

impl Drop for Running {
    fn drop(&mut self) {
        self.stop();
    }
}

fn cpu_ticks(pid: i32) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest: Vec<&str> = text
        .get(text.rfind(')')? + 1..)?
        .split_whitespace()
        .collect();
    // Fields 14 and 15 (utime, stime); rest[0] is field 3.
    Some(rest.get(11)?.parse::<u64>().ok()? + rest.get(12)?.parse::<u64>().ok()?)
}

fn ticks_per_sec() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 { t as u64 } else { 100 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peer_configs_list_every_port() {
        let h = haproxy_config(8080, &[9001, 9002]);
        assert!(h.contains("bind 127.0.0.1:8080"));
        assert!(h.contains("server s1 127.0.0.1:9002 check"));
        assert!(h.contains("retry-on all-retryable-errors"));
        let n = nginx_config(Path::new("/tmp/x"), 8080, &[9001, 9002]);
        assert!(n.contains("listen 127.0.0.1:8080;"));
        assert!(n.contains("server 127.0.0.1:9002 max_fails=1 fail_timeout=1s;"));
        assert!(n.contains("proxy_next_upstream error timeout http_503;"));
        assert_eq!(n.matches('{').count(), n.matches('}').count());
    }
}
