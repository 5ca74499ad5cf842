//! Concurrent clients against one `--debug` server (`RESONATE_TARGET`, default sqlite-http) per
//! scenario (background loops paused by `debug.start`, every request stamped from a shared
//! logical clock): each recorded
//! history must be linearizable, origin by origin, against the reference model, and no two
//! acquisitions of one task version may both succeed. The checker itself must refuse bad histories.

use resonate_tests::call;
use resonate_tests::linearize::{
    check, check_history, record, Event, History, ProtocolOp, Sequential, Session,
};
use resonate_tests::model::Model;
use resonate_tests::server::{build, target, Server};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

/// Clients per scenario.
const CLIENTS: usize = 8;
/// The logical clock every scenario starts at.
const START: i64 = 1_000;
/// A deadline no scenario reaches.
const FAR: i64 = 4_000_000_000_000;
/// The server's default retry timeout, which the model must share.
const RETRY_TIMEOUT: i64 = 30_000;
/// A long lease: it expires only where a scenario means it to.
const LONG: i64 = 1_000_000;

/// A `--debug` sqlite-http server, paused.
fn start() -> Server {
    let server = Server::start(&build(&target()), &["--debug"]);
    let (status, _) = call(&mut server.conn(), "debug.start", json!({}), Some(START));
    assert_eq!(status, 200, "debug.start");
    server
}

/// Asserts the history's safety directly, then checks it linearizable per origin against a fresh model.
fn verify(server: &Server, name: &str, history: &History, started: Instant) {
    assert_exclusive_acquisitions(history);
    assert_no_stale_fence(history);
    let model = Model::new(RETRY_TIMEOUT, &server.endpoint().server_url());
    if let Err(why) = check_history(&model, history) {
        panic!("{name}: {why}");
    }
    eprintln!(
        "{name}: {} requests, linearizable, {:?}",
        history.len(),
        started.elapsed()
    );
}

/// The key safety property (AtMostOneValidClaim): no two successful acquisitions (task.acquire,
/// or task.create taking the task) of one task ever hand out the same version.
fn assert_exclusive_acquisitions(history: &History) {
    let mut holders: HashMap<(String, i64), &ProtocolOp> = HashMap::new();
    for e in history {
        let (status, data) = &e.result;
        let acquires = matches!(e.op.kind.as_str(), "task.acquire" | "task.create");
        if !(acquires && *status == 200 && data["task"]["state"] == "acquired") {
            continue;
        }
        let task = &data["task"];
        let key = (
            task["id"].as_str().unwrap().to_owned(),
            task["version"].as_i64().unwrap(),
        );
        if let Some(first) = holders.insert(key.clone(), &e.op) {
            panic!("two holders of {key:?}: {first:?} and {:?}", e.op);
        }
    }
}

/// A lease at version v ends for good once a release, a fulfilment or an acquisition at v
/// succeeded (versions only grow): no fence at v called after that may be accepted.
fn assert_no_stale_fence(history: &History) {
    let mut ended: HashMap<(&str, i64), u64> = HashMap::new();
    for e in history {
        let ends = matches!(
            e.op.kind.as_str(),
            "task.release" | "task.fulfill" | "task.acquire"
        );
        if ends && e.result.0 == 200 {
            let key = (
                e.op.data["id"].as_str().unwrap(),
                e.op.data["version"].as_i64().unwrap(),
            );
            let at = ended.entry(key).or_insert(e.ret);
            *at = e.ret.min(*at);
        }
    }
    for e in history
        .iter()
        .filter(|e| e.op.kind == "task.fence" && e.result.0 == 200)
    {
        let key = (
            e.op.data["id"].as_str().unwrap(),
            e.op.data["version"].as_i64().unwrap(),
        );
        if let Some(&at) = ended.get(&key).filter(|&&at| at < e.call) {
            panic!(
                "{:?} was accepted though the lease ended at {at} ns, before its call at {} ns",
                e.op, e.call
            );
        }
    }
}

/// A reusable barrier for a scenario's clients that fails, instead of waiting forever, when a
/// client does not arrive within 30 s (it panicked).
struct Gate {
    clients: usize,
    /// How many clients wait, and how many times the gate opened.
    state: Mutex<(usize, u64)>,
    opened: Condvar,
}

impl Gate {
    fn new(clients: usize) -> Gate {
        Gate {
            clients,
            state: Mutex::new((0, 0)),
            opened: Condvar::new(),
        }
    }

    fn wait(&self) {
        let mut state = self.state.lock().unwrap();
        let generation = state.1;
        state.0 += 1;
        if state.0 == self.clients {
            *state = (0, generation + 1);
            self.opened.notify_all();
            return;
        }
        let closed = |state: &mut (usize, u64)| state.1 == generation;
        let waited = self
            .opened
            .wait_timeout_while(state, Duration::from_secs(30), closed);
        assert!(
            !waited.unwrap().1.timed_out(),
            "a client never reached the gate"
        );
    }
}

/// The address of any worker of the one group every task is dispatched to.
fn worker_target(server: &Server) -> String {
    server.endpoint().worker_address("w", None)
}

/// A targeted promise's creation.
fn targeted(target: &str, id: &str, timeout_at: i64) -> Value {
    let tags = json!({ "resonate:target": target });
    json!({ "id": id, "timeoutAt": timeout_at, "param": {}, "tags": tags })
}

/// Acquires `id` at `version` for this session; the new version on success.
fn acquire(s: &mut Session, id: &str, version: i64, ttl: i64) -> Option<i64> {
    let pid = format!("p{}", s.id);
    let (status, data) = s.call(
        "task.acquire",
        json!({ "id": id, "version": version, "pid": pid, "ttl": ttl }),
    );
    (status == 200).then(|| data["task"]["version"].as_i64().unwrap())
}

/// A fenced promise.create (of an external, untargeted child, so a task may await it) or promise.settle.
fn fence(s: &mut Session, id: &str, version: i64, child: &str, settle: bool) {
    let action = if settle {
        let data = json!({ "id": child, "state": "resolved", "value": {} });
        json!({ "kind": "promise.settle", "head": {}, "data": data })
    } else {
        let tags = json!({ "resonate:external": "true" });
        let data = json!({ "id": child, "timeoutAt": FAR, "param": {}, "tags": tags });
        json!({ "kind": "promise.create", "head": {}, "data": data })
    };
    s.call(
        "task.fence",
        json!({ "id": id, "version": version, "action": action }),
    );
}

fn settle(s: &mut Session, id: &str, state: &str) {
    s.call(
        "promise.settle",
        json!({ "id": id, "state": state, "value": {} }),
    );
}

fn tick(s: &mut Session) {
    assert_eq!(
        s.call_with("debug.tick", |now| json!({ "time": now })).0,
        200
    );
}

/// Several origins, each with a few root tasks that all clients create, acquire, fence children
/// of, heartbeat, fulfil, suspend, release and settle at random.
#[test]
fn a_mixed_workload_is_linearizable() {
    const ROUNDS: usize = 30;
    let (started, server) = (Instant::now(), start());
    let target = &worker_target(&server);
    let history = record(&server.endpoint(), CLIENTS, START, |s| {
        for _ in 0..ROUNDS {
            let root = format!("m{}.r{}", s.random(4), s.random(4));
            let child = format!("{root}.c{}", s.random(3));
            match s.random(10) {
                0 | 1 => {
                    s.call("promise.create", targeted(target, &root, FAR));
                }
                2..=5 => hold(s, &root),
                6 => {
                    let (id, state) = if s.random(4) == 0 {
                        (&root, "rejected")
                    } else {
                        (&child, "resolved")
                    };
                    settle(s, id, state);
                }
                7 => {
                    let id = if s.random(2) == 0 { root } else { child };
                    s.call("promise.get", json!({ "id": id }));
                }
                _ => {
                    let version = s.random(4);
                    let pid = format!("p{}", s.id);
                    s.call(
                        "task.heartbeat",
                        json!({ "pid": pid, "tasks": [{ "id": root, "version": version }] }),
                    );
                }
            }
        }
    });
    assert!(history.len() >= 200, "only {} requests", history.len());
    verify(&server, "mixed workload", &history, started);
}

/// Reads `root`'s task, acquires it at the version read if pending, and if that succeeds fences
/// a few children, heartbeats, and ends by fulfilling, by suspending on a child (which a settle
/// of the child resumes) or by releasing (also when the suspend is refused or answers 300).
fn hold(s: &mut Session, root: &str) {
    let (status, data) = s.call("task.get", json!({ "id": root }));
    if status != 200 || data["task"]["state"] != "pending" {
        return;
    }
    let Some(version) = acquire(s, root, data["task"]["version"].as_i64().unwrap(), LONG) else {
        return;
    };
    for _ in 0..1 + s.random(3) {
        let child = format!("{root}.c{}", s.random(3));
        let settles = s.random(3) == 0;
        fence(s, root, version, &child, settles);
    }
    let pid = format!("p{}", s.id);
    s.call(
        "task.heartbeat",
        json!({ "pid": pid, "tasks": [{ "id": root, "version": version }] }),
    );
    let held = json!({ "id": root, "version": version });
    match s.random(5) {
        0 => {
            let settle = json!({ "id": root, "state": "resolved", "value": {} });
            let action = json!({ "kind": "promise.settle", "head": {}, "data": settle });
            s.call(
                "task.fulfill",
                json!({ "id": root, "version": version, "action": action }),
            );
        }
        1 | 2 => {
            let awaits = json!({ "awaited": format!("{root}.c{}", s.random(3)), "awaiter": root });
            let action = json!({ "kind": "promise.register_callback", "head": {}, "data": awaits });
            let suspend = json!({ "id": root, "version": version, "actions": [action] });
            if s.call("task.suspend", suspend).0 != 200 {
                s.call("task.release", held);
            }
        }
        _ => {
            s.call("task.release", held);
        }
    }
}

/// All clients acquire one pending task at the same version at once: exactly one wins. The winner
/// releases it, and all race again at the same (unchanged) version.
#[test]
fn racing_acquires_have_exactly_one_winner() {
    const RACERS: usize = 12;
    const RACES: usize = 6;
    let (started, server) = (Instant::now(), start());
    let barrier = Gate::new(RACERS);
    let target = &worker_target(&server);
    let history = record(&server.endpoint(), RACERS, START, |s| {
        for race in 0..RACES {
            let id = format!("race{race}");
            if s.id == 0 {
                s.call("promise.create", targeted(target, &id, FAR));
            }
            for version in [0, 1] {
                barrier.wait();
                if let Some(held) = acquire(s, &id, version, LONG) {
                    s.call("task.release", json!({ "id": id, "version": held }));
                }
                barrier.wait();
            }
        }
    });
    for race in 0..RACES {
        for version in [0, 1] {
            let id = format!("race{race}");
            let statuses: Vec<u16> = history
                .iter()
                .filter(|e| {
                    e.op.kind == "task.acquire"
                        && e.op.data["id"] == id
                        && e.op.data["version"] == version
                })
                .map(|e| e.result.0)
                .collect();
            let wins = statuses.iter().filter(|&&s| s == 200).count();
            let losses = statuses.iter().filter(|&&s| s == 409).count();
            assert_eq!(
                (wins, losses),
                (1, RACERS - 1),
                "{id} at version {version}: {statuses:?}"
            );
        }
    }
    verify(&server, "racing acquires", &history, started);
}

/// A holder stops heartbeating while others fence at its version and one client keeps trying to
/// take the task over; the lease ends by release in even rounds and by expiry in odd ones (a
/// client ticks, at the clock's `now`, until the lease has expired and the task was taken). Fences
/// race the end of the lease; there are never two holders.
#[test]
fn fences_racing_the_end_of_a_lease_are_linearizable() {
    const ROUNDS: usize = 6;
    const FENCES: u64 = 10;
    const TTL: i64 = 30;
    let (started, server) = (Instant::now(), start());
    let barrier = Gate::new(CLIENTS);
    let taken = AtomicBool::new(false);
    let target = &worker_target(&server);
    let history = record(&server.endpoint(), CLIENTS, START, |s| {
        for round in 0..ROUNDS {
            let id = format!("fence{round}");
            if s.id == 0 {
                taken.store(false, Ordering::SeqCst);
                s.call("promise.create", targeted(target, &id, FAR));
                assert_eq!(acquire(s, &id, 0, TTL), Some(1), "a fresh task");
            }
            barrier.wait();
            match s.id {
                0 => {
                    for _ in 0..3 {
                        s.call(
                            "task.heartbeat",
                            json!({ "pid": "p0", "tasks": [{ "id": id, "version": 1 }] }),
                        );
                    }
                }
                1 if round % 2 == 1 => patiently(&taken, || tick(s)),
                1 => {
                    for _ in 0..FENCES / 2 {
                        s.call("task.get", json!({ "id": id }));
                    }
                    s.call("task.release", json!({ "id": id, "version": 1 }));
                }
                2 => patiently(&taken, || {
                    if acquire(s, &id, 1, LONG).is_some() {
                        taken.store(true, Ordering::SeqCst);
                    }
                }),
                _ => {
                    for k in 0..FENCES {
                        let child = format!("{id}.c{}.{}", s.id, k / 2);
                        fence(s, &id, 1, &child, k % 2 == 1);
                    }
                }
            }
            barrier.wait();
        }
    });
    let fences = history.iter().filter(|e| e.op.kind == "task.fence");
    let accepted = fences.clone().filter(|e| e.result.0 == 200).count();
    assert!(
        accepted > 0 && accepted < fences.count(),
        "fences never raced the end of a lease"
    );
    verify(
        &server,
        "fences racing the end of a lease",
        &history,
        started,
    );
}

/// Repeats `step` until `done` is set; fails after 10 000 tries.
fn patiently(done: &AtomicBool, mut step: impl FnMut()) {
    for _ in 0..10_000 {
        if done.load(Ordering::SeqCst) {
            return;
        }
        step();
    }
    panic!("still not done after 10 000 tries");
}

/// Clients settle a targeted promise while others read it and tick at the clock's `now`; its
/// deadline is 1, 2, 4 … 128 ms after its creation, so the timeout wins the first rounds, a
/// settle the last ones, and they race in between. Everyone sees the same winner.
#[test]
fn settles_racing_a_timeout_are_linearizable() {
    const ROUNDS: u32 = 8;
    const TRIES: u64 = 6;
    let (started, server) = (Instant::now(), start());
    let barrier = Gate::new(CLIENTS);
    let target = &worker_target(&server);
    let history = record(&server.endpoint(), CLIENTS, START, |s| {
        for round in 0..ROUNDS {
            let id = format!("timeout{round}");
            if s.id == 0 {
                s.call_with("promise.create", |now| targeted(target, &id, now + (1 << round)));
            }
            barrier.wait();
            for k in 0..TRIES {
                match s.id {
                    0 => tick(s),
                    1 => {
                        s.call("promise.get", json!({ "id": id }));
                    }
                    2 => {
                        s.call("task.get", json!({ "id": id }));
                    }
                    n if k < 2 => {
                        settle(s, &id, if n % 2 == 0 { "resolved" } else { "rejected" });
                    }
                    _ => {
                        s.call("promise.get", json!({ "id": id }));
                    }
                }
            }
            barrier.wait();
        }
    });
    let winners: Vec<&str> = (0..ROUNDS)
        .map(|round| {
            let id = json!(format!("timeout{round}"));
            let states = history
                .iter()
                .filter(|e| e.op.kind.starts_with("promise.") && e.op.data["id"] == id);
            let mut settled = states
                .filter_map(|e| e.result.1["promise"]["state"].as_str())
                .filter(|&s| s != "pending");
            settled.next().expect("settles answer settled promises")
        })
        .collect();
    assert_eq!(winners[0], "rejected_timedout", "{winners:?}");
    assert!(
        matches!(winners[ROUNDS as usize - 1], "resolved" | "rejected"),
        "{winners:?}"
    );
    verify(&server, "settles racing a timeout", &history, started);
}

/// One hand-made event at instants in µs.
fn event(
    client: usize,
    call: u64,
    ret: u64,
    op: ProtocolOp,
    result: (u16, Value),
) -> Event<ProtocolOp, (u16, Value)> {
    Event {
        client,
        call: call * 1_000,
        ret: ret * 1_000,
        op,
        result,
    }
}

fn op(kind: &str, data: Value, now: i64) -> ProtocolOp {
    ProtocolOp {
        kind: kind.to_owned(),
        data,
        now,
    }
}

fn model() -> Model {
    Model::new(RETRY_TIMEOUT, "http://localhost:8001")
}

#[test]
fn the_checker_refuses_two_overlapping_winners_of_one_version() {
    let create = op("promise.create", targeted("poll://any@w", "x", FAR), 10);
    let acquire = |pid: &str| {
        op(
            "task.acquire",
            json!({ "id": "x", "version": 0, "pid": pid, "ttl": LONG }),
            20,
        )
    };
    let mut created = model();
    let create_ret = created.apply(&create);
    let (a, b) = (acquire("a"), acquire("b"));
    let (a_ret, b_ret) = (created.clone().apply(&a), created.clone().apply(&b));
    assert_eq!((a_ret.0, b_ret.0), (200, 200), "each acquire alone wins");
    let mut history = vec![
        event(0, 0, 10, create, create_ret),
        event(1, 20, 40, a, a_ret),
        event(2, 25, 45, b, b_ret),
    ];
    let why = check(&model(), &history).unwrap_err();
    assert!(why.starts_with("not linearizable: at most 2 of 3"), "{why}");
    history[2].result = (409, Value::Null);
    assert_eq!(check(&model(), &history), Ok(vec![0, 1, 2]));
}

#[test]
fn the_checker_refuses_results_that_need_an_order_against_real_time() {
    let create = op("promise.create", targeted("poll://any@w", "x", FAR), 10);
    let get = op("promise.get", json!({ "id": "x" }), 20);
    let settle = op(
        "promise.settle",
        json!({ "id": "x", "state": "resolved", "value": {} }),
        40,
    );
    let mut m = model();
    let create_ret = m.apply(&create);
    let settle_ret = m.apply(&settle);
    let get_ret = m.apply(&get);
    assert_eq!(get_ret.1["promise"]["state"], "resolved");
    // The read saw the settlement though it returned before the settle was called.
    let mut history = vec![
        event(0, 0, 10, create, create_ret),
        event(1, 20, 30, get, get_ret),
        event(2, 40, 50, settle, settle_ret),
    ];
    let why = check(&model(), &history).unwrap_err();
    assert!(why.starts_with("not linearizable: at most 1 of 3"), "{why}");
    // Overlapping the settle, the same read is fine.
    (history[1].call, history[1].ret) = (45_000, 55_000);
    assert_eq!(check(&model(), &history), Ok(vec![0, 2, 1]));
}
