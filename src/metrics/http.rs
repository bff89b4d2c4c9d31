//! The `/metrics` endpoint: a minimal axum router around [`Metrics::render`].
//!
//! Kept apart from the registry so the metric definitions do not depend on the HTTP stack. The
//! listener is bound by the caller (the driver reports its address in `RC_METRICS_ENDPOINT` and
//! a listen failure is a startup error, GO-COMPAT §3), so this only serves.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, ToSocketAddrs};
use std::sync::Arc;

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
pub async fn serve(
    metrics: Arc<Metrics>,
    listener: tokio::net::TcpListener,
) -> std::io::Result<()> {
    axum::serve(listener, router(metrics)).await
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

fn router(metrics: Arc<Metrics>) -> Router {
    Router::new()
        .route("/metrics", get(render))
        .fallback(not_found)
        .with_state(metrics)
}

async fn render(State(metrics): State<Arc<Metrics>>) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, CONTENT_TYPE)], metrics.render())
}

async fn not_found() -> impl IntoResponse {
    (
        StatusCode::NOT_FOUND,
        "not found; metrics are at /metrics\n",
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
