//! The `/metrics` endpoint: a minimal axum router around [`Metrics::render`].
//!
//! Kept apart from the registry so the metric definitions do not depend on the HTTP stack. The
//! listener is bound by the caller (the driver reports its address in `RC_METRICS_ENDPOINT` and
//! a listen failure is a startup error, GO-COMPAT §3), so this only serves.
//!
//! Anyone who can reach the port can open connections, and every connection is a file
//! descriptor of the daemon: 1100 idle ones under systemd's default limit of 1024 made the
//! health script fail to start (issue #20). So the listener holds at most [`Limits::max_connections`]
//! connections (more wait in the kernel's backlog, costing this process nothing), closes a
//! connection on which nothing moved for [`Limits::idle`] (a client that never sends its
//! headers), and closes any connection after [`Limits::lifetime`] (a client that trickles
//! bytes to stay just under the idle timeout).

use std::future::Future;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, ToSocketAddrs};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::{Instant, Sleep};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;

use super::Metrics;

/// Content type of the exposition (OpenMetrics text 1.0.0).
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Serves `GET /metrics` (and `HEAD`) with [`Metrics::render`] and [`CONTENT_TYPE`]; every other
/// path answers 404 (another method on `/metrics`: 405). Runs until the task is aborted or
/// accepting fails for good; per-connection errors are handled inside and do not end it.
pub async fn serve(metrics: Arc<Metrics>, listener: TcpListener) -> std::io::Result<()> {
    serve_with(metrics, listener, Limits::for_this_process()).await
}

/// [`serve`] with explicit [`Limits`] (tests).
pub async fn serve_with(
    metrics: Arc<Metrics>,
    listener: TcpListener,
    limits: Limits,
) -> std::io::Result<()> {
    axum::serve(Limited::new(listener, limits), router(metrics, None)).await
}

/// [`serve`] plus `extra` routes under the same [`Limits`] (the fleet page, built by
/// `fleet::routes`, so this module does not depend on what it serves); `/metrics` and the
/// 404 fallback stay this module's.
pub async fn serve_extra(
    metrics: Arc<Metrics>,
    listener: TcpListener,
    extra: Router,
) -> std::io::Result<()> {
    axum::serve(
        Limited::new(listener, Limits::for_this_process()),
        router(metrics, Some(extra)),
    )
    .await
}

/// How much of the daemon the metrics listener may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Connections served at once; more wait in the kernel's accept backlog.
    pub max_connections: usize,
    /// Close a connection on which nothing was read or written for this long.
    pub idle: Duration,
    /// Close any connection after this long (scrapers reconnect).
    pub lifetime: Duration,
}

impl Limits {
    /// Most connections ever served at once.
    pub const MAX_CONNECTIONS: usize = 64;

    /// 64 connections but never more than 1/8 of the soft open-files limit (so a
    /// `LimitNOFILE=` of 128 still leaves the daemon most of its descriptors), 10 s idle, 60 s
    /// lifetime. A Prometheus scrape needs one connection for well under a second.
    pub fn for_this_process() -> Self {
        let nofile = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
            .map(|(soft, _)| soft)
            .unwrap_or(1024);
        let share = usize::try_from(nofile / 8).unwrap_or(Self::MAX_CONNECTIONS);
        Limits {
            max_connections: share.clamp(1, Self::MAX_CONNECTIONS),
            idle: Duration::from_secs(10),
            lifetime: Duration::from_secs(60),
        }
    }
}

/// A [`TcpListener`] that accepts only while fewer than `max_connections` are open.
struct Limited {
    inner: TcpListener,
    slots: Arc<Semaphore>,
    limits: Limits,
}

impl Limited {
    fn new(inner: TcpListener, limits: Limits) -> Self {
        Limited {
            inner,
            slots: Arc::new(Semaphore::new(limits.max_connections.max(1))),
            limits,
        }
    }
}

impl axum::serve::Listener for Limited {
    type Io = LimitedIo;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            // The semaphore is never closed; a failure cannot happen, but must not spin.
            let Ok(permit) = self.slots.clone().acquire_owned().await else {
                std::future::pending::<()>().await;
                continue;
            };
            match self.inner.accept().await {
                Ok((stream, addr)) => {
                    let _ = stream.set_nodelay(true);
                    return (LimitedIo::new(stream, permit, self.limits), addr);
                }
                // Connection-level errors (the peer gave up) are retried at once; anything
                // else (EMFILE, …) after a pause, as axum does.
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::ConnectionAborted | io::ErrorKind::ConnectionReset
                    ) => {}
                Err(e) => {
                    tracing::warn!(event = "metrics_accept_error", error = %e, "metrics listener cannot accept; retrying in 1 s");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.inner.local_addr()
    }
}

/// One connection: holds its slot until dropped, fails with `TimedOut` once idle or too old.
struct LimitedIo {
    inner: TcpStream,
    _slot: OwnedSemaphorePermit,
    idle: Duration,
    idle_timer: Pin<Box<Sleep>>,
    lifetime_timer: Pin<Box<Sleep>>,
}

impl LimitedIo {
    fn new(inner: TcpStream, slot: OwnedSemaphorePermit, limits: Limits) -> Self {
        let now = Instant::now();
        LimitedIo {
            inner,
            _slot: slot,
            idle: limits.idle,
            idle_timer: Box::pin(tokio::time::sleep_until(now + limits.idle)),
            lifetime_timer: Box::pin(tokio::time::sleep_until(now + limits.lifetime)),
        }
    }

    fn progressed(&mut self) {
        let at = Instant::now() + self.idle;
        self.idle_timer.as_mut().reset(at);
    }

    /// `Some(error)` once a timer fired (registers both timers' wake-ups otherwise).
    fn expired(&mut self, cx: &mut Context<'_>) -> Option<io::Error> {
        let why = if self.lifetime_timer.as_mut().poll(cx).is_ready() {
            "metrics connection open too long"
        } else if self.idle_timer.as_mut().poll(cx).is_ready() {
            "metrics connection idle"
        } else {
            return None;
        };
        Some(io::Error::new(io::ErrorKind::TimedOut, why))
    }
}

impl AsyncRead for LimitedIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if let Some(e) = this.expired(cx) {
            return Poll::Ready(Err(e));
        }
        let before = buf.filled().len();
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                if buf.filled().len() > before {
                    this.progressed();
                }
                Poll::Ready(Ok(()))
            }
            other => other,
        }
    }
}

impl AsyncWrite for LimitedIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if let Some(e) = this.expired(cx) {
            return Poll::Ready(Err(e));
        }
        match Pin::new(&mut this.inner).poll_write(cx, data) {
            Poll::Ready(Ok(n)) => {
                if n > 0 {
                    this.progressed();
                }
                Poll::Ready(Ok(n))
            }
            other => other,
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

/// Reads `metrics.listen` the way Go's `net.Listen("tcp", addr)` does, so a Go configuration
/// binds the same socket: `host:port` with a literal IP, `[v6]:port`, `:port` (every
/// interface; bound as `0.0.0.0:port`), or a host name such as `localhost:9090`, resolved now
/// with the first IPv4 address preferred (Go listens on one address of a name, IPv4 first).
pub fn listen_addr(text: &str) -> Result<SocketAddr, String> {
    let bad = |why: &str| {
        format!(
            "must be host:port, [v6]:port or :port (like 127.0.0.1:9090 or :9090), got {text:?}: {why}"
        )
    };
    let Some((host, port)) = text.rsplit_once(':') else {
        return Err(bad("missing port"));
    };
    let port: u16 = port
        .parse()
        .map_err(|_| bad("the port must be a number from 0 to 65535"))?;
    let host = match host.strip_prefix('[') {
        Some(h) => h.strip_suffix(']').ok_or_else(|| bad("unclosed '['"))?,
        None if host.contains(':') => return Err(bad("an IPv6 address needs [brackets]")),
        None => host,
    };
    if host.is_empty() {
        return Ok(SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), port));
    }
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(SocketAddr::new(ip, port));
    }
    let addrs: Vec<SocketAddr> = (host, port)
        .to_socket_addrs()
        .map_err(|e| bad(&format!("cannot resolve {host:?}: {e}")))?
        .collect();
    addrs
        .iter()
        .find(|a| a.is_ipv4())
        .or_else(|| addrs.first())
        .copied()
        .ok_or_else(|| bad(&format!("{host:?} has no address")))
}

fn router(metrics: Arc<Metrics>, extra: Option<Router>) -> Router {
    let with_page = extra.is_some();
    let r = Router::new()
        .route("/metrics", get(render))
        .with_state(metrics);
    let r = match extra {
        Some(extra) => r.merge(extra),
        None => r,
    };
    r.fallback(move || not_found(with_page))
}

async fn render(State(metrics): State<Arc<Metrics>>) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, CONTENT_TYPE)], metrics.render())
}

async fn not_found(with_page: bool) -> impl IntoResponse {
    (
        StatusCode::NOT_FOUND,
        if with_page {
            "not found; the fleet page is at /, metrics are at /metrics\n"
        } else {
            "not found; metrics are at /metrics\n"
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_addresses_are_read_like_go_net_listen() {
        let v4 = |a: [u8; 4], p| SocketAddr::from((a, p));
        assert_eq!(listen_addr(":9090"), Ok(v4([0, 0, 0, 0], 9090)));
        assert_eq!(listen_addr("127.0.0.1:9090"), Ok(v4([127, 0, 0, 1], 9090)));
        assert_eq!(listen_addr("localhost:9090"), Ok(v4([127, 0, 0, 1], 9090)));
        assert_eq!(
            listen_addr("[::1]:9090"),
            Ok(SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, 9090)))
        );
        for bad in [
            "localhost",
            "::1:9090",
            "[::1:9090",
            "127.0.0.1:http",
            ":99999",
            "",
        ] {
            let e = listen_addr(bad).expect_err(bad);
            assert!(e.starts_with("must be host:port"), "{bad}: {e}");
        }
    }

    /// Issue #20: idle connections cannot pile up. With a limit of 4 and a 300 ms idle
    /// timeout, 12 idle clients hold at most 4 connections, the server closes them, and a
    /// scrape that comes after them is served.
    #[tokio::test]
    async fn idle_connections_are_limited_and_closed() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let metrics = Arc::new(Metrics::new("test", "rev"));
        let limits = Limits {
            max_connections: 4,
            idle: Duration::from_millis(300),
            lifetime: Duration::from_secs(30),
        };
        let server = tokio::spawn(serve_with(metrics, listener, limits));
        let mut idle = Vec::new();
        for _ in 0..12 {
            idle.push(
                tokio::net::TcpStream::connect(("127.0.0.1", port))
                    .await
                    .expect("connect"),
            );
        }
        // Every idle client is closed by the server (EOF or reset), in batches of 4.
        let started = std::time::Instant::now();
        for (i, c) in idle.iter_mut().enumerate() {
            let mut buf = [0u8; 64];
            let r = tokio::time::timeout(Duration::from_secs(10), c.read(&mut buf))
                .await
                .unwrap_or_else(|_| panic!("idle connection {i} was never closed"));
            assert!(matches!(r, Ok(0) | Err(_)), "{i}: {r:?}");
        }
        // 12 connections, 4 at a time, 300 ms each: at least 3 rounds.
        assert!(
            started.elapsed() >= Duration::from_millis(850),
            "{:?}",
            started.elapsed()
        );
        let mut conn = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .expect("connect");
        conn.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .expect("write");
        let mut reply = String::new();
        conn.read_to_string(&mut reply).await.expect("read");
        assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
        server.abort();
    }

    #[test]
    fn the_connection_limit_follows_the_open_files_limit() {
        let l = Limits::for_this_process();
        assert!((1..=Limits::MAX_CONNECTIONS).contains(&l.max_connections));
        assert_eq!(l.idle, Duration::from_secs(10));
    }

    /// Every accepted form can really be bound and served (port 0: any free port).
    #[tokio::test]
    async fn accepted_forms_bind_and_serve() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        for text in [":0", "localhost:0", "127.0.0.1:0"] {
            let addr = listen_addr(text).expect(text);
            let listener = tokio::net::TcpListener::bind(addr).await.expect(text);
            let port = listener.local_addr().expect("addr").port();
            let metrics = Arc::new(Metrics::new("test", "rev"));
            let server = tokio::spawn(serve(metrics, listener));
            let mut conn = tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .expect("connect");
            conn.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                .await
                .expect("write");
            let mut reply = String::new();
            conn.read_to_string(&mut reply).await.expect("read");
            assert!(reply.starts_with("HTTP/1.1 200"), "{text}: {reply}");
            server.abort();
        }
    }
}
