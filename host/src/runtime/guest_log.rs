//! `guest_log.rs` turns a guest's stdout and stderr into host log lines
//! tagged with the request id and the route. It owns line splitting and the
//! per-request output budget; it knows nothing of HTTP.
//!
//! Writes never fail: a guest whose `println!` hit an error would panic, so
//! output past the budget is dropped (and counted) instead.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use tokio::io::AsyncWrite;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};

/// Bytes of output one request may log; the rest is dropped.
const OUTPUT_BUDGET: usize = 256 * 1024;
/// A line longer than this is logged in pieces.
const MAX_LINE: usize = 8 * 1024;

/// Which of the guest's two output streams.
#[derive(Clone, Copy, Debug)]
pub enum Stream {
    Stdout,
    Stderr,
}

impl Stream {
    fn name(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }
}

/// One request's log sink for one stream. Cloned into the WASI context; all
/// clones share one buffer.
#[derive(Clone)]
pub struct GuestLog {
    /// Buffered partial line and budget, shared by every stream the guest
    /// opens on this descriptor.
    inner: Arc<Mutex<Inner>>,
}

struct Inner {
    request_id: Arc<str>,
    route: Arc<str>,
    stream: Stream,
    line: Vec<u8>,
    logged: usize,
    dropped: usize,
}

impl GuestLog {
    pub fn new(request_id: Arc<str>, route: Arc<str>, stream: Stream) -> Self {
        Self {
            inner: Arc::new(Mutex::new(Inner {
                request_id,
                route,
                stream,
                line: Vec::new(),
                logged: 0,
                dropped: 0,
            })),
        }
    }

    /// Logs any unfinished line and how much was dropped. Called once the
    /// request's guest instance is gone.
    pub fn finish(&self) {
        let mut inner = lock(&self.inner);
        inner.flush_line();
        if inner.dropped > 0 {
            tracing::warn!(
                request_id = %inner.request_id,
                route = %inner.route,
                stream = inner.stream.name(),
                dropped_bytes = inner.dropped,
                "guest output over the {OUTPUT_BUDGET}-byte budget was dropped"
            );
            inner.dropped = 0;
        }
    }
}

fn lock(m: &Mutex<Inner>) -> std::sync::MutexGuard<'_, Inner> {
    // A panic while holding this lock can only come from tracing itself;
    // the buffer is still consistent, so keep using it.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Inner {
    fn write(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            let room = OUTPUT_BUDGET.saturating_sub(self.logged + self.line.len());
            if room == 0 {
                self.dropped += bytes.len();
                return;
            }
            let take = bytes.len().min(room);
            let (mut now, rest) = bytes.split_at(take);
            bytes = rest;
            while !now.is_empty() {
                let space = MAX_LINE - self.line.len();
                let window = &now[..now.len().min(space)];
                let (piece, ends_line) = match window.iter().position(|&b| b == b'\n') {
                    Some(i) => (&now[..=i], true),
                    None => (window, window.len() == space),
                };
                self.line.extend_from_slice(piece);
                now = &now[piece.len()..];
                if ends_line {
                    self.flush_line();
                }
            }
        }
    }

    fn flush_line(&mut self) {
        if self.line.is_empty() {
            return;
        }
        self.logged += self.line.len();
        let text = String::from_utf8_lossy(&self.line);
        let text = text.trim_end_matches(['\n', '\r']);
        tracing::info!(
            target: "burrow::guest",
            request_id = %self.request_id,
            route = %self.route,
            stream = self.stream.name(),
            "{text}"
        );
        self.line.clear();
    }
}

impl AsyncWrite for GuestLog {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        lock(&self.inner).write(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        lock(&self.inner).flush_line();
        Poll::Ready(Ok(()))
    }
}

impl IsTerminal for GuestLog {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for GuestLog {
    fn async_stream(&self) -> Box<dyn AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inner() -> Inner {
        Inner {
            request_id: "r".into(),
            route: "t".into(),
            stream: Stream::Stdout,
            line: Vec::new(),
            logged: 0,
            dropped: 0,
        }
    }

    #[test]
    fn splits_lines_and_keeps_partial_ones() {
        let mut i = inner();
        i.write(b"one\ntw");
        assert_eq!(i.logged, 4);
        assert_eq!(i.line, b"tw");
        i.write(b"o\n");
        assert_eq!(i.logged, 8);
        assert!(i.line.is_empty());
    }

    #[test]
    fn long_lines_are_cut_and_budget_is_enforced() {
        let mut i = inner();
        i.write(&vec![b'x'; MAX_LINE + 10]);
        assert_eq!(i.logged, MAX_LINE);
        assert_eq!(i.line.len(), 10);
        i.write(&vec![b'y'; OUTPUT_BUDGET * 2]);
        assert_eq!(i.logged + i.line.len(), OUTPUT_BUDGET);
        assert_eq!(
            i.dropped,
            OUTPUT_BUDGET * 2 - (OUTPUT_BUDGET - MAX_LINE - 10)
        );
    }
}
