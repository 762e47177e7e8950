//! Server-Sent Events: the line format (a pure parser) and a client that streams them from
//! an HTTP/1.1 `GET` over hyper.
//!
//! Only what the supervisor sends is needed: `event:` and `data:` fields, comments (`:` lines,
//! its keep-alives), blank lines ending an event; `id:` and `retry:` are read and ignored.
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// One event: its type (`message` when none was named) and its data lines joined by `\n`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub kind: String,
    pub data: String,
}

/// Longest line accepted: a peer sending an endless line is not a supervisor.
const MAX_LINE: usize = 1 << 20;

/// Bytes in, events out.
#[derive(Debug, Default)]
pub struct Parser {
    buf: BytesMut,
    kind: Option<String>,
    data: Option<String>,
}

impl Parser {
    /// Adds bytes; returns every event they complete.
    pub fn push(&mut self, bytes: &[u8]) -> Result<Vec<Event>, String> {
        self.buf.extend_from_slice(bytes);
        let mut out = Vec::new();
        while let Some(end) = self.buf.iter().position(|b| *b == b'\n') {
            let line = self.buf.split_to(end + 1);
            let mut line = &line[..end];
            if line.last() == Some(&b'\r') {
                line = &line[..line.len() - 1];
            }
            let line = String::from_utf8_lossy(line);
            if let Some(e) = self.line(&line) {
                out.push(e);
            }
        }
        if self.buf.len() > MAX_LINE {
            return Err(format!("an event-stream line longer than {MAX_LINE} bytes"));
        }
        Ok(out)
    }

    fn line(&mut self, line: &str) -> Option<Event> {
        if line.is_empty() {
            let data = self.data.take();
            let kind = self.kind.take();
            return data.map(|data| Event {
                kind: kind.unwrap_or_else(|| "message".into()),
                data,
            });
        }
        if line.starts_with(':') {
            return None;
        }
        let (field, value) = line.split_once(':').unwrap_or((line, ""));
        let value = value.strip_prefix(' ').unwrap_or(value);
        match field {
            "event" => self.kind = Some(value.to_string()),
            "data" => match &mut self.data {
                Some(d) => {
                    d.push('\n');
                    d.push_str(value);
                }
                None => self.data = Some(value.to_string()),
            },
            _ => {}
        }
        None
    }
}

/// An open event stream.
pub struct Stream {
    body: Incoming,
    parser: Parser,
    pending: std::collections::VecDeque<Event>,
    idle_timeout: Duration,
}

impl Stream {
    /// Opens `GET path` on `authority` (`host:port`) with `Accept: text/event-stream`. Anything
    /// but 200 is an error whose message says what the peer answered.
    pub async fn open(
        authority: &str,
        path: &str,
        token: Option<&str>,
        connect_timeout: Duration,
        idle_timeout: Duration,
    ) -> Result<Stream, String> {
        let url = format!("http://{authority}{path}");
        let tcp = tokio::time::timeout(connect_timeout, TcpStream::connect(authority))
            .await
            .map_err(|_| format!("{url}: no connection within {connect_timeout:?}"))?
            .map_err(|e| format!("{url}: {e}"))?;
        let _ = tcp.set_nodelay(true);
        let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
            .await
            .map_err(|e| format!("{url}: {e}"))?;
        tokio::spawn(async move {
            // Ends when the stream is dropped or the peer goes away; either is handled by the
            // reader, which sees the body end.
            let _ = conn.await;
        });
        let mut req = http::Request::get(path)
            .header(http::header::HOST, authority)
            .header(http::header::ACCEPT, "text/event-stream")
            .header(http::header::USER_AGENT, "proxy");
        if let Some(t) = token {
            req = req.header(http::header::AUTHORIZATION, format!("Bearer {t}"));
        }
        let req = req
            .body(Empty::<Bytes>::new())
            .map_err(|e| format!("{url}: {e}"))?;
        let resp = tokio::time::timeout(connect_timeout, send.send_request(req))
            .await
            .map_err(|_| format!("{url}: no answer within {connect_timeout:?}"))?
            .map_err(|e| format!("{url}: {e}"))?;
        let status = resp.status();
        if status != http::StatusCode::OK {
            let body = tokio::time::timeout(connect_timeout, resp.into_body().collect())
                .await
                .ok()
                .and_then(Result::ok)
                .map(|b| String::from_utf8_lossy(&b.to_bytes()).trim().to_string())
                .unwrap_or_default();
            let hint = if status == http::StatusCode::UNAUTHORIZED {
                " (check --backends-token-file)"
            } else {
                ""
            };
            return Err(format!("{url}: answered {status}{hint}: {body}"));
        }
        Ok(Stream {
            body: resp.into_body(),
            parser: Parser::default(),
            pending: Default::default(),
            idle_timeout,
        })
    }

    /// The next event; `Ok(None)` when the peer ended the stream. Silence longer than the idle
    /// timeout (the supervisor sends a keep-alive every 15 s) is an error.
    pub async fn next(&mut self) -> Result<Option<Event>, String> {
        loop {
            if let Some(e) = self.pending.pop_front() {
                return Ok(Some(e));
            }
            let frame = tokio::time::timeout(self.idle_timeout, self.body.frame())
                .await
                .map_err(|_| format!("the event stream was silent for {:?}", self.idle_timeout))?;
            match frame {
                None => return Ok(None),
                Some(Err(e)) => return Err(format!("the event stream broke: {e}")),
                Some(Ok(f)) => {
                    if let Ok(mut data) = f.into_data() {
                        let bytes = data.copy_to_bytes(data.remaining());
                        self.pending.extend(self.parser.push(&bytes)?);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_split_anywhere() {
        let text = ": keep-alive\n\nevent: task\ndata: {\"a\":1}\n\nevent: lagged\r\ndata: x\r\ndata: y\r\n\r\ndata:plain\n\n";
        let whole = Parser::default().push(text.as_bytes()).expect("parses");
        let mut bytewise = Vec::new();
        let mut p = Parser::default();
        for b in text.as_bytes() {
            bytewise.extend(p.push(&[*b]).expect("parses"));
        }
        assert_eq!(whole, bytewise);
        assert_eq!(
            whole,
            vec![
                Event {
                    kind: "task".into(),
                    data: "{\"a\":1}".into()
                },
                Event {
                    kind: "lagged".into(),
                    data: "x\ny".into()
                },
                Event {
                    kind: "message".into(),
                    data: "plain".into()
                },
            ]
        );
    }

    #[test]
    fn an_endless_line_is_refused() {
        let mut p = Parser::default();
        let chunk = vec![b'a'; 1 << 16];
        let mut failed = false;
        for _ in 0..20 {
            if p.push(&chunk).is_err() {
                failed = true;
                break;
            }
        }
        assert!(failed);
    }
}
