//! A per-request deadline for HTTP/1.1 connections, below the transport.
//!
//! A keep-alive connection must be allowed to sit idle longer than the API server's connection
//! pool keeps it (90 s), or a pooled connection is closed just as it is reused and the admission
//! fails. But a client that *starts* a request must finish sending it quickly, or a few hundred
//! slow clients hold the server's memory. hyper has one timer for both (its header timeout also
//! runs while idle), so this wrapper adds the second: from the first byte of a request to the
//! first byte of its response, at most `limit`; idle time between requests is not counted.
//!
//! It also closes the way nginx's lingering close does: when the server answers early (413, 503)
//! while the client is still sending its body, closing at once would make the kernel reset the
//! connection and the client would never read the answer. So on shutdown the write side is
//! closed first and what the client still sends is read and discarded, for at most
//! [`LINGER`], before the connection goes.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

/// Longest a closing connection keeps reading what the client still sends.
pub const LINGER: Duration = Duration::from_secs(2);

pub struct RequestDeadline<IO> {
    io: IO,
    limit: Duration,
    timer: Pin<Box<Sleep>>,
    /// A request has started arriving and its response has not started yet.
    armed: bool,
    /// The write side is closed; unread input is being discarded until EOF or the timer.
    lingering: bool,
}

impl<IO> RequestDeadline<IO> {
    pub fn new(io: IO, limit: Duration) -> Self {
        Self {
            io,
            limit,
            timer: Box::pin(tokio::time::sleep(limit)),
            armed: false,
            lingering: false,
        }
    }
}

impl<IO: AsyncRead + Unpin> AsyncRead for RequestDeadline<IO> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.io).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before && !this.armed {
            this.armed = true;
            let deadline = Instant::now() + this.limit;
            this.timer.as_mut().reset(deadline);
        }
        if polled.is_pending() && this.armed && this.timer.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the request did not arrive within --request-timeout",
            )));
        }
        polled
    }
}

impl<IO: AsyncRead + AsyncWrite + Unpin> AsyncWrite for RequestDeadline<IO> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        // The response has started: the request is complete.
        self.armed = false;
        Pin::new(&mut self.io).poll_write(cx, data)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.armed = false;
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if !this.lingering {
            if let Err(error) = std::task::ready!(Pin::new(&mut this.io).poll_shutdown(cx)) {
                return Poll::Ready(Err(error));
            }
            this.lingering = true;
            let deadline = Instant::now() + LINGER;
            this.timer.as_mut().reset(deadline);
        }
        let mut scratch = [0u8; 8192];
        loop {
            let mut buf = ReadBuf::new(&mut scratch);
            match Pin::new(&mut this.io).poll_read(cx, &mut buf) {
                Poll::Ready(Ok(())) if !buf.filled().is_empty() => continue,
                // EOF or an error: the client is done.
                Poll::Ready(_) => return Poll::Ready(Ok(())),
                Poll::Pending => {
                    return match this.timer.as_mut().poll(cx) {
                        Poll::Ready(()) => Poll::Ready(Ok(())),
                        Poll::Pending => Poll::Pending,
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test(start_paused = true)]
    async fn idle_time_is_free_but_a_started_request_must_finish() {
        let (client, server) = tokio::io::duplex(64);
        let mut server = RequestDeadline::new(server, Duration::from_secs(10));
        let (mut client_read, mut client_write) = tokio::io::split(client);
        let mut buf = [0u8; 16];

        // Idle for far longer than the limit, then a request arrives and is answered in time.
        tokio::time::sleep(Duration::from_secs(300)).await;
        client_write.write_all(b"GET").await.unwrap();
        assert_eq!(server.read(&mut buf).await.unwrap(), 3);
        server.write_all(b"200").await.unwrap();
        client_read.read_exact(&mut buf[..3]).await.unwrap();

        // Idle again, then a request that starts and stalls is cut after the limit.
        tokio::time::sleep(Duration::from_secs(300)).await;
        client_write.write_all(b"PO").await.unwrap();
        assert_eq!(server.read(&mut buf).await.unwrap(), 2);
        let started = Instant::now();
        let error = server.read(&mut buf).await.unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::TimedOut);
        assert!(started.elapsed() >= Duration::from_secs(10));
        assert!(started.elapsed() < Duration::from_secs(11));
    }
}
