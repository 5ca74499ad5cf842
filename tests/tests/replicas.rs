//! `postgres-http` and `mysql-http` as replicas: two server processes on one database behave as
//! one server. Exclusive task acquisition across replicas, no double dispatch, background rules
//! that fire once, and SSE delivery across replicas (a worker streams from replica A, work arrives
//! through replica B). Also the claims of the targets, counted by a proxy between a server and
//! its database: every protocol request is ONE round trip to PostgreSQL; on MySQL, the statements
//! of each request kind are those generated/mysql-http/README.md lists.
//!
//! Needs a PostgreSQL and a MySQL the tests can create databases on (see
//! `server::postgres_admin_url`, `server::mysql_admin_url`).

use resonate_tests::call;
use resonate_tests::client::{Client, Sse};
use resonate_tests::server::{build, mysql_admin_url, postgres_admin_url, repo_root, Database, Server};
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap};
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier, Mutex};
use std::thread;
use std::time::{Duration, Instant};

const TARGET: &str = "postgres-http";
const MYSQL: &str = "mysql-http";
/// A deadline no test reaches.
const FAR: i64 = 4_000_000_000_000;
/// How long an awaited message may take to arrive.
const WAIT: Duration = Duration::from_secs(5);

/// Two replicas of `target` on one fresh database, started with `args`.
fn replicas(target: &str, args: &[&str]) -> (Server, Server) {
    let a = Server::start(&build(target), args);
    let b = a.replica(args);
    (a, b)
}

/// Sends one request (wall clock) and returns the status and `data`.
fn send(client: &mut Client, kind: &str, data: Value) -> (u16, Value) {
    let (status, envelope) = call(client, kind, data, None);
    (status, envelope["data"].clone())
}

fn ok(client: &mut Client, kind: &str, data: Value) -> Value {
    let (status, answer) = send(client, kind, data.clone());
    assert_eq!(status, 200, "{kind} {data} answered {answer}");
    answer
}

fn create(client: &mut Client, id: &str, tags: Value) -> Value {
    ok(client, "promise.create", json!({ "id": id, "timeoutAt": FAR, "param": {}, "tags": tags }))
}

fn stream(server: &Server, group: &str, id: &str) -> Sse {
    let (response, sse) = Sse::open(server.addr, &format!("/poll/{group}/{id}")).unwrap();
    assert_eq!(response.status, 200);
    sse.expect("an open stream")
}

/// Every event the streams receive until none has arrived for `quiet`.
fn drain(streams: &mut [Sse], quiet: Duration) -> Vec<Value> {
    collect(streams, |_, last| last.elapsed() >= quiet)
}

/// Every event the streams receive during `span`.
fn collect_for(streams: &mut [Sse], span: Duration) -> Vec<Value> {
    let began = Instant::now();
    collect(streams, |_, _| began.elapsed() >= span)
}

/// Reads the streams in turn until `done(events so far, time of the last event)`.
fn collect(streams: &mut [Sse], done: impl Fn(&[Value], Instant) -> bool) -> Vec<Value> {
    let mut events = Vec::new();
    let mut last = Instant::now();
    while !done(&events, last) {
        for s in streams.iter_mut() {
            if let Some(data) = s.next_data(Duration::from_millis(20)).unwrap() {
                events.push(serde_json::from_str(&data).unwrap());
                last = Instant::now();
            }
        }
    }
    events
}

#[test]
fn one_task_version_is_acquired_once_across_replicas() {
    acquired_once(TARGET);
}

#[test]
fn mysql_one_task_version_is_acquired_once_across_replicas() {
    acquired_once(MYSQL);
}

fn acquired_once(target: &str) {
    let (a, b) = replicas(target, &["--debug"]);
    for server in [&a, &b] {
        ok(&mut server.client(), "debug.start", json!({}));
    }
    const TASKS: usize = 10;
    const CONTENDERS: usize = 16;
    for task in 0..TASKS {
        let id = format!("t{task}");
        create(&mut a.client(), &id, json!({ "resonate:target": "poll://any@nobody" }));
        let barrier = Arc::new(Barrier::new(CONTENDERS));
        let handles: Vec<_> = (0..CONTENDERS)
            .map(|n| {
                let addr = if n % 2 == 0 { a.addr } else { b.addr };
                let (barrier, id) = (barrier.clone(), id.clone());
                thread::spawn(move || {
                    let mut client = Client::new(addr);
                    client.get("/health").unwrap();
                    barrier.wait();
                    let data = json!({ "id": id, "version": 0, "pid": format!("p{n}"), "ttl": 60_000 });
                    send(&mut client, "task.acquire", data)
                })
            })
            .collect();
        let answers: Vec<(u16, Value)> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        let won: Vec<&Value> = answers.iter().filter(|(s, _)| *s == 200).map(|(_, d)| d).collect();
        assert_eq!(won.len(), 1, "{id}: exactly one acquire wins across replicas: {answers:?}");
        assert!(answers.iter().all(|(s, _)| *s == 200 || *s == 409), "{answers:?}");
        let holder = won[0]["task"]["pid"].clone();
        for server in [&a, &b] {
            let task = ok(&mut server.client(), "task.get", json!({ "id": id }))["task"].clone();
            assert_eq!((task["version"].clone(), task["pid"].clone()), (json!(1), holder.clone()), "version 1 issued once");
        }
    }
}

#[test]
fn replicas_dispatch_each_task_once_and_deliver_across_replicas() {
    dispatched_once(TARGET);
}

#[test]
fn mysql_replicas_dispatch_each_task_once_and_deliver_across_replicas() {
    dispatched_once(MYSQL);
}

fn dispatched_once(target: &str) {
    let (a, b) = replicas(target, &["--tasks-retry-timeout", "600000"]);
    // Workers of group g stream from both replicas; all work is created through replica B.
    let mut streams = vec![stream(&a, "g", "wa"), stream(&b, "g", "wb")];
    let mut only_a = stream(&a, "solo", "w");
    let mut client = b.client();
    const TASKS: usize = 40;
    for n in 0..TASKS {
        create(&mut client, &format!("d{n}"), json!({ "resonate:target": "poll://any@g" }));
    }
    create(&mut client, "solo", json!({ "resonate:target": "poll://any@solo" }));
    let event: Value = serde_json::from_str(&only_a.next_data(WAIT).unwrap().expect("an execute on replica A")).unwrap();
    assert_eq!(event["data"]["task"], json!({ "id": "solo", "version": 0 }), "created via B, streamed from A");

    let events = drain(&mut streams, Duration::from_millis(800));
    let mut count: BTreeMap<String, usize> = BTreeMap::new();
    for e in &events {
        assert_eq!(e["kind"], "execute", "{e}");
        *count.entry(e["data"]["task"]["id"].as_str().unwrap().to_string()).or_default() += 1;
    }
    assert_eq!(count.len(), TASKS, "every task dispatched: {count:?}");
    assert!(count.values().all(|n| *n == 1), "each execute delivered once across replicas: {count:?}");

    // An unblock for a listener on replica A's stream, registered and settled through replica B.
    let mut listener = stream(&a, "l", "w");
    create(&mut client, "ext", json!({ "resonate:external": "true" }));
    ok(&mut client, "promise.register_listener", json!({ "awaited": "ext", "address": "poll://uni@l/w" }));
    ok(&mut client, "promise.settle", json!({ "id": "ext", "state": "resolved", "value": {} }));
    let unblock: Value = serde_json::from_str(&listener.next_data(WAIT).unwrap().expect("an unblock on replica A")).unwrap();
    assert_eq!((unblock["kind"].clone(), unblock["data"]["promise"]["id"].clone()), (json!("unblock"), json!("ext")));
    assert_eq!(listener.next_data(Duration::from_millis(300)).unwrap(), None, "delivered once");
}

#[test]
fn background_rules_fire_once_across_replicas() {
    rules_once(TARGET);
}

#[test]
fn mysql_background_rules_fire_once_across_replicas() {
    rules_once(MYSQL);
}

fn rules_once(target: &str) {
    // Both replicas run the rules every 20 ms; retries are due every 400 ms. Were a retry run by
    // both replicas, the worker would see about twice as many executes as periods.
    const RETRY_MS: u64 = 400;
    let retry = RETRY_MS.to_string();
    let (a, b) = replicas(target, &["--timeouts-poll-interval", "20", "--tasks-retry-timeout", &retry]);
    let mut streams = vec![stream(&a, "r", "wa"), stream(&b, "r", "wb")];
    const TASKS: usize = 8;
    let began = Instant::now();
    for n in 0..TASKS {
        let server = if n % 2 == 0 { &a } else { &b };
        create(&mut server.client(), &format!("r{n}"), json!({ "resonate:target": "poll://any@r" }));
    }
    // A timer settled by rule R1 unblocks its listener once.
    let now = now_ms();
    ok(&mut a.client(), "promise.create",
       json!({ "id": "timer", "timeoutAt": now + 300, "tags": { "resonate:timer": "true" } }));
    ok(&mut b.client(), "promise.register_listener", json!({ "awaited": "timer", "address": "poll://any@r" }));
    let events = collect_for(&mut streams, Duration::from_millis(2_500));
    let elapsed = began.elapsed().as_millis() as u64;
    let mut executes: HashMap<String, usize> = HashMap::new();
    let mut unblocks = 0;
    for e in &events {
        match e["kind"].as_str() {
            Some("execute") => *executes.entry(e["data"]["task"]["id"].as_str().unwrap().to_string()).or_default() += 1,
            Some("unblock") => {
                assert_eq!(e["data"]["promise"]["state"], "resolved");
                unblocks += 1;
            }
            _ => panic!("unexpected message {e}"),
        }
    }
    assert_eq!(unblocks, 1, "R1 settled the timer once and its listener was drained once");
    let most = 2 + (elapsed / RETRY_MS) as usize;
    assert_eq!(executes.len(), TASKS, "{executes:?}");
    for (id, n) in &executes {
        assert!((2..=most).contains(n), "{id}: {n} executes in {elapsed} ms with retries every {RETRY_MS} ms (at most {most})");
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64
}

// ----- one round trip per request -----

/// Frontend messages seen by the proxy, by type byte: `S` (Sync) ends an extended-protocol
/// round trip, `Q` is a simple-protocol query (one round trip each), `P` a Parse.
#[derive(Default)]
struct Counts {
    by_type: Mutex<HashMap<u8, u64>>,
}

impl Counts {
    fn get(&self, kind: u8) -> u64 {
        *self.by_type.lock().unwrap().get(&kind).unwrap_or(&0)
    }

    fn snapshot(&self) -> (u64, u64, u64) {
        (self.get(b'S'), self.get(b'Q'), self.get(b'P'))
    }
}

/// A TCP proxy on a free loopback port in front of PostgreSQL that counts the messages clients
/// send. Stops accepting when dropped.
struct Proxy {
    port: u16,
    counts: Arc<Counts>,
    stop: Arc<AtomicBool>,
}

impl Proxy {
    fn start(upstream: SocketAddr) -> Proxy {
        Proxy::forwarding(upstream, forward_counting)
    }

    /// A proxy whose client-to-server half is `forward` (which counts what it forwards).
    fn forwarding(upstream: SocketAddr, forward: fn(TcpStream, TcpStream, &Counts)) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        listener.set_nonblocking(true).unwrap();
        let counts = Arc::new(Counts::default());
        let stop = Arc::new(AtomicBool::new(false));
        let (c, s) = (counts.clone(), stop.clone());
        thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((client, _)) => {
                        client.set_nonblocking(false).unwrap();
                        let server = TcpStream::connect(upstream).unwrap();
                        let (client2, server2) = (client.try_clone().unwrap(), server.try_clone().unwrap());
                        thread::spawn(move || copy(server2, client2));
                        let counts = c.clone();
                        thread::spawn(move || forward(client, server, &counts));
                    }
                    Err(_) => thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        Proxy { port, counts, stop }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn copy(mut from: TcpStream, mut to: TcpStream) {
    let mut buf = [0u8; 16384];
    while let Ok(n) = from.read(&mut buf) {
        if n == 0 || to.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    let _ = to.shutdown(Shutdown::Both);
}

/// Forwards client-to-server bytes message by message, counting each message's type before it
/// is sent on (so a request's messages are counted before its answer can come back).
fn forward_counting(mut from: TcpStream, mut to: TcpStream, counts: &Counts) {
    let mut read_exact = |buf: &mut [u8]| from.read_exact(buf).is_ok();
    // Start-up: untyped, length-prefixed; an SSL or GSS request is followed by another one.
    loop {
        let mut len = [0u8; 4];
        if !read_exact(&mut len) {
            return;
        }
        let mut body = vec![0u8; u32::from_be_bytes(len) as usize - 4];
        if !read_exact(&mut body) || to.write_all(&len).is_err() || to.write_all(&body).is_err() {
            return;
        }
        let code = u32::from_be_bytes([body[0], body[1], body[2], body[3]]);
        if code != 80_877_103 && code != 80_877_104 {
            break;
        }
    }
    loop {
        let mut head = [0u8; 5];
        if !read_exact(&mut head) {
            break;
        }
        let len = u32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize;
        let mut body = vec![0u8; len - 4];
        if !read_exact(&mut body) {
            break;
        }
        *counts.by_type.lock().unwrap().entry(head[0]).or_default() += 1;
        if to.write_all(&head).is_err() || to.write_all(&body).is_err() {
            break;
        }
    }
    let _ = to.shutdown(Shutdown::Both);
}

/// The `| kind | round trips | transactions |` rows of generated/postgres-http/README.md.
fn documented_round_trips() -> BTreeMap<String, (u64, u64)> {
    let readme = std::fs::read_to_string(repo_root().join("generated").join(TARGET).join("README.md")).unwrap();
    readme
        .lines()
        .filter_map(|line| {
            let cells: Vec<&str> = line.trim_matches('|').split('|').map(str::trim).collect();
            let kind = cells.first()?.strip_prefix('`')?.strip_suffix('`')?;
            Some((kind.to_string(), (cells.get(1)?.parse().ok()?, cells.get(2)?.parse().ok()?)))
        })
        .collect()
}

#[test]
fn one_round_trip_per_request() {
    let admin = postgres_admin_url();
    let upstream: SocketAddr = {
        let host = admin.split('@').nth(1).and_then(|rest| rest.split('/').next()).unwrap_or("127.0.0.1:5432");
        let host = if host.contains(':') { host.to_string() } else { format!("{host}:5432") };
        host.replace("localhost", "127.0.0.1").parse().expect("the admin URL names host:port")
    };
    let proxy = Proxy::start(upstream);
    let database = Arc::new(Database::create(TARGET));
    let via_proxy = database.url.replacen(&upstream.to_string(), &format!("127.0.0.1:{}", proxy.port), 1);
    assert_ne!(via_proxy, database.url, "the database URL names {upstream}");
    let server = Server::start_on(&build(TARGET), &["--debug", "--storage-postgres-url", &via_proxy], None);
    let mut client = server.client();
    // Background rules and delivery paused: only requests reach the database.
    let mut at = |kind: &str, data: Value| call(&mut client, kind, data, Some(1_000));
    assert_eq!(at("debug.start", json!({})).0, 200);
    at("promise.get", json!({ "id": "warm-up" }));
    thread::sleep(Duration::from_millis(200));

    let requests = every_kind();
    let documented = documented_round_trips();
    let mut measured: BTreeMap<String, u64> = BTreeMap::new();
    for (kind, data, status) in requests {
        let before = proxy.counts.snapshot();
        let (got, response) = at(kind, data.clone());
        assert_eq!(got, status, "{kind} {data}: {response}");
        let (syncs, queries, parses) = {
            let after = proxy.counts.snapshot();
            (after.0 - before.0, after.1 - before.1, after.2 - before.2)
        };
        assert_eq!((queries, parses), (0, 0), "{kind}: no simple queries, no statements prepared per request");
        assert_eq!(syncs, 1, "{kind} ({status}): exactly one round trip to PostgreSQL");
        let round_trips = measured.entry(kind.to_string()).or_default();
        *round_trips = (*round_trips).max(syncs);
    }
    for (kind, round_trips) in &measured {
        // In autocommit each round trip is one transaction.
        assert_eq!(documented.get(kind), Some(&(*round_trips, *round_trips)), "README row for {kind}");
    }
    assert_eq!(measured.len(), documented.len(), "every documented kind was measured: {measured:?}");
    // Idle: with the loops paused nothing reaches the database; running, one query per poll
    // interval (1 s): the background pass. Delivery waits for notifications.
    let before = proxy.counts.snapshot();
    thread::sleep(Duration::from_millis(1_500));
    assert_eq!(proxy.counts.snapshot(), before, "a paused server is silent");
    assert_eq!(at("debug.stop", json!({})).0, 200);
    thread::sleep(Duration::from_millis(1_200));
    let before = proxy.counts.snapshot();
    thread::sleep(Duration::from_millis(3_000));
    let after = proxy.counts.snapshot();
    let idle = after.0 - before.0 + after.1 - before.1;
    assert!(idle <= 4, "an idle server sent {idle} queries in 3 s");
    drop(server);
    drop(database);
}

/// One request of every protocol kind, in an order where each answers the given status: the
/// workload the per-request counts (round trips, statements) are measured on.
fn every_kind() -> Vec<(&'static str, Value, u16)> {
    let target = json!({ "resonate:target": "poll://any@nobody" });
    let create = |id: &str, tags: &Value| json!({ "id": id, "timeoutAt": FAR, "param": {}, "tags": tags });
    vec![
        ("promise.create", create("a", &json!({ "resonate:external": "true" })), 200),
        ("promise.get", json!({ "id": "a" }), 200),
        ("promise.create", create("w", &target), 200),
        ("promise.register_callback", json!({ "awaited": "a", "awaiter": "w" }), 200),
        ("promise.register_listener", json!({ "awaited": "a", "address": "poll://any@nobody" }), 200),
        ("promise.search", json!({}), 200),
        ("promise.settle", json!({ "id": "a", "state": "resolved", "value": {} }), 200),
        ("task.get", json!({ "id": "w" }), 200),
        ("task.acquire", json!({ "id": "w", "version": 0, "pid": "p", "ttl": 60_000 }), 200),
        ("task.heartbeat", json!({ "pid": "p", "tasks": [{ "id": "w", "version": 1 }] }), 200),
        ("task.fence", json!({ "id": "w", "version": 1, "action": { "kind": "promise.create", "head": {},
            "data": create("b", &json!({ "resonate:external": "true" })) } }), 200),
        ("task.suspend", json!({ "id": "w", "version": 1, "actions": [{ "kind": "promise.register_callback",
            "head": {}, "data": { "awaited": "b", "awaiter": "w" } }] }), 200),
        ("promise.settle", json!({ "id": "b", "state": "resolved", "value": {} }), 200),
        ("task.acquire", json!({ "id": "w", "version": 1, "pid": "p", "ttl": 60_000 }), 200),
        ("task.release", json!({ "id": "w", "version": 2 }), 200),
        ("task.halt", json!({ "id": "w" }), 200),
        ("task.continue", json!({ "id": "w" }), 200),
        ("task.acquire", json!({ "id": "w", "version": 2, "pid": "p", "ttl": 60_000 }), 200),
        ("task.fulfill", json!({ "id": "w", "version": 3, "action": { "kind": "promise.settle", "head": {},
            "data": { "id": "w", "state": "resolved", "value": {} } } }), 200),
        ("task.create", json!({ "pid": "p", "ttl": 60_000, "action": { "kind": "promise.create", "head": {},
            "data": create("root", &target) } }), 200),
        ("task.search", json!({}), 200),
        ("schedule.create", json!({ "id": "s", "cron": "0 * * * *", "promiseId": "s.{{.timestamp}}",
            "promiseTimeout": 60_000 }), 200),
        ("schedule.get", json!({ "id": "s" }), 200),
        ("schedule.search", json!({}), 200),
        ("schedule.delete", json!({ "id": "s" }), 200),
        ("promise.get", json!({ "id": "missing" }), 404),
        ("task.acquire", json!({ "id": "w", "version": 9, "pid": "p", "ttl": 1 }), 409),
    ]
}

// ----- statements per request on MySQL -----

/// MySQL client commands: a text query, a prepared statement's execution, a preparation.
const COM_QUERY: u8 = 0x03;
const COM_STMT_PREPARE: u8 = 0x16;
const COM_STMT_EXECUTE: u8 = 0x17;

/// Forwards client-to-server MySQL packets one by one, counting each command (the first byte of
/// a packet with sequence number 0) before it is sent on.
fn forward_counting_mysql(mut from: TcpStream, mut to: TcpStream, counts: &Counts) {
    loop {
        let mut head = [0u8; 4];
        if from.read_exact(&mut head).is_err() {
            break;
        }
        let len = u32::from_le_bytes([head[0], head[1], head[2], 0]) as usize;
        let mut body = vec![0u8; len];
        if from.read_exact(&mut body).is_err() {
            break;
        }
        if head[3] == 0 && !body.is_empty() {
            *counts.by_type.lock().unwrap().entry(body[0]).or_default() += 1;
        }
        if to.write_all(&head).is_err() || to.write_all(&body).is_err() {
            break;
        }
    }
    let _ = to.shutdown(Shutdown::Both);
}

/// The `| kind | statements |` rows of generated/mysql-http/README.md.
fn documented_statements() -> BTreeMap<String, u64> {
    let readme = std::fs::read_to_string(repo_root().join("generated").join(MYSQL).join("README.md")).unwrap();
    readme
        .lines()
        .filter_map(|line| {
            let cells: Vec<&str> = line.trim_matches('|').split('|').map(str::trim).collect();
            let kind = cells.first()?.strip_prefix('`')?.strip_suffix('`')?;
            Some((kind.to_string(), cells.get(1)?.parse().ok()?))
        })
        .collect()
}

/// Counts the statements (text queries and prepared-statement executions, `COMMIT` included;
/// each one round trip) one server sends MySQL per request kind, through a proxy, on a single
/// pooled connection with the background rules and delivery paused, and holds the README's
/// table to them. Run with `--nocapture` to see the measured table.
#[test]
fn mysql_statements_per_request() {
    let admin = mysql_admin_url();
    let upstream: SocketAddr = {
        let host = admin.split('@').nth(1).and_then(|rest| rest.split('/').next()).unwrap_or("127.0.0.1:3306");
        let host = if host.contains(':') { host.to_string() } else { format!("{host}:3306") };
        host.replace("localhost", "127.0.0.1").parse().expect("the admin URL names host:port")
    };
    let proxy = Proxy::forwarding(upstream, forward_counting_mysql);
    let database = Arc::new(Database::create(MYSQL));
    // Over TCP to the proxy: the driver would otherwise switch to the server's Unix socket.
    let via_proxy = database.url.replacen(&upstream.to_string(), &format!("127.0.0.1:{}", proxy.port), 1)
        + "?prefer_socket=false";
    assert!(via_proxy.contains(&proxy.port.to_string()), "the database URL names {upstream}");
    let args = ["--debug", "--storage-mysql-pool-size", "1", "--storage-mysql-url", &via_proxy];
    let server = Server::start_on(&build(MYSQL), &args, None);
    let mut client = server.client();
    let mut at = |kind: &str, data: Value| call(&mut client, kind, data, Some(1_000));
    assert_eq!(at("debug.start", json!({})).0, 200);
    at("promise.get", json!({ "id": "warm-up" }));
    thread::sleep(Duration::from_millis(200));
    let statements = || proxy.counts.get(COM_QUERY) + proxy.counts.get(COM_STMT_EXECUTE);

    let requests = every_kind();
    let documented = documented_statements();
    let mut measured: BTreeMap<String, u64> = BTreeMap::new();
    for (kind, data, status) in requests {
        let before = statements();
        let (got, response) = at(kind, data.clone());
        assert_eq!(got, status, "{kind} {data}: {response}");
        let most = measured.entry(kind.to_string()).or_default();
        *most = (*most).max(statements() - before);
    }
    eprintln!("| kind | statements |\n|---|---:|");
    for (kind, n) in &measured {
        eprintln!("| `{kind}` | {n} |");
    }
    assert_eq!(documented, measured, "the README's table (left) against the statements measured (right)");
    assert!(proxy.counts.get(COM_STMT_PREPARE) > 0, "statements are prepared (once per connection)");
    // Idle and paused, the server sends nothing; running and idle without streams, one
    // background pass per poll interval (1 s).
    let before = statements();
    thread::sleep(Duration::from_millis(1_500));
    assert_eq!(statements(), before, "a paused server is silent");
    assert_eq!(at("debug.stop", json!({})).0, 200);
    thread::sleep(Duration::from_millis(1_200));
    let before = statements();
    thread::sleep(Duration::from_millis(3_000));
    let idle = statements() - before;
    assert!(idle <= 4 * 4, "an idle server sent {idle} statements in 3 s");
    eprintln!("idle: {idle} statements in 3 s");
    drop(server);
    drop(database);
}

/// A server that cannot use its database says why, exits non-zero, and never prints the URL's
/// password: an unreachable host, a malformed URL, a wrong user, no URL.
#[test]
fn start_errors_are_clear_and_hide_the_password() {
    start_errors(
        TARGET,
        "--storage-postgres-url",
        "RESONATE_STORAGE__POSTGRES__URL",
        &[
            ("postgres://root:s3cret@127.0.0.1:1/x", "cannot use PostgreSQL at postgres://root:***@127.0.0.1:1/x"),
            ("postgres://root:s3cret@127.0.0.1:5432/x?sslmode=nonsense", "is not a valid PostgreSQL URL"),
            ("postgres://nobody:s3cret@127.0.0.1:5432/test", "cannot use PostgreSQL at postgres://nobody:***@"),
        ],
        "no database: pass --storage-postgres-url",
    );
}

#[test]
fn mysql_start_errors_are_clear_and_hide_the_password() {
    start_errors(
        MYSQL,
        "--storage-mysql-url",
        "RESONATE_STORAGE__MYSQL__URL",
        &[
            ("mysql://root:s3cret@127.0.0.1:1/x", "cannot use MySQL at mysql://root:***@127.0.0.1:1/x"),
            ("mysql:/root:s3cret@127.0.0.1/x", "not a valid MySQL URL"),
            ("mysql://root:s3cret@127.0.0.1:3306/", "names no database"),
            ("mysql://nobody:s3cret@127.0.0.1:3306/test", "cannot use MySQL at mysql://nobody:***@"),
        ],
        "no database: pass --storage-mysql-url",
    );
}

/// Starts `target` with each `(url, expected)` and once without a URL (`missing`).
fn start_errors(target: &str, flag: &str, env: &str, urls: &[(&str, &str)], missing: &str) {
    let bin = build(target);
    let cases = urls.iter().map(|(url, expected)| (vec![flag, *url], *expected)).chain([(vec![], missing)]);
    for (args, expected) in cases {
        let output = std::process::Command::new(&bin)
            .args(&args)
            .args(["--server-port", "0"])
            .env_remove(env)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{args:?} started");
        assert!(stderr.contains(expected), "{args:?}: expected {expected:?} in {stderr:?}");
        assert!(!stderr.contains("s3cret"), "{args:?} printed the password: {stderr}");
    }
}
