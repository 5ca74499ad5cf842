//! The HTTP transport: `POST /` carries every protocol request, `GET /poll/{group}/{id}` is a
//! server-sent-event stream of messages for that worker, `GET /health` and `GET /ready` are probes.
//! HTTP/1.1 only, as the official server.

{% if c.jwt() %}
use crate::auth::Auth;
{% endif %}
use crate::config::{Config, Settings};
use crate::delivery::{self, Hub};
use crate::protocol::{self, Refusal, Reply, Request, VERSION};
use crate::store::Store;
use http_body_util::{combinators::BoxBody, BodyExt, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::header::{HeaderValue, {% if c.jwt() %}AUTHORIZATION, {% endif %}CACHE_CONTROL, CONTENT_TYPE};
use hyper::{Method, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use serde::Deserialize;
use std::convert::Infallible;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::Notify;

/// Requests larger than this are refused with 413 before they are parsed.
const BODY_LIMIT: usize = {{ c.spec.protocol.http.body_limit_bytes }};
const TOO_LARGE: &str = "{{ c.spec.protocol.http.body_too_large.body }}";
/// How long a client may take to send a request's header, and then its body. A slow or silent
/// client (slowloris) is cut off: a header not complete in time closes the connection (hyper's
/// header read timeout, which also closes a kept-alive connection idle that long), a body not
/// complete in time is answered 408. Each open connection costs a task and a descriptor.
const READ_TIMEOUT: Duration = Duration::from_secs(10);
const TOO_SLOW: &str = "Request body not received within 10 s";
/// The retired REST API answers 410 with this body.
const GONE: &str = r#"{{ c.spec.protocol.http.gone.body }}"#;
const GONE_PATHS: [&str; {{ c.spec.protocol.http.gone.paths.len() }}] = [{% for p in c.spec.protocol.http.gone.paths %}"{{ p }}", {% endfor %}];

type Body = BoxBody<Bytes, Infallible>;

/// The last instant handed out: the request clock never goes backwards within a process.
static CLOCK: AtomicI64 = AtomicI64::new(0);

/// Wall-clock Unix ms, made monotonic.
pub fn now() -> i64 {
    let wall = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0);
    CLOCK.fetch_max(wall, Ordering::Relaxed).max(wall)
}

struct App {
    store: Store,
    hub: Arc<Hub>,
    debug: bool,
{% if c.jwt() %}
    /// Verifies the token of every request (spec/auth.yaml).
    auth: Auth,
{% endif %}
}

/// Opens the store, starts the background loop and delivery, and serves until the process ends.
pub async fn serve(config: Config) -> Result<(), String> {
    crate::set_log_level(&config.level)?;
{% if c.jwt() %}
    let auth = Auth::load(&config)?;
{% endif %}
    let enqueued = Arc::new(Notify::new());
    let settings = Arc::new(config.settings());
    let store = Store::open(&config, settings.clone(), enqueued.clone()).await.map_err(|e| e.to_string())?;
    let listener = TcpListener::bind((config.server_bind.as_str(), config.server_port))
        .await
        .map_err(|e| format!("cannot listen on {}:{}: {e}", config.server_bind, config.server_port))?;
    crate::log!(Info, "listening on http://{}", listener.local_addr().map_err(|e| e.to_string())?);
    let hub = Arc::new(Hub::default());
    tokio::spawn(background(store.clone(), settings.clone(), config.timeouts_poll_interval));
    tokio::spawn(delivery::run(store.clone(), hub.clone(), enqueued, settings.clone()));
    let app = Arc::new(App { store, hub, debug: config.debug{% if c.jwt() %}, auth{% endif %} });
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

/// Runs the background rules every `interval` ms unless debug.start paused them; a pass that
/// filled a batch is followed at once by another.
async fn background(store: Store, settings: Arc<Settings>, interval: i64) {
    let mut ticks = tokio::time::interval(Duration::from_millis(interval as u64));
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        while !settings.paused.load(Ordering::Relaxed) {
            match store.run_rules(now()).await {
                Ok(true) => continue,
                Ok(false) => break,
                Err(e) => {
                    crate::log!(Error, "background pass failed: {e}");
                    break;
                }
            }
        }
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

/// The request envelope. Unknown fields are ignored (SDKs add their own head fields).
#[derive(Deserialize)]
struct Envelope {
    kind: String,
    head: Head,
    data: serde_json::Value,
}

#[derive(Deserialize)]
struct Head {
    #[serde(rename = "corrId")]
    corr_id: String,
    version: String,
    #[serde(rename = "resonate:debug_time")]
    debug_time: Option<i64>,
{% if c.jwt() %}
    /// The raw JWT (no `Bearer ` in front of it).
    auth: Option<String>,
{% endif %}
}

/// Writes a response envelope: keys `kind, head, data`, head keys `corrId, status, version`.
fn envelope(kind: &str, corr_id: &str, status: u16, data: &str) -> Response<Body> {
    let text = |s: &str| serde_json::to_string(s).expect("strings serialise");
    let mut body = String::with_capacity(data.len() + kind.len() + corr_id.len() + 64);
    body.push_str(r#"{"kind":"#);
    body.push_str(&text(kind));
    body.push_str(r#","head":{"corrId":"#);
    body.push_str(&text(corr_id));
    body.push_str(r#","status":"#);
    body.push_str(&status.to_string());
    body.push_str(r#","version":"#);
    body.push_str(&text(VERSION));
    body.push_str(r#"},"data":"#);
    body.push_str(data);
    body.push('}');
    reply(status, Some("application/json"), body)
}

impl App {
    async fn route(&self, req: hyper::Request<Incoming>) -> Response<Body> {
        let path = req.uri().path();
        match (req.method(), path) {
            (&Method::POST, "/") => self.rpc(req).await,
            (_, "/") => reply(405, None, ""),
            (&Method::GET, "/health") => reply(200, None, ""),
            (&Method::GET, "/ready") => match self.store.ping().await {
                Ok(()) => reply(200, None, ""),
                Err(_) => reply(503, None, ""),
            },
{% if c.jwt() %}
            (&Method::GET, p) if p.starts_with("/poll/") => {
                // A stream needs a valid `Authorization: Bearer <jwt>`; its prefix is not checked.
                match self.auth.authenticate_bearer(req.headers().get(AUTHORIZATION)) {
                    Ok(_) => self.poll(p),
                    Err(_) => reply({{ c.auth.as_ref().unwrap().poll_status }}, Some("{{ c.auth.as_ref().unwrap().poll_content_type }}"), "{{ c.auth.as_ref().unwrap().poll_body }}"),
                }
            }
{% else %}
            (&Method::GET, p) if p.starts_with("/poll/") => self.poll(p),
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
        let env: Envelope = match serde_json::from_slice(&body) {
            Ok(env) => env,
            Err(e) => {
                let (kind, corr_id) = salvage(&body);
                let refusal = Refusal::InvalidEnvelope(e.to_string());
                return envelope(&kind, &corr_id, refusal.status(), &json_string(&refusal.message()));
            }
        };
        let (kind, corr_id) = (env.kind.clone(), env.head.corr_id.clone());
        match self.dispatch(env).await {
            Ok(r) => envelope(&kind, &corr_id, r.status, &r.data),
            Err(refusal) => envelope(&kind, &corr_id, refusal.status(), &json_string(&refusal.message())),
        }
    }

    /// The envelope checks of spec/protocol.yaml in order, then the kind's own step.
    async fn dispatch(&self, env: Envelope) -> Result<Reply, Refusal> {
        if env.kind.is_empty() {
            return Err(Refusal::MissingKind);
        }
        if !env.data.is_object() {
            return Err(Refusal::InvalidData);
        }
        if env.head.version != VERSION {
            return Err(Refusal::UnsupportedVersion(env.head.version));
        }
{% if c.jwt() %}
        // Envelope step 6: the token is verified before anything about the kind is answered.
        let grant = self.auth.authenticate(env.head.auth.as_deref())?;
{% endif %}
        if protocol::is_debug(&env.kind) && !self.debug {
            return Err(Refusal::DebugDisabled);
        }
{% if c.jwt() %}
        // The token must cover every id the decoded request names.
        let request = grant.authorize(protocol::decode(&env.kind, env.data))?;
{% else %}
        let request = protocol::decode(&env.kind, env.data)?;
{% endif %}
        let clock = if self.debug { env.head.debug_time } else { None };
        if let (Request::DebugTick(tick), Some(at)) = (&request, clock) {
            if tick.time != at {
                return Err(Refusal::TickTimeMismatch);
            }
        }
        let at = clock.unwrap_or_else(now);
        self.store.execute(request, at, env.head.corr_id).await.or_else(|e| {
            crate::log!(Error, "{} failed: {e}", env.kind);
            Ok(Reply { status: 500, data: json_string(&format!("Internal error: Storage error: {e}")) })
        })
    }
}

fn json_string(s: &str) -> String {
    serde_json::to_string(s).expect("strings serialise")
}

/// The kind and corrId of an unparseable envelope, when the body is JSON enough to have them.
fn salvage(body: &[u8]) -> (String, String) {
    let v: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
    let kind = v.get("kind").and_then(|k| k.as_str()).unwrap_or("unknown");
    let corr_id = v.pointer("/head/corrId").and_then(|c| c.as_str()).unwrap_or("0");
    (kind.to_string(), corr_id.to_string())
}
