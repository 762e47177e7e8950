//! `supervisor ctl logs NAME [-f] [--stderr] [-n N]`: a task's last lines, and with `-f`
//! everything appended after them until ctl is stopped (like `supervisorctl tail -f`).
//!
//! The answer is written to standard output as it arrives, so this does not use the
//! read-to-the-end client of the other commands but hyper's HTTP/1 client connection, whose
//! body comes frame by frame. The same checks as for every other command apply: the instance
//! asked for, the token, the instance that answered.
use crate::api::{EXPECT_HEADER, INSTANCE_HEADER};
use crate::ctl_target::Target;
use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use std::io::Write;
use std::path::Path;
use std::time::Duration;

/// What `ctl logs` asks for.
pub struct LogsAsk {
    pub follow: bool,
    pub stderr: bool,
    pub lines: usize,
}

/// Asks for the logs and copies the answer to standard output until it ends.
pub fn run(
    target: &Target,
    token: Option<&str>,
    given_token_file: Option<&Path>,
    ask: &LogsAsk,
    encoded_name: &str,
) -> Result<(), String> {
    let path = format!(
        "{}/tasks/{encoded_name}/logs?stream={}&tail={}{}",
        target.base.path.trim_end_matches('/'),
        if ask.stderr { "stderr" } else { "stdout" },
        ask.lines,
        if ask.follow { "&follow=1" } else { "" }
    );
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start runtime: {e}"))?;
    rt.block_on(stream(target, token, given_token_file, &path))
}

async fn stream(
    target: &Target,
    token: Option<&str>,
    given_token_file: Option<&Path>,
    path: &str,
) -> Result<(), String> {
    let authority = &target.base.authority;
    let connect = async {
        let tcp = tokio::net::TcpStream::connect(authority.as_str()).await?;
        hyper::client::conn::http1::handshake(TokioIo::new(tcp))
            .await
            .map_err(std::io::Error::other)
    };
    let (mut sender, conn) = tokio::time::timeout(Duration::from_secs(10), connect)
        .await
        .map_err(|_| target.unreachable("no connection within 10 s"))?
        .map_err(|e| target.unreachable(&e.to_string()))?;
    tokio::spawn(conn);
    let mut req = hyper::Request::get(path)
        .header(hyper::header::HOST, authority.as_str())
        .header(hyper::header::USER_AGENT, "supervisor ctl");
    if let Some(t) = token {
        req = req.header(hyper::header::AUTHORIZATION, format!("Bearer {t}"));
    }
    if let Some(i) = target.expected_instance() {
        req = req.header(EXPECT_HEADER, i);
    }
    let req = req
        .body(Empty::<Bytes>::new())
        .map_err(|e| format!("cannot build the request for {path}: {e}"))?;
    let mut resp = tokio::time::timeout(Duration::from_secs(30), sender.send_request(req))
        .await
        .map_err(|_| target.unreachable("no answer within 30 s"))?
        .map_err(|e| target.unreachable(&e.to_string()))?;
    let status = resp.status().as_u16();
    if let Some(want) = target.expected_instance() {
        let got = resp
            .headers()
            .get(INSTANCE_HEADER)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("none");
        if got != want && status != 412 {
            return Err(format!(
                "the answer from {} came from instance {got}, not {want}: whatever answers there is not that supervisor (HTTP {status} to GET {path})",
                target.shown
            ));
        }
    }
    if status != 200 {
        let body = resp
            .into_body()
            .collect()
            .await
            .map(|b| String::from_utf8_lossy(&b.to_bytes()).into_owned())
            .unwrap_or_default();
        let json: serde_json::Value =
            serde_json::from_str(&body).unwrap_or(serde_json::Value::String(body.clone()));
        let error = json
            .get("error")
            .and_then(|e| e.as_str())
            .unwrap_or(&body)
            .to_string();
        return Err(match status {
            412 => target.wrong_instance(&json),
            401 => target.needs_token(given_token_file, &error),
            _ => format!("{error} (HTTP {status})"),
        });
    }
    let mut out = std::io::stdout().lock();
    while let Some(frame) = resp.body_mut().frame().await {
        let frame =
            frame.map_err(|e| format!("the log stream from {} broke: {e}", target.shown))?;
        if let Some(data) = frame.data_ref() {
            // A closed stdout (`| head`) ends ctl quietly.
            if out.write_all(data).and_then(|()| out.flush()).is_err() {
                return Ok(());
            }
        }
    }
    Ok(())
}
