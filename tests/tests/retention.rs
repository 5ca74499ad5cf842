//! Rule R8 (spec/rules.yaml): `--retention` deletes promises settled longer ago than the
//! horizon, with their tasks, and nothing that is pending or that a pending workflow may still
//! read. Driven by the debug clock: the server is paused by `debug.start`, so rules run only in
//! `debug.tick`. Runs on the target `RESONATE_TARGET` names (default sqlite-http).

use resonate_tests::call;
use resonate_tests::client::Client;
use resonate_tests::server::{build, target, Server};
use serde_json::{json, Value};

/// Promises settle here; the horizon is an hour.
const T0: i64 = 1_000_000_000;
const HOUR: i64 = 3_600_000;
/// Far beyond every clock the test uses.
const FAR: i64 = 4_000_000_000_000;
const POLL: &str = "poll://any@nobody";

struct Rig {
    _server: Server,
    client: Client,
}

impl Rig {
    fn start() -> Rig {
        let server = Server::start(&build(&target()), &["--debug", "--retention", "1h"]);
        let mut rig = Rig { client: server.client(), _server: server };
        rig.ok("debug.start", json!({}), T0);
        rig
    }

    fn send(&mut self, kind: &str, data: Value, now: i64) -> (u16, Value) {
        let (status, envelope) = call(&mut self.client, kind, data, Some(now));
        (status, envelope["data"].clone())
    }

    fn ok(&mut self, kind: &str, data: Value, now: i64) -> Value {
        let (status, answer) = self.send(kind, data.clone(), now);
        assert_eq!(status, 200, "{kind} {data} at {now} answered {answer}");
        answer
    }

    fn create(&mut self, id: &str, tags: Value, timeout_at: i64, now: i64) {
        let data = json!({ "id": id, "timeoutAt": timeout_at, "param": {}, "tags": tags });
        self.ok("promise.create", data, now);
    }

    fn settle(&mut self, id: &str, now: i64) {
        self.ok("promise.settle", json!({ "id": id, "state": "resolved", "value": {} }), now);
    }

    fn tick(&mut self, time: i64) {
        assert_eq!(self.ok("debug.tick", json!({ "time": time }), time), json!([]));
    }

    /// The HTTP status of `promise.get` (200 kept, 404 deleted) and of `task.get`.
    fn statuses(&mut self, id: &str, now: i64) -> (u16, u16) {
        let promise = self.send("promise.get", json!({ "id": id }), now).0;
        let task = self.send("task.get", json!({ "id": id }), now).0;
        (promise, task)
    }
}

#[test]
fn settled_promises_older_than_the_horizon_go_and_nothing_else_does() {
    let mut r = Rig::start();
    // Settled at T0 with a task: both go.
    r.create("old", json!({ "resonate:target": POLL }), FAR, T0);
    r.settle("old", T0);
    // Settled inside the horizon: kept.
    r.create("recent", json!({}), FAR, T0);
    r.settle("recent", T0 + 2 * HOUR);
    // Pending: kept, however old.
    r.create("pending", json!({}), FAR, T0);
    // A settled child of a pending root: kept while the root may replay and read it.
    r.create("root", json!({}), FAR, T0);
    r.create("root.1", json!({ "resonate:origin": "root" }), FAR, T0);
    r.settle("root.1", T0);
    // Its deadline long past: settled by the pass (its listener is told), then deleted.
    r.create("lapsed", json!({ "resonate:external": "true" }), T0 + 1, T0);
    r.ok("promise.register_listener", json!({ "awaited": "lapsed", "address": POLL }), T0);
    // A workflow whose task was resumed by `dep` and not yet run: `dep` is kept for it.
    r.create("wf", json!({ "resonate:target": POLL }), FAR, T0);
    r.ok("task.acquire", json!({ "id": "wf", "version": 0, "pid": "p", "ttl": 10 * HOUR }), T0);
    r.create("dep", json!({ "resonate:external": "true" }), FAR, T0);
    let callback = json!({ "kind": "promise.register_callback", "head": {},
                           "data": { "awaited": "dep", "awaiter": "wf" } });
    r.ok("task.suspend", json!({ "id": "wf", "version": 1, "actions": [callback] }), T0);
    r.settle("dep", T0);

    let now = T0 + 2 * HOUR + HOUR / 2;
    r.tick(now);
    assert_eq!(r.statuses("old", now), (404, 404), "settled before the horizon, with its task");
    assert_eq!(r.statuses("lapsed", now).0, 404, "timed out before the horizon");
    assert_eq!(r.statuses("recent", now).0, 200, "settled after the horizon");
    assert_eq!(r.statuses("pending", now).0, 200, "pending");
    assert_eq!(r.statuses("root.1", now).0, 200, "its origin is pending");
    assert_eq!(r.statuses("dep", now).0, 200, "a pending task lists it in its resumes");
    let snap = r.ok("debug.snap", json!({}), now);
    let unblocks: Vec<&Value> = snap["messages"]
        .as_array()
        .expect("snap lists messages")
        .iter()
        .filter(|m| m["message"]["kind"] == "unblock")
        .collect();
    assert_eq!(unblocks.len(), 1, "the lapsed promise's listener keeps its message: {snap}");
    assert_eq!(unblocks[0]["message"]["data"]["promise"]["id"], "lapsed");
    assert_eq!(unblocks[0]["message"]["data"]["promise"]["state"], "rejected_timedout");

    // Once the root settles and the workflow ran, what they held goes too (the root itself
    // settled inside the horizon and stays).
    r.settle("root", now);
    r.ok("task.acquire", json!({ "id": "wf", "version": 1, "pid": "p", "ttl": HOUR }), now);
    let fulfill = json!({ "kind": "promise.settle", "head": {},
                          "data": { "id": "wf", "state": "resolved", "value": {} } });
    r.ok("task.fulfill", json!({ "id": "wf", "version": 2, "action": fulfill }), now);
    r.tick(now + 1);
    assert_eq!(r.statuses("root.1", now + 1).0, 404, "its origin settled");
    assert_eq!(r.statuses("dep", now + 1).0, 404, "no pending task needs it");
    assert_eq!(r.statuses("root", now + 1).0, 200);
    assert_eq!(r.statuses("wf", now + 1), (200, 200));
    assert_eq!(r.statuses("recent", now + 1).0, 200);
}

#[test]
fn more_than_one_batch_is_deleted_and_later_promises_are_untouched() {
    let mut r = Rig::start();
    // More than one batch of the background pass (512).
    let old = 600;
    for i in 0..old {
        let id = format!("b{i:04}");
        r.create(&id, json!({}), FAR, T0);
        r.settle(&id, T0 + i);
    }
    r.create("late", json!({}), FAR, T0);
    r.settle("late", T0 + 2 * HOUR);
    let now = T0 + HOUR + old;
    r.tick(now);
    let search = r.ok("promise.search", json!({ "limit": 1000 }), now);
    let left: Vec<&str> = search["promises"]
        .as_array()
        .expect("a page of promises")
        .iter()
        .map(|p| p["id"].as_str().expect("an id"))
        .collect();
    assert_eq!(left, ["late"], "all {old} settled before the horizon are gone, the later one stays");
}

#[test]
fn retention_rejects_malformed_durations_at_start() {
    let bin = build(&target());
    let out = std::process::Command::new(&bin)
        .args(["--retention", "7 days"])
        .output()
        .expect("the server binary runs");
    assert!(!out.status.success(), "a malformed duration must stop the server");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--retention") && stderr.contains("7 days"), "unclear error: {stderr}");
}
