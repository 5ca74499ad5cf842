//! Section "checklist": one named case per conformance question C1–C12 (spec/README.md,
//! "Checklist"), including the ones every known implementation got wrong (C3, C6, C8).

use crate::conform::{Case, Check, Session};
use crate::ensure;
use serde_json::{json, Value};

/// The worker group every task is dispatched to.
const GROUP: &str = "conform";
const FAR: i64 = 10_000_000;

/// The address of any worker of [`GROUP`], as the server's transport spells it.
fn target(s: &Session) -> String {
    s.endpoint.worker_address(GROUP, None)
}

fn targeted(s: &Session) -> Value {
    json!({ "resonate:target": target(s) })
}

fn create(s: &mut Session, id: &str, tags: Value, timeout_at: i64, now: i64) -> Result<Value, String> {
    let data = json!({ "id": id, "timeoutAt": timeout_at, "param": {}, "tags": tags });
    Ok(s.expect("promise.create", data, now, 200)?["promise"].clone())
}

fn create_targeted(s: &mut Session, id: &str, timeout_at: i64, now: i64) -> Result<Value, String> {
    let tags = targeted(s);
    create(s, id, tags, timeout_at, now)
}

fn acquire(s: &mut Session, id: &str, version: i64, pid: &str, ttl: i64, now: i64) -> Result<Value, String> {
    s.expect("task.acquire", json!({ "id": id, "version": version, "pid": pid, "ttl": ttl }), now, 200)
}

fn task_state(s: &mut Session, id: &str, now: i64) -> Result<Value, String> {
    Ok(s.expect("task.get", json!({ "id": id }), now, 200)?["task"]["state"].clone())
}

/// The stored record of a promise in debug.snap (no projection applied).
fn stored<'a>(snap: &'a Value, list: &str, id: &str) -> Option<&'a Value> {
    snap[list].as_array()?.iter().find(|p| p["id"] == json!(id))
}

/// Execute messages queued for a task, as `(version)`s.
fn executes(snap: &Value, id: &str) -> Vec<i64> {
    snap["messages"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|m| m["message"]["kind"] == json!("execute") && m["message"]["data"]["task"]["id"] == json!(id))
        .filter_map(|m| m["message"]["data"]["task"]["version"].as_i64())
        .collect()
}

pub fn cases() -> Vec<Case> {
    vec![
        Case::new("C1 external promises get a durable timeout", c1_external_armed),
        Case::new("C1 internal promises get no durable timeout", c1_internal_unarmed),
        Case::new("C2 register_callback refuses an internal awaited", c2),
        Case::new("C3 register_listener refuses an internal awaited", c3),
        Case::new("C4 task.create/halt/continue gate on the projection", c4),
        Case::new("C5 lease expiry and retry gate on the projection", c5),
        Case::new("C6 dead awaiters are not resumed", c6),
        Case::new("C7 task.heartbeat gates on the projection", c7),
        Case::new("C8 every response is projected and never regresses", c8),
        Case::new("C9 no execute for a version never issued", c9),
        Case::new("C10 at most one valid claim per task", c10),
        Case::new("C11 settled promises take no callback or listener", c11),
        Case::new("C12 the debug surface is closed without --debug", c12),
    ]
}

fn c1_external_armed(s: &mut Session) -> Check {
    let tags = [
        ("c1.ext", json!({ "resonate:external": "true" }), "rejected_timedout"),
        ("c1.timer", json!({ "resonate:timer": "true" }), "resolved"),
        ("c1.tgt", targeted(s), "rejected_timedout"),
        ("c1.scope", json!({ "resonate:scope": "global" }), "rejected_timedout"),
    ];
    for (id, t, _) in &tags {
        create(s, id, t.clone(), 2000, 1000)?;
    }
    let snap = s.snap(1000)?;
    for (id, _, _) in &tags {
        ensure!(stored(&snap, "promiseTimeouts", id).is_some(), "{id} is external but has no timeout armed:\n{snap}");
    }
    s.tick(3000)?;
    let snap = s.snap(3000)?;
    for (id, _, state) in &tags {
        let p = stored(&snap, "promises", id).ok_or(format!("{id} missing"))?;
        ensure!(
            p["state"] == json!(state) && p["settledAt"] == json!(2000),
            "{id} should be stored {state} at 2000 after a tick at 3000, is {p}"
        );
    }
    let task = stored(&snap, "tasks", "c1.tgt").ok_or("c1.tgt's task missing")?;
    ensure!(task["state"] == json!("fulfilled"), "the timed-out targeted promise's task: {task}");
    Ok(())
}

fn c1_internal_unarmed(s: &mut Session) -> Check {
    create(s, "c1.int", json!({}), 2000, 1000)?;
    let snap = s.snap(1000)?;
    ensure!(stored(&snap, "promiseTimeouts", "c1.int").is_none(), "an internal promise got a timeout:\n{snap}");
    s.tick(3000)?;
    let snap = s.snap(3000)?;
    let p = stored(&snap, "promises", "c1.int").ok_or("c1.int missing")?;
    ensure!(p["state"] == json!("pending"), "an internal promise was settled by the background: {p}");
    let read = s.expect("promise.get", json!({ "id": "c1.int" }), 3000, 200)?;
    ensure!(
        read["promise"]["state"] == json!("rejected_timedout") && read["promise"]["settledAt"] == json!(2000),
        "a read past the deadline must project the timeout: {read}"
    );
    Ok(())
}

fn c2(s: &mut Session) -> Check {
    create(s, "c2.int", json!({}), FAR, 1000)?;
    create(s, "c2.ext", json!({ "resonate:external": "true" }), FAR, 1000)?;
    create_targeted(s, "c2.x", FAR, 1000)?;
    let refused = s.expect("promise.register_callback", json!({ "awaited": "c2.int", "awaiter": "c2.x" }), 1000, 422)?;
    ensure!(refused.as_str().is_some_and(|m| m.starts_with("Awaited promise is not external")), "message: {refused}");
    s.expect("promise.register_callback", json!({ "awaited": "c2.ext", "awaiter": "c2.x" }), 1000, 200)?;
    Ok(())
}

fn c3(s: &mut Session) -> Check {
    create(s, "c3.int", json!({}), FAR, 1000)?;
    create(s, "c3.ext", json!({ "resonate:external": "true" }), FAR, 1000)?;
    let address = s.endpoint.worker_address(GROUP, Some("c3"));
    s.expect("promise.register_listener", json!({ "awaited": "c3.int", "address": address }), 1000, 422)?;
    s.expect("promise.register_listener", json!({ "awaited": "c3.ext", "address": address }), 1000, 200)?;
    let snap = s.snap(1000)?;
    ensure!(snap["listeners"] == json!([{ "id": "c3.ext", "address": address }]), "listeners: {}", snap["listeners"]);
    Ok(())
}

fn c4(s: &mut Session) -> Check {
    let tags = targeted(s);
    let action = |id: &str| json!({ "kind": "promise.create", "head": {}, "data": { "id": id, "timeoutAt": 2000, "tags": tags } });
    s.expect("task.create", json!({ "pid": "p", "ttl": 100_000, "action": action("c4.a") }), 1000, 200)?;
    s.expect("task.release", json!({ "id": "c4.a", "version": 1 }), 1100, 200)?;
    let again = s.expect("task.create", json!({ "pid": "q", "ttl": 100_000, "action": action("c4.a") }), 2500, 200)?;
    ensure!(
        again["task"]["state"] == json!("fulfilled") && again["promise"]["state"] == json!("rejected_timedout"),
        "task.create on a dead promise must not acquire: {again}"
    );
    create_targeted(s, "c4.b", 2000, 1000)?;
    s.expect("task.halt", json!({ "id": "c4.b" }), 2500, 409)?;
    create_targeted(s, "c4.c", 3000, 1000)?;
    s.expect("task.halt", json!({ "id": "c4.c" }), 1100, 200)?;
    s.expect("task.continue", json!({ "id": "c4.c" }), 3500, 409)?;
    Ok(())
}

fn c5(s: &mut Session) -> Check {
    create_targeted(s, "c5.a", 3000, 1000)?;
    acquire(s, "c5.a", 0, "p", 1000, 1000)?;
    create_targeted(s, "c5.b", 3000, 1000)?;
    s.tick(100_000)?;
    let snap = s.snap(100_000)?;
    ensure!(!executes(&snap, "c5.a").contains(&1), "a lease expired on a dead promise was re-dispatched:\n{snap}");
    for id in ["c5.a", "c5.b"] {
        let task = stored(&snap, "tasks", id).ok_or(format!("{id} missing"))?;
        ensure!(task["state"] == json!("fulfilled"), "{id}: {task}");
        ensure!(stored(&snap, "taskTimeouts", id).is_none(), "{id} keeps a timer after its promise died:\n{snap}");
    }
    Ok(())
}

fn c6(s: &mut Session) -> Check {
    create_targeted(s, "c6.x", 5000, 1000)?;
    acquire(s, "c6.x", 0, "p", 100_000, 1000)?;
    create(s, "c6.a", json!({ "resonate:external": "true" }), FAR, 1000)?;
    let suspend = json!({ "id": "c6.x", "version": 1, "actions": [
        { "kind": "promise.register_callback", "head": {}, "data": { "awaited": "c6.a", "awaiter": "c6.x" } }
    ] });
    s.expect("task.suspend", suspend, 1100, 200)?;
    s.expect("promise.settle", json!({ "id": "c6.a", "state": "resolved", "value": {} }), 6000, 200)?;
    let task = s.expect("task.get", json!({ "id": "c6.x" }), 6000, 200)?["task"].clone();
    ensure!(task["state"] == json!("fulfilled") && task["resumes"] == json!(0), "a dead awaiter was resumed: {task}");
    let snap = s.snap(6000)?;
    ensure!(!executes(&snap, "c6.x").contains(&1), "a dead awaiter was dispatched:\n{snap}");
    Ok(())
}

fn c7(s: &mut Session) -> Check {
    create_targeted(s, "c7.x", 3000, 1000)?;
    acquire(s, "c7.x", 0, "p", 1000, 1000)?;
    s.expect("task.heartbeat", json!({ "pid": "p", "tasks": [{ "id": "c7.x", "version": 1 }] }), 3500, 200)?;
    ensure!(task_state(s, "c7.x", 3500)? == json!("fulfilled"), "a heartbeat revived a dead task");
    let snap = s.snap(3500)?;
    ensure!(stored(&snap, "taskTimeouts", "c7.x").is_none(), "a dead task holds a lease:\n{snap}");
    Ok(())
}

fn c8(s: &mut Session) -> Check {
    let ext = json!({ "resonate:external": "true" });
    for id in ["c8.get", "c8.create", "c8.settle", "c8.cb", "c8.ls"] {
        create(s, id, ext.clone(), 2000, 1000)?;
    }
    create_targeted(s, "c8.t", 2000, 1000)?;
    create_targeted(s, "c8.w", FAR, 1000)?;
    let at = 2500;
    let answers = [
        s.expect("promise.get", json!({ "id": "c8.get" }), at, 200)?,
        s.expect("promise.create", json!({ "id": "c8.create", "timeoutAt": FAR }), at, 200)?,
        s.expect("promise.settle", json!({ "id": "c8.settle", "state": "resolved", "value": {} }), at, 200)?,
        s.expect("promise.register_callback", json!({ "awaited": "c8.cb", "awaiter": "c8.w" }), at, 200)?,
        s.expect("promise.register_listener", json!({ "awaited": "c8.ls", "address": target(s) }), at, 200)?,
    ];
    for a in &answers {
        ensure!(
            a["promise"]["state"] == json!("rejected_timedout") && a["promise"]["settledAt"] == json!(2000),
            "a response served a promise past its deadline unprojected: {a}"
        );
    }
    ensure!(task_state(s, "c8.t", at)? == json!("fulfilled"), "task.get served a dead task unprojected");
    let again = s.expect("promise.get", json!({ "id": "c8.settle" }), at + 1, 200)?;
    ensure!(again["promise"]["state"] == json!("rejected_timedout"), "a later read regressed: {again}");
    Ok(())
}

fn c9(s: &mut Session) -> Check {
    create_targeted(s, "c9.x", FAR, 1000)?;
    acquire(s, "c9.x", 0, "p", 1000, 1000)?;
    s.expect("task.release", json!({ "id": "c9.x", "version": 1 }), 1100, 200)?;
    acquire(s, "c9.x", 1, "p", 1000, 1200)?;
    s.tick(5000)?;
    let snap = s.snap(5000)?;
    let task = stored(&snap, "tasks", "c9.x").ok_or("c9.x missing")?;
    let version = task["version"].as_i64().unwrap_or(-1);
    let sent = executes(&snap, "c9.x");
    ensure!(!sent.is_empty(), "a lease expiry on a live promise must dispatch:\n{snap}");
    ensure!(sent.iter().all(|v| *v <= version), "execute {sent:?} ahead of task version {version}");
    Ok(())
}

fn c10(s: &mut Session) -> Check {
    create_targeted(s, "c10.x", FAR, 1000)?;
    acquire(s, "c10.x", 0, "a", 1000, 1000)?;
    s.expect("task.acquire", json!({ "id": "c10.x", "version": 0, "pid": "b", "ttl": 1000 }), 1001, 409)?;
    s.tick(2500)?;
    ensure!(task_state(s, "c10.x", 2500)? == json!("pending"), "the lease should have expired");
    acquire(s, "c10.x", 1, "b", 10_000, 2600)?;
    let fence = json!({ "id": "c10.x", "version": 1, "action": {
        "kind": "promise.create", "head": {}, "data": { "id": "c10.x.1", "timeoutAt": FAR } } });
    s.expect("task.fence", fence, 2700, 409)?;
    let settle = |v: i64| json!({ "id": "c10.x", "version": v, "action": {
        "kind": "promise.settle", "head": {}, "data": { "id": "c10.x", "state": "resolved", "value": {} } } });
    s.expect("task.fulfill", settle(1), 2700, 409)?;
    s.expect("task.fulfill", settle(2), 2800, 200)?;
    Ok(())
}

fn c11(s: &mut Session) -> Check {
    create(s, "c11.a", json!({ "resonate:external": "true" }), FAR, 1000)?;
    create_targeted(s, "c11.x", FAR, 1000)?;
    s.expect("promise.settle", json!({ "id": "c11.a", "state": "resolved", "value": {} }), 1100, 200)?;
    s.expect("promise.register_callback", json!({ "awaited": "c11.a", "awaiter": "c11.x" }), 1200, 200)?;
    let address = target(s);
    s.expect("promise.register_listener", json!({ "awaited": "c11.a", "address": address }), 1200, 200)?;
    let snap = s.snap(1200)?;
    ensure!(
        snap["callbacks"] == json!([]) && snap["listeners"] == json!([]),
        "a settled promise took an obligation:\n{snap}"
    );
    Ok(())
}

fn c12(s: &mut Session) -> Check {
    let plain = s.plain.clone().ok_or("needs a second instance started without --debug")?;
    let mut p = Session::new(plain, None);
    for kind in ["debug.reset", "debug.snap", "debug.start", "debug.stop"] {
        let message = p.expect(kind, json!({}), 0, 403)?;
        // The official text, then how to turn the surface on (spec/errors.yaml debug_disabled).
        let text = message.as_str().unwrap_or_default();
        ensure!(text.starts_with("Debug operations are disabled") && text.contains("--debug"), "{kind}: {message}");
    }
    p.expect("debug.tick", json!({ "time": 5 }), 5, 403)?;
    let made = p.expect("promise.create", json!({ "id": "c12.clock", "timeoutAt": i64::MAX / 2 }), 5, 200)?;
    ensure!(made["promise"]["createdAt"] != json!(5), "resonate:debug_time moved the clock without --debug: {made}");
    Ok(())
}
