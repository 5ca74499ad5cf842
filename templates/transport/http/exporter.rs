//! `GET /metrics` (manifest `metrics: prometheus`) on a listener of its own
//! (`--observability-metrics-port`, 0 turns it off): the counters of `metrics` with the census
//! the store counts at each scrape.

use crate::config::Config;
use crate::store::Store;
use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::{Method, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use std::convert::Infallible;
use std::time::Duration;
use tokio::net::TcpListener;

/// Binds the metrics port (unless it is 0) and serves `GET /metrics` there until the process
/// ends. A port that cannot be bound fails the start, so a scrape never reaches another process.
pub async fn serve(config: &Config, store: Store) -> Result<(), String> {
    let port = config.observability_metrics_port;
    if port == 0 {
        return Ok(());
    }
    let listener = TcpListener::bind((config.server_bind.as_str(), port))
        .await
        .map_err(|e| format!("cannot listen on {}:{port} for metrics: {e}", config.server_bind))?;
    crate::log!(Info, "metrics on http://{}/metrics", listener.local_addr().map_err(|e| e.to_string())?);
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            };
            let store = store.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req| {
                    let store = store.clone();
                    async move { Ok::<_, Infallible>(route(&store, req).await) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .timer(TokioTimer::new())
                    .header_read_timeout(Duration::from_secs(10))
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    Ok(())
}

async fn route(store: &Store, req: hyper::Request<Incoming>) -> Response<Full<Bytes>> {
    let (status, content_type, body) = match (req.method(), req.uri().path()) {
        (&Method::GET, "/metrics") => match store.census().await {
            Ok(census) => (200, "text/plain; version=0.0.4; charset=utf-8", crate::metrics::render(&census)),
            Err(e) => {
                crate::log!(Error, "metrics: cannot read the store: {e}");
                (500, "text/plain", format!("Failed to read the store: {e}"))
            }
        },
        _ => (404, "text/plain", String::new()),
    };
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    r.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}
