//! resonate-ctl (generated/resonate-ctl) against live servers: every kind of spec/kinds.yaml is a
//! subcommand and an MCP tool; the commands over HTTP (sqlite-http) with their exit codes and the
//! refusal's text as sent; tree, watch and invoke; the MCP server driven over stdio by a tiny MCP
//! client; and the NATS transport against sqlite-nats (nats-server on 127.0.0.1:4222).

use resonate_tests::call;
use resonate_tests::server::{build, build_ctl, fresh_dir, Server};
use resonate_tests::transport::Endpoint;
use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, ChildStdout, Command, Output, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as i64
}

/// The command line pointed at one server.
struct Ctl {
    bin: PathBuf,
    server: String,
    extra: Vec<String>,
}

impl Ctl {
    fn http(server: &Server) -> Ctl {
        Ctl { bin: build_ctl(), server: format!("http://{}", server.addr), extra: Vec::new() }
    }

    fn run(&self, args: &[&str]) -> Output {
        Command::new(&self.bin)
            .arg("--server")
            .arg(&self.server)
            .args(&self.extra)
            .args(args)
            .env_remove("RESONATE_SERVER")
            .stdin(Stdio::null())
            .output()
            .expect("resonate-ctl runs")
    }

    /// Runs and expects success; returns stdout.
    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(out.status.success(), "resonate-ctl {args:?}: {:?}\n{}", out.status, String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    }

    /// Runs with --json and expects success; returns the parsed line.
    fn json(&self, args: &[&str]) -> Value {
        let mut args = args.to_vec();
        args.push("--json");
        serde_json::from_str(&self.ok(&args)).unwrap()
    }
}

fn b64_json(data: &str) -> Value {
    // The SDKs' encoding, decoded here independently of resonate-ctl: base64 of JSON.
    let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let (mut bytes, mut acc, mut bits) = (Vec::new(), 0u32, 0);
    for c in data.trim_end_matches('=').bytes() {
        acc = acc << 6 | alphabet.iter().position(|&a| a == c).unwrap() as u32;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            bytes.push((acc >> bits & 0xff) as u8);
        }
    }
    serde_json::from_slice(&bytes).unwrap()
}

fn kinds() -> Vec<String> {
    let text = std::fs::read_to_string(resonate_tests::server::repo_root().join("spec/kinds.yaml")).unwrap();
    let map: serde_yaml::Mapping = serde_yaml::from_str(&text).unwrap();
    map.keys().map(|k| k.as_str().unwrap().to_string()).collect()
}

#[test]
fn every_kind_of_the_spec_is_a_subcommand_and_an_mcp_tool() {
    let bin = build_ctl();
    let mut mcp = Mcp::start(&bin, "http://127.0.0.1:9");
    mcp.initialize();
    let tools = mcp.request("tools/list", json!({}))["result"]["tools"].as_array().unwrap().clone();
    for kind in kinds() {
        let (group, verb) = kind.split_once('.').unwrap();
        let help = Command::new(&bin).args([group, &verb.replace('_', "-"), "--help"]).output().unwrap();
        assert!(help.status.success(), "no subcommand for {kind}: {}", String::from_utf8_lossy(&help.stderr));
        assert!(String::from_utf8_lossy(&help.stdout).contains("Examples:\n  resonate-ctl"), "{kind}: no examples");
        let tool = kind.replace('.', "_");
        let found = tools.iter().find(|t| t["name"] == tool.as_str()).unwrap_or_else(|| panic!("no MCP tool for {kind}"));
        assert_eq!(found["inputSchema"]["type"], "object");
    }
    for extra in ["promise_wait", "invoke", "tree"] {
        assert!(tools.iter().any(|t| t["name"] == extra), "no {extra} tool");
    }
}

#[test]
fn promises_over_http_with_exit_codes_and_refusals_as_sent() {
    let server = Server::start(&build("sqlite-http"), &["--debug"]);
    let ctl = Ctl::http(&server);

    let before = now_ms();
    let human = ctl.ok(&["promise", "create", "order-1", "--timeout", "1h", "--tag", "env=dev", "--data", "{\"amount\":3}"]);
    assert!(human.starts_with("promise  order-1\nstate    pending\nparam    {\"amount\":3}\ntags     env=dev\n"), "{human}");
    let p = &ctl.json(&["promise", "get", "order-1"])["promise"];
    let timeout = p["timeoutAt"].as_i64().unwrap();
    assert!(timeout >= before + 3_600_000 && timeout <= now_ms() + 3_600_000, "{p}");
    assert_eq!(b64_json(p["param"]["data"].as_str().unwrap()), json!({"amount": 3}));
    assert_eq!(p["tags"], json!({"env": "dev"}));

    // @file payloads, and what the store holds, read with the tests' own client.
    let file = fresh_dir().join("value.json");
    std::fs::write(&file, "{\"charged\": true}").unwrap();
    let at_file = format!("@{}", file.display());
    let settled = ctl.json(&["promise", "settle", "order-1", "--resolve", "--data", &at_file]);
    assert_eq!(settled["promise"]["state"], "resolved");
    let (status, stored) = call(&mut server.client(), "promise.get", json!({"id": "order-1"}), None);
    assert_eq!(status, 200);
    assert_eq!(b64_json(stored["data"]["promise"]["value"]["data"].as_str().unwrap()), json!({"charged": true}));

    // A refusal: exit 1, the server's message alone on stderr, exactly as sent.
    let refused = ctl.run(&["promise", "get", "missing"]);
    assert_eq!(refused.status.code(), Some(1));
    assert_eq!(String::from_utf8_lossy(&refused.stderr), "Promise not found\n");
    assert!(refused.stdout.is_empty());
    let refused = ctl.run(&["promise", "get", "missing", "--json"]);
    assert_eq!(serde_json::from_slice::<Value>(&refused.stdout).unwrap(), json!({"status": 404, "message": "Promise not found"}));
    let refused = ctl.run(&["task", "acquire", "order-1", "--version", "0", "--pid", "w", "--ttl", "1m"]);
    assert_eq!((refused.status.code(), String::from_utf8_lossy(&refused.stderr).into_owned()), (Some(1), "Task not found\n".to_string()));
    let refused = ctl.run(&["promise", "create", "late", "--timeout", "1h", "--tag", "resonate:target=ftp://nowhere"]);
    let forms = "http://<host>[/<path>], https://<host>[/<path>], poll://any@<group>[/<id>] or poll://uni@<group>/<id>";
    assert_eq!(
        String::from_utf8_lossy(&refused.stderr),
        format!("Invalid resonate:target address 'ftp://nowhere': expected {forms}\n")
    );

    // The spec's field checks answer before sending, with the server's message: exit 2.
    let checked = ctl.run(&["promise", "create", "", "--timeout", "1h"]);
    assert_eq!(checked.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&checked.stderr).contains("Promise ID is required"));
    assert_eq!(ctl.run(&["promise", "settle", "order-1"]).status.code(), Some(2), "a settle needs a verb");
    assert_eq!(ctl.run(&["promise", "create", "x", "--timeout", "soon"]).status.code(), Some(2));

    // An unreachable server: exit 3.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let gone = Ctl { server: format!("http://127.0.0.1:{port}"), ..Ctl::http(&server) };
    let out = gone.run(&["promise", "get", "order-1"]);
    assert_eq!(out.status.code(), Some(3), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unreachable"));

    // Search: filters, pages, --all.
    for i in 0..5 {
        ctl.ok(&["promise", "create", &format!("page-{i}"), "--timeout", "1h", "--tag", "batch=b"]);
    }
    let page = ctl.json(&["promise", "search", "--tag", "batch=b", "--limit", "2"]);
    assert_eq!(page["promises"].as_array().unwrap().len(), 2);
    assert!(page["cursor"].is_string());
    let all = ctl.json(&["promise", "search", "--tag", "batch=b", "--limit", "2", "--all"]);
    let ids: Vec<&str> = all["promises"].as_array().unwrap().iter().map(|p| p["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["page-0", "page-1", "page-2", "page-3", "page-4"]);
    assert!(all.get("cursor").is_none());
    let resolved = ctl.ok(&["promise", "search", "--state", "resolved"]);
    assert_eq!(resolved, "order-1  resolved  env=dev\n");
    let refused = ctl.run(&["promise", "search", "--state", "lost"]);
    assert_eq!(refused.status.code(), Some(1));

    // Schedules and the debug kinds.
    let s = ctl.json(&["schedule", "create", "nightly", "--cron", "0 3 * * *", "--promise-id", "nightly.{{.timestamp}}", "--promise-timeout", "1h"]);
    assert_eq!(s["schedule"]["promiseTimeout"], 3_600_000);
    assert!(ctl.ok(&["schedule", "get", "nightly"]).contains("promise timeout  1h\n"));
    assert_eq!(ctl.ok(&["schedule", "delete", "nightly"]), "ok\n");
    let snap = ctl.json(&["debug", "snap"]);
    assert_eq!(snap["promises"].as_array().unwrap().len(), 6);
    assert_eq!(ctl.ok(&["debug", "reset"]), "ok\n");
    assert_eq!(ctl.json(&["debug", "snap"])["promises"], json!([]));
}

#[test]
fn invoke_watch_and_tree_follow_a_call_as_the_sdks_make_it() {
    let server = Server::start(&build("sqlite-http"), &["--debug"]);
    let ctl = Ctl::http(&server);

    // invoke: the SDKs' rpc (spec/README.md, "How the SDKs use it").
    let root = &ctl.json(&["invoke", "add", "--target", "workers", "1", "2", "--id", "job"])["promise"];
    assert_eq!(root["tags"]["resonate:target"], "poll://any@workers");
    for tag in ["resonate:origin", "resonate:branch", "resonate:parent"] {
        assert_eq!(root["tags"][tag], "job", "{tag}");
    }
    assert_eq!(root["tags"]["resonate:scope"], "global");
    assert_eq!(b64_json(root["param"]["data"].as_str().unwrap()), json!({"func": "add", "args": [1, 2], "version": 1}));

    // Pending: watch gives up at its timeout with exit 5, printing the promise.
    let started = Instant::now();
    let pending = ctl.run(&["watch", "job", "--timeout", "300ms", "--interval", "100ms"]);
    assert_eq!(pending.status.code(), Some(5));
    assert!(String::from_utf8_lossy(&pending.stdout).contains("state    pending"));
    assert!(started.elapsed() < Duration::from_secs(5));

    // A worker's steps, by hand: acquire, two children and a grandchild under fences, fulfil.
    let task = ctl.json(&["task", "acquire", "job", "--version", "0", "--pid", "w1", "--ttl", "1m"]);
    assert_eq!(task["task"]["version"], 1);
    for (child, parent) in [("job.1", "job"), ("job.2", "job"), ("job.1.1", "job.1")] {
        let parent_tag = format!("resonate:parent={parent}");
        let fenced = ctl.json(&[
            "task", "fence", "job", "--version", "1", "promise-create", child, "--timeout", "1h",
            "--tag", "resonate:origin=job", "--tag", &parent_tag,
        ]);
        assert_eq!(fenced["action"]["head"]["status"], 200, "{fenced}");
    }
    ctl.ok(&["task", "fence", "job", "--version", "1", "promise-settle", "job.1.1", "--resolve"]);
    ctl.ok(&["task", "fence", "job", "--version", "1", "promise-settle", "job.1", "--reject", "--data", "\"no\""]);
    let drawn = ctl.ok(&["tree", "job"]);
    assert_eq!(drawn, "job  pending  add\n├── job.1  rejected\n│   └── job.1.1  resolved\n└── job.2  pending\n");

    // Settled while watch waits: it prints the result and exits 0.
    let waiter = Command::new(&ctl.bin)
        .args(["--server", &ctl.server, "watch", "job", "--interval", "100ms", "--json"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    ctl.ok(&["task", "fulfill", "job", "--version", "1", "--resolve", "--data", "3"]);
    let out = waiter.wait_with_output().unwrap();
    assert!(out.status.success());
    let promise: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!((promise["state"].as_str(), b64_json(promise["value"]["data"].as_str().unwrap())), (Some("resolved"), json!(3)));

    let tree = ctl.json(&["tree", "job"]);
    assert_eq!(tree["state"], "resolved");
    assert_eq!(tree["func"], "add");
    assert_eq!(tree["children"][0]["children"][0]["id"], "job.1.1");
    let task = ctl.ok(&["task", "get", "job"]);
    assert!(task.starts_with("task     job\nstate    fulfilled\n"), "{task}");
}

/// A tiny MCP client: newline-delimited JSON-RPC over the child's stdio.
struct Mcp {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    next: i64,
}

impl Mcp {
    fn start(bin: &PathBuf, server: &str) -> Mcp {
        Mcp::start_with(bin, &["--server", server, "mcp"])
    }

    fn start_with(bin: &PathBuf, args: &[&str]) -> Mcp {
        let mut child = Command::new(bin).args(args).stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().unwrap();
        let stdin = child.stdin.take().unwrap();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        Mcp { child, stdin, stdout, next: 0 }
    }

    fn send(&mut self, message: Value) {
        writeln!(self.stdin, "{message}").unwrap();
        self.stdin.flush().unwrap();
    }

    fn request(&mut self, method: &str, params: Value) -> Value {
        self.next += 1;
        self.send(json!({ "jsonrpc": "2.0", "id": self.next, "method": method, "params": params }));
        let mut line = String::new();
        self.stdout.read_line(&mut line).unwrap();
        let reply: Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line:?}"));
        assert_eq!((reply["jsonrpc"].as_str(), reply["id"].as_i64()), (Some("2.0"), Some(self.next)), "{reply}");
        reply
    }

    fn initialize(&mut self) -> Value {
        let init = self.request(
            "initialize",
            json!({ "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": { "name": "resonate-tests", "version": "0" } }),
        );
        self.send(json!({ "jsonrpc": "2.0", "method": "notifications/initialized" }));
        init
    }

    /// Calls a tool; returns (isError, text).
    fn tool(&mut self, name: &str, arguments: Value) -> (bool, String) {
        let reply = self.request("tools/call", json!({ "name": name, "arguments": arguments }));
        let result = &reply["result"];
        (result["isError"].as_bool().unwrap(), result["content"][0]["text"].as_str().unwrap().to_string())
    }

    fn tool_json(&mut self, name: &str, arguments: Value) -> Value {
        let (error, text) = self.tool(name, arguments);
        assert!(!error, "{name}: {text}");
        serde_json::from_str(&text).unwrap()
    }
}

impl Drop for Mcp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn the_mcp_server_over_stdio_drives_a_live_server() {
    let server = Server::start(&build("sqlite-http"), &["--debug"]);
    let mut mcp = Mcp::start(&build_ctl(), &format!("http://{}", server.addr));
    let init = mcp.initialize();
    assert_eq!(init["result"]["protocolVersion"], "2025-06-18");
    assert!(init["result"]["capabilities"]["tools"].is_object());
    assert_eq!(mcp.request("ping", json!({}))["result"], json!({}));

    let created = mcp.tool_json("promise_create", json!({ "id": "ask-1", "timeout": "10m", "param": { "question": "ship it?" }, "tags": { "who": "agent" } }));
    assert_eq!(created["promise"]["param"]["data"], json!({ "question": "ship it?" }), "shown decoded");
    let (_, stored) = call(&mut server.client(), "promise.get", json!({ "id": "ask-1" }), None);
    let timeout = stored["data"]["promise"]["timeoutAt"].as_i64().unwrap();
    assert!((timeout - now_ms() - 600_000).abs() < 10_000, "{stored}");
    assert_eq!(b64_json(stored["data"]["promise"]["param"]["data"].as_str().unwrap()), json!({ "question": "ship it?" }));
    assert_eq!(stored["data"]["promise"]["tags"], json!({ "who": "agent" }));

    let waited = mcp.tool_json("promise_wait", json!({ "id": "ask-1", "timeout": "200ms" }));
    assert_eq!(waited["settled"], false);
    let settled = mcp.tool_json("promise_settle", json!({ "id": "ask-1", "state": "resolved", "value": "yes" }));
    assert_eq!(settled["promise"]["value"]["data"], "yes");
    let waited = mcp.tool_json("promise_wait", json!({ "id": "ask-1", "timeout": 1000 }));
    assert_eq!((waited["settled"].as_bool(), waited["promise"]["state"].as_str()), (Some(true), Some("resolved")));

    // A refusal is a tool error whose text is the server's message as sent.
    assert_eq!(mcp.tool("promise_get", json!({ "id": "nope" })), (true, "Promise not found".to_string()));
    let (error, text) = mcp.tool("promise_create", json!({ "id": "x" }));
    assert!(error && text.contains("--timeout or --timeout-at") && text.contains("required"), "{text}");
    let unknown = mcp.request("tools/call", json!({ "name": "promise_explode", "arguments": {} }));
    assert_eq!(unknown["error"]["code"], -32602);

    let started = mcp.tool_json("invoke", json!({ "func": "greet", "target": "workers", "args": ["Ada"], "id": "greet-1" }));
    assert_eq!(started["promise"]["param"]["data"], json!({ "func": "greet", "args": ["Ada"], "version": 1 }));
    assert_eq!(started["promise"]["tags"]["resonate:target"], "poll://any@workers");
    let fence = mcp.tool_json("task_acquire", json!({ "id": "greet-1", "version": 0, "pid": "agent", "ttl": "1m" }));
    assert_eq!(fence["task"]["state"], "acquired");
    let child = mcp.tool_json(
        "task_fence",
        json!({ "id": "greet-1", "version": 1, "action": "promise-create", "action_id": "greet-1.1", "action_timeout": "1m",
                "action_tags": { "resonate:origin": "greet-1", "resonate:parent": "greet-1" } }),
    );
    assert_eq!(child["action"]["head"]["status"], 200);
    let tree = mcp.tool_json("tree", json!({ "id": "greet-1" }));
    assert_eq!(tree["children"][0]["id"], "greet-1.1");
    let searched = mcp.tool_json("promise_search", json!({ "tags": { "who": "agent" }, "all": true }));
    assert_eq!(searched["promises"].as_array().unwrap().len(), 1);
    mcp.tool_json("task_fulfill", json!({ "id": "greet-1", "version": 1, "state": "resolved", "value": "hi Ada" }));

    // The store holds what the tools did.
    let (_, snap) = call(&mut server.client(), "debug.snap", json!({}), None);
    let tasks = snap["data"]["tasks"].as_array().unwrap();
    assert!(tasks.iter().any(|t| t["id"] == "greet-1" && t["state"] == "fulfilled"), "{tasks:?}");
    let snap_tool = mcp.tool_json("debug_snap", json!({}));
    assert_eq!(snap_tool["promises"].as_array().unwrap().len(), 3);
}

#[test]
fn over_nats_against_sqlite_nats() {
    // Subjects and a queue group of its own on the local nats-server; ready once it answers.
    let server = Server::start(&build("sqlite-nats"), &["--debug"]);
    let Endpoint::Nats(at) = server.endpoint() else { panic!("sqlite-nats speaks NATS") };
    let ctl = Ctl {
        bin: build_ctl(),
        server: format!("nats://{}", at.nats),
        extra: vec!["--nats-api-prefix".into(), at.prefix.clone(), "--request-timeout".into(), "5s".into()],
    };

    let created = ctl.json(&["promise", "create", "n-1", "--timeout", "1h", "--data", "[1,2]"]);
    assert_eq!(b64_json(created["promise"]["param"]["data"].as_str().unwrap()), json!([1, 2]));
    assert_eq!(ctl.json(&["promise", "settle", "n-1", "--cancel"])["promise"]["state"], "rejected_canceled");
    let refused = ctl.run(&["promise", "get", "n-2"]);
    assert_eq!((refused.status.code(), String::from_utf8_lossy(&refused.stderr).into_owned()), (Some(1), "Promise not found\n".to_string()));
    let invoked = ctl.json(&["invoke", "add", "--target", "workers", "1"]);
    assert_eq!(invoked["promise"]["tags"]["resonate:target"], "nats://resonate.recv.workers");

    // The MCP server over the same transport.
    let mut mcp = Mcp::start_with(&ctl.bin, &["--server", &ctl.server, "--nats-api-prefix", &at.prefix, "mcp"]);
    mcp.initialize();
    let got = mcp.tool_json("promise_get", json!({ "id": "n-1" }));
    assert_eq!(got["promise"]["state"], "rejected_canceled");

    // A prefix no server takes: NATS says so at once, exit 3.
    let nobody = Ctl { extra: vec!["--nats-api-prefix".into(), format!("{}-nobody.requests", at.prefix)], ..ctl };
    let started = Instant::now();
    let out = nobody.run(&["promise", "get", "n-1"]);
    assert_eq!(out.status.code(), Some(3));
    assert!(started.elapsed() < Duration::from_secs(3));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no Resonate server subscribes"));
}

#[test]
fn a_token_travels_as_head_auth_to_a_jwt_target() {
    use resonate_tests::jwt::{b64url, eddsa_signature, openssl};
    let dir = fresh_dir();
    let (private, public) = (dir.join("key.pem"), dir.join("key.pub.pem"));
    let path = |p: &PathBuf| p.to_str().unwrap().to_string();
    openssl(&["genpkey", "-algorithm", "ED25519", "-out", &path(&private)], b"").unwrap();
    openssl(&["pkey", "-in", &path(&private), "-pubout", "-out", &path(&public)], b"").unwrap();
    let token = |claims: Value| {
        let input = format!("{}.{}", b64url(br#"{"alg":"EdDSA","typ":"JWT"}"#), b64url(claims.to_string().as_bytes()));
        format!("{input}.{}", b64url(&eddsa_signature(&private, &input).unwrap()))
    };
    let exp = now_ms() / 1000 + 3600;
    let server = Server::start(&build("sqlite-http-jwt"), &["--auth-publickey", &path(&public)]);
    let ctl = Ctl::http(&server);

    let none = ctl.run(&["promise", "create", "t-1", "--timeout", "1h"]);
    assert_eq!((none.status.code(), String::from_utf8_lossy(&none.stderr).into_owned()), (Some(1), "Unauthorized\n".to_string()));
    let scoped = Ctl { extra: vec!["--token".into(), token(json!({ "exp": exp, "prefix": "t-" }))], ..Ctl::http(&server) };
    assert_eq!(scoped.json(&["promise", "create", "t-1", "--timeout", "1h"])["promise"]["id"], "t-1");
    let outside = scoped.run(&["promise", "get", "u-1"]);
    assert_eq!((outside.status.code(), String::from_utf8_lossy(&outside.stderr).into_owned()), (Some(1), "Forbidden\n".to_string()));
    let by_env = Command::new(&ctl.bin)
        .args(["--server", &ctl.server, "promise", "get", "t-1", "--json"])
        .env("RESONATE_TOKEN", token(json!({ "exp": exp, "role": "admin" })))
        .output()
        .unwrap();
    assert!(by_env.status.success(), "{}", String::from_utf8_lossy(&by_env.stderr));
    let _ = std::fs::remove_dir_all(dir);
}
