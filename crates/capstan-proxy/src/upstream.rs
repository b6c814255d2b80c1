//! The upstream client: keep-alive HTTP/1.1 connections to each upstream
//! address, reused last-in first-out.
//!
//! Written over hyper's connection API rather than hyper-util's pooled
//! client because the proxy needs less than that client does on every
//! request: no executor task per response to wait for the connection to come
//! back (the response body hands its connection back when it ends), and no
//! lock contended between threads (each worker has its own client; only a
//! mirrored copy borrows it from the background runtime). Connections are
//! opened on demand, without a cap, like the pooled client: a slow upstream
//! costs connections, never a queue in front of it.

use std::collections::{HashMap, VecDeque};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::uri::Authority;
use http::{Request, Response};
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;

use crate::proxy::UpstreamBody;

/// How long a connection attempt may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// An idle connection older than this is closed instead of reused.
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Idle connections kept per upstream address; more are closed.
const MAX_IDLE: usize = 1024;
/// How often a returning connection also sweeps every address's idle list
/// (closed and expired connections, addresses that left the tables).
const SWEEP_EVERY: Duration = Duration::from_secs(10);

/// Why an upstream request failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No connection could be opened: nothing was sent.
    #[error("connect: {0}")]
    Connect(std::io::Error),
    /// The request went out (or may have) and no complete answer came back.
    #[error(transparent)]
    Request(#[from] hyper::Error),
    /// The request has no `host:port` to go to.
    #[error("no upstream address in `{0}`")]
    Address(String),
}

impl Error {
    /// The request was never sent: another upstream may safely be tried.
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
    by_addr: HashMap<Authority, VecDeque<Idle>>,
    swept: Option<Instant>,
}

impl IdleSet {
    /// Drops closed and expired connections everywhere, and the addresses
    /// left with none.
    fn sweep(&mut self) {
        self.by_addr.retain(|_, list| {
            list.retain(Idle::usable);
            !list.is_empty()
        });
        self.swept = Some(Instant::now());
    }
}

#[derive(Debug)]
struct Idle {
    tx: SendRequest<UpstreamBody>,
    since: Instant,
}

impl Idle {
    /// Still open and not idle for longer than [`IDLE_TIMEOUT`].
    fn usable(&self) -> bool {
        self.since.elapsed() <= IDLE_TIMEOUT && !self.tx.is_closed()
    }
}

impl Client {
    /// A client with no connections yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sends `req` to the `host:port` of its URI, in origin form, on an
    /// idle connection when one is ready, else on a new one. A request the
    /// reused connection refused before sending (it was closing) is sent
    /// again on a new connection.
    pub async fn request(
        &self,
        mut req: Request<UpstreamBody>,
    ) -> Result<Response<PooledBody>, Error> {
        let authority = req
            .uri()
            .authority()
            .cloned()
            .ok_or_else(|| Error::Address(req.uri().to_string()))?;
        if !req.headers().contains_key(http::header::HOST) {
            if let Ok(v) = http::HeaderValue::from_str(&host_header(&authority)) {
                req.headers_mut().insert(http::header::HOST, v);
            }
        }
        let origin = req
            .uri()
            .path_and_query()
            .cloned()
            .unwrap_or_else(|| http::uri::PathAndQuery::from_static("/"));
        *req.uri_mut() = http::Uri::from(origin);

        let mut reused = self.checkout(&authority);
        loop {
            let (mut tx, fresh) = match reused.take() {
                Some(tx) => (tx, false),
                None => (connect(&authority).await?, true),
            };
            match tx.try_send_request(req).await {
                Ok(resp) => {
                    let ret = Some(Return {
                        client: self.clone(),
                        key: authority,
                        tx,
                    });
                    return Ok(resp.map(|inner| PooledBody { inner, ret }));
                }
                Err(mut e) => match e.take_message() {
                    Some(r) if !fresh => req = r,
                    _ => return Err(Error::Request(e.into_error())),
                },
            }
        }
    }

    /// The most recently returned connection to `key` that is ready;
    /// closed and expired ones are dropped on the way (the sweep takes the
    /// rest).
    fn checkout(&self, key: &Authority) -> Option<SendRequest<UpstreamBody>> {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        let list = idle.by_addr.get_mut(key)?;
        let mut pos = list.len();
        while pos > 0 {
            pos -= 1;
            if !list[pos].usable() {
                list.remove(pos);
            } else if list[pos].tx.is_ready() {
                return list.remove(pos).map(|i| i.tx);
            }
        }
        None
    }

    fn put(&self, key: Authority, tx: SendRequest<UpstreamBody>) {
        if tx.is_closed() {
            return;
        }
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        if idle.swept.is_none_or(|t| t.elapsed() >= SWEEP_EVERY) {
            idle.sweep();
        }
        let list = idle.by_addr.entry(key).or_default();
        if list.len() < MAX_IDLE {
            list.push_back(Idle {
                tx,
                since: Instant::now(),
            });
        }
    }
}

/// `host[:port]` for a Host header, the port left out when it is HTTP's default.
fn host_header(authority: &http::uri::Authority) -> String {
    match authority.port_u16() {
        Some(p) if p != 80 => format!("{}:{p}", authority.host()),
        _ => authority.host().to_owned(),
    }
}

/// Opens a connection (TCP_NODELAY, bounded by [`CONNECT_TIMEOUT`]) and
/// drives it on the current runtime; upgrades (101) are allowed.
async fn connect(authority: &http::uri::Authority) -> Result<SendRequest<UpstreamBody>, Error> {
    let host = authority.host();
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    let port = authority.port_u16().unwrap_or(80);
    let stream = open(host, port).await.map_err(Error::Connect)?;
    stream.set_nodelay(true).map_err(Error::Connect)?;
    let (tx, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(async move {
        if let Err(e) = conn.with_upgrades().await {
            tracing::debug!(error = %e, "upstream connection ended with an error");
        }
    });
    Ok(tx)
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

/// A connection on loan to one response.
#[derive(Debug)]
struct Return {
    client: Client,
    key: Authority,
    tx: SendRequest<UpstreamBody>,
}

impl Return {
    fn give_back(self) {
        self.client.put(self.key, self.tx);
    }
}

/// An upstream response body that hands its connection back to the client
/// when it ends, or when it is dropped already over (204, HEAD: bodies that
/// may never be polled). Dropped before its end, the connection is closed
/// instead (its unread rest cannot be skipped).
#[derive(Debug)]
pub struct PooledBody {
    inner: Incoming,
    ret: Option<Return>,
}

impl Body for PooledBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(None) => {
                if let Some(r) = self.ret.take() {
                    r.give_back();
                }
            }
            Poll::Ready(Some(Err(_))) => self.ret = None,
            _ => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for PooledBody {
    fn drop(&mut self) {
        if self.inner.is_end_stream() {
            if let Some(r) = self.ret.take() {
                r.give_back();
            }
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
