//! Durable state in one SQLite file in WAL mode, owned by a single writer thread.
//!
//! Group commit: while one transaction commits, requests queue up; the writer then runs every
//! queued step in one transaction, each inside its own savepoint (a step that fails or panics is
//! rolled back alone), commits once, and only then answers each caller. An answer therefore means
//! the step is on disk: with `synchronous=full` the commit is fsynced, with `normal` it survives a
//! killed process but not a power loss.
//!
//! Deadlines live on the rows (no timer tables): `promises.armed_at` is the background timeout of
//! a pending external promise (rule R1); `tasks.due_at` is the lease deadline of an acquired task
//! (R5) or the retry instant of a pending one (R6).

use crate::config::{Config, Settings};
use crate::outbox::{Deliveries, Outgoing};
use crate::machine::{armed_at, Machine, Records, TaskRow};
use crate::protocol::{Promise, PromiseState, Reply, Request, Schedule, TaskState, Tags, Value};
use rusqlite::{params, Connection, OptionalExtension};
use std::cell::Cell;
use std::sync::{mpsc, Arc};
use tokio::sync::{oneshot, Notify};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS promises (
    id TEXT PRIMARY KEY NOT NULL,
    state TEXT NOT NULL,
    param TEXT NOT NULL,
    value TEXT NOT NULL,
    tags TEXT NOT NULL,
    timeout_at INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    settled_at INTEGER,
    armed_at INTEGER
);
CREATE INDEX IF NOT EXISTS promises_armed ON promises (armed_at) WHERE armed_at IS NOT NULL;
CREATE TABLE IF NOT EXISTS tasks (
    id TEXT PRIMARY KEY NOT NULL,
    state TEXT NOT NULL,
    version INTEGER NOT NULL,
    pid TEXT,
    ttl INTEGER,
    expires_at INTEGER,
    retry_at INTEGER,
    resumes TEXT NOT NULL,
    due_at INTEGER
);
CREATE INDEX IF NOT EXISTS tasks_due ON tasks (due_at) WHERE due_at IS NOT NULL;
CREATE TABLE IF NOT EXISTS callbacks (
    awaited TEXT NOT NULL,
    awaiter TEXT NOT NULL,
    PRIMARY KEY (awaited, awaiter)
);
CREATE TABLE IF NOT EXISTS listeners (
    awaited TEXT NOT NULL,
    address TEXT NOT NULL,
    PRIMARY KEY (awaited, address)
);
CREATE TABLE IF NOT EXISTS outbox (
    key TEXT PRIMARY KEY NOT NULL,
    address TEXT NOT NULL,
    message TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    not_before INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS outbox_due ON outbox (not_before);
CREATE TABLE IF NOT EXISTS schedules (
    id TEXT PRIMARY KEY NOT NULL,
    record TEXT NOT NULL,
    next_run_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS schedules_next ON schedules (next_run_at);
{%- if c.retention +%}
CREATE INDEX IF NOT EXISTS promises_settled ON promises (settled_at) WHERE settled_at IS NOT NULL;
CREATE INDEX IF NOT EXISTS promises_pending ON promises (timeout_at) WHERE state = 'pending';
{%- endif +%}
";

/// The most steps one transaction carries.
const MAX_BATCH: usize = 256;

/// A storage failure; the step that met it was rolled back.
#[derive(Debug, Clone)]
pub struct StoreError(pub String);

impl std::fmt::Display for StoreError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        StoreError(e.to_string())
    }
}

impl From<serde_json::Error> for StoreError {
    fn from(e: serde_json::Error) -> Self {
        StoreError(format!("corrupt record: {e}"))
    }
}

type Result<T> = std::result::Result<T, StoreError>;
/// Called after the commit with its outcome.
type Finish = Box<dyn FnOnce(Result<()>) + Send>;
/// Runs one step (or learns that the transaction could not start); says whether to keep it.
type Job = Box<dyn FnOnce(Result<&Tx<'_>>) -> (bool, Finish) + Send>;

/// A handle to the writer thread; cheap to clone.
#[derive(Clone)]
pub struct Store {
    jobs: mpsc::Sender<Job>,
    settings: Arc<Settings>,
{% if c.metrics %}
    /// The database file, which `/metrics` reads on a connection of its own.
    path: Arc<str>,
{% endif %}
}

impl Store {
    /// Opens (creating if needed) the database and starts the writer. `enqueued` is notified after
    /// each commit that queued a message.
    pub async fn open(config: &Config, settings: Arc<Settings>, enqueued: Arc<Notify>) -> Result<Store> {
        config.claim_sqlite_file().map_err(StoreError)?;
        let path = &config.storage_sqlite_path;
        let sync = match config.storage_sqlite_synchronous.as_str() {
            "full" => "FULL",
            "normal" => "NORMAL",
            other => {
                return Err(StoreError(format!(
                    "storage-sqlite-synchronous must be full or normal, got '{other}'"
                )))
            }
        };
        let conn = Connection::open(path).map_err(|e| StoreError(format!("cannot open {path}: {e}")))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", sync)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        conn.execute_batch(SCHEMA)?;
        // What a previous process held for a stream or a push, or backed off, is due now: this
        // process is the only one on the file, and its streams have yet to connect.
        conn.execute_batch("UPDATE outbox SET not_before = 0")?;
        let (jobs, rx) = mpsc::channel();
        std::thread::Builder::new()
            .name("store".into())
            .spawn(move || writer(conn, rx, enqueued))
            .map_err(|e| StoreError(format!("cannot start the store thread: {e}")))?;
        Ok(Store { jobs, settings{% if c.metrics %}, path: path.as_str().into(){% endif %} })
    }

    /// Runs one decoded request at `now`; `corr_id` is echoed inside fenced actions.
    pub async fn execute(&self, request: Request, now: i64, corr_id: String) -> Result<Reply> {
        let settings = self.settings.clone();
        self.run(move |tx| Machine::new(tx, now, &settings).handle(request, &corr_id)).await
    }

    /// One bounded pass of the background rules at `now`; true when more work may remain.
    pub async fn run_rules(&self, now: i64) -> Result<bool> {
        let settings = self.settings.clone();
        self.run(move |tx| Machine::new(tx, now, &settings).run_rules()).await
    }

{% if c.http() %}
    /// Whether the database answers (`GET /ready`).
    pub async fn ping(&self) -> Result<()> {
        self.run(|tx| tx.ping()).await
    }
{% endif %}

{% if c.dashboard %}
    /// The dashboard's read of a promise's callbacks (awaiter ids) and listeners (addresses),
    /// oldest first; it changes nothing (spec/choices.yaml dashboard-waiters).
    pub async fn waiters(&self, id: String) -> Result<(Vec<String>, Vec<String>)> {
        self.run(move |tx| Ok((tx.list("callbacks", "awaiter", &id)?, tx.list("listeners", "address", &id)?))).await
    }

{% endif %}
    /// Queued messages whose next attempt is due, oldest first.
    pub async fn outbox(&self, now: i64, limit: usize) -> Result<Vec<Outgoing>> {
        self.run(move |tx| tx.outbox(now, limit)).await
    }

    /// Records what became of messages handed to the transports; returns how many failed
    /// messages the retry cap dropped.
    pub async fn record_delivery(&self, d: Deliveries) -> Result<usize> {
        let cap = self.settings.retry_cap;
        self.run(move |tx| {
            for (key, message) in &d.done {
                tx.delivered(key, message)?;
            }
            for (key, message, until) in &d.held {
                tx.defer(key, message, *until, false)?;
            }
            for (key, message, until) in &d.failed {
                tx.defer(key, message, *until, true)?;
            }
            if d.failed.is_empty() {
                Ok(0)
            } else {
                tx.cap_failed(cap)
            }
        })
        .await
    }

    /// The earliest instant a postponed message is due, if any.
    pub async fn next_deferred(&self) -> Result<Option<i64>> {
        self.run(|tx| tx.next_deferred()).await
    }

{% if c.metrics %}
    /// Promises and tasks by state and outbox messages by address, for `/metrics`. Read on a
    /// read-only connection of its own (WAL lets it read beside the writer), so a scrape's scans
    /// never hold up a request.
    pub async fn census(&self) -> Result<crate::metrics::Census> {
        let path = self.path.clone();
        let read = move || -> Result<crate::metrics::Census> {
            let conn = Connection::open_with_flags(&*path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)?;
            conn.busy_timeout(std::time::Duration::from_secs(5))?;
            let by_state = |table: &str| -> Result<Vec<(String, i64)>> {
                let mut stmt = conn.prepare(&format!("SELECT state, count(*) FROM {table} GROUP BY state"))?;
                let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?.collect::<rusqlite::Result<_>>()?;
                Ok(rows)
            };
            let promises = by_state("promises")?;
            let tasks = by_state("tasks")?;
            let outbox = conn
                .prepare("SELECT address, count(*), count(*) FILTER (WHERE attempts > 0) FROM outbox GROUP BY address")?
                .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
                .collect::<rusqlite::Result<_>>()?;
            Ok(crate::metrics::Census { promises, tasks, outbox })
        };
        tokio::task::spawn_blocking(read).await.map_err(|e| StoreError(format!("the census failed: {e}")))?
    }

{% endif %}
    /// Runs `step` in the next transaction and answers once that transaction committed.
    async fn run<R, F>(&self, step: F) -> Result<R>
    where
        R: Send + 'static,
        F: FnOnce(&Tx<'_>) -> Result<R> + Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        let job: Job = Box::new(move |tx| {
            let out = match tx {
                Ok(tx) => std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| step(tx)))
                    .unwrap_or_else(|_| Err(StoreError("the step panicked and was rolled back".into()))),
                Err(e) => Err(e),
            };
            let keep = out.is_ok();
            let finish: Finish = Box::new(move |committed| {
                let _ = reply.send(committed.and(out));
            });
            (keep, finish)
        });
        self.jobs.send(job).map_err(|_| StoreError("the store thread stopped".into()))?;
        answer.await.map_err(|_| StoreError("the store thread stopped".into()))?
    }
}

/// The writer loop: one transaction per batch of queued steps.
fn writer(conn: Connection, rx: mpsc::Receiver<Job>, enqueued: Arc<Notify>) {
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let tx = Tx { conn: &conn, enqueued: Cell::new(false) };
        let finishes: Vec<Finish> = match conn.execute_batch("BEGIN IMMEDIATE") {
            Err(e) => {
                let e = StoreError::from(e);
                batch.into_iter().map(|job| job(Err(e.clone())).1).collect()
            }
            Ok(()) => batch.into_iter().map(|job| run_step(&tx, job)).collect(),
        };
        let committed = conn.execute_batch("COMMIT").map_err(StoreError::from);
        if committed.is_err() {
            let _ = conn.execute_batch("ROLLBACK");
        } else if tx.enqueued.get() {
            enqueued.notify_one();
        }
        for finish in finishes {
            finish(committed.clone());
        }
    }
}

/// Runs one step inside its own savepoint, rolling it back alone if it failed.
fn run_step(tx: &Tx<'_>, job: Job) -> Finish {
    if let Err(e) = tx.conn.execute_batch("SAVEPOINT step") {
        return job(Err(e.into())).1;
    }
    let before = tx.enqueued.get();
    let (keep, finish) = job(Ok(tx));
    if !keep {
        let _ = tx.conn.execute_batch("ROLLBACK TO step");
        tx.enqueued.set(before);
    }
    let _ = tx.conn.execute_batch("RELEASE step");
    finish
}

/// The record operations the machine performs inside one transaction.
pub struct Tx<'c> {
    conn: &'c Connection,
    enqueued: Cell<bool>,
}

fn json<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_string(v).expect("records serialise")
}

fn parse_state<T>(s: &str, parse: fn(&str) -> Option<T>) -> rusqlite::Result<T> {
    parse(s).ok_or_else(|| rusqlite::Error::InvalidColumnType(0, s.to_string(), rusqlite::types::Type::Text))
}

impl Tx<'_> {
{% if c.http() %}
    fn ping(&self) -> Result<()> {
        self.conn.query_row("SELECT 1", [], |_| Ok(()))?;
        Ok(())
    }
{% endif %}

    /// A promise's callbacks or listeners, oldest first, left in place.
    fn list(&self, table: &str, column: &str, awaited: &str) -> Result<Vec<String>> {
        let items = self
            .conn
            .prepare_cached(&format!("SELECT {column} FROM {table} WHERE awaited = ?1 ORDER BY rowid"))?
            .query_map([awaited], |r| r.get(0))?
            .collect::<rusqlite::Result<Vec<String>>>()?;
        Ok(items)
    }

    fn take(&self, table: &str, column: &str, awaited: &str) -> Result<Vec<String>> {
        let items = self.list(table, column, awaited)?;
        if !items.is_empty() {
            self.conn
                .prepare_cached(&format!("DELETE FROM {table} WHERE awaited = ?1"))?
                .execute([awaited])?;
        }
        Ok(items)
    }

    fn outbox(&self, now: i64, limit: usize) -> Result<Vec<Outgoing>> {
        let rows = self
            .conn
            .prepare_cached(
                "SELECT key, address, message, attempts FROM outbox WHERE not_before <= ?1
                 ORDER BY not_before, rowid LIMIT ?2",
            )?
            .query_map(params![now, limit as i64], |r| {
                Ok(Outgoing { key: r.get(0)?, address: r.get(1)?, message: r.get(2)?, attempts: r.get(3)? })
            })?
            .collect::<rusqlite::Result<_>>()?;
        Ok(rows)
    }

    /// Removes a delivered message, unless a newer one replaced it meanwhile.
    fn delivered(&self, key: &str, message: &str) -> Result<()> {
        self.conn
            .prepare_cached("DELETE FROM outbox WHERE key = ?1 AND message = ?2")?
            .execute([key, message])?;
        Ok(())
    }

    /// Postpones a message, counting an attempt if it `failed` (else a stream or push holds it).
    fn defer(&self, key: &str, message: &str, not_before: i64, failed: bool) -> Result<()> {
        self.conn
            .prepare_cached(
                "UPDATE outbox SET attempts = attempts + ?4, not_before = ?3 WHERE key = ?1 AND message = ?2",
            )?
            .execute(params![key, message, not_before, i64::from(failed)])?;
        Ok(())
    }

    /// Drops the oldest failed messages of every address beyond `cap`; returns how many.
    fn cap_failed(&self, cap: i64) -> Result<usize> {
        Ok(self
            .conn
            .prepare_cached(
                "DELETE FROM outbox WHERE rowid IN (
                   SELECT rowid FROM (SELECT rowid, row_number() OVER (PARTITION BY address ORDER BY rowid DESC) AS n
                                      FROM outbox WHERE attempts > 0)
                   WHERE n > ?1)",
            )?
            .execute([cap])?)
    }

    /// The earliest instant a deferred message is due, if any.
    fn next_deferred(&self) -> Result<Option<i64>> {
        Ok(self.conn.prepare_cached("SELECT MIN(not_before) FROM outbox")?.query_row([], |r| r.get(0))?)
    }

    fn ids(&self, sql: &str, now: i64, limit: usize) -> Result<Vec<String>> {
        let ids = self
            .conn
            .prepare_cached(sql)?
            .query_map(params![now, limit as i64], |r| r.get(0))?
            .collect::<rusqlite::Result<_>>()?;
        Ok(ids)
    }

    /// Runs `select` for rows with id > `after` whose JSON `column` has every pair of `tags`, in
    /// id order, at most `limit`, returning the first column.
    fn page(&self, select: &str, column: &str, after: &str, tags: &Tags, limit: usize) -> Result<Vec<String>> {
        let mut sql = format!("{select} WHERE id > ?");
        let mut args = vec![after.to_string()];
        for (k, v) in tags {
            sql.push_str(&format!(" AND json_extract({column}, ?) = ?"));
            args.push(format!("$.\"{}\"", k.replace('"', "\\\"")));
            args.push(v.clone());
        }
        sql.push_str(&format!(" ORDER BY id LIMIT {limit}"));
        let rows = self
            .conn
            .prepare(&sql)?
            .query_map(rusqlite::params_from_iter(args), |r| r.get(0))?
            .collect::<rusqlite::Result<_>>()?;
        Ok(rows)
    }
}

impl Records for Tx<'_> {
    type Error = StoreError;

    fn promise(&self, id: &str) -> Result<Option<Promise>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT state, param, value, tags, timeout_at, created_at, settled_at FROM promises WHERE id = ?1",
        )?;
        let row = stmt
            .query_row([id], |r| {
                Ok((
                    parse_state(&r.get::<_, String>(0)?, PromiseState::parse)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, String>(3)?,
                    r.get(4)?,
                    r.get(5)?,
                    r.get(6)?,
                ))
            })
            .optional()?;
        let Some((state, param, value, tags, timeout_at, created_at, settled_at)) = row else {
            return Ok(None);
        };
        Ok(Some(Promise {
            id: id.to_string(),
            state,
            param: serde_json::from_str::<Value>(&param)?,
            value: serde_json::from_str::<Value>(&value)?,
            tags: serde_json::from_str::<Tags>(&tags)?,
            timeout_at,
            created_at,
            settled_at,
        }))
    }

    fn insert_promise(&self, p: &Promise) -> Result<()> {
        self.conn
            .prepare_cached(
                "INSERT INTO promises (id, state, param, value, tags, timeout_at, created_at, settled_at, armed_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            )?
            .execute(params![
                p.id,
                p.state.as_str(),
                json(&p.param),
                json(&p.value),
                json(&p.tags),
                p.timeout_at,
                p.created_at,
                p.settled_at,
                armed_at(p)
            ])?;
        Ok(())
    }

    /// Writes a settlement: state, value, settledAt, and disarms the timeout.
    fn update_promise(&self, p: &Promise) -> Result<()> {
        self.conn
            .prepare_cached("UPDATE promises SET state = ?2, value = ?3, settled_at = ?4, armed_at = ?5 WHERE id = ?1")?
            .execute(params![p.id, p.state.as_str(), json(&p.value), p.settled_at, armed_at(p)])?;
        Ok(())
    }

    fn task(&self, id: &str) -> Result<Option<TaskRow>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT state, version, pid, ttl, expires_at, retry_at, resumes FROM tasks WHERE id = ?1",
        )?;
        let row = stmt
            .query_row([id], |r| {
                Ok((
                    TaskRow {
                        id: id.to_string(),
                        state: parse_state(&r.get::<_, String>(0)?, TaskState::parse)?,
                        version: r.get(1)?,
                        pid: r.get(2)?,
                        ttl: r.get(3)?,
                        expires_at: r.get(4)?,
                        retry_at: r.get(5)?,
                        resumes: Vec::new(),
                    },
                    r.get::<_, String>(6)?,
                ))
            })
            .optional()?;
        let Some((mut t, resumes)) = row else { return Ok(None) };
        t.resumes = serde_json::from_str(&resumes)?;
        Ok(Some(t))
    }

    fn put_task(&self, t: &TaskRow) -> Result<()> {
        self.conn
            .prepare_cached(
                "INSERT INTO tasks (id, state, version, pid, ttl, expires_at, retry_at, resumes, due_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
                 ON CONFLICT (id) DO UPDATE SET state = excluded.state, version = excluded.version,
                   pid = excluded.pid, ttl = excluded.ttl, expires_at = excluded.expires_at,
                   retry_at = excluded.retry_at, resumes = excluded.resumes, due_at = excluded.due_at",
            )?
            .execute(params![
                t.id,
                t.state.as_str(),
                t.version,
                t.pid,
                t.ttl,
                t.expires_at,
                t.retry_at,
                json(&t.resumes),
                t.due_at()
            ])?;
        Ok(())
    }

    fn add_callback(&self, awaited: &str, awaiter: &str) -> Result<()> {
        self.conn
            .prepare_cached("INSERT OR IGNORE INTO callbacks (awaited, awaiter) VALUES (?1, ?2)")?
            .execute([awaited, awaiter])?;
        Ok(())
    }

    /// Removes and returns a promise's callbacks, oldest first.
    fn take_callbacks(&self, awaited: &str) -> Result<Vec<String>> {
        self.take("callbacks", "awaiter", awaited)
    }

    fn add_listener(&self, awaited: &str, address: &str) -> Result<()> {
        self.conn
            .prepare_cached("INSERT OR IGNORE INTO listeners (awaited, address) VALUES (?1, ?2)")?
            .execute([awaited, address])?;
        Ok(())
    }

    /// Removes and returns a promise's listeners, oldest first.
    fn take_listeners(&self, awaited: &str) -> Result<Vec<String>> {
        self.take("listeners", "address", awaited)
    }

    /// Queues a message; a message with the same key replaces the older one.
    fn enqueue(&self, key: &str, address: &str, message: &str) -> Result<()> {
        self.conn
            .prepare_cached(
                "INSERT INTO outbox (key, address, message) VALUES (?1, ?2, ?3)
                 ON CONFLICT (key) DO UPDATE SET address = excluded.address, message = excluded.message,
                   attempts = 0, not_before = 0",
            )?
            .execute([key, address, message])?;
        self.enqueued.set(true);
        Ok(())
    }

    fn schedule(&self, id: &str) -> Result<Option<Schedule>> {
        let record: Option<String> = self
            .conn
            .prepare_cached("SELECT record FROM schedules WHERE id = ?1")?
            .query_row([id], |r| r.get(0))
            .optional()?;
        Ok(record.map(|r| serde_json::from_str(&r)).transpose()?)
    }

    fn put_schedule(&self, s: &Schedule) -> Result<()> {
        self.conn
            .prepare_cached(
                "INSERT INTO schedules (id, record, next_run_at) VALUES (?1, ?2, ?3)
                 ON CONFLICT (id) DO UPDATE SET record = excluded.record, next_run_at = excluded.next_run_at",
            )?
            .execute(params![s.id, json(s), s.next_run_at])?;
        Ok(())
    }

    fn delete_schedule(&self, id: &str) -> Result<bool> {
        Ok(self.conn.prepare_cached("DELETE FROM schedules WHERE id = ?1")?.execute([id])? > 0)
    }

    /// Ids of armed promises whose timeout has come (rule R1).
    fn due_promises(&self, now: i64, limit: usize) -> Result<Vec<String>> {
        self.ids("SELECT id FROM promises WHERE armed_at <= ?1 ORDER BY armed_at LIMIT ?2", now, limit)
    }

    /// Ids of tasks whose lease expired or whose retry has come (rules R5, R6).
    fn due_tasks(&self, now: i64, limit: usize) -> Result<Vec<String>> {
        self.ids("SELECT id FROM tasks WHERE due_at <= ?1 ORDER BY due_at LIMIT ?2", now, limit)
    }

    /// Ids of schedules with an occurrence due (rule R7).
    fn due_schedules(&self, now: i64, limit: usize) -> Result<Vec<String>> {
        self.ids("SELECT id FROM schedules WHERE next_run_at <= ?1 ORDER BY next_run_at LIMIT ?2", now, limit)
    }

{% if c.retention %}
    /// Ids of stored-pending promises whose deadline passed before `horizon` (rule R8 settles
    /// them first, so their drains run).
    fn overdue_promises(&self, horizon: i64, limit: usize) -> Result<Vec<String>> {
        self.ids(
            "SELECT id FROM promises WHERE state = 'pending' AND timeout_at <= ?1 ORDER BY timeout_at LIMIT ?2",
            horizon,
            limit,
        )
    }

    /// Ids of promises settled at or before `horizon` that nothing pending may still read: their
    /// `resonate:origin` is not stored pending and no unfulfilled task lists them in its resumes.
    fn expired_promises(&self, horizon: i64, limit: usize) -> Result<Vec<String>> {
        self.ids(
            "SELECT p.id FROM promises p
             WHERE p.settled_at <= ?1
               AND NOT EXISTS (SELECT 1 FROM promises o
                   WHERE o.id = json_extract(p.tags, '$.\"resonate:origin\"') AND o.state = 'pending')
               AND NOT EXISTS (SELECT 1 FROM tasks t, json_each(t.resumes) r
                   WHERE t.state != 'fulfilled' AND r.value = p.id)
             ORDER BY p.settled_at LIMIT ?2",
            horizon,
            limit,
        )
    }

    /// Deletes a promise, its task and the callbacks it registered as awaiter.
    fn purge_promise(&self, id: &str) -> Result<()> {
        for sql in [
            "DELETE FROM promises WHERE id = ?1",
            "DELETE FROM tasks WHERE id = ?1",
            "DELETE FROM callbacks WHERE awaiter = ?1",
            "DELETE FROM listeners WHERE awaited = ?1",
        ] {
            self.conn.prepare_cached(sql)?.execute([id])?;
        }
        Ok(())
    }

{% endif %}
    /// Promise ids after `after` in id order whose tags include every pair of `tags`.
    fn promise_ids(&self, after: &str, tags: &Tags, limit: usize) -> Result<Vec<String>> {
        self.page("SELECT id FROM promises", "tags", after, tags, limit)
    }

    /// Task ids after `after` in id order.
    fn task_ids(&self, after: &str, limit: usize) -> Result<Vec<String>> {
        let ids = self
            .conn
            .prepare_cached("SELECT id FROM tasks WHERE id > ?1 ORDER BY id LIMIT ?2")?
            .query_map(params![after, limit as i64], |r| r.get(0))?
            .collect::<rusqlite::Result<_>>()?;
        Ok(ids)
    }

    /// Schedules after `after` in id order whose promiseTags include every pair of `tags`.
    fn schedules(&self, after: &str, tags: &Tags, limit: usize) -> Result<Vec<Schedule>> {
        let records = self.page("SELECT record FROM schedules", "json_extract(record, '$.promiseTags')", after, tags, limit)?;
        Ok(records.iter().map(|r| serde_json::from_str(r)).collect::<serde_json::Result<_>>()?)
    }

    /// debug.reset: deletes everything.
    fn reset(&self) -> Result<()> {
        self.conn.execute_batch(
            "DELETE FROM promises; DELETE FROM tasks; DELETE FROM callbacks; DELETE FROM listeners;
             DELETE FROM outbox; DELETE FROM schedules;",
        )?;
        Ok(())
    }

    /// debug.snap: the whole store as JSON, in the official server's shape plus `schedules`.
    fn snap(&self) -> Result<String> {
        use serde_json::{json, Value as J};
        let rows = |sql: &str, f: &dyn Fn(&rusqlite::Row) -> rusqlite::Result<J>| -> Result<Vec<J>> {
            let mut stmt = self.conn.prepare(sql)?;
            let out = stmt.query_map([], |r| f(r))?.collect::<rusqlite::Result<_>>()?;
            Ok(out)
        };
        let ids = rows("SELECT id FROM promises ORDER BY id", &|r| Ok(J::String(r.get(0)?)))?;
        let mut promises = Vec::new();
        for id in ids.iter().filter_map(J::as_str) {
            promises.push(json!(self.promise(id)?));
        }
        let ids = rows("SELECT id FROM tasks ORDER BY id", &|r| Ok(J::String(r.get(0)?)))?;
        let mut tasks = Vec::new();
        let mut task_timeouts = Vec::new();
        for id in ids.iter().filter_map(J::as_str) {
            let Some(t) = self.task(id)? else { continue };
            if let Some(at) = t.due_at() {
                let kind = if t.state == TaskState::Acquired { 1 } else { 0 };
                task_timeouts.push(json!({ "id": id, "type": kind, "timeout": at }));
            }
            tasks.push(json!(t.wire()));
        }
        let snap = json!({
            "promises": promises,
            "promiseTimeouts": rows(
                "SELECT id, armed_at FROM promises WHERE armed_at IS NOT NULL ORDER BY id",
                &|r| Ok(json!({ "id": r.get::<_, String>(0)?, "timeout": r.get::<_, i64>(1)? })),
            )?,
            "callbacks": rows(
                "SELECT awaiter, awaited FROM callbacks ORDER BY awaited, rowid",
                &|r| Ok(json!({ "awaiter": r.get::<_, String>(0)?, "awaited": r.get::<_, String>(1)? })),
            )?,
            "listeners": rows(
                "SELECT awaited, address FROM listeners ORDER BY awaited, rowid",
                &|r| Ok(json!({ "id": r.get::<_, String>(0)?, "address": r.get::<_, String>(1)? })),
            )?,
            "tasks": tasks,
            "taskTimeouts": task_timeouts,
            "messages": rows("SELECT address, message FROM outbox ORDER BY rowid", &|r| {
                let message: J = serde_json::from_str(&r.get::<_, String>(1)?).unwrap_or(J::Null);
                Ok(json!({ "address": r.get::<_, String>(0)?, "message": message }))
            })?,
            "schedules": rows("SELECT record FROM schedules ORDER BY id", &|r| {
                Ok(serde_json::from_str(&r.get::<_, String>(0)?).unwrap_or(J::Null))
            })?,
        });
        Ok(snap.to_string())
    }
}
