//! The protocol's transitions and the server's own rules, over one store transaction.
//!
//! Each request runs as one [`Machine`] step inside one transaction of the store. Every read of a
//! promise goes through [`Machine::read_promise`], which applies the projection (spec/rules.yaml,
//! fact P) and persists it (the materialised discipline): a pending promise past its deadline is
//! settled there and then, with its coupled task fulfilment and its drains, so every later read in
//! the step, and every later step, agrees with what the client was told.
//!
//! Guards are checked in the order spec/kinds.yaml lists them; the refusals carry the exact wire
//! messages of spec/errors.yaml.

use crate::config::Settings;
use crate::cron::Cron;
use crate::protocol::*;
use serde::Serialize;
use std::sync::atomic::Ordering;

/// Tag: an address; the promise has a task dispatched there.
pub const TARGET: &str = "resonate:target";
/// Tag: `"true"` makes a durable timer, resolved at its deadline.
pub const TIMER: &str = "resonate:timer";
/// Tag: `"true"` lets an untargeted promise hold callbacks and listeners.
pub const EXTERNAL: &str = "resonate:external";
/// Tag: `global` marks a promise the SDKs await from other tasks (spec/choices.yaml).
pub const SCOPE: &str = "resonate:scope";
/// Tag: an instant before which the first dispatch waits.
pub const DELAY: &str = "resonate:delay";
/// Tag set on promises a schedule creates: the schedule's id.
pub const SCHEDULE: &str = "resonate:schedule";
/// Tags set on promises a schedule creates, each to the new promise's id.
const SCHEDULE_ROOT_TAGS: [&str; 4] =
    ["resonate:origin", "resonate:branch", "resonate:parent", "resonate:prefix"];
/// The most occurrences one schedule creates per firing.
const SCHEDULE_BATCH: usize = {{ c.spec.rules.schedule.schedule_batch }};
/// The most objects of each kind one background pass handles.
const RULE_BATCH: usize = 512;
/// Most passes one debug.tick runs. A tick far in the future (a schedule firing every minute
/// until the year 9999) would otherwise hold the store's one writer for ever; such a tick does
/// the first passes' work and answers, and another tick continues.
const TICK_PASSES: usize = 100;

/// A task as stored: the wire record plus its deadlines and the list behind `resumes`.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskRow {
    pub id: String,
    pub state: TaskState,
    pub version: i64,
    pub pid: Option<String>,
    pub ttl: Option<i64>,
    /// Lease deadline, only while acquired.
    pub expires_at: Option<i64>,
    /// Next dispatch, only while pending.
    pub retry_at: Option<i64>,
    /// Awaited promises that woke the task, in order, without duplicates.
    pub resumes: Vec<String>,
}

impl TaskRow {
    fn new(id: &str, state: TaskState) -> TaskRow {
        TaskRow {
            id: id.to_string(),
            state,
            version: 0,
            pid: None,
            ttl: None,
            expires_at: None,
            retry_at: None,
            resumes: Vec::new(),
        }
    }

    /// The wire view.
    pub fn wire(&self) -> Task {
        Task {
            id: self.id.clone(),
            state: self.state,
            version: self.version,
            resumes: self.resumes.len() as i64,
            ttl: self.ttl,
            pid: self.pid.clone(),
        }
    }

    /// When a background rule next looks at the task: the lease deadline while acquired (R5),
    /// the retry instant while pending (R6), never otherwise.
    pub fn due_at(&self) -> Option<i64> {
        match self.state {
            TaskState::Acquired => self.expires_at,
            TaskState::Pending => self.retry_at,
            _ => None,
        }
    }

    /// Leaves the lease: no holder, no ttl, no deadline.
    fn drop_lease(&mut self) {
        self.pid = None;
        self.ttl = None;
        self.expires_at = None;
    }

    /// Coupled settlement: the promise settled, so the task is done for good.
    fn fulfil(&mut self) {
        self.state = TaskState::Fulfilled;
        self.drop_lease();
        self.retry_at = None;
        self.resumes.clear();
    }
}

#[derive(Serialize)]
struct PromiseData<'a> {
    promise: &'a Promise,
}

#[derive(Serialize)]
struct TaskData<'a> {
    task: &'a Task,
}

/// `{task, promise, preload}`; preload is always empty (spec/choices.yaml empty-preload).
#[derive(Serialize)]
struct AcquiredData<'a> {
    preload: [Promise; 0],
    promise: &'a Promise,
    task: &'a Task,
}

#[derive(Serialize)]
struct ScheduleData<'a> {
    schedule: &'a Schedule,
}

#[derive(Serialize)]
struct Page<'a, T> {
    #[serde(skip_serializing_if = "Option::is_none")]
    cursor: Option<&'a str>,
    #[serde(flatten)]
    items: T,
}

/// What the machine needs of a store: the reads and writes of one transaction. Reads see the
/// transaction's own writes; the store commits or rolls back the whole step.
pub trait Records {
    /// A storage failure; the step that met it is rolled back.
    type Error;

    fn promise(&self, id: &str) -> Result<Option<Promise>, Self::Error>;

    fn insert_promise(&self, p: &Promise) -> Result<(), Self::Error>;

    /// Writes a settlement: state, value, settledAt, and disarms the timeout.
    fn update_promise(&self, p: &Promise) -> Result<(), Self::Error>;

    fn task(&self, id: &str) -> Result<Option<TaskRow>, Self::Error>;

    fn put_task(&self, t: &TaskRow) -> Result<(), Self::Error>;

    fn add_callback(&self, awaited: &str, awaiter: &str) -> Result<(), Self::Error>;

    /// Removes and returns a promise's callbacks, oldest first.
    fn take_callbacks(&self, awaited: &str) -> Result<Vec<String>, Self::Error>;

    fn add_listener(&self, awaited: &str, address: &str) -> Result<(), Self::Error>;

    /// Removes and returns a promise's listeners, oldest first.
    fn take_listeners(&self, awaited: &str) -> Result<Vec<String>, Self::Error>;

    /// Queues a message; a message with the same key replaces the older one.
    fn enqueue(&self, key: &str, address: &str, message: &str) -> Result<(), Self::Error>;

    fn schedule(&self, id: &str) -> Result<Option<Schedule>, Self::Error>;

    fn put_schedule(&self, s: &Schedule) -> Result<(), Self::Error>;

    fn delete_schedule(&self, id: &str) -> Result<bool, Self::Error>;

    /// Ids of armed promises whose timeout has come (rule R1).
    fn due_promises(&self, now: i64, limit: usize) -> Result<Vec<String>, Self::Error>;

    /// Ids of tasks whose lease expired or whose retry has come (rules R5, R6).
    fn due_tasks(&self, now: i64, limit: usize) -> Result<Vec<String>, Self::Error>;

    /// Ids of schedules with an occurrence due (rule R7).
    fn due_schedules(&self, now: i64, limit: usize) -> Result<Vec<String>, Self::Error>;
{% if c.retention %}

    /// Ids of stored-pending promises whose deadline passed before `horizon` (rule R8 settles
    /// them first, so their drains run).
    fn overdue_promises(&self, horizon: i64, limit: usize) -> Result<Vec<String>, Self::Error>;

    /// Ids of promises settled at or before `horizon` that nothing pending may still read: their
    /// `resonate:origin` is not stored pending and no unfulfilled task lists them in its resumes.
    fn expired_promises(&self, horizon: i64, limit: usize) -> Result<Vec<String>, Self::Error>;

    /// Deletes a promise, its task and the callbacks it registered as awaiter.
    fn purge_promise(&self, id: &str) -> Result<(), Self::Error>;
{% endif %}

    /// Promise ids after `after` in id order whose tags include every pair of `tags`.
    fn promise_ids(&self, after: &str, tags: &Tags, limit: usize) -> Result<Vec<String>, Self::Error>;

    /// Task ids after `after` in id order.
    fn task_ids(&self, after: &str, limit: usize) -> Result<Vec<String>, Self::Error>;

    /// Schedules after `after` in id order whose promiseTags include every pair of `tags`.
    fn schedules(&self, after: &str, tags: &Tags, limit: usize) -> Result<Vec<Schedule>, Self::Error>;

    /// debug.reset: deletes everything.
    fn reset(&self) -> Result<(), Self::Error>;

    /// debug.snap: the whole store as JSON, in the official server's shape plus `schedules`.
    fn snap(&self) -> Result<String, Self::Error>;
}

/// A handler's outcome: a reply, or a refusal, or a store failure. Handlers end in [`done`] or
/// [`refuse`]; `?` passes a store failure on.
type Outcome<T, E> = Result<std::result::Result<T, Refusal>, E>;

/// The handler succeeded with `value`.
fn done<T, E>(value: T) -> Outcome<T, E> {
    Ok(Ok(value))
}

/// The handler refused the request with `refusal`.
fn refuse<T, E>(refusal: Refusal) -> Outcome<T, E> {
    Ok(Err(refusal))
}

{% if c.nats() %}
/// Whether an address can be delivered to: `nats://subject`, a subject of dot-separated
/// non-empty tokens without whitespace or wildcard characters (`*`, `>`).
pub fn deliverable(address: &str) -> bool {
    address.strip_prefix("nats://").is_some_and(|subject| {
        subject.split('.').all(|t| !t.is_empty() && !t.contains(|c: char| c.is_whitespace() || c == '*' || c == '>'))
    })
}
{% else %}
/// Whether an address can be delivered to: `http(s)://…`, or `poll://any@group[/id]` and
/// `poll://uni@group/id`.
pub fn deliverable(address: &str) -> bool {
    if address.starts_with("http://") || address.starts_with("https://") {
        return address.len() > address.find("://").unwrap_or(0) + 3;
    }
    let Some(rest) = address.strip_prefix("poll://") else { return false };
    let Some((cast, path)) = rest.split_once('@') else { return false };
    let (group, id) = match path.split_once('/') {
        Some((g, id)) => (g, Some(id)),
        None => (path, None),
    };
    let id_ok = id.is_none_or(|id| !id.is_empty() && !id.contains('/'));
    match cast {
        "any" => !group.is_empty() && id_ok,
        "uni" => !group.is_empty() && id.is_some() && id_ok,
        _ => false,
    }
}
{% endif %}

fn is_timer(tags: &Tags) -> bool {
    tags.get(TIMER).is_some_and(|v| v == "true")
}

/// External promises may hold callbacks and listeners and get a background timeout (C1-C3).
pub fn is_external(tags: &Tags) -> bool {
    tags.contains_key(TARGET)
        || is_timer(tags)
        || tags.get(EXTERNAL).is_some_and(|v| v == "true")
        || tags.get(SCOPE).is_some_and(|v| v == "global")
}

/// The background timeout of a promise (rule R1), armed only for pending external promises.
pub fn armed_at(p: &Promise) -> Option<i64> {
    (p.state == PromiseState::Pending && is_external(&p.tags)).then_some(p.timeout_at)
}

/// The verdict of a deadline: timers resolve, everything else times out.
fn deadline_state(tags: &Tags) -> PromiseState {
    if is_timer(tags) {
        PromiseState::Resolved
    } else {
        PromiseState::RejectedTimedout
    }
}

/// One step of the protocol at one instant, inside one store transaction.
pub struct Machine<'a, R> {
    tx: &'a R,
    now: i64,
    settings: &'a Settings,
}

impl<'a, R: Records> Machine<'a, R> {
    pub fn new(tx: &'a R, now: i64, settings: &'a Settings) -> Machine<'a, R> {
        Machine { tx, now, settings }
    }

    /// Runs one decoded request; `corr_id` is echoed in a fenced action's inner envelope.
    pub fn handle(&self, request: Request, corr_id: &str) -> Result<Reply, R::Error> {
        let outcome = match request {
{% for r in c.requests %}
            Request::{{ r.variant }}(r) => self.{{ r.func }}(r{% if r.kind == "task.fence" %}, corr_id{% endif %})?,
{% endfor %}
        };
        Ok(outcome.unwrap_or_else(Reply::from))
    }

    // ----- reads through the projection -----

    /// Reads a promise through fact P, persisting a projected timeout (rule R1 on touch).
    fn read_promise(&self, id: &str) -> Result<Option<Promise>, R::Error> {
        match self.tx.promise(id)? {
            Some(p) if p.state == PromiseState::Pending && p.timeout_at <= self.now => {
                let state = deadline_state(&p.tags);
                let at = p.timeout_at;
                self.settle(p, state, Value::default(), at).map(Some)
            }
            found => Ok(found),
        }
    }

    /// Reads a task and its promise; fact T holds because the promise read materialises.
    fn read_task(&self, id: &str) -> Result<Option<(TaskRow, Promise)>, R::Error> {
        let Some(p) = self.read_promise(id)? else { return Ok(None) };
        Ok(self.tx.task(id)?.map(|t| (t, p)))
    }

    /// Reads the task a lease-holding request names: acquired at exactly `version`, promise pending.
    fn held_task(&self, id: &str, version: i64, conflict: Refusal) -> Outcome<(TaskRow, Promise), R::Error> {
        Ok(match self.read_task(id)? {
            None => Err(Refusal::TaskNotFound),
            Some((t, p))
                if t.state == TaskState::Acquired
                    && t.version == version
                    && p.state == PromiseState::Pending =>
            {
                Ok((t, p))
            }
            Some(_) => Err(conflict),
        })
    }

    // ----- settlement and the rules it triggers -----

    /// Settles a pending promise, then applies coupled settlement (its task is fulfilled in the
    /// same step) and drains its listeners (R3) and callbacks (R4).
    fn settle(&self, mut p: Promise, state: PromiseState, value: Value, at: i64) -> Result<Promise, R::Error> {
        p.state = state;
        p.value = value;
        p.settled_at = Some(at);
        self.tx.update_promise(&p)?;
        if let Some(mut t) = self.tx.task(&p.id)? {
            if t.state != TaskState::Fulfilled {
                t.fulfil();
                self.tx.put_task(&t)?;
            }
        }
        for address in self.tx.take_listeners(&p.id)? {
            self.enqueue_unblock(&address, &p)?;
        }
        for awaiter in self.tx.take_callbacks(&p.id)? {
            self.resume(&awaiter, &p.id)?;
        }
        Ok(p)
    }

    /// Rule R4's resume: wakes the awaiter's task, unless the awaiter itself is dead (C6).
    fn resume(&self, awaiter: &str, awaited: &str) -> Result<(), R::Error> {
        let Some((mut t, p)) = self.read_task(awaiter)? else { return Ok(()) };
        if p.state != PromiseState::Pending {
            return Ok(());
        }
        match t.state {
            TaskState::Suspended => {
                t.state = TaskState::Pending;
                t.resumes = vec![awaited.to_string()];
                t.retry_at = Some(self.now);
                self.dispatch(&mut t, &p)?;
            }
            TaskState::Pending | TaskState::Acquired | TaskState::Halted => {
                if t.resumes.iter().any(|r| r == awaited) {
                    return Ok(());
                }
                t.resumes.push(awaited.to_string());
            }
            TaskState::Fulfilled => return Ok(()),
        }
        self.tx.put_task(&t)
    }

    /// Rule R6: a pending task whose retry instant has come is sent an execute message, and its
    /// next retry is armed. The caller writes the task.
    fn dispatch(&self, t: &mut TaskRow, p: &Promise) -> Result<(), R::Error> {
        let due = t.retry_at.is_some_and(|at| at <= self.now);
        let alive = p.state == PromiseState::Pending && p.timeout_at > self.now;
        if t.state != TaskState::Pending || !due || !alive {
            return Ok(());
        }
        t.retry_at = Some(self.now.saturating_add(self.settings.retry_timeout));
        let Some(address) = p.tags.get(TARGET) else { return Ok(()) };
        let message = serde_json::json!({
            "kind": "execute",
            "head": { "serverUrl": self.settings.server_url },
            "data": { "task": { "id": t.id, "version": t.version } },
        });
        self.tx.enqueue(&format!("execute:{}", t.id), address, &message.to_string())
    }

    /// Rule R3's message: the settled record, once per promise and address.
    fn enqueue_unblock(&self, address: &str, p: &Promise) -> Result<(), R::Error> {
        let message = serde_json::json!({ "kind": "unblock", "head": {}, "data": { "promise": p } });
        self.tx.enqueue(&format!("unblock:{}:{address}", p.id), address, &message.to_string())
    }

    /// Takes the lease: version + 1, holder, ttl, deadline; no retry, no resumes.
    fn acquire(&self, t: &mut TaskRow, pid: String, ttl: i64) -> Result<(), R::Error> {
        t.state = TaskState::Acquired;
        t.version += 1;
        t.pid = Some(pid);
        t.ttl = Some(ttl);
        t.expires_at = Some(self.now.saturating_add(ttl));
        t.retry_at = None;
        t.resumes.clear();
        self.tx.put_task(t)
    }

    /// Promise birth. A promise whose deadline has passed is born settled by it; a targeted one
    /// gets its task, pending and dispatched (after `resonate:delay`), or fulfilled if born dead.
    /// `born` is the creation instant (a schedule's occurrence, else now): a schedule's promise
    /// is born alive at its occurrence even when its deadline has passed since.
    fn birth(&self, r: PromiseCreate, born: i64) -> Result<Promise, R::Error> {
        let dead = r.timeout_at <= born;
        let p = Promise {
            state: if dead { deadline_state(&r.tags) } else { PromiseState::Pending },
            created_at: born.min(r.timeout_at),
            settled_at: dead.then_some(r.timeout_at),
            id: r.id,
            param: r.param,
            value: Value::default(),
            tags: r.tags,
            timeout_at: r.timeout_at,
        };
        self.tx.insert_promise(&p)?;
        if p.tags.contains_key(TARGET) {
            let mut t = TaskRow::new(&p.id, TaskState::Fulfilled);
            if !dead {
                let delay = p.tags.get(DELAY).and_then(|d| d.parse::<i64>().ok()).unwrap_or(0);
                t.state = TaskState::Pending;
                t.retry_at = Some(delay.max(self.now));
                self.dispatch(&mut t, &p)?;
            }
            self.tx.put_task(&t)?;
        }
        Ok(p)
    }

    /// The tag guards of promise.create (also inside task.fence).
    fn check_create_tags(r: &PromiseCreate) -> std::result::Result<(), Refusal> {
        let target = r.tags.get(TARGET);
        if let Some(t) = target.filter(|t| !deliverable(t)) {
            return Err(Refusal::InvalidTarget(t.clone()));
        }
        if let Some(delay) = r.tags.get(DELAY) {
            let delay = delay.parse::<i64>().ok().filter(|d| *d >= 0).ok_or(Refusal::DelayInvalid)?;
            if target.is_none() {
                return Err(Refusal::DelayUntargeted);
            }
            if delay >= r.timeout_at {
                return Err(Refusal::DelayAfterTimeout);
            }
        }
        Ok(())
    }

    // ----- promise.* -----

    fn promise_get(&self, r: PromiseGet) -> Outcome<Reply, R::Error> {
        Ok(match self.read_promise(&r.id)? {
            Some(p) => Ok(Reply::ok(&PromiseData { promise: &p })),
            None => Err(Refusal::PromiseNotFound),
        })
    }

    fn promise_create(&self, r: PromiseCreate) -> Outcome<Reply, R::Error> {
        if let Err(refusal) = Self::check_create_tags(&r) {
            return refuse(refusal);
        }
        let p = match self.read_promise(&r.id)? {
            Some(p) => p,
            None => self.birth(r, self.now)?,
        };
        done(Reply::ok(&PromiseData { promise: &p }))
    }

    fn promise_settle(&self, r: PromiseSettle) -> Outcome<Reply, R::Error> {
        let Some(p) = self.read_promise(&r.id)? else { return refuse(Refusal::PromiseNotFound) };
        let p = if p.state == PromiseState::Pending {
            self.settle(p, r.state.into(), r.value, self.now)?
        } else {
            p
        };
        done(Reply::ok(&PromiseData { promise: &p }))
    }

    fn promise_register_callback(&self, r: PromiseRegisterCallback) -> Outcome<Reply, R::Error> {
        if r.awaited == r.awaiter {
            return refuse(Refusal::SelfCallback);
        }
        let Some(awaited) = self.read_promise(&r.awaited)? else {
            return refuse(Refusal::AwaitedNotFound);
        };
        let Some(awaiter) = self.read_promise(&r.awaiter)? else {
            return refuse(Refusal::AwaiterNotFound);
        };
        if !awaiter.tags.contains_key(TARGET) {
            return refuse(Refusal::AwaiterUntargeted);
        }
        if !is_external(&awaited.tags) {
            return refuse(Refusal::AwaitedInternal);
        }
        if awaited.state == PromiseState::Pending && awaiter.state == PromiseState::Pending {
            self.tx.add_callback(&awaited.id, &awaiter.id)?;
        }
        done(Reply::ok(&PromiseData { promise: &awaited }))
    }

    fn promise_register_listener(&self, r: PromiseRegisterListener) -> Outcome<Reply, R::Error> {
        if !deliverable(&r.address) {
            return refuse(Refusal::InvalidListener);
        }
        let Some(awaited) = self.read_promise(&r.awaited)? else {
            return refuse(Refusal::AwaitedNotFound);
        };
        if !is_external(&awaited.tags) {
            return refuse(Refusal::AwaitedInternal);
        }
        if awaited.state == PromiseState::Pending {
            self.tx.add_listener(&awaited.id, &r.address)?;
        }
        done(Reply::ok(&PromiseData { promise: &awaited }))
    }

    fn promise_search(&self, r: PromiseSearch) -> Outcome<Reply, R::Error> {
        let state = match r.state.as_deref().map(|s| (s, PromiseState::parse(s))) {
            Some((s, None)) => return refuse(Refusal::InvalidStateFilter(s.to_string())),
            Some((_, state)) => state,
            None => None,
        };
        let limit = match search_limit(r.limit, 100) {
            Ok(l) => l,
            Err(refusal) => return refuse(refusal),
        };
        let (promises, cursor) = self.page(r.cursor, limit, |after, n| self.tx.promise_ids(after, &r.tags, n), |id| {
            Ok(self.read_promise(id)?.filter(|p| state.is_none_or(|s| matches_state(s, p.state))))
        })?;
        let cursor = cursor.as_deref();
        #[derive(Serialize)]
        struct Items<'a> {
            promises: &'a [Promise],
        }
        done(Reply::ok(&Page { cursor, items: Items { promises: &promises } }))
    }

    // ----- task.* -----

    fn task_get(&self, r: TaskGet) -> Outcome<Reply, R::Error> {
        Ok(match self.read_task(&r.id)? {
            Some((t, _)) => Ok(Reply::ok(&TaskData { task: &t.wire() })),
            None => Err(Refusal::TaskNotFound),
        })
    }

    fn task_create(&self, r: TaskCreate) -> Outcome<Reply, R::Error> {
        let action = r.action.data;
        let Some(target) = action.tags.get(TARGET) else {
            return refuse(Refusal::ActionUntargeted);
        };
        if action.tags.contains_key(DELAY) {
            return refuse(Refusal::ActionDelayed);
        }
        if !deliverable(target) {
            return refuse(Refusal::InvalidTarget(target.clone()));
        }
        let id = action.id.clone();
        let (t, p) = match self.read_task(&id)? {
            None if self.tx.promise(&id)?.is_some() => return refuse(Refusal::PromiseUntargeted),
            None => {
                let dead = action.timeout_at <= self.now;
                let p = Promise {
                    state: if dead { deadline_state(&action.tags) } else { PromiseState::Pending },
                    created_at: self.now.min(action.timeout_at),
                    settled_at: dead.then_some(action.timeout_at),
                    id: action.id,
                    param: action.param,
                    value: Value::default(),
                    tags: action.tags,
                    timeout_at: action.timeout_at,
                };
                self.tx.insert_promise(&p)?;
                let mut t = TaskRow::new(&p.id, TaskState::Fulfilled);
                if dead {
                    self.tx.put_task(&t)?;
                } else {
                    t.state = TaskState::Pending;
                    self.acquire(&mut t, r.pid, r.ttl)?;
                }
                (t, p)
            }
            Some((t, p)) if t.state == TaskState::Fulfilled => (t, p),
            Some((mut t, p)) if t.state == TaskState::Pending => {
                self.acquire(&mut t, r.pid, r.ttl)?;
                (t, p)
            }
            Some(_) => return refuse(Refusal::TaskExists),
        };
        done(Reply::ok(&AcquiredData { preload: [], promise: &p, task: &t.wire() }))
    }

    fn task_acquire(&self, r: TaskAcquire) -> Outcome<Reply, R::Error> {
        let Some((mut t, p)) = self.read_task(&r.id)? else { return refuse(Refusal::TaskNotFound) };
        if t.state != TaskState::Pending {
            return refuse(Refusal::TaskNotPending);
        }
        if t.version != r.version {
            return refuse(Refusal::VersionMismatch);
        }
        self.acquire(&mut t, r.pid, r.ttl)?;
        done(Reply::ok(&AcquiredData { preload: [], promise: &p, task: &t.wire() }))
    }

    fn task_fence(&self, r: TaskFence, corr_id: &str) -> Outcome<Reply, R::Error> {
        let action = match Fenced::decode(r.action) {
            Ok(Some(action)) => action,
            Ok(None) => return refuse(Refusal::FenceKind),
            Err(refusal) => return refuse(refusal),
        };
        if action.id() == r.id {
            return refuse(Refusal::FenceSelf);
        }
        if let Err(refusal) = self.held_task(&r.id, r.version, Refusal::VersionMismatch)? {
            return refuse(refusal);
        }
        let kind = action.kind();
        let inner = match action {
            Fenced::Create(c) => match c.check() {
                Ok(()) => self.promise_create(c)?,
                Err(refusal) => Err(refusal),
            },
            Fenced::Settle(s) => match s.check() {
                Ok(()) => self.promise_settle(s)?,
                Err(refusal) => Err(refusal),
            },
        }
        .unwrap_or_else(Reply::from);
        let inner_data: serde_json::Value =
            serde_json::from_str(&inner.data).expect("replies are JSON");
        let data = serde_json::json!({
            "action": {
                "kind": kind,
                "head": { "corrId": corr_id, "status": inner.status, "version": VERSION },
                "data": inner_data,
            },
            "preload": [],
        });
        done(Reply { status: 200, data: data.to_string() })
    }

    fn task_heartbeat(&self, r: TaskHeartbeat) -> Outcome<Reply, R::Error> {
        for task in &r.tasks {
            let Some((mut t, p)) = self.read_task(&task.id)? else { continue };
            let holds = t.state == TaskState::Acquired
                && t.version == task.version
                && t.pid.as_deref() == Some(r.pid.as_str())
                && p.state == PromiseState::Pending;
            if let (true, Some(ttl)) = (holds, t.ttl) {
                t.expires_at = Some(self.now.saturating_add(ttl));
                self.tx.put_task(&t)?;
            }
        }
        done(Reply::empty())
    }

    fn task_suspend(&self, r: TaskSuspend) -> Outcome<Reply, R::Error> {
        let awaited: Vec<&str> = r.actions.iter().map(|a| a.data.awaited.as_str()).collect();
        if awaited.is_empty() {
            return refuse(Refusal::ActionsEmpty);
        }
        if awaited.contains(&r.id.as_str()) {
            return refuse(Refusal::SelfAwait);
        }
        if awaited.iter().enumerate().any(|(i, a)| awaited[..i].contains(a)) {
            return refuse(Refusal::DuplicateAwaited);
        }
        // Materialise the awaited promises first: a timeout settling one of them may resume this
        // very task, so the task is read after them.
        let mut promises = Vec::with_capacity(awaited.len());
        for id in &awaited {
            promises.push(self.read_promise(id)?);
        }
        let (mut t, _) = match self.held_task(&r.id, r.version, Refusal::SuspendConflict)? {
            Ok(held) => held,
            Err(refusal) => return refuse(refusal),
        };
        let Some(promises) = promises.into_iter().collect::<Option<Vec<Promise>>>() else {
            return refuse(Refusal::SuspendAwaitedNotFound);
        };
        if promises.iter().any(|p| !is_external(&p.tags)) {
            return refuse(Refusal::AwaitedInternal);
        }
        t.resumes.clear();
        if promises.iter().any(|p| p.state != PromiseState::Pending) {
            self.tx.put_task(&t)?;
            return done(Reply { status: 300, data: r#"{"preload":[]}"#.to_string() });
        }
        for p in &promises {
            self.tx.add_callback(&p.id, &t.id)?;
        }
        t.state = TaskState::Suspended;
        t.drop_lease();
        t.retry_at = None;
        self.tx.put_task(&t)?;
        done(Reply::empty())
    }

    fn task_fulfill(&self, r: TaskFulfill) -> Outcome<Reply, R::Error> {
        let (_, p) = match self.held_task(&r.id, r.version, Refusal::TaskConflict)? {
            Ok(held) => held,
            Err(refusal) => return refuse(refusal),
        };
        let settle = r.action.data;
        let p = self.settle(p, settle.state.into(), settle.value, self.now)?;
        done(Reply::ok(&PromiseData { promise: &p }))
    }

    fn task_release(&self, r: TaskRelease) -> Outcome<Reply, R::Error> {
        let (mut t, p) = match self.held_task(&r.id, r.version, Refusal::TaskConflict)? {
            Ok(held) => held,
            Err(refusal) => return refuse(refusal),
        };
        t.state = TaskState::Pending;
        t.drop_lease();
        t.retry_at = Some(self.now);
        self.dispatch(&mut t, &p)?;
        self.tx.put_task(&t)?;
        done(Reply::empty())
    }

    fn task_halt(&self, r: TaskHalt) -> Outcome<Reply, R::Error> {
        let Some((mut t, _)) = self.read_task(&r.id)? else { return refuse(Refusal::TaskNotFound) };
        match t.state {
            TaskState::Fulfilled => return refuse(Refusal::TaskFulfilled),
            TaskState::Halted => {}
            _ => {
                t.state = TaskState::Halted;
                t.drop_lease();
                t.retry_at = None;
                self.tx.put_task(&t)?;
            }
        }
        done(Reply::empty())
    }

    fn task_continue(&self, r: TaskContinue) -> Outcome<Reply, R::Error> {
        let Some((mut t, p)) = self.read_task(&r.id)? else { return refuse(Refusal::TaskNotFound) };
        if t.state != TaskState::Halted {
            return refuse(Refusal::TaskNotHalted);
        }
        t.state = TaskState::Pending;
        t.retry_at = Some(self.now);
        self.dispatch(&mut t, &p)?;
        self.tx.put_task(&t)?;
        done(Reply::empty())
    }

    fn task_search(&self, r: TaskSearch) -> Outcome<Reply, R::Error> {
        let state = match r.state.as_deref().map(|s| (s, TaskState::parse(s))) {
            Some((s, None)) => return refuse(Refusal::InvalidStateFilter(s.to_string())),
            Some((_, state)) => state,
            None => None,
        };
        let limit = match search_limit(r.limit, 100) {
            Ok(l) => l,
            Err(refusal) => return refuse(refusal),
        };
        let (tasks, cursor) = self.page(r.cursor, limit, |after, n| self.tx.task_ids(after, n), |id| {
            Ok(self.read_task(id)?.map(|(t, _)| t.wire()).filter(|t| state.is_none_or(|s| s == t.state)))
        })?;
        let cursor = cursor.as_deref();
        #[derive(Serialize)]
        struct Items<'a> {
            tasks: &'a [Task],
        }
        done(Reply::ok(&Page { cursor, items: Items { tasks: &tasks } }))
    }

    /// One page of a search: reads candidate ids after `cursor` in id order (`ids(after, n)`),
    /// keeps what `read` returns, and stops at `limit`. The cursor is the last id returned when
    /// more remain.
    fn page<T>(
        &self,
        cursor: Option<String>,
        limit: usize,
        ids: impl Fn(&str, usize) -> Result<Vec<String>, R::Error>,
        read: impl Fn(&str) -> Result<Option<T>, R::Error>,
    ) -> Result<(Vec<T>, Option<String>), R::Error> {
        let mut found = Vec::new();
        let mut last = Vec::new();
        let mut after = cursor.unwrap_or_default();
        loop {
            let batch = ids(&after, limit + 1)?;
            let exhausted = batch.len() <= limit;
            for id in batch {
                if let Some(item) = read(&id)? {
                    found.push(item);
                    last.push(id.clone());
                    if found.len() > limit {
                        found.truncate(limit);
                        return Ok((found, last.get(limit - 1).cloned()));
                    }
                }
                after = id;
            }
            if exhausted {
                return Ok((found, None));
            }
        }
    }

    // ----- schedule.* -----

    fn schedule_get(&self, r: ScheduleGet) -> Outcome<Reply, R::Error> {
        Ok(match self.tx.schedule(&r.id)? {
            Some(s) => Ok(Reply::ok(&ScheduleData { schedule: &s })),
            None => Err(Refusal::ScheduleNotFound),
        })
    }

    fn schedule_create(&self, r: ScheduleCreate) -> Outcome<Reply, R::Error> {
        let Some(next) = Cron::parse(&r.cron).and_then(|c| c.next_after(self.now)) else {
            return refuse(Refusal::CronInvalid);
        };
        if let Some(s) = self.tx.schedule(&r.id)? {
            return done(Reply::ok(&ScheduleData { schedule: &s }));
        }
        let s = Schedule {
            id: r.id,
            cron: r.cron,
            promise_id: r.promise_id,
            promise_timeout: r.promise_timeout,
            promise_param: r.promise_param,
            promise_tags: r.promise_tags,
            created_at: self.now,
            next_run_at: next,
            last_run_at: None,
        };
        self.tx.put_schedule(&s)?;
        done(Reply::ok(&ScheduleData { schedule: &s }))
    }

    fn schedule_delete(&self, r: ScheduleDelete) -> Outcome<Reply, R::Error> {
        Ok(if self.tx.delete_schedule(&r.id)? {
            Ok(Reply::empty())
        } else {
            Err(Refusal::ScheduleNotFound)
        })
    }

    fn schedule_search(&self, r: ScheduleSearch) -> Outcome<Reply, R::Error> {
        let limit = match search_limit(r.limit, 10) {
            Ok(l) => l,
            Err(refusal) => return refuse(refusal),
        };
        let mut schedules = self.tx.schedules(r.cursor.as_deref().unwrap_or_default(), &r.tags, limit + 1)?;
        let more = schedules.len() > limit;
        schedules.truncate(limit);
        let cursor = more.then(|| schedules.last().map(|s| s.id.as_str())).flatten();
        #[derive(Serialize)]
        struct Items<'a> {
            schedules: &'a [Schedule],
        }
        done(Reply::ok(&Page { cursor, items: Items { schedules: &schedules } }))
    }

    // ----- debug.* (only reachable with --debug) -----

    fn debug_start(&self, _: DebugStart) -> Outcome<Reply, R::Error> {
        self.settings.paused.store(true, Ordering::Relaxed);
        done(Reply::empty())
    }

    fn debug_stop(&self, _: DebugStop) -> Outcome<Reply, R::Error> {
        self.settings.paused.store(false, Ordering::Relaxed);
        done(Reply::empty())
    }

    fn debug_reset(&self, _: DebugReset) -> Outcome<Reply, R::Error> {
        self.tx.reset()?;
        done(Reply::empty())
    }

    fn debug_tick(&self, r: DebugTick) -> Outcome<Reply, R::Error> {
        let at = Machine { now: r.time, ..*self };
        for _ in 0..TICK_PASSES {
            if !at.run_rules()? {
                break;
            }
        }
        done(Reply { status: 200, data: "[]".to_string() })
    }

    fn debug_snap(&self, _: DebugSnap) -> Outcome<Reply, R::Error> {
        done(Reply { status: 200, data: self.tx.snap()? })
    }

    // ----- the background rules -----

    /// One bounded pass of the background rules at `now`: promise timeouts of armed promises (R1,
    /// with their drains), lease timeouts (R5) and dispatches (R6), schedules (R7){% if c.retention %}, retention (R8){% endif %}. Returns whether
    /// work may remain (a batch was full), so the caller runs another pass.
    pub fn run_rules(&self) -> Result<bool, R::Error> {
        let promises = self.tx.due_promises(self.now, RULE_BATCH)?;
        for id in &promises {
            self.read_promise(id)?;
        }
        let tasks = self.tx.due_tasks(self.now, RULE_BATCH)?;
        for id in &tasks {
            let Some((mut t, p)) = self.read_task(id)? else { continue };
            let expired = t.expires_at.is_some_and(|at| at <= self.now);
            if t.state == TaskState::Acquired && expired && p.state == PromiseState::Pending {
                t.state = TaskState::Pending;
                t.drop_lease();
                t.retry_at = Some(self.now);
            }
            self.dispatch(&mut t, &p)?;
            self.tx.put_task(&t)?;
        }
        let schedules = self.tx.due_schedules(self.now, RULE_BATCH)?;
        for id in &schedules {
            self.fire_schedule(id)?;
        }
{% if c.retention %}
        let purged = self.purge()?;
        Ok(promises.len() == RULE_BATCH || tasks.len() == RULE_BATCH || !schedules.is_empty() || purged)
{% else %}
        Ok(promises.len() == RULE_BATCH || tasks.len() == RULE_BATCH || !schedules.is_empty())
{% endif %}
    }
{% if c.retention %}

    /// Rule R8: deletes one batch of promises settled longer than the retention ago, with their
    /// tasks, unless a pending workflow may still read them. Overdue stored-pending promises are
    /// settled first (R1 with its drains), so none of their listeners or awaiters is skipped.
    /// Returns whether a batch was full.
    fn purge(&self) -> Result<bool, R::Error> {
        if self.settings.retention == 0 {
            return Ok(false);
        }
        let horizon = self.now.saturating_sub(self.settings.retention);
        let overdue = self.tx.overdue_promises(horizon, RULE_BATCH)?;
        for id in &overdue {
            self.read_promise(id)?;
        }
        let expired = self.tx.expired_promises(horizon, RULE_BATCH)?;
        for id in &expired {
            self.tx.purge_promise(id)?;
        }
        Ok(overdue.len() == RULE_BATCH || expired.len() == RULE_BATCH)
    }
{% endif %}

    /// Rule R7: creates the promise of each occurrence in [nextRunAt, now] (at most
    /// SCHEDULE_BATCH per firing), never one twice, then moves nextRunAt past them.
    fn fire_schedule(&self, id: &str) -> Result<(), R::Error> {
        let Some(mut s) = self.tx.schedule(id)? else { return Ok(()) };
        let cron = Cron::parse(&s.cron);
        let mut at = s.next_run_at;
        for _ in 0..SCHEDULE_BATCH {
            if at > self.now {
                break;
            }
            let promise_id = s
                .promise_id
                .replace(concat!("{", "{.id}}"), &s.id)
                .replace(concat!("{", "{.timestamp}}"), &at.to_string());
            if self.tx.promise(&promise_id)?.is_none() {
                let mut tags = s.promise_tags.clone();
                tags.insert(SCHEDULE.to_string(), s.id.clone());
                for tag in SCHEDULE_ROOT_TAGS {
                    tags.entry(tag.to_string()).or_insert_with(|| promise_id.clone());
                }
                let create = PromiseCreate {
                    id: promise_id,
                    timeout_at: at.saturating_add(s.promise_timeout),
                    param: s.promise_param.clone(),
                    tags,
                };
                self.birth(create, at)?;
{% if c.metrics %}
                crate::metrics::schedule_promise();
{% endif %}
            }
            s.last_run_at = Some(at);
            at = cron.as_ref().and_then(|c| c.next_after(at)).unwrap_or(i64::MAX);
        }
        s.next_run_at = at;
        self.tx.put_schedule(&s)
    }
}

/// A promise search's state filter: `rejected` matches every rejected state.
fn matches_state(filter: PromiseState, state: PromiseState) -> bool {
    filter == state || (filter == PromiseState::Rejected && state.as_str().starts_with("rejected"))
}

/// A search's page size: `limit` if given (1..=1000), else the kind's default.
fn search_limit(limit: Option<i64>, default: usize) -> std::result::Result<usize, Refusal> {
    match limit {
        None => Ok(default),
        Some(l) if l < 1 => Err(Refusal::LimitNotPositive),
        Some(l) if l > 1000 => Err(Refusal::LimitTooLarge),
        Some(l) => Ok(l as usize),
    }
}
