//! The HTTP transport: `POST /` carries every protocol request, `GET /poll/{group}/{id}` is a
//! server-sent-event stream of messages for that worker, `GET /health` and `GET /ready` are probes.
//! HTTP/1.1 only, as the official server.

use crate::config::Config;
use crate::delivery::{self, Hub};
use crate::service::{Answer, Service, BODY_LIMIT, TOO_LARGE};
use http_body_util::{combinators::BoxBody, BodyExt, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::header::{HeaderValue, {% if c.jwt() %}AUTHORIZATION, {% endif %}CACHE_CONTROL, CONTENT_TYPE};
use hyper::{Method, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::Notify;

/// How long a client may take to send a request's header, and then its body. A slow or silent
/// client (slowloris) is cut off: a header not complete in time closes the connection (hyper's
/// header read timeout, which also closes a kept-alive connection idle that long), a body not
/// complete in time is answered 408. Each open connection costs a task and a descriptor.
const READ_TIMEOUT: Duration = Duration::from_secs(10);
const TOO_SLOW: &str = "Request body not received within 10 s";
/// Any method but POST on `/` answers {{ c.spec.protocol.http.not_post.status }} with this body.
const NOT_POST: &str = r#"{{ c.spec.protocol.http.not_post.body }}"#;
/// The retired REST API answers 410 with this body.
const GONE: &str = r#"{{ c.spec.protocol.http.gone.body }}"#;
const GONE_PATHS: [&str; {{ c.spec.protocol.http.gone.paths.len() }}] = [{% for p in c.spec.protocol.http.gone.paths %}"{{ p }}", {% endfor %}];

type Body = BoxBody<Bytes, Infallible>;

struct App {
    service: Service,
    hub: Arc<Hub>,
}

/// Opens the store, starts the background loop and delivery, and serves until the process ends.
pub async fn serve(config: Config) -> Result<(), String> {
    crate::set_log_level(&config.level)?;
    let enqueued = Arc::new(Notify::new());
    let settings = Arc::new(config.settings());
    let service = Service::open(&config, settings.clone(), enqueued.clone()).await?;
    let listener = TcpListener::bind((config.server_bind.as_str(), config.server_port))
        .await
        .map_err(|e| format!("cannot listen on {}:{}: {e}", config.server_bind, config.server_port))?;
    crate::log!(Info, "listening on http://{}", listener.local_addr().map_err(|e| e.to_string())?);
{% if c.metrics %}
    crate::exporter::serve(&config, service.store().clone()).await?;
{% endif %}
    let hub = Arc::new(Hub::default());
    tokio::spawn(delivery::run(service.store().clone(), hub.clone(), enqueued, settings));
    let app = Arc::new(App { service, hub });
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                crate::log!(Warn, "accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let app = app.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let app = app.clone();
                async move { Ok::<_, Infallible>(app.route(req).await) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(READ_TIMEOUT)
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

fn reply(status: u16, content_type: Option<&'static str>, body: impl Into<Bytes>) -> Response<Body> {
    let mut r = Response::new(Full::new(body.into()).boxed());
    *r.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    if let Some(ct) = content_type {
        r.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static(ct));
    }
    r
}

impl App {
    async fn route(&self, req: hyper::Request<Incoming>) -> Response<Body> {
        let path = req.uri().path();
        match (req.method(), path) {
            (&Method::POST, "/") => self.rpc(req).await,
            (_, "/") => reply({{ c.spec.protocol.http.not_post.status }}, Some("{{ c.spec.protocol.http.not_post.content_type }}"), NOT_POST),
            (&Method::GET, "/health") => reply(200, None, ""),
            (&Method::GET, "/ready") => match self.service.store().ping().await {
                Ok(()) => reply(200, None, ""),
                Err(_) => reply(503, None, ""),
            },
{% if c.jwt() %}
            (&Method::GET, p) if p.starts_with("/poll/") => {
                // A stream needs a valid `Authorization: Bearer <jwt>`; its prefix is not checked.
                match self.service.auth().authenticate_bearer(req.headers().get(AUTHORIZATION)) {
                    Ok(_) => self.poll(p),
                    Err(_) => reply({{ c.auth.as_ref().unwrap().poll_status }}, Some("{{ c.auth.as_ref().unwrap().poll_content_type }}"), "{{ c.auth.as_ref().unwrap().poll_body }}"),
                }
            }
{% else %}
            (&Method::GET, p) if p.starts_with("/poll/") => self.poll(p),
{% endif %}
{% if c.dashboard %}
            // The read-only dashboard (ui.rs); this arm is all it adds to other requests' path.
            (_, p) if p == "/ui" || p.starts_with("/ui/") => crate::ui::route(&self.service, req).await,
{% endif %}
            (_, p) if GONE_PATHS.iter().any(|g| p == *g || p.starts_with(&format!("{g}/"))) => {
                reply({{ c.spec.protocol.http.gone.status }}, Some("application/json"), GONE)
            }
            _ => reply(404, None, ""),
        }
    }

    /// `GET /poll/{group}/{id}`: registers the stream; messages for `poll://…@group/id` (and
    /// `poll://any@group`) arrive as `data:` events.
    fn poll(&self, path: &str) -> Response<Body> {
        let mut parts = path["/poll/".len()..].splitn(2, '/');
        let (Some(group), Some(id)) = (parts.next(), parts.next()) else { return reply(404, None, "") };
        if group.is_empty() || id.is_empty() || id.contains('/') {
            return reply(404, None, "");
        }
        let mut r = Response::new(self.hub.connect(group, id).boxed());
        r.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
        r.headers_mut().insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        r
    }

    async fn rpc(&self, req: hyper::Request<Incoming>) -> Response<Body> {
        let body = match tokio::time::timeout(READ_TIMEOUT, Limited::new(req.into_body(), BODY_LIMIT).collect()).await {
            Ok(Ok(b)) => b.to_bytes(),
            Err(_) => return reply(408, Some("text/plain"), TOO_SLOW),
            Ok(Err(_)) => return reply({{ c.spec.protocol.http.body_too_large.status }}, Some("{{ c.spec.protocol.http.body_too_large.content_type }}"), TOO_LARGE),
        };
        let Answer { status, body{% if c.metrics %}, ..{% endif %} } = self.service.handle(&body).await;
        reply(status, Some("application/json"), body)
    }
}
