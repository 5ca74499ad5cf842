//! The read-only dashboard (`/ui`, manifest `dashboard: true`) of sqlite-http-ops and
//! postgres-http-jwt-ops, in a real browser: a workflow is created through the API, then
//! tests/dashboard/check.py drives headless Chromium with Playwright for Python to search by id
//! prefix, state and tags, open one promise (task, callbacks, listeners), watch it auto-refresh,
//! and open the call tree, asserting what the page shows; on the jwt target it first checks that
//! the page shows the 401 until a token is pasted. `POST /ui/waiters` and the page's headers are
//! checked here directly.
//!
//! Needs Chromium and Playwright: `bash tests/dashboard-up` installs them (tests/run does) into
//! ~/.cache/resonate-gen/dashboard; `RESONATE_DASHBOARD_PYTHON` names another Python that has
//! Playwright. `RESONATE_DASHBOARD_SCREENSHOT=docs/dashboard.png` (on the sqlite test) writes the
//! README's screenshot.

use resonate_tests::call;
use resonate_tests::client::Client;
use resonate_tests::jwt::{b64url, eddsa_signature, AdminKey};
use resonate_tests::server::{build, has_auth, postgres_admin_url, psql, repo_root, Server};
use serde_json::{json, Value};
use std::path::PathBuf;
use std::process::Command;
use std::time::{SystemTime, UNIX_EPOCH};

/// A promise id and a tag value that are HTML: the page must show them as text.
const HTML_ID: &str = "<img src=x onerror=alert(1)>";

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).expect("after 1970").as_millis() as i64
}

/// The Python with Playwright: `RESONATE_DASHBOARD_PYTHON`, else the venv tests/dashboard-up makes.
fn python() -> PathBuf {
    if let Some(p) = std::env::var_os("RESONATE_DASHBOARD_PYTHON").filter(|p| !p.is_empty()) {
        return PathBuf::from(p);
    }
    let cache = std::env::var_os("RESONATE_DASHBOARD_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").expect("HOME is set")).join(".cache/resonate-gen/dashboard"));
    let python = cache.join("venv/bin/python");
    assert!(
        python.is_file(),
        "{} is missing: the dashboard test needs Chromium and Playwright for Python; run `bash tests/dashboard-up`",
        python.display()
    );
    python
}

fn ok(conn: &mut Client, kind: &str, data: Value) -> Value {
    let (status, answer) = call(conn, kind, data, None);
    assert_eq!(status, 200, "{kind}: {answer}");
    answer
}

/// The workflow check.py expects (its docstring): a tree under wf, a task, a callback and a
/// listener, decoys, an HTML id and a schedule.
fn workflow(server: &Server) {
    let mut c = server.client();
    let far = now_ms() + 3_600_000;
    let create = |c: &mut Client, id: &str, tags: Value| {
        ok(c, "promise.create", json!({ "id": id, "timeoutAt": far, "tags": tags, "param": { "data": "eyJhcmdzIjpbMV19" } }));
    };
    let target = "poll://any@workers";
    create(&mut c, "wf", json!({ "resonate:target": target, "resonate:origin": "wf", "resonate:parent": "wf", "app": "dash" }));
    create(&mut c, "wf.1", json!({ "resonate:target": target, "resonate:origin": "wf", "resonate:parent": "wf" }));
    create(&mut c, "wf.2", json!({ "resonate:origin": "wf", "resonate:parent": "wf" }));
    create(&mut c, "wf.1.1", json!({ "resonate:origin": "wf", "resonate:parent": "wf.1", "resonate:scope": "global", "app": "dash" }));
    create(&mut c, "wg-decoy", json!({}));
    create(&mut c, "a-other", json!({ "app": "other" }));
    create(&mut c, HTML_ID, json!({ "note": "<b>bold</b>" }));
    ok(&mut c, "promise.settle", json!({ "id": "wf.2", "state": "resolved", "value": { "data": "Mg==" } }));
    ok(&mut c, "promise.register_callback", json!({ "awaited": "wf.1.1", "awaiter": "wf.1" }));
    ok(&mut c, "promise.register_listener", json!({ "awaited": "wf.1.1", "address": "poll://any@watchers" }));
    let template = concat!("nightly.{", "{.timestamp}}");
    ok(&mut c, "schedule.create", json!({ "id": "nightly", "cron": "0 3 * * *", "promiseId": template, "promiseTimeout": 60000 }));
}

/// A token for ids starting with `prefix`, signed with the suites' admin key.
fn prefix_token(prefix: &str) -> String {
    let key = AdminKey::shared().public_key.with_file_name("ed25519.pem");
    let exp = now_ms() / 1000 + 3600;
    let claims = json!({ "exp": exp, "prefix": prefix }).to_string();
    let signed = format!("{}.{}", b64url(br#"{"alg":"EdDSA","typ":"JWT"}"#), b64url(claims.as_bytes()));
    let signature = eddsa_signature(&key, &signed).expect("signs");
    format!("{signed}.{}", b64url(&signature))
}

/// `GET /ui` and its files, and `POST /ui/waiters` with and without a token.
fn direct_checks(server: &Server, jwt: bool) {
    let mut c = server.client();
    let page = c.get("/ui").expect("GET /ui");
    assert_eq!(page.status, 200);
    assert_eq!(page.header("content-type"), Some("text/html; charset=utf-8"));
    let policy = page.header("content-security-policy").expect("a content security policy");
    assert!(policy.contains("script-src 'self'") && policy.contains("connect-src 'self'"), "{policy}");
    assert!(page.text().contains(&format!("data-auth=\"{}\"", if jwt { "jwt" } else { "none" })));
    assert_eq!(c.get("/ui/ui.js").expect("GET /ui/ui.js").status, 200);
    assert_eq!(c.get("/ui/ui.css").expect("GET /ui/ui.css").status, 200);
    assert_eq!(c.get("/ui/nothing").expect("GET /ui/nothing").status, 404);

    let body = br#"{"id": "wf.1.1"}"#;
    let admin = format!("Bearer {}", AdminKey::shared().token);
    let headers: Vec<(&str, &str)> = if jwt { vec![("Authorization", admin.as_str())] } else { vec![] };
    let answer = c.request("POST", "/ui/waiters", &headers, body).expect("POST /ui/waiters");
    assert_eq!(answer.status, 200, "{}", answer.text());
    assert_eq!(answer.json(), json!({ "callbacks": ["wf.1"], "listeners": ["poll://any@watchers"] }));
    let bad = c.request("POST", "/ui/waiters", &headers, b"{}").expect("POST /ui/waiters");
    assert_eq!(bad.status, 400, "{}", bad.text());
    if jwt {
        let none = c.request("POST", "/ui/waiters", &[], body).expect("POST /ui/waiters");
        assert_eq!((none.status, none.json()), (401, json!("Unauthorized")));
        let outside = format!("Bearer {}", prefix_token("other"));
        let refused = c.request("POST", "/ui/waiters", &[("Authorization", outside.as_str())], body).expect("POST");
        assert_eq!((refused.status, refused.json()), (403, json!("Forbidden")));
        let inside = format!("Bearer {}", prefix_token("wf.1"));
        let allowed = c.request("POST", "/ui/waiters", &[("Authorization", inside.as_str())], body).expect("POST");
        assert_eq!(allowed.status, 200, "{}", allowed.text());
    }
}

/// Runs check.py against `server` and fails with its output unless it passes.
fn browser_checks(server: &Server, jwt: bool, screenshot: Option<PathBuf>) {
    let script = repo_root().join("tests/dashboard/check.py");
    let mut cmd = Command::new(python());
    cmd.arg(&script).arg(format!("http://{}", server.addr));
    if jwt {
        cmd.args(["--token", &AdminKey::shared().token]);
    }
    if let Some(path) = screenshot {
        cmd.arg("--screenshot").arg(path);
    }
    let out = cmd.output().unwrap_or_else(|e| panic!("cannot run {}: {e}", script.display()));
    assert!(
        out.status.success(),
        "check.py failed ({}):\n{}\n{}\nserver log:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        server.log()
    );
}

fn dashboard(target: &str, screenshot: Option<PathBuf>) {
    let jwt = has_auth(target);
    let server = Server::start(&build(target), &[]);
    workflow(&server);
    direct_checks(&server, jwt);
    browser_checks(&server, jwt, screenshot);
}

#[test]
fn sqlite_http_ops_dashboard_in_chromium() {
    let screenshot = std::env::var_os("RESONATE_DASHBOARD_SCREENSHOT").filter(|p| !p.is_empty()).map(|p| repo_root().join(p));
    dashboard("sqlite-http-ops", screenshot);
}

#[test]
fn postgres_http_jwt_ops_dashboard_in_chromium() {
    psql(&postgres_admin_url(), "SELECT 1").unwrap_or_else(|e| panic!("the postgres target needs the local PostgreSQL (bash tests/postgres-up): {e}"));
    dashboard("postgres-http-jwt-ops", None);
}
