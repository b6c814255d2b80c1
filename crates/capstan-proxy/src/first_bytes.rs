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

/// The HTTP/2 connection preface's length: once this much has arrived, the
/// protocol is known and the protocol's own bounds take over.
const PREFACE_LEN: usize = 24;

/// A TCP stream that fails its reads with `TimedOut` when fewer than
/// [`PREFACE_LEN`] bytes have arrived within the bound.
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
                    this.read += buf.filled().len() - before;
                    if this.read >= PREFACE_LEN {
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
