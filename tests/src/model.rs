//! A reference model of the Resonate protocol as the generated servers implement it, written from
//! `spec/*.yaml` and `spec/README.md` ("Reading the store" to "Internal rules"): one request at a
//! time, with the materialised read discipline (a read that finds a projected timeout persists it, with its drains), coupled
//! settlement, eager drains and dispatch, and the internal rules run by `debug.tick`.
//!
//! Where the spec leaves a choice open, the model takes the one the sqlite-http server showed:
//! * which promises a request reads (and so materialises) before a guard refuses: the request's
//!   subject in guard order; every task kind reads the promise of its id even when there is no
//!   task; task.suspend reads its own promise and every awaited one before judging the task;
//!   task.heartbeat reads the promise of every ref; R4 reads (materialises) the awaiter;
//! * nested actions: task.create and task.fulfill run the nested kind's field checks,
//!   task.suspend does not (an empty awaited id is just not found);
//! * debug.tick order in each pass: R1 by (timeoutAt, id); then task deadlines by (deadline, id),
//!   an expired lease (R5) dispatched at once; then due schedules by (nextRunAt, creation order),
//!   each running its occurrences in order; the eager R6 of a schedule's promise is judged at the
//!   tick's time.
//!
//! The `*.search` kinds are not modelled (unchecked protocol): they answer 501.

use serde::{de::DeserializeOwned, Deserialize, Serialize};
use serde_json::{json, Value};
use std::collections::BTreeMap;

const VERSION: &str = "2026-04-01";
const TARGET: &str = "resonate:target";
const TIMER: &str = "resonate:timer";
const DELAY: &str = "resonate:delay";
/// Occurrences one firing of rule R7 creates at most (`rules.yaml` schedule_batch).
const SCHEDULE_BATCH: usize = 100;
const MINUTE: i64 = 60_000;

type Tags = BTreeMap<String, String>;
/// A refusal: the status and the message.
type Refusal = (u16, String);
/// A handler's answer: the status (200 or 300) and `data`, or a refusal.
type Answer = Result<(u16, Value), Refusal>;

/// A promise's param or value (`records.yaml` value); named `Value` as in the server's decode
/// errors ("expected struct Value").
mod record {
    use super::{Deserialize, Serialize, Tags};
    #[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
    pub struct Value {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        headers: Option<Tags>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        data: Option<String>,
    }
}
pub use record::Value as Val;

#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Promise {
    pub id: String,
    pub state: &'static str,
    pub param: Val,
    pub value: Val,
    pub tags: Tags,
    pub timeout_at: i64,
    pub created_at: i64,
    pub settled_at: Option<i64>,
    /// Awaiter ids to resume on settlement, in insertion order.
    pub callbacks: Vec<String>,
    /// Addresses to notify on settlement, in insertion order.
    pub listeners: Vec<String>,
}

impl Promise {
    pub fn pending(&self) -> bool {
        self.state == "pending"
    }
    /// Fact P: whether the promise reads settled at `now`.
    pub fn dead(&self, now: i64) -> bool {
        !self.pending() || self.timeout_at <= now
    }
    pub fn timer(&self) -> bool {
        self.tags.get(TIMER).is_some_and(|t| t == "true")
    }
    pub fn targeted(&self) -> bool {
        self.tags.contains_key(TARGET)
    }
    /// External promises may hold callbacks and listeners and are armed (checklist C1).
    pub fn external(&self) -> bool {
        let tag = |k: &str, v: &str| self.tags.get(k).is_some_and(|t| t == v);
        self.targeted() || self.timer() || tag("resonate:external", "true") || tag("resonate:scope", "global")
    }
    fn json(&self) -> Value {
        let mut p = json!({
            "id": self.id, "state": self.state, "param": self.param, "value": self.value,
            "tags": self.tags, "timeoutAt": self.timeout_at, "createdAt": self.created_at,
        });
        if let Some(at) = self.settled_at {
            p["settledAt"] = json!(at);
        }
        p
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum TaskState {
    Pending,
    Acquired,
    Suspended,
    Halted,
    Fulfilled,
}

#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Task {
    pub id: String,
    pub state: TaskState,
    pub version: i64,
    pub pid: Option<String>,
    pub ttl: Option<i64>,
    pub expires_at: Option<i64>,
    pub retry_at: Option<i64>,
    pub resumes: Vec<String>,
}

impl Task {
    fn new(id: &str, state: TaskState, retry_at: Option<i64>) -> Task {
        let (id, version, resumes) = (id.to_string(), 0, Vec::new());
        Task { id, state, version, pid: None, ttl: None, expires_at: None, retry_at, resumes }
    }
    /// Moves to `state` without a lease or a retry deadline.
    fn park(&mut self, state: TaskState) {
        (self.state, self.pid, self.ttl, self.expires_at, self.retry_at) = (state, None, None, None, None);
    }
    fn json(&self) -> Value {
        let state = format!("{:?}", self.state).to_lowercase();
        let mut t = json!({ "id": self.id, "state": state, "version": self.version, "resumes": self.resumes.len() });
        if let (Some(pid), Some(ttl)) = (&self.pid, self.ttl) {
            (t["pid"], t["ttl"]) = (json!(pid), json!(ttl));
        }
        t
    }
}

#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Schedule {
    pub id: String,
    pub cron: Cron,
    pub cron_text: String,
    pub promise_id: String,
    pub promise_timeout: i64,
    pub promise_param: Val,
    pub promise_tags: Tags,
    pub created_at: i64,
    pub next_run_at: i64,
    pub last_run_at: Option<i64>,
    /// Creation order: due schedules with equal nextRunAt run in this order.
    pub seq: u64,
}

impl Schedule {
    fn json(&self) -> Value {
        let mut s = json!({
            "id": self.id, "cron": self.cron_text, "promiseId": self.promise_id,
            "promiseTimeout": self.promise_timeout, "promiseParam": self.promise_param,
            "promiseTags": self.promise_tags, "createdAt": self.created_at, "nextRunAt": self.next_run_at,
        });
        if let Some(at) = self.last_run_at {
            s["lastRunAt"] = json!(at);
        }
        s
    }
}

/// The cron subset the model understands: minute-granular expressions whose minute field is
/// `*`, `*/n` or a number and whose other four fields are `*` (everything else is invalid here;
/// the fuzzer sends no other valid expression).
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Cron {
    every: i64,
    at: i64,
}

impl Cron {
    fn parse(text: &str) -> Option<Cron> {
        let fields: Vec<&str> = text.split_whitespace().collect();
        if fields.len() != 5 || fields[1..].iter().any(|f| *f != "*") {
            return None;
        }
        let cron = match fields[0] {
            "*" => Cron { every: 1, at: 0 },
            f => match f.strip_prefix("*/") {
                Some(n) => Cron { every: n.parse().ok().filter(|n| (1..60).contains(n))?, at: 0 },
                None => Cron { every: 60, at: f.parse().ok().filter(|m| (0..60).contains(m))? },
            },
        };
        Some(cron)
    }
    /// The first occurrence strictly after `t`.
    fn next(self, t: i64) -> i64 {
        let mut m = t.div_euclid(MINUTE) + 1;
        while (m.rem_euclid(60) - self.at).rem_euclid(self.every) != 0 {
            m += 1;
        }
        m * MINUTE
    }
}

/// A queued message: `key` is the task id for an execute, `(promise id, address)` for an unblock.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Message {
    pub key: (String, Option<String>),
    pub address: String,
    pub message: Value,
}

/// The whole store of a server, plus counters of the internal rules that fired.
#[derive(Clone, Debug, PartialEq)]
pub struct Model {
    pub(crate) promises: BTreeMap<String, Promise>,
    pub(crate) tasks: BTreeMap<String, Task>,
    pub(crate) schedules: BTreeMap<String, Schedule>,
    pub(crate) outbox: Vec<Message>,
    /// Schedules created so far (their `seq`).
    created: u64,
    retry_timeout: i64,
    server_url: String,
    fired: BTreeMap<&'static str, u64>,
}

// ----- request decoding (spec/kinds.yaml fields) -----

#[derive(Deserialize)]
struct IdReq {
    id: String,
}
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct CreateReq {
    id: String,
    timeout_at: i64,
    #[serde(default, deserialize_with = "nullable")]
    param: Val,
    #[serde(default, deserialize_with = "nullable")]
    tags: Tags,
}
#[derive(Clone, Copy, Deserialize)]
#[serde(rename_all = "snake_case")]
enum SettleState {
    Resolved,
    Rejected,
    RejectedCanceled,
}
#[derive(Deserialize)]
struct SettleReq {
    id: String,
    state: SettleState,
    #[serde(default, deserialize_with = "nullable")]
    value: Val,
}
#[derive(Deserialize)]
struct CallbackReq {
    awaited: String,
    awaiter: String,
}
#[derive(Deserialize)]
struct ListenerReq {
    awaited: String,
    address: String,
}
/// A nested request envelope; its `kind` and `head` are not read.
#[derive(Deserialize)]
struct Action<T> {
    data: T,
}
#[derive(Deserialize)]
struct RawAction {
    kind: String,
    data: Value,
}
#[derive(Deserialize)]
struct TaskCreateReq {
    pid: String,
    ttl: i64,
    action: Action<CreateReq>,
}
#[derive(Deserialize)]
struct AcquireReq {
    id: String,
    version: i64,
    pid: String,
    ttl: i64,
}
#[derive(Deserialize)]
struct VersionReq {
    id: String,
    version: i64,
}
#[derive(Deserialize)]
struct FenceReq {
    id: String,
    version: i64,
    action: RawAction,
}
#[derive(Deserialize)]
struct TaskRef {
    id: String,
    version: i64,
}
#[derive(Deserialize)]
struct HeartbeatReq {
    pid: String,
    #[serde(default, deserialize_with = "nullable")]
    tasks: Vec<TaskRef>,
}
#[derive(Deserialize)]
struct SuspendReq {
    id: String,
    version: i64,
    actions: Vec<Action<CallbackReq>>,
}
#[derive(Deserialize)]
struct FulfillReq {
    id: String,
    version: i64,
    action: Action<SettleReq>,
}
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ScheduleReq {
    id: String,
    cron: String,
    promise_id: String,
    promise_timeout: i64,
    #[serde(default, deserialize_with = "nullable")]
    promise_param: Val,
    #[serde(default, deserialize_with = "nullable")]
    promise_tags: Tags,
}
#[derive(Deserialize)]
struct TickReq {
    time: i64,
}

/// An optional field: absent and null both mean empty.
fn nullable<'de, D: serde::Deserializer<'de>, T: Default + Deserialize<'de>>(d: D) -> Result<T, D::Error> {
    Option::<T>::deserialize(d).map(Option::unwrap_or_default)
}

fn decode<T: DeserializeOwned>(data: &Value) -> Result<T, Refusal> {
    from_json(data).map_err(|detail| refuse("invalid_request", &detail))
}

/// Decodes JSON, describing a failure as spec/protocol.yaml `decode_detail` says: the path of
/// the field (none at the top), then serde's message in the wire's words.
fn from_json<T: DeserializeOwned>(data: &Value) -> Result<T, String> {
    static WORDS: std::sync::OnceLock<Vec<(String, String)>> = std::sync::OnceLock::new();
    let words = WORDS.get_or_init(|| {
        serde_yaml::from_value(protocol_spec()["decode_detail"].clone()).expect("decode_detail is a list of pairs")
    });
    serde_path_to_error::deserialize(data).map_err(|e| {
        let mut message = e.inner().to_string();
        for (rust, wire) in words {
            message = message.replace(rust.as_str(), wire);
        }
        let struct_name = |m: &str| m.find("expected struct ");
        while let Some(at) = struct_name(&message) {
            let from = at + "expected struct ".len();
            let to = message[from..].find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).map_or(message.len(), |n| from + n);
            message = format!("{}expected an object{}", &message[..at], &message[to..]);
        }
        match e.path().to_string().as_str() {
            "." => message,
            path => format!("{path}: {message}"),
        }
    })
}

/// spec/protocol.yaml.
fn protocol_spec() -> &'static serde_yaml::Value {
    static SPEC: std::sync::OnceLock<serde_yaml::Value> = std::sync::OnceLock::new();
    SPEC.get_or_init(|| {
        let path = crate::server::repo_root().join("spec/protocol.yaml");
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        serde_yaml::from_str(&text).expect("spec/protocol.yaml parses")
    })
}

/// The address forms a transport (`http`, `nats`) delivers to, from spec/protocol.yaml
/// `addresses`, joined by `, ` (the text of invalid_target's `{addresses}`).
pub fn accepted_addresses(transport: &str) -> String {
    let forms: Vec<&str> = protocol_spec()["addresses"]
        .as_sequence()
        .expect("addresses is a list")
        .iter()
        .filter(|a| a["served_by"].as_str() == Some(transport))
        .filter_map(|a| a["form"].as_str())
        .collect();
    forms.join(", ")
}

/// The refusal `name` of spec/errors.yaml, with `detail` in place of `{detail}`.
fn refuse(name: &str, detail: &str) -> Refusal {
    let (status, message) = match name {
        "missing_kind" => (400, "Missing or invalid 'kind' field — must be a non-empty string"),
        "invalid_data" => (400, "Invalid 'data' field — must be an object"),
        "unknown_operation" => (400, "Unknown operation: {detail}"),
        "invalid_request" => (400, "Invalid request: {detail}"),
        "promise_id_required" => (400, "Promise ID is required"),
        "promise_id_nul" => (400, "Promise ID must not contain null bytes"),
        "timeout_negative" => (400, "TimeoutAt must be a non-negative integer"),
        "invalid_target" => (400, "Invalid resonate:target address '{detail}': expected {addresses}"),
        "delay_invalid" => (400, "resonate:delay must be a non-negative integer"),
        "delay_untargeted" => (400, "resonate:delay requires a resonate:target tag"),
        "delay_after_timeout" => (400, "resonate:delay must be less than timeoutAt"),
        "promise_not_found" => (404, "Promise not found"),
        "awaited_id_required" => (400, "Awaited promise ID is required"),
        "awaiter_id_required" => (400, "Awaiter promise ID is required"),
        "self_callback" => (400, "Awaited and awaiter must be different promises"),
        "awaited_not_found" => (404, "Awaited promise not found"),
        "awaiter_not_found" => (422, "Awaiter promise not found"),
        "awaiter_untargeted" => (422, "Awaiter promise has no resonate:target tag"),
        "awaited_internal" => (
            422,
            "Awaited promise is not external (it needs resonate:target, resonate:timer, resonate:external or resonate:scope global)",
        ),
        "invalid_listener" => (400, "Invalid listener address"),
        "task_id_required" => (400, "Task ID is required"),
        "pid_required" => (400, "Process ID is required"),
        "ttl_not_positive" => (400, "TTL must be a positive integer"),
        "version_negative" => (400, "Version must be a non-negative integer"),
        "action_untargeted" => (400, "Action must have a resonate:target tag"),
        "action_delayed" => (400, "Action must not have a resonate:delay tag"),
        "task_not_found" => (404, "Task not found"),
        "promise_untargeted" => (422, "Promise exists without a target task"),
        "task_exists" => (409, "Already exists"),
        "task_not_pending" => (409, "Task is not pending"),
        "version_mismatch" => (409, "Version mismatch"),
        "task_conflict" => (409, "Task version mismatch or invalid state"),
        "actions_empty" => (400, "Actions array cannot be empty"),
        "self_await" => (400, "Action awaited promise must not equal the task ID"),
        "duplicate_awaited" => (400, "Actions must not await the same promise twice"),
        "suspend_conflict" => (409, "Task is not acquired or version mismatch"),
        "suspend_awaited_not_found" => (422, "Awaited promise not found"),
        "fence_kind" => (400, "Invalid fence action kind"),
        "fence_data" => (400, "Invalid action data: {detail}"),
        "fence_self" => (400, "Action ID must not equal the task ID"),
        "task_fulfilled" => (409, "Task is fulfilled"),
        "task_not_halted" => (409, "Task is not halted"),
        "schedule_id_required" => (400, "Schedule ID is required"),
        "cron_required" => (400, "Cron expression is required"),
        "cron_invalid" => (400, "Invalid cron expression"),
        "template_required" => (400, "Promise ID template is required"),
        "promise_timeout_negative" => (400, "Promise timeout must be a non-negative integer"),
        "schedule_not_found" => (404, "Schedule not found"),
        "tick_time" => (400, "Missing or invalid 'time' field"),
        "tick_time_mismatch" => (400, "resonate:debug_time must equal data.time"),
        _ => (500, "not modelled"),
    };
    (status, message.replace("{detail}", detail))
}

/// Fails with the refusal `name` unless `ok`.
fn need(ok: bool, name: &str) -> Result<(), Refusal> {
    if ok {
        Ok(())
    } else {
        Err(refuse(name, ""))
    }
}

fn non_empty(s: &str, name: &str) -> Result<(), Refusal> {
    need(!s.is_empty(), name)
}

/// The field checks of promise.create, in field order.
fn check_create(r: &CreateReq) -> Result<(), Refusal> {
    non_empty(&r.id, "promise_id_required")?;
    need(!r.id.contains('\0'), "promise_id_nul")?;
    need(r.timeout_at >= 0, "timeout_negative")
}

/// Whether `address` is deliverable (spec/protocol.yaml addresses). Over NATS only `nats://subject`,
/// dot-separated non-empty tokens without spaces or wildcards (choices.yaml nats-addresses).
/// Over HTTP (https is accepted without TLS, choices.yaml https-without-tls): an http(s) URL with
/// something after the scheme, or `poll://any@group[/id]` / `poll://uni@group/id` with non-empty
/// parts and no further `/`.
pub fn deliverable(address: &str, over_nats: bool) -> bool {
    if over_nats {
        let Some(subject) = address.strip_prefix("nats://") else { return false };
        return subject.split('.').all(|t| !t.is_empty() && !t.contains(|c: char| c.is_whitespace() || c == '*' || c == '>'));
    }
    if let Some(rest) = address.strip_prefix("http://").or_else(|| address.strip_prefix("https://")) {
        return !rest.is_empty();
    }
    let Some((cast, rest)) = address.strip_prefix("poll://").and_then(|r| r.split_once('@')) else {
        return false;
    };
    let (group, id) = match rest.split_once('/') {
        Some((group, id)) => (group, Some(id)),
        None => (rest, None),
    };
    let id_ok = |id: &str| !id.is_empty() && !id.contains('/');
    !group.is_empty()
        && match cast {
            "any" => id.is_none_or(id_ok),
            "uni" => id.is_some_and(id_ok),
            _ => false,
        }
}

fn ok(data: Value) -> Answer {
    Ok((200, data))
}

impl Model {
    /// `retry_timeout`: the server's --tasks-retry-timeout; `server_url`: the serverUrl in execute
    /// messages, whose scheme names the server's transport (`nats://` its --nats-url, else HTTP)
    /// and so which addresses it can deliver to.
    pub fn new(retry_timeout: i64, server_url: &str) -> Model {
        Model {
            promises: BTreeMap::new(),
            tasks: BTreeMap::new(),
            schedules: BTreeMap::new(),
            outbox: Vec::new(),
            created: 0,
            retry_timeout,
            server_url: server_url.to_string(),
            fired: BTreeMap::new(),
        }
    }

    /// How many times each internal rule fired so far ("R1","R3","R4","R5","R6","R7").
    pub fn rules_fired(&self) -> &BTreeMap<&'static str, u64> {
        &self.fired
    }

    /// One protocol request as sent on the wire (kind and `data`), at `now`: the response's status
    /// and `data` (an object on 200/300, a JSON string message otherwise).
    pub fn request(&mut self, kind: &str, data: &Value, now: i64) -> (u16, Value) {
        match self.handle(kind, data, now) {
            Ok(answer) => answer,
            Err((status, message)) => (status, json!(message)),
        }
    }

    fn handle(&mut self, kind: &str, data: &Value, now: i64) -> Answer {
        if kind.is_empty() {
            return Err(refuse("missing_kind", ""));
        }
        if !data.is_object() {
            return Err(refuse("invalid_data", ""));
        }
        match kind {
            "promise.get" => {
                let r: IdReq = decode(data)?;
                non_empty(&r.id, "promise_id_required")?;
                let p = self.read(&r.id, now).ok_or_else(|| refuse("promise_not_found", ""))?;
                ok(json!({ "promise": p.json() }))
            }
            "promise.create" => self.promise_create(decode(data)?, now),
            "promise.settle" => self.promise_settle(decode(data)?, now),
            "promise.register_callback" => self.register_callback(decode(data)?, now),
            "promise.register_listener" => self.register_listener(decode(data)?, now),
            "task.get" => {
                let r: IdReq = decode(data)?;
                let task = self.task(&r.id, now)?;
                ok(json!({ "task": task.json() }))
            }
            "task.create" => self.task_create(decode(data)?, now),
            "task.acquire" => self.task_acquire(decode(data)?, now),
            "task.fence" => self.task_fence(decode(data)?, now),
            "task.heartbeat" => self.task_heartbeat(decode(data)?, now),
            "task.suspend" => self.task_suspend(decode(data)?, now),
            "task.fulfill" => self.task_fulfill(decode(data)?, now),
            "task.release" => self.task_release(decode(data)?, now),
            "task.halt" => self.task_halt(decode(data)?, now),
            "task.continue" => self.task_continue(decode(data)?, now),
            "schedule.get" => {
                let r: IdReq = decode(data)?;
                non_empty(&r.id, "schedule_id_required")?;
                let s = self.schedules.get(&r.id).ok_or_else(|| refuse("schedule_not_found", ""))?;
                ok(json!({ "schedule": s.json() }))
            }
            "schedule.create" => self.schedule_create(decode(data)?, now),
            "schedule.delete" => {
                let r: IdReq = decode(data)?;
                non_empty(&r.id, "schedule_id_required")?;
                self.schedules.remove(&r.id).ok_or_else(|| refuse("schedule_not_found", ""))?;
                ok(json!({}))
            }
            "promise.search" | "task.search" | "schedule.search" => Err((501, "not modelled".into())),
            "debug.start" | "debug.stop" => ok(json!({})),
            "debug.reset" => {
                (self.promises, self.tasks, self.schedules, self.outbox) = Default::default();
                ok(json!({}))
            }
            "debug.snap" => ok(self.snap()),
            "debug.tick" => {
                let r: TickReq = serde_json::from_value(data.clone()).map_err(|_| refuse("tick_time", ""))?;
                need(r.time == now, "tick_time_mismatch")?;
                self.tick(r.time);
                ok(json!([]))
            }
            _ => Err(refuse("unknown_operation", kind)),
        }
    }

    // ----- promises -----

    /// Reads a promise through fact P, persisting a projected timeout (the materialised discipline).
    fn read(&mut self, id: &str, now: i64) -> Option<&Promise> {
        if self.promises.get(id)?.dead(now) {
            self.timeout(id, now);
        }
        self.promises.get(id)
    }

    /// Rule R1 if the promise is stored pending and due: settles it at its deadline, with drains.
    fn timeout(&mut self, id: &str, now: i64) {
        let p = self.promises.get_mut(id).expect("timeout of a known promise");
        if p.pending() && p.timeout_at <= now {
            p.state = if p.timer() { "resolved" } else { "rejected_timedout" };
            p.settled_at = Some(p.timeout_at);
            self.fire("R1");
            self.settled(id, now);
        }
    }

    /// After a promise was written settled: coupled task fulfilment, then R3 and R4 for its ledgers.
    fn settled(&mut self, id: &str, now: i64) {
        if let Some(task) = self.tasks.get_mut(id) {
            task.park(TaskState::Fulfilled);
            task.resumes.clear();
        }
        let p = self.promises.get_mut(id).expect("a settled promise exists");
        let (listeners, callbacks) = (std::mem::take(&mut p.listeners), std::mem::take(&mut p.callbacks));
        let record = p.json();
        for address in listeners {
            self.fire("R3");
            let message = json!({ "data": { "promise": record }, "head": {}, "kind": "unblock" });
            self.upsert((id.to_string(), Some(address.clone())), &address, message);
        }
        for awaiter in callbacks {
            self.fire("R4");
            self.resume(&awaiter, id, now);
        }
    }

    /// Resumes `awaiter`'s task after `awaited` settled (inside R4): skipped if the awaiter's own
    /// promise reads dead (checklist C6). R4 materialises what it reads (spec/README.md "Reading the store").
    fn resume(&mut self, awaiter: &str, awaited: &str, now: i64) {
        if self.read(awaiter, now).is_none_or(|p| !p.pending()) {
            return;
        }
        let Some(task) = self.tasks.get_mut(awaiter) else { return };
        match task.state {
            TaskState::Suspended => {
                (task.state, task.resumes, task.retry_at) = (TaskState::Pending, vec![awaited.to_string()], Some(now));
                self.dispatch(awaiter, now);
            }
            TaskState::Fulfilled => {}
            _ if task.resumes.iter().any(|r| r == awaited) => {}
            _ => task.resumes.push(awaited.to_string()),
        }
    }

    /// Rule R6 if due: a pending task whose retry deadline passed and whose promise reads pending.
    /// Whether it fired.
    fn dispatch(&mut self, id: &str, now: i64) -> bool {
        let Some(p) = self.promises.get(id).filter(|p| !p.dead(now)) else { return false };
        let address = p.tags.get(TARGET).cloned().unwrap_or_default();
        let Some(task) = self.tasks.get_mut(id) else { return false };
        if task.state != TaskState::Pending || task.retry_at.is_none_or(|at| at > now) {
            return false;
        }
        task.retry_at = Some(now + self.retry_timeout);
        let message = json!({
            "data": { "task": { "id": id, "version": task.version } },
            "head": { "serverUrl": self.server_url }, "kind": "execute",
        });
        self.fire("R6");
        self.upsert((id.to_string(), None), &address, message);
        true
    }

    fn upsert(&mut self, key: (String, Option<String>), address: &str, message: Value) {
        let address = address.to_string();
        match self.outbox.iter_mut().find(|m| m.key == key) {
            Some(m) => (m.address, m.message) = (address, message),
            None => self.outbox.push(Message { key, address, message }),
        }
    }

    fn fire(&mut self, rule: &'static str) {
        *self.fired.entry(rule).or_default() += 1;
    }

    /// A new promise born at `born` (spec/README.md "Reading the store", birth), with its task if targeted;
    /// then rule R6 at `now` if the task is due (a schedule's promise is born at its occurrence).
    fn birth(&mut self, c: CreateReq, born: i64, now: i64) {
        let targeted = c.tags.contains_key(TARGET);
        let mut p = Promise {
            id: c.id.clone(),
            state: "pending",
            param: c.param,
            value: Val::default(),
            tags: c.tags,
            timeout_at: c.timeout_at,
            created_at: born,
            settled_at: None,
            callbacks: Vec::new(),
            listeners: Vec::new(),
        };
        let task = if c.timeout_at > born {
            let delay = p.tags.get(DELAY).and_then(|d| d.parse::<i64>().ok()).unwrap_or(born);
            Task::new(&c.id, TaskState::Pending, Some(delay.max(born)))
        } else {
            p.state = if p.timer() { "resolved" } else { "rejected_timedout" };
            (p.created_at, p.settled_at) = (c.timeout_at, Some(c.timeout_at));
            Task::new(&c.id, TaskState::Fulfilled, None)
        };
        self.promises.insert(c.id.clone(), p);
        if targeted {
            self.tasks.insert(c.id.clone(), task);
            self.dispatch(&c.id, now);
        }
    }

    /// Whether `address` is deliverable by this server's transport.
    fn deliverable(&self, address: &str) -> bool {
        deliverable(address, self.server_url.starts_with("nats://"))
    }

    /// invalid_target for `address`, listing the forms this server's transport delivers to.
    fn invalid_target(&self, address: &str) -> Refusal {
        let transport = if self.server_url.starts_with("nats://") { "nats" } else { "http" };
        let (status, message) = refuse("invalid_target", address);
        (status, message.replace("{addresses}", &accepted_addresses(transport)))
    }

    /// The tag guards of promise.create, in order.
    fn create_guards(&self, tags: &Tags, timeout_at: i64) -> Result<(), Refusal> {
        if let Some(t) = tags.get(TARGET).filter(|t| !self.deliverable(t)) {
            return Err(self.invalid_target(t));
        }
        if let Some(delay) = tags.get(DELAY) {
            let delay = delay.parse::<i64>().ok().filter(|d| *d >= 0).ok_or_else(|| refuse("delay_invalid", ""))?;
            need(tags.contains_key(TARGET), "delay_untargeted")?;
            need(delay < timeout_at, "delay_after_timeout")?;
        }
        Ok(())
    }

    fn promise_create(&mut self, r: CreateReq, now: i64) -> Answer {
        check_create(&r)?;
        self.create_guards(&r.tags, r.timeout_at)?;
        let id = r.id.clone();
        if !self.promises.contains_key(&id) {
            self.birth(r, now, now);
        }
        ok(json!({ "promise": self.read(&id, now).map(Promise::json) }))
    }

    fn promise_settle(&mut self, r: SettleReq, now: i64) -> Answer {
        non_empty(&r.id, "promise_id_required")?;
        let p = self.read(&r.id, now).ok_or_else(|| refuse("promise_not_found", ""))?;
        if p.pending() {
            self.settle(&r.id, r.state, r.value, now);
        }
        ok(json!({ "promise": self.promises[&r.id].json() }))
    }

    /// A client settlement of a promise that reads pending.
    fn settle(&mut self, id: &str, state: SettleState, value: Val, now: i64) {
        let p = self.promises.get_mut(id).expect("settling a known promise");
        p.state = match state {
            SettleState::Resolved => "resolved",
            SettleState::Rejected => "rejected",
            SettleState::RejectedCanceled => "rejected_canceled",
        };
        (p.value, p.settled_at) = (value, Some(now));
        self.settled(id, now);
    }

    fn register_callback(&mut self, r: CallbackReq, now: i64) -> Answer {
        non_empty(&r.awaited, "awaited_id_required")?;
        non_empty(&r.awaiter, "awaiter_id_required")?;
        need(r.awaited != r.awaiter, "self_callback")?;
        self.read(&r.awaited, now).ok_or_else(|| refuse("awaited_not_found", ""))?;
        let awaiter = self.read(&r.awaiter, now).ok_or_else(|| refuse("awaiter_not_found", ""))?;
        let (targeted, awaiter_pending) = (awaiter.targeted(), awaiter.pending());
        need(targeted, "awaiter_untargeted")?;
        let awaited = self.promises.get_mut(&r.awaited).expect("read above");
        need(awaited.external(), "awaited_internal")?;
        if awaited.pending() && awaiter_pending && !awaited.callbacks.contains(&r.awaiter) {
            awaited.callbacks.push(r.awaiter);
        }
        ok(json!({ "promise": awaited.json() }))
    }

    fn register_listener(&mut self, r: ListenerReq, now: i64) -> Answer {
        non_empty(&r.awaited, "awaited_id_required")?;
        need(self.deliverable(&r.address), "invalid_listener")?;
        self.read(&r.awaited, now).ok_or_else(|| refuse("awaited_not_found", ""))?;
        let awaited = self.promises.get_mut(&r.awaited).expect("read above");
        need(awaited.external(), "awaited_internal")?;
        if awaited.pending() && !awaited.listeners.contains(&r.address) {
            awaited.listeners.push(r.address);
        }
        ok(json!({ "promise": awaited.json() }))
    }

    // ----- tasks -----

    /// Reads a task through fact T (its promise materialised first): 404 if there is none.
    fn task(&mut self, id: &str, now: i64) -> Result<&mut Task, Refusal> {
        non_empty(id, "task_id_required")?;
        self.read(id, now);
        self.tasks.get_mut(id).ok_or_else(|| refuse("task_not_found", ""))
    }

    /// The task, if it reads acquired at exactly `version` (its promise then reads pending).
    fn leased(&mut self, id: &str, version: i64, now: i64, conflict: &str) -> Result<&mut Task, Refusal> {
        let task = self.task(id, now)?;
        if task.state == TaskState::Acquired && task.version == version {
            Ok(task)
        } else {
            Err(refuse(conflict, ""))
        }
    }

    fn acquire(&mut self, id: &str, pid: String, ttl: i64, now: i64) -> Value {
        let task = self.tasks.get_mut(id).expect("acquiring a known task");
        task.park(TaskState::Acquired);
        (task.version, task.pid, task.ttl, task.expires_at) = (task.version + 1, Some(pid), Some(ttl), Some(now + ttl));
        task.resumes.clear();
        self.task_and_promise(id)
    }

    fn task_and_promise(&self, id: &str) -> Value {
        json!({ "task": self.tasks[id].json(), "promise": self.promises[id].json(), "preload": [] })
    }

    fn task_create(&mut self, r: TaskCreateReq, now: i64) -> Answer {
        non_empty(&r.pid, "pid_required")?;
        need(r.ttl >= 1, "ttl_not_positive")?;
        let c = r.action.data;
        check_create(&c)?;
        need(c.tags.contains_key(TARGET), "action_untargeted")?;
        need(!c.tags.contains_key(DELAY), "action_delayed")?;
        if !self.deliverable(&c.tags[TARGET]) {
            return Err(self.invalid_target(&c.tags[TARGET]));
        }
        if let Some(p) = self.read(&c.id, now) {
            need(p.targeted(), "promise_untargeted")?;
            return match self.tasks[&c.id].state {
                TaskState::Fulfilled => ok(self.task_and_promise(&c.id)),
                TaskState::Pending => ok(self.acquire(&c.id, r.pid, r.ttl, now)),
                _ => Err(refuse("task_exists", "")),
            };
        }
        if c.timeout_at > now {
            let p = Promise {
                id: c.id.clone(),
                state: "pending",
                param: c.param,
                value: Val::default(),
                tags: c.tags,
                timeout_at: c.timeout_at,
                created_at: now,
                settled_at: None,
                callbacks: Vec::new(),
                listeners: Vec::new(),
            };
            self.promises.insert(c.id.clone(), p);
            self.tasks.insert(c.id.clone(), Task::new(&c.id, TaskState::Pending, None));
            return ok(self.acquire(&c.id, r.pid, r.ttl, now));
        }
        let id = c.id.clone();
        self.birth(c, now, now);
        ok(self.task_and_promise(&id))
    }

    fn task_acquire(&mut self, r: AcquireReq, now: i64) -> Answer {
        non_empty(&r.id, "task_id_required")?;
        need(r.version >= 0, "version_negative")?;
        non_empty(&r.pid, "pid_required")?;
        need(r.ttl >= 1, "ttl_not_positive")?;
        let task = self.task(&r.id, now)?;
        need(task.state == TaskState::Pending, "task_not_pending")?;
        need(task.version == r.version, "version_mismatch")?;
        ok(self.acquire(&r.id, r.pid, r.ttl, now))
    }

    fn task_fence(&mut self, r: FenceReq, now: i64) -> Answer {
        non_empty(&r.id, "task_id_required")?;
        need(r.version >= 0, "version_negative")?;
        let kind = r.action.kind;
        need(kind == "promise.create" || kind == "promise.settle", "fence_kind")?;
        let fence_data = |detail: String| refuse("fence_data", &detail);
        let (inner, inner_id) = if kind == "promise.create" {
            let c: CreateReq = from_json(&r.action.data).map_err(fence_data)?;
            let id = c.id.clone();
            (Ok(c), id)
        } else {
            let s: SettleReq = from_json(&r.action.data).map_err(fence_data)?;
            let id = s.id.clone();
            (Err(s), id)
        };
        need(inner_id != r.id, "fence_self")?;
        self.leased(&r.id, r.version, now, "version_mismatch")?;
        let answer = match inner {
            Ok(c) => self.promise_create(c, now),
            Err(s) => self.promise_settle(s, now),
        };
        let (status, data) = answer.unwrap_or_else(|(status, message)| (status, json!(message)));
        let head = json!({ "corrId": "c", "status": status, "version": VERSION });
        ok(json!({ "action": { "data": data, "head": head, "kind": kind }, "preload": [] }))
    }

    fn task_heartbeat(&mut self, r: HeartbeatReq, now: i64) -> Answer {
        non_empty(&r.pid, "pid_required")?;
        for t in r.tasks {
            if let Ok(task) = self.leased(&t.id, t.version, now, "task_conflict") {
                if task.pid.as_deref() == Some(r.pid.as_str()) {
                    task.expires_at = task.ttl.map(|ttl| now + ttl);
                }
            }
        }
        ok(json!({}))
    }

    fn task_suspend(&mut self, r: SuspendReq, now: i64) -> Answer {
        non_empty(&r.id, "task_id_required")?;
        need(r.version >= 0, "version_negative")?;
        let awaited: Vec<String> = r.actions.into_iter().map(|a| a.data.awaited).collect();
        need(!awaited.is_empty(), "actions_empty")?;
        need(!awaited.contains(&r.id), "self_await")?;
        need((1..awaited.len()).all(|i| !awaited[..i].contains(&awaited[i])), "duplicate_awaited")?;
        // The server reads the awaited promises with the task, before judging the task.
        self.read(&r.id, now);
        for a in &awaited {
            self.read(a, now);
        }
        self.leased(&r.id, r.version, now, "suspend_conflict")?;
        need(awaited.iter().all(|a| self.promises.contains_key(a)), "suspend_awaited_not_found")?;
        need(awaited.iter().all(|a| self.promises[a].external()), "awaited_internal")?;
        let task = self.tasks.get_mut(&r.id).expect("leased above");
        if awaited.iter().any(|a| !self.promises[a].pending()) {
            task.resumes.clear();
            return Ok((300, json!({ "preload": [] })));
        }
        task.park(TaskState::Suspended);
        task.resumes.clear();
        for a in awaited {
            let p = self.promises.get_mut(&a).expect("read above");
            if !p.callbacks.contains(&r.id) {
                p.callbacks.push(r.id.clone());
            }
        }
        ok(json!({}))
    }

    fn task_fulfill(&mut self, r: FulfillReq, now: i64) -> Answer {
        non_empty(&r.id, "task_id_required")?;
        need(r.version >= 0, "version_negative")?;
        non_empty(&r.action.data.id, "promise_id_required")?;
        self.leased(&r.id, r.version, now, "task_conflict")?;
        self.settle(&r.id, r.action.data.state, r.action.data.value, now);
        ok(json!({ "promise": self.promises[&r.id].json() }))
    }

    fn task_release(&mut self, r: VersionReq, now: i64) -> Answer {
        non_empty(&r.id, "task_id_required")?;
        need(r.version >= 0, "version_negative")?;
        let task = self.leased(&r.id, r.version, now, "task_conflict")?;
        task.park(TaskState::Pending);
        task.retry_at = Some(now);
        self.dispatch(&r.id, now);
        ok(json!({}))
    }

    fn task_halt(&mut self, r: IdReq, now: i64) -> Answer {
        let task = self.task(&r.id, now)?;
        match task.state {
            TaskState::Fulfilled => Err(refuse("task_fulfilled", "")),
            TaskState::Halted => ok(json!({})),
            _ => {
                task.park(TaskState::Halted);
                ok(json!({}))
            }
        }
    }

    fn task_continue(&mut self, r: IdReq, now: i64) -> Answer {
        let task = self.task(&r.id, now)?;
        need(task.state == TaskState::Halted, "task_not_halted")?;
        task.park(TaskState::Pending);
        task.retry_at = Some(now);
        self.dispatch(&r.id, now);
        ok(json!({}))
    }

    // ----- schedules -----

    fn schedule_create(&mut self, r: ScheduleReq, now: i64) -> Answer {
        non_empty(&r.id, "schedule_id_required")?;
        non_empty(&r.cron, "cron_required")?;
        non_empty(&r.promise_id, "template_required")?;
        need(r.promise_timeout >= 0, "promise_timeout_negative")?;
        let cron = Cron::parse(&r.cron).ok_or_else(|| refuse("cron_invalid", ""))?;
        let seq = self.created;
        let schedule = self.schedules.entry(r.id.clone()).or_insert_with(|| Schedule {
            id: r.id,
            cron,
            cron_text: r.cron,
            promise_id: r.promise_id,
            promise_timeout: r.promise_timeout,
            promise_param: r.promise_param,
            promise_tags: r.promise_tags,
            created_at: now,
            next_run_at: cron.next(now),
            last_run_at: None,
            seq,
        });
        let answer = json!({ "schedule": schedule.json() });
        self.created += u64::from(schedule.seq == seq);
        ok(answer)
    }

    /// Rule R7 for one schedule at `now`: at most one batch of occurrences. Whether any fired.
    fn run_schedule(&mut self, id: &str, now: i64) -> bool {
        let mut fired = false;
        for _ in 0..SCHEDULE_BATCH {
            let s = &self.schedules[id];
            let t = s.next_run_at;
            if t > now {
                break;
            }
            let pid = s.promise_id.replace("{{.id}}", id).replace("{{.timestamp}}", &t.to_string());
            let mut tags = s.promise_tags.clone();
            tags.insert("resonate:schedule".into(), id.to_string());
            for tag in ["origin", "branch", "parent", "prefix"] {
                tags.insert(format!("resonate:{tag}"), pid.clone());
            }
            let c = CreateReq { id: pid, timeout_at: t + s.promise_timeout, param: s.promise_param.clone(), tags };
            if !self.promises.contains_key(&c.id) {
                self.birth(c, t, now);
            }
            let s = self.schedules.get_mut(id).expect("running a known schedule");
            (s.last_run_at, s.next_run_at) = (Some(t), s.cron.next(t));
            self.fire("R7");
            fired = true;
        }
        fired
    }

    // ----- debug.tick -----

    /// Runs passes of R1, R5, R6 and R7 at `time` until nothing is due.
    fn tick(&mut self, time: i64) {
        loop {
            let mut due: Vec<(i64, String)> = (self.promises.values())
                .filter(|p| p.pending() && p.external() && p.timeout_at <= time)
                .map(|p| (p.timeout_at, p.id.clone()))
                .collect();
            due.sort();
            let mut any = !due.is_empty();
            for (_, id) in due {
                self.timeout(&id, time);
            }
            let mut due: Vec<(i64, String)> = (self.tasks.values())
                .filter_map(|t| match t.state {
                    TaskState::Acquired => t.expires_at,
                    TaskState::Pending => t.retry_at,
                    _ => None,
                }
                .filter(|at| *at <= time)
                .map(|at| (at, t.id.clone())))
                .collect();
            due.sort();
            for (_, id) in due {
                let alive = self.promises.get(&id).is_some_and(|p| !p.dead(time));
                let task = self.tasks.get_mut(&id).expect("listed above");
                if alive && task.state == TaskState::Acquired && task.expires_at.is_some_and(|at| at <= time) {
                    task.park(TaskState::Pending);
                    task.retry_at = Some(time);
                    self.fire("R5");
                    any = true;
                }
                any |= self.dispatch(&id, time);
            }
            let mut schedules: Vec<(i64, u64, String)> = (self.schedules.values())
                .filter(|s| s.next_run_at <= time)
                .map(|s| (s.next_run_at, s.seq, s.id.clone()))
                .collect();
            schedules.sort();
            for (_, _, id) in schedules {
                any |= self.run_schedule(&id, time);
            }
            if !any {
                break;
            }
        }
    }

    // ----- debug.snap -----

    /// The store in debug.snap's shape.
    pub fn snap(&self) -> Value {
        let promises = self.promises.values();
        let timeouts = promises.clone().filter(|p| p.pending() && p.external());
        let callbacks = promises.clone().flat_map(|p| p.callbacks.iter().map(|a| json!({ "awaiter": a, "awaited": p.id })));
        let listeners = promises.clone().flat_map(|p| p.listeners.iter().map(|a| json!({ "id": p.id, "address": a })));
        let task_timeouts = self.tasks.values().filter_map(|t| match t.state {
            TaskState::Acquired => Some(json!({ "id": t.id, "type": 1, "timeout": t.expires_at })),
            TaskState::Pending => Some(json!({ "id": t.id, "type": 0, "timeout": t.retry_at })),
            _ => None,
        });
        json!({
            "promises": promises.clone().map(Promise::json).collect::<Vec<_>>(),
            "promiseTimeouts": timeouts.map(|p| json!({ "id": p.id, "timeout": p.timeout_at })).collect::<Vec<_>>(),
            "callbacks": callbacks.collect::<Vec<_>>(),
            "listeners": listeners.collect::<Vec<_>>(),
            "tasks": self.tasks.values().map(Task::json).collect::<Vec<_>>(),
            "taskTimeouts": task_timeouts.collect::<Vec<_>>(),
            "messages": self.outbox.iter().map(|m| json!({ "address": m.address, "message": m.message })).collect::<Vec<_>>(),
            "schedules": self.schedules.values().map(Schedule::json).collect::<Vec<_>>(),
        })
    }
}
