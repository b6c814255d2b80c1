//! The upstream client: keep-alive HTTP/1.1 connections to each upstream
//! address, reused last-in first-out, spoken to by the request's own task
//! ([`wire`]).
//!
//! Written for the proxy rather than taken from hyper-util's pooled client
//! because the proxy needs less than that client does on every request: no
//! task per connection that every request, response and body chunk is
//! handed to and back from (the request's task reads and writes the
//! socket), and no lock contended between threads (each worker has its own
//! client; mirrored copies and health checks have their own on the
//! background runtime, since a socket is served by the runtime that opened
//! it).
//! Connections are opened on demand, without a cap, like the pooled client:
//! a slow upstream costs connections, never a queue in front of it.
//! Upgrade requests (WebSocket) and CONNECT go through hyper's connection
//! API on a connection of their own, which is never pooled.

mod wire;

use std::collections::{HashMap, VecDeque};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::uri::Authority;
use http::{header, Method, Request, Response};
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;

use crate::proxy::UpstreamBody;
use wire::{Conn, Reader, Sending, Sent};

/// How long a connection attempt may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// An idle connection older than this is closed instead of reused.
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Idle connections kept per upstream address; more are closed.
const MAX_IDLE: usize = 1024;
/// How often a returning connection also sweeps every address's idle list
/// (closed and expired connections, addresses that left the tables).
const SWEEP_EVERY: Duration = Duration::from_secs(10);
/// A buffered body up to this size goes out in the same write as the head.
const COALESCE: usize = 16 * 1024;

/// Why an upstream request failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// No connection could be opened: nothing was sent (or, for an
    /// idempotent request replayed after a reused connection closed
    /// unanswered, nothing was answered).
    #[error("connect: {0}")]
    Connect(std::io::Error),
    /// The connection failed while the request or its answer was under way.
    #[error("{0}")]
    Io(std::io::Error),
    /// The upstream's answer is not valid HTTP/1.1, or ended early.
    #[error("{0}")]
    Protocol(String),
    /// The upstream closed the connection without answering.
    #[error("the upstream closed the connection without answering")]
    Closed,
    /// The client's request body failed while it was being forwarded.
    #[error("the client's request body: {0}")]
    ClientBody(hyper::Error),
    /// The client's streamed request body had not ended by the request's
    /// [`BodyDeadline`]: the wait was on the client, not the upstream.
    #[error("the client's request body did not end by the request's deadline")]
    ClientBodyStalled,
    /// An upgrade request failed (hyper's connection).
    #[error(transparent)]
    Upgrade(#[from] hyper::Error),
    /// The request has no `host:port` to go to.
    #[error("no upstream address in `{0}`")]
    Address(String),
}

impl Error {
    /// No connection could be opened: another upstream may safely be tried.
    pub fn is_connect(&self) -> bool {
        matches!(self, Error::Connect(_))
    }
}

/// Keep-alive connections by upstream address. Cloning shares them.
#[derive(Clone, Default, Debug)]
pub struct Client {
    idle: Arc<Mutex<IdleSet>>,
}

#[derive(Default, Debug)]
struct IdleSet {
    /// Keyed by the authority's text: `Authority`'s own hash goes byte by
    /// byte, a cost on every request.
    by_addr: HashMap<Box<str>, VecDeque<Conn>>,
    swept: Option<Instant>,
}

impl IdleSet {
    /// Drops closed and expired connections everywhere, and the addresses
    /// left with none.
    fn sweep(&mut self) {
        self.by_addr.retain(|_, list| {
            list.retain(usable);
            !list.is_empty()
        });
        self.swept = Some(Instant::now());
    }
}

/// Still open, and not idle for longer than [`IDLE_TIMEOUT`].
fn usable(c: &Conn) -> bool {
    c.since.elapsed() <= IDLE_TIMEOUT && c.alive()
}

/// Methods whose request may be sent again when a reused connection turns
/// out to have been closed by the upstream (RFC 9110 §9.2.2).
fn replayable(m: &Method) -> bool {
    matches!(
        *m,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE | Method::PUT | Method::DELETE
    )
}

impl Client {
    /// A client with no connections yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sends `req` to the `host:port` of its URI, in origin form, on an
    /// idle connection when one is open, else on a new one, and returns
    /// once the response head has arrived. A request with a buffered body
    /// and an idempotent method that a reused connection ends without an
    /// answer (the upstream closed it while idle) is sent again on a new
    /// connection.
    ///
    /// The request is taken apart, its head written into a buffer and an
    /// idle connection taken from the pool (none for an upgrade or
    /// `CONNECT`) when this is called, before the returned future is first
    /// polled: the future keeps only what the exchange needs, so moving it
    /// (a request's task moves its future on every request) copies little.
    /// Await it at once: dropped unpolled, it closes the idle connection it
    /// took.
    pub fn request(
        &self,
        req: Request<UpstreamBody>,
    ) -> impl std::future::Future<Output = Result<Response<PooledBody>, Error>> + Send + '_ {
        let prepared = self.prepare(req);
        async move {
            match prepared? {
                // Rare, and its future is large: boxed, so it does not
                // make every request's future as large.
                Prepared::Upgrade(u) => {
                    let (authority, req) = *u;
                    Box::pin(upgrade(&authority, req)).await
                }
                Prepared::Wire(mut w) => loop {
                    let (mut conn, fresh) = match w.reused.take() {
                        Some(c) => (c, false),
                        None => (Conn::new(Box::pin(connect_tcp(&w.authority)).await?), true),
                    };
                    match exchange(&mut conn, &mut w, fresh).await {
                        Ok(h) => {
                            let reader = Reader::new(conn, &h);
                            let body = PooledBody {
                                inner: Inner::Wire(Some(reader)),
                                ret: Some((self.clone(), w.authority)),
                            };
                            return Ok(h.response.map(|()| body));
                        }
                        // A connection the upstream closed while it was idle:
                        // nothing of an answer came.
                        Err(Error::Closed) if !fresh && w.may_replay => {}
                        Err(e) => return Err(e),
                    }
                },
            }
        }
    }

    /// What [`Client::request`] does before its first wait: the upstream's
    /// address, the `Host` field, and for a request the wire client sends,
    /// its head (and a small buffered body) encoded and an idle connection
    /// taken.
    fn prepare(&self, mut req: Request<UpstreamBody>) -> Result<Prepared, Error> {
        let authority = req
            .uri()
            .authority()
            .cloned()
            .ok_or_else(|| Error::Address(req.uri().to_string()))?;
        if !req.headers().contains_key(header::HOST) {
            if let Ok(v) = http::HeaderValue::from_str(&host_header(&authority)) {
                req.headers_mut().insert(header::HOST, v);
            }
        }
        // An upgrade, or a tunnel (a 2xx to CONNECT makes the connection
        // one), takes its connection away: hyper's, never pooled.
        if req.headers().contains_key(header::UPGRADE) || req.method() == Method::CONNECT {
            return Ok(Prepared::Upgrade(Box::new((authority, req))));
        }
        let (mut parts, body) = req.into_parts();
        let target = parts.uri.path_and_query().map_or("/", |p| p.as_str());
        let (buffered, stream) = match body {
            http_body_util::Either::Left(full) => (Some(full_bytes(full)), None),
            http_body_util::Either::Right(incoming) => (None, Some(incoming)),
        };
        let sending = match (&buffered, &stream) {
            (Some(b), _) => Sending::Length(b.len() as u64),
            (None, Some(s)) => s
                .size_hint()
                .exact()
                .map_or(Sending::Chunked, Sending::Length),
            (None, None) => Sending::Length(0),
        };
        let mut head = Vec::with_capacity(512);
        wire::encode_head(&parts.method, target, &parts.headers, sending, &mut head);
        let rest = match buffered {
            Some(b) if b.len() <= COALESCE => {
                head.extend_from_slice(&b);
                None
            }
            b => b,
        };
        let stream_deadline = stream
            .as_ref()
            .and_then(|_| parts.extensions.get::<BodyDeadline>())
            .map(|d| d.0);
        let reused = self.checkout(&authority);
        Ok(Prepared::Wire(Box::new(Wire {
            may_replay: stream.is_none() && replayable(&parts.method),
            method: parts.method,
            // Written: the request's field map takes the answer's fields.
            fields: std::mem::take(&mut parts.headers),
            authority,
            head,
            rest,
            stream,
            stream_deadline,
            sending,
            reused,
        })))
    }

    /// The most recently returned connection to `key` that is still open;
    /// closed and expired ones are dropped on the way (the sweep takes the
    /// rest).
    fn checkout(&self, key: &Authority) -> Option<Conn> {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        let list = idle.by_addr.get_mut(key.as_str())?;
        while let Some(c) = list.pop_back() {
            if usable(&c) {
                return Some(c);
            }
        }
        None
    }

    fn put(&self, key: Authority, mut conn: Conn) {
        let now = Instant::now();
        conn.since = now;
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        if idle
            .swept
            .is_none_or(|t| now.saturating_duration_since(t) >= SWEEP_EVERY)
        {
            idle.sweep();
        }
        let list = match idle.by_addr.get_mut(key.as_str()) {
            Some(list) => list,
            None => idle.by_addr.entry(key.as_str().into()).or_default(),
        };
        if list.len() < MAX_IDLE {
            list.push_back(conn);
        }
    }
}

/// When a streamed request body must have ended, set as a request
/// extension: a client still sending then gets
/// [`Error::ClientBodyStalled`], not a wait charged to the upstream.
#[derive(Debug, Clone, Copy)]
pub struct BodyDeadline(pub tokio::time::Instant);

/// A request taken apart by [`Client::prepare`].
enum Prepared {
    /// Sent through hyper on a connection of its own.
    Upgrade(Box<(Authority, Request<UpstreamBody>)>),
    /// Sent by the wire client.
    Wire(Box<Wire>),
}

/// What the wire client's exchange needs of a request.
struct Wire {
    authority: Authority,
    method: Method,
    /// The encoded head, with the body when it is small and buffered.
    head: Vec<u8>,
    /// A buffered body too large to go with the head.
    rest: Option<Bytes>,
    /// The client's body, streamed.
    stream: Option<Incoming>,
    /// When the streamed body must have ended ([`BodyDeadline`]).
    stream_deadline: Option<tokio::time::Instant>,
    sending: Sending,
    /// The request's field map, emptied: the answer's fields go in it.
    fields: http::HeaderMap,
    may_replay: bool,
    /// An idle connection to try first.
    reused: Option<Conn>,
}

/// One attempt on `conn`: the request written, the answer's head read.
async fn exchange(conn: &mut Conn, w: &mut Wire, fresh: bool) -> Result<wire::Head, Error> {
    match wire::write(conn, &w.head).await {
        Ok(()) => {}
        // A reused connection that takes no write was closed
        // by the upstream while it was idle.
        Err(_) if !fresh => return Err(Error::Closed),
        Err(e) => return Err(Error::Io(e)),
    }
    let sent = match (&w.rest, w.stream.take()) {
        // A large buffered body goes out watched, like a streamed one: an
        // upstream that refuses it early (a `413`) is answered at once.
        (Some(rest), _) => match Box::pin(wire::send_rest(conn, rest)).await {
            Err(Error::Io(_)) if !fresh => return Err(Error::Closed),
            sent => sent?,
        },
        // Rare next to buffered bodies, and its future is large.
        (None, Some(s)) => {
            Box::pin(wire::send_stream(conn, s, w.sending, w.stream_deadline)).await?
        }
        (None, None) => Sent::Whole,
    };
    let mut h = wire::read_head(conn, &w.method, &mut w.fields).await?;
    // The rest of the request body was never sent.
    h.keep_alive &= sent == Sent::Whole;
    Ok(h)
}

/// The bytes of a buffered body: a `Full` holds them whole and gives them
/// at its first poll, never waiting.
fn full_bytes(mut full: http_body_util::Full<Bytes>) -> Bytes {
    let mut cx = Context::from_waker(std::task::Waker::noop());
    match Pin::new(&mut full).poll_frame(&mut cx) {
        Poll::Ready(Some(Ok(frame))) => frame.into_data().unwrap_or_default(),
        Poll::Ready(Some(Err(never))) => match never {},
        Poll::Ready(None) | Poll::Pending => Bytes::new(),
    }
}

/// `host[:port]` for a Host header, the port left out when it is HTTP's default.
fn host_header(authority: &http::uri::Authority) -> String {
    match authority.port_u16() {
        Some(p) if p != 80 => format!("{}:{p}", authority.host()),
        _ => authority.host().to_owned(),
    }
}

/// Opens a connection, TCP_NODELAY, bounded by [`CONNECT_TIMEOUT`].
async fn connect_tcp(authority: &Authority) -> Result<tokio::net::TcpStream, Error> {
    let host = authority.host();
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    let port = authority.port_u16().unwrap_or(80);
    let stream = open(host, port).await.map_err(Error::Connect)?;
    stream.set_nodelay(true).map_err(Error::Connect)?;
    Ok(stream)
}

/// Sends an upgrade (or CONNECT) request on a new connection driven by
/// hyper on the current runtime; its upgraded stream is taken from the
/// response.
async fn upgrade(
    authority: &Authority,
    mut req: Request<UpstreamBody>,
) -> Result<Response<PooledBody>, Error> {
    let stream = connect_tcp(authority).await?;
    let (mut tx, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(async move {
        if let Err(e) = conn.with_upgrades().await {
            tracing::debug!(error = %e, "upstream connection ended with an error");
        }
    });
    let origin = req
        .uri()
        .path_and_query()
        .cloned()
        .unwrap_or_else(|| http::uri::PathAndQuery::from_static("/"));
    *req.uri_mut() = http::Uri::from(origin);
    let resp = tx.send_request(req).await?;
    Ok(resp.map(|b| PooledBody {
        inner: Inner::Hyper(b),
        ret: None,
    }))
}

/// Resolves `host` and tries its addresses in turn, each with an equal share
/// of what is left of [`CONNECT_TIMEOUT`], so one address that drops packets
/// does not use up the whole bound before the next is tried.
async fn open(host: &str, port: u16) -> std::io::Result<tokio::net::TcpStream> {
    let timed_out = |what: String, bound: Duration| {
        std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            format!("{what} within {bound:?}"),
        )
    };
    let deadline = tokio::time::Instant::now() + CONNECT_TIMEOUT;
    let addrs: Vec<std::net::SocketAddr> =
        tokio::time::timeout_at(deadline, tokio::net::lookup_host((host, port)))
            .await
            .map_err(|_| timed_out(format!("no address for `{host}`"), CONNECT_TIMEOUT))??
            .collect();
    let mut last = None;
    for (i, addr) in addrs.iter().enumerate() {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let share = left / u32::try_from(addrs.len() - i).unwrap_or(u32::MAX);
        match tokio::time::timeout(share, tokio::net::TcpStream::connect(addr)).await {
            Ok(Ok(s)) => return Ok(s),
            Ok(Err(e)) => last = Some(e),
            Err(_) => last = Some(timed_out(format!("no connection to {addr}"), share)),
        }
    }
    Err(last.unwrap_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::NotFound,
            format!("`{host}` has no address"),
        )
    }))
}

/// An upstream response body that hands its connection back to the client
/// when it ends, or when it is dropped already over (204, HEAD: bodies that
/// may never be polled). Dropped before its end, the connection is closed
/// instead (its unread rest cannot be skipped).
#[derive(Debug)]
pub struct PooledBody {
    inner: Inner,
    ret: Option<(Client, Authority)>,
}

#[derive(Debug)]
enum Inner {
    /// Read by the polling task; none once handed back.
    Wire(Option<Reader>),
    /// An upgrade request's answer that was not an upgrade.
    Hyper(Incoming),
}

impl PooledBody {
    fn give_back(&mut self) {
        if let Inner::Wire(reader) = &mut self.inner {
            let conn = reader.take().and_then(Reader::reusable);
            if let (Some(conn), Some((client, key))) = (conn, self.ret.take()) {
                client.put(key, conn);
            }
        }
    }
}

impl Body for PooledBody {
    type Data = Bytes;
    type Error = Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Error>>> {
        let polled = match &mut self.inner {
            Inner::Wire(Some(r)) => r.poll_frame(cx),
            Inner::Wire(None) => Poll::Ready(None),
            Inner::Hyper(b) => return Pin::new(b).poll_frame(cx).map_err(Error::from),
        };
        match &polled {
            Poll::Ready(None) => self.give_back(),
            // The connection goes with the reader: never handed back.
            Poll::Ready(Some(Err(_))) => self.inner = Inner::Wire(None),
            _ => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        match &self.inner {
            Inner::Wire(r) => r.as_ref().is_none_or(Reader::is_done),
            Inner::Hyper(b) => b.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.inner {
            Inner::Wire(r) => match r.as_ref().map_or(Some(0), Reader::exact_len) {
                Some(n) => SizeHint::with_exact(n),
                None => SizeHint::default(),
            },
            Inner::Hyper(b) => b.size_hint(),
        }
    }
}

impl Drop for PooledBody {
    fn drop(&mut self) {
        if self.is_end_stream() {
            self.give_back();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A test upstream's address, its count of accepted connections, and a
    /// switch that closes every connection it has.
    type TestUpstream = (
        std::net::SocketAddr,
        Arc<AtomicUsize>,
        tokio::sync::watch::Sender<bool>,
    );

    /// A real HTTP/1.1 server on loopback answering `body_len` bytes to
    /// every request.
    async fn upstream(body_len: usize) -> TestUpstream {
        serve(move |_| Bytes::from(vec![b'x'; body_len])).await
    }

    /// The same server answering with `answer`.
    async fn serve(
        answer: impl Fn(&Request<Incoming>) -> Bytes + Copy + Send + 'static,
    ) -> TestUpstream {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let count = accepted.clone();
        let (close, closing) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                count.fetch_add(1, Ordering::SeqCst);
                let service = hyper::service::service_fn(move |req| {
                    let body = http_body_util::Full::new(answer(&req));
                    async move { Ok::<_, std::convert::Infallible>(Response::new(body)) }
                });
                let conn = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service);
                let mut closing = closing.clone();
                tokio::spawn(async move {
                    tokio::select! {
                        _ = conn => {}
                        _ = closing.wait_for(|c| *c) => {}
                    }
                });
            }
        });
        (addr, accepted, close)
    }

    fn get(addr: std::net::SocketAddr, method: http::Method) -> Request<UpstreamBody> {
        Request::builder()
            .method(method)
            .uri(format!("http://{addr}/x"))
            .body(crate::proxy::empty_body())
            .unwrap()
    }

    #[tokio::test(flavor = "current_thread")]
    async fn requests_in_turn_share_one_connection() {
        let (addr, accepted, _close) = upstream(13).await;
        let client = Client::new();
        for _ in 0..20 {
            let resp = client.request(get(addr, http::Method::GET)).await.unwrap();
            let body = resp.into_body().collect().await.unwrap().to_bytes();
            assert_eq!(body.len(), 13);
        }
        // Bodies never polled because they are over at once (HEAD) still
        // hand the connection back.
        for _ in 0..5 {
            let resp = client.request(get(addr, http::Method::HEAD)).await.unwrap();
            drop(resp);
        }
        assert_eq!(
            client
                .request(get(addr, http::Method::GET))
                .await
                .unwrap()
                .status(),
            200
        );
        assert_eq!(accepted.load(Ordering::SeqCst), 1);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_body_dropped_before_its_end_takes_its_connection_with_it() {
        let (addr, accepted, _close) = upstream(4 << 20).await;
        let client = Client::new();
        let resp = client.request(get(addr, http::Method::GET)).await.unwrap();
        let mut body = resp.into_body();
        let _first = body.frame().await.unwrap().unwrap();
        drop(body);
        // The unread rest would be taken for the next answer: a new connection.
        let resp = client.request(get(addr, http::Method::GET)).await.unwrap();
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(body.len(), 4 << 20);
        assert_eq!(accepted.load(Ordering::SeqCst), 2);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_refused_connection_is_a_connect_error_and_a_missing_address_is_named() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        let client = Client::new();
        let e = client
            .request(get(addr, http::Method::GET))
            .await
            .unwrap_err();
        assert!(e.is_connect(), "{e}");
        let req = Request::builder()
            .uri("/no-authority")
            .body(crate::proxy::empty_body())
            .unwrap();
        let e = client.request(req).await.unwrap_err();
        assert!(!e.is_connect());
        assert!(e.to_string().contains("/no-authority"), "{e}");
    }

    #[tokio::test(flavor = "current_thread")]
    async fn connections_the_upstream_closed_are_swept_and_never_reused() {
        let (addr, accepted, close) = upstream(13).await;
        let client = Client::new();
        let resp = client.request(get(addr, http::Method::GET)).await.unwrap();
        resp.into_body().collect().await.unwrap();
        assert_eq!(client.idle.lock().unwrap().by_addr.len(), 1);

        close.send(true).unwrap();
        // The client sees the close once its connection task reads the end.
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let empty = {
                let mut idle = client.idle.lock().unwrap();
                idle.sweep();
                idle.by_addr.is_empty()
            };
            if empty {
                break;
            }
            assert!(Instant::now() < deadline, "a closed connection stayed idle");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }

        close.send(false).unwrap();
        let resp = client.request(get(addr, http::Method::GET)).await.unwrap();
        assert_eq!(resp.status(), 200);
        assert_eq!(accepted.load(Ordering::SeqCst), 2);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_hostname_upstream_connects_and_gets_a_host_header_without_the_default_port() {
        // Answers with the Host header it was sent.
        let (addr, _, _close) = serve(|req| {
            let host = req.headers().get(http::header::HOST);
            host.map(|h| Bytes::copy_from_slice(h.as_bytes()))
                .unwrap_or_default()
        })
        .await;
        let port = addr.port();
        let client = Client::new();
        // `localhost` may resolve to ::1 first, where nothing listens: the
        // next address is tried.
        for (uri, host) in [
            (
                format!("http://localhost:{port}/x"),
                format!("localhost:{port}"),
            ),
            (
                format!("http://127.0.0.1:{port}/x"),
                format!("127.0.0.1:{port}"),
            ),
        ] {
            let req = Request::get(uri.as_str())
                .body(crate::proxy::empty_body())
                .unwrap();
            let resp = client.request(req).await.expect(&uri);
            let body = resp.into_body().collect().await.unwrap().to_bytes();
            assert_eq!(body, host.as_bytes(), "{uri}");
        }
        for (authority, host) in [
            ("example.com:80", "example.com"),
            ("example.com", "example.com"),
            ("[::1]:8080", "[::1]:8080"),
        ] {
            assert_eq!(host_header(&authority.parse().unwrap()), host);
        }
    }

    #[tokio::test(flavor = "current_thread")]
    async fn an_upstream_that_never_completes_the_handshake_fails_within_the_connect_bound() {
        // A listener that never accepts, its queue filled: the kernel drops
        // the next SYN, so that connect gets no answer at all.
        let socket =
            socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        socket
            .bind(
                &"127.0.0.1:0"
                    .parse::<std::net::SocketAddr>()
                    .unwrap()
                    .into(),
            )
            .unwrap();
        socket.listen(0).unwrap();
        let addr = socket.local_addr().unwrap().as_socket().unwrap();
        let mut queued = Vec::new();
        for _ in 0..4 {
            match tokio::time::timeout(
                Duration::from_millis(200),
                tokio::net::TcpStream::connect(addr),
            )
            .await
            {
                Ok(Ok(s)) => queued.push(s),
                _ => break,
            }
        }
        let started = Instant::now();
        let e = tokio::time::timeout(
            CONNECT_TIMEOUT * 3,
            Client::new().request(get(addr, http::Method::GET)),
        )
        .await
        .expect("the connect bound did not hold")
        .unwrap_err();
        let took = started.elapsed();
        assert!(e.is_connect(), "{e}");
        assert!(e.to_string().contains("within"), "{e}");
        assert!(took >= CONNECT_TIMEOUT / 2, "gave up after {took:?}: {e}");
        assert!(took < CONNECT_TIMEOUT + Duration::from_secs(1), "{took:?}");
    }
}
