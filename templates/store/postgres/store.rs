//! Durable state in PostgreSQL, through a small pool of native connections (tokio-postgres).
//!
//! Every protocol request is ONE round trip: one call of the server-side function
//! `resonate.request(kind, data, now, extra)` (src/schema.sql) in autocommit, which runs the
//! guards, the projection, coupled settlement, drains, dispatch and the effects in one
//! transaction and answers `(status, data)`. Rust decodes and checks the fields before the call
//! (protocol.rs) and computes what SQL cannot as arguments of that same call: a schedule's first
//! occurrence (the cron module) and a fenced action's decoding and field checks.
//!
//! Replicas: several processes on one database behave as one server. Row locks serialise the
//! writers of a promise; a deadlock or serialization failure aborts the call, which is retried
//! here (and counted). Background passes skip rows another replica holds. Each process LISTENs on
//! `resonate_outbox` on a connection of its own, so messages queued through any replica wake its
//! delivery loop.

use crate::config::{Config, Settings};
use crate::cron::Cron;
use crate::outbox::{Deliveries, Outgoing};
use crate::protocol::{Fenced, Refusal, Reply, Request};
use crate::url::{redact, scrub};
use serde::Deserialize;
use serde_json::json;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{Notify, Semaphore};
use tokio_postgres::error::SqlState;
use tokio_postgres::{AsyncMessage, Client, NoTls, Statement};

/// The tables and functions, created or replaced at start-up.
const SCHEMA: &str = include_str!("schema.sql");
/// The advisory lock replicas take around the schema, so ones starting together do not race.
const SCHEMA_LOCK: i64 = 0x7265_736f_6e61_7465;
/// The most objects of each kind one background pass handles.
const RULE_BATCH: i32 = 512;
/// Most passes one debug.tick runs: a tick far in the future (a schedule firing every minute
/// until the year 9999) would otherwise never answer; another tick continues the work.
const TICK_PASSES: usize = 100;
/// The most occurrences one schedule creates per firing.
const SCHEDULE_BATCH: usize = {{ c.spec.rules.schedule.schedule_batch }};
/// How long a claimed message is held from other replicas while this one sends it.
const CLAIM_HOLD_MS: i64 = 30_000;
/// How often a call aborted by a deadlock or a serialization failure is tried again.
const MAX_RETRIES: u32 = 20;
/// How long a new connection may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the LISTEN connection waits before it reconnects.
const RELISTEN_DELAY: Duration = Duration::from_secs(1);

/// A storage failure.
#[derive(Debug, Clone)]
pub struct StoreError(pub String);

impl std::fmt::Display for StoreError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<tokio_postgres::Error> for StoreError {
    fn from(e: tokio_postgres::Error) -> Self {
        use std::error::Error;
        match (e.as_db_error(), e.source()) {
            (Some(db), _) => StoreError(format!("{}: {}", db.code().code(), db.message())),
            (None, Some(cause)) => StoreError(format!("{e}: {cause}")),
            (None, None) => StoreError(e.to_string()),
        }
    }
}

impl From<serde_json::Error> for StoreError {
    fn from(e: serde_json::Error) -> Self {
        StoreError(format!("unexpected answer from PostgreSQL: {e}"))
    }
}

type Result<T> = std::result::Result<T, StoreError>;

/// The longest promise id a schedule may expand to: below the 2,704 bytes a B-tree index row
/// holds even uncompressed, so no firing can fail on it.
const MAX_SCHEDULED_ID_BYTES: usize = 2048;

/// A call is worth repeating when PostgreSQL aborted it to break a deadlock or a serialization
/// conflict: nothing of it was committed.
fn retryable(e: &tokio_postgres::Error) -> bool {
    matches!(e.code(), Some(c) if *c == SqlState::T_R_DEADLOCK_DETECTED || *c == SqlState::T_R_SERIALIZATION_FAILURE)
}

/// PostgreSQL text cannot hold U+0000, which JSON strings may: requests carry this noncharacter
/// in its place and answers turn it back (so a client's own U+10FFFF reads back as U+0000).
const NUL_STAND_IN: char = '\u{10FFFF}';

/// Replaces `from` by `to` in every string and key of a JSON value.
fn swap_chars(v: serde_json::Value, from: char, to: char) -> serde_json::Value {
    use serde_json::Value as J;
    let swap = |s: String| if s.contains(from) { s.replace(from, to.encode_utf8(&mut [0; 4])) } else { s };
    match v {
        J::String(s) => J::String(swap(s)),
        J::Array(items) => J::Array(items.into_iter().map(|i| swap_chars(i, from, to)).collect()),
        J::Object(map) => J::Object(map.into_iter().map(|(k, i)| (swap(k), swap_chars(i, from, to))).collect()),
        other => other,
    }
}

/// JSON text for PostgreSQL: U+0000 replaced by its stand-in.
fn to_database(text: String) -> Result<String> {
    if !text.contains("\\u0000") {
        return Ok(text);
    }
    Ok(swap_chars(serde_json::from_str(&text)?, '\0', NUL_STAND_IN).to_string())
}

/// JSON text from PostgreSQL for the wire: keys in alphabetical order (jsonb orders them by
/// length; records on the wire list them alphabetically, as the official server does) and U+0000
/// restored.
fn normalise(text: &str) -> Result<String> {
    let value: serde_json::Value = serde_json::from_str(text)?;
    if text.contains(NUL_STAND_IN) {
        return Ok(swap_chars(value, NUL_STAND_IN, '\0').to_string());
    }
    Ok(value.to_string())
}

/// The statements of one connection, prepared once.
struct Statements {
    request: Statement,
    rules: Statement,
    fire: Statement,
    claim: Statement,
    record: Statement,
{% if c.http() %}
    /// `SELECT 1`, for `GET /ready`.
    ping: Statement,
{% endif %}
}

struct Conn {
    client: Client,
    sql: Statements,
}

/// A fixed number of connections, opened on demand and reused.
struct Pool {
    config: tokio_postgres::Config,
    settings: Arc<Settings>,
    idle: Mutex<Vec<Conn>>,
    permits: Semaphore,
}

/// A connection taken from the pool; it goes back when dropped, unless it broke.
struct Lease<'a> {
    pool: &'a Pool,
    conn: Option<Conn>,
    _permit: tokio::sync::SemaphorePermit<'a>,
}

impl std::ops::Deref for Lease<'_> {
    type Target = Conn;

    fn deref(&self) -> &Conn {
        self.conn.as_ref().expect("a lease holds its connection until dropped")
    }
}

impl Drop for Lease<'_> {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take().filter(|c| !c.client.is_closed()) {
            self.pool.idle.lock().expect("pool lock").push(conn);
        }
    }
}

/// Opens a connection and drives it on the runtime.
async fn connect(config: &tokio_postgres::Config) -> Result<Client> {
    let (client, connection) = config.connect(NoTls).await?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            crate::log!(Warn, "a PostgreSQL connection ended: {e}");
        }
    });
    Ok(client)
}

impl Pool {
    async fn get(&self) -> Result<Lease<'_>> {
        let permit = self.permits.acquire().await.map_err(|_| StoreError("the pool is closed".into()))?;
        let idle = self.idle.lock().expect("pool lock").pop();
        let conn = match idle {
            Some(conn) if !conn.client.is_closed() => conn,
            _ => self.open().await?,
        };
        Ok(Lease { pool: self, conn: Some(conn), _permit: permit })
    }

    /// A new connection: the schema on the search path, this process's settings for the
    /// functions (`resonate.retry_timeout`, `resonate.server_url`{% if c.retention %}, `resonate.retention`{% endif %}), the statements prepared.
    async fn open(&self) -> Result<Conn> {
        self.prepare(connect(&self.config).await?).await
    }

    /// Readies `client` as a pooled connection. The setting and the statements are sent at once:
    /// tokio-postgres pipelines them, so they cost one round trip rather than seven.
    async fn prepare(&self, client: Client) -> Result<Conn> {
        let retry_timeout = self.settings.retry_timeout.to_string();
{% if c.retention %}
        let retention = self.settings.retention.to_string();
{% endif %}
        let params: &[&(dyn tokio_postgres::types::ToSql + Sync)] =
            &[&retry_timeout, &self.settings.server_url{% if c.retention %}, &retention{% endif %}];
        let (_, request, rules, fire, claim, record{% if c.http() %}, ping{% endif %}) = tokio::try_join!(
            client.query_one(
                "SELECT set_config('search_path', 'resonate', false),
                        set_config('resonate.retry_timeout', $1, false),
                        set_config('resonate.server_url', $2, false){% if c.retention %},
                        set_config('resonate.retention', $3, false){% endif %}",
                params,
            ),
            client.prepare("SELECT status, body::text FROM resonate.request($1::text, $2::text::jsonb, $3::int8, $4::text::jsonb)"),
            client.prepare("SELECT resonate.rules($1::int8, $2::int4, $3::bool)::text"),
            client.prepare("SELECT resonate.fire($1::text, $2::int8, $3::int8[], $4::int8, $5::int8, $6::bool)"),
            client.prepare("SELECT resonate.claim($1::int8, $2::int4, $3::int8, $4::text[], $5::text[])::text"),
            client.prepare("SELECT resonate.record_delivery($1::text::jsonb, $2::text::jsonb, $3::text::jsonb, $4::int4)"),
{% if c.http() %}
            client.prepare("SELECT 1"),
{% endif %}
        )?;
        let sql = Statements { request, rules, fire, claim, record{% if c.http() %}, ping{% endif %} };
        Ok(Conn { client, sql })
    }
}

/// A handle to the database; cheap to clone.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

struct Inner {
    pool: Pool,
    settings: Arc<Settings>,
    /// Notified when a deferred message needs the delivery loop to look again.
    enqueued: Arc<Notify>,
    /// Calls repeated after a deadlock or serialization failure, since start.
    retries: AtomicU64,
}

/// What a background pass reports: whether a batch was full, and the schedules due (rule R7).
#[derive(Deserialize)]
struct Pass {
    more: bool,
    schedules: Vec<DueSchedule>,
}

#[derive(Deserialize)]
struct DueSchedule {
    id: String,
    cron: String,
    #[serde(rename = "nextRunAt")]
    next_run_at: i64,
}

#[derive(Deserialize)]
struct Claim {
    rows: Vec<ClaimedRow>,
    next: Option<i64>,
}

#[derive(Deserialize)]
struct ClaimedRow {
    key: String,
    address: String,
    message: serde_json::Value,
    attempts: i64,
}

impl Store {
    /// Connects, creates or updates the schema (under an advisory lock, so replicas starting
    /// together take turns), and starts listening for queued messages; `enqueued` is notified
    /// whenever any replica queues one.
    pub async fn open(config: &Config, settings: Arc<Settings>, enqueued: Arc<Notify>) -> Result<Store> {
        let url = &config.storage_postgres_url;
        if url.is_empty() {
            return Err(StoreError(
                "no database: pass --storage-postgres-url (or RESONATE_STORAGE__POSTGRES__URL), \
                 e.g. postgres://root@127.0.0.1:5432/test"
                    .into(),
            ));
        }
        let mut pg: tokio_postgres::Config = url.parse().map_err(|e| {
            let e = StoreError::from(e);
            StoreError(scrub(format!("storage-postgres-url {} is not a valid PostgreSQL URL: {e}", redact(url)), url))
        })?;
        if pg.get_connect_timeout().is_none() {
            pg.connect_timeout(CONNECT_TIMEOUT);
        }
        if pg.get_application_name().is_none() {
            pg.application_name("{{ c.crate_name }}");
        }
        let unreachable = |e: StoreError| StoreError(scrub(format!("cannot use PostgreSQL at {}: {e}", redact(url)), url));
        let client = connect(&pg).await.map_err(unreachable)?;
        migrate(&client).await.map_err(unreachable)?;
        tokio::spawn(listen(pg.clone(), enqueued.clone()));
        let size = usize::try_from(config.storage_postgres_pool_size).unwrap_or(1).max(1);
        let pool = Pool { config: pg, settings: settings.clone(), idle: Mutex::new(Vec::new()), permits: Semaphore::new(size) };
        // The schema's connection becomes the pool's first, so a database that cannot serve
        // requests fails the start.
        let first = pool.prepare(client).await.map_err(unreachable)?;
        pool.idle.lock().expect("pool lock").push(first);
        Ok(Store { inner: Arc::new(Inner { pool, settings, enqueued, retries: AtomicU64::new(0) }) })
    }

    /// Runs one decoded request at `now`; `corr_id` is echoed inside fenced actions.
    pub async fn execute(&self, request: Request, now: i64, corr_id: String) -> Result<Reply> {
        let paused = &self.inner.settings.paused;
        let (data, extra) = match request {
            Request::DebugStart(_) => {
                paused.store(true, Ordering::Relaxed);
                return Ok(Reply::empty());
            }
            Request::DebugStop(_) => {
                paused.store(false, Ordering::Relaxed);
                return Ok(Reply::empty());
            }
            Request::DebugTick(tick) => {
                let conn = self.inner.pool.get().await?;
                for _ in 0..TICK_PASSES {
                    if !self.pass(&conn, tick.time, true).await? {
                        break;
                    }
                }
                return Ok(Reply { status: 200, data: "[]".to_string() });
            }
            Request::TaskFence(fence) => {
                let action = match Fenced::decode(fence.action) {
                    Ok(Some(action)) => action,
                    Ok(None) => return Ok(Refusal::FenceKind.into()),
                    Err(refusal) => return Ok(refusal.into()),
                };
                let (inner, check) = match &action {
                    Fenced::Create(c) => (serde_json::to_value(c)?, c.check()),
                    Fenced::Settle(s) => (serde_json::to_value(s)?, s.check()),
                };
                let data = json!({ "id": fence.id, "version": fence.version,
                                   "action": { "kind": action.kind(), "data": inner } });
                let mut extra = json!({ "corrId": corr_id });
                if let Err(refusal) = check {
                    extra["inner"] = json!({ "status": refusal.status(), "data": refusal.message() });
                }
                return self.call("task.fence", data.to_string(), now, Some(extra.to_string())).await;
            }
            Request::ScheduleCreate(ref create) => {
                if create.longest_promise_id() > MAX_SCHEDULED_ID_BYTES {
                    return Ok(Refusal::TooLong.into());
                }
                let next = Cron::parse(&create.cron).and_then(|c| c.next_after(now));
                (request.data(), Some(json!({ "nextRunAt": next }).to_string()))
            }
            ref other => (other.data(), None),
        };
        self.call(request.kind(), data, now, extra).await
    }

    /// One call of `resonate.request`, repeated if PostgreSQL aborted it to break a deadlock.
    async fn call(&self, kind: &str, data: String, now: i64, extra: Option<String>) -> Result<Reply> {
        let data = to_database(data)?;
        let extra = extra.map(to_database).transpose()?;
        let mut attempt = 0;
        loop {
            let conn = self.inner.pool.get().await?;
            match conn.client.query_one(&conn.sql.request, &[&kind, &data, &now, &extra]).await {
                Ok(row) => {
                    let status: i32 = row.get(0);
                    let body: &str = row.get(1);
                    return Ok(Reply { status: status as u16, data: normalise(body)? });
                }
                Err(e) if retryable(&e) && attempt < MAX_RETRIES => {
                    attempt += 1;
                    let total = self.inner.retries.fetch_add(1, Ordering::Relaxed) + 1;
                    crate::log!(Debug, "{kind} aborted ({e}); retry {attempt} ({total} since start)");
                    drop(conn);
                    tokio::time::sleep(Duration::from_millis(u64::from(attempt))).await;
                }
                // An id or address past what an index row holds; the call rolled back whole.
                Err(e) if e.code() == Some(&SqlState::PROGRAM_LIMIT_EXCEEDED) => return Ok(Refusal::TooLong.into()),
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// One bounded pass of the background rules at `now`, unless debug.start paused them while
    /// this pass waited for a connection; true when more work may remain.
    pub async fn run_rules(&self, now: i64) -> Result<bool> {
        let conn = self.inner.pool.get().await?;
        if self.inner.settings.paused.load(Ordering::Relaxed) {
            return Ok(false);
        }
        self.pass(&conn, now, false).await
    }

    /// Rules R1, R5, R6{% if c.retention %}, R8{% endif %} in SQL, then R7 with occurrences computed here; true when more work may
    /// remain. A `patient` pass (debug.tick) waits for rows that requests hold instead of
    /// skipping them, and is repeated when PostgreSQL aborts it to break a deadlock.
    async fn pass(&self, conn: &Conn, now: i64, patient: bool) -> Result<bool> {
        let mut attempt = 0;
        let text: String = loop {
            match conn.client.query_one(&conn.sql.rules, &[&now, &RULE_BATCH, &patient]).await {
                Ok(row) => break row.get(0),
                Err(e) if patient && retryable(&e) && attempt < MAX_RETRIES => {
                    attempt += 1;
                    self.inner.retries.fetch_add(1, Ordering::Relaxed);
                }
                Err(e) => return Err(e.into()),
            }
        };
        let pass: Pass = serde_json::from_str(&text)?;
        for s in &pass.schedules {
            let cron = Cron::parse(&s.cron);
            let mut occurrences = Vec::new();
            let mut at = s.next_run_at;
            while occurrences.len() < SCHEDULE_BATCH && at <= now {
                occurrences.push(at);
                at = cron.as_ref().and_then(|c| c.next_after(at)).unwrap_or(i64::MAX);
            }
            let args: [&(dyn tokio_postgres::types::ToSql + Sync); 6] =
                [&s.id, &s.next_run_at, &occurrences, &at, &now, &patient];
            match conn.client.execute(&conn.sql.fire, &args).await {
{% if c.metrics %}
                Ok(_) => {
                    for _ in &occurrences {
                        crate::metrics::schedule_promise();
                    }
                }
{% else %}
                Ok(_) => {}
{% endif %}
                // Aborted to break a deadlock: the schedule is still due, and the caller's next
                // pass (more = true) fires it.
                Err(e) if retryable(&e) => {
                    self.inner.retries.fetch_add(1, Ordering::Relaxed);
                }
                Err(e) => return Err(e.into()),
            }
        }
        Ok(pass.more || !pass.schedules.is_empty())
    }

{% if c.metrics %}
    /// Promises and tasks by state, outbox messages by address and the calls repeated since
    /// start, for `/metrics`: one statement on a pooled connection.
    pub async fn census(&self) -> Result<crate::metrics::Census> {
        let conn = self.inner.pool.get().await?;
        let rows = conn
            .client
            .query(
                "SELECT 'promise', state, count(*), 0::int8 FROM resonate.promises GROUP BY state
                 UNION ALL SELECT 'task', state, count(*), 0 FROM resonate.tasks GROUP BY state
                 UNION ALL SELECT 'outbox', address, count(*), count(*) FILTER (WHERE attempts > 0)
                 FROM resonate.outbox GROUP BY address",
                &[],
            )
            .await?;
        let mut census = crate::metrics::Census { store_retries: self.inner.retries.load(Ordering::Relaxed), ..Default::default() };
        for row in rows {
            let (what, name, n, retrying): (&str, String, i64, i64) = (row.get(0), row.get(1), row.get(2), row.get(3));
            match what {
                "promise" => census.promises.push((name, n)),
                "task" => census.tasks.push((name, n)),
                _ => census.outbox.push((name, n, retrying)),
            }
        }
        Ok(census)
    }

{% endif %}
{% if c.http() %}
    /// Whether the database answers (`GET /ready`).
    pub async fn ping(&self) -> Result<()> {
        let conn = self.inner.pool.get().await?;
        conn.client.query_one(&conn.sql.ping, &[]).await?;
        Ok(())
    }
{% endif %}

{% if c.dashboard %}
    /// The dashboard's read of a promise's callbacks (awaiter ids) and listeners (addresses),
    /// oldest first; it changes nothing (spec/choices.yaml dashboard-waiters). Not a prepared
    /// statement of every connection: only the dashboard asks it.
    pub async fn waiters(&self, id: String) -> Result<(Vec<String>, Vec<String>)> {
        let id = id.replace('\0', NUL_STAND_IN.encode_utf8(&mut [0; 4]));
        let conn = self.inner.pool.get().await?;
        let row = conn
            .client
            .query_one(
                "SELECT ARRAY(SELECT awaiter FROM resonate.callbacks WHERE awaited = $1::text ORDER BY seq), \
                        ARRAY(SELECT address FROM resonate.listeners WHERE awaited = $1::text ORDER BY seq)",
                &[&id],
            )
            .await?;
        let restore = |items: Vec<String>| items.into_iter().map(|s| s.replace(NUL_STAND_IN, "\0")).collect();
        Ok((restore(row.get(0)), restore(row.get(1))))
    }

{% endif %}
    /// Claims due messages this replica can deliver (pushes, and poll:// messages for the
    /// `streams` it holds: group names and `group/id`s); also answers when the next one falls due.
    pub async fn outbox(&self, now: i64, limit: usize, streams: (Vec<String>, Vec<String>)) -> Result<(Vec<Outgoing>, Option<i64>)> {
        let conn = self.inner.pool.get().await?;
        let (groups, ids) = streams;
        let limit = i32::try_from(limit).unwrap_or(i32::MAX);
        let text: String = conn.client.query_one(&conn.sql.claim, &[&now, &limit, &CLAIM_HOLD_MS, &groups, &ids]).await?.get(0);
        let claim: Claim = serde_json::from_str(&text)?;
        let rows = claim
            .rows
            .into_iter()
            .map(|r| {
                let message = normalise(&r.message.to_string())?;
                Ok(Outgoing { key: r.key, address: r.address, message, attempts: r.attempts })
            })
            .collect::<Result<_>>()?;
        Ok((rows, claim.next))
    }

    /// Records what became of messages handed to the transports; returns how many failed
    /// messages the retry cap dropped.
    pub async fn record_delivery(&self, d: Deliveries) -> Result<usize> {
        let message = |m: &str| swap_chars(serde_json::from_str(m).unwrap_or_default(), '\0', NUL_STAND_IN);
        let done: Vec<_> = d.done.iter().map(|(k, m)| json!({ "key": k, "message": message(m) })).collect();
        let later = |rows: &[(String, String, i64)]| {
            let rows: Vec<_> =
                rows.iter().map(|(k, m, until)| json!({ "key": k, "message": message(m), "until": until })).collect();
            json!(rows).to_string()
        };
        let cap = i32::try_from(self.inner.settings.retry_cap).unwrap_or(i32::MAX);
        let conn = self.inner.pool.get().await?;
        let dropped: i32 = conn
            .client
            .query_one(&conn.sql.record, &[&json!(done).to_string(), &later(&d.held), &later(&d.failed), &cap])
            .await?
            .get(0);
        if !d.failed.is_empty() {
            // The delivery loop learns the new due time from its next claim.
            self.inner.enqueued.notify_one();
        }
        Ok(usize::try_from(dropped).unwrap_or(0))
    }
}

/// Creates or updates the schema: one transaction under an advisory lock, skipped when the
/// database already has this exact schema.
async fn migrate(client: &Client) -> Result<()> {
    let fingerprint = format!("{:016x}", fnv1a(SCHEMA.as_bytes()));
    // A restart on a database that has this schema reads one row and is done; anything else
    // (no schema yet, another version) takes the lock and looks again.
    let installed = client.query_opt("SELECT value FROM resonate.meta WHERE key = 'schema'", &[]).await;
    if installed.ok().flatten().map(|row| row.get::<_, String>(0)).as_deref() == Some(fingerprint.as_str()) {
        return Ok(());
    }
    client.batch_execute("BEGIN").await?;
    let migrated = async {
        client.query_one("SELECT pg_advisory_xact_lock($1)", &[&SCHEMA_LOCK]).await?;
        client
            .batch_execute(
                "CREATE SCHEMA IF NOT EXISTS resonate;
                 CREATE TABLE IF NOT EXISTS resonate.meta (key text PRIMARY KEY, value text NOT NULL);",
            )
            .await?;
        let current = client.query_opt("SELECT value FROM resonate.meta WHERE key = 'schema'", &[]).await?;
        if current.map(|row| row.get::<_, String>(0)).as_deref() != Some(fingerprint.as_str()) {
            client.batch_execute(SCHEMA).await?;
            client
                .execute(
                    "INSERT INTO resonate.meta (key, value) VALUES ('schema', $1)
                     ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                    &[&fingerprint],
                )
                .await?;
        }
        Ok::<(), tokio_postgres::Error>(())
    }
    .await;
    match migrated {
        Ok(()) => client.batch_execute("COMMIT").await?,
        Err(e) => {
            let _ = client.batch_execute("ROLLBACK").await;
            return Err(StoreError(format!("cannot create the schema: {}", StoreError::from(e))));
        }
    }
    Ok(())
}

/// FNV-1a: a stable fingerprint of the schema text.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3))
}

/// LISTENs for `resonate_outbox` notifications on a connection of its own and wakes the delivery
/// loop for each; reconnects when the connection drops (and wakes the loop then too, for what
/// was queued meanwhile).
async fn listen(config: tokio_postgres::Config, enqueued: Arc<Notify>) {
    loop {
        match config.connect(NoTls).await {
            Ok((client, mut connection)) => {
                let wake = enqueued.clone();
                let driver = tokio::spawn(async move {
                    while let Some(message) = std::future::poll_fn(|cx| connection.poll_message(cx)).await {
                        match message {
                            Ok(AsyncMessage::Notification(_)) => wake.notify_one(),
                            Ok(_) => {}
                            Err(e) => {
                                crate::log!(Warn, "the LISTEN connection failed: {e}");
                                break;
                            }
                        }
                    }
                });
                match client.batch_execute("LISTEN resonate_outbox").await {
                    Ok(()) => {
                        enqueued.notify_one();
                        let _ = driver.await;
                    }
                    Err(e) => {
                        crate::log!(Warn, "cannot LISTEN for queued messages: {}", StoreError::from(e));
                        driver.abort();
                    }
                }
            }
            Err(e) => crate::log!(Warn, "cannot open the LISTEN connection: {}", StoreError::from(e)),
        }
        tokio::time::sleep(RELISTEN_DELAY).await;
    }
}
