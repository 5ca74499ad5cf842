//! The {{ c.crate_name }} store: durable state in MySQL or MariaDB (InnoDB), through a small pool
//! of native connections (the synchronous `mysql` driver, run on tokio's blocking threads).
//!
//! Each request is one InnoDB transaction in which the Rust state machine (machine.rs) runs over
//! [`Tx`], the same record operations the SQLite store offers. Connections run at READ COMMITTED
//! with autocommit off: the first statement opens the transaction, `COMMIT` ends it.
//!
//! Replicas: several processes on one database behave as one server. Every read of a row a
//! request may change is a locking read (`SELECT … FOR UPDATE`); the machine locks a promise
//! before its task, so writers of one promise take turns and a version is issued once. Two
//! requests that both found a row absent and both insert it meet at its primary key. A deadlock
//! (1213), a lock wait timeout (1205) or such a duplicate key (1062) rolls the request back, and it
//! runs again from the start. Background passes claim due rows with `FOR UPDATE SKIP LOCKED`, so
//! each rule fires on one replica. MySQL has no notifications: the delivery loop looks at the
//! outbox every `messages-poll-interval` ms while this process holds SSE streams, and otherwise
//! sleeps until its own commits queue a message or a deadline comes.

use crate::config::{Config, Settings};
use crate::outbox::{Deliveries, Outgoing};
use crate::machine::{armed_at, Machine, Records, TaskRow};
use crate::protocol::{Promise, PromiseState, Refusal, Reply, Request, Schedule, TaskState, Tags, Value};
use crate::url::{redact, scrub};
use mysql::prelude::{FromRow, Queryable};
use mysql::{Conn, Opts, OptsBuilder, Params};
use std::cell::{Cell, RefCell};
use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{Notify, Semaphore};

/// The schema version this server writes; a database with another one is refused.
const SCHEMA_VERSION: &str = "1";

/// The tables, created if absent. Ids are byte strings (`VARBINARY`), so they sort as Rust
/// strings do and hold any character; records and messages are JSON text.
const SCHEMA: [&str; 7] = [
    "CREATE TABLE IF NOT EXISTS meta (
        name VARCHAR(64) NOT NULL PRIMARY KEY,
        value VARCHAR(64) NOT NULL
    ) ENGINE = InnoDB",
    // armed_at: the background timeout of a pending external promise (rule R1).
    "CREATE TABLE IF NOT EXISTS promises (
        id VARBINARY(1024) NOT NULL PRIMARY KEY,
        state VARCHAR(32) NOT NULL,
        param LONGTEXT CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
        value LONGTEXT CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
        tags LONGTEXT CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
        timeout_at BIGINT NOT NULL,
        created_at BIGINT NOT NULL,
        settled_at BIGINT NULL,
        armed_at BIGINT NULL,
        KEY promises_armed (armed_at){% if c.retention %},
        KEY promises_settled (settled_at),
        KEY promises_pending (state, timeout_at){% endif %}
    ) ENGINE = InnoDB",
    // due_at: the lease deadline of an acquired task (R5) or the retry of a pending one (R6).
    "CREATE TABLE IF NOT EXISTS tasks (
        id VARBINARY(1024) NOT NULL PRIMARY KEY,
        state VARCHAR(32) NOT NULL,
        version BIGINT NOT NULL,
        pid LONGTEXT CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NULL,
        ttl BIGINT NULL,
        expires_at BIGINT NULL,
        retry_at BIGINT NULL,
        resumes LONGTEXT CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
        due_at BIGINT NULL,
        KEY tasks_due (due_at)
    ) ENGINE = InnoDB",
    "CREATE TABLE IF NOT EXISTS callbacks (
        awaited VARBINARY(1024) NOT NULL,
        awaiter VARBINARY(1024) NOT NULL,
        seq BIGINT NOT NULL AUTO_INCREMENT,
        PRIMARY KEY (awaited, awaiter),
        KEY callbacks_seq (seq)
    ) ENGINE = InnoDB",
    "CREATE TABLE IF NOT EXISTS listeners (
        awaited VARBINARY(1024) NOT NULL,
        address VARBINARY(2000) NOT NULL,
        seq BIGINT NOT NULL AUTO_INCREMENT,
        PRIMARY KEY (awaited, address),
        KEY listeners_seq (seq)
    ) ENGINE = InnoDB",
    // poll_group / poll_path: for poll:// addresses, the group and `group[/id]` the address
    // names, so a replica claims only messages for the streams it holds.
    "CREATE TABLE IF NOT EXISTS outbox (
        `key` VARBINARY(3072) NOT NULL PRIMARY KEY,
        address VARBINARY(2000) NOT NULL,
        message LONGTEXT CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
        attempts BIGINT NOT NULL DEFAULT 0,
        not_before BIGINT NOT NULL DEFAULT 0,
        any_cast BOOLEAN NOT NULL DEFAULT FALSE,
        poll_group VARBINARY(2000) NULL,
        poll_path VARBINARY(2000) NULL,
        seq BIGINT NOT NULL AUTO_INCREMENT,
        KEY outbox_due (not_before),
        KEY outbox_seq (seq)
    ) ENGINE = InnoDB",
    "CREATE TABLE IF NOT EXISTS schedules (
        id VARBINARY(1024) NOT NULL PRIMARY KEY,
        record LONGTEXT CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
        next_run_at BIGINT NOT NULL,
        KEY schedules_next (next_run_at)
    ) ENGINE = InnoDB",
];

/// MySQL error codes after which a request is rolled back and run again.
const ER_LOCK_WAIT_TIMEOUT: u16 = 1205;
const ER_LOCK_DEADLOCK: u16 = 1213;
const ER_DUP_ENTRY: u16 = 1062;
/// A value wider than its column: an id or address past the key columns' widths.
const ER_DATA_TOO_LONG: u16 = 1406;
/// The width of the id columns: a schedule whose occurrences could expand past it is refused
/// when it is created, not failed at every firing.
const MAX_ID_BYTES: usize = 1024;
/// How often one request is tried before its error is answered.
const MAX_ATTEMPTS: u32 = 20;
/// How long a claimed message is held from other replicas while this one sends it.
const CLAIM_HOLD_MS: i64 = 30_000;
/// How long a new connection may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a request waits for a row lock before it is rolled back and tried again.
const LOCK_WAIT_SECONDS: u32 = 10;

/// A storage failure; the transaction that met it was rolled back.
#[derive(Debug, Clone)]
pub struct StoreError {
    message: String,
    /// Rolled back by a deadlock, a lock wait timeout or a racing insert: worth running again.
    retry: bool,
    /// The connection failed (not the statement): it is closed rather than reused.
    lost: bool,
    /// An id or address too long for its column: the request is refused, not failed.
    too_long: bool,
}

impl StoreError {
    fn new(message: impl Into<String>) -> StoreError {
        StoreError { message: message.into(), retry: false, lost: false, too_long: false }
    }
}

impl std::fmt::Display for StoreError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl From<mysql::Error> for StoreError {
    fn from(e: mysql::Error) -> Self {
        let retry = matches!(&e, mysql::Error::MySqlError(m)
            if m.code == ER_LOCK_DEADLOCK || m.code == ER_LOCK_WAIT_TIMEOUT || m.code == ER_DUP_ENTRY);
        let lost = !matches!(&e, mysql::Error::MySqlError(_) | mysql::Error::FromValueError(_) | mysql::Error::FromRowError(_));
        let too_long = matches!(&e, mysql::Error::MySqlError(m) if m.code == ER_DATA_TOO_LONG);
        StoreError { message: e.to_string(), retry, lost, too_long }
    }
}

impl From<serde_json::Error> for StoreError {
    fn from(e: serde_json::Error) -> Self {
        StoreError::new(format!("corrupt record: {e}"))
    }
}

type Result<T> = std::result::Result<T, StoreError>;

/// A fixed number of connections, opened on demand and reused.
struct Pool {
    opts: Opts,
    idle: Mutex<Vec<Conn>>,
    permits: Arc<Semaphore>,
}

impl Pool {
    /// Runs `work` with a connection on a blocking thread. A connection that failed is closed
    /// rather than reused.
    async fn with<R, F>(self: &Arc<Self>, work: F) -> Result<R>
    where
        R: Send + 'static,
        F: FnOnce(&RefCell<Conn>) -> Result<R> + Send + 'static,
    {
        let permit = self.permits.clone().acquire_owned().await.map_err(|_| StoreError::new("the pool is closed"))?;
        let pool = self.clone();
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            let idle = pool.idle.lock().expect("pool lock").pop();
            let conn = RefCell::new(match idle {
                Some(conn) => conn,
                None => connect(&pool.opts)?,
            });
            let out = work(&conn);
            if out.as_ref().err().is_none_or(|e| !e.lost) {
                pool.idle.lock().expect("pool lock").push(conn.into_inner());
            }
            out
        })
        .await
        .map_err(|e| StoreError::new(format!("a store thread failed: {e}")))?
    }
}

/// Opens a connection: READ COMMITTED, autocommit off, a bounded lock wait, and strict mode
/// whatever the server's default: a value too wide for its column is an error, never truncated
/// (two long ids must not become one).
fn connect(opts: &Opts) -> Result<Conn> {
    let mut conn = Conn::new(opts.clone())?;
    conn.query_drop("SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED")?;
    conn.query_drop(format!(
        "SET autocommit = 0, innodb_lock_wait_timeout = {LOCK_WAIT_SECONDS}, \
         sql_mode = 'STRICT_ALL_TABLES,ERROR_FOR_DIVISION_BY_ZERO,NO_ENGINE_SUBSTITUTION'"
    ))?;
    Ok(conn)
}

/// A handle to the database; cheap to clone.
#[derive(Clone)]
pub struct Store {
    pool: Arc<Pool>,
    settings: Arc<Settings>,
    /// Notified after a commit that queued a message, so this process's delivery loop looks.
    enqueued: Arc<Notify>,
    poll_interval: i64,
}

impl Store {
    /// Connects, creates the tables if absent and checks the schema version; `enqueued` is
    /// notified after each commit of this process that queued a message.
    pub async fn open(config: &Config, settings: Arc<Settings>, enqueued: Arc<Notify>) -> Result<Store> {
        let url = config.storage_mysql_url.clone();
        if url.is_empty() {
            return Err(StoreError::new(
                "no database: pass --storage-mysql-url (or RESONATE_STORAGE__MYSQL__URL), \
                 e.g. mysql://root@127.0.0.1:3306/resonate",
            ));
        }
        // A URL the driver cannot parse is not echoed: where its password would be is unknown.
        let opts = Opts::from_url(&url).map_err(|e| {
            StoreError::new(scrub(format!("storage-mysql-url is not a valid MySQL URL (mysql://user:password@host:port/database): {e}"), &url))
        })?;
        if opts.get_db_name().is_none_or(str::is_empty) {
            return Err(StoreError::new(format!(
                "storage-mysql-url {} names no database, e.g. mysql://root@127.0.0.1:3306/resonate",
                redact(&url)
            )));
        }
        let opts: Opts = OptsBuilder::from_opts(opts)
            .tcp_connect_timeout(Some(CONNECT_TIMEOUT))
            .stmt_cache_size(Some(64))
            .into();
        let size = usize::try_from(config.storage_mysql_pool_size).unwrap_or(1).max(1);
        let pool = Arc::new(Pool { opts, idle: Mutex::new(Vec::new()), permits: Arc::new(Semaphore::new(size)) });
        let unreachable = |e: StoreError| StoreError::new(scrub(format!("cannot use MySQL at {}: {e}", redact(&url)), &url));
        pool.with(migrate).await.map_err(unreachable)?;
        Ok(Store { pool, settings, enqueued, poll_interval: config.messages_poll_interval })
    }

    /// How often, in ms, the delivery loop looks at the outbox while this process holds streams.
    pub fn poll_interval(&self) -> i64 {
        self.poll_interval
    }

    /// Runs one decoded request at `now`; `corr_id` is echoed inside fenced actions.
    pub async fn execute(&self, request: Request, now: i64, corr_id: String) -> Result<Reply> {
        let settings = self.settings.clone();
        // debug.tick runs every due rule: it waits for rows requests hold instead of skipping them.
        let patient = matches!(request, Request::DebugTick(_));
        if matches!(&request, Request::ScheduleCreate(s) if s.longest_promise_id() > MAX_ID_BYTES) {
            return Ok(Refusal::TooLong.into());
        }
        let reply = self
            .transaction(move |tx| {
                tx.patient.set(patient);
                Machine::new(tx, now, &settings).handle(request.clone(), &corr_id)
            })
            .await;
        match reply {
            // Rolled back: the request changed nothing.
            Err(e) if e.too_long => Ok(Reply::from(Refusal::TooLong)),
            other => other,
        }
    }

    /// One bounded pass of the background rules at `now`, unless debug.start paused them while
    /// this pass waited for a connection; true when more work may remain.
    pub async fn run_rules(&self, now: i64) -> Result<bool> {
        let settings = self.settings.clone();
        self.transaction(move |tx| {
            if settings.paused.load(Ordering::Relaxed) {
                return Ok(false);
            }
            Machine::new(tx, now, &settings).run_rules()
        })
        .await
    }

{% if c.http() %}
    /// Whether the database answers (`GET /ready`).
    pub async fn ping(&self) -> Result<()> {
        self.pool.with(|conn| Ok(conn.borrow_mut().query_drop("SELECT 1")?)).await
    }
{% endif %}

    /// Claims due messages this replica can deliver (pushes, and poll:// messages for the
    /// `streams` it holds: group names and `group/id`s); also answers when the next one falls due.
    pub async fn outbox(&self, now: i64, limit: usize, streams: (Vec<String>, Vec<String>)) -> Result<(Vec<Outgoing>, Option<i64>)> {
        self.transaction(move |tx| tx.claim(now, limit, &streams.0, &streams.1)).await
    }

    /// Records what became of messages handed to the transports; returns how many failed
    /// messages the retry cap dropped.
    pub async fn record_delivery(&self, d: Deliveries) -> Result<usize> {
        let postponed = !d.failed.is_empty();
        let cap = self.settings.retry_cap;
        let dropped = self
            .transaction(move |tx| {
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
            .await?;
        if postponed {
            // The delivery loop learns the new due time from its next claim.
            self.enqueued.notify_one();
        }
        Ok(dropped)
    }

    /// Runs `step` in one transaction and commits it; a transaction rolled back by a deadlock,
    /// a lock wait timeout or a racing insert runs again from the start.
    async fn transaction<R, F>(&self, step: F) -> Result<R>
    where
        R: Send + 'static,
        F: Fn(&Tx<'_>) -> Result<R> + Send + 'static,
    {
        let enqueued = self.enqueued.clone();
        self.pool
            .with(move |conn| {
                let mut attempt = 1;
                loop {
                    let tx = Tx::new(conn);
                    let out = step(&tx).and_then(|r| tx.commit().map(|()| r));
                    let queued = tx.enqueued.get();
                    match out {
                        Ok(r) => {
                            if queued {
                                enqueued.notify_one();
                            }
                            return Ok(r);
                        }
                        Err(e) => {
                            let _ = conn.borrow_mut().query_drop("ROLLBACK");
                            if !e.retry || attempt == MAX_ATTEMPTS {
                                return Err(e);
                            }
                            crate::log!(Debug, "transaction rolled back ({e}); attempt {}", attempt + 1);
                            std::thread::sleep(Duration::from_millis(u64::from(attempt)));
                            attempt += 1;
                        }
                    }
                }
            })
            .await
    }
}

/// Creates the tables if absent and checks the schema version, under a named lock so replicas
/// starting together take turns.
fn migrate(conn: &RefCell<Conn>) -> Result<()> {
    let conn = &mut *conn.borrow_mut();
    let locked: Option<Option<i64>> = conn.query_first("SELECT GET_LOCK('resonate_schema', 30)")?;
    if locked.flatten() != Some(1) {
        return Err(StoreError::new("cannot take the schema lock (another server holds it)"));
    }
    let created = (|| {
        for statement in SCHEMA {
            conn.query_drop(statement)?;
        }
        conn.exec_drop("INSERT IGNORE INTO meta (name, value) VALUES ('schema', ?)", (SCHEMA_VERSION,))?;
        let version: Option<String> = conn.query_first("SELECT value FROM meta WHERE name = 'schema'")?;
        conn.query_drop("COMMIT")?;
        match version.as_deref() {
            Some(SCHEMA_VERSION) => Ok(()),
            other => Err(StoreError::new(format!(
                "the database has schema version {}, this server writes version {SCHEMA_VERSION}",
                other.unwrap_or("none")
            ))),
        }
    })();
    let _ = conn.query_drop("DO RELEASE_LOCK('resonate_schema')");
    created.map_err(|e| StoreError::new(format!("cannot create the schema: {e}")))
}

/// The record operations the machine performs inside one transaction.
pub struct Tx<'c> {
    conn: &'c RefCell<Conn>,
    /// Whether this transaction queued a message.
    enqueued: Cell<bool>,
    /// Schedules this transaction read as absent: writing one inserts it, so a replica that
    /// inserted it meanwhile makes this transaction run again (a duplicate key).
    absent: RefCell<HashSet<String>>,
    /// Whether background passes wait for rows other transactions hold (debug.tick) rather than
    /// skip them (`SKIP LOCKED`, so that replicas share the work).
    patient: Cell<bool>,
}

fn json<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_string(v).expect("records serialise")
}

fn parse_state<T>(s: &str, parse: fn(&str) -> Option<T>) -> Result<T> {
    parse(s).ok_or_else(|| StoreError::new(format!("corrupt record: unknown state '{s}'")))
}

/// `?, ?, ?` for a list of `n` values.
fn marks(n: usize) -> String {
    vec!["?"; n].join(", ")
}

/// The group and the `group[/id]` a `poll://cast@group[/id]` address names, and whether it is
/// an `any` cast.
fn poll_target(address: &str) -> Option<(bool, &str, &str)> {
    let (cast, path) = address.strip_prefix("poll://")?.split_once('@')?;
    let group = path.split('/').next().unwrap_or(path);
    Some((cast == "any", group, path))
}

type PromiseRow = (String, String, String, String, i64, i64, Option<i64>);
type TaskFields = (String, i64, Option<String>, Option<i64>, Option<i64>, Option<i64>, String);

impl<'c> Tx<'c> {
    fn new(conn: &'c RefCell<Conn>) -> Tx<'c> {
        Tx { conn, enqueued: Cell::new(false), absent: RefCell::default(), patient: Cell::new(false) }
    }

    fn commit(&self) -> Result<()> {
        self.run("COMMIT", ())
    }

    /// How a background pass locks the rows it claims.
    fn claiming(&self) -> &'static str {
        if self.patient.get() {
            "FOR UPDATE"
        } else {
            "FOR UPDATE SKIP LOCKED"
        }
    }

    /// Runs a statement that returns no rows.
    fn run(&self, sql: &str, params: impl Into<Params>) -> Result<()> {
        Ok(self.conn.borrow_mut().exec_drop(sql, params)?)
    }

    /// Runs a statement and returns how many rows it changed.
    fn changed(&self, sql: &str, params: impl Into<Params>) -> Result<u64> {
        let mut conn = self.conn.borrow_mut();
        conn.exec_drop(sql, params)?;
        Ok(conn.affected_rows())
    }

    fn first<T: FromRow>(&self, sql: &str, params: impl Into<Params>) -> Result<Option<T>> {
        Ok(self.conn.borrow_mut().exec_first(sql, params)?)
    }

    fn rows<T: FromRow>(&self, sql: &str, params: impl Into<Params>) -> Result<Vec<T>> {
        Ok(self.conn.borrow_mut().exec(sql, params)?)
    }

    /// Claims up to `limit` due messages this process can deliver, holding them from other
    /// replicas for CLAIM_HOLD_MS; also answers when the next such message falls due.
    fn claim(&self, now: i64, limit: usize, groups: &[String], streams: &[String]) -> Result<(Vec<Outgoing>, Option<i64>)> {
        // Pushes (no poll group), any-casts to a group held here, messages for a stream held here.
        let mut mine = "(poll_group IS NULL".to_string();
        let mut args: Vec<mysql::Value> = Vec::new();
        if !groups.is_empty() {
            mine.push_str(&format!(" OR (any_cast AND poll_group IN ({}))", marks(groups.len())));
            args.extend(groups.iter().map(|g| g.as_str().into()));
        }
        if !streams.is_empty() {
            mine.push_str(&format!(" OR poll_path IN ({})", marks(streams.len())));
            args.extend(streams.iter().map(|s| s.as_str().into()));
        }
        mine.push(')');
        let mut due = vec![mysql::Value::from(now)];
        due.extend(args.iter().cloned());
        due.push((limit as u64).into());
        let rows: Vec<(String, String, String, i64)> = self.rows(
            &format!(
                "SELECT `key`, address, message, attempts FROM outbox WHERE not_before <= ? AND {mine}
                 ORDER BY not_before, seq LIMIT ? FOR UPDATE SKIP LOCKED"
            ),
            Params::Positional(due),
        )?;
        if !rows.is_empty() {
            let mut hold = vec![mysql::Value::from(now + CLAIM_HOLD_MS)];
            hold.extend(rows.iter().map(|r| r.0.as_str().into()));
            self.run(&format!("UPDATE outbox SET not_before = ? WHERE `key` IN ({})", marks(rows.len())), Params::Positional(hold))?;
        }
        let next: Option<Option<i64>> =
            self.first(&format!("SELECT MIN(not_before) FROM outbox WHERE {mine}"), Params::Positional(args))?;
        let rows = rows
            .into_iter()
            .map(|(key, address, message, attempts)| Outgoing { key, address, message, attempts })
            .collect();
        Ok((rows, next.flatten()))
    }

    /// Removes a delivered message, unless a newer one replaced it meanwhile.
    fn delivered(&self, key: &str, message: &str) -> Result<()> {
        self.run("DELETE FROM outbox WHERE `key` = ? AND message = ?", (key, message))
    }

    /// Postpones a message, counting an attempt if it `failed` (else a stream or push holds it).
    fn defer(&self, key: &str, message: &str, not_before: i64, failed: bool) -> Result<()> {
        self.run(
            "UPDATE outbox SET attempts = attempts + ?, not_before = ? WHERE `key` = ? AND message = ?",
            (i64::from(failed), not_before, key, message),
        )
    }

    /// Drops the oldest failed messages of every address beyond `cap`; returns how many.
    fn cap_failed(&self, cap: i64) -> Result<usize> {
        let dropped = self.changed(
            "DELETE FROM outbox WHERE `key` IN (
               SELECT `key` FROM (SELECT `key`, ROW_NUMBER() OVER (PARTITION BY address ORDER BY seq DESC) AS n
                                  FROM outbox WHERE attempts > 0) ranked
               WHERE n > ?)",
            (cap,),
        )?;
        Ok(usize::try_from(dropped).unwrap_or(usize::MAX))
    }
}

impl Records for Tx<'_> {
    type Error = StoreError;

    fn promise(&self, id: &str) -> Result<Option<Promise>> {
        let row: Option<PromiseRow> = self.first(
            "SELECT state, param, value, tags, timeout_at, created_at, settled_at FROM promises WHERE id = ? FOR UPDATE",
            (id,),
        )?;
        let Some((state, param, value, tags, timeout_at, created_at, settled_at)) = row else {
            return Ok(None);
        };
        Ok(Some(Promise {
            id: id.to_string(),
            state: parse_state(&state, PromiseState::parse)?,
            param: serde_json::from_str::<Value>(&param)?,
            value: serde_json::from_str::<Value>(&value)?,
            tags: serde_json::from_str::<Tags>(&tags)?,
            timeout_at,
            created_at,
            settled_at,
        }))
    }

    fn insert_promise(&self, p: &Promise) -> Result<()> {
        self.run(
            "INSERT INTO promises (id, state, param, value, tags, timeout_at, created_at, settled_at, armed_at)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                &p.id,
                p.state.as_str(),
                json(&p.param),
                json(&p.value),
                json(&p.tags),
                p.timeout_at,
                p.created_at,
                p.settled_at,
                armed_at(p),
            ),
        )
    }

    /// Writes a settlement: state, value, settledAt, and disarms the timeout.
    fn update_promise(&self, p: &Promise) -> Result<()> {
        self.run(
            "UPDATE promises SET state = ?, value = ?, settled_at = ?, armed_at = ? WHERE id = ?",
            (p.state.as_str(), json(&p.value), p.settled_at, armed_at(p), &p.id),
        )
    }

    fn task(&self, id: &str) -> Result<Option<TaskRow>> {
        let row: Option<TaskFields> = self.first(
            "SELECT state, version, pid, ttl, expires_at, retry_at, resumes FROM tasks WHERE id = ? FOR UPDATE",
            (id,),
        )?;
        let Some((state, version, pid, ttl, expires_at, retry_at, resumes)) = row else {
            return Ok(None);
        };
        Ok(Some(TaskRow {
            id: id.to_string(),
            state: parse_state(&state, TaskState::parse)?,
            version,
            pid,
            ttl,
            expires_at,
            retry_at,
            resumes: serde_json::from_str(&resumes)?,
        }))
    }

    fn put_task(&self, t: &TaskRow) -> Result<()> {
        let values = (
            t.state.as_str(),
            t.version,
            &t.pid,
            t.ttl,
            t.expires_at,
            t.retry_at,
            json(&t.resumes),
            t.due_at(),
            &t.id,
        );
        // A task is born with its promise, whose insert settles any race to create it.
        self.run(
            "INSERT INTO tasks (state, version, pid, ttl, expires_at, retry_at, resumes, due_at, id)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
             ON DUPLICATE KEY UPDATE state = VALUES(state), version = VALUES(version), pid = VALUES(pid),
               ttl = VALUES(ttl), expires_at = VALUES(expires_at), retry_at = VALUES(retry_at),
               resumes = VALUES(resumes), due_at = VALUES(due_at)",
            values,
        )
    }

    /// Registers a callback once. (Not INSERT IGNORE: it would truncate a value too wide for
    /// its column instead of refusing it.)
    fn add_callback(&self, awaited: &str, awaiter: &str) -> Result<()> {
        self.run(
            "INSERT INTO callbacks (awaited, awaiter) VALUES (?, ?) ON DUPLICATE KEY UPDATE awaiter = awaiter",
            (awaited, awaiter),
        )
    }

    /// Removes and returns a promise's callbacks, oldest first.
    fn take_callbacks(&self, awaited: &str) -> Result<Vec<String>> {
        let items = self.rows("SELECT awaiter FROM callbacks WHERE awaited = ? ORDER BY seq FOR UPDATE", (awaited,))?;
        if !items.is_empty() {
            self.run("DELETE FROM callbacks WHERE awaited = ?", (awaited,))?;
        }
        Ok(items)
    }

    /// Registers a listener once (not INSERT IGNORE, as for callbacks).
    fn add_listener(&self, awaited: &str, address: &str) -> Result<()> {
        self.run(
            "INSERT INTO listeners (awaited, address) VALUES (?, ?) ON DUPLICATE KEY UPDATE address = address",
            (awaited, address),
        )
    }

    /// Removes and returns a promise's listeners, oldest first.
    fn take_listeners(&self, awaited: &str) -> Result<Vec<String>> {
        let items = self.rows("SELECT address FROM listeners WHERE awaited = ? ORDER BY seq FOR UPDATE", (awaited,))?;
        if !items.is_empty() {
            self.run("DELETE FROM listeners WHERE awaited = ?", (awaited,))?;
        }
        Ok(items)
    }

    /// Queues a message; a message with the same key replaces the older one.
    fn enqueue(&self, key: &str, address: &str, message: &str) -> Result<()> {
        let target = poll_target(address);
        self.run(
            "INSERT INTO outbox (`key`, address, message, any_cast, poll_group, poll_path) VALUES (?, ?, ?, ?, ?, ?)
             ON DUPLICATE KEY UPDATE address = VALUES(address), message = VALUES(message), attempts = 0,
               not_before = 0, any_cast = VALUES(any_cast), poll_group = VALUES(poll_group),
               poll_path = VALUES(poll_path)",
            (key, address, message, target.is_some_and(|t| t.0), target.map(|t| t.1), target.map(|t| t.2)),
        )?;
        self.enqueued.set(true);
        Ok(())
    }

    fn schedule(&self, id: &str) -> Result<Option<Schedule>> {
        let record: Option<String> = self.first("SELECT record FROM schedules WHERE id = ? FOR UPDATE", (id,))?;
        if record.is_none() {
            self.absent.borrow_mut().insert(id.to_string());
        }
        Ok(record.map(|r| serde_json::from_str(&r)).transpose()?)
    }

    fn put_schedule(&self, s: &Schedule) -> Result<()> {
        if self.absent.borrow_mut().remove(&s.id) {
            self.run("INSERT INTO schedules (record, next_run_at, id) VALUES (?, ?, ?)", (json(s), s.next_run_at, &s.id))
        } else {
            self.run(
                "INSERT INTO schedules (record, next_run_at, id) VALUES (?, ?, ?)
                 ON DUPLICATE KEY UPDATE record = VALUES(record), next_run_at = VALUES(next_run_at)",
                (json(s), s.next_run_at, &s.id),
            )
        }
    }

    fn delete_schedule(&self, id: &str) -> Result<bool> {
        Ok(self.changed("DELETE FROM schedules WHERE id = ?", (id,))? > 0)
    }

    /// Ids of armed promises whose timeout has come (rule R1), locked; rows another transaction
    /// holds are skipped (another replica handles them, or a request settles them).
    fn due_promises(&self, now: i64, limit: usize) -> Result<Vec<String>> {
        self.rows(
            &format!("SELECT id FROM promises WHERE armed_at <= ? ORDER BY armed_at LIMIT ? {}", self.claiming()),
            (now, limit as u64),
        )
    }

    /// Ids of tasks whose lease expired or whose retry has come (rules R5, R6). Their promises
    /// are locked, skipping those another transaction holds: the machine locks a promise before
    /// its task, and so does this pass.
    fn due_tasks(&self, now: i64, limit: usize) -> Result<Vec<String>> {
        let due: Vec<String> = self.rows("SELECT id FROM tasks WHERE due_at <= ? ORDER BY due_at LIMIT ?", (now, limit as u64))?;
        if due.is_empty() {
            return Ok(due);
        }
        let args: Vec<mysql::Value> = due.iter().map(|id| id.as_str().into()).collect();
        let locked: HashSet<String> = self
            .rows::<String>(
                &format!("SELECT id FROM promises WHERE id IN ({}) {}", marks(due.len()), self.claiming()),
                Params::Positional(args),
            )?
            .into_iter()
            .collect();
        Ok(due.into_iter().filter(|id| locked.contains(id)).collect())
    }

    /// Ids of schedules with an occurrence due (rule R7), locked, skipping those another
    /// transaction holds.
    fn due_schedules(&self, now: i64, limit: usize) -> Result<Vec<String>> {
        self.rows(
            &format!("SELECT id FROM schedules WHERE next_run_at <= ? ORDER BY next_run_at LIMIT ? {}", self.claiming()),
            (now, limit as u64),
        )
    }

{% if c.retention %}
    /// Ids of stored-pending promises whose deadline passed before `horizon` (rule R8 settles
    /// them first, so their drains run), locked like the other background claims.
    fn overdue_promises(&self, horizon: i64, limit: usize) -> Result<Vec<String>> {
        self.rows(
            &format!(
                "SELECT id FROM promises WHERE state = 'pending' AND timeout_at <= ? ORDER BY timeout_at LIMIT ? {}",
                self.claiming()
            ),
            (horizon, limit as u64),
        )
    }

    /// Ids of promises settled at or before `horizon` that nothing pending may still read: their
    /// `resonate:origin` is not stored pending and no unfulfilled task lists them in its resumes.
    fn expired_promises(&self, horizon: i64, limit: usize) -> Result<Vec<String>> {
        self.rows(
            "SELECT p.id FROM promises p
             WHERE p.settled_at <= ?
               AND NOT EXISTS (SELECT 1 FROM promises o
                   WHERE o.id = JSON_UNQUOTE(JSON_EXTRACT(p.tags, '$.\"resonate:origin\"')) AND o.state = 'pending')
               AND NOT EXISTS (SELECT 1 FROM tasks t
                   WHERE t.state <> 'fulfilled' AND JSON_CONTAINS(t.resumes, JSON_QUOTE(CONVERT(p.id USING utf8mb4))))
             ORDER BY p.settled_at LIMIT ?",
            (horizon, limit as u64),
        )
    }

    /// Deletes a promise, its task and the callbacks it registered as awaiter.
    fn purge_promise(&self, id: &str) -> Result<()> {
        for sql in [
            "DELETE FROM promises WHERE id = ?",
            "DELETE FROM tasks WHERE id = ?",
            "DELETE FROM callbacks WHERE awaiter = ?",
            "DELETE FROM listeners WHERE awaited = ?",
        ] {
            self.run(sql, (id,))?;
        }
        Ok(())
    }

{% endif %}
    /// Promise ids after `after` in id order whose tags include every pair of `tags`.
    fn promise_ids(&self, after: &str, tags: &Tags, limit: usize) -> Result<Vec<String>> {
        if tags.is_empty() {
            return self.rows("SELECT id FROM promises WHERE id > ? ORDER BY id LIMIT ?", (after, limit as u64));
        }
        self.rows(
            "SELECT id FROM promises WHERE id > ? AND JSON_CONTAINS(tags, ?) ORDER BY id LIMIT ?",
            (after, json(tags), limit as u64),
        )
    }

    /// Task ids after `after` in id order.
    fn task_ids(&self, after: &str, limit: usize) -> Result<Vec<String>> {
        self.rows("SELECT id FROM tasks WHERE id > ? ORDER BY id LIMIT ?", (after, limit as u64))
    }

    /// Schedules after `after` in id order whose promiseTags include every pair of `tags`.
    fn schedules(&self, after: &str, tags: &Tags, limit: usize) -> Result<Vec<Schedule>> {
        let records: Vec<String> = if tags.is_empty() {
            self.rows("SELECT record FROM schedules WHERE id > ? ORDER BY id LIMIT ?", (after, limit as u64))?
        } else {
            self.rows(
                "SELECT record FROM schedules WHERE id > ? AND JSON_CONTAINS(record, ?, '$.promiseTags')
                 ORDER BY id LIMIT ?",
                (after, json(tags), limit as u64),
            )?
        };
        Ok(records.iter().map(|r| serde_json::from_str(r)).collect::<serde_json::Result<_>>()?)
    }

    /// debug.reset: deletes everything.
    fn reset(&self) -> Result<()> {
        for table in ["promises", "tasks", "callbacks", "listeners", "outbox", "schedules"] {
            self.run(&format!("DELETE FROM {table}"), ())?;
        }
        Ok(())
    }

    /// debug.snap: the whole store as JSON, in the official server's shape plus `schedules`.
    fn snap(&self) -> Result<String> {
        use serde_json::{json, Value as J};
        let ids: Vec<String> = self.rows("SELECT id FROM promises ORDER BY id", ())?;
        let mut promises = Vec::new();
        for id in &ids {
            promises.push(json!(self.promise(id)?));
        }
        let ids: Vec<String> = self.rows("SELECT id FROM tasks ORDER BY id", ())?;
        let mut tasks = Vec::new();
        let mut task_timeouts = Vec::new();
        for id in &ids {
            let Some(t) = self.task(id)? else { continue };
            if let Some(at) = t.due_at() {
                let kind = if t.state == TaskState::Acquired { 1 } else { 0 };
                task_timeouts.push(json!({ "id": id, "type": kind, "timeout": at }));
            }
            tasks.push(json!(t.wire()));
        }
        let timeouts: Vec<(String, i64)> =
            self.rows("SELECT id, armed_at FROM promises WHERE armed_at IS NOT NULL ORDER BY id", ())?;
        let callbacks: Vec<(String, String)> = self.rows("SELECT awaiter, awaited FROM callbacks ORDER BY awaited, seq", ())?;
        let listeners: Vec<(String, String)> = self.rows("SELECT awaited, address FROM listeners ORDER BY awaited, seq", ())?;
        let messages: Vec<(String, String)> = self.rows("SELECT address, message FROM outbox ORDER BY seq", ())?;
        let schedules: Vec<String> = self.rows("SELECT record FROM schedules ORDER BY id", ())?;
        let parse = |text: &str| serde_json::from_str::<J>(text).unwrap_or(J::Null);
        let snap = json!({
            "promises": promises,
            "promiseTimeouts": timeouts.iter().map(|(id, at)| json!({ "id": id, "timeout": at })).collect::<Vec<_>>(),
            "callbacks": callbacks.iter().map(|(awaiter, awaited)| json!({ "awaiter": awaiter, "awaited": awaited })).collect::<Vec<_>>(),
            "listeners": listeners.iter().map(|(id, address)| json!({ "id": id, "address": address })).collect::<Vec<_>>(),
            "tasks": tasks,
            "taskTimeouts": task_timeouts,
            "messages": messages.iter().map(|(address, m)| json!({ "address": address, "message": parse(m) })).collect::<Vec<_>>(),
            "schedules": schedules.iter().map(|r| parse(r)).collect::<Vec<_>>(),
        });
        Ok(snap.to_string())
    }
}
