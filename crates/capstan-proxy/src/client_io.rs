//! A client connection whose waits hyper leaves unbounded are bounded here:
//!
//! - its first bytes: hyper's `header_read_timeout` starts only once the
//!   connection is known to be HTTP/1, and telling HTTP/1 from HTTP/2 takes
//!   bytes, so a client that connects and sends nothing, or the first bytes
//!   of the HTTP/2 preface and then nothing, would hold its connection for
//!   good;
//! - every write: a client that stops reading its answer (its receive
//!   window full) would hold the connection, the request's task and its
//!   upstream connection for good (nginx's `send_timeout`).
//!
//! No hyper or hyper-util setting bounds these waits, so this wrapper does.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// The HTTP/2 connection preface: once it has arrived, or a byte that
/// differs from it (HTTP/1), the protocol is known and its own bounds take
/// over.
const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// A TCP stream that fails its reads with `TimedOut` when the protocol is
/// not known (see [`PREFACE`]) within the first bound, and its writes when
/// one makes no progress for `send_timeout`.
pub(crate) struct ClientIo {
    stream: TcpStream,
    /// Until the first bytes are in: when they must have been.
    deadline: Option<Pin<Box<tokio::time::Sleep>>>,
    read: usize,
    send_timeout: Duration,
    /// While a write waits: when it must have made progress (made once,
    /// the first time a write waits, and reset after).
    write_deadline: Option<Pin<Box<tokio::time::Sleep>>>,
    write_waiting: bool,
}

impl ClientIo {
    /// `stream`, whose first bytes must arrive within `first_bytes` from
    /// now, and each of whose writes must progress within `send_timeout`.
    pub(crate) fn new(stream: TcpStream, first_bytes: Duration, send_timeout: Duration) -> Self {
        Self {
            stream,
            deadline: Some(Box::pin(tokio::time::sleep(first_bytes))),
            read: 0,
            send_timeout,
            write_deadline: None,
            write_waiting: false,
        }
    }

    /// `polled`, a write's outcome, or `TimedOut` when it has waited for
    /// `send_timeout`. Costs nothing while writes go through at once.
    fn bound_write<T>(
        &mut self,
        cx: &mut Context<'_>,
        polled: Poll<io::Result<T>>,
    ) -> Poll<io::Result<T>> {
        if polled.is_ready() {
            self.write_waiting = false;
            return polled;
        }
        let until = tokio::time::Instant::now() + self.send_timeout;
        let deadline = match &mut self.write_deadline {
            Some(d) => {
                if !self.write_waiting {
                    d.as_mut().reset(until);
                }
                d
            }
            None => self
                .write_deadline
                .insert(Box::pin(tokio::time::sleep_until(until))),
        };
        self.write_waiting = true;
        if deadline.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the client read nothing of its answer within send_timeout",
            )));
        }
        Poll::Pending
    }
}

impl AsyncRead for ClientIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.stream).poll_read(cx, buf);
        if let Some(deadline) = &mut this.deadline {
            match &polled {
                Poll::Ready(Ok(())) => {
                    let new = &buf.filled()[before..];
                    // Set only while fewer than PREFACE.len() bytes are in.
                    let expected = &PREFACE[this.read..];
                    let n = new.len().min(expected.len());
                    this.read += new.len();
                    if this.read >= PREFACE.len() || new[..n] != expected[..n] {
                        this.deadline = None;
                    }
                }
                Poll::Pending if deadline.as_mut().poll(cx).is_ready() => {
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "no request arrived within header_timeout",
                    )));
                }
                _ => {}
            }
        }
        polled
    }
}

impl AsyncWrite for ClientIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.stream).poll_write(cx, buf);
        this.bound_write(cx, polled)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.stream).poll_write_vectored(cx, bufs);
        this.bound_write(cx, polled)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.stream).poll_flush(cx);
        this.bound_write(cx, polled)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    async fn pair(bound: Duration) -> (TcpStream, ClientIo) {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
        let (server, _) = l.accept().await.unwrap();
        (client, ClientIo::new(server, bound, bound))
    }

    /// The start of the HTTP/2 preface, then nothing: the read fails at the
    /// bound. A byte that is not the preface's makes it HTTP/1, and the
    /// bound no longer applies, however short the request.
    #[tokio::test]
    async fn the_bound_holds_until_the_protocol_is_known() {
        let bound = Duration::from_millis(200);
        let (mut client, mut server) = pair(bound).await;
        client.write_all(b"PRI * HTTP/2.0\r\n").await.unwrap();
        let mut buf = [0u8; 64];
        assert_eq!(server.read(&mut buf).await.unwrap(), 16);
        let e = server.read(&mut buf).await.unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::TimedOut);

        let (mut client, mut server) = pair(bound).await;
        client.write_all(b"GET / HTTP/1.0\r\n\r\n").await.unwrap();
        assert_eq!(server.read(&mut buf).await.unwrap(), 18);
        tokio::time::sleep(bound * 2).await;
        client.write_all(b"more").await.unwrap();
        assert_eq!(server.read(&mut buf).await.unwrap(), 4);
    }

    /// Small socket buffers, so a writer waits as soon as its reader lags.
    fn small_buffers(client: &TcpStream, server: &ClientIo) {
        socket2::SockRef::from(client)
            .set_recv_buffer_size(16 * 1024)
            .unwrap();
        socket2::SockRef::from(&server.stream)
            .set_send_buffer_size(16 * 1024)
            .unwrap();
    }

    /// Writes to a client that reads nothing fail once one has waited for
    /// the bound; to a client that keeps reading, however slowly, they go on.
    #[tokio::test]
    async fn a_write_waiting_longer_than_the_bound_fails() {
        let bound = Duration::from_millis(300);
        let chunk = vec![7u8; 64 * 1024];
        let (client, mut server) = pair(bound).await;
        small_buffers(&client, &server);
        let started = tokio::time::Instant::now();
        let e = loop {
            if let Err(e) = server.write_all(&chunk).await {
                break e;
            }
        };
        assert_eq!(e.kind(), io::ErrorKind::TimedOut);
        assert!(started.elapsed() >= bound);
        drop(client);

        // A slow reader: a read every 50 ms, well inside the bound, so
        // every write waits, but never for as long as the bound.
        let (mut client, mut server) = pair(bound).await;
        small_buffers(&client, &server);
        let total = 8 * chunk.len();
        let reader = tokio::spawn(async move {
            let mut buf = vec![0u8; 64 * 1024];
            let mut got = 0;
            while got < total {
                tokio::time::sleep(Duration::from_millis(50)).await;
                got += client.read(&mut buf).await.unwrap();
            }
            got
        });
        for _ in 0..8 {
            server
                .write_all(&chunk)
                .await
                .expect("a slow reader is not cut");
        }
        assert_eq!(reader.await.unwrap(), total);
    }
}
