//! Support for black-box tests of generated Resonate servers: small blocking HTTP and NATS
//! clients ([`client`], [`nats`]) behind one interface ([`transport`]), building and running
//! server binaries ([`server`]), and [`call`] for one protocol request over either transport.

pub mod badinput;
pub mod checklist;
pub mod client;
pub mod conform;
pub mod fuzz;
pub mod jwt;
pub mod linearize;
pub mod model;
pub mod nats;
pub mod server;
pub mod traces;
pub mod transitions;
pub mod transport;

use transport::Rpc;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

/// The protocol version every request carries.
const PROTOCOL_VERSION: &str = "2026-04-01";

/// Sends one protocol request, `{"kind", "head": {"corrId": "c", "version", ["resonate:debug_time": now], ["auth": admin token]}, "data"}`,
/// over `conn` (as `POST /` for an HTTP [`client::Client`]) and returns the status and the
/// parsed JSON response. Panics if the request fails or the response is not JSON.
pub fn call(conn: &mut impl Rpc, kind: &str, data: Value, now: Option<i64>) -> (u16, Value) {
    let mut head = json!({ "corrId": "c", "version": PROTOCOL_VERSION });
    if let Some(now) = now {
        head["resonate:debug_time"] = json!(now);
    }
    if let Some(token) = jwt::admin_token() {
        head["auth"] = json!(token);
    }
    let request = json!({ "kind": kind, "head": head, "data": data });
    let response = conn
        .rpc(request.to_string().as_bytes())
        .unwrap_or_else(|e| panic!("{kind} request failed: {e}"));
    (response.status, response.json())
}

/// [`call`] without a debug time that must answer 200; returns the response's `data`.
pub fn ok(conn: &mut impl Rpc, kind: &str, data: Value) -> Value {
    let (status, envelope) = call(conn, kind, data.clone(), None);
    assert_eq!(status, 200, "{kind} {data} answered {envelope}");
    envelope["data"].clone()
}

/// The messages queued for `address`, as `debug.snap` shows them (a `--debug` server).
pub fn queued(conn: &mut impl Rpc, address: &str) -> Vec<Value> {
    let snap = ok(conn, "debug.snap", json!({}));
    let messages = snap["messages"].as_array().expect("snap lists messages");
    messages.iter().filter(|m| m["address"] == address).map(|m| m["message"].clone()).collect()
}

/// Waits until `done` holds, checking every 50 ms; panics with `what` after `wait`.
pub fn eventually(what: &str, wait: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + wait;
    while !done() {
        assert!(Instant::now() < deadline, "not within {wait:?}: {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}
