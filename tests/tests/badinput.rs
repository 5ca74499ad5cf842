//! Bad input against a live server of `RESONATE_TARGET` (default sqlite-http): at least
//! `RESONATE_BADINPUT_CASES` (default 100 000) generated cases (tests/src/badinput.rs) over
//! kept-alive connections, plus malformed HTTP on fresh connections, half-closed connections
//! and slow clients. Every case must be answered with a 4xx and a clear message (413 for an
//! oversized body), never a 5xx, a panic or a hang, and must leave the store as it was
//! (`debug.snap` before and after); the server must still answer afterwards.
//!
//! A NATS target gets the generated cases as payloads (none over the NATS server's
//! `max_payload`) and, instead of the HTTP sections, requests with a missing, malformed or
//! invalid reply address: an answer (a 4xx envelope) where there is somewhere to answer, else
//! none, and never a change to the store (spec/choices.yaml nats-reply).
//!
//! `RESONATE_BADINPUT_SEED` replays a run; the seed is printed.

use resonate_tests::badinput::{too_large_message, Case, Expect, Generator, VERSION};
use resonate_tests::call;
use resonate_tests::nats::{self, Nats};
use resonate_tests::server::{build, ready, speaks_nats, target, Server};
use resonate_tests::transport::{Conn, Endpoint, Rpc, REPLY_TO};
use serde_json::{json, Value};
use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

/// The request clock of the seeding steps.
const T: i64 = 1_000;
/// A deadline no test reaches.
const FAR: i64 = 4_000_000_000_000;
/// How long the server lets a client take to send a request's header or body
/// (`READ_TIMEOUT` in templates/transport/http/http.rs).
const READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Slack on top of READ_TIMEOUT before a slow connection counts as hung.
const SLACK: Duration = Duration::from_secs(5);
/// How many worker threads send cases.
const WORKERS: usize = 4;
/// A worker compares `debug.snap` with the baseline every this many cases.
const SNAP_EVERY: usize = 5_000;
/// How long any single answer may take before the case counts as a hang.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(10);

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn seed() -> u64 {
    let seed = env_or(
        "RESONATE_BADINPUT_SEED",
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(7),
    );
    eprintln!("badinput: seed {seed} (replay with RESONATE_BADINPUT_SEED={seed})");
    seed
}

fn ok(conn: &mut impl Rpc, kind: &str, data: Value) -> Value {
    let (status, env) = call(conn, kind, data.clone(), Some(T));
    assert_eq!(status, 200, "{kind} {data}: {env}");
    env["data"].clone()
}

/// A `--debug` server, paused, holding one record of each kind so refusals that read state
/// have something to read: pending and settled promises, an acquired task, a schedule.
fn seeded() -> (Server, Value) {
    let server = Server::start(&build(&target()), &["--debug"]);
    let mut c = server.conn();
    ok(&mut c, "debug.start", json!({}));
    let target = json!({ "resonate:target": nobody(&server.endpoint()) });
    ok(&mut c, "promise.create", json!({ "id": "p", "timeoutAt": FAR, "tags": { "resonate:external": "true" } }));
    ok(&mut c, "promise.create", json!({ "id": "done", "timeoutAt": FAR }));
    ok(&mut c, "promise.settle", json!({ "id": "done", "state": "resolved", "value": { "data": "eA==" } }));
    ok(&mut c, "promise.create", json!({ "id": "t", "timeoutAt": FAR, "tags": target }));
    ok(&mut c, "task.acquire", json!({ "id": "t", "version": 0, "pid": "w", "ttl": FAR }));
    ok(&mut c, "promise.register_callback", json!({ "awaited": "p", "awaiter": "t" }));
    ok(&mut c, "schedule.create", json!({ "id": "s", "cron": "0 0 1 1 *", "promiseId": "s.{{.timestamp}}", "promiseTimeout": 1000 }));
    let snap = ok(&mut c, "debug.snap", json!({}));
    (server, snap)
}

/// The address of any worker of a group no worker is in.
fn nobody(endpoint: &Endpoint) -> String {
    endpoint.worker_address("nobody", None)
}

/// Checks one answer against what the case expects; `Err` names what is wrong.
fn judge(case: &Case, status: u16, content_type: Option<&str>, body: &[u8]) -> Result<(), String> {
    if !(400..500).contains(&status) {
        return Err(format!("answered {status}, not a 4xx"));
    }
    match &case.expect {
        // Over NATS the answer is an envelope (it has no content type) with the same message.
        Expect::TooLarge if content_type.is_none() => {
            let env: Value = serde_json::from_slice(body).unwrap_or_default();
            if status != 413 || env["data"] != json!(too_large_message()) {
                return Err(format!("answered {status} {env}, not 413 with the spec's message"));
            }
            Ok(())
        }
        Expect::TooLarge => {
            if status != 413 || body != too_large_message().as_bytes() || content_type != Some("text/plain") {
                let text = String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned();
                return Err(format!("answered {status} {content_type:?} {text:?}, not 413 text/plain with the spec's message"));
            }
            Ok(())
        }
        Expect::Route => Ok(()),
        Expect::Refusal(..) | Expect::AnyRefusal => {
            let env: Value = serde_json::from_slice(body).map_err(|e| format!("answered {status} with no JSON envelope ({e})"))?;
            let message = env["data"].as_str().unwrap_or_default();
            if message.trim().is_empty() {
                return Err(format!("answered {status} without a message: {env}"));
            }
            if env["head"]["status"] != json!(status) || env["head"]["version"] != json!(VERSION) {
                return Err(format!("head disagrees with the HTTP status {status}: {env}"));
            }
            if let Expect::Refusal(want, prefix) = case.expect {
                if status != want || !message.starts_with(prefix) {
                    return Err(format!("answered {status} {message:?}, wanted {want} {prefix:?}…"));
                }
            }
            Ok(())
        }
    }
}

/// Sends `count` generated cases on one kept-alive connection; returns the failures.
fn worker(endpoint: &Endpoint, generator: Generator, count: usize, baseline: &Value, big: bool) -> Vec<String> {
    let mut generator = generator;
    let mut conn = endpoint.conn(ANSWER_TIMEOUT);
    let mut failures = Vec::new();
    let mut spent: std::collections::BTreeMap<String, (usize, Duration)> = Default::default();
    for i in 0..count {
        let case = generator.case(big);
        let t0 = Instant::now();
        let headers: &[(&str, &str)] = if case.method == "POST" { &[("Content-Type", "application/json")] } else { &[] };
        let answer = match &mut conn {
            Conn::Http(client) => client.request(case.method, &case.path, headers, &case.body),
            Conn::Nats { .. } => conn.rpc(&case.body),
        };
        match answer {
            Ok(r) => {
                if let Err(why) = judge(&case, r.status, r.header("content-type"), &r.body) {
                    failures.push(format!("case {i} ({}): {why}\n  request: {}", case.what, preview(&case.body)));
                }
            }
            Err(e) => failures.push(format!("case {i} ({}): no answer: {e}\n  request: {}", case.what, preview(&case.body))),
        }
        let e = spent.entry(case.what.split(':').next().unwrap_or_default().to_string()).or_default();
        e.0 += 1;
        e.1 += t0.elapsed();
        if failures.len() >= 10 {
            break;
        }
        if (i + 1) % SNAP_EVERY == 0 || i + 1 == count {
            let snap = ok(&mut endpoint.conn(ANSWER_TIMEOUT), "debug.snap", json!({}));
            if snap != *baseline {
                failures.push(format!("the store changed during cases {}..={i}: {snap}", (i + 1).saturating_sub(SNAP_EVERY)));
                break;
            }
        }
    }
    if std::env::var_os("RESONATE_BADINPUT_PROFILE").is_some() {
        let mut v: Vec<_> = spent.into_iter().collect();
        v.sort_by_key(|(_, (_, d))| std::cmp::Reverse(*d));
        for (what, (n, d)) in v.iter().take(12) {
            eprintln!("  {what}: {n} cases, {:.2} s", d.as_secs_f64());
        }
    }
    failures
}

fn preview(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(&body[..body.len().min(300)]).into_owned();
    if body.len() > 300 {
        format!("{text}… ({} bytes)", body.len())
    } else {
        text
    }
}

/// Writes `raw` on a fresh connection, optionally half-closes it, and reads until the server
/// closes or answers; `Ok(Some(status))` for an answer, `Ok(None)` for a close without one.
fn raw_exchange(addr: SocketAddr, raw: &[u8], half_close: bool) -> Result<Option<u16>, String> {
    let mut s = TcpStream::connect(addr).map_err(|e| format!("connect: {e}"))?;
    s.set_read_timeout(Some(ANSWER_TIMEOUT)).unwrap();
    s.set_write_timeout(Some(ANSWER_TIMEOUT)).unwrap();
    if let Err(e) = s.write_all(raw) {
        // The server may refuse a bad head before reading the rest.
        if !matches!(e.kind(), ErrorKind::BrokenPipe | ErrorKind::ConnectionReset) {
            return Err(format!("write: {e}"));
        }
    }
    if half_close {
        let _ = s.shutdown(Shutdown::Write);
    }
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                got.extend_from_slice(&buf[..n]);
                if got.windows(4).any(|w| w == b"\r\n\r\n") && !half_close {
                    break;
                }
            }
            Err(e) if e.kind() == ErrorKind::ConnectionReset => break,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return Err(format!("neither answered nor closed within {ANSWER_TIMEOUT:?}"))
            }
            Err(e) => return Err(format!("read: {e}")),
        }
    }
    if got.is_empty() {
        return Ok(None);
    }
    let line = String::from_utf8_lossy(&got[..got.len().min(64)]).into_owned();
    let status = line.split_whitespace().nth(1).and_then(|s| s.parse().ok());
    match status {
        Some(s) if line.starts_with("HTTP/1.") => Ok(Some(s)),
        _ => Err(format!("answered something that is not HTTP: {line:?}")),
    }
}

/// Malformed HTTP on fresh connections, and half-closed ones: a 4xx or a plain close, never
/// a 5xx or a hang.
fn malformed_http(addr: SocketAddr, seed: u64) -> (usize, Vec<String>) {
    let body = format!(r#"{{"kind":"promise.get","head":{{"corrId":"c","version":"{VERSION}"}},"data":{{"id":"nx"}}}}"#);
    let good_head = format!("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n", body.len());
    let mut cases: Vec<(String, Vec<u8>, bool)> = vec![
        ("garbage request line".into(), b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n".to_vec(), false),
        ("no version".into(), b"POST /\r\n\r\n".to_vec(), false),
        ("HTTP/2 preface".into(), b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec(), false),
        ("HTTP/9".into(), b"POST / HTTP/9.9\r\nHost: x\r\n\r\n".to_vec(), false),
        ("header without colon".into(), b"POST / HTTP/1.1\r\nHost x\r\n\r\n".to_vec(), false),
        ("NUL in a header".into(), b"POST / HTTP/1.1\r\nHost: x\x00y\r\n\r\n".to_vec(), false),
        ("two content lengths".into(), b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n{}x".to_vec(), false),
        ("negative content length".into(), b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n".to_vec(), false),
        ("huge content length".into(), b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 18446744073709551615\r\n\r\n".to_vec(), false),
        ("content length over the limit".into(), b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000000\r\n\r\n{".to_vec(), true),
        ("bad chunk size".into(), b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n".to_vec(), false),
        ("chunked and length".into(), b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 2\r\n\r\n2\r\n{}\r\n0\r\n\r\n".to_vec(), false),
        ("unknown transfer coding".into(), b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n{}".to_vec(), false),
        ("header too large".into(), format!("POST / HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n", "a".repeat(1 << 20)).into_bytes(), false),
        ("too many headers".into(), format!("POST / HTTP/1.1\r\nHost: x\r\n{}\r\n", "X-H: 1\r\n".repeat(500)).into_bytes(), false),
        ("request line too long".into(), format!("GET /{} HTTP/1.1\r\nHost: x\r\n\r\n", "a".repeat(1 << 20)).into_bytes(), false),
        ("half-closed inside the head".into(), b"POST / HTTP/1.1\r\nHost: x\r\nContent-Le".to_vec(), true),
        ("half-closed inside the body".into(), format!("{good_head}{}", &body[..10]).into_bytes(), true),
        ("half-closed after an empty body".into(), b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n".to_vec(), true),
        ("half-closed after a bad request".into(), format!("{good_head}{body}").into_bytes(), true),
        ("closed at once".into(), Vec::new(), true),
    ];
    // Random bytes as a whole request, and random cuts of a valid one, half-closed.
    let mut rng = resonate_tests::badinput::Rng(seed ^ 0x5eed);
    for i in 0..120 {
        let raw: Vec<u8> = if i % 2 == 0 {
            (0..1 + rng.below(200)).map(|_| rng.next_u64() as u8).collect()
        } else {
            let whole = format!("{good_head}{body}").into_bytes();
            whole[..rng.below(whole.len())].to_vec()
        };
        cases.push((format!("raw bytes #{i}"), raw, i % 2 == 1));
    }
    // A half-close counts as the client going away (spec/choices.yaml half-close-is-gone): a
    // 4xx or a plain close are both fine.
    let mut failures = Vec::new();
    for (what, raw, half) in &cases {
        match raw_exchange(addr, raw, *half) {
            Ok(Some(status)) if !(400..500).contains(&status) => failures.push(format!("{what}: answered {status}")),
            Ok(_) => {}
            Err(why) => failures.push(format!("{what}: {why}")),
        }
    }
    (cases.len(), failures)
}

/// A client that trickles bytes slower than the server's read timeout: the server must close
/// the connection (or answer 4xx) within READ_TIMEOUT plus slack, and must serve others meanwhile.
fn slow_client(addr: SocketAddr, prefix: &'static [u8], trickle: &'static [u8]) -> Result<Duration, String> {
    let mut s = TcpStream::connect(addr).map_err(|e| format!("connect: {e}"))?;
    s.set_read_timeout(Some(Duration::from_millis(300))).unwrap();
    let started = Instant::now();
    s.write_all(prefix).map_err(|e| format!("write: {e}"))?;
    let mut buf = [0u8; 1024];
    for byte in trickle.iter().cycle() {
        if started.elapsed() > READ_TIMEOUT + SLACK {
            return Err(format!("still open after {:?}", started.elapsed()));
        }
        if s.write_all(&[*byte]).is_err() {
            return Ok(started.elapsed());
        }
        match s.read(&mut buf) {
            Ok(0) => return Ok(started.elapsed()),
            Ok(n) => {
                let line = String::from_utf8_lossy(&buf[..n]).into_owned();
                let status: u16 = line.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
                return if (400..500).contains(&status) { Ok(started.elapsed()) } else { Err(format!("answered {line:?}")) };
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => return Ok(started.elapsed()),
        }
    }
    unreachable!("the trickle cycles forever")
}

/// What this target cannot be sent, said aloud rather than skipped silently.
fn skipped(what: &str) {
    eprintln!("badinput ({}): {what}: skipped, HTTP only (the target speaks NATS)", target());
}

#[test]
fn bad_input_is_refused_with_a_4xx_and_changes_nothing() {
    let count: usize = env_or("RESONATE_BADINPUT_CASES", 100_000);
    let seed = seed();
    let (server, baseline) = seeded();
    let endpoint = server.endpoint();
    let (http, max_payload) = match &endpoint {
        Endpoint::Http(addr) => (Some(*addr), None),
        Endpoint::Nats(at) => {
            skipped("malformed HTTP, wrong methods and paths, half-closed, slow and silent connections");
            let max = Nats::connect(at.nats).expect("the NATS server answers").max_payload();
            eprintln!("badinput ({}): payloads up to the NATS server's max_payload, {max} bytes", target());
            // Room for the header block that names the reply inbox.
            (None, Some(max - 256))
        }
    };

    // Slow clients run beside the cases: a header trickled byte by byte, a body trickled, and a
    // connection that sends nothing at all.
    let slow: Vec<_> = [
        ("slow header", &b"POST / HTTP/1.1\r\nHost: x\r\n"[..], &b"X-Slow: aaaaaaaa\r\n"[..]),
        ("slow body", &b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n{"[..], &b"\"a\":1,"[..]),
        ("silent", &b""[..], &b""[..]),
    ]
    .into_iter()
    .filter_map(|(what, prefix, trickle)| {
        let addr = http?;
        Some((what, thread::spawn(move || if trickle.is_empty() { silent(addr) } else { slow_client(addr, prefix, trickle) })))
    })
    .collect();

    let started = Instant::now();
    let per = count.div_ceil(WORKERS);
    let workers: Vec<_> = (0..WORKERS)
        .map(|w| {
            let (baseline, endpoint) = (baseline.clone(), endpoint.clone());
            let generator = Generator::new(seed.wrapping_add(w as u64), &nobody(&endpoint), max_payload);
            thread::spawn(move || worker(&endpoint, generator, per, &baseline, w == 0))
        })
        .collect();
    let mut failures: Vec<String> = workers.into_iter().flat_map(|w| w.join().expect("worker panicked")).collect();
    let elapsed = started.elapsed();
    eprintln!(
        "badinput ({}): {} cases in {:.1} s, {:.0} cases/s",
        target(),
        per * WORKERS,
        elapsed.as_secs_f64(),
        (per * WORKERS) as f64 / elapsed.as_secs_f64()
    );

    if let Some(addr) = http {
        let (raw_count, raw_failures) = malformed_http(addr, seed);
        eprintln!("badinput: {raw_count} malformed or half-closed HTTP exchanges on fresh connections");
        failures.extend(raw_failures);
    }

    for (what, handle) in slow {
        match handle.join().expect("slow client panicked") {
            Ok(after) => eprintln!("badinput: {what} connection closed after {:.1} s", after.as_secs_f64()),
            Err(why) => failures.push(format!("{what}: {why}")),
        }
    }

    assert!(ready(&endpoint), "the server stopped answering");
    let snap = ok(&mut server.conn(), "debug.snap", json!({}));
    if snap != baseline {
        failures.push(format!("the store changed: before {baseline}\nafter {snap}"));
    }
    let log = server.log();
    if log.contains("panicked") {
        failures.push(format!("the server panicked:\n{log}"));
    }
    assert!(failures.is_empty(), "seed {seed}: {} failures:\n{}", failures.len(), failures.join("\n"));
}

/// A connection that never sends a byte must be closed within READ_TIMEOUT plus slack.
fn silent(addr: SocketAddr) -> Result<Duration, String> {
    let mut s = TcpStream::connect(addr).map_err(|e| format!("connect: {e}"))?;
    s.set_read_timeout(Some(Duration::from_millis(300))).unwrap();
    let started = Instant::now();
    let mut buf = [0u8; 64];
    loop {
        if started.elapsed() > READ_TIMEOUT + SLACK {
            return Err(format!("still open after {:?}", started.elapsed()));
        }
        match s.read(&mut buf) {
            Ok(0) => return Ok(started.elapsed()),
            Ok(n) => return Err(format!("sent {:?} unasked", String::from_utf8_lossy(&buf[..n]))),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => return Ok(started.elapsed()),
        }
    }
}

/// Valid requests at the edges of the integer range, negative clocks and odd cron fields:
/// they may be accepted (the store changes) or refused with a 4xx, but never a 5xx, a panic
/// (an overflow in a debug build) or a dead server. Background passes then run at the far end
/// of time, where every deadline computed from these numbers is due.
#[test]
fn extreme_numbers_are_accepted_or_refused_never_a_5xx() {
    let server = Server::start(&build(&target()), &["--debug"]);
    let mut c = server.conn();
    ok(&mut c, "debug.start", json!({}));
    let max = i64::MAX;
    let address = nobody(&server.endpoint());
    let target = json!({ "resonate:target": address });
    let mut requests: Vec<(&str, Value, i64)> = Vec::new();
    for (i, now) in [T, max, max - 1, 0, -1, i64::MIN, -(1 << 53)].into_iter().enumerate() {
        let p = |s: &str| format!("x{i}.{s}");
        requests.extend([
            ("promise.create", json!({ "id": p("max"), "timeoutAt": max, "tags": target }), now),
            ("promise.create", json!({ "id": p("zero"), "timeoutAt": 0, "tags": target }), now),
            ("promise.create", json!({ "id": p("timer"), "timeoutAt": max, "tags": { "resonate:timer": "true" } }), now),
            ("promise.create", json!({ "id": p("ext"), "timeoutAt": max - 1, "tags": { "resonate:external": "true" } }), now),
            ("promise.create", json!({ "id": p("delay"), "timeoutAt": max, "tags": { "resonate:target": address, "resonate:delay": (max - 1).to_string() } }), now),
            ("promise.create", json!({ "id": p("delay2"), "timeoutAt": max, "tags": { "resonate:target": address, "resonate:delay": "99999999999999999999999" } }), now),
            ("promise.create", json!({ "id": p("delay3"), "timeoutAt": max, "tags": { "resonate:target": address, "resonate:delay": "-1" } }), now),
            ("task.acquire", json!({ "id": p("max"), "version": 0, "pid": "w", "ttl": max }), now),
            ("task.heartbeat", json!({ "pid": "w", "tasks": [{ "id": p("max"), "version": 1 }, { "id": p("max"), "version": max }] }), now),
            ("task.fence", json!({ "id": p("max"), "version": 1, "action": { "kind": "promise.create", "head": {}, "data": { "id": p("child"), "timeoutAt": max, "tags": target } } }), now),
            ("task.suspend", json!({ "id": p("max"), "version": 1, "actions": [{ "kind": "promise.register_callback", "head": {}, "data": { "awaited": p("ext"), "awaiter": p("max") } }] }), now),
            ("task.create", json!({ "pid": "w", "ttl": max, "action": { "kind": "promise.create", "head": {}, "data": { "id": p("tc"), "timeoutAt": max, "tags": target } } }), now),
            ("task.release", json!({ "id": p("tc"), "version": 1 }), now),
            ("task.acquire", json!({ "id": p("tc"), "version": 2, "pid": "w", "ttl": max - 1 }), now),
            ("task.acquire", json!({ "id": p("tc"), "version": max, "pid": "w", "ttl": 1 }), now),
            ("task.fulfill", json!({ "id": p("tc"), "version": max, "action": { "kind": "promise.settle", "head": {}, "data": { "id": p("tc"), "state": "resolved" } } }), now),
            ("promise.search", json!({ "limit": max }), now),
            ("promise.search", json!({ "limit": i64::MIN }), now),
            ("task.search", json!({ "limit": 1000, "cursor": "\u{10ffff}" }), now),
            // Every minute from the start of time to its end for one clock only: a far
            // debug.tick then has far more occurrences to create than it may (TICK_PASSES).
            ("schedule.create", json!({ "id": p("s1"), "cron": if i == 0 { "* * * * *" } else { "0 0 1 1 *" }, "promiseId": p("s1.{{.timestamp}}"), "promiseTimeout": max }), now),
            ("schedule.create", json!({ "id": p("s2"), "cron": "*/99999999999999999999 * * * *", "promiseId": "s2", "promiseTimeout": 1 }), now),
            ("schedule.create", json!({ "id": p("s3"), "cron": "59 23 31 2 *", "promiseId": "s3", "promiseTimeout": 1 }), now),
            ("schedule.create", json!({ "id": p("s4"), "cron": "0-59/0 * * * *", "promiseId": "s4", "promiseTimeout": 1 }), now),
            ("schedule.create", json!({ "id": p("s5"), "cron": "60 24 32 13 8", "promiseId": "s5", "promiseTimeout": 1 }), now),
            ("schedule.create", json!({ "id": p("s6"), "cron": "* * * * * * * *", "promiseId": "s6", "promiseTimeout": 1 }), now),
            ("schedule.create", json!({ "id": p("s7"), "cron": "5-1 * * * *", "promiseId": "s7", "promiseTimeout": 1 }), now),
        ]);
    }
    for time in [T, max, 0, -1, i64::MIN] {
        requests.push(("debug.tick", json!({ "time": time }), time));
    }
    let mut failures = Vec::new();
    for (kind, data, now) in &requests {
        let t0 = Instant::now();
        let (status, env) = call(&mut c, kind, data.clone(), Some(*now));
        if t0.elapsed() > Duration::from_millis(300) {
            eprintln!("slow: {kind} {data} at {now}: {:?}", t0.elapsed());
        }
        if !(200..500).contains(&status) {
            failures.push(format!("{kind} {data} at {now}: {status} {env}"));
        }
    }
    assert!(ready(&server.endpoint()), "the server stopped answering");
    let log = server.log();
    assert!(!log.contains("panicked"), "the server panicked:\n{log}");
    assert!(failures.is_empty(), "{} requests got a 5xx:\n{}", failures.len(), failures.join("\n"));
}

/// Over NATS: requests whose answer has nowhere to go, or a bad place named. Where there is
/// somewhere to answer (the `Resonate-Reply-To` subject, else the NATS reply subject) a bad
/// request gets its 4xx envelope there and nowhere else; where there is not (no header and no
/// reply subject, or a header that names no subject and no reply subject) nothing is answered
/// and nothing applied, even a valid create (spec/choices.yaml nats-reply). No part of a bad
/// header ever becomes a subject. The store stays as it was and the server answers afterwards.
#[test]
fn over_nats_bad_reply_addresses_are_answered_where_possible_and_change_nothing() {
    if !speaks_nats(&target()) {
        eprintln!("badinput ({}): reply addresses: skipped, NATS only (the target speaks HTTP)", target());
        return;
    }
    let (server, baseline) = seeded();
    let Endpoint::Nats(at) = server.endpoint() else { unreachable!("{} speaks NATS", target()) };
    let mut nats = Nats::connect(at.nats).expect("the NATS server answers");
    let subject = format!("{}.default", at.prefix);
    // Where a header's first word would go if it were taken for a subject.
    let trap = format!("trap.{}", nats::unique());
    nats.subscribe(&trap, None).unwrap();
    nats.subscribe(&format!("{trap}.>"), None).unwrap();
    let (a, b) = (nats.new_inbox().unwrap(), nats.new_inbox().unwrap());
    nats.flush().unwrap();

    let envelope = |kind: &str, data: Value| json!({ "kind": kind, "head": { "corrId": "bad", "version": VERSION }, "data": data }).to_string();
    let get = envelope("promise.get", json!({ "id": "nx" }));
    let create = envelope("promise.create", json!({ "id": "applied", "timeoutAt": FAR }));
    let garbage = "\u{1}{not json";
    let header = |value: &str| format!("NATS/1.0\r\n{REPLY_TO}: {value}\r\n\r\n");
    /// What it is, its header block, its NATS reply subject, its payload, and the inbox and
    /// status of the one answer it must get.
    type Publish<'a> = (String, String, Option<&'a str>, &'a str, Option<(&'a str, u16)>);
    let mut cases: Vec<Publish> = vec![
        ("header".into(), header(&a), None, &get, Some((&a, 404))),
        ("reply subject".into(), String::new(), Some(&b), &get, Some((&b, 404))),
        ("header and reply subject".into(), header(&a), Some(&b), &get, Some((&a, 404))),
        ("lower-case header name".into(), format!("NATS/1.0\r\nresonate-reply-to: {a}\r\n\r\n"), None, &get, Some((&a, 404))),
        ("garbage, header".into(), header(&a), None, garbage, Some((&a, 400))),
        ("garbage, reply subject".into(), String::new(), Some(&b), garbage, Some((&b, 400))),
        ("garbage, nowhere".into(), String::new(), None, garbage, None),
        ("a valid create, nowhere".into(), String::new(), None, &create, None),
        ("a valid create, other headers only".into(), "NATS/1.0\r\nOther: x\r\n\r\n".into(), None, &create, None),
        ("a valid create, header line without a colon".into(), format!("NATS/1.0\r\n{REPLY_TO} {a}\r\n\r\n"), None, &create, None),
    ];
    let bad = ["", "a..b", ".a", "a.", "a.*", "a.>", ">", "*", &format!("{trap} x"), &format!("{trap}\tx"), &format!("{trap}\u{1}x")];
    for value in &bad {
        cases.push((format!("a valid create, header {value:?}, reply subject"), header(value), Some(&b), &create, Some((&b, 400))));
        cases.push((format!("a valid create, header {value:?}, nowhere"), header(value), None, &create, None));
    }

    let mut failures = Vec::new();
    for (what, block, reply, payload, answer) in &cases {
        nats.publish_block(&subject, *reply, block.as_bytes(), payload.as_bytes()).unwrap();
        let Some((inbox, status)) = answer else { continue };
        let deadline = Instant::now() + ANSWER_TIMEOUT;
        loop {
            let Some(msg) = nats.next_msg(deadline.saturating_duration_since(Instant::now())).unwrap() else {
                failures.push(format!("{what}: no answer on {inbox} within {ANSWER_TIMEOUT:?}"));
                break;
            };
            let text = String::from_utf8_lossy(&msg.payload).into_owned();
            if msg.subject != *inbox {
                failures.push(format!("{what}: an answer where none belongs, on {}: {text}", msg.subject));
                continue;
            }
            let env: Value = serde_json::from_str(&text).unwrap_or_default();
            let message = env["data"].as_str().unwrap_or_default();
            if env["head"]["status"] != json!(status) || message.is_empty() {
                failures.push(format!("{what}: answered {text}, wanted {status} with a message"));
            }
            break;
        }
    }
    // Anything still to come would answer a request that has nowhere to be answered.
    assert!(ready(&server.endpoint()), "the server stopped answering");
    while let Some(msg) = nats.next_msg(Duration::from_millis(500)).unwrap() {
        failures.push(format!("an answer where none belongs, on {}: {}", msg.subject, String::from_utf8_lossy(&msg.payload)));
    }
    let snap = ok(&mut server.conn(), "debug.snap", json!({}));
    if snap != baseline {
        failures.push(format!("the store changed: before {baseline}\nafter {snap}"));
    }
    let log = server.log();
    if log.contains("panicked") {
        failures.push(format!("the server panicked:\n{log}"));
    }
    eprintln!("badinput ({}): {} requests with a missing, malformed or invalid reply address", target(), cases.len());
    assert!(failures.is_empty(), "{} failures:\n{}", failures.len(), failures.join("\n"));
}

/// Over NATS an answer can be larger than the NATS server carries: a search finding two
/// promises whose params each fill three fifths of `max_payload`. The asker must still get an
/// answer (an envelope that fits), and the server must keep its NATS connection, which the NATS
/// server closes on a message over the limit (losing every other answer on its way).
#[test]
fn over_nats_an_answer_over_max_payload_is_still_an_answer() {
    if !speaks_nats(&target()) {
        eprintln!("badinput ({}): answers over max_payload: skipped, NATS only (the target speaks HTTP)", target());
        return;
    }
    let server = Server::start(&build(&target()), &["--debug"]);
    let Endpoint::Nats(at) = server.endpoint() else { unreachable!("{} speaks NATS", target()) };
    let max = Nats::connect(at.nats).expect("the NATS server answers").max_payload();
    let mut c = server.conn();
    let param = "A".repeat(max * 3 / 5 / 4 * 4);
    for id in ["big.1", "big.2"] {
        ok(&mut c, "promise.create", json!({ "id": id, "timeoutAt": FAR, "param": { "data": param } }));
    }
    let search = json!({ "kind": "promise.search", "head": { "corrId": "big", "version": VERSION }, "data": { "limit": 10 } });
    let answer = server.endpoint().conn(ANSWER_TIMEOUT).rpc(search.to_string().as_bytes());
    let log = server.log();
    assert!(!log.contains("connection dropped"), "the server lost its NATS connection:\n{log}");
    let answer = answer.unwrap_or_else(|e| panic!("a promise.search whose answer is over {max} bytes: {e}"));
    assert!((400..600).contains(&answer.status), "answered {} {}", answer.status, answer.text());
}
