//! The generated `sqlite-http` server over real HTTP: the success shape of every request kind,
//! every refusal spec/kinds.yaml and spec/protocol.yaml list (the case tables must cover the
//! spec), the protocol's semantics, SSE and push delivery, the background rules driven by
//! `debug.tick`, schedules, and the plain HTTP routes.
//!
//! Every test runs its own `--debug` server, paused by `debug.start` (background rules and
//! message delivery), and stamps every request with an explicit clock.

use resonate_tests::call;
use resonate_tests::model::accepted_addresses;
use resonate_tests::client::{Client, Sse};
use resonate_tests::server::{build, repo_root, target as target_under_test, Server};
use serde_json::{json, Value};
use serde_yaml::Value as Yaml;
use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::thread::sleep;
use std::time::{Duration, Instant};

const VERSION: &str = "2026-04-01";
/// The request clock most steps run at.
const T: i64 = 1_000;
/// A deadline no test reaches, later than any wall clock a background loop might use.
const FAR: i64 = 4_000_000_000_000;
/// A poll address no stream listens on; while delivery is paused its messages stay queued.
const POLL: &str = "poll://any@nobody";
/// How long an awaited message may take to arrive.
const WAIT: Duration = Duration::from_secs(5);
/// How long a stream stays quiet before we conclude no message is coming.
const QUIET: Duration = Duration::from_millis(300);
/// Every table `debug.snap` dumps.
const TABLES: [&str; 8] = [
    "promises", "promiseTimeouts", "callbacks", "listeners", "tasks", "taskTimeouts", "messages", "schedules",
];

/// A running `--debug` server and a client for it.
struct Rig {
    server: Server,
    client: Client,
}

impl Rig {
    /// Starts `sqlite-http --debug <args>` and pauses its background rules and message delivery
    /// with `debug.start`.
    fn start(args: &[&str]) -> Rig {
        let args: Vec<&str> = ["--debug"].iter().chain(args).copied().collect();
        let server = Server::start(&build(&target_under_test()), &args);
        let mut rig = Rig { client: server.client(), server };
        assert_eq!(rig.ok("debug.start", json!({}), T), json!({}));
        rig
    }

    /// A server that delivers messages while its background rules wait an hour between passes
    /// (their first pass ran on the empty store at start): rules fire only in `debug.tick`.
    fn delivering(args: &[&str]) -> Rig {
        let slow = ["--timeouts-poll-interval", "3600000"];
        let mut rig = Rig::start(&slow.iter().chain(args).copied().collect::<Vec<_>>());
        assert_eq!(rig.ok("debug.stop", json!({}), T), json!({}));
        rig
    }

    /// Sends one request at `now`; returns the status and `data`, having checked that the
    /// envelope echoes the kind and corrId and that head.status equals the HTTP status.
    fn send(&mut self, kind: &str, data: Value, now: i64) -> (u16, Value) {
        self.send_at(kind, data, Some(now))
    }

    fn send_at(&mut self, kind: &str, data: Value, now: Option<i64>) -> (u16, Value) {
        let (status, envelope) = call(&mut self.client, kind, data, now);
        assert_eq!(envelope["kind"], kind, "{envelope}");
        let head = json!({ "corrId": "c", "status": status, "version": VERSION });
        assert_eq!(envelope["head"], head, "{kind}: head differs from the HTTP status");
        (status, envelope["data"].clone())
    }

    /// Sends a request that must answer 200 and returns its `data`.
    fn ok(&mut self, kind: &str, data: Value, now: i64) -> Value {
        let (status, answer) = self.send(kind, data.clone(), now);
        assert_eq!(status, 200, "{kind} {data} at {now} answered {answer}");
        answer
    }

    fn create(&mut self, id: &str, tags: Value, timeout_at: i64, now: i64) -> Value {
        let data = json!({ "id": id, "timeoutAt": timeout_at, "param": {}, "tags": tags });
        self.ok("promise.create", data, now)["promise"].clone()
    }

    fn promise(&mut self, id: &str, now: i64) -> Value {
        self.ok("promise.get", json!({ "id": id }), now)["promise"].clone()
    }

    fn settle(&mut self, id: &str, state: &str, now: i64) -> Value {
        let data = json!({ "id": id, "state": state, "value": {} });
        self.ok("promise.settle", data, now)["promise"].clone()
    }

    fn task(&mut self, id: &str, now: i64) -> Value {
        self.ok("task.get", json!({ "id": id }), now)["task"].clone()
    }

    /// Acquires `id` at `version` for pid `p` and returns the task.
    fn acquire(&mut self, id: &str, version: i64, ttl: i64, now: i64) -> Value {
        let data = json!({ "id": id, "version": version, "pid": "p", "ttl": ttl });
        self.ok("task.acquire", data, now)["task"].clone()
    }

    /// A targeted promise `id` whose task is acquired at version 1 by pid `p`.
    fn held(&mut self, id: &str) {
        self.create(id, target(POLL), FAR, T);
        assert_eq!(self.acquire(id, 0, 60_000, T)["version"], 1);
    }

    fn tick(&mut self, time: i64) {
        assert_eq!(self.ok("debug.tick", json!({ "time": time }), time), json!([]));
    }

    fn snap(&mut self) -> Value {
        self.ok("debug.snap", json!({}), T)
    }

    /// The versions of the execute messages queued for task `id`.
    fn executes(&mut self, id: &str) -> Vec<i64> {
        let snap = self.snap();
        let queued = snap["messages"].as_array().expect("snap lists messages").iter();
        queued
            .map(|m| &m["message"])
            .filter(|m| m["kind"] == "execute" && m["data"]["task"]["id"] == id)
            .map(|m| m["data"]["task"]["version"].as_i64().expect("a version"))
            .collect()
    }

    /// Whether `debug.snap` lists `entry` among the task timeouts.
    fn task_timeout(&mut self, id: &str, kind: i64, timeout: i64) -> bool {
        let entry = json!({ "id": id, "type": kind, "timeout": timeout });
        self.snap()["taskTimeouts"].as_array().expect("snap lists task timeouts").contains(&entry)
    }

    /// Waits until the outbox is empty (delivery removes what it handed over).
    fn drained(&mut self) {
        let deadline = Instant::now() + WAIT;
        while self.snap()["messages"] != json!([]) {
            assert!(Instant::now() < deadline, "delivered messages never left the outbox");
            sleep(Duration::from_millis(20));
        }
    }
}

fn target(address: &str) -> Value {
    json!({ "resonate:target": address })
}

fn external() -> Value {
    json!({ "resonate:external": "true" })
}

fn create_action(id: &str, tags: Value, timeout_at: i64) -> Value {
    json!({ "kind": "promise.create", "head": {},
            "data": { "id": id, "timeoutAt": timeout_at, "param": {}, "tags": tags } })
}

fn settle_action(id: &str, state: &str) -> Value {
    json!({ "kind": "promise.settle", "head": {}, "data": { "id": id, "state": state, "value": {} } })
}

/// `task.fence` and `task.fulfill` data.
fn task_action(id: &str, version: i64, action: Value) -> Value {
    json!({ "id": id, "version": version, "action": action })
}

/// `task.suspend` data: task `id` at `version` awaits each of `awaited`.
fn suspend(id: &str, version: i64, awaited: &[&str]) -> Value {
    let actions: Vec<Value> = awaited
        .iter()
        .map(|a| json!({ "kind": "promise.register_callback", "head": {},
                         "data": { "awaited": a, "awaiter": id } }))
        .collect();
    json!({ "id": id, "version": version, "actions": actions })
}

fn task_create(pid: &str, ttl: i64, action: Value) -> Value {
    json!({ "pid": pid, "ttl": ttl, "action": action })
}

fn schedule(id: &str, cron: &str, promise_id: &str, promise_timeout: i64) -> Value {
    json!({ "id": id, "cron": cron, "promiseId": promise_id, "promiseTimeout": promise_timeout })
}

/// The ids of a search page's `items`.
fn ids(page: &Value, items: &str) -> Vec<String> {
    let list = page[items].as_array().unwrap_or_else(|| panic!("no {items} in {page}"));
    list.iter().map(|item| item["id"].as_str().expect("an id").to_string()).collect()
}

// ----- the spec as data -----

fn spec(file: &str) -> Yaml {
    let path = repo_root().join("spec").join(file);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn seq(v: &Yaml) -> impl Iterator<Item = &Yaml> {
    v.as_sequence().into_iter().flatten()
}

fn text(v: &Yaml) -> &str {
    v.as_str().unwrap_or_else(|| panic!("expected a string in the spec, found {v:?}"))
}

/// Every `<kind>/<error>` pair of spec/kinds.yaml: field checks, decode errors and guards.
fn kind_refusals() -> BTreeSet<String> {
    let kinds = spec("kinds.yaml");
    let mut pairs = BTreeSet::new();
    for (kind, def) in kinds.as_mapping().expect("kinds.yaml is a map") {
        let kind = text(kind);
        let checks = seq(&def["fields"]).flat_map(|f| seq(&f["checks"]));
        // A check is `{non_empty: error}` or `{at_least: {min, error}}`.
        for check in checks.flat_map(|c| c.as_mapping().expect("a check is a map").values()) {
            let error = check.as_str().unwrap_or_else(|| text(&check["error"]));
            pairs.insert(format!("{kind}/{error}"));
        }
        if let Some(error) = def["decode_error"].as_str() {
            pairs.insert(format!("{kind}/{error}"));
        }
        for guard in seq(&def["guards"]) {
            pairs.insert(format!("{kind}/{}", text(&guard["error"])));
        }
    }
    pairs
}

/// The envelope checks of spec/protocol.yaml, in order.
fn envelope_refusals() -> Vec<String> {
    let checks = spec("protocol.yaml")["envelope"]["checks"].clone();
    seq(&checks).map(|c| text(&c["error"]).to_string()).collect()
}

/// Asserts that a reply is the refusal `error` of spec/errors.yaml: its status and its exact
/// message (for a `{detail}` message, the text around the detail).
fn assert_refusal(errors: &Yaml, error: &str, status: u16, data: &Value, context: &str) {
    let entry = &errors[error];
    let expected = entry["status"].as_u64().unwrap_or_else(|| panic!("errors.yaml has no {error}"));
    assert_eq!(u64::from(status), expected, "{context}: status; data {data}");
    let message = data.as_str().unwrap_or_else(|| panic!("{context}: data is not a message: {data}"));
    match spec_message(errors, error).split_once("{detail}") {
        // (A detail may be empty: an empty resonate:target is named as ''.)
        Some((before, after)) => assert!(
            message.len() >= before.len() + after.len() && message.starts_with(before) && message.ends_with(after),
            "{context}: {message:?} does not fit {before:?}…{after:?}"
        ),
        None => assert_eq!(message, spec_message(errors, error), "{context}: message"),
    }
}

/// A refusal's message in spec/errors.yaml with `{addresses}` written out for the target's
/// transport, as the generator renders it; `{detail}` is left in.
fn spec_message(errors: &Yaml, error: &str) -> String {
    let transport = if target_under_test().contains("-nats") { "nats" } else { "http" };
    text(&errors[error]["message"]).replace("{addresses}", &accepted_addresses(transport))
}

// ----- 1. the success path of every kind -----

#[test]
fn promise_kinds_answer_their_records() {
    let mut r = Rig::start(&[]);
    let param = json!({ "data": "aGk=", "headers": { "h": "v" } });
    let data = json!({ "id": "p", "timeoutAt": 5_000, "param": param, "tags": { "k": "v" } });
    let pending = json!({ "id": "p", "state": "pending", "param": param, "value": {},
                          "tags": { "k": "v" }, "timeoutAt": 5_000, "createdAt": T });
    assert_eq!(r.ok("promise.create", data, T), json!({ "promise": pending }), "no settledAt");
    assert_eq!(r.ok("promise.get", json!({ "id": "p" }), 1_500), json!({ "promise": pending }));

    let value = json!({ "data": "b2s=" });
    let data = json!({ "id": "p", "state": "rejected", "value": value });
    let mut settled = pending.clone();
    settled["state"] = json!("rejected");
    settled["value"] = value;
    settled["settledAt"] = json!(2_000);
    assert_eq!(r.ok("promise.settle", data, 2_000), json!({ "promise": settled }));
    for state in ["resolved", "rejected_canceled"] {
        r.create(state, json!({}), FAR, T);
        assert_eq!(r.settle(state, state, 2_000)["state"], state);
    }

    // register_callback and register_listener answer the awaited promise and record the ledger once.
    let awaited = r.create("a", external(), FAR, T);
    r.create("w", target(POLL), FAR, T);
    let callback = json!({ "awaited": "a", "awaiter": "w" });
    let listener = json!({ "awaited": "a", "address": "poll://uni@g/l" });
    for _ in 0..2 {
        assert_eq!(r.ok("promise.register_callback", callback.clone(), T), json!({ "promise": awaited }));
        assert_eq!(r.ok("promise.register_listener", listener.clone(), T), json!({ "promise": awaited }));
    }
    let snap = r.snap();
    assert_eq!(snap["callbacks"], json!([{ "awaiter": "w", "awaited": "a" }]));
    assert_eq!(snap["listeners"], json!([{ "id": "a", "address": "poll://uni@g/l" }]));

    // promise.search: id order, limit and cursor, tag subset, state filter, projection.
    r.create("s1", json!({ "grp": "s", "n": "1" }), FAR, T);
    r.create("s2", json!({ "grp": "s" }), 3_000, T);
    r.create("s3", json!({ "grp": "s" }), FAR, T);
    let page = r.ok("promise.search", json!({ "tags": { "grp": "s" }, "limit": 2 }), 4_000);
    assert_eq!((ids(&page, "promises"), &page["cursor"]), (vec!["s1".into(), "s2".into()], &json!("s2")));
    assert_eq!(page["promises"][1]["state"], "rejected_timedout", "search reads through the projection");
    let rest = r.ok("promise.search", json!({ "tags": { "grp": "s" }, "limit": 2, "cursor": "s2" }), 4_000);
    assert_eq!(rest, json!({ "promises": [r.promise("s3", 4_000)] }), "the last page has no cursor");
    let tagged = r.ok("promise.search", json!({ "tags": { "grp": "s", "n": "1" } }), 4_000);
    assert_eq!(ids(&tagged, "promises"), ["s1"]);
    let resolved = r.ok("promise.search", json!({ "state": "resolved" }), 4_000);
    assert_eq!(ids(&resolved, "promises"), ["resolved"]);
    let timedout = r.ok("promise.search", json!({ "state": "rejected_timedout" }), 4_000);
    assert_eq!(ids(&timedout, "promises"), ["s2"]);
}

#[test]
fn promise_search_for_rejected_matches_every_rejected_state() {
    // spec/kinds.yaml promise.search: "rejected matches every rejected_* state".
    let mut r = Rig::start(&[]);
    for (id, state) in [("a", "rejected"), ("b", "rejected_canceled"), ("c", "resolved")] {
        r.create(id, json!({}), FAR, T);
        r.settle(id, state, T);
    }
    r.create("d", json!({}), 2_000, T);
    r.create("e", json!({}), FAR, T);
    let rejected = r.ok("promise.search", json!({ "state": "rejected" }), 3_000);
    assert_eq!(ids(&rejected, "promises"), ["a", "b", "d"], "rejected, rejected_canceled, rejected_timedout");
}

#[test]
fn task_kinds_answer_their_records() {
    let mut r = Rig::start(&[]);
    let promise = r.create("t", target(POLL), FAR, T);
    let pending = json!({ "id": "t", "resumes": 0, "state": "pending", "version": 0 });
    assert_eq!(r.ok("task.get", json!({ "id": "t" }), T), json!({ "task": pending }), "no pid or ttl");

    // The raw body of one answer: envelope keys in order, data keys sorted at every depth.
    let head = json!({ "corrId": "c", "version": VERSION, "resonate:debug_time": T });
    let data = json!({ "id": "t", "version": 0, "pid": "p", "ttl": 5_000 });
    let request = json!({ "kind": "task.acquire", "head": head, "data": data });
    let response = r.client.post("/", request.to_string().as_bytes()).unwrap();
    assert_eq!(response.header("content-type"), Some("application/json"));
    let body = concat!(
        r#"{"kind":"task.acquire","head":{"corrId":"c","status":200,"version":"2026-04-01"},"#,
        r#""data":{"preload":[],"promise":{"createdAt":1000,"id":"t","param":{},"state":"pending","#,
        r#""tags":{"resonate:target":"poll://any@nobody"},"timeoutAt":4000000000000,"value":{}},"#,
        r#""task":{"id":"t","pid":"p","resumes":0,"state":"acquired","ttl":5000,"version":1}}}"#
    );
    assert_eq!(response.text(), body);

    let beat = json!({ "pid": "p", "tasks": [{ "id": "t", "version": 1 }] });
    assert_eq!(r.ok("task.heartbeat", beat, 1_100), json!({}));

    // task.fence: the inner envelope of a create and of a settle.
    let inner = |kind: &str, data: Value| {
        let head = json!({ "corrId": "c", "status": 200, "version": VERSION });
        json!({ "action": { "kind": kind, "head": head, "data": data }, "preload": [] })
    };
    let fenced = r.ok("task.fence", task_action("t", 1, create_action("t.1", external(), FAR)), 1_200);
    let child = json!({ "createdAt": 1_200, "id": "t.1", "param": {}, "state": "pending",
                        "tags": external(), "timeoutAt": FAR, "value": {} });
    assert_eq!(fenced, inner("promise.create", json!({ "promise": child })));
    let mut sibling = r.create("t.2", external(), FAR, T);
    sibling["state"] = json!("resolved");
    sibling["settledAt"] = json!(1_300);
    let fenced = r.ok("task.fence", task_action("t", 1, settle_action("t.2", "resolved")), 1_300);
    assert_eq!(fenced, inner("promise.settle", json!({ "promise": sibling })));

    // task.suspend (200), resume, acquire, release, fulfil.
    assert_eq!(r.ok("task.suspend", suspend("t", 1, &["t.1"]), 1_400), json!({}));
    assert_eq!(r.task("t", 1_400), json!({ "id": "t", "resumes": 0, "state": "suspended", "version": 1 }));
    r.settle("t.1", "resolved", 1_500);
    assert_eq!(r.task("t", 1_500), json!({ "id": "t", "resumes": 1, "state": "pending", "version": 1 }));
    assert_eq!(r.acquire("t", 1, 5_000, 1_600)["resumes"], 0, "acquire clears resumes");
    assert_eq!(r.ok("task.release", json!({ "id": "t", "version": 2 }), 1_700), json!({}));
    assert_eq!(r.task("t", 1_700), json!({ "id": "t", "resumes": 0, "state": "pending", "version": 2 }));
    r.acquire("t", 2, 5_000, 1_800);
    let result = json!({ "data": "ZG9uZQ==" });
    let action = json!({ "kind": "promise.settle", "head": {},
                         "data": { "id": "t", "state": "resolved", "value": result } });
    let mut done = promise.clone();
    done["state"] = json!("resolved");
    done["value"] = result;
    done["settledAt"] = json!(1_900);
    assert_eq!(r.ok("task.fulfill", task_action("t", 3, action), 1_900), json!({ "promise": done }));
    assert_eq!(r.task("t", 1_900), json!({ "id": "t", "resumes": 0, "state": "fulfilled", "version": 3 }));

    // task.create of a new promise, halt, continue, task.create of a pending task.
    let created = r.ok("task.create", task_create("q", 5_000, create_action("r", target(POLL), FAR)), 2_000);
    let root = json!({ "createdAt": 2_000, "id": "r", "param": {}, "state": "pending", "tags": target(POLL),
                       "timeoutAt": FAR, "value": {} });
    let acquired = json!({ "id": "r", "pid": "q", "resumes": 0, "state": "acquired", "ttl": 5_000, "version": 1 });
    assert_eq!(created, json!({ "preload": [], "promise": root, "task": acquired }));
    assert_eq!(r.ok("task.halt", json!({ "id": "r" }), 2_100), json!({}));
    assert_eq!(r.task("r", 2_100), json!({ "id": "r", "resumes": 0, "state": "halted", "version": 1 }));
    assert_eq!(r.ok("task.continue", json!({ "id": "r" }), 2_200), json!({}));
    assert_eq!(r.task("r", 2_200), json!({ "id": "r", "resumes": 0, "state": "pending", "version": 1 }));
    let again = r.ok("task.create", task_create("q2", 3_000, create_action("r", target(POLL), FAR)), 2_200);
    let acquired = json!({ "id": "r", "pid": "q2", "resumes": 0, "state": "acquired", "ttl": 3_000, "version": 2 });
    assert_eq!(again, json!({ "preload": [], "promise": root, "task": acquired }), "acquires a pending task");

    // task.search: id order, state filter, limit and cursor.
    let (rt, tt) = (r.task("r", 2_300), r.task("t", 2_300));
    assert_eq!(r.ok("task.search", json!({}), 2_300), json!({ "tasks": [rt, tt] }));
    assert_eq!(r.ok("task.search", json!({ "limit": 1 }), 2_300), json!({ "cursor": "r", "tasks": [rt] }));
    assert_eq!(r.ok("task.search", json!({ "limit": 1, "cursor": "r" }), 2_300), json!({ "tasks": [tt] }));
    assert_eq!(r.ok("task.search", json!({ "state": "fulfilled" }), 2_300), json!({ "tasks": [tt] }));
}

#[test]
fn schedule_kinds_answer_their_records() {
    let mut r = Rig::start(&[]);
    let mut data = schedule("s", "*/5 * * * *", "{{.id}}.{{.timestamp}}", 1_000);
    data["promiseParam"] = json!({ "data": "eA==" });
    data["promiseTags"] = json!({ "team": "a" });
    let mut record = data.clone();
    record["createdAt"] = json!(61_000);
    record["nextRunAt"] = json!(300_000);
    assert_eq!(r.ok("schedule.create", data, 61_000), json!({ "schedule": record }), "no lastRunAt");
    assert_eq!(r.ok("schedule.get", json!({ "id": "s" }), 62_000), json!({ "schedule": record }));
    let more: Vec<String> = (1..=11).map(|n| format!("s{n:02}")).collect();
    for id in &more {
        r.ok("schedule.create", schedule(id, "0 * * * *", id, 0), T);
    }
    let page = r.ok("schedule.search", json!({}), T);
    assert_eq!(ids(&page, "schedules"), [&["s".to_string()], &more[..9]].concat(), "default limit 10");
    assert_eq!(page["cursor"], "s09");
    let rest = r.ok("schedule.search", json!({ "cursor": "s09" }), T);
    assert_eq!((ids(&rest, "schedules"), rest.get("cursor")), (more[9..].to_vec(), None));
    let tagged = r.ok("schedule.search", json!({ "tags": { "team": "a" } }), T);
    assert_eq!(tagged, json!({ "schedules": [record] }));
    assert_eq!(r.ok("schedule.delete", json!({ "id": "s" }), T), json!({}));
    assert_eq!(r.send("schedule.get", json!({ "id": "s" }), T).0, 404);
}

#[test]
fn debug_kinds_pause_tick_snap_and_reset() {
    let mut r = Rig::start(&["--timeouts-poll-interval", "20"]);
    r.create("e", external(), 2_000, T);
    r.create("i", json!({}), 2_000, T);
    sleep(QUIET);
    let snap = r.snap();
    for key in TABLES {
        assert!(snap[key].is_array(), "debug.snap lacks {key}: {snap}");
    }
    assert_eq!(snap["promises"][0]["state"], "pending", "debug.start paused the background rules");
    assert_eq!(snap["promiseTimeouts"], json!([{ "id": "e", "timeout": 2_000 }]), "only external promises are armed");

    // debug.tick (here without a request clock) judges deadlines at its own time.
    assert_eq!(r.send_at("debug.tick", json!({ "time": 1_999 }), None), (200, json!([])));
    assert_eq!(r.snap()["promises"][0]["state"], "pending");
    assert_eq!(r.send_at("debug.tick", json!({ "time": 2_000 }), None), (200, json!([])));
    let snap = r.snap();
    assert_eq!(snap["promises"][0]["state"], "rejected_timedout", "R1 fired for the armed promise");
    assert_eq!(snap["promises"][1]["state"], "pending", "an internal promise times out by projection only");

    // Delivery is paused too: the execute for a connected stream stays queued.
    let mut w = stream(&r, "d", "w");
    r.create("z", target("poll://any@d"), FAR, T);
    assert_eq!(w.next_data(QUIET).unwrap(), None, "debug.start paused delivery");
    assert_eq!(r.executes("z"), [0]);

    // debug.stop resumes delivery and the wall-clock rules, which time out a deadline long past.
    r.create("late", external(), 3_000, T);
    assert_eq!(r.ok("debug.stop", json!({}), T), json!({}));
    let execute: Value = serde_json::from_str(&event(&mut w)).unwrap();
    assert_eq!(execute["data"]["task"], json!({ "id": "z", "version": 0 }));
    let deadline = Instant::now() + WAIT;
    while r.snap()["promises"][2]["state"] == "pending" {
        assert!(Instant::now() < deadline, "the resumed rules never timed out `late`");
        sleep(Duration::from_millis(20));
    }
    assert_eq!(r.ok("debug.start", json!({}), T), json!({}));

    // debug.reset empties every table.
    r.create("a", external(), FAR, T);
    r.create("t", target(POLL), FAR, T);
    r.ok("promise.register_callback", json!({ "awaited": "a", "awaiter": "t" }), T);
    r.ok("promise.register_listener", json!({ "awaited": "a", "address": POLL }), T);
    r.ok("schedule.create", schedule("s", "0 * * * *", "x", 1), T);
    let full = r.snap();
    for key in TABLES {
        assert_ne!(full[key], json!([]), "{key} is empty before the reset");
    }
    assert_eq!(r.ok("debug.reset", json!({}), T), json!({}));
    let empty = r.snap();
    for key in TABLES {
        assert_eq!(empty[key], json!([]), "debug.reset left {key}");
    }
    assert_eq!(r.send("promise.get", json!({ "id": "a" }), T).0, 404);
    assert_eq!(r.send("schedule.get", json!({ "id": "s" }), T).0, 404);
}

// ----- 2. every refusal, from the spec -----

type Case = fn(&mut Rig) -> Value;

/// One case per `<kind>/<error>` pair of spec/kinds.yaml: on an empty store, the case's setup
/// runs, then its request is sent as `<kind>` at `T`.
fn guard_cases() -> Vec<(&'static str, Case)> {
    vec![
        ("promise.get/promise_id_required", |_| json!({ "id": "" })),
        ("promise.get/promise_not_found", |_| json!({ "id": "x" })),
        ("promise.create/promise_id_required", |_| json!({ "id": "", "timeoutAt": FAR })),
        ("promise.create/promise_id_nul", |_| json!({ "id": "a\u{0}b", "timeoutAt": FAR })),
        ("promise.create/timeout_negative", |_| json!({ "id": "p", "timeoutAt": -1 })),
        ("promise.create/invalid_target", |_| {
            json!({ "id": "p", "timeoutAt": FAR, "tags": target("poll://all@g") })
        }),
        ("promise.create/delay_invalid", |_| {
            let tags = json!({ "resonate:target": POLL, "resonate:delay": "-5" });
            json!({ "id": "p", "timeoutAt": FAR, "tags": tags })
        }),
        ("promise.create/delay_untargeted", |_| {
            json!({ "id": "p", "timeoutAt": FAR, "tags": { "resonate:delay": "5000" } })
        }),
        ("promise.create/delay_after_timeout", |_| {
            let tags = json!({ "resonate:target": POLL, "resonate:delay": "5000" });
            json!({ "id": "p", "timeoutAt": 5_000, "tags": tags })
        }),
        ("promise.settle/promise_id_required", |_| json!({ "id": "", "state": "resolved" })),
        ("promise.settle/promise_not_found", |_| json!({ "id": "x", "state": "resolved" })),
        ("promise.register_callback/awaited_id_required", |_| json!({ "awaited": "", "awaiter": "w" })),
        ("promise.register_callback/awaiter_id_required", |_| json!({ "awaited": "a", "awaiter": "" })),
        ("promise.register_callback/self_callback", |r| {
            r.create("a", target(POLL), FAR, T);
            json!({ "awaited": "a", "awaiter": "a" })
        }),
        ("promise.register_callback/awaited_not_found", |r| {
            r.create("w", target(POLL), FAR, T);
            json!({ "awaited": "x", "awaiter": "w" })
        }),
        ("promise.register_callback/awaiter_not_found", |r| {
            r.create("a", external(), FAR, T);
            json!({ "awaited": "a", "awaiter": "x" })
        }),
        ("promise.register_callback/awaiter_untargeted", |r| {
            r.create("a", external(), FAR, T);
            r.create("w", external(), FAR, T);
            json!({ "awaited": "a", "awaiter": "w" })
        }),
        ("promise.register_callback/awaited_internal", |r| {
            r.create("a", json!({}), FAR, T);
            r.create("w", target(POLL), FAR, T);
            json!({ "awaited": "a", "awaiter": "w" })
        }),
        ("promise.register_listener/awaited_id_required", |_| json!({ "awaited": "", "address": POLL })),
        ("promise.register_listener/invalid_listener", |r| {
            r.create("a", external(), FAR, T);
            json!({ "awaited": "a", "address": "poll://uni@g" })
        }),
        ("promise.register_listener/awaited_not_found", |_| json!({ "awaited": "x", "address": POLL })),
        ("promise.register_listener/awaited_internal", |r| {
            r.create("a", json!({ "resonate:scope": "local" }), FAR, T);
            json!({ "awaited": "a", "address": POLL })
        }),
        ("promise.search/invalid_state_filter", |_| json!({ "state": "done" })),
        ("promise.search/limit_not_positive", |_| json!({ "limit": 0 })),
        ("promise.search/limit_too_large", |_| json!({ "limit": 1_001 })),
        ("task.get/task_id_required", |_| json!({ "id": "" })),
        ("task.get/task_not_found", |r| {
            r.create("a", json!({}), FAR, T);
            json!({ "id": "a" })
        }),
        ("task.create/pid_required", |_| task_create("", 1_000, create_action("t", target(POLL), FAR))),
        ("task.create/ttl_not_positive", |_| task_create("p", 0, create_action("t", target(POLL), FAR))),
        ("task.create/action_untargeted", |_| task_create("p", 1_000, create_action("t", external(), FAR))),
        ("task.create/action_delayed", |_| {
            let tags = json!({ "resonate:target": POLL, "resonate:delay": "2000" });
            task_create("p", 1_000, create_action("t", tags, FAR))
        }),
        ("task.create/invalid_target", |_| task_create("p", 1_000, create_action("t", target(""), FAR))),
        ("task.create/promise_untargeted", |r| {
            r.create("t", json!({}), FAR, T);
            task_create("p", 1_000, create_action("t", target(POLL), FAR))
        }),
        ("task.create/task_exists", |r| {
            r.held("t");
            task_create("p", 1_000, create_action("t", target(POLL), FAR))
        }),
        ("task.acquire/task_id_required", |_| json!({ "id": "", "version": 0, "pid": "p", "ttl": 1 })),
        ("task.acquire/version_negative", |_| json!({ "id": "t", "version": -1, "pid": "p", "ttl": 1 })),
        ("task.acquire/pid_required", |_| json!({ "id": "t", "version": 0, "pid": "", "ttl": 1 })),
        ("task.acquire/ttl_not_positive", |_| json!({ "id": "t", "version": 0, "pid": "p", "ttl": 0 })),
        ("task.acquire/task_not_found", |_| json!({ "id": "t", "version": 0, "pid": "p", "ttl": 1 })),
        ("task.acquire/task_not_pending", |r| {
            r.held("t");
            json!({ "id": "t", "version": 1, "pid": "p", "ttl": 1 })
        }),
        ("task.acquire/version_mismatch", |r| {
            r.create("t", target(POLL), FAR, T);
            json!({ "id": "t", "version": 1, "pid": "p", "ttl": 1 })
        }),
        ("task.fence/task_id_required", |_| task_action("", 1, create_action("c", json!({}), FAR))),
        ("task.fence/version_negative", |_| task_action("t", -1, create_action("c", json!({}), FAR))),
        ("task.fence/fence_kind", |r| {
            r.held("t");
            let action = json!({ "kind": "promise.get", "head": {}, "data": { "id": "c" } });
            task_action("t", 1, action)
        }),
        ("task.fence/fence_data", |r| {
            r.held("t");
            let action = json!({ "kind": "promise.create", "head": {}, "data": { "id": "c" } });
            task_action("t", 1, action)
        }),
        ("task.fence/fence_self", |r| {
            r.held("t");
            task_action("t", 1, settle_action("t", "resolved"))
        }),
        ("task.fence/task_not_found", |_| task_action("t", 1, create_action("c", json!({}), FAR))),
        ("task.fence/version_mismatch", |r| {
            r.held("t");
            task_action("t", 0, create_action("c", json!({}), FAR))
        }),
        ("task.heartbeat/pid_required", |_| json!({ "pid": "", "tasks": [] })),
        ("task.suspend/task_id_required", |_| suspend("", 1, &["a"])),
        ("task.suspend/version_negative", |_| suspend("t", -1, &["a"])),
        ("task.suspend/actions_empty", |r| {
            r.held("t");
            suspend("t", 1, &[])
        }),
        ("task.suspend/self_await", |r| {
            r.held("t");
            suspend("t", 1, &["t"])
        }),
        ("task.suspend/duplicate_awaited", |r| {
            r.held("t");
            r.create("a", external(), FAR, T);
            suspend("t", 1, &["a", "a"])
        }),
        ("task.suspend/task_not_found", |r| {
            r.create("a", external(), FAR, T);
            suspend("t", 1, &["a"])
        }),
        ("task.suspend/suspend_conflict", |r| {
            r.held("t");
            r.create("a", external(), FAR, T);
            suspend("t", 2, &["a"])
        }),
        ("task.suspend/suspend_awaited_not_found", |r| {
            r.held("t");
            suspend("t", 1, &["x"])
        }),
        ("task.suspend/awaited_internal", |r| {
            r.held("t");
            r.create("a", json!({ "resonate:external": "false" }), FAR, T);
            suspend("t", 1, &["a"])
        }),
        ("task.fulfill/task_id_required", |_| task_action("", 1, settle_action("t", "resolved"))),
        ("task.fulfill/version_negative", |_| task_action("t", -1, settle_action("t", "resolved"))),
        ("task.fulfill/task_not_found", |_| task_action("t", 1, settle_action("t", "resolved"))),
        ("task.fulfill/task_conflict", |r| {
            r.create("t", target(POLL), FAR, T);
            task_action("t", 0, settle_action("t", "resolved"))
        }),
        ("task.release/task_id_required", |_| json!({ "id": "", "version": 1 })),
        ("task.release/version_negative", |_| json!({ "id": "t", "version": -1 })),
        ("task.release/task_not_found", |_| json!({ "id": "t", "version": 1 })),
        ("task.release/task_conflict", |r| {
            r.held("t");
            json!({ "id": "t", "version": 0 })
        }),
        ("task.halt/task_id_required", |_| json!({ "id": "" })),
        ("task.halt/task_not_found", |_| json!({ "id": "t" })),
        ("task.halt/task_fulfilled", |r| {
            r.create("t", target(POLL), FAR, T);
            r.settle("t", "resolved", T);
            json!({ "id": "t" })
        }),
        ("task.continue/task_id_required", |_| json!({ "id": "" })),
        ("task.continue/task_not_found", |_| json!({ "id": "t" })),
        ("task.continue/task_not_halted", |r| {
            r.held("t");
            json!({ "id": "t" })
        }),
        ("task.search/invalid_state_filter", |_| json!({ "state": "running" })),
        ("task.search/limit_not_positive", |_| json!({ "limit": -3 })),
        ("task.search/limit_too_large", |_| json!({ "limit": 1_001 })),
        ("schedule.get/schedule_id_required", |_| json!({ "id": "" })),
        ("schedule.get/schedule_not_found", |_| json!({ "id": "s" })),
        ("schedule.create/schedule_id_required", |_| schedule("", "* * * * *", "p", 1)),
        ("schedule.create/cron_required", |_| schedule("s", "", "p", 1)),
        ("schedule.create/template_required", |_| schedule("s", "* * * * *", "", 1)),
        ("schedule.create/promise_timeout_negative", |_| schedule("s", "* * * * *", "p", -1)),
        ("schedule.create/cron_invalid", |_| schedule("s", "* * * * 0", "p", 1)),
        ("schedule.delete/schedule_id_required", |_| json!({ "id": "" })),
        ("schedule.delete/schedule_not_found", |_| json!({ "id": "s" })),
        ("schedule.search/limit_not_positive", |_| json!({ "limit": 0 })),
        ("schedule.search/limit_too_large", |_| json!({ "limit": 5_000 })),
        ("debug.tick/tick_time", |_| json!({ "time": "soon" })),
        ("debug.tick/tick_time_mismatch", |_| json!({ "time": 5_000 })),
    ]
}


#[test]
fn every_guard_in_the_spec_answers_its_refusal() {
    let errors = spec("errors.yaml");
    let pairs = kind_refusals();
    let cases = guard_cases();
    let keys: BTreeSet<&str> = cases.iter().map(|(key, _)| *key).collect();
    assert_eq!(keys.len(), cases.len(), "a case key appears twice");
    let missing: Vec<&String> = pairs.iter().filter(|p| !keys.contains(p.as_str())).collect();
    assert!(missing.is_empty(), "spec/kinds.yaml pairs without a case: {missing:?}");
    let stale: Vec<&&str> = keys.iter().filter(|k| !pairs.contains(**k)).collect();
    assert!(stale.is_empty(), "cases for pairs spec/kinds.yaml does not have: {stale:?}");
    // With the envelope checks, the cases exercise every refusal errors.yaml defines.
    let named: BTreeSet<String> = pairs
        .iter()
        .map(|p| p.split_once('/').unwrap().1.to_string())
        .chain(envelope_refusals())
        .collect();
    // Refusals of a manifest feature (`feature: jwt`) belong to targets with it (tests/tests/auth.rs),
    // a store's limits to targets with that store (ids_past_a_stores_limit_are_refused_not_failed).
    let defined: BTreeSet<String> = errors
        .as_mapping()
        .unwrap()
        .iter()
        .filter(|(_, e)| e.get("feature").is_none() && e.get("stores").is_none())
        .map(|(k, _)| text(k).to_string())
        .collect();
    assert_eq!(named, defined, "errors.yaml ids versus the refusals kinds.yaml and protocol.yaml name");

    let mut r = Rig::start(&[]);
    for (key, case) in cases {
        assert_eq!(r.ok("debug.reset", json!({}), T), json!({}));
        let (kind, error) = key.split_once('/').unwrap();
        let data = case(&mut r);
        let (status, answer) = r.send(kind, data.clone(), T);
        assert_refusal(&errors, error, status, &answer, &format!("{key}: {data}"));
    }
}

/// A raw request body: `kind`, `version` and `data` as given, corrId "c".
fn raw(kind: &str, version: &str, data: &str) -> String {
    format!(r#"{{"kind":"{kind}","head":{{"corrId":"c","version":"{version}"}},"data":{data}}}"#)
}

/// POSTs a raw body and returns the response envelope, checking head.status against HTTP.
fn post(server: &Server, body: &str) -> Value {
    let response = server.client().post("/", body.as_bytes()).unwrap();
    let envelope = response.json();
    assert_eq!(envelope["head"]["status"], response.status, "{body}");
    envelope
}

#[test]
fn every_envelope_check_answers_its_refusal() {
    let errors = spec("errors.yaml");
    let plain = Server::start(&build(&target_under_test()), &[]);
    let r = Rig::start(&[]);
    let cases = [
        ("invalid_envelope", r#"{"kind":"promise.get","head":{"corrId":"x"},"data":{}}"#.to_string()),
        ("missing_kind", raw("", VERSION, "{}")),
        ("invalid_data", raw("promise.get", VERSION, "[]")),
        ("unsupported_version", raw("promise.get", "2025-01-15", "{}")),
        ("debug_disabled", raw("debug.snap", VERSION, "{}")),
        ("unknown_operation", raw("promise.frobnicate", VERSION, "{}")),
        ("invalid_request", raw("promise.get", VERSION, "{}")),
    ];
    let covered: Vec<&str> = cases.iter().map(|(error, _)| *error).collect();
    assert_eq!(covered, envelope_refusals(), "one case per envelope check of spec/protocol.yaml, in order");
    let mut messages = Vec::new();
    for (error, body) in &cases {
        let envelope = post(if *error == "debug_disabled" { &plain } else { &r.server }, body);
        let status = envelope["head"]["status"].as_u64().and_then(|s| u16::try_from(s).ok()).unwrap();
        assert_refusal(&errors, error, status, &envelope["data"], error);
        messages.push(envelope["data"].as_str().unwrap().to_string());
    }
    assert!(messages[0].starts_with("Invalid request envelope: missing field `version`"), "{}", messages[0]);
    assert_eq!(messages[3], r#"Unsupported protocol version '2025-01-15', supported versions: ["2026-04-01"]"#);
    assert_eq!(messages[5], "Unknown operation: promise.frobnicate");
    assert_eq!(messages[6], "Invalid request: missing field `id`");
    // An unparseable envelope echoes what it can salvage.
    let salvaged = post(&r.server, &cases[0].1);
    assert_eq!((&salvaged["kind"], &salvaged["head"]["corrId"]), (&json!("promise.get"), &json!("x")));
    let garbage = post(&r.server, "not json");
    assert_eq!((&garbage["kind"], &garbage["head"]["corrId"]), (&json!("unknown"), &json!("0")));
    assert!(garbage["data"].as_str().unwrap().starts_with("Invalid request envelope: expected"), "{garbage}");

    // The checks run in order: the first failing one answers.
    assert_eq!(post(&r.server, &raw("", "old", "[]"))["data"], message(&errors, "missing_kind"));
    assert_eq!(post(&r.server, &raw("promise.get", "old", "[]"))["data"], message(&errors, "invalid_data"));
    let old = post(&r.server, &raw("promise.nope", "old", "{}"));
    assert!(old["data"].as_str().unwrap().starts_with("Unsupported protocol version"), "{old}");

    // Without --debug every debug kind is refused before its data is decoded, and the request
    // clock is ignored.
    let mut client = plain.client();
    for kind in ["debug.start", "debug.stop", "debug.reset", "debug.snap", "debug.tick"] {
        let (status, envelope) = call(&mut client, kind, json!({}), None);
        assert_refusal(&errors, "debug_disabled", status, &envelope["data"], kind);
    }
    let (status, envelope) = call(&mut client, "promise.create", json!({ "id": "p", "timeoutAt": FAR }), Some(T));
    assert_eq!(status, 200);
    let created_at = envelope["data"]["promise"]["createdAt"].as_i64().unwrap();
    assert!(created_at > 1_600_000_000_000, "resonate:debug_time was honoured without --debug");
    // Unknown fields anywhere are ignored.
    let body = r#"{"kind":"promise.get","x":1,"head":{"corrId":"c","version":"2026-04-01","auth":"t",
                   "resonate:origin":"o"},"data":{"id":"p","extra":1}}"#;
    assert_eq!(post(&plain, body)["data"]["promise"]["id"], "p");
}

#[test]
fn guards_answer_in_spec_order() {
    let errors = spec("errors.yaml");
    let mut r = Rig::start(&[]);
    let expect = |r: &mut Rig, error: &str, kind: &str, data: Value| {
        let (status, answer) = r.send(kind, data.clone(), T);
        assert_refusal(&errors, error, status, &answer, &format!("{kind} {data}"));
    };
    // Field checks run in field order, before any guard; 400s outrank 404s.
    expect(&mut r, "promise_id_required", "promise.create", json!({ "id": "", "timeoutAt": -1 }));
    expect(&mut r, "cron_required", "schedule.create", schedule("s", "", "", -1));
    expect(&mut r, "pid_required", "task.create", task_create("", 1_000, create_action("t", json!({}), FAR)));
    let nameless = create_action("", target(POLL), FAR);
    expect(&mut r, "promise_id_required", "task.create", task_create("p", 1_000, nameless));
    expect(&mut r, "version_negative", "task.acquire", json!({ "id": "x", "version": -1, "pid": "p", "ttl": 1 }));
    expect(&mut r, "actions_empty", "task.suspend", suspend("x", 1, &[]));
    expect(&mut r, "self_await", "task.suspend", suspend("x", 1, &["y", "x"]));
    expect(&mut r, "duplicate_awaited", "task.suspend", suspend("x", 1, &["y", "y"]));
    expect(&mut r, "fence_kind", "task.fence", task_action("x", 1, json!({ "kind": "task.get", "data": {} })));
    expect(&mut r, "fence_self", "task.fence", task_action("x", 1, create_action("x", json!({}), FAR)));
    let listener = json!({ "awaited": "x", "address": "mailto:me" });
    expect(&mut r, "invalid_listener", "promise.register_listener", listener);
    expect(&mut r, "self_callback", "promise.register_callback", json!({ "awaited": "x", "awaiter": "x" }));
    expect(&mut r, "invalid_state_filter", "promise.search", json!({ "state": "nope", "limit": 0 }));
    expect(&mut r, "limit_not_positive", "task.search", json!({ "limit": 0 }));
    // Tag guards outrank the idempotent return of a stored record.
    r.create("p", json!({}), FAR, T);
    let retarget = json!({ "id": "p", "timeoutAt": FAR, "tags": target("nowhere") });
    expect(&mut r, "invalid_target", "promise.create", retarget);
    r.ok("schedule.create", schedule("s", "* * * * *", "x", 1), T);
    expect(&mut r, "cron_invalid", "schedule.create", schedule("s", "bad", "x", 1));
    // 404 before 422, and the 422s in their order.
    expect(&mut r, "awaited_not_found", "promise.register_callback", json!({ "awaited": "x", "awaiter": "y" }));
    r.create("i", json!({}), FAR, T);
    expect(&mut r, "awaiter_untargeted", "promise.register_callback", json!({ "awaited": "i", "awaiter": "p" }));
    // task.suspend: the task is judged before the awaited promises, a missing one before an internal one.
    expect(&mut r, "task_not_found", "task.suspend", suspend("x", 1, &["y"]));
    r.create("t", target(POLL), FAR, T);
    expect(&mut r, "suspend_conflict", "task.suspend", suspend("t", 0, &["y"]));
    r.acquire("t", 0, 60_000, T);
    expect(&mut r, "suspend_awaited_not_found", "task.suspend", suspend("t", 1, &["i", "y"]));
    // task.acquire: state before version; task.create: an untargeted action before the stored record.
    expect(&mut r, "task_not_pending", "task.acquire", json!({ "id": "t", "version": 7, "pid": "p", "ttl": 1 }));
    expect(&mut r, "action_untargeted", "task.create", task_create("p", 1_000, create_action("t", json!({}), FAR)));
    // task.fence: the self check before the task; a bad inner request answers inside an outer 200.
    expect(&mut r, "fence_self", "task.fence", task_action("t", 9, create_action("t", json!({}), FAR)));
    let inner = |fenced: Value| (fenced["action"]["head"]["status"].clone(), fenced["action"]["data"].clone());
    let fenced = r.ok("task.fence", task_action("t", 1, create_action("", json!({}), FAR)), T);
    assert_eq!(inner(fenced), (json!(400), message(&errors, "promise_id_required")));
    let fenced = r.ok("task.fence", task_action("t", 1, create_action("c", target("nowhere"), FAR)), T);
    let nowhere = spec_message(&errors, "invalid_target").replace("{detail}", "nowhere");
    assert_eq!(inner(fenced), (json!(400), json!(nowhere)), "the refusal names the address");
    // The details of refusals that carry one.
    let (_, data) = r.send("promise.settle", json!({ "id": "p", "state": "pending" }), T);
    let variants = "expected one of `resolved`, `rejected`, `rejected_canceled`";
    assert_eq!(data, format!("Invalid request: state: unknown variant `pending`, {variants}"));
    assert_eq!(r.send("promise.search", json!({ "state": "done" }), T).1, "Invalid state filter: done");
    let settle = json!({ "kind": "promise.settle", "data": { "id": "c" } });
    let (_, data) = r.send("task.fence", task_action("t", 1, settle), T);
    assert_eq!(data, "Invalid action data: missing field `state`");
}

/// The exact message of a refusal without a detail.
fn message(errors: &Yaml, error: &str) -> Value {
    json!(text(&errors[error]["message"]))
}

// ----- 3. semantics -----

#[test]
fn create_is_idempotent_by_id_alone() {
    let mut r = Rig::start(&[]);
    let first = r.create("p", json!({ "a": "1" }), 5_000, T);
    let again = json!({ "id": "p", "timeoutAt": 9_000, "param": { "data": "eA==" }, "tags": { "b": "2" } });
    assert_eq!(r.ok("promise.create", again, 2_000), json!({ "promise": first }));
    let t = r.create("t", target(POLL), FAR, T);
    assert_eq!(r.create("t", target("poll://any@other"), 7_000, 2_000), t);
    assert_eq!(r.task("t", 2_000)["version"], 0);
    assert_eq!(r.snap()["messages"].as_array().unwrap().len(), 1, "one task, dispatched once");
    let stored = r.ok("schedule.create", schedule("s", "0 * * * *", "x", 1), T);
    assert_eq!(r.ok("schedule.create", schedule("s", "5 * * * *", "y", 2), 2_000), stored);
}

#[test]
fn settling_a_settled_promise_answers_the_first_outcome() {
    let mut r = Rig::start(&[]);
    r.create("p", json!({}), FAR, T);
    let first = r.ok("promise.settle", json!({ "id": "p", "state": "resolved", "value": { "data": "MQ==" } }), 2_000);
    assert_eq!(first["promise"]["settledAt"], 2_000);
    let second = json!({ "id": "p", "state": "rejected", "value": { "data": "Mg==" } });
    assert_eq!(r.ok("promise.settle", second, 3_000), first);
    assert_eq!(r.promise("p", 4_000), first["promise"]);
}

#[test]
fn deadlines_project_on_every_read() {
    let mut r = Rig::start(&[]);
    let created = r.create("d", json!({}), 5_000, T);
    assert_eq!(r.promise("d", 4_999), created);
    let mut timedout = created.clone();
    timedout["state"] = json!("rejected_timedout");
    timedout["settledAt"] = json!(5_000);
    assert_eq!(r.promise("d", 5_000), timedout, "pending at its deadline reads rejected_timedout");
    assert_eq!(r.promise("d", 4_000), timedout, "a materialised timeout stays");

    let mut timer = r.create("tm", json!({ "resonate:timer": "true" }), 5_000, T);
    timer["state"] = json!("resolved");
    timer["settledAt"] = json!(5_000);
    assert_eq!(r.promise("tm", 6_000), timer, "a timer resolves at its deadline");

    r.create("late", json!({}), 5_000, T);
    let late = r.settle("late", "resolved", 7_000);
    assert_eq!((&late["state"], &late["settledAt"]), (&json!("rejected_timedout"), &json!(5_000)), "a late settle");

    r.create("t", target(POLL), 5_000, T);
    r.acquire("t", 0, 60_000, T);
    assert_eq!(r.task("t", 5_000), json!({ "id": "t", "resumes": 0, "state": "fulfilled", "version": 1 }));
    let fulfil = task_action("t", 1, settle_action("t", "resolved"));
    assert_eq!(r.send("task.fulfill", fulfil, 5_000).0, 409);
}

#[test]
fn a_promise_born_past_its_deadline_is_born_settled() {
    let mut r = Rig::start(&[]);
    let expected = json!({ "createdAt": 500, "id": "d", "param": {}, "settledAt": 500, "state": "rejected_timedout",
                           "tags": {}, "timeoutAt": 500, "value": {} });
    assert_eq!(r.create("d", json!({}), 500, T), expected);
    let born = |p: &Value| (p["state"].clone(), p["createdAt"].clone(), p["settledAt"].clone());
    let edge = r.create("edge", json!({}), T, T);
    assert_eq!(born(&edge), (json!("rejected_timedout"), json!(T), json!(T)), "timeoutAt = now is past");
    assert_eq!(r.create("tm", json!({ "resonate:timer": "true" }), 500, T)["state"], "resolved");
    r.create("t", target(POLL), 500, T);
    assert_eq!(r.task("t", T), json!({ "id": "t", "resumes": 0, "state": "fulfilled", "version": 0 }));
    assert_eq!(r.executes("t"), Vec::<i64>::new(), "a dead task is never dispatched");
    let created = r.ok("task.create", task_create("p", 1_000, create_action("r", target(POLL), 500)), T);
    assert_eq!(created["task"], json!({ "id": "r", "resumes": 0, "state": "fulfilled", "version": 0 }));
    assert_eq!(born(&created["promise"]), (json!("rejected_timedout"), json!(500), json!(500)));
    let again = r.ok("task.create", task_create("p", 1_000, create_action("r", target(POLL), FAR)), 2_000);
    assert_eq!(again, created, "task.create on a fulfilled task answers it unchanged");
}

#[test]
fn versions_fence_every_lease() {
    let mut r = Rig::start(&[]);
    r.create("t", target(POLL), FAR, T);
    assert_eq!(r.acquire("t", 0, 1_000, T)["version"], 1, "acquire bumps the version by one");
    let stale = json!({ "id": "t", "version": 0, "pid": "p", "ttl": 1 });
    assert_eq!(r.send("task.acquire", stale.clone(), T), (409, json!("Task is not pending")));
    assert_eq!(r.ok("task.release", json!({ "id": "t", "version": 1 }), T), json!({}));
    assert_eq!(r.task("t", T)["version"], 1, "release keeps the version");
    assert_eq!(r.executes("t"), [1], "release dispatches at once");
    assert_eq!(r.send("task.acquire", stale, T), (409, json!("Version mismatch")), "the old version");
    assert_eq!(r.acquire("t", 1, 1_000, T)["version"], 2);

    // Lease expiry keeps the version; the stale holder is fenced out.
    r.tick(2_000);
    assert_eq!(r.task("t", 2_000), json!({ "id": "t", "resumes": 0, "state": "pending", "version": 2 }));
    let create = task_action("t", 2, create_action("c", json!({}), FAR));
    assert_eq!(r.send("task.fence", create.clone(), 2_000), (409, json!("Version mismatch")));
    assert_eq!(r.send("task.fulfill", task_action("t", 2, settle_action("t", "resolved")), 2_000).0, 409);
    assert_eq!(r.acquire("t", 2, 60_000, 2_000)["version"], 3);
    assert_eq!(r.send("task.fence", create, 2_000), (409, json!("Version mismatch")), "a wrong version");
    let missing = r.ok("task.fence", task_action("t", 3, settle_action("nope", "resolved")), 2_000);
    assert_eq!(missing["action"]["head"]["status"], 404, "the inner status may be 404 under an outer 200");
    assert_eq!(missing["action"]["data"], "Promise not found");
    assert_eq!(r.task("t", 2_000)["version"], 3, "a fence leaves the version alone");
}

#[test]
fn suspend_answers_300_when_an_awaited_promise_is_settled_and_200_otherwise() {
    let mut r = Rig::start(&[]);
    r.create("t", target(POLL), FAR, T);
    r.acquire("t", 0, 60_000, T);
    r.create("done", external(), FAR, T);
    r.settle("done", "resolved", T);
    r.create("b", json!({ "resonate:scope": "global" }), FAR, T);
    r.create("gone", json!({ "resonate:timer": "true" }), 1_500, T);
    let resume = (300, json!({ "preload": [] }));
    assert_eq!(r.send("task.suspend", suspend("t", 1, &["b", "done"]), 1_100), resume);
    assert_eq!(r.send("task.suspend", suspend("t", 1, &["gone"]), 1_500), resume, "a projected settlement");
    let held = json!({ "id": "t", "pid": "p", "resumes": 0, "state": "acquired", "ttl": 60_000, "version": 1 });
    assert_eq!(r.task("t", 1_500), held, "the task stays acquired");
    assert_eq!(r.snap()["callbacks"], json!([]), "nothing registered");

    assert_eq!(r.send("task.suspend", suspend("t", 1, &["b"]), 1_600), (200, json!({})));
    assert_eq!(r.snap()["callbacks"], json!([{ "awaiter": "t", "awaited": "b" }]));
    assert_eq!(r.executes("t"), [0]);
    r.settle("b", "resolved", 1_700);
    assert_eq!(r.task("t", 1_700), json!({ "id": "t", "resumes": 1, "state": "pending", "version": 1 }));
    assert_eq!(r.executes("t"), [1], "the resumed task is dispatched at its version");
    assert_eq!(r.snap()["callbacks"], json!([]), "the callback was drained");

    // An acquired task that registered callbacks counts each awaited promise that settles, once.
    r.held("c");
    for awaited in ["c1", "c2"] {
        r.create(awaited, external(), FAR, T);
        r.ok("promise.register_callback", json!({ "awaited": awaited, "awaiter": "c" }), T);
        r.settle(awaited, "resolved", T);
    }
    let counted = json!({ "id": "c", "pid": "p", "resumes": 2, "state": "acquired", "ttl": 60_000, "version": 1 });
    assert_eq!(r.task("c", T), counted);
    r.ok("task.release", json!({ "id": "c", "version": 1 }), T);
    let released = json!({ "id": "c", "resumes": 2, "state": "pending", "version": 1 });
    assert_eq!(r.task("c", T), released, "release keeps the resumes");
    r.acquire("c", 1, 60_000, T);
    r.create("c3", external(), FAR, T);
    r.ok("promise.register_callback", json!({ "awaited": "c3", "awaiter": "c" }), T);
    r.settle("c3", "resolved", T);
    assert_eq!(r.task("c", T)["resumes"], 1);
    assert_eq!(r.send("task.suspend", suspend("c", 2, &["done"]), T), resume);
    assert_eq!(r.task("c", T)["resumes"], 0, "a 300 clears the resumes");

    // A suspended task holds no lease; an awaited timer firing in debug.tick resumes it.
    r.acquire("t", 1, 1_000, 2_000);
    r.create("z", json!({ "resonate:timer": "true" }), 5_000, 2_000);
    r.ok("task.suspend", suspend("t", 2, &["z"]), 2_000);
    r.tick(3_000);
    assert_eq!(r.task("t", 3_000)["state"], "suspended", "the old lease deadline passed harmlessly");
    r.tick(5_000);
    assert_eq!(r.task("t", 5_000), json!({ "id": "t", "resumes": 1, "state": "pending", "version": 2 }));
}

#[test]
fn a_dead_awaiter_is_not_resumed() {
    // Checklist C6 (choices.yaml dead-awaiter-not-resumed).
    let mut r = Rig::start(&[]);
    r.create("w", target(POLL), 5_000, T);
    r.acquire("w", 0, 60_000, T);
    r.create("a", external(), FAR, T);
    assert_eq!(r.send("task.suspend", suspend("w", 1, &["a"]), T), (200, json!({})));
    r.settle("a", "resolved", 6_000);
    let snap = r.snap();
    assert_eq!(snap["tasks"], json!([{ "id": "w", "resumes": 0, "state": "fulfilled", "version": 1 }]));
    assert_eq!(snap["taskTimeouts"], json!([]));
    assert_eq!(r.executes("w"), [0], "no execute for the dead awaiter");
    assert_eq!(r.promise("w", 6_000)["state"], "rejected_timedout");
}

#[test]
fn only_external_promises_can_be_awaited() {
    // Checklist C2/C3 (choices.yaml internal-awaited-refused, scope-global-is-external).
    let mut r = Rig::start(&[]);
    r.held("w");
    let internal = [
        json!({}),
        json!({ "resonate:scope": "local" }),
        json!({ "resonate:external": "false" }),
        json!({ "resonate:timer": "false" }),
    ];
    for (i, tags) in internal.into_iter().enumerate() {
        let id = format!("i{i}");
        r.create(&id, tags.clone(), FAR, T);
        let (status, _) = r.send("promise.register_callback", json!({ "awaited": id, "awaiter": "w" }), T);
        assert_eq!(status, 422, "register_callback on {tags}");
        let (status, _) = r.send("promise.register_listener", json!({ "awaited": id, "address": POLL }), T);
        assert_eq!(status, 422, "register_listener on {tags}");
        assert_eq!(r.send("task.suspend", suspend("w", 1, &[&id]), T).0, 422, "task.suspend on {tags}");
    }
    let awaitable = [
        json!({ "resonate:scope": "global" }),
        external(),
        json!({ "resonate:timer": "true" }),
        target(POLL),
    ];
    for (i, tags) in awaitable.into_iter().enumerate() {
        let id = format!("e{i}");
        r.create(&id, tags.clone(), FAR, T);
        let (status, _) = r.send("promise.register_callback", json!({ "awaited": id, "awaiter": "w" }), T);
        assert_eq!(status, 200, "register_callback on {tags}");
        let (status, _) = r.send("promise.register_listener", json!({ "awaited": id, "address": POLL }), T);
        assert_eq!(status, 200, "register_listener on {tags}");
    }
    assert_eq!(r.send("task.suspend", suspend("w", 1, &["e0"]), T), (200, json!({})), "scope global suspends");

    // Checklist C11: with a settled awaited promise or a settled awaiter nothing is registered.
    r.create("s", external(), FAR, T);
    r.settle("s", "resolved", T);
    r.ok("promise.register_callback", json!({ "awaited": "s", "awaiter": "w" }), T);
    r.ok("promise.register_listener", json!({ "awaited": "s", "address": POLL }), T);
    r.create("dead", target(POLL), FAR, T);
    r.settle("dead", "resolved", T);
    r.ok("promise.register_callback", json!({ "awaited": "e1", "awaiter": "dead" }), T);
    let snap = r.snap();
    let listed = |table: &str, key: &str, id: &str| snap[table].as_array().unwrap().iter().any(|e| e[key] == id);
    assert!(!listed("callbacks", "awaited", "s") && !listed("listeners", "id", "s"), "{snap}");
    assert!(!listed("callbacks", "awaiter", "dead"), "{snap}");
}

#[test]
fn settling_a_targeted_promise_fulfils_its_task() {
    let mut r = Rig::start(&[]);
    let fulfilled = |id: &str, v: i64| json!({ "id": id, "resumes": 0, "state": "fulfilled", "version": v });
    r.create("pending", target(POLL), FAR, T);
    r.settle("pending", "resolved", T);
    assert_eq!(r.task("pending", T), fulfilled("pending", 0));
    assert_eq!(r.send("task.acquire", json!({ "id": "pending", "version": 0, "pid": "p", "ttl": 1 }), T).0, 409);
    r.held("held");
    r.settle("held", "rejected", T);
    assert_eq!(r.task("held", T), fulfilled("held", 1));
    assert_eq!(r.send("task.release", json!({ "id": "held", "version": 1 }), T).0, 409);
    r.create("a", external(), FAR, T);
    r.held("parked");
    r.ok("task.suspend", suspend("parked", 1, &["a"]), T);
    r.settle("parked", "rejected_canceled", T);
    assert_eq!(r.task("parked", T), fulfilled("parked", 1));
    assert_eq!(r.snap()["taskTimeouts"], json!([]), "fulfilled tasks keep no timers");
}

#[test]
fn halt_parks_a_task_and_continue_releases_it() {
    let mut r = Rig::start(&[]);
    r.held("t");
    assert_eq!(r.ok("task.halt", json!({ "id": "t" }), T), json!({}));
    assert_eq!(r.ok("task.halt", json!({ "id": "t" }), T), json!({}), "halt is idempotent");
    assert_eq!(r.task("t", T), json!({ "id": "t", "resumes": 0, "state": "halted", "version": 1 }));
    assert_eq!(r.send("task.acquire", json!({ "id": "t", "version": 1, "pid": "p", "ttl": 1 }), T).0, 409);
    r.tick(100_000);
    assert_eq!(r.executes("t"), [0], "a halted task is not dispatched");
    assert_eq!(r.ok("task.continue", json!({ "id": "t" }), 100_000), json!({}));
    assert_eq!(r.task("t", 100_000), json!({ "id": "t", "resumes": 0, "state": "pending", "version": 1 }));
    assert_eq!(r.executes("t"), [1], "continue dispatches at once");
    assert_eq!(r.send("task.continue", json!({ "id": "t" }), 100_000), (409, json!("Task is not halted")));

    // A suspended task halted keeps its callbacks; a settlement counts as a resume.
    r.create("a", external(), FAR, T);
    r.acquire("t", 1, 60_000, 100_000);
    r.ok("task.suspend", suspend("t", 2, &["a"]), 100_000);
    r.ok("task.halt", json!({ "id": "t" }), 100_000);
    assert_eq!(r.snap()["callbacks"], json!([{ "awaiter": "t", "awaited": "a" }]));
    r.settle("a", "resolved", 100_000);
    assert_eq!(r.task("t", 100_000), json!({ "id": "t", "resumes": 1, "state": "halted", "version": 2 }));
    r.ok("task.continue", json!({ "id": "t" }), 100_000);
    assert_eq!(r.task("t", 100_000), json!({ "id": "t", "resumes": 1, "state": "pending", "version": 2 }));
    r.settle("t", "resolved", 100_000);
    assert_eq!(r.send("task.halt", json!({ "id": "t" }), 100_000), (409, json!("Task is fulfilled")));
    // A halted task whose promise times out reads fulfilled, so it cannot be continued.
    r.create("h", target(POLL), 200_000, 100_000);
    r.ok("task.halt", json!({ "id": "h" }), 100_000);
    assert_eq!(r.send("task.continue", json!({ "id": "h" }), 200_000), (409, json!("Task is not halted")));
}

#[test]
fn heartbeat_extends_only_the_leases_it_names() {
    let mut r = Rig::start(&[]);
    for id in ["t", "other", "stale"] {
        r.create(id, target(POLL), FAR, T);
        r.acquire(id, 0, 1_000, T);
    }
    let refs = json!([{ "id": "t", "version": 1 }, { "id": "stale", "version": 0 }, { "id": "ghost", "version": 1 }]);
    assert_eq!(r.ok("task.heartbeat", json!({ "pid": "p", "tasks": refs }), 1_500), json!({}));
    let foreign = json!({ "pid": "q", "tasks": [{ "id": "other", "version": 1 }] });
    assert_eq!(r.ok("task.heartbeat", foreign, 1_500), json!({}));
    let empty = json!({ "pid": "p", "tasks": [] });
    assert_eq!(r.ok("task.heartbeat", empty, 1_500), json!({}), "choices.yaml heartbeat-empty");
    r.tick(2_000);
    assert_eq!(r.task("t", 2_000)["state"], "acquired", "the heartbeat moved the lease to 2500");
    assert_eq!(r.task("other", 2_000)["state"], "pending", "another pid's heartbeat is ignored");
    assert_eq!(r.task("stale", 2_000)["state"], "pending", "a stale version's heartbeat is ignored");
    r.tick(2_499);
    assert_eq!(r.task("t", 2_499)["state"], "acquired");
    r.tick(2_500);
    assert_eq!(r.task("t", 2_500), json!({ "id": "t", "resumes": 0, "state": "pending", "version": 1 }));
}

#[test]
fn a_timer_may_carry_a_target() {
    // choices.yaml timer-with-target.
    let mut r = Rig::start(&[]);
    r.create("tt", json!({ "resonate:timer": "true", "resonate:target": POLL }), 5_000, T);
    assert_eq!(r.task("tt", T)["state"], "pending");
    assert_eq!(r.executes("tt"), [0]);
    let fired = r.promise("tt", 5_000);
    assert_eq!((&fired["state"], &fired["settledAt"]), (&json!("resolved"), &json!(5_000)));
    assert_eq!(r.task("tt", 5_000)["state"], "fulfilled");
}

#[test]
fn a_delayed_task_is_not_dispatched_before_its_delay() {
    // tags.yaml resonate:delay, choices.yaml delay-honoured.
    let mut r = Rig::start(&[]);
    r.create("d", json!({ "resonate:target": POLL, "resonate:delay": "5000" }), FAR, T);
    r.create("now", json!({ "resonate:target": POLL, "resonate:delay": "0" }), FAR, T);
    assert_eq!(r.task("d", T)["state"], "pending");
    assert_eq!(r.executes("d"), Vec::<i64>::new());
    assert_eq!(r.executes("now"), [0], "a delay in the past does not hold the task back");
    assert!(r.task_timeout("d", 0, 5_000), "the first dispatch waits for the delay");
    r.tick(4_999);
    assert_eq!(r.executes("d"), Vec::<i64>::new());
    r.tick(5_000);
    assert_eq!(r.executes("d"), [0]);
}

// ----- 4. delivery -----

/// Opens `/poll/<group>/<id>`.
fn stream(r: &Rig, group: &str, id: &str) -> Sse {
    let (response, sse) = Sse::open(r.server.addr, &format!("/poll/{group}/{id}")).unwrap();
    assert_eq!(response.status, 200);
    assert_eq!(response.header("content-type"), Some("text/event-stream"));
    sse.expect("an open stream")
}

/// The next event's data, within `WAIT`.
fn event(sse: &mut Sse) -> String {
    sse.next_data(WAIT).unwrap().expect("an event within 5 s")
}

#[test]
fn messages_reach_poll_streams() {
    let mut r = Rig::delivering(&[]);
    let url = format!("http://localhost:{}", r.server.addr.port());
    let execute = |id: &str| {
        let data = format!(r#"{{"task":{{"id":"{id}","version":0}}}}"#);
        format!(r#"{{"data":{data},"head":{{"serverUrl":"{url}"}},"kind":"execute"}}"#)
    };
    let mut w1 = stream(&r, "g", "w1");
    let mut w2 = stream(&r, "g", "w2");
    r.create("any", target("poll://any@g"), FAR, T);
    let mut got = Vec::new();
    let deadline = Instant::now() + WAIT;
    while got.is_empty() && Instant::now() < deadline {
        for w in [&mut w1, &mut w2] {
            got.extend(w.next_data(Duration::from_millis(50)).unwrap());
        }
    }
    for w in [&mut w1, &mut w2] {
        got.extend(w.next_data(QUIET).unwrap());
    }
    assert_eq!(got, [execute("any")], "poll://any@g reaches exactly one stream of the group");

    r.create("uni", target("poll://uni@g/w2"), FAR, T);
    assert_eq!(event(&mut w2), execute("uni"));
    r.create("named", target("poll://any@g/w1"), FAR, T);
    assert_eq!(event(&mut w1), execute("named"));
    assert_eq!((w1.next_data(QUIET).unwrap(), w2.next_data(Duration::ZERO).unwrap()), (None, None));

    // A listener gets an unblock with the settled record.
    r.create("l", external(), FAR, T);
    r.ok("promise.register_listener", json!({ "awaited": "l", "address": "poll://uni@g/w2" }), T);
    let settled = r.settle("l", "resolved", 2_000);
    let unblock: Value = serde_json::from_str(&event(&mut w2)).unwrap();
    assert_eq!(unblock, json!({ "data": { "promise": settled }, "head": {}, "kind": "unblock" }));
    assert_eq!(r.snap()["listeners"], json!([]), "the listener was drained");
    r.drained();

    // An unblock for a stream that is not connected waits for it; a timeout fired by debug.tick
    // unblocks too.
    r.create("m", external(), 5_000, T);
    r.ok("promise.register_listener", json!({ "awaited": "m", "address": "poll://uni@g/later" }), T);
    r.tick(5_000);
    assert_eq!(r.snap()["messages"].as_array().unwrap().len(), 1, "the unblock waits for its stream");
    let mut later = stream(&r, "g", "later");
    let unblock: Value = serde_json::from_str(&event(&mut later)).unwrap();
    assert_eq!(unblock["data"]["promise"]["state"], "rejected_timedout");
    assert_eq!(unblock["data"]["promise"], r.promise("m", 5_000));
}

#[test]
fn messages_reach_push_endpoints() {
    let mut r = Rig::delivering(&[]);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let address = format!("http://{}/inbox", listener.local_addr().unwrap());
    r.create("h", target(&address), FAR, T);
    let deadline = Instant::now() + WAIT;
    let stream = loop {
        match listener.accept() {
            Ok((stream, _)) => break stream,
            Err(_) if Instant::now() < deadline => sleep(Duration::from_millis(20)),
            Err(e) => panic!("no push within 5 s: {e}"),
        }
    };
    stream.set_nonblocking(false).unwrap();
    stream.set_read_timeout(Some(WAIT)).unwrap();
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    reader.read_line(&mut line).unwrap();
    assert_eq!(line.trim_end(), "POST /inbox HTTP/1.1");
    let mut length = 0;
    loop {
        line.clear();
        reader.read_line(&mut line).unwrap();
        let Some((name, value)) = line.trim_end().split_once(':') else { break };
        if name.eq_ignore_ascii_case("content-length") {
            length = value.trim().parse().unwrap();
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body).unwrap();
    reader.get_mut().write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n").unwrap();
    let url = format!("http://localhost:{}", r.server.addr.port());
    let execute = json!({ "data": { "task": { "id": "h", "version": 0 } }, "head": { "serverUrl": url },
                          "kind": "execute" });
    assert_eq!(serde_json::from_slice::<Value>(&body).unwrap(), execute);
    r.drained();
}

// ----- 5. lease expiry and retry -----

#[test]
fn an_expired_lease_requeues_the_task() {
    let mut r = Rig::start(&["--tasks-retry-timeout", "5000"]);
    r.create("t", target(POLL), FAR, T);
    r.acquire("t", 0, 1_000, T);
    assert!(r.task_timeout("t", 1, 2_000), "an acquired task has a lease deadline");
    r.tick(1_999);
    assert_eq!(r.task("t", 1_999)["state"], "acquired");
    r.tick(2_000);
    assert_eq!(r.task("t", 2_000), json!({ "id": "t", "resumes": 0, "state": "pending", "version": 1 }));
    assert_eq!(r.executes("t"), [1]);
    assert!(r.task_timeout("t", 0, 7_000), "the next retry is --tasks-retry-timeout away");
    // Checklist C5: a lease that ends with its promise's deadline leaves the task fulfilled, undispatched.
    r.create("dying", target(POLL), 3_000, T);
    r.acquire("dying", 0, 2_000, T);
    r.tick(3_000);
    assert_eq!(r.snap()["tasks"][0], json!({ "id": "dying", "resumes": 0, "state": "fulfilled", "version": 1 }));
    assert_eq!(r.executes("dying"), [0]);
}

#[test]
fn retries_redispatch_after_the_retry_timeout() {
    let mut r = Rig::delivering(&["--tasks-retry-timeout", "5000"]);
    let mut w = stream(&r, "lg", "w");
    let version = |w: &mut Sse| serde_json::from_str::<Value>(&event(w)).unwrap()["data"]["task"]["version"].clone();
    r.create("s", target("poll://any@lg"), FAR, T);
    assert_eq!(version(&mut w), 0);
    r.acquire("s", 0, 1_000, T);
    r.tick(2_000);
    assert_eq!(version(&mut w), 1, "lease expiry re-dispatches");
    r.tick(6_999);
    assert_eq!(w.next_data(QUIET).unwrap(), None, "nothing before the retry time");
    r.tick(7_000);
    assert_eq!(version(&mut w), 1, "the retry re-dispatches after --tasks-retry-timeout");
    assert_eq!(r.task("s", 7_000)["state"], "pending");
}

// ----- 6. schedules -----

#[test]
fn a_schedule_creates_its_promises() {
    let mut r = Rig::start(&[]);
    const N: i64 = 1_800_000_000_000; // a minute boundary
    let mut data = schedule("sch", "* * * * *", "s.{{.id}}.{{.timestamp}}", 3_600_000);
    data["promiseParam"] = json!({ "data": "cA==" });
    data["promiseTags"] = json!({ "k": "v" });
    assert_eq!(r.ok("schedule.create", data, N)["schedule"]["nextRunAt"], N + 60_000);
    let taken = format!("s.sch.{}", N + 120_000);
    let kept = r.create(&taken, json!({}), FAR, N);
    let mine = json!({ "tags": { "resonate:schedule": "sch" } });
    r.tick(N + 59_999);
    assert_eq!(r.ok("promise.search", mine.clone(), N + 59_999), json!({ "promises": [] }));
    let at = N + 60_000;
    r.tick(at);
    let id = format!("s.sch.{at}");
    let tags = json!({ "k": "v", "resonate:schedule": "sch", "resonate:origin": id, "resonate:branch": id,
                       "resonate:parent": id, "resonate:prefix": id });
    let expected = json!({ "createdAt": at, "id": id, "param": { "data": "cA==" }, "state": "pending",
                           "tags": tags, "timeoutAt": at + 3_600_000, "value": {} });
    assert_eq!(r.promise(&id, at), expected);
    let fired = r.ok("schedule.get", json!({ "id": "sch" }), at)["schedule"].clone();
    assert_eq!((&fired["lastRunAt"], &fired["nextRunAt"]), (&json!(at), &json!(at + 60_000)));

    // Missed occurrences are each created once (choices.yaml schedule-catch-up).
    let now = at + 180_000;
    r.tick(now);
    let created = r.ok("promise.search", mine.clone(), now);
    let expected: Vec<String> = [1, 3, 4].iter().map(|k| format!("s.sch.{}", N + k * 60_000)).collect();
    assert_eq!(ids(&created, "promises"), expected);
    assert_eq!(r.promise(&taken, now), kept, "an occurrence whose promise exists leaves it alone");
    let fired = r.ok("schedule.get", json!({ "id": "sch" }), now)["schedule"].clone();
    assert_eq!((&fired["lastRunAt"], &fired["nextRunAt"]), (&json!(now), &json!(now + 60_000)));

    assert_eq!(r.ok("schedule.delete", json!({ "id": "sch" }), now), json!({}));
    assert_eq!(r.send("schedule.get", json!({ "id": "sch" }), now), (404, json!("Schedule not found")));
    r.tick(now + 600_000);
    let left = r.ok("promise.search", mine, now + 600_000);
    assert_eq!(ids(&left, "promises"), expected, "its promises stay, and a deleted schedule fires no more");
}

#[test]
fn cron_expressions_follow_rules_yaml() {
    // spec/rules.yaml schedule.cron: UTC; 5 fields, or 6/7 with seconds first and year last;
    // day-of-week 1-7 = SUN-SAT; day-of-month AND day-of-week must both match.
    let mut r = Rig::start(&[]);
    const N: i64 = 1_800_000_000_000; // Friday 2027-01-15 08:00:00 UTC
    let cases = [
        ("0 0 * * 1", N + 144_000_000),            // Sunday 2027-01-17 00:00
        ("0 9 * * MON-FRI", N + 3_600_000),        // Friday 09:00
        ("30 * * * * *", N + 30_000),              // seconds first
        ("0 0 12 * * * 2028", 1_830_340_800_000),  // 2028-01-01 12:00, year last
        ("0 0 1 * 2", 1_801_440_000_000),          // Monday 2027-02-01, not the next Monday
    ];
    for (i, (cron, next)) in cases.into_iter().enumerate() {
        let created = r.ok("schedule.create", schedule(&format!("c{i}"), cron, "x", 0), N);
        assert_eq!(created["schedule"]["nextRunAt"], next, "{cron}");
    }
}

// ----- 7. the plain HTTP routes -----

#[test]
fn plain_routes_answer_as_the_official_server() {
    let r = Rig::start(&[]);
    let mut client = r.server.client();
    for path in ["/health", "/ready"] {
        let response = client.get(path).unwrap();
        assert_eq!((response.status, response.body.len()), (200, 0), "{path}");
    }
    // The official server's 405 has an empty body; ours says what to send instead.
    let response = client.get("/").unwrap();
    assert_eq!(response.status, 405);
    assert_eq!(response.header("content-type"), Some("text/plain"));
    assert_eq!(response.text(), text(&spec("protocol.yaml")["http"]["not_post"]["body"]));
    assert!(response.text().contains("POST / with a JSON envelope"), "{}", response.text());
    for path in ["/nowhere", "/poll/g", "/poll/g/a/b"] {
        assert_eq!(client.get(path).unwrap().status, 404, "{path}");
    }
    let gone = r#"{"error":"This endpoint is no longer supported. Please update to the latest SDK."}"#;
    for (method, path) in [("GET", "/promises"), ("POST", "/schedules/x"), ("DELETE", "/tasks")] {
        let response = client.request(method, path, &[], &[]).unwrap();
        assert_eq!((response.status, response.text()), (410, gone.to_string()), "{method} {path}");
    }
    let data = json!({ "id": "big", "timeoutAt": FAR, "param": { "data": "x".repeat(1_900_000) } });
    let envelope = json!({ "kind": "promise.create", "head": { "corrId": "c", "version": VERSION }, "data": data });
    let response = client.request("POST", "/", &[], envelope.to_string().as_bytes()).unwrap();
    assert_eq!(response.status, 200, "1.9 MB is accepted, with no Content-Type");
    let response = r.server.client().post("/", &vec![b' '; 3_000_000]).unwrap();
    assert_eq!(response.status, 413);
    assert_eq!(response.header("content-type"), Some("text/plain"));
    assert_eq!(response.text(), "Failed to buffer the request body: length limit exceeded");
}

/// An id or address wider than a store keeps (spec/protocol.yaml `store_checks`) is refused with
/// the spec's 400 and changes nothing; on stores without such a limit it is an ordinary id.
#[test]
fn ids_past_a_stores_limit_are_refused_not_failed() {
    let target = target_under_test();
    let checks = spec("protocol.yaml")["store_checks"].as_sequence().cloned().unwrap_or_default();
    let limited = checks.iter().any(|c| {
        let stores = c["stores"].as_sequence().expect("a store check lists its stores");
        stores.iter().any(|s| target.starts_with(&format!("{}-", text(s))))
    });
    let errors = spec("errors.yaml");
    let mut r = Rig::start(&[]);
    // Past every store limit, and incompressible (PostgreSQL compresses index rows).
    let noise = |n: usize| -> String {
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                char::from(b'a' + (x % 26) as u8)
            })
            .collect()
    };
    let long = noise(9_000);
    let far = noise(9_000);
    r.create("a", json!({ "resonate:external": "true" }), FAR, T);
    let before = r.snap();
    // A schedule whose occurrences would expand to such an id is refused when it is created.
    let every = format!("{long}.{}", concat!("{", "{.timestamp}}"));
    let requests = [
        ("promise.create", json!({ "id": long, "timeoutAt": FAR, "param": {}, "tags": {} })),
        ("promise.register_listener", json!({ "awaited": "a", "address": format!("poll://any@{far}") })),
        ("schedule.create", json!({ "id": "s", "cron": "* * * * *", "promiseId": every, "promiseTimeout": 1 })),
    ];
    for (kind, data) in requests {
        let (status, answer) = r.send(kind, data, T);
        if limited {
            assert_refusal(&errors, "too_long", status, &answer, kind);
        } else {
            assert_eq!(status, 200, "{kind}: {answer}");
        }
    }
    if limited {
        assert_eq!(r.snap(), before, "a refused request changes nothing");
    }
}

// ----- 8. messages that say what to do -----

/// A field of the wrong type is named by its path in `data`, and what it should be is said in
/// the wire's words, not Rust's (spec/protocol.yaml `decode_detail`).
#[test]
fn a_wrong_typed_field_is_named_with_its_wire_type() {
    let mut r = Rig::start(&[]);
    let create = |data: Value| ("promise.create", data);
    let cases = [
        (create(json!({ "id": "p", "timeoutAt": "hi" })),
         "Invalid request: timeoutAt: invalid type: string \"hi\", expected a 64-bit integer"),
        (create(json!({ "id": "p", "timeoutAt": FAR, "param": "hi" })),
         "Invalid request: param: invalid type: string \"hi\", expected an object {\"headers\"?: {…}, \"data\"?: \"…\"}"),
        (create(json!({ "id": "p", "timeoutAt": FAR, "param": { "headers": { "h": 1 } } })),
         "Invalid request: param.headers.h: invalid type: integer `1`, expected a string"),
        (create(json!({ "id": "p", "timeoutAt": FAR, "tags": ["a"] })),
         "Invalid request: tags: invalid type: array, expected an object of strings"),
        (create(json!({ "id": "p", "timeoutAt": 1.5 })),
         "Invalid request: timeoutAt: invalid type: number `1.5`, expected a 64-bit integer"),
        (("task.create", json!({ "pid": "w", "ttl": 1_000, "action": { "kind": "promise.create", "data": { "id": "t", "timeoutAt": "soon" } } })),
         "Invalid request: action.data.timeoutAt: invalid type: string \"soon\", expected a 64-bit integer"),
        (("task.create", json!({ "pid": "w", "ttl": 1_000, "action": { "kind": "promise.create", "data": { "timeoutAt": 1 } } })),
         "Invalid request: action.data: missing field `id`"),
        (("task.suspend", json!({ "id": "t", "version": 1, "actions": [{ "data": { "awaited": 5 } }] })),
         "Invalid request: actions[0].data.awaited: invalid type: integer `5`, expected a string"),
        (("task.heartbeat", json!({ "pid": "w", "tasks": [{ "id": "t", "version": "1" }] })),
         "Invalid request: tasks[0].version: invalid type: string \"1\", expected a 64-bit integer"),
        (("task.heartbeat", json!({ "pid": "w", "tasks": 5 })),
         "Invalid request: tasks: invalid type: integer `5`, expected an array"),
        // At the top a missing field keeps the official text.
        (create(json!({ "timeoutAt": FAR })), "Invalid request: missing field `id`"),
    ];
    for ((kind, data), expected) in cases {
        assert_eq!(r.send(kind, data.clone(), T), (400, json!(expected)), "{kind} {data}");
    }
    let fenced = json!({ "kind": "promise.create", "data": { "id": "c", "timeoutAt": [] } });
    let (_, data) = r.send("task.fence", task_action("t", 1, fenced), T);
    assert_eq!(data, "Invalid action data: timeoutAt: invalid type: array, expected a 64-bit integer");
}

/// A deadline that looks like Unix seconds is accepted (the promise is born timed out, as the
/// protocol says) but logged as a warning naming the likely mistake.
#[test]
fn a_deadline_in_seconds_is_logged_as_a_warning() {
    let mut r = Rig::start(&[]);
    let seconds = 1_900_000_000;
    let born = r.create("secs", json!({}), seconds, 1_800_000_000_000);
    assert_eq!(born["state"], "rejected_timedout");
    let warned = |log: &str| log.contains(&format!("timeoutAt {seconds} is 21 days after 1970-01-01 in Unix milliseconds"))
        && log.contains(&format!("did you mean {}000?", seconds));
    let deadline = Instant::now() + WAIT;
    while !warned(&r.server.log()) && Instant::now() < deadline {
        sleep(Duration::from_millis(20));
    }
    assert!(warned(&r.server.log()), "no warning in the log:\n{}", r.server.log());
}

/// Runs the server with `args` in `dir`, expecting it to refuse to start: a failing exit
/// status (2 for a flag's value) and one line on stderr, returned.
fn refused(args: &[&str], dir: &std::path::Path) -> String {
    let bin = build(&target_under_test());
    let mut child = std::process::Command::new(&bin)
        .args(args)
        .current_dir(dir)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + WAIT;
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("{} {args:?} did not refuse to start", bin.display());
        }
        sleep(Duration::from_millis(20));
    }
    let mut stderr = String::new();
    child.stderr.take().unwrap().read_to_string(&mut stderr).unwrap();
    assert!(!child.wait().unwrap().success(), "{args:?}: {stderr}");
    assert_eq!(stderr.trim_end().lines().count(), 1, "{args:?}: {stderr}");
    stderr.trim_end().to_string()
}

fn scratch(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("resonate-startup-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Start-up errors name the value, what is accepted and the flag to change.
#[test]
fn start_up_errors_say_what_to_change() {
    let name = format!("resonate-{}", target_under_test());
    let dir = scratch("flags");
    let cases: [(&[&str], String); 5] = [
        (&["--server-port", "70000"], "--server-port: expected a port number from 0 to 65535, got '70000'".into()),
        (&["--port", "8001"], "unknown option '--port'; did you mean --server-port? (see --help)".into()),
        (&["--server-url", "not a url"], "--server-url: expected an http:// or https:// URL that workers can reach, \
           such as http://resonate.example.com:8001, got 'not a url'".into()),
        (&["--tasks-retry-timeout", "1.5"], "--tasks-retry-timeout: expected a whole number, got '1.5'".into()),
        (&["8001"], "unexpected argument '8001': options start with --; see --help".into()),
    ];
    for (args, expected) in cases {
        assert_eq!(refused(args, &dir), format!("{name}: {expected}"), "{args:?}");
    }
    let out = std::process::Command::new(build(&target_under_test())).arg("--version").output().unwrap();
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout), format!("{name} 0.1.0 (Resonate protocol {VERSION})\n"));
    let _ = std::fs::remove_dir_all(&dir);
}

/// A SQLite file serves one process (choices.yaml sqlite-one-process), and a file that is not a
/// SQLite database is named, not opened.
#[test]
fn a_sqlite_file_is_checked_and_held_by_one_server() {
    let target = target_under_test();
    if !target.starts_with("sqlite") {
        return;
    }
    let name = format!("resonate-{target}");
    let dir = scratch("sqlite");
    std::fs::write(dir.join("notes.txt"), "not a database").unwrap();
    assert_eq!(
        refused(&["--storage-sqlite-path", "notes.txt"], &dir),
        format!("{name}: --storage-sqlite-path: 'notes.txt' exists but is not a SQLite database; give \
                 --storage-sqlite-path (RESONATE_STORAGE__SQLITE__PATH) another file, or a path where a new \
                 database may be created")
    );
    let first = Rig::start(&[]);
    let db = first.server.dir.join("resonate.db");
    let db = db.to_str().unwrap();
    let port = free_port();
    let second = refused(&["--storage-sqlite-path", db, "--server-port", &port.to_string()], &dir);
    assert_eq!(
        second,
        format!("{name}: --storage-sqlite-path: '{db}' is in use by another server process (it holds '{db}-lock'); \
                 a SQLite file serves one process. Stop the other server, or give --storage-sqlite-path \
                 (RESONATE_STORAGE__SQLITE__PATH) another file; for several servers on one database use \
                 postgres-http or mysql-http")
    );
    let mut r = first;
    assert_eq!(r.ok("debug.snap", json!({}), T)["promises"], json!([]), "the first server is unharmed");
    let _ = std::fs::remove_dir_all(&dir);
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}
