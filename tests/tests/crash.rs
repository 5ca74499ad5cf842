//! Crash safety of `RESONATE_TARGET` (default sqlite-http): a load of creates, settles,
//! acquires, releases and fulfils from a few concurrent clients while the server is killed with
//! SIGKILL at random moments (at least `RESONATE_CRASH_KILLS`, default 20) and restarted on the
//! same store. Afterwards:
//!
//! - every request acknowledged with 2xx is in the store: the promise with its acknowledged
//!   state and value, the task at its acknowledged version and state;
//! - a request in flight during a kill is either wholly applied or not at all (a get after the
//!   restart finds the state before it or the state after it, nothing in between);
//! - a task is fulfilled exactly when its promise is settled (coupled settlement); versions
//!   only ever step by one;
//! - background work resumes: promise timeouts that fell due while the server was down fire
//!   (their listeners are told), pending tasks are dispatched again to a worker (its SSE stream,
//!   or over NATS its subjects), and
//!   a schedule catches up on its occurrences through kills, including one during a `debug.tick`,
//!   creating each occurrence's promise once and missing none.
//!
//! The seed is printed; `RESONATE_CRASH_SEED` replays the kill schedule and the load's choices
//! (the interleaving with the kills stays up to the machine). `RESONATE_CRASH_BIN` runs it against
//! another server binary of the target's store.

use resonate_tests::badinput::Rng;
use resonate_tests::server::{build, target, Server};
use resonate_tests::transport::{Endpoint, Rpc};
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const VERSION: &str = "2026-04-01";
/// A deadline no test reaches.
const FAR: i64 = 4_000_000_000_000;
/// Load clients.
const CLIENTS: usize = 3;
/// How long a client waits for a restarted server before the test fails.
const BACK_WITHIN: Duration = Duration::from_secs(30);
/// The lease of every acquire: longer than the test, shorter than the schedule's distance.
const TTL: i64 = 600_000;
/// Where load tasks are dispatched (any worker of this group); no worker listens there.
const LOAD_GROUP: &str = "crash-load";

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn wall() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

/// One request on a fresh connection (never retried, so a request is sent at most once);
/// `Err` when no answer came (refused, reset, closed; over NATS: no subscriber, or the server
/// was killed while it waited).
fn send(endpoint: &Endpoint, kind: &str, data: &Value, now: Option<i64>) -> Result<(u16, Value), String> {
    let mut head = json!({ "corrId": "c", "version": VERSION });
    if let Some(now) = now {
        head["resonate:debug_time"] = json!(now);
    }
    let body = json!({ "kind": kind, "head": head, "data": data }).to_string();
    let r = endpoint.conn(Duration::from_secs(10)).rpc(body.as_bytes()).map_err(|e| e.to_string())?;
    let env: Value = serde_json::from_slice(&r.body).map_err(|e| format!("{kind}: answer is not JSON: {e}"))?;
    Ok((r.status, env["data"].clone()))
}

/// Sends until an answer comes (the server may be restarting); panics after BACK_WITHIN.
fn send_until_answered(endpoint: &Endpoint, kind: &str, data: &Value, now: Option<i64>) -> (u16, Value) {
    let deadline = Instant::now() + BACK_WITHIN;
    loop {
        match send(endpoint, kind, data, now) {
            Ok(answer) => return answer,
            Err(e) if Instant::now() > deadline => panic!("{kind} {data}: no answer within {BACK_WITHIN:?}: {e}"),
            Err(_) => thread::sleep(Duration::from_millis(20)),
        }
    }
}

/// What the store must hold for one id, as far as the acknowledged requests tell.
#[derive(Debug, Clone, PartialEq)]
struct Rec {
    /// The promise's state and value data (`None` while pending).
    state: String,
    value: Option<String>,
    /// The task: state and version (targeted promises only).
    task: Option<(String, i64)>,
}

impl Rec {
    /// Reads what the store holds for `id` (promise, and task if `targeted`).
    fn read(endpoint: &Endpoint, id: &str, targeted: bool) -> Rec {
        let (status, p) = send_until_answered(endpoint, "promise.get", &json!({ "id": id }), None);
        assert_eq!(status, 200, "promise.get {id}: {p}");
        let task = targeted.then(|| {
            let (status, t) = send_until_answered(endpoint, "task.get", &json!({ "id": id }), None);
            assert_eq!(status, 200, "task.get {id}: {t}");
            (t["task"]["state"].as_str().unwrap().to_string(), t["task"]["version"].as_i64().unwrap())
        });
        Rec::from_promise(&p["promise"], task)
    }

    fn from_promise(p: &Value, task: Option<(String, i64)>) -> Rec {
        let state = p["state"].as_str().unwrap_or("?").to_string();
        let value = p["value"]["data"].as_str().map(str::to_string);
        Rec { state, value, task }
    }
}

/// One load client: its own ids, so it knows exactly what each should hold.
struct Load {
    endpoint: Endpoint,
    /// The address of the load's tasks.
    target: String,
    me: usize,
    rng: Rng,
    n: usize,
    model: BTreeMap<String, Rec>,
    acked: usize,
    /// Requests sent that got no answer: the kill came while they were in flight.
    in_flight_at_kill: usize,
    /// Requests that found no server to connect to (then resolved the same way).
    refused: usize,
    failures: Vec<String>,
}

impl Load {
    /// Sends one request whose success turns `before` into `after` for `id`. An answer that
    /// is not 2xx fails the test (nothing here should be refused); no answer means the server
    /// died meanwhile: once it is back, the id must read `before` or `after`.
    fn step(&mut self, id: &str, kind: &str, data: Value, after: Rec) {
        let before = self.model.get(id).cloned();
        let targeted = after.task.is_some();
        match send(&self.endpoint, kind, &data, None) {
            Ok((status, answer)) if (200..300).contains(&status) => {
                self.acked += 1;
                if kind == "task.acquire" {
                    let v = answer["task"]["version"].as_i64();
                    if v != after.task.as_ref().map(|t| t.1) {
                        self.failures.push(format!("{kind} {data}: acked version {v:?}, expected {after:?}"));
                    }
                }
                self.model.insert(id.to_string(), after);
            }
            Ok((status, answer)) => self.failures.push(format!("{kind} {data} answered {status} {answer}; the store should hold {before:?}")),
            Err(e) => {
                if e.contains("refused") {
                    self.refused += 1;
                } else {
                    self.in_flight_at_kill += 1;
                }
                let seen = if before.is_none() {
                    // A create in flight: absent (404) or created.
                    match send_until_answered(&self.endpoint, "promise.get", &json!({ "id": id }), None) {
                        (404, _) => None,
                        _ => Some(Rec::read(&self.endpoint, id, targeted)),
                    }
                } else {
                    Some(Rec::read(&self.endpoint, id, targeted))
                };
                if seen == before {
                    if let Some(b) = before {
                        self.model.insert(id.to_string(), b);
                    }
                } else if seen.as_ref() == Some(&after) {
                    self.model.insert(id.to_string(), after);
                } else {
                    self.failures.push(format!(
                        "{kind} {data} was in flight during a kill and is half applied: before {before:?}, after {after:?}, found {seen:?}"
                    ));
                    if let Some(s) = seen {
                        self.model.insert(id.to_string(), s);
                    }
                }
            }
        }
    }

    fn pick(&mut self, wanted: impl Fn(&Rec) -> bool) -> Option<(String, Rec)> {
        let ids: Vec<(&String, &Rec)> = self.model.iter().filter(|(_, r)| wanted(r)).collect();
        if ids.is_empty() {
            return None;
        }
        let (id, r) = ids[self.rng.below(ids.len())];
        Some((id.clone(), r.clone()))
    }

    fn one(&mut self) {
        self.n += 1;
        let n = self.n;
        let value = format!("v{}-{n}", self.me);
        match self.rng.below(100) {
            0..=24 => {
                let id = format!("c{}.{n}", self.me);
                let data = json!({ "id": id, "timeoutAt": FAR, "tags": { "resonate:external": "true" } });
                self.step(&id, "promise.create", data, Rec { state: "pending".into(), value: None, task: None });
            }
            25..=44 => {
                let Some((id, _)) = self.pick(|r| r.task.is_none() && r.state == "pending") else { return };
                let state = self.rng.pick(&["resolved", "rejected", "rejected_canceled"]);
                let data = json!({ "id": id, "state": state, "value": { "data": value } });
                self.step(&id, "promise.settle", data, Rec { state: state.into(), value: Some(value), task: None });
            }
            45..=64 => {
                let id = format!("w{}.{n}", self.me);
                let data = json!({ "id": id, "timeoutAt": FAR, "tags": { "resonate:target": self.target } });
                let after = Rec { state: "pending".into(), value: None, task: Some(("pending".into(), 0)) };
                self.step(&id, "promise.create", data, after);
            }
            65..=82 => {
                let Some((id, r)) = self.pick(|r| r.task.as_ref().is_some_and(|t| t.0 == "pending")) else { return };
                let v = r.task.as_ref().unwrap().1;
                let data = json!({ "id": id, "version": v, "pid": format!("p{}", self.me), "ttl": TTL });
                self.step(&id, "task.acquire", data, Rec { task: Some(("acquired".into(), v + 1)), ..r });
            }
            83..=88 => {
                let Some((id, r)) = self.pick(|r| r.task.as_ref().is_some_and(|t| t.0 == "acquired")) else { return };
                let v = r.task.as_ref().unwrap().1;
                self.step(&id, "task.release", json!({ "id": id, "version": v }), Rec { task: Some(("pending".into(), v)), ..r });
            }
            _ => {
                let Some((id, r)) = self.pick(|r| r.task.as_ref().is_some_and(|t| t.0 == "acquired")) else { return };
                let v = r.task.as_ref().unwrap().1;
                let settle = json!({ "id": id, "state": "resolved", "value": { "data": value } });
                let data = json!({ "id": id, "version": v, "action": { "kind": "promise.settle", "head": {}, "data": settle } });
                let after = Rec { state: "resolved".into(), value: Some(value), task: Some(("fulfilled".into(), v)) };
                self.step(&id, "task.fulfill", data, after);
            }
        }
    }
}

/// Compares the store (`debug.snap`) with every client's model, and checks coupled settlement
/// across the whole store.
fn verify(snap: &Value, models: &[BTreeMap<String, Rec>]) -> Vec<String> {
    let mut failures = Vec::new();
    let promises: BTreeMap<&str, &Value> =
        snap["promises"].as_array().unwrap().iter().map(|p| (p["id"].as_str().unwrap(), p)).collect();
    let tasks: BTreeMap<&str, &Value> = snap["tasks"].as_array().unwrap().iter().map(|t| (t["id"].as_str().unwrap(), t)).collect();
    for model in models {
        for (id, want) in model {
            let Some(p) = promises.get(id.as_str()) else {
                failures.push(format!("{id}: acknowledged as {want:?} but missing from the store"));
                continue;
            };
            let task = tasks.get(id.as_str()).map(|t| (t["state"].as_str().unwrap().to_string(), t["version"].as_i64().unwrap()));
            let got = Rec::from_promise(p, if want.task.is_some() { task } else { None });
            if got != *want {
                failures.push(format!("{id}: acknowledged as {want:?}, the store holds {got:?}"));
            }
        }
    }
    for (id, t) in &tasks {
        let settled = promises.get(id).is_some_and(|p| p["state"] != "pending");
        let fulfilled = t["state"] == "fulfilled";
        if settled != fulfilled {
            failures.push(format!("{id}: coupling broken: task {t}, promise {:?}", promises.get(id)));
        }
    }
    failures
}

#[test]
fn acknowledged_requests_survive_sigkill_and_background_work_resumes() {
    let seed = env_or("RESONATE_CRASH_SEED", wall() as u64);
    let kills: usize = env_or("RESONATE_CRASH_KILLS", 20);
    eprintln!("crash ({}): seed {seed} (replay with RESONATE_CRASH_SEED={seed}), {kills} kills", target());
    let started = Instant::now();
    let args = ["--debug", "--timeouts-poll-interval", "100", "--tasks-retry-timeout", "1000"];
    // RESONATE_CRASH_BIN runs the suite against another build, e.g. a mutant that answers
    // before it commits, to see the suite catch it.
    let bin = std::env::var_os("RESONATE_CRASH_BIN").map(std::path::PathBuf::from).unwrap_or_else(|| build(&target()));
    let mut server = Server::start(&bin, &args);
    let endpoint = server.endpoint();
    let mut rng = Rng(seed);

    // --- The load, with kills at random moments. ---
    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..CLIENTS)
        .map(|me| {
            let stop = stop.clone();
            let rng = Rng(seed ^ (me as u64 + 1).wrapping_mul(0x9E37_79B9));
            let (endpoint, target) = (endpoint.clone(), endpoint.worker_address(LOAD_GROUP, None));
            thread::spawn(move || {
                let mut load = Load { endpoint, target, me, rng, n: 0, model: BTreeMap::new(), acked: 0, in_flight_at_kill: 0, refused: 0, failures: Vec::new() };
                while !stop.load(Ordering::Relaxed) && load.failures.len() < 10 {
                    load.one();
                }
                load
            })
        })
        .collect();
    for _ in 0..kills {
        thread::sleep(Duration::from_millis(50 + rng.below(300) as u64));
        server.kill9();
        thread::sleep(Duration::from_millis(rng.below(100) as u64));
        server.restart();
    }
    thread::sleep(Duration::from_millis(200));
    stop.store(true, Ordering::Relaxed);
    let loads: Vec<Load> = clients.into_iter().map(|c| c.join().expect("a load client panicked")).collect();
    let acked: usize = loads.iter().map(|l| l.acked).sum();
    let in_flight: usize = loads.iter().map(|l| l.in_flight_at_kill).sum();
    let refused: usize = loads.iter().map(|l| l.refused).sum();
    eprintln!(
        "crash: {kills} kills during {acked} acknowledged requests; {in_flight} were in flight at a kill, {refused} found the server down"
    );
    let mut failures: Vec<String> = loads.iter().flat_map(|l| l.failures.clone()).collect();
    assert!(acked > 20 * kills / 2, "too little load got through: {acked} acknowledged requests");
    assert!(in_flight > 0, "no request was ever in flight at a kill; the test proves nothing");

    // A last kill and a restart, then the whole store against the models.
    server.restart();
    let models: Vec<BTreeMap<String, Rec>> = loads.into_iter().map(|l| l.model).collect();
    let (status, snap) = send_until_answered(&endpoint, "debug.snap", &json!({}), None);
    assert_eq!(status, 200, "{snap}");
    failures.extend(verify(&snap, &models));
    assert!(failures.is_empty(), "seed {seed}: {} failures:\n{}", failures.len(), failures.join("\n"));

    // --- Background work resumes after a kill. ---
    // Timeouts that fall due while the server is down, each with a listener, and pending tasks
    // whose execute no worker took. The group is this process's own: NATS subjects are shared.
    let group = format!("crash-final-{}", std::process::id());
    let address = endpoint.worker_address(&group, None);
    // Due after the creates below even on a slow machine (a promise born past its deadline is
    // settled at birth and takes no listener), and before the restart.
    let due = wall() + 1_500;
    for i in 0..5 {
        let t = format!("timed.{i}");
        let (s, a) = send_until_answered(&endpoint, "promise.create", &json!({ "id": t, "timeoutAt": due, "tags": { "resonate:external": "true" } }), None);
        assert_eq!(s, 200, "{a}");
        let (s, a) = send_until_answered(&endpoint, "promise.register_listener", &json!({ "awaited": t, "address": address }), None);
        assert_eq!((s, &a["promise"]["state"]), (200, &json!("pending")), "the listener must be registered before the deadline: {a}");
        let r = format!("redo.{i}");
        let (s, a) = send_until_answered(&endpoint, "promise.create", &json!({ "id": r, "timeoutAt": FAR, "tags": { "resonate:target": address } }), None);
        assert_eq!(s, 200, "{a}");
    }
    // An SSE stream can only open once the server is back. A NATS worker listens throughout, as
    // a message published while no one listens is gone (spec/choices.yaml nats-delivery); what it
    // hears before the restart (the first executes) is set aside.
    let listen = || endpoint.worker(&group, "w1").unwrap_or_else(|e| panic!("the worker cannot listen: {e}"));
    let mut listening = matches!(endpoint, Endpoint::Nats(_)).then(listen);
    server.kill9();
    thread::sleep(Duration::from_millis((due - wall()).max(0) as u64 + 100));
    if let Some(worker) = &mut listening {
        while worker.next_message(Duration::from_millis(100)).expect("the worker stays connected").is_some() {}
    }
    server.restart();
    let mut worker = listening.unwrap_or_else(listen);
    let mut executes = BTreeSet::new();
    let mut unblocks = BTreeSet::new();
    let deadline = Instant::now() + Duration::from_secs(15);
    while (executes.len() < 5 || unblocks.len() < 5) && Instant::now() < deadline {
        let Some(data) = worker.next_message(Duration::from_millis(500)).expect("the worker stays connected") else { continue };
        let m: Value = serde_json::from_str(&data).expect("a message is JSON");
        match m["kind"].as_str() {
            Some("execute") => {
                executes.insert(m["data"]["task"]["id"].as_str().unwrap_or_default().to_string());
            }
            Some("unblock") => {
                let p = &m["data"]["promise"];
                assert_eq!(p["state"], "rejected_timedout", "{m}");
                unblocks.insert(p["id"].as_str().unwrap_or_default().to_string());
            }
            _ => panic!("unexpected message {m}"),
        }
    }
    let want = |prefix: &str| (0..5).map(|i| format!("{prefix}.{i}")).collect::<BTreeSet<_>>();
    assert_eq!(executes, want("redo"), "every pending task is dispatched again after the restart");
    assert_eq!(unblocks, want("timed"), "every timeout that fell due while the server was down fires, and its listener is told");
    drop(worker);

    // --- A schedule catches up through kills, once per occurrence. ---
    // Its first occurrence lies an hour ahead, where the background loop's wall clock does not
    // reach during the test; debug.tick drives it.
    const MINUTE: i64 = 60_000;
    let base = (wall() / MINUTE + 60) * MINUTE;
    let schedule = json!({ "id": "crash-s", "cron": "* * * * *", "promiseId": "crash-s.{{.timestamp}}", "promiseTimeout": 1000 });
    let (s, a) = send_until_answered(&endpoint, "schedule.create", &schedule, Some(base));
    assert_eq!(s, 200, "{a}");
    let tick = move |endpoint: &Endpoint, time: i64| send(endpoint, "debug.tick", &json!({ "time": time }), Some(time));
    assert_eq!(tick(&endpoint, base + 5 * MINUTE).map(|a| a.0), Ok(200));
    server.restart();
    // A kill while a tick that creates occurrences is running.
    let ticking = thread::spawn({
        let endpoint = endpoint.clone();
        move || tick(&endpoint, base + 9 * MINUTE)
    });
    thread::sleep(Duration::from_millis(rng.below(30) as u64));
    server.kill9();
    let _ = ticking.join();
    server.restart();
    assert_eq!(send_until_answered(&endpoint, "debug.tick", &json!({ "time": base + 12 * MINUTE }), Some(base + 12 * MINUTE)).0, 200);
    server.restart();
    let (s, page) = send_until_answered(&endpoint, "promise.search", &json!({ "tags": { "resonate:schedule": "crash-s" }, "limit": 1000 }), None);
    assert_eq!(s, 200, "{page}");
    let ids: Vec<&str> = page["promises"].as_array().unwrap().iter().map(|p| p["id"].as_str().unwrap()).collect();
    let expected: Vec<String> = (1..=12).map(|m| format!("crash-s.{}", base + m * MINUTE)).collect();
    assert_eq!(ids, expected, "each occurrence's promise exactly once, none missing");
    let (_, s) = send_until_answered(&endpoint, "schedule.get", &json!({ "id": "crash-s" }), None);
    assert_eq!(s["schedule"]["nextRunAt"], json!(base + 13 * MINUTE), "{s}");

    let log = server.log();
    assert!(!log.contains("panicked"), "the server panicked:\n{log}");
    eprintln!("crash ({}): passed in {:.1} s", target(), started.elapsed().as_secs_f64());
}
