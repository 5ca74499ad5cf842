//! A model-based differential fuzzer: seeded random workloads run in lockstep on [`Model`] and on
//! a live `--debug` server; every response is compared, and so is `debug.snap` (every step while
//! the store is small, less often as it grows: [`SNAP_EVERY`]). A mismatch is shrunk to a short
//! prefix.
//! `FUZZ_TRACE=<part of a kind>` prints the matching steps with the server's answers.

use crate::client::IO_TIMEOUT;
use crate::model::{Model, TaskState};
use crate::transport::{Conn, Endpoint};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::fmt;
use std::time::{Duration, Instant};

/// How often the snaps are compared, by the size of the store: (fewer promises than this, every
/// this many steps). A server's debug.snap is most of a run's time.
const SNAP_EVERY: [(usize, usize); 3] = [(15, 1), (30, 3), (usize::MAX, 25)];
/// A `debug.reset` step is sent every this many steps.
const RESET_EVERY: usize = 300;
/// How long shrinking may take.
const SHRINK_BUDGET: Duration = Duration::from_secs(120);
/// The clock of the first step.
const START: i64 = 1_000_000_000;
const VERSION: &str = "2026-04-01";

/// Addresses an HTTP server delivers to, and addresses it refuses.
const TARGETS: [&str; 5] = ["poll://any@g1", "poll://any@g1/w1", "poll://uni@g2/w2", "http://127.0.0.1:1/w", "https://127.0.0.1:1/s"];
const BAD_ADDRESSES: [&str; 8] = ["mailto:me", "", "poll://uni@g2", "poll://x@g", "nowhere", "http://", "poll://any@g/", "poll://any@g/a/b"];
/// The same for a NATS server: subjects only (spec/choices.yaml nats-addresses).
const NATS_TARGETS: [&str; 5] = ["nats://resonate.recv.g1", "nats://resonate.recv.g1.w1", "nats://resonate.recv.g2.w2", "nats://w", "nats://a-b_c.d:e"];
const NATS_BAD_ADDRESSES: [&str; 10] =
    ["poll://any@g1", "http://127.0.0.1:1/w", "", "nats://", "nats://a..b", "nats://.a", "nats://a.", "nats://a.*", "nats://a.>", "nats://a b"];
const PIDS: [&str; 3] = ["p1", "p2", "p3"];
const CRONS: [&str; 7] = ["* * * * *", "*/2 * * * *", "0 * * * *", "bad", "* * *", "61 * * * *", ""];

/// One request of a run.
#[derive(Clone, Debug, PartialEq)]
pub struct Step {
    pub kind: String,
    pub data: Value,
    pub now: i64,
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "at {} {} {}", self.now, self.kind, self.data)
    }
}

/// A disagreement between the model and the server.
#[derive(Debug)]
pub struct Failure {
    pub seed: u64,
    /// The shortest failing prefix found (after a `debug.reset`).
    pub prefix: Vec<Step>,
    pub expected: Value,
    pub actual: Value,
    pub what: String,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        writeln!(f, "seed {}: {}", self.seed, self.what)?;
        writeln!(f, "failing prefix ({} steps, after debug.reset + debug.start):", self.prefix.len())?;
        for step in &self.prefix {
            writeln!(f, "  {step}")?;
        }
        writeln!(f, "expected (model): {}", self.expected)?;
        write!(f, "actual (server):  {}", self.actual)
    }
}

/// What a run reached.
#[derive(Debug)]
pub struct Report {
    pub seed: u64,
    pub steps: usize,
    /// (kind, status) pairs the server answered, with counts.
    pub pairs: BTreeMap<(String, u16), u64>,
    /// Internal rules the model fired, with counts.
    pub rules: BTreeMap<&'static str, u64>,
    pub failure: Option<Failure>,
}

/// Runs `steps` seeded random steps in lockstep on the model and the server at `endpoint` (started
/// with `--debug` and the same `--tasks-retry-timeout`), comparing every response and the snaps.
pub fn run(endpoint: &Endpoint, seed: u64, steps: usize, retry_timeout: i64) -> Report {
    let mut rig = Rig { conn: endpoint.conn(IO_TIMEOUT), retry_timeout, server_url: endpoint.server_url() };
    let mut model = rig.reset();
    let (targets, bad_addresses): (&[&str], &[&str]) = match endpoint {
        Endpoint::Http(_) => (&TARGETS, &BAD_ADDRESSES),
        Endpoint::Nats(_) => (&NATS_TARGETS, &NATS_BAD_ADDRESSES),
    };
    let mut gen = Gen { rng: Rng(seed), now: START, serial: 0, targets, bad_addresses };
    let mut report = Report { seed, steps: 0, pairs: BTreeMap::new(), rules: BTreeMap::new(), failure: None };
    let mut history: Vec<Step> = Vec::new();
    let trace = std::env::var("FUZZ_TRACE").ok();
    for i in 0..steps {
        let step = if i > 0 && i % RESET_EVERY == 0 { gen.reset() } else { gen.step(&model) };
        let expected = model.request(&step.kind, &step.data, step.now);
        let actual = rig.send(&step);
        *report.pairs.entry((step.kind.clone(), actual.0)).or_default() += 1;
        if trace.as_ref().is_some_and(|kind| step.kind.contains(kind.as_str())) {
            println!("{step} -> {} {}", actual.0, actual.1);
        }
        report.steps += 1;
        if step.kind == "debug.reset" {
            history.clear();
        } else {
            history.push(step);
        }
        let mut mismatch = differ(&history, &expected, &actual);
        let every = SNAP_EVERY.iter().find(|(size, _)| model.promises.len() < *size).map_or(1, |(_, n)| *n);
        if mismatch.is_none() && i % every == 0 {
            mismatch = rig.compare_snaps(&model, history.len());
        }
        if let Some(m) = mismatch {
            report.failure = Some(rig.shrink(seed, history, m));
            break;
        }
    }
    report.rules = model.rules_fired().clone();
    report
}

/// A mismatch: what differed, the expectation and the actual value.
type Mismatch = (String, Value, Value);

fn differ(history: &[Step], expected: &(u16, Value), actual: &(u16, Value)) -> Option<Mismatch> {
    (expected != actual).then(|| {
        let kind = history.last().map_or("debug.reset", |step| step.kind.as_str());
        let what = format!("response to step {} ({kind}) differs: {}", history.len(), difference(&pair(expected), &pair(actual)));
        (what, pair(expected), pair(actual))
    })
}

fn pair((status, data): &(u16, Value)) -> Value {
    json!({ "status": status, "data": data })
}

/// The first place where two JSON values differ, as a path.
fn difference(a: &Value, b: &Value) -> String {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let keys: std::collections::BTreeSet<&String> = x.keys().chain(y.keys()).collect();
            for k in keys {
                match (x.get(k), y.get(k)) {
                    (Some(u), Some(v)) if u == v => {}
                    (Some(u), Some(v)) => return format!(".{k}{}", difference(u, v)),
                    (u, v) => return format!(".{k}: {} vs {}", show(u), show(v)),
                }
            }
            String::new()
        }
        (Value::Array(x), Value::Array(y)) => {
            for i in 0..x.len().max(y.len()) {
                match (x.get(i), y.get(i)) {
                    (Some(u), Some(v)) if u == v => {}
                    (Some(u), Some(v)) => return format!("[{i}]{}", difference(u, v)),
                    (u, v) => return format!("[{i}]: {} vs {}", show(u), show(v)),
                }
            }
            String::new()
        }
        _ => format!(": {a} vs {b}"),
    }
}

fn show(v: Option<&Value>) -> String {
    v.map_or("absent".into(), Value::to_string)
}

/// The server end of a run.
struct Rig {
    conn: Conn,
    retry_timeout: i64,
    server_url: String,
}

impl Rig {
    /// Sends a step; returns the status and `data`. Checks the envelope's echo.
    fn send(&mut self, step: &Step) -> (u16, Value) {
        let (status, envelope) = crate::call(&mut self.conn, &step.kind, step.data.clone(), Some(step.now));
        let head = json!({ "corrId": "c", "status": status, "version": VERSION });
        if envelope["head"] != head || envelope["kind"] != json!(step.kind) {
            return (0, json!(format!("bad envelope for HTTP status {status}: {envelope}")));
        }
        (status, envelope["data"].clone())
    }

    fn ok(&mut self, kind: &str) -> Value {
        let step = Step { kind: kind.into(), data: json!({}), now: START };
        let (status, data) = self.send(&step);
        assert_eq!(status, 200, "{kind} answered {data}");
        data
    }

    /// Resets and pauses the server; a fresh model.
    fn reset(&mut self) -> Model {
        self.ok("debug.reset");
        self.ok("debug.start");
        Model::new(self.retry_timeout, &self.server_url)
    }

    fn compare_snaps(&mut self, model: &Model, steps: usize) -> Option<Mismatch> {
        let (expected, actual) = (model.snap(), self.ok("debug.snap"));
        (expected != actual).then(|| {
            (format!("debug.snap after step {steps} differs: {}", difference(&expected, &actual)), expected, actual)
        })
    }

    /// Replays `steps` after a reset; the first mismatch, responses checked at every step and
    /// the snaps at the end.
    fn replay(&mut self, steps: &[Step]) -> Option<Mismatch> {
        let mut model = self.reset();
        for (i, step) in steps.iter().enumerate() {
            let expected = model.request(&step.kind, &step.data, step.now);
            let actual = self.send(step);
            if let Some(m) = differ(&steps[..=i], &expected, &actual) {
                return Some(m);
            }
        }
        self.compare_snaps(&model, steps.len())
    }

    /// Greedy chunk removal: the shortest prefix-subsequence of `history` that still fails.
    fn shrink(&mut self, seed: u64, history: Vec<Step>, first: Mismatch) -> Failure {
        let deadline = Instant::now() + SHRINK_BUDGET;
        let (mut steps, mut mismatch) = (history, first);
        if let Some(m) = self.replay(&steps) {
            mismatch = m;
            let mut chunk = steps.len() / 2;
            while chunk >= 1 && Instant::now() < deadline {
                let mut at = 0;
                while at < steps.len() && Instant::now() < deadline {
                    let mut candidate = steps.clone();
                    candidate.drain(at..(at + chunk).min(steps.len()));
                    match self.replay(&candidate) {
                        Some(m) => (steps, mismatch) = (candidate, m),
                        None => at += chunk,
                    }
                }
                chunk /= 2;
            }
        } else {
            mismatch.0 += " (did not fail again on replay: the failure depends on history before the last reset)";
        }
        let (what, expected, actual) = mismatch;
        Failure { seed, prefix: steps, expected, actual, what }
    }
}

/// splitmix64.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// A number in `0..n` (`n` > 0).
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn range(&mut self, lo: i64, hi: i64) -> i64 {
        lo + self.below((hi - lo) as u64 + 1) as i64
    }
    /// True with probability `percent`/100.
    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
    fn pick<T: Clone>(&mut self, items: &[T]) -> T {
        items[self.below(items.len() as u64) as usize].clone()
    }
}

/// The workload generator.
struct Gen {
    rng: Rng,
    now: i64,
    serial: u64,
    /// Addresses the server delivers to, and addresses it refuses.
    targets: &'static [&'static str],
    bad_addresses: &'static [&'static str],
}

impl Gen {
    fn step_at(&self, kind: &str, data: Value) -> Step {
        Step { kind: kind.into(), data, now: self.now }
    }

    fn reset(&mut self) -> Step {
        self.step_at("debug.reset", json!({}))
    }

    /// Advances the clock: ties, small steps, and now and then a jump past the deadlines.
    fn advance(&mut self) {
        let r = &mut self.rng;
        self.now += match r.below(100) {
            0..=29 => 0,
            30..=89 => r.range(1, 50),
            90..=98 => r.range(100, 3_000),
            _ => r.range(5_000, 130_000),
        };
    }

    fn step(&mut self, model: &Model) -> Step {
        self.advance();
        let (kind, mut data) = match self.live_task(model) {
            Some(id) if self.rng.chance(50) => self.task_step(model, id),
            _ => self.any_step(model),
        };
        if kind == "debug.reset" {
            return self.reset();
        }
        if self.rng.chance(6) {
            self.mutate(&mut data);
        }
        self.step_at(kind, data)
    }

    /// A task whose promise reads pending, if any.
    fn live_task(&mut self, model: &Model) -> Option<String> {
        let now = self.now;
        let live: Vec<&String> = (model.tasks.keys()).filter(|id| model.promises.get(*id).is_some_and(|p| !p.dead(now))).collect();
        (!live.is_empty()).then(|| self.rng.pick(&live).clone())
    }

    /// A step that moves a live task along, as a worker would.
    fn task_step(&mut self, model: &Model, id: String) -> (&'static str, Value) {
        let version = self.version(model, &id);
        match model.tasks[&id].state {
            TaskState::Pending => ("task.acquire", self.acquire_data(model, id)),
            TaskState::Acquired => match self.rng.below(100) {
                0..=29 => ("task.fence", self.fence_data(model, id)),
                30..=54 => self.suspend_step(model, id),
                55..=72 => ("task.fulfill", self.fulfill_data(model, id)),
                73..=79 => ("task.release", json!({ "id": id, "version": version })),
                80..=91 => ("task.heartbeat", self.heartbeat_data(model)),
                _ => ("task.halt", json!({ "id": id })),
            },
            TaskState::Suspended => {
                let awaited = model.promises.values().find(|p| p.callbacks.contains(&id)).map(|p| p.id.clone());
                match awaited {
                    Some(a) if self.rng.chance(85) => ("promise.settle", self.settle_fields(a)),
                    _ => ("task.halt", json!({ "id": id })),
                }
            }
            TaskState::Halted => ("task.continue", json!({ "id": id })),
            TaskState::Fulfilled => ("task.get", json!({ "id": id })),
        }
    }

    /// Any step, its subjects mostly drawn from the store.
    fn any_step(&mut self, model: &Model) -> (&'static str, Value) {
        let acquired = self.task_id(model, Some(TaskState::Acquired));
        match self.rng.below(112) {
            0..=13 => ("promise.create", self.create_data(model)),
            14..=19 => ("promise.get", json!({ "id": self.promise_id(model) })),
            20..=27 => ("promise.settle", self.settle_data(model)),
            28..=32 => ("promise.register_callback", self.callback_data(model)),
            33..=37 => ("promise.register_listener", self.listener_data(model)),
            38..=49 => ("task.create", self.task_create_data(model)),
            50..=52 => {
                let id = self.task_id(model, Some(TaskState::Pending));
                ("task.acquire", self.acquire_data(model, id))
            }
            53..=55 => self.suspend_step(model, acquired),
            56..=58 => ("task.fulfill", self.fulfill_data(model, acquired)),
            59..=61 => ("task.release", json!({ "id": acquired, "version": self.version(model, &acquired) })),
            62..=65 => ("task.halt", json!({ "id": self.task_id(model, None) })),
            66..=69 => ("task.continue", json!({ "id": self.task_id(model, Some(TaskState::Halted)) })),
            70..=74 => ("task.heartbeat", self.heartbeat_data(model)),
            75..=79 => ("task.fence", self.fence_data(model, acquired)),
            80..=89 => ("task.get", json!({ "id": self.task_id(model, None) })),
            90..=91 => ("schedule.create", self.schedule_data()),
            92 => ("schedule.get", json!({ "id": format!("s{}", self.rng.below(3)) })),
            93 => ("schedule.delete", json!({ "id": format!("s{}", self.rng.below(3)) })),
            94..=107 => ("debug.tick", self.tick_data()),
            108 => (self.rng.pick(&["promise.frobnicate", "task.nope", "debug.nope", "", "promise.search!"]), json!({})),
            109 if self.rng.chance(10) => ("debug.reset", json!({})),
            _ => ("promise.get", json!({ "id": self.promise_id(model) })),
        }
    }

    // ----- ids -----

    fn fresh(&mut self) -> u64 {
        self.serial += 1;
        self.serial
    }

    /// A new root id `o<N>.x<M>`.
    fn root(&mut self) -> String {
        let (origin, n) = (self.rng.below(4), self.fresh());
        format!("o{origin}.x{n}")
    }

    /// A new child of `parent`: `parent.k` or, with colons, `parent:k`.
    fn child(&mut self, parent: &str) -> String {
        let n = self.fresh();
        if self.rng.chance(50) {
            format!("{parent}.{n}")
        } else {
            format!("{}:{n}", parent.replace('.', ":"))
        }
    }

    /// An existing promise id (mostly), a new root, or a new child.
    fn promise_id(&mut self, model: &Model) -> String {
        let existing: Vec<&String> = model.promises.keys().collect();
        match self.rng.below(100) {
            _ if existing.is_empty() => self.root(),
            0..=64 => self.rng.pick(&existing).clone(),
            65..=79 => self.root(),
            80..=97 => {
                let parent = self.rng.pick(&existing).clone();
                self.child(&parent)
            }
            98 => String::from("o1.nul\u{0}"),
            _ => String::new(),
        }
    }

    /// An existing promise id satisfying `want` (mostly), else any promise id.
    fn promise_where(&mut self, model: &Model, want: impl Fn(&crate::model::Promise) -> bool) -> String {
        let fit: Vec<&String> = model.promises.values().filter(|p| want(p)).map(|p| &p.id).collect();
        if !fit.is_empty() && self.rng.chance(85) {
            self.rng.pick(&fit).clone()
        } else {
            self.promise_id(model)
        }
    }

    /// A task id, mostly of a task in `state` whose promise is alive.
    fn task_id(&mut self, model: &Model, state: Option<TaskState>) -> String {
        let alive = |id: &String| model.promises.get(id).is_some_and(|p| !p.dead(self.now));
        let fit: Vec<&String> = (model.tasks.values())
            .filter(|t| state.is_none_or(|s| t.state == s) && alive(&t.id))
            .map(|t| &t.id)
            .collect();
        let all: Vec<&String> = model.tasks.keys().collect();
        match self.rng.below(100) {
            0..=74 if !fit.is_empty() => self.rng.pick(&fit).clone(),
            0..=89 if !all.is_empty() => self.rng.pick(&all).clone(),
            _ => self.promise_id(model),
        }
    }

    /// A task's version: mostly its current one.
    fn version(&mut self, model: &Model, id: &str) -> i64 {
        let current = model.tasks.get(id).map_or(0, |t| t.version);
        match self.rng.below(100) {
            0..=84 => current,
            85..=94 => (current - 1).max(0),
            _ => current + 1,
        }
    }

    fn pid(&mut self) -> String {
        self.rng.pick(&PIDS).into()
    }

    // ----- request data -----

    fn timeout_at(&mut self) -> i64 {
        let r = &mut self.rng;
        self.now
            + match r.below(100) {
                0..=24 => r.range(1, 300),
                25..=49 => r.range(1_000, 10_000),
                50..=84 => r.range(100_000, 10_000_000),
                85..=94 => -r.range(0, 1_000),
                _ => 0,
            }
    }

    fn tags(&mut self) -> Value {
        let target = self.rng.pick(self.targets);
        let delay = self.now + self.rng.range(0, 2_000);
        let mut tags = match self.rng.below(100) {
            0..=19 => json!({}),
            20..=44 => json!({ "resonate:target": target }),
            45..=54 => json!({ "resonate:timer": "true" }),
            55..=61 => json!({ "resonate:external": "true" }),
            62..=69 => json!({ "resonate:scope": "global" }),
            70..=73 => json!({ "resonate:scope": "local" }),
            74..=79 => json!({ "resonate:timer": "true", "resonate:target": target }),
            80..=87 => json!({ "resonate:target": target, "resonate:delay": delay.to_string() }),
            88..=89 => json!({ "resonate:target": target, "resonate:delay": "soon" }),
            90..=91 => json!({ "resonate:delay": delay.to_string() }),
            92..=94 => json!({ "resonate:target": self.rng.pick(self.bad_addresses) }),
            _ => json!({ "resonate:timer": "yes", "resonate:external": "false" }),
        };
        if self.rng.chance(15) {
            tags["user"] = json!("v");
        }
        tags
    }

    fn value(&mut self) -> Value {
        match self.rng.below(5) {
            0 => json!({}),
            1 => json!({ "data": "eA==" }),
            2 => json!({ "headers": { "h": "1" }, "data": "eQ==" }),
            3 => json!({ "headers": {} }),
            _ => Value::Null,
        }
    }

    /// promise.create data: optional fields are sometimes left out.
    fn create_fields(&mut self, id: String) -> Value {
        let mut data = json!({ "id": id, "timeoutAt": self.timeout_at() });
        let param = self.value();
        if !param.is_null() {
            data["param"] = param;
        }
        if self.rng.chance(90) {
            data["tags"] = self.tags();
        }
        data
    }

    fn create_data(&mut self, model: &Model) -> Value {
        let id = self.promise_id(model);
        self.create_fields(id)
    }

    fn settle_fields(&mut self, id: String) -> Value {
        let state = match self.rng.below(100) {
            0..=44 => "resolved",
            45..=74 => "rejected",
            75..=94 => "rejected_canceled",
            95..=97 => "pending",
            _ => "rejected_timedout",
        };
        let mut data = json!({ "id": id, "state": state });
        let value = self.value();
        if !value.is_null() {
            data["value"] = value;
        }
        data
    }

    /// Settles a pending promise, often one that has callbacks or listeners.
    fn settle_data(&mut self, model: &Model) -> Value {
        let busy = self.rng.chance(40);
        let id = self.promise_where(model, |p| p.pending() && (!busy || !p.callbacks.is_empty() || !p.listeners.is_empty()));
        self.settle_fields(id)
    }

    fn callback_data(&mut self, model: &Model) -> Value {
        let awaited = self.promise_where(model, |p| p.external());
        let awaiter = self.promise_where(model, |p| p.targeted() && p.pending());
        json!({ "awaited": awaited, "awaiter": awaiter })
    }

    fn listener_data(&mut self, model: &Model) -> Value {
        let awaited = self.promise_where(model, |p| p.external());
        let address = if self.rng.chance(85) { self.rng.pick(self.targets) } else { self.rng.pick(self.bad_addresses) };
        json!({ "awaited": awaited, "address": address })
    }

    /// A nested envelope `{kind, head?, data}`.
    fn action(&mut self, kind: &str, data: Value) -> Value {
        match self.rng.below(3) {
            0 => json!({ "kind": kind, "data": data }),
            1 => json!({ "kind": kind, "head": {}, "data": data }),
            _ => json!({ "kind": kind, "head": { "corrId": "c", "version": VERSION }, "data": data }),
        }
    }

    fn ttl(&mut self) -> i64 {
        let r = &mut self.rng;
        match r.below(20) {
            0..=3 => r.range(20, 500),
            4..=18 => r.range(30_000, 300_000),
            _ => -r.range(0, 3),
        }
    }

    fn task_create_data(&mut self, model: &Model) -> Value {
        let now = self.now;
        let id = match self.rng.below(100) {
            0..=49 => self.root(),
            50..=84 => self.promise_where(model, |p| p.targeted() && (!p.dead(now) || p.id.len() % 4 == 0)),
            _ => self.promise_id(model),
        };
        let mut create = self.create_fields(id);
        if self.rng.chance(70) {
            create["timeoutAt"] = json!(self.now + self.rng.range(1_000_000, 10_000_000));
        }
        if self.rng.chance(85) {
            create["tags"] = json!({ "resonate:target": self.rng.pick(self.targets) });
        }
        let (pid, ttl) = (self.pid(), self.ttl());
        json!({ "pid": pid, "ttl": ttl, "action": self.action("promise.create", create) })
    }

    fn acquire_data(&mut self, model: &Model, id: String) -> Value {
        let (version, pid, ttl) = (self.version(model, &id), self.pid(), self.ttl());
        json!({ "id": id, "version": version, "pid": pid, "ttl": ttl })
    }

    /// 1–3 distinct awaited promises, mostly live external ones of the same origin; sometimes a
    /// missing one, the task's own promise, or a duplicate.
    fn suspend_step(&mut self, model: &Model, id: String) -> (&'static str, Value) {
        let origin = id.split(['.', ':']).next().unwrap_or("").to_string();
        let now = self.now;
        let candidates = |children: bool| -> Vec<String> {
            (model.promises.values())
                .filter(|p| p.external() && p.id != id && p.id.starts_with(&origin) && !p.dead(now))
                .filter(|p| !children || Self::descends(&p.id, &id))
                .map(|p| p.id.clone())
                .collect()
        };
        let mut pool = candidates(true);
        if pool.is_empty() || self.rng.chance(30) {
            pool = candidates(false);
        }
        if pool.is_empty() && self.rng.chance(80) {
            // Nothing to await yet: a worker would create a child first.
            return ("task.fence", self.fence_data(model, id));
        }
        if self.rng.chance(10) {
            pool.extend(model.promises.values().filter(|p| p.dead(now)).map(|p| p.id.clone()).take(3));
        }
        let mut awaited: Vec<String> = Vec::new();
        let mut n = self.rng.range(1, 3) as usize;
        if !pool.is_empty() && self.rng.chance(90) {
            n = n.min(pool.len());
        }
        for _ in 0..n {
            let a = match self.rng.below(100) {
                _ if pool.is_empty() => self.child(&id),
                0..=89 => pool.swap_remove(self.rng.below(pool.len() as u64) as usize),
                90..=95 => self.child(&id),
                96..=97 => id.clone(),
                _ => awaited.last().cloned().unwrap_or_else(|| self.promise_id(model)),
            };
            awaited.push(a);
        }
        if self.rng.chance(2) {
            awaited.clear();
        }
        let actions: Vec<Value> = (awaited.into_iter())
            .map(|a| {
                let awaiter = if self.rng.chance(95) { id.clone() } else { String::from("other") };
                self.action("promise.register_callback", json!({ "awaited": a, "awaiter": awaiter }))
            })
            .collect();
        ("task.suspend", json!({ "id": id, "version": self.version(model, &id), "actions": actions }))
    }

    fn fulfill_data(&mut self, model: &Model, id: String) -> Value {
        let settle = self.settle_fields(id.clone());
        json!({ "id": id, "version": self.version(model, &id), "action": self.action("promise.settle", settle) })
    }

    /// Heartbeats from a process, mostly for tasks it holds.
    fn heartbeat_data(&mut self, model: &Model) -> Value {
        let holder = self.task_id(model, Some(TaskState::Acquired));
        let pid = match model.tasks.get(&holder).and_then(|t| t.pid.clone()) {
            Some(pid) if self.rng.chance(80) => pid,
            _ => self.pid(),
        };
        let mut refs = Vec::new();
        for _ in 0..self.rng.below(4) {
            let held: Vec<&String> = model.tasks.values().filter(|t| t.pid.as_ref() == Some(&pid)).map(|t| &t.id).collect();
            let id = if !held.is_empty() && self.rng.chance(80) { self.rng.pick(&held).clone() } else { self.task_id(model, None) };
            refs.push(json!({ "id": id, "version": self.version(model, &id) }));
        }
        if refs.is_empty() && self.rng.chance(50) {
            json!({ "pid": pid })
        } else {
            json!({ "pid": pid, "tasks": refs })
        }
    }

    /// Whether `id` names a child (or deeper descendant) of `parent`, in either id style.
    fn descends(id: &str, parent: &str) -> bool {
        let colons = parent.replace('.', ":");
        [format!("{parent}."), format!("{parent}:"), format!("{colons}:")].iter().any(|p| id.starts_with(p.as_str()))
    }

    /// A fenced create of a child (mostly new and external) or settle of a live child; sometimes
    /// the task's own promise, or a kind fence refuses.
    fn fence_data(&mut self, model: &Model, id: String) -> Value {
        let now = self.now;
        let action = match self.rng.below(100) {
            0..=57 => {
                let child = match self.rng.below(100) {
                    0..=79 => self.child(&id),
                    80..=96 => self.promise_id(model),
                    _ => id.clone(),
                };
                let mut create = self.create_fields(child);
                if self.rng.chance(60) {
                    let tags = [("resonate:target", "poll://any@g1"), ("resonate:timer", "true"), ("resonate:external", "true"), ("resonate:scope", "global")];
                    let (tag, value) = self.rng.pick(&tags);
                    create["tags"] = json!({ tag: value });
                    create["timeoutAt"] = json!(now + self.rng.range(500, 200_000));
                }
                self.action("promise.create", create)
            }
            58..=96 => {
                let target = match self.rng.below(100) {
                    0..=94 => self.promise_where(model, |p| !p.dead(now) && Self::descends(&p.id, &id)),
                    _ => id.clone(),
                };
                let settle = self.settle_fields(target);
                self.action("promise.settle", settle)
            }
            _ => self.action("promise.get", json!({ "id": id })),
        };
        json!({ "id": id, "version": self.version(model, &id), "action": action })
    }

    fn schedule_data(&mut self) -> Value {
        let cron = if self.rng.chance(85) { self.rng.pick(&CRONS[..3]) } else { self.rng.pick(&CRONS[3..]) };
        let template = self.rng.pick(&["{{.id}}.{{.timestamp}}", "o1.x{{.timestamp}}", "{{.id}}"]);
        let timeout = self.rng.pick(&[0, 1_000, 120_000, 10_000_000]);
        let tags = match self.rng.below(4) {
            0 => json!({}),
            1 => json!({ "resonate:target": self.rng.pick(self.targets) }),
            2 => json!({ "resonate:timer": "true" }),
            _ => json!({ "resonate:external": "true", "k": "v" }),
        };
        let id = format!("s{}", self.rng.below(3));
        json!({ "id": id, "cron": cron, "promiseId": template, "promiseTimeout": timeout, "promiseParam": {}, "promiseTags": tags })
    }

    fn tick_data(&mut self) -> Value {
        match self.rng.below(40) {
            0 => json!({ "time": self.now + 1 }),
            1 => json!({}),
            2 => json!({ "time": "now" }),
            _ => json!({ "time": self.now }),
        }
    }

    /// Bad input: a field removed, emptied, negated or of the wrong type, or data not an object.
    fn mutate(&mut self, data: &mut Value) {
        let Some(map) = data.as_object_mut() else { return };
        let keys: Vec<String> = map.keys().cloned().collect();
        if keys.is_empty() || self.rng.chance(5) {
            *data = self.rng.pick(&[json!([]), json!("x"), json!(null)]);
            return;
        }
        let key = self.rng.pick(&keys);
        match self.rng.below(5) {
            4 => {
                map.insert("extra".into(), json!({ "ignored": true }));
            }
            0 => {
                map.remove(&key);
            }
            1 => {
                let wrong = self.rng.pick(&[json!(5), json!("x"), json!(null), json!([]), json!({}), json!(1.5), json!(true)]);
                map.insert(key, wrong);
            }
            2 => {
                let v = &map[&key];
                let empty = if v.is_string() { json!("") } else if v.is_i64() { json!(-1) } else { json!({}) };
                map.insert(key, empty);
            }
            _ => {
                // Nested: the action's data loses a field.
                if let Some(inner) = map.get_mut("action").and_then(|a| a["data"].as_object_mut()) {
                    let inner_keys: Vec<String> = inner.keys().cloned().collect();
                    if !inner_keys.is_empty() {
                        inner.remove(&self.rng.pick(&inner_keys));
                    }
                } else {
                    map.insert(key, json!(-7));
                }
            }
        }
    }
}
