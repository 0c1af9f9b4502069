//! The HTTP listener: accepts connections under the limits a service open to a network needs, and
//! hands each to hyper with the application's router.
//!
//! `axum::serve` has no limits of its own: a client that opens a connection and sends half a
//! request head holds a descriptor for as long as it likes, and enough of them starve the process
//! of descriptors the ledger needs. Here every connection holds a permit of a fixed pool
//! (`http.max_connections`); one more is answered `503` and closed at once, never accepted and
//! left waiting. Hyper closes a connection that does not complete a request head within
//! `http.header_read_timeout`, and a watchdog closes one on which nothing moved for
//! `http.idle_timeout` while no request is being answered.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};

use crate::config::HttpConfig;

/// What an excess connection is told before it is closed.
const BUSY: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\nConnection: close\r\n\
Content-Type: application/json\r\nContent-Length: 91\r\n\r\n\
{\"error\":{\"code\":\"too_many_connections\",\"message\":\"the server is at its connection limit\"}}";

/// How long shutdown waits for open connections to finish their requests.
const DRAIN: Duration = Duration::from_secs(10);

/// Serves `app` on `listener` until `shutdown` resolves, then stops accepting, lets requests in
/// flight finish (at most ten seconds) and returns.
pub async fn serve(
    listener: TcpListener,
    app: axum::Router,
    limits: HttpConfig,
    shutdown: impl Future<Output = ()> + Send,
) -> io::Result<()> {
    let max = limits.max_connections;
    let slots = Arc::new(Semaphore::new(max));
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    builder.http2().timer(TokioTimer::new());
    let builder = Arc::new(builder);
    let (stop_tx, stop) = watch::channel(false);
    tokio::pin!(shutdown);
    let mut refused_logged: Option<Instant> = None;
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = &mut shutdown => break,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(error) if is_per_connection(&error) => continue,
            // Out of descriptors or memory: nothing to do but wait for some to come back.
            Err(error) => {
                tracing::warn!(%error, "cannot accept connections; retrying in 100ms");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            crate::telemetry::metrics()
                .http_connections_refused
                .add(1, &[]);
            if refused_logged.is_none_or(|at| at.elapsed() > Duration::from_secs(10)) {
                tracing::warn!(
                    max_connections = max,
                    "connection limit reached: refusing new connections with 503"
                );
                refused_logged = Some(Instant::now());
            }
            refuse(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let activity = Activity::new();
        let io = TokioIo::new(Watched {
            inner: stream,
            activity: activity.clone(),
        });
        let service = TowerToHyperService::new(InFlight {
            inner: app.clone(),
            activity: activity.clone(),
        });
        let builder = builder.clone();
        let mut stop = stop.clone();
        let idle = limits.idle_timeout;
        tokio::spawn(async move {
            let connection = builder.serve_connection(io, service);
            tokio::pin!(connection);
            // Once asked to close at shutdown, a connection gets DRAIN to finish what it is
            // answering; one whose peer stops reading would otherwise hold its slot for ever.
            let mut closing: Option<tokio::time::Instant> = None;
            loop {
                tokio::select! {
                    _ = connection.as_mut() => break,
                    _ = stop.changed(), if closing.is_none() => {
                        closing = Some(tokio::time::Instant::now() + DRAIN);
                        connection.as_mut().graceful_shutdown();
                    }
                    // Nothing in flight and nothing moving: no answer is owed, so the connection
                    // is dropped rather than asked to close (an HTTP/2 peer that is gone would
                    // never acknowledge the GOAWAY's ping).
                    () = activity.idle_for(idle), if closing.is_none() => break,
                    () = tokio::time::sleep_until(closing.unwrap_or_else(tokio::time::Instant::now)),
                        if closing.is_some() => break,
                }
            }
            drop(permit);
        });
    }
    drop(listener);
    let _ = stop_tx.send(true);
    // Every connection gives its permit back when it ends: all of them back means all ended.
    let drained = tokio::time::timeout(DRAIN, slots.acquire_many(max as u32)).await;
    if drained.is_err() {
        tracing::warn!(
            open = max - slots.available_permits(),
            "connections still open after {DRAIN:?}; closing them"
        );
    }
    Ok(())
}

/// Accept errors that concern only the connection being accepted (the peer gave up first).
fn is_per_connection(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    )
}

/// Tells an excess connection to come back later and closes it, without waiting on it: the
/// answer fits any socket buffer, and a peer that does not read it loses nothing it was owed.
fn refuse(stream: TcpStream) {
    let _ = stream.try_write(BUSY);
    tokio::spawn(async move {
        let mut stream = stream;
        let _ = tokio::time::timeout(Duration::from_millis(100), stream.shutdown()).await;
    });
}

/// When a connection last moved a byte, and how many of its requests are being answered.
#[derive(Clone)]
struct Activity(Arc<ActivityState>);

struct ActivityState {
    since: Instant,
    /// Milliseconds after `since` of the last read or write.
    last_ms: AtomicU64,
    in_flight: AtomicUsize,
}

impl Activity {
    fn new() -> Self {
        Self(Arc::new(ActivityState {
            since: Instant::now(),
            last_ms: AtomicU64::new(0),
            in_flight: AtomicUsize::new(0),
        }))
    }

    fn touch(&self) {
        let ms = self.0.since.elapsed().as_millis() as u64;
        self.0.last_ms.store(ms, Ordering::Relaxed);
    }

    /// Resolves once nothing moved for `idle` while no request was being answered.
    async fn idle_for(&self, idle: Duration) {
        loop {
            let last = self.0.since + Duration::from_millis(self.0.last_ms.load(Ordering::Relaxed));
            let due = last + idle;
            if Instant::now() >= due && self.0.in_flight.load(Ordering::Relaxed) == 0 {
                return;
            }
            let next = if Instant::now() >= due {
                Instant::now() + idle
            } else {
                due
            };
            tokio::time::sleep_until(next.into()).await;
        }
    }
}

/// A socket that records when bytes move through it.
struct Watched {
    inner: TcpStream,
    activity: Activity,
}

impl AsyncRead for Watched {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.activity.touch();
        }
        polled
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        polled
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// The router, counting the requests of one connection that are being answered, so the idle
/// watchdog never closes a connection waiting on a slow answer.
#[derive(Clone)]
struct InFlight {
    inner: axum::Router,
    activity: Activity,
}

impl<B> tower::Service<axum::http::Request<B>> for InFlight
where
    B: axum::body::HttpBody<Data = axum::body::Bytes> + Send + 'static,
    B::Error: Into<axum::BoxError>,
{
    type Response = axum::response::Response;
    type Error = std::convert::Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: axum::http::Request<B>) -> Self::Future {
        let state = self.activity.0.clone();
        state.in_flight.fetch_add(1, Ordering::Relaxed);
        let answer = tower::ServiceExt::oneshot(self.inner.clone(), request);
        Box::pin(async move {
            let response = answer.await;
            state.in_flight.fetch_sub(1, Ordering::Relaxed);
            response
        })
    }
}
