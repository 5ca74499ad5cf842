//! What only the NATS targets do. `postgres-nats` as replicas: two server processes on one
//! database, reached over NATS. In one queue group they share the requests and answer each
//! exactly once; on one database, work created through one replica reaches a worker and is taken
//! up through the other. And a server that cannot reach NATS says so and exits. (The protocol
//! suites run over NATS through `RESONATE_TARGET`: conformance, fuzz, concurrency, crash, bad
//! input.)
//!
//! Needs the local NATS server (tests/nats-up) and a PostgreSQL the tests can create databases
//! on (`server::postgres_admin_url`).

use resonate_tests::{call, ok};
use resonate_tests::nats::{self, Nats};
use resonate_tests::server::{build, Server};
use resonate_tests::transport::{Endpoint, REPLY_TO};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::process::Command;
use std::time::{Duration, Instant};

const TARGET: &str = "postgres-nats";
/// A deadline no test reaches.
const FAR: i64 = 4_000_000_000_000;
/// How long an awaited message may take to arrive.
const WAIT: Duration = Duration::from_secs(5);


/// How many 200 answers a replica logged (`--level debug` logs one line per answer; the
/// readiness probes are answered 404).
fn answered(server: &Server) -> usize {
    server.log().lines().filter(|l| l.starts_with("debug answered 200 ")).count()
}

#[test]
fn replicas_in_one_queue_group_answer_every_request_once_and_share_them() {
    let a = Server::start(&build(TARGET), &["--level", "debug"]);
    let b = a.replica(&["--level", "debug"]);
    // The group hides which replica answered the start-up probe: probe until b answers one,
    // so both are subscribed before the requests go out.
    let mut probe = a.conn();
    let began = Instant::now();
    while !b.log().contains("debug answered ") {
        assert!(began.elapsed() < WAIT, "replica b never answered a request");
        call(&mut probe, "promise.get", json!({ "id": "probe" }), None);
    }
    let Endpoint::Nats(at) = a.endpoint() else { panic!("{TARGET} speaks NATS") };
    let mut nats = Nats::connect(at.nats).unwrap();
    // Subscribed already: the connection's inboxes are.
    let inbox = nats.new_inbox().unwrap();
    const REQUESTS: usize = 200;
    for i in 0..REQUESTS {
        let request = json!({
            "kind": "promise.create",
            "head": { "corrId": format!("c{i}"), "version": "2026-04-01" },
            "data": { "id": format!("p{i}"), "timeoutAt": FAR, "param": {}, "tags": {} },
        });
        let payload = request.to_string();
        nats.publish(&format!("{}.default", at.prefix), None, &[(REPLY_TO, &inbox)], payload.as_bytes()).unwrap();
    }
    nats.flush().unwrap();
    // Every answer, then a quiet second in which a second answer to any request would show.
    let mut answers: BTreeMap<String, usize> = BTreeMap::new();
    let began = Instant::now();
    let mut last = Instant::now();
    while last.elapsed() < Duration::from_secs(1) && began.elapsed() < Duration::from_secs(30) {
        if let Some(msg) = nats.next_msg(Duration::from_millis(100)).unwrap() {
            let envelope: Value = serde_json::from_slice(&msg.payload).unwrap();
            assert_eq!(envelope["head"]["status"], 200, "{envelope}");
            *answers.entry(envelope["head"]["corrId"].as_str().unwrap().to_string()).or_default() += 1;
            last = Instant::now();
        }
    }
    assert_eq!(answers.len(), REQUESTS, "every request is answered");
    let twice: Vec<_> = answers.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "answered more than once: {twice:?}");
    let (by_a, by_b) = (answered(&a), answered(&b));
    assert_eq!(by_a + by_b, REQUESTS, "each answer was given by one replica");
    assert!(by_a > 0 && by_b > 0, "the queue group shares the requests: replica a answered {by_a}, b {by_b}");
}

#[test]
fn work_created_through_one_replica_reaches_a_worker_and_is_done_through_the_other() {
    // Two replicas on one database, each on request subjects of its own (so the test chooses
    // which one a request goes through): the database, not the queue group, makes them one.
    let a = Server::start(&build(TARGET), &[]);
    let b = Server::start_on(&build(TARGET), &[], a.database.clone());
    let (mut through_a, mut through_b) = (a.conn(), b.conn());
    let group = format!("g{}", nats::unique().replace('.', ""));
    let mut worker = a.endpoint().worker(&group, "w1").unwrap();
    let target = a.endpoint().worker_address(&group, None);
    ok(&mut through_a, "promise.create", json!({ "id": "job", "timeoutAt": FAR, "param": {}, "tags": { "resonate:target": target } }));
    let message = worker.next_message(WAIT).unwrap().expect("an execute for the worker");
    let message: Value = serde_json::from_str(&message).unwrap();
    assert_eq!(message["kind"], "execute", "{message}");
    assert_eq!(message["data"]["task"], json!({ "id": "job", "version": 0 }), "{message}");
    let acquired = ok(&mut through_b, "task.acquire", json!({ "id": "job", "version": 0, "pid": "w1", "ttl": 60_000 }));
    assert_eq!(acquired["task"]["state"], "acquired", "{acquired}");
    let settle = json!({ "kind": "promise.settle", "head": { "corrId": "s", "version": "2026-04-01" },
        "data": { "id": "job", "state": "resolved", "value": {} } });
    ok(&mut through_b, "task.fulfill", json!({ "id": "job", "version": 1, "action": settle }));
    let seen = ok(&mut through_a, "promise.get", json!({ "id": "job" }));
    assert_eq!(seen["promise"]["state"], "resolved", "replica a reads what replica b wrote: {seen}");
}

#[test]
fn a_server_that_cannot_reach_nats_or_is_misconfigured_says_what_to_change_and_exits() {
    let bin = build("sqlite-nats");
    let dir = std::env::temp_dir().join(format!("resonate-nats-start-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cases: [(&[&str], &[&str]); 4] = [
        // Nothing listens on port 1; the password never reaches the message.
        (&["--nats-url", "nats://user:secret@127.0.0.1:1"], &["cannot connect to NATS at nats://***@127.0.0.1:1", "--nats-url"]),
        (&["--nats-url", "http://127.0.0.1:4222"], &["nats-url must look like nats://host:port", "http://127.0.0.1:4222"]),
        (&["--nats-api-prefix", "a b"], &["nats-api-prefix must be a NATS subject", "'a b'"]),
        (&["--nats-queue-group", ""], &["nats-queue-group must be a non-empty name"]),
    ];
    for (args, expected) in cases {
        let out = Command::new(&bin).args(args).current_dir(&dir).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} started");
        for text in expected {
            assert!(stderr.contains(text), "{args:?}: no {text:?} in {stderr}");
        }
        assert!(!stderr.contains("secret"), "{args:?} printed the password: {stderr}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
