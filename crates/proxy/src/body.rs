//! The bodies the proxy moves: requests to backends, and answers to clients. Both stream:
//! nothing is buffered beyond the frame in hand.
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;

use crate::backends::{Backend, InFlight};
use crate::pool::Sender;

/// A request body on its way to a backend. `Empty` can be sent again on another backend.
pub enum UpBody {
    Empty,
    Stream(Incoming),
}

impl Body for UpBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        match self.get_mut() {
            UpBody::Empty => Poll::Ready(None),
            UpBody::Stream(b) => Pin::new(b).poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            UpBody::Empty => true,
            UpBody::Stream(b) => b.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            UpBody::Empty => SizeHint::with_exact(0),
            UpBody::Stream(b) => b.size_hint(),
        }
    }
}

/// An answer on its way to a client: made here (errors, admin pages), or relayed.
pub enum DownBody {
    Full(Option<Bytes>),
    Relay(Relay),
}

impl DownBody {
    pub fn text(s: impl Into<Bytes>) -> DownBody {
        DownBody::Full(Some(s.into()))
    }
}

impl Body for DownBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        match self.get_mut() {
            DownBody::Full(b) => Poll::Ready(b.take().map(|b| Ok(Frame::data(b)))),
            DownBody::Relay(r) => Pin::new(r).poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            DownBody::Full(b) => b.is_none(),
            DownBody::Relay(r) => r.inner.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            DownBody::Full(Some(b)) => SizeHint::with_exact(b.len() as u64),
            DownBody::Full(None) => SizeHint::with_exact(0),
            DownBody::Relay(r) => r.inner.size_hint(),
        }
    }
}

/// A backend's answer being relayed. Holds the backend's connection and its in-flight slot
/// until the body ends: then the connection goes back to the pool. Dropped before the end (the
/// client went away), the connection is closed instead, since it is mid-answer.
pub struct Relay {
    inner: Incoming,
    lease: Option<Lease>,
}

struct Lease {
    sender: Sender,
    backend: Arc<Backend>,
    _slot: InFlight,
}

impl Relay {
    pub fn new(inner: Incoming, sender: Sender, backend: Arc<Backend>, slot: InFlight) -> Relay {
        let mut r = Relay {
            inner,
            lease: Some(Lease {
                sender,
                backend,
                _slot: slot,
            }),
        };
        // No body at all (HEAD, 204, 304, Content-Length: 0): the server may never poll it.
        if r.inner.is_end_stream() {
            r.release();
        }
        r
    }

    fn release(&mut self) {
        if let Some(l) = self.lease.take() {
            l.backend.pool.put(l.sender);
        }
    }
}

impl Body for Relay {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.inner).poll_frame(cx);
        match &r {
            Poll::Ready(None) => this.release(),
            Poll::Ready(Some(Ok(_))) if this.inner.is_end_stream() => this.release(),
            Poll::Ready(Some(Err(_))) => this.lease = None,
            _ => {}
        }
        r
    }
}
