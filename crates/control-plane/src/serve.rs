//! Serving the router over HTTP/1 with bounds a slow or hostile client cannot
//! stretch: a client must send its request headers within
//! [`HEADER_READ_TIMEOUT`] (hyper drops the connection otherwise), a request
//! must be received and answered within [`REQUEST_TIMEOUT`] (a body trickled
//! byte by byte gets a 408), and at most [`MAX_CONCURRENT_REQUESTS`] requests
//! run at once (the rest wait their turn).
//!
//! `axum::serve` sets no timer, so hyper's header timeout never fires there;
//! this is the same accept loop with one. What does not live here: the
//! routes (`crate::router`).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{ConnectInfo, Request};
use axum::middleware::Next;
use axum::response::IntoResponse;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;

use crate::error::ApiError;

/// How long a client may take to send a request's headers.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// How long reading a request's body and answering it may take.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
/// Requests handled at once; more wait for a slot.
pub const MAX_CONCURRENT_REQUESTS: usize = 256;

/// `Strict-Transport-Security` for two years.
const HSTS: &str = "max-age=63072000";

/// Middleware: HSTS on every response to a request that came over TLS, as the
/// load balancer that terminated it says (`X-Forwarded-Proto: https`).
/// Browsers ignore the header over plain HTTP, so a client forging the
/// header gains nothing.
pub async fn strict_transport(request: Request, next: Next) -> axum::response::Response {
    let over_tls = request
        .headers()
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|proto| proto.trim().eq_ignore_ascii_case("https"));
    let mut response = next.run(request).await;
    if over_tls {
        response.headers_mut().insert(
            axum::http::header::STRICT_TRANSPORT_SECURITY,
            axum::http::HeaderValue::from_static(HSTS),
        );
    }
    response
}

/// The bounds, adjustable for tests.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub header_read: Duration,
    pub request: Duration,
    pub concurrent: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            header_read: HEADER_READ_TIMEOUT,
            request: REQUEST_TIMEOUT,
            concurrent: MAX_CONCURRENT_REQUESTS,
        }
    }
}

/// The router with the request timeout and the concurrency limit applied.
pub fn bounded(router: Router, limits: Limits) -> Router {
    let slots = Arc::new(Semaphore::new(limits.concurrent));
    let request = limits.request;
    router.layer(axum::middleware::from_fn(
        move |req: Request, next: Next| {
            let slots = slots.clone();
            async move {
                let Ok(_slot) = slots.acquire_owned().await else {
                    return ApiError::Unavailable("the server is shutting down".into())
                        .into_response();
                };
                match tokio::time::timeout(request, next.run(req)).await {
                    Ok(response) => response,
                    Err(_) => ApiError::RequestTimeout.into_response(),
                }
            }
        },
    ))
}

/// Accepts connections on `listener` until `stop`, then lets open
/// connections finish their requests.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: Limits,
    stop: CancellationToken,
) -> anyhow::Result<()> {
    let router = bounded(router, limits);
    let connections = TaskTracker::new();
    loop {
        let (stream, peer) = tokio::select! {
            () = stop.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(err) => {
                    // Out of file descriptors and the like: wait, do not spin.
                    tracing::warn!(error = %err, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let router = router.clone();
        let stop = stop.clone();
        connections.spawn(serve_connection(stream, peer, router, limits, stop));
    }
    connections.close();
    connections.wait().await;
    Ok(())
}

async fn serve_connection(
    stream: tokio::net::TcpStream,
    peer: SocketAddr,
    router: Router,
    limits: Limits,
    stop: CancellationToken,
) {
    let service = router.map_request(move |mut req: Request<Incoming>| {
        req.extensions_mut().insert(ConnectInfo(peer));
        req.map(axum::body::Body::new)
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read);
    let connection =
        builder.serve_connection(TokioIo::new(stream), TowerToHyperService::new(service));
    let mut connection = std::pin::pin!(connection);
    tokio::select! {
        result = connection.as_mut() => {
            if let Err(err) = result {
                tracing::debug!(%peer, error = %err, "connection ended");
            }
        }
        () = stop.cancelled() => {
            connection.as_mut().graceful_shutdown();
            if let Err(err) = connection.await {
                tracing::debug!(%peer, error = %err, "connection ended during shutdown");
            }
        }
    }
}
