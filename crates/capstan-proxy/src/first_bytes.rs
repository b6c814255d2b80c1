//! A client connection whose first bytes must arrive within a bound.
//!
//! hyper's `header_read_timeout` starts only once the connection is known
//! to be HTTP/1, and telling HTTP/1 from HTTP/2 takes bytes: a client that
//! connects and sends nothing, or the first bytes of the HTTP/2 preface and
//! then nothing, would hold its connection for good. No hyper or hyper-util
//! setting bounds that wait, so this wrapper does.

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
/// not known (see [`PREFACE`]) within the bound.
pub(crate) struct FirstBytes {
    stream: TcpStream,
    /// Until the first bytes are in: when they must have been.
    deadline: Option<Pin<Box<tokio::time::Sleep>>>,
    read: usize,
}

impl FirstBytes {
    /// `stream`, whose first bytes must arrive within `bound` from now.
    pub(crate) fn new(stream: TcpStream, bound: Duration) -> Self {
        Self {
            stream,
            deadline: Some(Box::pin(tokio::time::sleep(bound))),
            read: 0,
        }
    }
}

impl AsyncRead for FirstBytes {
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

impl AsyncWrite for FirstBytes {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    async fn pair(bound: Duration) -> (TcpStream, FirstBytes) {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
        let (server, _) = l.accept().await.unwrap();
        (client, FirstBytes::new(server, bound))
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
}
