//! The transport-neutral server: a request envelope in, a response envelope out, and the
//! background rules. A transport hands [`Service::handle`] the bytes of each request and sends
//! back the [`Answer`]; it never looks inside an envelope.

{% if c.jwt() %}
use crate::auth::Auth;
{% endif %}
use crate::clock::now;
use crate::config::{Config, Settings};
use crate::protocol::{self, Refusal, Reply, Request, VERSION};
use crate::store::Store;
use serde::Deserialize;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;

/// Requests larger than this are refused with 413 before they are parsed.
pub const BODY_LIMIT: usize = {{ c.spec.protocol.http.body_limit_bytes }};
/// The message of that refusal.
pub const TOO_LARGE: &str = "{{ c.spec.protocol.http.body_too_large.body }}";

/// A response envelope and its status (`head.status`, which HTTP also uses as its status).
pub struct Answer {
    pub status: u16,
    pub body: String,
{% if c.metrics %}
    /// The request's kind as a `kind` label index of the request metrics.
    pub kind: usize,
{% endif %}
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

/// The store and what every request is checked against.
pub struct Service {
    store: Store,
    settings: Arc<Settings>,
    debug: bool,
{% if c.jwt() %}
    /// Verifies the token of every request (spec/auth.yaml).
    auth: Auth,
{% endif %}
}

impl Service {
    /// Opens the store and starts the background rules. `enqueued` is notified after each
    /// commit that queued a message.
    pub async fn open(config: &Config, settings: Arc<Settings>, enqueued: Arc<Notify>) -> Result<Service, String> {
{% if c.jwt() %}
        let auth = Auth::load(config)?;
{% endif %}
        let store = Store::open(config, settings.clone(), enqueued).await.map_err(|e| e.to_string())?;
        tokio::spawn(background(store.clone(), settings.clone(), config.timeouts_poll_interval));
        Ok(Service { store, settings, debug: config.debug{% if c.jwt() %}, auth{% endif %} })
    }

    /// The store, for delivery and readiness.
    pub fn store(&self) -> &Store {
        &self.store
    }
{% if c.jwt() %}

    /// The token checks, for a transport's own routes.
    pub fn auth(&self) -> &Auth {
        &self.auth
    }
{% endif %}

{% if c.metrics %}
    /// Answers one request envelope, and counts it by kind and status with its duration.
    pub async fn handle(&self, body: &[u8]) -> Answer {
        let started = std::time::Instant::now();
        let answer = self.answer(body).await;
        crate::metrics::request(answer.kind, answer.status, started.elapsed());
        answer
    }

    /// Answers one request envelope.
    async fn answer(&self, body: &[u8]) -> Answer {
{% else %}
    /// Answers one request envelope.
    pub async fn handle(&self, body: &[u8]) -> Answer {
{% endif %}
        let env: Envelope = match serde_json::from_slice(body) {
            Ok(env) => env,
            Err(e) => {
                let (kind, corr_id) = salvage(body);
                return refused(&kind, &corr_id, Refusal::InvalidEnvelope(e.to_string()));
            }
        };
        let (kind, corr_id) = (env.kind.clone(), env.head.corr_id.clone());
        match self.dispatch(env).await {
            Ok(r) => envelope(&kind, &corr_id, r.status, &r.data),
            Err(refusal) => refused(&kind, &corr_id, refusal),
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
        let pausing = matches!(request, Request::DebugStart(_));
        let reply = self.store.execute(request, at, env.head.corr_id).await.or_else(|e| {
            crate::log!(Error, "{} failed: {e}", env.kind);
            Ok(Reply { status: 500, data: json_string(&format!("Internal error: Storage error: {e}")) })
        });
        if pausing {
            // A pass that began before the pause finishes before debug.start answers.
            drop(self.settings.passing.lock().await);
        }
        reply
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
            let _pass = settings.passing.lock().await;
            if settings.paused.load(Ordering::Relaxed) {
                break;
            }
{% if c.metrics %}
            let started = std::time::Instant::now();
            let pass = store.run_rules(now()).await;
            crate::metrics::background_pass(started.elapsed());
            match pass {
{% else %}
            match store.run_rules(now()).await {
{% endif %}
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

/// The response envelope of a refusal: its status, its message as `data`.
pub fn refused(kind: &str, corr_id: &str, refusal: Refusal) -> Answer {
    envelope(kind, corr_id, refusal.status(), &json_string(&refusal.message()))
}

{% if c.nats() %}
/// The response envelope of a request over the size limit (where the transport has an envelope
/// to answer with: HTTP answers 413 in plain text instead).
pub fn too_large(body: &[u8]) -> Answer {
    let (kind, corr_id) = salvage(body);
    envelope(&kind, &corr_id, {{ c.spec.protocol.http.body_too_large.status }}, &json_string(TOO_LARGE))
}

/// The envelope sent instead of an answer of `bytes` the transport cannot carry (over NATS's
/// `max_payload` of `max`): a 500, as for any failure of the server's own making.
pub fn response_too_large(kind: &str, corr_id: &str, bytes: usize, max: usize) -> Answer {
    let message = format!("Internal error: the response ({bytes} bytes) is larger than the transport allows ({max} bytes)");
    envelope(kind, corr_id, 500, &json_string(&message))
}

{% endif %}
/// Writes a response envelope: keys `kind, head, data`, head keys `corrId, status, version`.
fn envelope(kind: &str, corr_id: &str, status: u16, data: &str) -> Answer {
    let mut body = String::with_capacity(data.len() + kind.len() + corr_id.len() + 64);
    body.push_str(r#"{"kind":"#);
    body.push_str(&json_string(kind));
    body.push_str(r#","head":{"corrId":"#);
    body.push_str(&json_string(corr_id));
    body.push_str(r#","status":"#);
    body.push_str(&status.to_string());
    body.push_str(r#","version":"#);
    body.push_str(&json_string(VERSION));
    body.push_str(r#"},"data":"#);
    body.push_str(data);
    body.push('}');
    Answer { status, body{% if c.metrics %}, kind: crate::metrics::kind(kind){% endif %} }
}

fn json_string(s: &str) -> String {
    serde_json::to_string(s).expect("strings serialise")
}

/// The kind and corrId of an unparseable envelope, when the body is JSON enough to have them.
pub fn salvage(body: &[u8]) -> (String, String) {
    let v: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
    let kind = v.get("kind").and_then(|k| k.as_str()).unwrap_or("unknown");
    let corr_id = v.pointer("/head/corrId").and_then(|c| c.as_str()).unwrap_or("0");
    (kind.to_string(), corr_id.to_string())
}
