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
