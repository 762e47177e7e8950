//! Headless Chromium for end-to-end tests of web pages, driven over the Chrome DevTools
//! Protocol (CDP).
//!
//! # How it works
//! [`Browser::launch`] starts `chromium --headless --remote-debugging-port=0` with a fresh
//! profile (`--user-data-dir=<temp dir>`), through a [`Spawner`]. When the [`Browser`] is
//! dropped, every one of its processes is SIGKILLed by PID. Finding them takes two marks:
//! the Spawner's environment mark finds the browser process, but Chromium's helpers (zygotes,
//! renderers, the GPU and network services) overwrite their environment block with their
//! process title (`setproctitle`), so `/proc/PID/environ` no longer shows the mark. Their
//! command line always holds the unique `--user-data-dir=...`, even after they are orphaned,
//! so that is the second mark. Chromium's stderr goes to a file, which is polled for
//! `DevTools listening on ws://...`; one WebSocket (`tungstenite`, blocking) is opened to that
//! browser endpoint.
//!
//! [`Browser::new_page`] creates a tab with `Target.createTarget` and attaches to it with
//! `Target.attachToTarget {flatten: true}`: the page's commands then travel over the same socket,
//! tagged with the returned `sessionId`. Every command is a request with a fresh `id`; the reply
//! is the next message carrying that `id`. Events read meanwhile are dropped, except the page's
//! JavaScript exceptions, console errors and log entries (failed loads), which are kept
//! (see [`Page::js_errors`]) and quoted when a wait times out.
//!
//! Everything has a deadline: the socket has a read timeout, each command has one, and
//! [`Page::wait_for`] polls a JavaScript condition until it holds or its timeout passes.
//!
//! If Chromium is not installed, [`Browser::launch`] fails with a message saying how to install it:
//! tests should fail then, not pass silently.
use crate::proc::{Spawner, pid_alive};
use serde_json::{Value, json};
use std::cell::RefCell;
use std::fmt;
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::rc::Rc;
use std::time::{Duration, Instant};
use tungstenite::{Message, WebSocket};

/// How long a single CDP command may take (a loaded machine can be slow, but not this slow).
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(20);
/// How long Chromium may take to start and print its DevTools address.
pub const LAUNCH_TIMEOUT: Duration = Duration::from_secs(30);
/// The environment variable that overrides the browser binary (default: `chromium` on `PATH`).
pub const BROWSER_VAR: &str = "TESTKIT_CHROMIUM";
/// The window (and so screenshot) size.
const WINDOW: (u32, u32) = (1280, 800);

/// A failure with the context needed to understand it.
pub struct Error(String);

impl Error {
    fn new(msg: impl Into<String>) -> Self {
        Error(msg.into())
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

// `expect`/`unwrap` print Debug: make it the readable message, not a quoted string.
impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Error {}

pub type Result<T> = std::result::Result<T, Error>;

/// A headless Chromium; everything it started is killed (by PID) when this is dropped.
pub struct Browser {
    conn: Rc<RefCell<Conn>>,
    child: Child,
    procs: Procs,
    stderr_path: PathBuf,
    // Dropped last, after every process that used it is dead.
    _dir: tempfile::TempDir,
}

impl Browser {
    /// Starts headless Chromium with a fresh profile and connects to its DevTools endpoint.
    pub fn launch() -> Result<Browser> {
        let program = std::env::var_os(BROWSER_VAR).unwrap_or_else(|| "chromium".into());
        if !Path::new(&program).is_absolute() && find_on_path(&program).is_none() {
            return Err(Error::new(format!(
                "{} is not installed (not found on PATH): install the Debian package with \
                 `apt-get install -y --no-install-recommends chromium` (.ci/run does), or point \
                 ${BROWSER_VAR} at a Chromium binary",
                program.to_string_lossy()
            )));
        }
        let dir = tempfile::Builder::new()
            .prefix("testkit-chromium-")
            .tempdir()
            .map_err(|e| Error::new(format!("creating a temp dir for Chromium: {e}")))?;
        let profile_arg = format!("--user-data-dir={}", dir.path().join("profile").display());
        let stderr_path = dir.path().join("chromium.stderr");
        let stderr = std::fs::File::create(&stderr_path)
            .map_err(|e| Error::new(format!("creating {}: {e}", stderr_path.display())))?;
        let procs = Procs {
            spawner: Spawner::new(),
            profile_arg,
        };
        let mut cmd = procs.spawner.command(&program);
        cmd.args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--no-default-browser-check",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-extensions",
            "--hide-scrollbars",
            "--mute-audio",
            "--remote-debugging-port=0",
        ])
        .arg(format!("--window-size={},{}", WINDOW.0, WINDOW.1))
        .arg(&procs.profile_arg)
        .arg("about:blank")
        .current_dir(dir.path())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(stderr);
        let child = cmd.spawn().map_err(|e| {
            Error::new(format!(
                "starting {}: {e} (install the Debian package `chromium`)",
                program.to_string_lossy()
            ))
        })?;
        // From here on, a failure must not leave Chromium running: `Launching` kills on drop.
        let mut launching = Launching {
            child: Some(child),
            procs: &procs,
        };
        let ws_url = launching.wait_for_devtools_url(&stderr_path)?;
        let conn = Conn::connect(&ws_url).map_err(|e| {
            Error::new(format!(
                "{e}\n--- chromium stderr (tail) ---\n{}",
                tail(&stderr_path)
            ))
        })?;
        let child = launching.disarm();
        Ok(Browser {
            conn: Rc::new(RefCell::new(conn)),
            child,
            procs,
            stderr_path,
            _dir: dir,
        })
    }

    /// A new tab showing `about:blank`.
    pub fn new_page(&self) -> Result<Page> {
        let mut conn = self.conn.borrow_mut();
        let target = conn.call(None, "Target.createTarget", json!({"url": "about:blank"}))?;
        let target_id = str_field(&target, "targetId", "Target.createTarget")?;
        let attached = conn.call(
            None,
            "Target.attachToTarget",
            json!({"targetId": target_id, "flatten": true}),
        )?;
        let session = str_field(&attached, "sessionId", "Target.attachToTarget")?;
        // Runtime: JavaScript exceptions and console calls; Log: failed loads (e.g. a 401).
        conn.call(Some(&session), "Runtime.enable", json!({}))?;
        conn.call(Some(&session), "Log.enable", json!({}))?;
        // A fixed viewport, so screenshots do not depend on the headless window's decorations.
        conn.call(
            Some(&session),
            "Emulation.setDeviceMetricsOverride",
            json!({"width": WINDOW.0, "height": WINDOW.1, "deviceScaleFactor": 1, "mobile": false}),
        )?;
        drop(conn);
        Ok(Page {
            conn: Rc::clone(&self.conn),
            session,
        })
    }

    /// PIDs of Chromium's live processes (the browser and its helpers).
    pub fn pids(&self) -> Vec<i32> {
        self.procs.pids()
    }

    /// Chromium's stderr so far (for failure messages).
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        self.procs.kill_all();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// How to find every process of one Chromium.
struct Procs {
    /// Marks the browser process (and anything that keeps its environment block).
    spawner: Spawner,
    /// `--user-data-dir=<unique temp dir>`: in every Chromium process's command line.
    profile_arg: String,
}

impl Procs {
    /// Live processes carrying either mark.
    fn pids(&self) -> Vec<i32> {
        let mut pids = self.spawner.pids();
        pids.extend(pids_with_arg(&self.profile_arg));
        pids.sort_unstable();
        pids.dedup();
        pids
    }

    /// SIGKILLs every such process, repeatedly (a zygote may fork meanwhile), until none is
    /// left or 5 s pass.
    fn kill_all(&self) {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let pids = self.pids();
            if pids.is_empty() || Instant::now() > deadline {
                return;
            }
            for pid in pids {
                // SAFETY: kill(2) has no memory-safety preconditions.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// Live processes (other than this one) with `arg` in their command line, either as one
/// argument or inside a rewritten process title (`setproctitle` joins the arguments by spaces).
/// `arg` holds a unique temp dir, so a substring match is exact enough.
fn pids_with_arg(arg: &str) -> Vec<i32> {
    let me = std::process::id() as i32;
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|&pid| pid != me)
        .filter(|&pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|c| c.windows(arg.len()).any(|w| w == arg.as_bytes()))
        })
        .filter(|&pid| pid_alive(pid))
        .collect()
}

/// Chromium while it starts: killed, with its helpers, if launching fails half way.
struct Launching<'a> {
    child: Option<Child>,
    procs: &'a Procs,
}

impl Launching<'_> {
    /// Polls Chromium's stderr for its `DevTools listening on ws://...` line.
    fn wait_for_devtools_url(&mut self, stderr_path: &Path) -> Result<String> {
        let deadline = Instant::now() + LAUNCH_TIMEOUT;
        loop {
            let text = std::fs::read_to_string(stderr_path).unwrap_or_default();
            if let Some(url) = text.lines().find_map(|l| {
                l.split_once("DevTools listening on ")
                    .map(|(_, u)| u.trim().to_string())
            }) {
                return Ok(url);
            }
            if let Some(Ok(Some(status))) = self.child.as_mut().map(Child::try_wait) {
                return Err(Error::new(format!(
                    "chromium exited ({status}) before listening for DevTools\n\
                     --- chromium stderr (tail) ---\n{}",
                    tail(stderr_path)
                )));
            }
            if Instant::now() >= deadline {
                return Err(Error::new(format!(
                    "chromium did not print its DevTools address within {LAUNCH_TIMEOUT:?}\n\
                     --- chromium stderr (tail) ---\n{}",
                    tail(stderr_path)
                )));
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    /// Launching succeeded: hands the child over to the [`Browser`].
    fn disarm(mut self) -> Child {
        self.child.take().expect("disarmed once")
    }
}

impl Drop for Launching<'_> {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            self.procs.kill_all();
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The last lines of a log file.
fn tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}

fn find_on_path(program: &std::ffi::OsStr) -> Option<PathBuf> {
    if Path::new(program).components().count() > 1 {
        return Some(PathBuf::from(program));
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(program))
        .find(|p| p.is_file())
}

fn str_field(v: &Value, field: &str, method: &str) -> Result<String> {
    v[field]
        .as_str()
        .map(str::to_string)
        .ok_or_else(|| Error::new(format!("{method} returned no {field}: {v}")))
}

/// The WebSocket to the browser endpoint, and what the pages reported meanwhile.
struct Conn {
    ws: WebSocket<TcpStream>,
    next_id: u64,
    /// Per session: JavaScript exceptions, console errors and log entries, in order.
    page_errors: Vec<(String, String)>,
}

impl Conn {
    fn connect(url: &str) -> Result<Conn> {
        let hostport = url
            .strip_prefix("ws://")
            .and_then(|r| r.split('/').next())
            .ok_or_else(|| Error::new(format!("unexpected DevTools address {url:?}")))?;
        let addr: SocketAddr = hostport
            .to_socket_addrs()
            .ok()
            .and_then(|mut a| a.next())
            .ok_or_else(|| Error::new(format!("cannot resolve {hostport} (from {url})")))?;
        let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(10))
            .map_err(|e| Error::new(format!("connecting to DevTools at {addr}: {e}")))?;
        // Reads wake up at least this often, so every wait can check its deadline.
        stream
            .set_read_timeout(Some(Duration::from_millis(200)))
            .and_then(|()| stream.set_write_timeout(Some(COMMAND_TIMEOUT)))
            .and_then(|()| stream.set_nodelay(true))
            .map_err(|e| Error::new(format!("configuring the DevTools socket: {e}")))?;
        let ws = handshake(url, stream)?;
        Ok(Conn {
            ws,
            next_id: 0,
            page_errors: Vec::new(),
        })
    }

    /// Sends `method` (to `session`, or to the browser) and waits for its reply.
    fn call(&mut self, session: Option<&str>, method: &str, params: Value) -> Result<Value> {
        self.next_id += 1;
        let id = self.next_id;
        let mut msg = json!({"id": id, "method": method, "params": params});
        if let Some(s) = session {
            msg["sessionId"] = json!(s);
        }
        self.ws
            .send(Message::text(msg.to_string()))
            .map_err(|e| Error::new(format!("sending {method} to Chromium: {e}")))?;
        let deadline = Instant::now() + COMMAND_TIMEOUT;
        loop {
            if Instant::now() >= deadline {
                return Err(Error::new(format!(
                    "Chromium did not answer {method} within {COMMAND_TIMEOUT:?}"
                )));
            }
            let text = match self.ws.read() {
                Ok(Message::Text(t)) => t.as_str().to_string(),
                Ok(Message::Binary(b)) => String::from_utf8_lossy(&b).into_owned(),
                Ok(Message::Close(frame)) => {
                    return Err(Error::new(format!(
                        "Chromium closed the DevTools connection while we waited for {method}: \
                         {frame:?}"
                    )));
                }
                Ok(_) => continue,
                Err(tungstenite::Error::Io(e))
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    continue;
                }
                Err(e) => {
                    return Err(Error::new(format!(
                        "reading Chromium's reply to {method}: {e}"
                    )));
                }
            };
            let reply: Value = serde_json::from_str(&text).map_err(|e| {
                Error::new(format!("Chromium sent invalid JSON ({e}): {text:.200}"))
            })?;
            if reply["id"].as_u64() == Some(id) {
                if let Some(err) = reply.get("error") {
                    return Err(Error::new(format!("{method} failed: {err}")));
                }
                return Ok(reply["result"].clone());
            }
            self.note_event(&reply);
        }
    }

    /// Keeps the events worth quoting when something goes wrong.
    fn note_event(&mut self, ev: &Value) {
        let Some(session) = ev["sessionId"].as_str() else {
            return;
        };
        let p = &ev["params"];
        let line = match ev["method"].as_str() {
            Some("Runtime.exceptionThrown") => {
                let d = &p["exceptionDetails"];
                let what = d["exception"]["description"]
                    .as_str()
                    .or(d["text"].as_str())
                    .unwrap_or("?");
                format!(
                    "uncaught exception: {what} ({}:{})",
                    d["url"].as_str().unwrap_or(""),
                    d["lineNumber"]
                )
            }
            Some("Runtime.consoleAPICalled") if p["type"] == "error" => {
                let args: Vec<String> = p["args"]
                    .as_array()
                    .map(|a| a.iter().map(remote_object_text).collect())
                    .unwrap_or_default();
                format!("console.error: {}", args.join(" "))
            }
            Some("Log.entryAdded") if p["entry"]["level"] == "error" => {
                let e = &p["entry"];
                format!(
                    "{}: {} {}",
                    e["source"].as_str().unwrap_or("log"),
                    e["text"].as_str().unwrap_or(""),
                    e["url"].as_str().unwrap_or("")
                )
            }
            _ => return,
        };
        self.page_errors.push((session.to_string(), line));
    }
}

/// The client side of the WebSocket handshake, resumed after read timeouts until a deadline.
fn handshake(url: &str, stream: TcpStream) -> Result<WebSocket<TcpStream>> {
    let deadline = Instant::now() + COMMAND_TIMEOUT;
    let mut attempt = tungstenite::client(url, stream);
    loop {
        match attempt {
            Ok((ws, _response)) => return Ok(ws),
            // The read timeout interrupted the handshake: resume it until the deadline.
            Err(tungstenite::HandshakeError::Interrupted(mid)) if Instant::now() < deadline => {
                attempt = mid.handshake();
            }
            Err(tungstenite::HandshakeError::Interrupted(_)) => {
                return Err(Error::new(format!(
                    "the DevTools WebSocket handshake with {url} took over {COMMAND_TIMEOUT:?}"
                )));
            }
            Err(tungstenite::HandshakeError::Failure(e)) => {
                return Err(Error::new(format!(
                    "the DevTools WebSocket handshake with {url} failed: {e}"
                )));
            }
        }
    }
}

/// A console argument as text (a string's value, else its description).
fn remote_object_text(o: &Value) -> String {
    match &o["value"] {
        Value::String(s) => s.clone(),
        Value::Null => o["description"].as_str().unwrap_or("").to_string(),
        v => v.to_string(),
    }
}

/// One tab.
pub struct Page {
    conn: Rc<RefCell<Conn>>,
    session: String,
}

impl Page {
    fn call(&self, method: &str, params: Value) -> Result<Value> {
        self.conn
            .borrow_mut()
            .call(Some(&self.session), method, params)
    }

    /// Makes every request of this page to a URL matching one of `patterns` (`*` is a
    /// wildcard) fail, as if the server did not answer: shows what a page does on its own.
    /// Blocked requests show up in [`Page::js_errors`] as failed loads.
    pub fn block_urls(&self, patterns: &[&str]) -> Result<()> {
        self.call("Network.enable", json!({}))?;
        self.call("Network.setBlockedURLs", json!({ "urls": patterns }))?;
        Ok(())
    }

    /// Loads `url` and waits until the new document has finished loading.
    pub fn navigate(&self, url: &str) -> Result<()> {
        // A flag on the old document: gone once the new one is there.
        self.eval("window.__testkitOldDocument = true")?;
        let r = self.call("Page.navigate", json!({"url": url}))?;
        if let Some(err) = r["errorText"].as_str() {
            return Err(Error::new(format!("loading {url} failed: {err}")));
        }
        self.wait_for(
            "!window.__testkitOldDocument && document.readyState === 'complete'",
            COMMAND_TIMEOUT,
        )
        .map_err(|e| Error::new(format!("loading {url}: {e}")))?;
        Ok(())
    }

    /// Evaluates `js` in the page (awaiting a promise) and returns its value as JSON
    /// (`null` for `undefined`). A thrown exception is an error.
    pub fn eval(&self, js: &str) -> Result<Value> {
        let r = self.call(
            "Runtime.evaluate",
            json!({
                "expression": js,
                "returnByValue": true,
                "awaitPromise": true,
                "userGesture": true,
            }),
        )?;
        if let Some(d) = r.get("exceptionDetails") {
            let what = d["exception"]["description"]
                .as_str()
                .or(d["text"].as_str())
                .unwrap_or("unknown exception");
            return Err(Error::new(format!("evaluating `{js}` threw: {what}")));
        }
        Ok(r["result"]["value"].clone())
    }

    /// Polls `js` until it evaluates to a truthy value, and returns that value. Evaluation
    /// errors (e.g. during a navigation) count as "not yet"; the last one is reported on timeout.
    pub fn wait_for(&self, js: &str, timeout: Duration) -> Result<Value> {
        let deadline = Instant::now() + timeout;
        let mut last;
        loop {
            match self.eval(js) {
                Ok(v) if truthy(&v) => return Ok(v),
                Ok(v) => last = format!("last value {v}"),
                Err(e) => last = format!("last error: {e}"),
            }
            if Instant::now() >= deadline {
                return Err(Error::new(format!(
                    "`{js}` did not become true within {timeout:?} ({last}){}",
                    self.errors_note()
                )));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Clicks the first element matching the CSS `selector`; an error if none does.
    pub fn click(&self, selector: &str) -> Result<()> {
        let sel = json!(selector).to_string();
        self.eval(&format!(
            "(() => {{ const e = document.querySelector({sel}); \
             if (!e) throw new Error('no element matches ' + {sel}); e.click(); return true; }})()"
        ))
        .map(drop)
    }

    /// The `textContent` of the first element matching `selector` (`None` if there is none).
    pub fn text(&self, selector: &str) -> Result<Option<String>> {
        let sel = json!(selector).to_string();
        let v = self.eval(&format!(
            "(() => {{ const e = document.querySelector({sel}); return e ? e.textContent : null; }})()"
        ))?;
        Ok(v.as_str().map(str::to_string))
    }

    /// Saves a PNG screenshot of the viewport to `path` (creating its parent folders).
    pub fn screenshot(&self, path: &Path) -> Result<()> {
        let r = self.call("Page.captureScreenshot", json!({"format": "png"}))?;
        let data = r["data"]
            .as_str()
            .ok_or_else(|| Error::new(format!("Page.captureScreenshot returned no data: {r}")))?;
        let png =
            base64_decode(data).map_err(|e| Error::new(format!("decoding the screenshot: {e}")))?;
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .map_err(|e| Error::new(format!("creating {}: {e}", dir.display())))?;
        }
        std::fs::write(path, png)
            .map_err(|e| Error::new(format!("writing {}: {e}", path.display())))
    }

    /// JavaScript exceptions, console errors and failed loads this page reported so far.
    pub fn js_errors(&self) -> Vec<String> {
        self.conn
            .borrow()
            .page_errors
            .iter()
            .filter(|(s, _)| *s == self.session)
            .map(|(_, l)| l.clone())
            .collect()
    }

    fn errors_note(&self) -> String {
        let errors = self.js_errors();
        if errors.is_empty() {
            String::new()
        } else {
            format!("\npage errors:\n  {}", errors.join("\n  "))
        }
    }
}

/// JavaScript truthiness of a JSON value.
fn truthy(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0 && !f.is_nan()),
        Value::String(s) => !s.is_empty(),
        Value::Array(_) | Value::Object(_) => true,
    }
}

/// Standard base64 (with or without padding; whitespace ignored).
pub fn base64_decode(s: &str) -> std::result::Result<Vec<u8>, String> {
    fn val(c: u8) -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    }
    let mut out = Vec::with_capacity(s.len() / 4 * 3);
    let (mut acc, mut bits) = (0u32, 0u32);
    for (i, c) in s.bytes().enumerate() {
        if c.is_ascii_whitespace() {
            continue;
        }
        if c == b'=' {
            break;
        }
        let v = val(c).ok_or_else(|| format!("invalid base64 byte {c:#04x} at {i}"))?;
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_round_trips_known_vectors() {
        for (enc, dec) in [
            ("", ""),
            ("Zg==", "f"),
            ("Zm8=", "fo"),
            ("Zm9v", "foo"),
            ("Zm9vYg==", "foob"),
            ("Zm9vYmE=", "fooba"),
            ("Zm9vYmFy", "foobar"),
            ("Zm9v\nYmFy", "foobar"),
        ] {
            assert_eq!(base64_decode(enc).unwrap(), dec.as_bytes(), "{enc}");
        }
        assert_eq!(base64_decode("/+8=").unwrap(), [0xff, 0xef]);
        assert!(base64_decode("Zm9v!").is_err());
    }

    #[test]
    fn truthiness_follows_javascript() {
        for v in [json!(null), json!(false), json!(0), json!(""), json!(0.0)] {
            assert!(!truthy(&v), "{v}");
        }
        for v in [json!(true), json!(1), json!("x"), json!([]), json!({})] {
            assert!(truthy(&v), "{v}");
        }
    }
}
