//! What is recorded of a request, and when: its pending event travels with
//! the answer's body ([`Tracked`]) and is recorded when that body ends or is
//! dropped, or, for a request dropped before it had an answer, when its
//! [`Unanswered`] is.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use capstan_events::Event;
use http::header::{self, HeaderValue};
use http::{Response, StatusCode};
use http_body::{Body, Frame, SizeHint};
use sha2::{Digest, Sha256};
use tokio::sync::oneshot;

use crate::metrics::ErrorLabels;
use crate::pool::Snapshot;
use crate::proxy::Proxy;
use crate::routing::Cohort;
use crate::upstream::PooledBody;

/// What is known about a request when its response body ends. Boxed from
/// routing to the end of the body: the response that carries it is moved
/// through every layer of the connection, and a pointer is cheaper to move
/// than the event.
pub(crate) struct Pending {
    pub(crate) event: Event,
    pub(crate) cohort: Cohort,
    /// The table the request was routed with, and the release's pool in it.
    pub(crate) snap: Arc<Snapshot>,
    pub(crate) release: usize,
    pub(crate) started: Instant,
    pub(crate) proxy: Arc<Proxy>,
    /// Mirrored: the event goes to the mirror task with the body hash.
    pub(crate) mirror: Option<oneshot::Sender<crate::mirror::UserAnswer>>,
    /// The client left before the answer's body ended: no comparison.
    pub(crate) cut: bool,
}

impl Pending {
    fn finish(mut self: Box<Self>, bytes_out: u64, hash: Option<[u8; 32]>, body_error: bool) {
        let e = &mut self.event;
        e.bytes_out = bytes_out;
        e.duration_ms = self.started.elapsed().as_secs_f64() * 1000.0;
        if body_error && e.error.is_none() {
            e.error = Some("upstream_body".into());
        }
        let m = &self.proxy.metrics;
        let cohort = self.cohort.as_str();
        let pool = &self.snap.pools[self.release];
        pool.requests(self.cohort, e.status).inc();
        pool.latency(self.cohort).observe(e.duration_ms / 1000.0);
        if let Some(kind) = e.error.as_deref() {
            let kind = match kind {
                "connect" => "connect",
                "timeout" => "timeout",
                "upstream_5xx" => "upstream_5xx",
                "no_upstream" => "no_upstream",
                "draining" => "draining",
                PROXY_PANIC => PROXY_PANIC,
                // The client's own failures, kept out of the release's errors.
                k if capstan_events::CLIENT_ERROR_KINDS.contains(&k) => "client",
                _ => "upstream",
            };
            m.errors
                .get_or_create(&ErrorLabels {
                    release: e.release.to_string(),
                    cohort,
                    kind,
                })
                .inc();
        }
        if let Some(tx) = self.mirror.take() {
            let _ = tx.send(crate::mirror::UserAnswer {
                event: self.event,
                hash,
                cut: self.cut,
            });
        } else if let Some(r) = &self.proxy.recorder {
            crate::local_events::record(r, self.event);
        }
    }
}

/// The response body: the upstream's stream (or a fixed body) that counts,
/// optionally hashes, and records the event when it ends or is dropped.
pub struct Tracked {
    upstream: Option<PooledBody>,
    fixed: Option<Bytes>,
    bytes: u64,
    hasher: Option<Sha256>,
    limit: usize,
    errored: bool,
    pending: Option<Box<Pending>>,
}

impl Tracked {
    /// The body of an upstream's answer, hashed (up to `limit` bytes) when
    /// the request is mirrored, for the comparison.
    pub(crate) fn streaming(upstream: PooledBody, pending: Box<Pending>, limit: usize) -> Self {
        Self {
            upstream: Some(upstream),
            fixed: None,
            bytes: 0,
            hasher: pending.mirror.is_some().then(Sha256::new),
            limit,
            errored: false,
            pending: Some(pending),
        }
    }

    fn done(&mut self) {
        if let Some(p) = self.pending.take() {
            let hash = self.hasher.take().map(|h| h.finalize().into());
            p.finish(self.bytes, hash, self.errored);
        }
    }

    fn count(&mut self, data: &Bytes) {
        self.bytes += data.len() as u64;
        if let Some(h) = &mut self.hasher {
            if self.bytes > self.limit as u64 {
                self.hasher = None;
            } else {
                h.update(data);
            }
        }
    }
}

impl Body for Tracked {
    type Data = Bytes;
    type Error = crate::upstream::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        if let Some(b) = this.fixed.take() {
            this.count(&b);
            return Poll::Ready(Some(Ok(Frame::data(b))));
        }
        let Some(inner) = this.upstream.as_mut() else {
            this.done();
            return Poll::Ready(None);
        };
        match Pin::new(inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(d) = frame.data_ref() {
                    this.count(d);
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => {
                this.errored = true;
                this.done();
                Poll::Ready(Some(Err(e)))
            }
            Poll::Ready(None) => {
                this.upstream = None;
                this.done();
                Poll::Ready(None)
            }
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.fixed.is_none() && self.upstream.as_ref().is_none_or(Body::is_end_stream)
    }

    fn size_hint(&self) -> SizeHint {
        match (&self.fixed, &self.upstream) {
            (Some(b), _) => SizeHint::with_exact(b.len() as u64),
            (None, Some(i)) => i.size_hint(),
            (None, None) => SizeHint::with_exact(0),
        }
    }
}

impl Drop for Tracked {
    fn drop(&mut self) {
        // The upstream's answer dropped before its end: the client went
        // away in the middle of it. What it got is no answer to compare
        // with a shadow's, and the cut is the client's, not the release's.
        // Unless it is dropped because streaming it panicked: then the proxy
        // failed the client.
        let unfinished = self.upstream.as_ref().is_some_and(|u| !u.is_end_stream());
        if let Some(p) = self.pending.as_mut().filter(|_| unfinished) {
            self.hasher = None;
            p.cut = true;
            if crate::unwind::handling_panicked() {
                p.event.error = Some(PROXY_PANIC.into());
            } else {
                p.event.error.get_or_insert_with(|| "client_cancel".into());
            }
        }
        self.done();
    }
}

pub(crate) fn fixed(
    status: StatusCode,
    msg: String,
    pending: Option<Box<Pending>>,
) -> Response<Tracked> {
    let mut r = Response::new(Tracked {
        upstream: None,
        fixed: (!msg.is_empty()).then(|| Bytes::from(msg)),
        bytes: 0,
        hasher: None,
        limit: 0,
        errored: false,
        pending,
    });
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

/// capstan's own answer to a request it could not forward: `status` with
/// `{"error": kind, "message": message}`, recorded with that status and error.
pub(crate) fn refused(
    status: StatusCode,
    kind: &str,
    message: &str,
    mut pending: Box<Pending>,
) -> Response<Tracked> {
    pending.event.status = status.as_u16();
    pending.event.error = Some(kind.into());
    fixed(status, error_json(kind, message), Some(pending))
}

pub(crate) fn error_json(kind: &str, message: &str) -> String {
    serde_json::json!({ "error": kind, "message": message }).to_string()
}

/// A request's pending event until its answer takes it. Dropped with it
/// still inside, the request was cancelled before it had an answer (an
/// HTTP/2 client reset the stream, the drain bound passed): it is
/// recorded then, as `499` `client_cancel` with the time it had taken, so
/// the slowest requests do not vanish from the events.
pub(crate) struct Unanswered(pub(crate) Option<Box<Pending>>);

impl Unanswered {
    /// The pending event, for the answer that carries it from here on.
    pub(crate) fn take(&mut self) -> Box<Pending> {
        self.0.take().expect("a request is answered once")
    }
}

impl std::ops::Deref for Unanswered {
    type Target = Pending;
    fn deref(&self) -> &Pending {
        self.0.as_deref().expect("not answered yet")
    }
}

impl std::ops::DerefMut for Unanswered {
    fn deref_mut(&mut self) -> &mut Pending {
        self.0.as_deref_mut().expect("not answered yet")
    }
}

impl Drop for Unanswered {
    fn drop(&mut self) {
        if let Some(mut p) = self.0.take() {
            if crate::unwind::handling_panicked() {
                p.event.status = 500;
                p.event.error = Some(PROXY_PANIC.into());
            } else {
                p.event.status = 499;
                p.event.error = Some("client_cancel".into());
            }
            p.finish(0, None, false);
        }
    }
}

/// The error kind of a request whose handling panicked.
pub(crate) const PROXY_PANIC: &str = "proxy_panic";
