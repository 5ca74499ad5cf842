//! At-least-once delivery (spec/rules.yaml `delivery`): a message stays queued until a push
//! endpoint answers 2xx or a stream writes it, failed attempts are retried with backoff, and the
//! failed messages of one address are capped. Push endpoints here are real TCP listeners that
//! refuse, fail, hang and recover. Runs on the target `RESONATE_TARGET` names (default sqlite-http).

use resonate_tests::{ok, queued};
use resonate_tests::client::{Client, Sse};
use resonate_tests::server::{build, target, Server};
use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

const FAR: i64 = 4_000_000_000_000;
/// Longest a test waits for the outcome it expects (backoff doubles from 1 s).
const WAIT: Duration = Duration::from_secs(20);

/// A delivering `--debug` server whose background rules wait an hour between passes.
fn start(args: &[&str]) -> (Server, Client) {
    let mut all = vec!["--debug", "--timeouts-poll-interval", "3600000"];
    all.extend_from_slice(args);
    let server = Server::start(&build(&target()), &all);
    let client = server.client();
    (server, client)
}


/// A pending promise `id` with a listener at `address`, then settled: one unblock queued.
fn unblock_to(client: &mut Client, id: &str, address: &str) {
    let tags = json!({ "resonate:external": "true" });
    ok(client, "promise.create", json!({ "id": id, "timeoutAt": FAR, "param": {}, "tags": tags }));
    ok(client, "promise.register_listener", json!({ "awaited": id, "address": address }));
    ok(client, "promise.settle", json!({ "id": id, "state": "resolved", "value": {} }));
}


/// Waits until `done` holds, checking every 50 ms; panics with `what` after [`WAIT`].
fn eventually(what: &str, done: impl FnMut() -> bool) {
    resonate_tests::eventually(what, WAIT, done)
}

/// How a test endpoint answers one push.
#[derive(Clone, Copy, Debug)]
enum Answer {
    Status(u16),
    /// Reads the request and never answers.
    Hang,
}

/// Serves pushes on `listener`, answering the n-th with `script[n]` (the last entry repeats),
/// and reports the body of every push it read, with the answer it gave.
fn endpoint(listener: TcpListener, script: Vec<Answer>) -> mpsc::Receiver<(Value, Answer)> {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let mut hung = Vec::new();
        for (n, stream) in listener.incoming().enumerate() {
            let Ok(stream) = stream else { return };
            let answer = script[n.min(script.len() - 1)];
            let Some(body) = read_push(&stream) else { continue };
            match answer {
                Answer::Status(code) => {
                    let reply = format!("HTTP/1.1 {code} X\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
                    let _ = (&stream).write_all(reply.as_bytes());
                }
                Answer::Hang => hung.push(stream),
            }
            if tx.send((body, answer)).is_err() {
                return;
            }
        }
    });
    rx
}

/// Reads one HTTP request and returns its JSON body.
fn read_push(stream: &TcpStream) -> Option<Value> {
    stream.set_read_timeout(Some(WAIT)).ok()?;
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    let mut length = 0;
    reader.read_line(&mut line).ok()?;
    loop {
        line.clear();
        reader.read_line(&mut line).ok()?;
        let Some((name, value)) = line.trim_end().split_once(':') else { break };
        if name.eq_ignore_ascii_case("content-length") {
            length = value.trim().parse().ok()?;
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body).ok()?;
    serde_json::from_slice(&body).ok()
}

/// A loopback port nothing listens on (bound, then released).
fn closed_port() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap()
}

#[test]
fn a_push_that_fails_then_times_out_is_retried_until_the_endpoint_recovers() {
    let (_server, mut client) = start(&["--transports-http-push-request-timeout", "500"]);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = format!("http://{}/hook", listener.local_addr().unwrap());
    let pushes = endpoint(listener, vec![Answer::Status(500), Answer::Hang, Answer::Status(200)]);
    unblock_to(&mut client, "p", &address);
    let mut seen = Vec::new();
    while !matches!(seen.last(), Some(Answer::Status(200))) {
        let (body, answer) = pushes.recv_timeout(WAIT).expect("the server retries the push");
        assert_eq!(body["kind"], "unblock");
        assert_eq!(body["data"]["promise"]["id"], "p");
        assert_eq!(body["data"]["promise"]["state"], "resolved");
        seen.push(answer);
    }
    assert_eq!(format!("{seen:?}"), "[Status(500), Hang, Status(200)]", "one attempt per answer, in order");
    eventually("the delivered message leaves the outbox", || queued(&mut client, &address).is_empty());
    assert!(pushes.recv_timeout(Duration::from_millis(1_500)).is_err(), "no push after a 2xx");
}

#[test]
fn a_push_that_fails_at_once_is_retried_after_its_backoff_not_after_the_request_timeout() {
    // The default request timeout (180 s) holds a push that is on its way; a failure that comes
    // back at once must be due again after the first backoff (1 s), not when the hold runs out.
    let (_server, mut client) = start(&[]);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = format!("http://{}/hook", listener.local_addr().unwrap());
    let pushes = endpoint(listener, vec![Answer::Status(500), Answer::Status(200)]);
    unblock_to(&mut client, "p", &address);
    let (_, first) = pushes.recv_timeout(WAIT).expect("the server pushes the unblock");
    assert!(matches!(first, Answer::Status(500)));
    let failed = Instant::now();
    let (_, second) = pushes.recv_timeout(Duration::from_secs(10)).expect("the failed push is retried within 10 s");
    assert!(matches!(second, Answer::Status(200)));
    let after = failed.elapsed();
    assert!(after >= Duration::from_millis(800), "retried after its backoff (1 s), not at once: {after:?}");
    eventually("the delivered message leaves the outbox", || queued(&mut client, &address).is_empty());
}

#[test]
fn a_dead_endpoint_keeps_only_its_newest_failed_messages_up_to_the_cap() {
    let (_server, mut client) = start(&["--messages-retry-cap", "3"]);
    let dead = closed_port();
    let dead_address = format!("http://{dead}/hook");
    let other_address = format!("http://{}/other", closed_port());
    for i in 0..10 {
        unblock_to(&mut client, &format!("d{i}"), &dead_address);
    }
    unblock_to(&mut client, "o1", &other_address);
    unblock_to(&mut client, "o2", &other_address);
    eventually("every message failed once and the cap applied", || queued(&mut client, &dead_address).len() == 3);
    let ids = |messages: Vec<Value>| -> Vec<String> {
        messages.iter().map(|m| m["data"]["promise"]["id"].as_str().expect("an id").to_string()).collect()
    };
    assert_eq!(ids(queued(&mut client, &dead_address)), ["d7", "d8", "d9"], "the newest three stay");
    assert_eq!(ids(queued(&mut client, &other_address)), ["o1", "o2"], "the cap counts per address");

    // The endpoint comes back on the same port: what stayed is delivered.
    let pushes = endpoint(TcpListener::bind(dead).expect("the port is free again"), vec![Answer::Status(204)]);
    let mut delivered: Vec<String> = (0..3)
        .map(|_| {
            let (body, _) = pushes.recv_timeout(WAIT).expect("the kept messages are retried");
            body["data"]["promise"]["id"].as_str().expect("an id").to_string()
        })
        .collect();
    delivered.sort();
    assert_eq!(delivered, ["d7", "d8", "d9"]);
    eventually("delivered messages leave the outbox", || queued(&mut client, &dead_address).is_empty());
}

#[test]
fn an_unblock_waits_for_its_stream_to_connect() {
    let (server, mut client) = start(&[]);
    let address = "poll://uni@late/w1";
    unblock_to(&mut client, "s", address);
    // Long enough for the first attempt and its retry after 1 s to find no stream.
    thread::sleep(Duration::from_millis(1_500));
    assert_eq!(queued(&mut client, address).len(), 1, "kept while no stream listens");
    let (response, sse) = Sse::open(server.addr, "/poll/late/w1").expect("the stream opens");
    assert_eq!(response.status, 200);
    let mut sse = sse.expect("an event stream");
    let data = sse.next_data(WAIT).expect("the stream reads").expect("the unblock arrives");
    let message: Value = serde_json::from_str(&data).expect("one JSON message per event");
    assert_eq!(message["kind"], "unblock");
    assert_eq!(message["data"]["promise"]["id"], "s");
    eventually("the written message leaves the outbox", || queued(&mut client, address).is_empty());
}

#[test]
fn a_worker_that_went_away_gets_no_more_messages() {
    let (server, mut client) = start(&[]);
    let open = |id: &str| {
        let (response, sse) = Sse::open(server.addr, &format!("/poll/g/{id}")).expect("the stream opens");
        assert_eq!(response.status, 200);
        sse.expect("an event stream")
    };
    let gone = open("w1");
    let mut live = open("w2");
    // What a killed worker's kernel does: the connection closes.
    drop(gone);
    thread::sleep(Duration::from_millis(300));
    // `any` picks among the group's live streams: every message must reach w2.
    for i in 0..8 {
        unblock_to(&mut client, &format!("m{i}"), "poll://any@g");
        let data = live.next_data(WAIT).expect("the stream reads").expect("the live worker gets it");
        let message: Value = serde_json::from_str(&data).expect("one JSON message per event");
        assert_eq!(message["data"]["promise"]["id"], format!("m{i}"));
    }
}
