//! The read-only dashboard at `/ui` (manifest `dashboard: true`): a page, its script and its
//! style, compiled into the binary and served as they are. The page reads the store through the
//! protocol like any client (`POST /` with `promise.*`, `task.*` and `schedule.*` `get` and
//! `search`){% if c.jwt() %}, with the token the operator pastes into it in `head.auth`{% endif %}. The one thing the protocol cannot read, a
//! promise's callbacks and listeners, is answered here by `POST /ui/waiters`
//! (spec/choices.yaml dashboard-waiters). Nothing here runs for requests to other paths.

use crate::service::Service;
use http_body_util::{combinators::BoxBody, BodyExt, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::header::{HeaderName, HeaderValue, {% if c.jwt() %}AUTHORIZATION, {% endif %}CACHE_CONTROL, CONTENT_TYPE};
use hyper::{Method, Response, StatusCode};
use serde::Deserialize;
use std::convert::Infallible;
use std::time::Duration;

const PAGE: &str = include_str!("ui.html");
const SCRIPT: &str = include_str!("ui.js");
const STYLE: &str = include_str!("ui.css");
/// The page runs only its own script and style and talks only to this server: data shown in it
/// cannot bring in code, even if some text were ever put into the page unescaped.
const POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; \
                      img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";
/// The largest `/ui/waiters` body: `{"id": …}`.
const WAITERS_LIMIT: usize = 64 * 1024;
/// How long a client may take to send that body.
const READ_TIMEOUT: Duration = Duration::from_secs(10);

type Body = BoxBody<Bytes, Infallible>;

/// Answers every request whose path is `/ui` or under it.
pub async fn route(service: &Service, req: hyper::Request<Incoming>) -> Response<Body> {
    match (req.method(), req.uri().path()) {
        (&Method::GET, "/ui" | "/ui/") => asset("text/html; charset=utf-8", PAGE),
        (&Method::GET, "/ui/ui.js") => asset("text/javascript; charset=utf-8", SCRIPT),
        (&Method::GET, "/ui/ui.css") => asset("text/css; charset=utf-8", STYLE),
        (&Method::POST, "/ui/waiters") => waiters(service, req).await,
        _ => answer(404, "text/plain", ""),
    }
}

fn answer(status: u16, content_type: &'static str, body: impl Into<Bytes>) -> Response<Body> {
    let mut r = Response::new(Full::new(body.into()).boxed());
    *r.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let headers = r.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(HeaderName::from_static("x-content-type-options"), HeaderValue::from_static("nosniff"));
    r
}

/// A file of the page, with its content security policy.
fn asset(content_type: &'static str, text: &'static str) -> Response<Body> {
    let mut r = answer(200, content_type, text);
    let headers = r.headers_mut();
    headers.insert(HeaderName::from_static("content-security-policy"), HeaderValue::from_static(POLICY));
    headers.insert(HeaderName::from_static("referrer-policy"), HeaderValue::from_static("no-referrer"));
    r
}

/// A JSON answer; on a refusal `data` is the message as a JSON string, as in an envelope.
fn json(status: u16, data: String) -> Response<Body> {
    answer(status, "application/json", data)
}

fn message(text: &str) -> String {
    serde_json::to_string(text).expect("strings serialise")
}

#[derive(Deserialize)]
struct Waiters {
    id: String,
}

/// `POST /ui/waiters {"id"}`: `{"callbacks": [awaiter ids], "listeners": [addresses]}` of the
/// promise, oldest first, empty for an unknown id.{% if c.jwt() %} Needs `Authorization: Bearer <jwt>` of a token
/// whose prefix covers the id, as `promise.get` would: 401 without a valid token, 403 outside it.{% endif %}
async fn waiters(service: &Service, req: hyper::Request<Incoming>) -> Response<Body> {
{% if c.jwt() %}
    let grant = match service.auth().authenticate_bearer(req.headers().get(AUTHORIZATION)) {
        Ok(grant) => grant,
        Err(refusal) => return json(refusal.status(), message(&refusal.message())),
    };
{% endif %}
    let body = match tokio::time::timeout(READ_TIMEOUT, Limited::new(req.into_body(), WAITERS_LIMIT).collect()).await {
        Ok(Ok(b)) => b.to_bytes(),
        Err(_) => return json(408, message("Request body not received within 10 s")),
        Ok(Err(_)) => return json(413, message("Request body too large")),
    };
    let id = match serde_json::from_slice::<Waiters>(&body) {
        Ok(w) if !w.id.is_empty() => w.id,
        Ok(_) => return json(400, message("Invalid request: id is required")),
        Err(e) => return json(400, message(&format!("Invalid request: {e}"))),
    };
{% if c.jwt() %}
    if !grant.covers_id(&id) {
        return json(403, message("Forbidden"));
    }
{% endif %}
    match service.store().waiters(id).await {
        Ok((callbacks, listeners)) => json(200, serde_json::json!({ "callbacks": callbacks, "listeners": listeners }).to_string()),
        Err(e) => {
            crate::log!(Error, "/ui/waiters failed: {e}");
            json(500, message(&format!("Internal error: Storage error: {e}")))
        }
    }
}
