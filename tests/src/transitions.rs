//! Section "transitions": every request kind, in every state its subject can be in, agrees with
//! the reference model (status, data and the whole store afterwards), and every refusal the spec
//! lists for the kind is reached by some case.
//!
//! The subject states and request variants are enumerated here; what each combination must answer
//! comes from the model, which is written from spec/ independently of the templates. `*.search`
//! kinds are unchecked protocol (not modelled) and `debug.*` is the test surface itself.

use crate::conform::{Case, Check, Session};
use crate::ensure;
use crate::model::Model;
use crate::server::repo_root;
use crate::transport::Endpoint;
use serde_json::{json, Value};
use std::collections::BTreeSet;

/// The subject of every request.
const S: &str = "t.s";
const FAR: i64 = 10_000_000;
/// When the request under test is sent: past the short deadlines and leases the states set up.
const AT: i64 = 2000;
/// The server's default retry timeout, which the model must share.
const RETRY: i64 = 30_000;
/// The worker group every task is dispatched to.
const GROUP: &str = "conform";

/// One step of a setup: kind, data, now.
type Step = (&'static str, Value, i64);

fn create(id: &str, tags: Value, timeout_at: i64) -> Step {
    ("promise.create", json!({ "id": id, "timeoutAt": timeout_at, "param": {}, "tags": tags }), 1000)
}

fn settle(id: &str, state: &str) -> Step {
    ("promise.settle", json!({ "id": id, "state": state, "value": { "data": "eA==" } }), 1100)
}

fn acquire(ttl: i64) -> Step {
    ("task.acquire", json!({ "id": S, "version": 0, "pid": "p", "ttl": ttl }), 1200)
}

/// Objects every case starts with, besides the subject: an external, an internal, a targeted
/// and a settled promise, and a schedule.
fn base(target: &str) -> Vec<Step> {
    vec![
        create("t.x", json!({ "resonate:external": "true" }), FAR),
        create("t.int", json!({}), FAR),
        create("t.w", json!({ "resonate:target": target }), FAR),
        create("t.done", json!({ "resonate:external": "true" }), FAR),
        settle("t.done", "resolved"),
        ("schedule.create", json!({ "id": "t.sched", "cron": "* * * * *", "promiseId": "t.sched.{{.timestamp}}", "promiseTimeout": 1000 }), 1000),
    ]
}

/// The states the subject can be in, each as the steps that lead there.
fn states(target: &str) -> Vec<(&'static str, Vec<Step>)> {
    let ext = || json!({ "resonate:external": "true" });
    let tgt = || json!({ "resonate:target": target });
    let suspend = ("task.suspend", json!({ "id": S, "version": 1, "actions": [
        { "kind": "promise.register_callback", "head": {}, "data": { "awaited": "t.x", "awaiter": S } }] }), 1300);
    let fulfill = ("task.fulfill", json!({ "id": S, "version": 1, "action": {
        "kind": "promise.settle", "head": {}, "data": { "id": S, "state": "resolved", "value": {} } } }), 1300);
    vec![
        ("absent", vec![]),
        ("pending internal", vec![create(S, json!({}), FAR)]),
        ("pending external", vec![create(S, ext(), FAR)]),
        ("pending timer", vec![create(S, json!({ "resonate:timer": "true" }), FAR)]),
        ("resolved", vec![create(S, ext(), FAR), settle(S, "resolved")]),
        ("rejected", vec![create(S, ext(), FAR), settle(S, "rejected")]),
        ("rejected_canceled", vec![create(S, ext(), FAR), settle(S, "rejected_canceled")]),
        ("projected timeout", vec![create(S, ext(), 1500)]),
        ("projected timer", vec![create(S, json!({ "resonate:timer": "true" }), 1500)]),
        ("task pending", vec![create(S, tgt(), FAR)]),
        ("task acquired", vec![create(S, tgt(), FAR), acquire(100_000)]),
        ("task lease expired", vec![create(S, tgt(), FAR), acquire(500)]),
        ("task suspended", vec![create(S, tgt(), FAR), acquire(100_000), suspend]),
        ("task halted", vec![create(S, tgt(), FAR), ("task.halt", json!({ "id": S }), 1300)]),
        ("task fulfilled", vec![create(S, tgt(), FAR), acquire(100_000), fulfill]),
        ("task, promise timed out", vec![create(S, tgt(), 1500), acquire(100_000)]),
    ]
}

fn action(kind: &str, data: Value) -> Value {
    json!({ "kind": kind, "head": {}, "data": data })
}

fn callbacks(awaited: &[&str]) -> Value {
    awaited.iter().map(|a| action("promise.register_callback", json!({ "awaited": a, "awaiter": S }))).collect()
}

/// The requests tried against each state, by kind, on a server reached at `endpoint`.
fn variants(kind: &str, endpoint: &Endpoint) -> Vec<Value> {
    let target = &endpoint.worker_address(GROUP, None);
    let tgt = json!({ "resonate:target": target });
    let create_data = |id: &str, tags: Value| json!({ "id": id, "timeoutAt": FAR, "tags": tags });
    let settle_data = |id: &str| json!({ "id": id, "state": "resolved", "value": { "data": "eQ==" } });
    match kind {
        "promise.get" | "task.get" | "task.halt" | "task.continue" | "schedule.get" | "schedule.delete" => {
            let subject = if kind.starts_with("schedule") { "t.sched" } else { S };
            vec![json!({ "id": subject }), json!({ "id": "t.none" }), json!({ "id": "" }), json!({}), json!({ "id": 5 })]
        }
        "promise.create" => vec![
            create_data(S, json!({})),
            create_data(S, tgt.clone()),
            json!({ "id": S, "timeoutAt": 10, "tags": { "resonate:timer": "true" } }),
            json!({ "id": S, "timeoutAt": FAR, "tags": { "resonate:timer": "true", "resonate:target": target } }),
            json!({ "id": S, "timeoutAt": FAR, "tags": { "resonate:target": target, "resonate:delay": "5000" } }),
            json!({ "id": "", "timeoutAt": FAR }),
            json!({ "id": "t.\u{0}", "timeoutAt": FAR }),
            json!({ "id": S, "timeoutAt": -1 }),
            json!({ "id": S }),
            create_data(S, json!({ "resonate:target": "nowhere" })),
            create_data(S, json!({ "resonate:target": target, "resonate:delay": "soon" })),
            create_data(S, json!({ "resonate:delay": "5" })),
            json!({ "id": S, "timeoutAt": 3000, "tags": { "resonate:target": target, "resonate:delay": "3000" } }),
        ],
        "promise.settle" => vec![
            settle_data(S),
            json!({ "id": S, "state": "rejected" }),
            json!({ "id": S, "state": "rejected_canceled", "value": null }),
            json!({ "id": S, "state": "pending" }),
            json!({ "id": S, "state": "rejected_timedout" }),
            json!({ "id": "", "state": "resolved" }),
            json!({ "id": "t.none", "state": "resolved" }),
        ],
        "promise.register_callback" => [
            (S, "t.w"), ("t.x", S), (S, S), ("", "t.w"), (S, ""), ("t.none", "t.w"), ("t.x", "t.none"), ("t.x", "t.int"), ("t.done", "t.w"),
        ]
        .iter()
        .map(|(awaited, awaiter)| json!({ "awaited": awaited, "awaiter": awaiter }))
        .collect(),
        "promise.register_listener" => vec![
            json!({ "awaited": S, "address": endpoint.worker_address(GROUP, Some("w1")) }),
            json!({ "awaited": S, "address": "http://127.0.0.1:9/hook" }),
            json!({ "awaited": S, "address": "poll://some@conform" }),
            json!({ "awaited": S, "address": "nats://conform.*" }),
            json!({ "awaited": "", "address": target }),
            json!({ "awaited": "t.none", "address": target }),
        ],
        "task.create" => vec![
            json!({ "pid": "p2", "ttl": 5000, "action": action("promise.create", create_data(S, tgt.clone())) }),
            json!({ "pid": "p2", "ttl": 5000, "action": action("promise.create", json!({ "id": S, "timeoutAt": 10, "tags": tgt })) }),
            json!({ "pid": "p2", "ttl": 5000, "action": action("promise.create", create_data(S, json!({}))) }),
            json!({ "pid": "p2", "ttl": 5000, "action": action("promise.create", create_data(S, json!({ "resonate:target": target, "resonate:delay": "1" }))) }),
            json!({ "pid": "p2", "ttl": 5000, "action": action("promise.create", create_data(S, json!({ "resonate:target": "x" }))) }),
            json!({ "pid": "", "ttl": 5000, "action": action("promise.create", create_data(S, tgt.clone())) }),
            json!({ "pid": "p2", "ttl": 0, "action": action("promise.create", create_data(S, tgt.clone())) }),
            json!({ "pid": "p2", "ttl": 5000, "action": action("promise.create", create_data("", tgt.clone())) }),
        ],
        "task.acquire" => vec![
            json!({ "id": S, "version": 0, "pid": "p2", "ttl": 5000 }),
            json!({ "id": S, "version": 1, "pid": "p2", "ttl": 5000 }),
            json!({ "id": S, "version": -1, "pid": "p2", "ttl": 5000 }),
            json!({ "id": S, "version": 0, "pid": "", "ttl": 5000 }),
            json!({ "id": S, "version": 0, "pid": "p2", "ttl": 0 }),
            json!({ "id": "", "version": 0, "pid": "p2", "ttl": 5000 }),
            json!({ "id": "t.none", "version": 0, "pid": "p2", "ttl": 5000 }),
        ],
        "task.fence" => vec![
            json!({ "id": S, "version": 1, "action": action("promise.create", create_data("t.s.1", json!({}))) }),
            json!({ "id": S, "version": 1, "action": action("promise.create", create_data("t.s.2", tgt)) }),
            json!({ "id": S, "version": 1, "action": action("promise.settle", settle_data("t.x")) }),
            json!({ "id": S, "version": 1, "action": action("promise.settle", settle_data("t.none")) }),
            json!({ "id": S, "version": 1, "action": action("promise.create", create_data("", json!({}))) }),
            json!({ "id": S, "version": 0, "action": action("promise.create", create_data("t.s.1", json!({}))) }),
            json!({ "id": S, "version": 1, "action": action("promise.create", create_data(S, json!({}))) }),
            json!({ "id": S, "version": 1, "action": action("promise.get", json!({ "id": "t.x" })) }),
            json!({ "id": S, "version": 1, "action": action("promise.settle", json!({ "id": "t.x", "state": "bad" })) }),
            json!({ "id": "t.none", "version": 1, "action": action("promise.settle", settle_data("t.x")) }),
            json!({ "id": "", "version": 1, "action": action("promise.settle", settle_data("t.x")) }),
            json!({ "id": S, "version": -1, "action": action("promise.settle", settle_data("t.x")) }),
        ],
        "task.heartbeat" => vec![
            json!({ "pid": "p", "tasks": [{ "id": S, "version": 1 }] }),
            json!({ "pid": "q", "tasks": [{ "id": S, "version": 1 }, { "id": "t.none", "version": 0 }] }),
            json!({ "pid": "p", "tasks": [] }),
            json!({ "pid": "", "tasks": [] }),
        ],
        "task.suspend" => vec![
            json!({ "id": S, "version": 1, "actions": callbacks(&["t.x"]) }),
            json!({ "id": S, "version": 1, "actions": callbacks(&["t.x", "t.done"]) }),
            json!({ "id": S, "version": 1, "actions": [] }),
            json!({ "id": S, "version": 1, "actions": callbacks(&[S]) }),
            json!({ "id": S, "version": 1, "actions": callbacks(&["t.x", "t.x"]) }),
            json!({ "id": S, "version": 1, "actions": callbacks(&["t.none"]) }),
            json!({ "id": S, "version": 1, "actions": callbacks(&["t.int"]) }),
            json!({ "id": S, "version": 0, "actions": callbacks(&["t.x"]) }),
            json!({ "id": "t.none", "version": 1, "actions": callbacks(&["t.x"]) }),
            json!({ "id": "", "version": 1, "actions": callbacks(&["t.x"]) }),
            json!({ "id": S, "version": -1, "actions": callbacks(&["t.x"]) }),
        ],
        "task.fulfill" => vec![
            json!({ "id": S, "version": 1, "action": action("promise.settle", settle_data(S)) }),
            json!({ "id": S, "version": 1, "action": action("promise.settle", json!({ "id": S, "state": "rejected_canceled" })) }),
            json!({ "id": S, "version": 0, "action": action("promise.settle", settle_data(S)) }),
            json!({ "id": S, "version": 1, "action": action("promise.settle", json!({ "id": S, "state": "pending" })) }),
            json!({ "id": "t.none", "version": 1, "action": action("promise.settle", settle_data("t.none")) }),
            json!({ "id": "", "version": 1, "action": action("promise.settle", settle_data(S)) }),
            json!({ "id": S, "version": -1, "action": action("promise.settle", settle_data(S)) }),
        ],
        "task.release" => [(S, 1), (S, 0), ("t.none", 0), ("", 1), (S, -1)]
            .iter()
            .map(|(id, version)| json!({ "id": id, "version": version }))
            .collect(),
        "schedule.create" => {
            let sched = |id: &str, cron: &str, template: &str, timeout: i64| {
                json!({ "id": id, "cron": cron, "promiseId": template, "promiseTimeout": timeout, "promiseTags": { "resonate:target": target } })
            };
            vec![
                sched("t.s2", "*/5 * * * *", "t.s2.{{.timestamp}}", 1000),
                sched("t.sched", "7 * * * *", "other", 5),
                sched("t.s3", "every minute", "x", 5),
                sched("t.s3", "", "x", 5),
                sched("t.s3", "* * * * *", "", 5),
                sched("t.s3", "* * * * *", "x", -5),
                sched("", "* * * * *", "x", 5),
            ]
        }
        _ => Vec::new(),
    }
}

/// The kinds this section holds to the model: everything but `*.search` and `debug.*`.
fn kinds() -> Result<Vec<String>, String> {
    let spec = spec_yaml("kinds.yaml")?;
    let map = spec.as_mapping().ok_or("kinds.yaml is not a map")?;
    Ok(map
        .keys()
        .filter_map(|k| k.as_str())
        .filter(|k| !k.ends_with(".search") && !k.starts_with("debug."))
        .map(str::to_string)
        .collect())
}

fn spec_yaml(file: &str) -> Result<serde_yaml::Value, String> {
    let path = repo_root().join("spec").join(file);
    let text = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    serde_yaml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))
}

/// The messages of every refusal spec/kinds.yaml lists for `kind` (field checks and guards).
fn refusals(kind: &str) -> Result<Vec<(String, String)>, String> {
    let kinds = spec_yaml("kinds.yaml")?;
    let errors = spec_yaml("errors.yaml")?;
    let k = &kinds[kind];
    let mut ids = Vec::new();
    for field in k["fields"].as_sequence().into_iter().flatten() {
        for check in field["checks"].as_sequence().into_iter().flatten() {
            let id = check.as_mapping().and_then(|m| m.values().next()).and_then(|v| v.as_str().or(v["error"].as_str()));
            ids.extend(id.map(str::to_string));
        }
    }
    for guard in k["guards"].as_sequence().into_iter().flatten() {
        ids.extend(guard["error"].as_str().map(str::to_string));
    }
    ids.into_iter()
        .map(|id| {
            let message = errors[id.as_str()]["message"].as_str().ok_or(format!("errors.yaml has no {id}"))?;
            Ok((id, message.split("{detail}").next().unwrap_or_default().to_string()))
        })
        .collect()
}

/// Sends one step to the server and the model and requires the same answer.
fn agree(s: &mut Session, model: &mut Model, kind: &str, data: &Value, now: i64, state: &str) -> Result<(u16, Value), String> {
    let (status, response) = s.send(kind, data.clone(), now);
    let expected = model.request(kind, data, now);
    let actual = (status, response["data"].clone());
    ensure!(
        actual == expected,
        "state    {state}\nrequest  {kind} {data} at {now}\nexpected {} {}\nactual   {} {}",
        expected.0, expected.1, actual.0, actual.1
    );
    Ok(actual)
}

/// Every variant of `kind` in every state: same answers and same store as the model; and every
/// refusal the spec lists for the kind was answered at least once.
fn kind_case(kind: String) -> Case {
    Case::new(kind.clone(), move |s: &mut Session| {
        let variants = variants(&kind, &s.endpoint);
        let target = s.endpoint.worker_address(GROUP, None);
        ensure!(!variants.is_empty(), "no request variants for {kind}: add them to transitions.rs");
        let mut reached = BTreeSet::new();
        let server_url = s.endpoint.server_url();
        for (state, setup) in states(&target) {
            for data in &variants {
                s.fresh()?;
                let mut model = Model::new(RETRY, &server_url);
                for (k, d, now) in base(&target).iter().chain(&setup) {
                    agree(s, &mut model, k, d, *now, state)?;
                }
                let (status, answer) = agree(s, &mut model, &kind, data, AT, state)?;
                if status >= 400 {
                    reached.insert(answer.as_str().unwrap_or_default().to_string());
                }
                let (server_snap, model_snap) = (s.snap(AT)?, model.snap());
                ensure!(
                    server_snap == model_snap,
                    "state    {state}\nrequest  {kind} {data}\nthe stores differ\nmodel    {model_snap}\nserver   {server_snap}"
                );
            }
        }
        let missed: Vec<String> = refusals(&kind)?
            .into_iter()
            .filter(|(_, prefix)| !reached.iter().any(|m| m.starts_with(prefix.as_str())))
            .map(|(id, _)| id)
            .collect();
        ensure!(missed.is_empty(), "{kind}: no case reached the spec's refusals {missed:?}");
        Ok(())
    })
}

pub fn cases() -> Vec<Case> {
    match kinds() {
        Ok(kinds) => kinds.into_iter().map(kind_case).collect(),
        Err(e) => vec![Case::new("spec/kinds.yaml", move |_: &mut Session| -> Check { Err(e.clone()) })],
    }
}
