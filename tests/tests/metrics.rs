//! `metrics: prometheus` (spec/metrics.yaml): `GET /metrics` on the server's own metrics port
//! is valid Prometheus text (`promtool check metrics`, from Debian's `prometheus` package), and
//! its counters, histograms and gauges move exactly with the requests this test sends, on
//! sqlite-http-ops and on postgres-http-jwt-ops (JWT: every request carries the admin token).

use resonate_tests::client::{Client, Sse};
use resonate_tests::jwt::admin_token;
use resonate_tests::server::{build, Server};
use resonate_tests::call;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::io::Write;
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

/// One hour after the test runs, in ms: no promise here times out.
fn later() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64 + 3_600_000
}

/// One scrape: every sample line's series (`name{labels}`, as the server writes it) and value.
struct Scrape {
    text: String,
    samples: BTreeMap<String, f64>,
}

impl Scrape {
    fn get(&self, series: &str) -> f64 {
        self.samples.get(series).copied().unwrap_or(0.0)
    }
}

fn scrape(server: &Server) -> Scrape {
    let addr = server.metrics.expect("a metrics target gets a metrics port from Server::start");
    let response = Client::new(addr).get("/metrics").expect("GET /metrics answers");
    assert_eq!(response.status, 200, "GET /metrics: {}", String::from_utf8_lossy(&response.body));
    let content_type = response.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case("content-type")).map(|(_, v)| v.as_str());
    assert_eq!(content_type, Some("text/plain; version=0.0.4; charset=utf-8"));
    let text = String::from_utf8(response.body).expect("the exposition is UTF-8");
    let samples = text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| {
            let (series, value) = l.rsplit_once(' ').unwrap_or_else(|| panic!("not a sample line: {l}"));
            (series.to_string(), value.parse().unwrap_or_else(|e| panic!("{l}: {e}")))
        })
        .collect();
    Scrape { text, samples }
}

/// Scrapes until `done` holds (5 s at most): delivery and the background rules run on their own.
fn scrape_until(server: &Server, what: &str, done: impl Fn(&Scrape) -> bool) -> Scrape {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let s = scrape(server);
        if done(&s) {
            return s;
        }
        assert!(Instant::now() < deadline, "{what} never held; last scrape:\n{}", s.text);
        thread::sleep(Duration::from_millis(50));
    }
}

/// Runs `promtool check metrics` on the exposition; fails loudly if promtool is missing.
fn promtool_check(text: &str) {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run promtool ({e}): install it with `apt-get install -y prometheus` (tests/run does)"));
    child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics failed:\n{}{}\n--- exposition ---\n{text}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn requests(kind: &str, status: u16) -> String {
    format!("resonate_request_total{{kind=\"{kind}\",status=\"{status}\"}}")
}

/// POSTs a raw envelope and returns its status (for requests `call` would not send).
fn post(client: &mut Client, body: &Value) -> u16 {
    client.post("/", body.to_string().as_bytes()).expect("POST / answers").status
}

fn counters_move_with_requests(target: &str) {
    let server = Server::start(&build(target), &[]);
    let mut client = server.client();
    let before = scrape(&server);
    promtool_check(&before.text);

    // A worker stream, so the execute message of a targeted promise is delivered (on every store).
    let bearer = admin_token().map(|t| format!("Bearer {t}"));
    let headers: Vec<(&str, &str)> = bearer.iter().map(|b| ("Authorization", b.as_str())).collect();
    let (response, sse) = Sse::open_with(server.addr, "/poll/workers/w1", &headers).expect("the stream opens");
    assert_eq!(response.status, 200);
    let mut sse = sse.unwrap();

    let mut ok = |kind: &str, data: Value| {
        let (status, answer) = call(&mut client, kind, data.clone(), None);
        assert_eq!(status, 200, "{kind} {data}: {answer}");
        answer
    };
    let at = later();
    ok("promise.create", json!({ "id": "p1", "timeoutAt": at }));
    ok("promise.create", json!({ "id": "p2", "timeoutAt": at, "tags": { "resonate:external": "true" } }));
    ok("promise.create", json!({ "id": "p3", "timeoutAt": at }));
    ok("promise.create", json!({ "id": "p1", "timeoutAt": at }));
    ok("promise.create", json!({ "id": "t1", "timeoutAt": at, "tags": { "resonate:target": "poll://any@workers" } }));
    ok("promise.register_listener", json!({ "awaited": "p2", "address": "poll://uni@watchers/nobody" }));
    ok("promise.settle", json!({ "id": "p1", "state": "resolved", "value": {} }));
    ok("promise.settle", json!({ "id": "p2", "state": "rejected", "value": {} }));
    let execute: Value = serde_json::from_str(&sse.next_data(Duration::from_secs(5)).unwrap().expect("the execute message arrives")).unwrap();
    let version = execute["data"]["task"]["version"].clone();
    ok("task.acquire", json!({ "id": "t1", "version": version, "pid": "w1", "ttl": 60_000 }));
    for id in ["missing-1", "missing-2"] {
        let (status, _) = call(&mut client, "promise.get", json!({ "id": id }), None);
        assert_eq!(status, 404);
    }
    let (status, _) = call(&mut client, "nope.nothing", json!({}), None);
    assert_eq!(status, 400);
    let wrong_version = json!({ "kind": "promise.get", "head": { "corrId": "v", "version": "2020-01-01" }, "data": { "id": "p1" } });
    assert_eq!(post(&mut client, &wrong_version), 400);
    assert_eq!(client.post("/", b"{not json").unwrap().status, 400);

    // Exact deltas by kind and status; each request observed once by its kind's histogram.
    let expected = [
        ("promise.create", 200, 5.0),
        ("promise.register_listener", 200, 1.0),
        ("promise.settle", 200, 2.0),
        ("task.acquire", 200, 1.0),
        ("promise.get", 404, 2.0),
        ("promise.get", 400, 1.0),
        ("unknown", 400, 2.0),
    ];
    let after = scrape_until(&server, "one delivery success", |s| {
        s.get("resonate_deliveries_total{status=\"success\"}") == before.get("resonate_deliveries_total{status=\"success\"}") + 1.0
    });
    promtool_check(&after.text);
    for (kind, status, n) in expected {
        let series = requests(kind, status);
        assert_eq!(after.get(&series) - before.get(&series), n, "{series}\n{}", after.text);
    }
    let total = |s: &Scrape| s.samples.iter().filter(|(k, _)| k.starts_with("resonate_request_total{")).map(|(_, v)| v).sum::<f64>();
    assert_eq!(total(&after) - total(&before), 14.0, "no other request was counted\n{}", after.text);
    for (kind, n) in [("promise.create", 5.0), ("promise.get", 3.0), ("unknown", 2.0)] {
        let count = format!("resonate_request_duration_seconds_count{{kind=\"{kind}\"}}");
        let inf = format!("resonate_request_duration_seconds_bucket{{kind=\"{kind}\",le=\"+Inf\"}}");
        assert_eq!(after.get(&count) - before.get(&count), n, "{count}");
        assert_eq!(after.get(&inf), after.get(&count), "{inf}");
    }

    // The execute went out once; the unblock waits in the outbox (no stream for that address).
    assert!(after.get("resonate_messages_total{kind=\"execute\"}") >= 1.0, "{}", after.text);
    assert_eq!(after.get("resonate_messages_queued{address=\"poll://uni@watchers/nobody\"}"), 1.0, "{}", after.text);

    // Promises and tasks by stored state.
    for (state, n) in [("pending", 2.0), ("resolved", 1.0), ("rejected", 1.0), ("rejected_canceled", 0.0), ("rejected_timedout", 0.0)] {
        assert_eq!(after.get(&format!("resonate_promises{{state=\"{state}\"}}")), n, "promises {state}\n{}", after.text);
    }
    for (state, n) in [("pending", 0.0), ("acquired", 1.0), ("suspended", 0.0), ("halted", 0.0), ("fulfilled", 0.0)] {
        assert_eq!(after.get(&format!("resonate_tasks{{state=\"{state}\"}}")), n, "tasks {state}\n{}", after.text);
    }

    // The background rules ran at start-up at least once.
    assert!(after.get("resonate_background_pass_duration_seconds_count") >= 1.0, "{}", after.text);
    // Only GET /metrics is served on the metrics port.
    assert_eq!(Client::new(server.metrics.unwrap()).get("/").unwrap().status, 404);
}

#[test]
fn sqlite_http_ops() {
    counters_move_with_requests("sqlite-http-ops");
}

#[test]
fn postgres_http_jwt_ops() {
    counters_move_with_requests("postgres-http-jwt-ops");
}
