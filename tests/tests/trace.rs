//! Replays of traces recorded against the official server (../shared/protocol/traces): each
//! line's request is sent to a fresh `--debug` server at the line's `now`, and the answer must
//! equal the recorded one.

use resonate_tests::call;
use resonate_tests::client::Client;
use resonate_tests::server::{build, repo_root, Server};
use serde_json::{json, Value};

/// The lines of a recorded trace. Fails when the file is missing: CI keeps shared/ beside the
/// repository, and a replay that silently skips proves nothing.
fn trace(name: &str) -> Vec<Value> {
    let path = repo_root().join("../shared/protocol/traces").join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "cannot read the recorded trace {} ({e}); shared/ must lie beside the repository",
            path.display()
        )
    });
    let lines: Vec<Value> = text
        .lines()
        .filter(|line| !line.trim().is_empty())
        .enumerate()
        .map(|(i, line)| {
            serde_json::from_str(line).unwrap_or_else(|e| panic!("{name}:{}: {e}", i + 1))
        })
        .collect();
    assert!(!lines.is_empty(), "{name} is empty");
    lines
}

/// A fresh `--debug` server with its background rules and message delivery paused.
fn debug_server() -> (Server, Client) {
    let server = Server::start(&build("sqlite-http"), &["--debug"]);
    let mut client = server.client();
    let (status, _) = call(&mut client, "debug.start", json!({}), None);
    assert_eq!(status, 200, "debug.start");
    (server, client)
}

/// Sends one trace line (corrId "c", as recorded) and returns the response envelope.
fn replay(client: &mut Client, line: &Value) -> Value {
    let kind = line["kind"].as_str().expect("a line has a kind");
    let now = line["now"].as_i64().expect("a line has a now");
    call(client, kind, line["req"].clone(), Some(now)).1
}

/// Whether every key of `expected` is in `actual` with a matching value (arrays and scalars exactly).
fn contains(actual: &Value, expected: &Value) -> bool {
    match (actual, expected) {
        (Value::Object(a), Value::Object(e)) => e
            .iter()
            .all(|(k, v)| a.get(k).is_some_and(|a| contains(a, v))),
        _ => actual == expected,
    }
}

fn mismatch(name: &str, i: usize, line: &Value, actual: &Value) -> String {
    format!(
        "{name} line {}: {} {}\nexpected {}\nactual   {}",
        i + 1,
        line["kind"],
        line["req"],
        line["res"],
        actual
    )
}

#[test]
fn the_official_ten_workflow_trace_replays_exactly() {
    let name = "resonate-sqlite-10wf-prefix.ndjson";
    let (_server, mut client) = debug_server();
    for (i, line) in trace(name).iter().enumerate() {
        let actual = replay(&mut client, line);
        assert!(
            actual == line["res"],
            "{}",
            mismatch(name, i, line, &actual)
        );
    }
}

#[test]
fn the_duplicate_awaited_trace_differs_only_where_choices_yaml_says() {
    let choices =
        std::fs::read_to_string(repo_root().join("spec/choices.yaml")).expect("spec/choices.yaml");
    let choices: serde_yaml::Value = serde_yaml::from_str(&choices).expect("choices.yaml parses");
    let documented = choices
        .as_sequence()
        .into_iter()
        .flatten()
        .any(|c| c["id"].as_str() == Some("duplicate-awaited"));
    assert!(
        documented,
        "spec/choices.yaml no longer documents the duplicate-awaited difference"
    );

    // The recorded answers carry only some envelope fields, so they are matched as a subset.
    let name = "resonate-duplicate-awaited.ndjson";
    let lines = trace(name);
    let (last, agreed) = lines.split_last().expect("a non-empty trace");
    let (_server, mut client) = debug_server();
    for (i, line) in agreed.iter().enumerate() {
        let actual = replay(&mut client, line);
        assert!(
            contains(&actual, &line["res"]),
            "{}",
            mismatch(name, i, line, &actual)
        );
    }
    let actions = last["req"]["actions"]
        .as_array()
        .expect("the last line suspends");
    assert!(
        last["kind"] == "task.suspend"
            && actions.len() == 2
            && actions[0]["data"]["awaited"] == actions[1]["data"]["awaited"],
        "the trace's last line should suspend awaiting one promise twice: {last}"
    );
    assert_eq!(
        last["res"]["head"]["status"], 200,
        "the official server answered 200"
    );
    let actual = replay(&mut client, last);
    assert_eq!(
        (&actual["head"]["status"], &actual["data"]),
        (
            &json!(400),
            &json!("Actions must not await the same promise twice")
        ),
        "spec/choices.yaml duplicate-awaited: we answer 400 where the official server answered 200"
    );
}
