//! Linearizability checking of concurrent histories against a sequential model.
//!
//! [`check`] is Wing & Gong's search with Lowe's just-in-time refinement: an event may be placed
//! next only if no unplaced event returned before it was called, and every (placed set, model
//! state) configuration is explored at most once. For the protocol, [`Model`] is the sequential
//! object, [`partition`] splits a history by origin (the id's prefix before its first `.`), and
//! [`record`] produces histories from concurrent clients of a live server.

use crate::client::IO_TIMEOUT;
use crate::model::Model;
use crate::transport::{Conn, Endpoint};
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Mutex;
use std::time::Instant;

/// A deterministic sequential object: applying an operation changes the state and returns a result.
pub trait Sequential: Clone + PartialEq {
    type Op: fmt::Debug;
    type Ret: PartialEq + fmt::Debug;
    fn apply(&mut self, op: &Self::Op) -> Self::Ret;
}

/// One completed operation of a concurrent history.
#[derive(Clone, Debug)]
pub struct Event<Op, Ret> {
    /// Which client issued it; a client's events never overlap.
    pub client: usize,
    /// When it was called and when it returned (ns since a common start; `call < ret`).
    pub call: u64,
    pub ret: u64,
    pub op: Op,
    pub result: Ret,
}

/// How many model steps [`check`] may take before it gives up.
pub const BUDGET: u64 = 2_000_000;

/// How many events of the longest linearizable prefix an explanation shows.
const SHOWN: usize = 30;

/// Why a history was not shown linearizable.
#[derive(Debug)]
pub enum Failure {
    /// The whole search space was explored: no order works.
    NotLinearizable(String),
    /// The step budget ran out first.
    Inconclusive(String),
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self {
            Failure::NotLinearizable(why) => write!(f, "not linearizable: {why}"),
            Failure::Inconclusive(why) => write!(f, "inconclusive: {why}"),
        }
    }
}

/// Searches for a sequential order consistent with real time (an op that returned before another
/// was called comes first) in which the model, applying ops one by one from `init`, returns exactly
/// each recorded result. `Ok(order)` (indices into `events`) or `Err(explanation)`: the longest
/// linearizable prefix found and the events that could not be placed after it. The explanation
/// starts with "not linearizable" or, when the [`BUDGET`] ran out, "inconclusive".
pub fn check<M: Sequential>(
    init: &M,
    events: &[Event<M::Op, M::Ret>],
) -> Result<Vec<usize>, String> {
    search(init, events, BUDGET).map_err(|failure| failure.to_string())
}

/// [`check`] with an explicit budget of model steps and a typed failure.
pub fn search<M: Sequential>(
    init: &M,
    events: &[Event<M::Op, M::Ret>],
    budget: u64,
) -> Result<Vec<usize>, Failure> {
    let mut by_call: Vec<usize> = (0..events.len()).collect();
    by_call.sort_by_key(|&i| events[i].call);
    let mut search = Search {
        events,
        by_call,
        seen: HashMap::new(),
        steps: 0,
        budget,
        order: Vec::new(),
        best: Vec::new(),
    };
    match search.run(init) {
        Ok(true) => Ok(search.order),
        Ok(false) => Err(Failure::NotLinearizable(search.explain(init))),
        Err(Exhausted) => Err(Failure::Inconclusive(format!(
            "{budget} model steps were not enough; {}",
            search.explain(init)
        ))),
    }
}

/// The step budget ran out.
struct Exhausted;

struct Search<'a, M: Sequential> {
    events: &'a [Event<M::Op, M::Ret>],
    /// Event indices by call instant: the order candidates are tried in.
    by_call: Vec<usize>,
    /// The model states already explored for each set of placed events.
    seen: HashMap<Vec<u64>, Vec<M>>,
    steps: u64,
    budget: u64,
    /// The events placed so far, in order.
    order: Vec<usize>,
    /// The longest `order` reached.
    best: Vec<usize>,
}

impl<M: Sequential> Search<'_, M> {
    /// Extends `order` to all events, depth first with an explicit stack (histories can be long).
    fn run(&mut self, init: &M) -> Result<bool, Exhausted> {
        let mut done = vec![0u64; self.events.len().div_ceil(64)];
        // A frame per placed event, and one for the start: the model state after the events
        // placed so far, and the position in `by_call` of the next candidate to try after them.
        let mut stack = vec![(init.clone(), 0)];
        while let Some((state, from)) = stack.last_mut() {
            if self.order.len() > self.best.len() {
                self.best.clone_from(&self.order);
            }
            if self.order.len() == self.events.len() {
                return Ok(true);
            }
            match self.advance(state, from, &mut done)? {
                Some(next) => stack.push((next, 0)),
                None => {
                    stack.pop();
                    if let Some(i) = self.order.pop() {
                        flip(&mut done, i);
                    }
                }
            }
        }
        Ok(false)
    }

    /// Tries the candidates from position `from` of `by_call` on, and places the first whose
    /// recorded result the model gives in a configuration not explored yet: marks it in `done`,
    /// appends it to `order` and returns the model state after it.
    fn advance(
        &mut self,
        state: &M,
        from: &mut usize,
        done: &mut [u64],
    ) -> Result<Option<M>, Exhausted> {
        let horizon = self.horizon(done);
        while let Some(&i) = self.by_call.get(*from) {
            *from += 1;
            let event = &self.events[i];
            if event.call > horizon {
                break;
            }
            if is_set(done, i) {
                continue;
            }
            self.steps += 1;
            if self.steps > self.budget {
                return Err(Exhausted);
            }
            let mut next = state.clone();
            if next.apply(&event.op) != event.result {
                continue;
            }
            flip(done, i);
            let states = self.seen.entry(done.to_vec()).or_default();
            if !states.contains(&next) {
                states.push(next.clone());
                self.order.push(i);
                return Ok(Some(next));
            }
            flip(done, i);
        }
        Ok(None)
    }

    /// The earliest return among unplaced events: only events called by then may come next.
    fn horizon(&self, done: &[u64]) -> u64 {
        let unplaced = (0..self.events.len()).filter(|&i| !is_set(done, i));
        unplaced
            .map(|i| self.events[i].ret)
            .min()
            .unwrap_or(u64::MAX)
    }

    /// The longest linearizable prefix found (its last [`SHOWN`] events) and, after it, what the
    /// model answers to each event that could have come next.
    fn explain(&self, init: &M) -> String {
        let (n, placed) = (self.events.len(), self.best.len());
        let hidden = placed.saturating_sub(SHOWN);
        let mut text = format!(
            "at most {placed} of {n} events linearize; the longest linearizable prefix found"
        );
        text += &if hidden > 0 {
            format!(" (its first {hidden} events not shown):")
        } else {
            ":".into()
        };
        let mut state = init.clone();
        let mut done = vec![0u64; n.div_ceil(64)];
        for (k, &i) in self.best.iter().enumerate() {
            state.apply(&self.events[i].op);
            flip(&mut done, i);
            if k >= hidden {
                text += &format!("\n  {}", self.describe(i));
            }
        }
        text += "\nafter it, none of these can come next:";
        let horizon = self.horizon(&done);
        let unplaced = self.by_call.iter().copied().filter(|&i| !is_set(&done, i));
        let (next, later): (Vec<usize>, Vec<usize>) =
            unplaced.partition(|&i| self.events[i].call <= horizon);
        for i in next {
            let answer = state.clone().apply(&self.events[i].op);
            text += &format!(
                "\n  {}\n    but the model answers {answer:?}",
                self.describe(i)
            );
        }
        if !later.is_empty() {
            text += &format!("\nand {} events called later: {later:?}", later.len());
        }
        text
    }

    fn describe(&self, i: usize) -> String {
        let e = &self.events[i];
        let (call, ret) = (e.call / 1000, e.ret / 1000);
        format!(
            "#{i} client {} [{call}..{ret} µs] {:?} => {:?}",
            e.client, e.op, e.result
        )
    }
}

fn is_set(bits: &[u64], i: usize) -> bool {
    bits[i / 64] & (1 << (i % 64)) != 0
}

fn flip(bits: &mut [u64], i: usize) {
    bits[i / 64] ^= 1 << (i % 64);
}

/// One protocol request as the model replays it: its kind, its `data` and the `now` it was stamped with.
#[derive(Clone, PartialEq)]
pub struct ProtocolOp {
    pub kind: String,
    pub data: Value,
    pub now: i64,
}

impl fmt::Debug for ProtocolOp {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "{} {} @{}", self.kind, self.data, self.now)
    }
}

/// A history of protocol requests with their (status, response data), as [`outcome`] keeps them.
pub type History = Vec<Event<ProtocolOp, (u16, Value)>>;

/// The part of a response a checker judges: the status, and the data only on 200 and 300 (the
/// message of a refusal is not judged). A fenced action's inner envelope keeps its kind, status
/// and data likewise; its corrId and version are not judged.
pub fn outcome(kind: &str, status: u16, mut data: Value) -> (u16, Value) {
    if !matches!(status, 200 | 300) {
        return (status, Value::Null);
    }
    if kind == "task.fence" {
        let action = &mut data["action"];
        let inner = action["head"]["status"].clone();
        if !matches!(inner.as_u64(), Some(200 | 300)) {
            action["data"] = Value::Null;
        }
        action["head"] = serde_json::json!({ "status": inner });
    }
    (status, data)
}

/// The protocol's sequential object: the reference model answers each op as [`outcome`] keeps it.
impl Sequential for Model {
    type Op = ProtocolOp;
    type Ret = (u16, Value);
    fn apply(&mut self, op: &ProtocolOp) -> (u16, Value) {
        let (status, data) = self.request(&op.kind, &op.data, op.now);
        outcome(&op.kind, status, data)
    }
}

/// Checks each origin's part of `history` ([`partition`]) linearizable from a copy of `init`.
pub fn check_history(
    init: &Model,
    history: &[Event<ProtocolOp, (u16, Value)>],
) -> Result<(), String> {
    for (origin, events) in partition(history)? {
        check(init, &events)
            .map_err(|why| format!("origin {origin:?} ({} events): {why}", events.len()))?;
    }
    Ok(())
}

/// The ids a request names: the first decides its partition, and all must share its origin.
fn ids(op: &ProtocolOp) -> Vec<&str> {
    let d = &op.data;
    let named: Vec<&Value> = match op.kind.as_str() {
        "task.create" => vec![&d["action"]["data"]["id"]],
        "task.fence" => vec![&d["id"], &d["action"]["data"]["id"]],
        "promise.register_callback" => vec![&d["awaited"], &d["awaiter"]],
        "promise.register_listener" => vec![&d["awaited"]],
        "task.suspend" => {
            let actions = d["actions"].as_array().into_iter().flatten();
            std::iter::once(&d["id"])
                .chain(actions.map(|a| &a["data"]["awaited"]))
                .collect()
        }
        "task.heartbeat" => d["tasks"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|t| &t["id"])
            .collect(),
        _ => vec![&d["id"]],
    };
    named.into_iter().filter_map(Value::as_str).collect()
}

/// An id's origin: its prefix before the first `.`.
fn origin(id: &str) -> &str {
    id.split('.').next().unwrap_or(id)
}

/// Splits a history into its origins' sub-histories (an origin is the id's prefix before its
/// first `.`, by resonate's convention), each keeping the history's order. An op that names no
/// id (`debug.tick`, for one) belongs to every partition, so its answer must not depend on other
/// origins (`*.search` and `debug.snap` cannot be checked this way). Refuses a history in which one op names ids of two origins: partitions checked apart
/// must not interact.
///
/// A partition that is not linearizable proves the history is not. The converse holds for ops
/// of one origin; an op copied into several partitions may be placed at different points in
/// each, so a history that mis-orders only such ops can pass.
pub fn partition<R: Clone>(
    events: &[Event<ProtocolOp, R>],
) -> Result<BTreeMap<String, Vec<Event<ProtocolOp, R>>>, String> {
    let mut keys = Vec::with_capacity(events.len());
    for (i, event) in events.iter().enumerate() {
        let ids = ids(&event.op);
        let key = ids.first().map(|id| origin(id));
        if let Some(other) = ids.iter().find(|id| Some(origin(id)) != key) {
            return Err(format!(
                "event #{i} {:?} links origins {:?} and {:?}; partitions cannot be checked apart",
                event.op,
                key.unwrap_or_default(),
                origin(other)
            ));
        }
        keys.push(key);
    }
    let mut parts: BTreeMap<String, Vec<Event<ProtocolOp, R>>> = BTreeMap::new();
    for key in keys.iter().flatten() {
        parts.entry(key.to_string()).or_default();
    }
    for (event, key) in events.iter().zip(&keys) {
        match key {
            Some(key) => parts.get_mut(*key).expect("made above").push(event.clone()),
            None => parts.values_mut().for_each(|part| part.push(event.clone())),
        }
    }
    Ok(parts)
}

/// Records a history: shares a logical clock and a start instant among sessions.
struct Recorder {
    start: Instant,
    clock: AtomicI64,
    events: Mutex<History>,
}

/// One client of a recording: its own keep-alive connection and random numbers.
pub struct Session<'a> {
    /// The client's number, 0-based.
    pub id: usize,
    conn: Conn,
    recorder: &'a Recorder,
    seed: u64,
}

impl Session<'_> {
    /// A pseudo-random number below `n` (xorshift, seeded by the session number).
    pub fn random(&mut self, n: u64) -> u64 {
        self.seed ^= self.seed << 13;
        self.seed ^= self.seed >> 7;
        self.seed ^= self.seed << 17;
        self.seed % n
    }

    /// Sends one request and records it; returns its [`outcome`].
    pub fn call(&mut self, kind: &str, data: Value) -> (u16, Value) {
        self.call_with(kind, |_| data)
    }

    /// Advances the shared clock by 1 to 4 ms and sends `kind` with the data `data(now)`,
    /// stamped with that `now`; records the op, the call and return instants and the outcome.
    pub fn call_with(&mut self, kind: &str, data: impl FnOnce(i64) -> Value) -> (u16, Value) {
        let step = 1 + self.random(4) as i64;
        let now = self.recorder.clock.fetch_add(step, Ordering::SeqCst) + step;
        let data = data(now);
        let call = self.recorder.start.elapsed().as_nanos() as u64;
        let (status, envelope) = crate::call(&mut self.conn, kind, data.clone(), Some(now));
        let ret = self.recorder.start.elapsed().as_nanos() as u64;
        let result = outcome(kind, status, envelope["data"].clone());
        let op = ProtocolOp {
            kind: kind.to_owned(),
            data,
            now,
        };
        let event = Event {
            client: self.id,
            call,
            ret,
            op,
            result: result.clone(),
        };
        self.recorder
            .events
            .lock()
            .expect("no recording thread panicked")
            .push(event);
        result
    }
}

/// Runs `work` on `clients` threads at once, each with its own [`Session`] on the server at
/// `endpoint`, the shared clock starting at `now`; returns the history ordered by call instant.
pub fn record(
    endpoint: &Endpoint,
    clients: usize,
    now: i64,
    work: impl Fn(&mut Session) + Sync,
) -> History {
    let recorder = Recorder {
        start: Instant::now(),
        clock: AtomicI64::new(now),
        events: Mutex::new(Vec::new()),
    };
    std::thread::scope(|scope| {
        for id in 0..clients {
            let (recorder, work) = (&recorder, &work);
            scope.spawn(move || {
                let seed =
                    0x9E37_79B9_7F4A_7C15 ^ (id as u64 + 1).wrapping_mul(0xBF58_476D_1CE4_E5B9);
                work(&mut Session {
                    id,
                    conn: endpoint.conn(IO_TIMEOUT),
                    recorder,
                    seed,
                })
            });
        }
    });
    let mut history = recorder
        .events
        .into_inner()
        .expect("no recording thread panicked");
    history.sort_by_key(|e| e.call);
    history
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// A register of one integer: writes answer nothing, reads the value.
    #[derive(Clone, Debug, PartialEq)]
    struct Register(i64);

    #[derive(Debug)]
    enum RegOp {
        Write(i64),
        Read,
    }

    impl Sequential for Register {
        type Op = RegOp;
        type Ret = Option<i64>;
        fn apply(&mut self, op: &RegOp) -> Option<i64> {
            match op {
                RegOp::Write(v) => {
                    self.0 = *v;
                    None
                }
                RegOp::Read => Some(self.0),
            }
        }
    }

    fn ev(
        client: usize,
        call: u64,
        ret: u64,
        op: RegOp,
        result: Option<i64>,
    ) -> Event<RegOp, Option<i64>> {
        Event {
            client,
            call,
            ret,
            op,
            result,
        }
    }

    #[test]
    fn overlapping_ops_may_take_effect_in_either_order() {
        let events = [
            ev(0, 0, 10, RegOp::Write(1), None),
            ev(1, 1, 5, RegOp::Read, Some(1)),
            ev(2, 2, 6, RegOp::Read, Some(0)),
            ev(1, 11, 12, RegOp::Read, Some(1)),
        ];
        assert_eq!(check(&Register(0), &events), Ok(vec![2, 0, 1, 3]));
        assert_eq!(check(&Register(0), &[]), Ok(vec![]));
    }

    #[test]
    fn real_time_order_is_respected() {
        // The read returned the written value before the write was called.
        let events = [
            ev(0, 0, 5, RegOp::Read, Some(1)),
            ev(1, 10, 20, RegOp::Write(1), None),
        ];
        let why = check(&Register(0), &events).unwrap_err();
        assert!(why.starts_with("not linearizable: at most 0 of 2"), "{why}");
        assert!(
            why.contains(
                "#0 client 0 [0..0 µs] Read => Some(1)\n    but the model answers Some(0)"
            ),
            "{why}"
        );
        // A stale read after the write returned.
        let events = [
            ev(0, 0, 5, RegOp::Write(1), None),
            ev(1, 10, 20, RegOp::Read, Some(0)),
        ];
        let why = check(&Register(0), &events).unwrap_err();
        assert!(why.starts_with("not linearizable: at most 1 of 2"), "{why}");
    }

    #[test]
    fn memoization_tames_many_overlapping_ops_and_the_budget_is_reported() {
        // Twelve overlapping identical writes and a read nothing can explain: 12! orders, but
        // only 2^12 sets of placed writes with one state each.
        let mut events: Vec<_> = (0..12)
            .map(|c| ev(c, c as u64, 100, RegOp::Write(1), None))
            .collect();
        events.push(ev(12, 50, 60, RegOp::Read, Some(2)));
        let why = check(&Register(0), &events).unwrap_err();
        assert!(
            why.starts_with("not linearizable: at most 12 of 13"),
            "{why}"
        );
        match search(&Register(0), &events, 100) {
            Err(Failure::Inconclusive(why)) => assert!(why.starts_with("100 model steps"), "{why}"),
            other => panic!("{other:?}"),
        }
    }

    fn op(kind: &str, data: Value) -> Event<ProtocolOp, ()> {
        let op = ProtocolOp {
            kind: kind.to_owned(),
            data,
            now: 0,
        };
        Event {
            client: 0,
            call: 0,
            ret: 1,
            op,
            result: (),
        }
    }

    #[test]
    fn partitions_follow_the_id_prefix_and_share_ops_without_ids() {
        let events = [
            op("promise.create", json!({ "id": "a.1" })),
            op(
                "task.create",
                json!({ "action": { "data": { "id": "b" } } }),
            ),
            op("debug.tick", json!({ "time": 5 })),
            op(
                "task.fence",
                json!({ "id": "a", "action": { "data": { "id": "a.2" } } }),
            ),
            op(
                "task.heartbeat",
                json!({ "pid": "p", "tasks": [{ "id": "b.x" }, { "id": "b.y" }] }),
            ),
        ];
        let parts = partition(&events).unwrap();
        let kinds = |key: &str| {
            parts[key]
                .iter()
                .map(|e| e.op.kind.as_str())
                .collect::<Vec<_>>()
        };
        assert_eq!(parts.len(), 2);
        assert_eq!(kinds("a"), ["promise.create", "debug.tick", "task.fence"]);
        assert_eq!(kinds("b"), ["task.create", "debug.tick", "task.heartbeat"]);
    }

    #[test]
    fn an_op_linking_two_origins_is_refused() {
        let suspend = json!({ "id": "a", "actions": [{ "data": { "awaited": "a.1" } }, { "data": { "awaited": "b.1" } }] });
        let linking = [
            op("task.suspend", suspend),
            op(
                "promise.register_callback",
                json!({ "awaited": "a.1", "awaiter": "b" }),
            ),
            op(
                "task.fence",
                json!({ "id": "a", "action": { "data": { "id": "b.1" } } }),
            ),
            op(
                "task.heartbeat",
                json!({ "pid": "p", "tasks": [{ "id": "a" }, { "id": "b" }] }),
            ),
        ];
        for event in linking {
            let why = partition(&[event]).unwrap_err();
            assert!(why.contains(r#"links origins "a" and "b""#), "{why}");
        }
    }

    #[test]
    fn outcomes_drop_refusal_messages_and_inner_envelope_heads() {
        assert_eq!(
            outcome("promise.get", 404, json!("not found")),
            (404, Value::Null)
        );
        let fenced = json!({ "action": { "kind": "promise.settle", "head": { "corrId": "c", "status": 404, "version": "v" }, "data": "not found" }, "preload": [] });
        let kept = json!({ "action": { "kind": "promise.settle", "head": { "status": 404 }, "data": null }, "preload": [] });
        assert_eq!(outcome("task.fence", 200, fenced), (200, kept));
    }
}
