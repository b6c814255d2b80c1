//! HTTP/1.1 on an upstream connection, spoken by the task of the request
//! it carries: the request head and body are written, the response head is
//! read and parsed (httparse), and the response body is decoded as the
//! client's connection polls it.
//!
//! hyper's client runs each connection as a task of its own and hands
//! every request, response and body chunk across channels to it: three to
//! six task wake-ups per proxied request. Here the request's own task does
//! the reads and writes, as nginx's event loop does. Upgrades (101) and
//! CONNECT still go through hyper, on a connection of their own.

use std::future::Future;
use std::io;
use std::mem::MaybeUninit;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::{Buf, Bytes, BytesMut};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Response, StatusCode, Version};
use http_body::Frame;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use super::Error;
use crate::headers::connection_lists;

/// Largest response head read (status line and fields).
const MAX_HEAD: usize = 64 * 1024;
/// Most fields in a response head.
const MAX_FIELDS: usize = 100;
/// Largest chunk-size line read.
const MAX_CHUNK_LINE: usize = 4 * 1024;
/// Largest trailer section read.
const MAX_TRAILERS: usize = 16 * 1024;
/// How long a response body may send nothing before it is cut off (the
/// head is bounded by the route's timeout; a body can be long, so the
/// bound is between reads, as nginx's `proxy_read_timeout`, same default).
const BODY_STALL: std::time::Duration = if cfg!(test) {
    std::time::Duration::from_millis(300)
} else {
    std::time::Duration::from_secs(60)
};
/// How much room each read makes in the buffer.
const READ_CHUNK: usize = 16 * 1024;

/// An open upstream connection and what was read from it but not yet used.
#[derive(Debug)]
pub(super) struct Conn {
    stream: TcpStream,
    buf: BytesMut,
    /// Room for the fields of a response head being parsed, kept between
    /// answers.
    spans: Vec<(HeaderName, usize, usize)>,
    /// When it was last handed back idle.
    pub(super) since: Instant,
}

impl Conn {
    pub(super) fn new(stream: TcpStream) -> Self {
        Self {
            stream,
            buf: BytesMut::new(),
            spans: Vec::new(),
            since: Instant::now(),
        }
    }

    /// Still open, with nothing unread, as far as the runtime's poller has
    /// seen: a close or stray bytes it has reported are read here (no
    /// system call otherwise). One that arrives later is caught when the
    /// request is sent (see the replay in [`super::Client::request`]).
    pub(super) fn alive(&self) -> bool {
        if !self.buf.is_empty() {
            return false;
        }
        let mut probe = [0u8; 1];
        matches!(self.stream.try_read(&mut probe), Err(e) if e.kind() == io::ErrorKind::WouldBlock)
    }

    /// Reads what the socket has into the buffer; `Ok(0)` at its end. A
    /// short read clears the socket's readiness, so the next read waits for
    /// the poller instead of costing a system call that would block.
    fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        self.buf.reserve(READ_CHUNK);
        tokio_util::io::poll_read_buf(Pin::new(&mut self.stream), cx, &mut self.buf)
    }

    async fn fill(&mut self) -> io::Result<usize> {
        std::future::poll_fn(|cx| self.poll_fill(cx)).await
    }
}

/// How the request's body is framed on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Sending {
    /// `Content-Length: n` (none for an empty body of a method without one).
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
}

/// Writes the request head: the request line in origin form, the fields
/// (framing fields replaced by `sending`'s), the blank line.
pub(super) fn encode_head(
    method: &Method,
    target: &str,
    headers: &HeaderMap,
    sending: Sending,
    out: &mut Vec<u8>,
) {
    out.extend_from_slice(method.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(target.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    let mut cookies_written = false;
    for (name, value) in headers {
        if name == header::CONTENT_LENGTH || name == header::TRANSFER_ENCODING {
            continue;
        }
        // HTTP/2 clients send each cookie as a field of its own; an HTTP/1.1
        // request carries them in one, joined by "; " (RFC 9113 §8.2.3).
        if name == header::COOKIE {
            if !cookies_written {
                cookies_written = true;
                out.extend_from_slice(b"cookie: ");
                for (i, v) in headers.get_all(header::COOKIE).iter().enumerate() {
                    if i > 0 {
                        out.extend_from_slice(b"; ");
                    }
                    out.extend_from_slice(v.as_bytes());
                }
                out.extend_from_slice(b"\r\n");
            }
            continue;
        }
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    match sending {
        Sending::Length(0)
            if matches!(
                *method,
                Method::GET | Method::HEAD | Method::OPTIONS | Method::DELETE | Method::TRACE
            ) => {}
        Sending::Length(n) => {
            out.extend_from_slice(b"content-length: ");
            out.extend_from_slice(n.to_string().as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        Sending::Chunked => out.extend_from_slice(b"transfer-encoding: chunked\r\n"),
    }
    out.extend_from_slice(b"\r\n");
}

/// Writes `bytes` (a head, maybe with a body after it).
pub(super) async fn write(conn: &mut Conn, bytes: &[u8]) -> io::Result<()> {
    conn.stream.write_all(bytes).await
}

/// How a streamed request body went out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Sent {
    /// All of it.
    Whole,
    /// Not all: the upstream answered (or closed the connection) before
    /// the body's end. The connection cannot carry another request.
    Cut,
}

/// Whether an answer with this status is interim (`1xx` but `101`): a
/// final answer follows it on the same request.
fn is_interim(code: u16) -> bool {
    (100..200).contains(&code) && code != 101
}

/// Drops the complete interim heads at the front of `buf`;
/// then whether what is left begins a final answer (or is not HTTP at
/// all, which reading the answer reports). A head still arriving is not
/// yet an answer, unless it has outgrown the head limit (which reading the
/// answer then reports).
fn final_answer_begins(buf: &mut BytesMut) -> bool {
    loop {
        let mut fields = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_FIELDS];
        let mut head = httparse::Response::new(&mut []);
        match httparse::ParserConfig::default().parse_response_with_uninit_headers(
            &mut head,
            buf,
            &mut fields,
        ) {
            Ok(httparse::Status::Complete(len)) if head.code.is_some_and(is_interim) => {
                buf.advance(len);
            }
            // A head still arriving, within the bound `read_head` enforces.
            Ok(httparse::Status::Partial) if buf.len() < MAX_HEAD => return false,
            _ => return true,
        }
    }
}

/// Forwards a streamed request body, framed as `sending` says, while
/// watching the connection: an upstream that answers early (a `413` to an
/// upload it will not take) and stops reading gets its answer passed on,
/// instead of the proxy waiting on a write, or on a client still sending,
/// until the request's deadline. The answer's first bytes stay in the buffer.
/// A client whose body has not ended by `deadline` while the upstream waits
/// on it is [`Error::ClientBodyStalled`].
pub(super) async fn send_stream(
    conn: &mut Conn,
    mut body: hyper::body::Incoming,
    sending: Sending,
    deadline: Option<tokio::time::Instant>,
) -> Result<Sent, Error> {
    use http_body_util::BodyExt;
    let client_late = async {
        match deadline {
            Some(d) => tokio::time::sleep_until(d).await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(client_late);
    let (reader, mut writer) = conn.stream.split();
    let buf = &mut conn.buf;
    loop {
        let frame = loop {
            tokio::select! {
                biased;
                r = reader.readable() => if answered(&reader, buf, r)? {
                    return Ok(Sent::Cut);
                },
                f = body.frame() => break f,
                () = &mut client_late => return Err(Error::ClientBodyStalled),
            }
        };
        let data = match frame {
            None => break,
            Some(Err(e)) => return Err(Error::ClientBody(e)),
            Some(Ok(f)) => match f.into_data() {
                Ok(d) if !d.is_empty() => d,
                _ => continue,
            },
        };
        let framed;
        let out: &[u8] = if sending == Sending::Chunked {
            let mut f = format!("{:x}\r\n", data.len()).into_bytes();
            f.extend_from_slice(&data);
            f.extend_from_slice(b"\r\n");
            framed = f;
            &framed
        } else {
            &data
        };
        if write_watching(&reader, &mut writer, buf, out).await? == Sent::Cut {
            return Ok(Sent::Cut);
        }
    }
    if sending == Sending::Chunked {
        writer.write_all(b"0\r\n\r\n").await.map_err(Error::Io)?;
    }
    Ok(Sent::Whole)
}

/// Writes a buffered body too large to go out with the head, watching the
/// connection as [`send_stream`] does: an upstream that answers before the
/// body's end and stops reading has its answer passed on at once.
pub(super) async fn send_rest(conn: &mut Conn, rest: &[u8]) -> Result<Sent, Error> {
    let (reader, mut writer) = conn.stream.split();
    write_watching(&reader, &mut writer, &mut conn.buf, rest).await
}

/// Writes `out` unless the upstream answers (or closes) first: then
/// [`Sent::Cut`], the answer's first bytes in `buf`.
async fn write_watching(
    reader: &tokio::net::tcp::ReadHalf<'_>,
    writer: &mut tokio::net::tcp::WriteHalf<'_>,
    buf: &mut BytesMut,
    out: &[u8],
) -> Result<Sent, Error> {
    let mut written = 0;
    while written < out.len() {
        tokio::select! {
            biased;
            r = reader.readable() => if answered(reader, buf, r)? {
                return Ok(Sent::Cut);
            },
            w = writer.write(&out[written..]) => match w.map_err(Error::Io)? {
                0 => return Err(Error::Io(io::ErrorKind::WriteZero.into())),
                n => written += n,
            },
        }
    }
    Ok(Sent::Whole)
}

/// Whether the connection, reported readable (`ready`), carries an answer
/// (or its end) while a request body is still going out. Readiness may be
/// reported with nothing to read: only bytes, or the connection's end,
/// count. An interim answer (an unasked-for `100 Continue`, `103 Early
/// Hints`) is no answer: it is dropped and the body keeps going.
fn answered(
    reader: &tokio::net::tcp::ReadHalf<'_>,
    buf: &mut BytesMut,
    ready: io::Result<()>,
) -> Result<bool, Error> {
    ready.map_err(Error::Io)?;
    buf.reserve(READ_CHUNK);
    match reader.try_read_buf(buf) {
        Ok(0) => Ok(true),
        Ok(_) => Ok(final_answer_begins(buf)),
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(false),
        Err(e) => Err(Error::Io(e)),
    }
}

/// How the response's body is delimited (RFC 9112 §6.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Framing {
    /// Nothing left to read.
    Done,
    /// This many bytes left.
    Length(u64),
    /// Chunked, in this state.
    Chunked(Chunk),
    /// Until the upstream closes the connection.
    Close,
}

/// Where a chunked body's decoder is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Chunk {
    /// Before a chunk-size line.
    Size,
    /// Inside a chunk, this many bytes left.
    Data(u64),
    /// After a chunk's data, before its CRLF.
    End,
    /// After the last chunk: trailer fields (dropped) and the blank line.
    Trailers,
}

/// A parsed response head: the response, how its body is framed, and
/// whether the connection may carry another request afterwards.
pub(super) struct Head {
    pub(super) response: Response<()>,
    pub(super) framing: Framing,
    pub(super) keep_alive: bool,
}

/// Reads the response head, skipping interim (1xx) responses.
/// [`Error::Closed`] when the connection ended (or was reset) before any
/// byte of an answer: on a reused connection, one the upstream had closed
/// while it was idle.
///
/// `spare` is a map to parse the fields into (emptied first): the request's
/// own, once written, so its room is reused.
pub(super) async fn read_head(
    conn: &mut Conn,
    method: &Method,
    spare: &mut HeaderMap,
) -> Result<Head, Error> {
    let mut answered = false;
    loop {
        if !conn.buf.is_empty() {
            answered = true;
            if let Some(head) = parse_head(conn, method, spare)? {
                match head {
                    Parsed::Interim => continue,
                    Parsed::Final(h) => return Ok(h),
                }
            }
            if conn.buf.len() >= MAX_HEAD {
                return Err(Error::Protocol(format!(
                    "response head larger than {} KiB",
                    MAX_HEAD / 1024
                )));
            }
        }
        match conn.fill().await {
            Ok(0) | Err(_) if !answered => return Err(Error::Closed),
            Ok(0) => {
                return Err(Error::Protocol(
                    "the connection ended inside the response head".into(),
                ))
            }
            Ok(_) => {}
            Err(e) => return Err(Error::Io(e)),
        }
    }
}

enum Parsed {
    Interim,
    Final(Head),
}

/// Parses the head at the start of the buffer, if all of it is there, and
/// takes it out of the buffer.
fn parse_head(
    conn: &mut Conn,
    method: &Method,
    spare: &mut HeaderMap,
) -> Result<Option<Parsed>, Error> {
    // Uninitialised: zeroing room for every field costs more than parsing.
    let mut fields = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_FIELDS];
    let mut parsed = httparse::Response::new(&mut []);
    let len = match httparse::ParserConfig::default().parse_response_with_uninit_headers(
        &mut parsed,
        &conn.buf,
        &mut fields,
    ) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => return Err(Error::Protocol(format!("malformed response head: {e}"))),
    };
    let code = parsed.code.unwrap_or(0);
    let status = StatusCode::from_u16(code)
        .map_err(|_| Error::Protocol(format!("status code {code} out of range")))?;
    if status == StatusCode::SWITCHING_PROTOCOLS {
        return Err(Error::Protocol(
            "101 Switching Protocols to a request that asked for no upgrade".into(),
        ));
    }
    if is_interim(code) {
        conn.buf.advance(len);
        return Ok(Some(Parsed::Interim));
    }
    let version = if parsed.version == Some(1) {
        Version::HTTP_11
    } else {
        Version::HTTP_10
    };
    // Field values stay in the buffer: slices of the frozen head, not copies.
    let base = conn.buf.as_ptr() as usize;
    let spans = &mut conn.spans;
    spans.clear();
    for f in parsed.headers.iter() {
        let name = HeaderName::from_bytes(f.name.as_bytes())
            .map_err(|_| Error::Protocol(format!("malformed field name `{}`", f.name)))?;
        let start = f.value.as_ptr() as usize - base;
        spans.push((name, start, start + f.value.len()));
    }
    let head = conn.buf.split_to(len).freeze();
    let mut headers = std::mem::take(spare);
    headers.clear();
    headers.reserve(spans.len());
    for (name, start, end) in conn.spans.drain(..) {
        let value = HeaderValue::from_maybe_shared(head.slice(start..end))
            .map_err(|_| Error::Protocol(format!("malformed value of field `{name}`")))?;
        headers.append(name, value);
    }

    let mut keep_alive = version == Version::HTTP_11 && !connection_lists(&headers, "close");
    // The transfer coding applied last decides: chunked, or read to the end.
    let chunked = headers
        .get_all(header::TRANSFER_ENCODING)
        .iter()
        .next_back()
        .map(|v| {
            v.to_str()
                .ok()
                .and_then(|s| s.rsplit(',').next())
                .is_some_and(|last| last.trim().eq_ignore_ascii_case("chunked"))
        });
    if chunked.is_some() {
        if version == Version::HTTP_10 {
            return Err(Error::Protocol(
                "Transfer-Encoding in an HTTP/1.0 response".into(),
            ));
        }
        // Both framings at once is how responses are smuggled: the
        // transfer coding wins, the length is not passed on, and the
        // connection is not reused.
        if headers.remove(header::CONTENT_LENGTH).is_some() {
            keep_alive = false;
        }
    }
    let framing = if *method == Method::HEAD
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED
    {
        Framing::Done
    } else if let Some(chunked) = chunked {
        if chunked {
            Framing::Chunked(Chunk::Size)
        } else {
            Framing::Close
        }
    } else if let Some(n) = content_length(&headers)? {
        Framing::Length(n)
    } else {
        Framing::Close
    };
    if framing == Framing::Close {
        keep_alive = false;
    }
    let mut response = Response::new(());
    *response.status_mut() = status;
    *response.version_mut() = version;
    *response.headers_mut() = headers;
    Ok(Some(Parsed::Final(Head {
        response,
        framing,
        keep_alive,
    })))
}

/// The Content-Length, refused unless every value is the same number.
fn content_length(headers: &HeaderMap) -> Result<Option<u64>, Error> {
    let mut found = None;
    for v in headers.get_all(header::CONTENT_LENGTH) {
        for part in v.as_bytes().split(|&b| b == b',') {
            let part = part.trim_ascii();
            let n = (!part.is_empty() && part.iter().all(u8::is_ascii_digit))
                .then(|| std::str::from_utf8(part).ok()?.parse::<u64>().ok())
                .flatten()
                .ok_or_else(|| {
                    Error::Protocol(format!(
                        "malformed Content-Length `{}`",
                        String::from_utf8_lossy(v.as_bytes())
                    ))
                })?;
            if found.is_some_and(|f| f != n) {
                return Err(Error::Protocol("conflicting Content-Length values".into()));
            }
            found = Some(n);
        }
    }
    Ok(found)
}

/// The response body, read from the connection as it is polled.
#[derive(Debug)]
pub(super) struct Reader {
    conn: Conn,
    framing: Framing,
    keep_alive: bool,
    /// The body fails when it fires; set on the first read that waits and
    /// moved on by the first wait after each read that got bytes.
    stall: Option<Pin<Box<tokio::time::Sleep>>>,
    /// Bytes came since the stall bound was last set.
    progressed: bool,
}

impl Reader {
    /// The body of the answer whose head was just read from `conn`.
    pub(super) fn new(conn: Conn, head: &Head) -> Self {
        Self {
            conn,
            framing: head.framing,
            keep_alive: head.keep_alive,
            stall: None,
            progressed: false,
        }
    }

    /// Nothing is left to read.
    pub(super) fn is_done(&self) -> bool {
        matches!(self.framing, Framing::Done | Framing::Length(0))
    }

    /// The connection, when the body has ended and it may carry another
    /// request (nothing after the body was read).
    pub(super) fn reusable(self) -> Option<Conn> {
        // The buffer stays: once the answer's pieces are dropped its room is
        // reused for the next one, with no allocation.
        (self.is_done() && self.keep_alive && self.conn.buf.is_empty()).then_some(self.conn)
    }

    /// The next piece of the body; `None` at its end.
    pub(super) fn poll_data(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Bytes, Error>>> {
        loop {
            let buf = &mut self.conn.buf;
            match self.framing {
                Framing::Done | Framing::Length(0) => {
                    self.framing = Framing::Done;
                    return Poll::Ready(None);
                }
                Framing::Length(n) | Framing::Chunked(Chunk::Data(n)) if !buf.is_empty() => {
                    let take = usize::try_from(n).unwrap_or(usize::MAX).min(buf.len());
                    let data = buf.split_to(take).freeze();
                    let left = n - take as u64;
                    self.framing = match self.framing {
                        Framing::Length(_) => Framing::Length(left),
                        _ if left == 0 => Framing::Chunked(Chunk::End),
                        _ => Framing::Chunked(Chunk::Data(left)),
                    };
                    return Poll::Ready(Some(Ok(data)));
                }
                Framing::Close if !buf.is_empty() => {
                    return Poll::Ready(Some(Ok(buf.split().freeze())));
                }
                Framing::Chunked(Chunk::Size) if !buf.is_empty() => {
                    // httparse takes a line with no digits as size 0.
                    if !buf[0].is_ascii_hexdigit() {
                        return self.broken("malformed chunk size");
                    }
                    match httparse::parse_chunk_size(buf) {
                        Ok(httparse::Status::Complete((used, size))) => {
                            buf.advance(used);
                            self.framing = Framing::Chunked(if size == 0 {
                                Chunk::Trailers
                            } else {
                                Chunk::Data(size)
                            });
                            continue;
                        }
                        Ok(httparse::Status::Partial) if buf.len() < MAX_CHUNK_LINE => {}
                        _ => return self.broken("malformed chunk size"),
                    }
                }
                Framing::Chunked(Chunk::End) if buf.len() >= 2 => {
                    if &buf[..2] != b"\r\n" {
                        return self.broken("chunk data longer than its size");
                    }
                    buf.advance(2);
                    self.framing = Framing::Chunked(Chunk::Size);
                    continue;
                }
                Framing::Chunked(Chunk::Trailers) if !buf.is_empty() => {
                    if buf.starts_with(b"\r\n") {
                        buf.advance(2);
                        self.framing = Framing::Done;
                        return Poll::Ready(None);
                    }
                    if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        // Trailer fields are dropped, not checked: a
                        // connection whose answer had any is not reused.
                        buf.advance(end + 4);
                        self.framing = Framing::Done;
                        self.keep_alive = false;
                        return Poll::Ready(None);
                    }
                    if buf.len() >= MAX_TRAILERS {
                        return self.broken("trailer section too large");
                    }
                }
                _ => {}
            }
            let filled = match self.conn.poll_fill(cx) {
                Poll::Ready(r) => r,
                Poll::Pending => {
                    // One timer per body, moved rather than made anew.
                    let until = tokio::time::Instant::now() + BODY_STALL;
                    let stall = self
                        .stall
                        .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(until)));
                    if std::mem::take(&mut self.progressed) {
                        stall.as_mut().reset(until);
                    }
                    if stall.as_mut().poll(cx).is_ready() {
                        return self.broken(&format!(
                            "no byte of the response body for {:?}",
                            BODY_STALL
                        ));
                    }
                    return Poll::Pending;
                }
            };
            // Progress: the next wait gets the whole bound again.
            self.progressed = true;
            match filled {
                Ok(0) if self.framing == Framing::Close => {
                    self.framing = Framing::Done;
                    self.keep_alive = false;
                    return Poll::Ready(None);
                }
                Ok(0) => return self.broken("the connection ended inside the response body"),
                Ok(_) => {}
                Err(e) => {
                    self.keep_alive = false;
                    return Poll::Ready(Some(Err(Error::Io(e))));
                }
            }
        }
    }

    fn broken(&mut self, what: &str) -> Poll<Option<Result<Bytes, Error>>> {
        self.keep_alive = false;
        Poll::Ready(Some(Err(Error::Protocol(what.to_owned()))))
    }

    /// Bytes left, when known.
    pub(super) fn exact_len(&self) -> Option<u64> {
        match self.framing {
            Framing::Done => Some(0),
            Framing::Length(n) => Some(n),
            _ => None,
        }
    }

    /// One data frame: the piece [`Reader::poll_data`] read.
    pub(super) fn poll_frame(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Error>>> {
        self.poll_data(cx).map(|o| o.map(|r| r.map(Frame::data)))
    }
}

#[cfg(test)]
mod tests;
