//! What the proxy's tests share: a real supervisor running real time servers (and an auth
//! server) on free loopback ports in a temp dir, the proxy in front, a keep-alive HTTP client
//! and a paced load generator that counts every failure.
use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use testkit::{ServerProc, Spawner, bin_path, free_port, http_get, wait_for, wait_for_value};

pub const LONG: Duration = Duration::from_secs(20);

/// A supervisor under test with its task list; everything it started dies with it (by the
/// spawner's mark) when this is dropped.
pub struct Sup {
    pub dir: tempfile::TempDir,
    pub spawner: Spawner,
    pub child: Option<Child>,
    pub api: String,
    pub tasks: String,
    pub extra: Vec<String>,
}

impl Sup {
    /// Starts a supervisor over `tasks` with its API on a free port and ports from a free
    /// range; returns once the API answers.
    pub fn start(tasks: &Value, extra: &[&str]) -> Sup {
        let mut s = Sup::prepare(tasks, extra);
        s.spawn();
        s
    }

    /// [`Sup::start`] without starting: the temp dir, API address and port range are chosen.
    pub fn prepare(tasks: &Value, extra: &[&str]) -> Sup {
        let dir = tempfile::tempdir().unwrap();
        let (first, last) = testkit::free_port_range(20);
        let mut extra: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
        extra.push(format!("--port-range={first}-{last}"));
        Sup {
            dir,
            spawner: Spawner::new(),
            child: None,
            api: format!("127.0.0.1:{}", free_port()),
            tasks: tasks.to_string(),
            extra,
        }
    }

    /// (Re)starts the supervisor process on the same API address, task list and flags.
    pub fn spawn(&mut self) {
        let tasks = self.path("tasks.json");
        std::fs::write(&tasks, &self.tasks).unwrap();
        let mut cmd = self.spawner.bin("supervisor");
        cmd.current_dir(self.dir.path())
            .arg(format!("--listen={}", self.api))
            .arg("--log=sup.log")
            .args(&self.extra)
            .stdin(std::fs::File::open(&tasks).unwrap())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(self.path("sup.stderr")).unwrap());
        self.child = Some(cmd.spawn().unwrap());
        assert!(
            wait_for(LONG, || http_get(&self.api, "/health", &[]).is_ok()),
            "the supervisor's API never answered; log:\n{}",
            self.log()
        );
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.path("sup.log")).unwrap_or_default()
    }

    /// `GET /tasks`.
    pub fn tasks(&self) -> Vec<Value> {
        let r = http_get(&self.api, "/tasks", &[]).unwrap();
        assert_eq!(r.status, 200, "{}", r.body);
        serde_json::from_str(&r.body).unwrap()
    }

    /// (pid, port) of a running task.
    pub fn running(&self, name: &str) -> Option<(i32, u16)> {
        self.tasks()
            .into_iter()
            .find(|t| t["name"] == name && t["state"] == "running")
            .and_then(|t| Some((t["pid"].as_i64()? as i32, t["port"].as_u64()? as u16)))
    }

    /// Waits until `name` runs and answers HTTP on its port; returns (pid, port).
    pub fn wait_serving(&self, name: &str) -> (i32, u16) {
        wait_for_value(LONG, || {
            let (pid, port) = self.running(name)?;
            http_get(&format!("127.0.0.1:{port}"), "/about", &[])
                .ok()
                .map(|_| (pid, port))
        })
        .unwrap_or_else(|| panic!("{name} never served; log:\n{}", self.log()))
    }

    /// SIGKILLs the supervisor itself (its tasks keep running).
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill().unwrap();
            c.wait().unwrap();
        }
    }
}

impl Drop for Sup {
    fn drop(&mut self) {
        if let Some(c) = self.child.as_mut() {
            let _ = c.kill();
            let _ = c.wait();
        }
        self.spawner.kill_all();
        // Every supervisor log in the folder: a supervisor killed above leaves its task
        // cgroups, and tasks that rewrote their environment escape the spawner's mark.
        for entry in std::fs::read_dir(self.dir.path())
            .into_iter()
            .flatten()
            .flatten()
        {
            let path = entry.path();
            if path.extension().is_some_and(|e| e == "log") || path.ends_with("sup.stderr") {
                testkit::clean_supervisor_cgroups(
                    &std::fs::read_to_string(&path).unwrap_or_default(),
                );
            }
        }
        if std::thread::panicking() {
            eprintln!("---- supervisor log ----\n{}", self.log());
        }
    }
}

/// A time server task; `extra` are more flags (`--max-inflight=2`, ...).
pub fn timeserver(name: &str, authport: Option<u16>, extra: &[&str]) -> Value {
    let mut cmd = vec![
        bin_path("timeserver").display().to_string(),
        "--port={{port}}".to_string(),
        "--authhost=127.0.0.1".to_string(),
        format!("--authport={}", authport.unwrap_or(1)),
    ];
    cmd.extend(extra.iter().map(|s| s.to_string()));
    json!({"name": name, "command": cmd, "error": format!("{name}.err")})
}

pub fn authserver(port: u16) -> Value {
    json!({"name": "authserver", "error": "auth.err",
           "command": [bin_path("authserver").display().to_string(), format!("--authport={port}")]})
}

/// The proxy under test, with its admin address.
pub struct Proxy {
    pub proc: ServerProc,
    pub addr: String,
    pub admin: String,
}

impl Proxy {
    /// Starts the proxy on free ports with `args` (at least `--backends`); returns once its
    /// port accepts connections.
    pub fn start(sp: &Spawner, args: &[&str]) -> Proxy {
        let addr = format!("127.0.0.1:{}", free_port());
        let admin = format!("127.0.0.1:{}", free_port());
        let mut cmd = sp.bin("proxy");
        cmd.arg(format!("--listen={addr}"))
            .arg(format!("--admin={admin}"))
            .args(args);
        let proc = ServerProc::start(cmd, &addr);
        Proxy { proc, addr, admin }
    }

    /// `GET /backends` from the admin address.
    pub fn backends(&self) -> Value {
        let r = http_get(&self.admin, "/backends", &[]).unwrap();
        assert_eq!(r.status, 200);
        serde_json::from_str(&r.body).unwrap()
    }

    /// The (name, port) of the backends in force, sorted.
    pub fn ports(&self) -> Vec<(String, u16)> {
        let mut v: Vec<(String, u16)> = self.backends()["backends"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| {
                let addr = b["addr"].as_str().unwrap();
                let port = addr.rsplit(':').next().unwrap().parse().unwrap();
                (b["name"].as_str().unwrap().to_string(), port)
            })
            .collect();
        v.sort();
        v
    }

    pub fn metrics(&self) -> String {
        http_get(&self.admin, "/metrics", &[]).unwrap().body
    }

    /// The value of one series in `/metrics` (0 when absent).
    pub fn metric(&self, series: &str) -> f64 {
        self.metrics()
            .lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or(0.0)
    }
}

/// One answer read by [`Client`].
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Answer {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// An HTTP/1.1 client on one keep-alive connection.
pub struct Client {
    addr: String,
    conn: Option<BufReader<TcpStream>>,
    timeout: Duration,
}

impl Client {
    pub fn new(addr: &str, timeout: Duration) -> Client {
        Client {
            addr: addr.to_string(),
            conn: None,
            timeout,
        }
    }

    /// Sends `head` (request line and headers, without the final blank line) and `body`;
    /// reconnects first if the last exchange failed.
    pub fn send(&mut self, head: &str, body: &[u8]) -> std::io::Result<Answer> {
        if self.conn.is_none() {
            let s = TcpStream::connect(&self.addr)?;
            s.set_read_timeout(Some(self.timeout))?;
            s.set_nodelay(true)?;
            self.conn = Some(BufReader::new(s));
        }
        let r = self.exchange(head, body);
        if r.is_err()
            || r.as_ref()
                .is_ok_and(|a| a.header("connection") == Some("close"))
        {
            self.conn = None;
        }
        r
    }

    pub fn get(&mut self, path: &str) -> std::io::Result<Answer> {
        self.send(&format!("GET {path} HTTP/1.1\r\nHost: {}", self.addr), b"")
    }

    fn exchange(&mut self, head: &str, body: &[u8]) -> std::io::Result<Answer> {
        let conn = self.conn.as_mut().expect("connected");
        let mut req = format!("{head}\r\n");
        if !body.is_empty() {
            req.push_str(&format!("Content-Length: {}\r\n", body.len()));
        }
        req.push_str("\r\n");
        let s = conn.get_mut();
        s.write_all(req.as_bytes())?;
        s.write_all(body)?;
        read_answer(conn)
    }
}

fn read_answer(r: &mut impl BufRead) -> std::io::Result<Answer> {
    let bad = |m: String| std::io::Error::other(m);
    let mut line = String::new();
    if r.read_line(&mut line)? == 0 {
        return Err(bad("connection closed before an answer".into()));
    }
    let status = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| bad(format!("bad status line {line:?}")))?;
    let mut headers = Vec::new();
    loop {
        line.clear();
        r.read_line(&mut line)?;
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        if let Some((k, v)) = l.split_once(':') {
            headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
        }
    }
    let get = |n: &str| headers.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone());
    let mut body = Vec::new();
    if get("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
        loop {
            line.clear();
            r.read_line(&mut line)?;
            let size = usize::from_str_radix(line.trim(), 16)
                .map_err(|e| bad(format!("bad chunk size {line:?}: {e}")))?;
            let mut chunk = vec![0; size + 2];
            r.read_exact(&mut chunk)?;
            if size == 0 {
                break;
            }
            body.extend_from_slice(&chunk[..size]);
        }
    } else if let Some(len) = get("content-length").and_then(|v| v.parse().ok()) {
        body.resize(len, 0);
        r.read_exact(&mut body)?;
    } else if status != 204 && status != 304 {
        r.read_to_end(&mut body)?;
    }
    Ok(Answer {
        status,
        headers,
        body,
    })
}

/// What a [`load`] run saw.
#[derive(Debug, Default)]
pub struct LoadReport {
    pub ok: u64,
    /// Every non-2xx answer and every transport error, described.
    pub failures: Vec<String>,
    pub latencies_ms: Vec<f64>,
    pub elapsed: Duration,
}

impl LoadReport {
    pub fn rate(&self) -> f64 {
        (self.ok + self.failures.len() as u64) as f64 / self.elapsed.as_secs_f64()
    }
}

/// `threads` clients, each on its own keep-alive connection, each sending `GET path` at
/// `per_thread` requests per second (paced, not back to back) until `stop` is set.
pub fn load(
    addr: &str,
    path: &str,
    threads: usize,
    per_thread: f64,
    stop: Arc<AtomicBool>,
) -> LoadReport {
    let started = Instant::now();
    let handles: Vec<_> = (0..threads)
        .map(|_| {
            let (addr, path, stop) = (addr.to_string(), path.to_string(), stop.clone());
            std::thread::spawn(move || {
                let mut c = Client::new(&addr, Duration::from_secs(10));
                let mut r = LoadReport::default();
                let t0 = Instant::now();
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let due = t0 + Duration::from_secs_f64(n as f64 / per_thread);
                    if let Some(wait) = due.checked_duration_since(Instant::now()) {
                        std::thread::sleep(wait);
                    }
                    n += 1;
                    let sent = Instant::now();
                    match c.get(&path) {
                        Ok(a) if (200..300).contains(&a.status) => {
                            r.ok += 1;
                            r.latencies_ms.push(sent.elapsed().as_secs_f64() * 1e3);
                        }
                        Ok(a) => r
                            .failures
                            .push(format!("status {}: {}", a.status, a.text())),
                        Err(e) => r.failures.push(format!("transport: {e}")),
                    }
                }
                r
            })
        })
        .collect();
    let mut total = LoadReport::default();
    for h in handles {
        let r = h.join().unwrap();
        total.ok += r.ok;
        total.failures.extend(r.failures);
        total.latencies_ms.extend(r.latencies_ms);
    }
    total.elapsed = started.elapsed();
    total
}

/// Lines of a task's error file (the time server's log goes to stderr) containing `needle`.
pub fn lines_with(path: &Path, needle: &str) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains(needle))
        .map(str::to_string)
        .collect()
}
