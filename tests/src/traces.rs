//! Section "traces": replays of the traces recorded against the official server. Each line's
//! request is sent at the line's `now` and the answer must equal the recorded one; where it may
//! not, the difference is named by its entry in spec/choices.yaml. Against a NATS target the
//! recorded `poll://` addresses are replayed as the same workers' `nats://` subjects
//! (choices.yaml nats-addresses).
//!
//! The recorded traces are not ours to commit: they are read from [`dir`] (`RESONATE_TRACES_DIR`,
//! by default `../shared/protocol/traces` beside the repository). Without them the section is
//! reported NOT RUN, never passed; with `RESONATE_TRACES_REQUIRED=1` (CI) their absence fails.

use crate::conform::{Case, Check, Session};
use crate::ensure;
use crate::server::repo_root;
use crate::transport::Endpoint;
use serde_json::{json, Value};
use std::path::PathBuf;

/// Where the traces are looked for when `RESONATE_TRACES_DIR` is not set, from the repository root.
pub const DEFAULT_DIR: &str = "../shared/protocol/traces";

/// The directory the traces are read from: `RESONATE_TRACES_DIR` (a relative path is taken from
/// the repository root), else [`DEFAULT_DIR`].
pub fn configured_dir() -> PathBuf {
    let dir = std::env::var_os("RESONATE_TRACES_DIR").filter(|d| !d.is_empty());
    repo_root().join(dir.map(PathBuf::from).unwrap_or_else(|| PathBuf::from(DEFAULT_DIR)))
}

/// The traces directory, or why the section cannot run.
pub fn dir() -> Result<PathBuf, String> {
    let dir = configured_dir();
    if dir.is_dir() {
        return Ok(dir);
    }
    let how = match std::env::var_os("RESONATE_TRACES_DIR").filter(|d| !d.is_empty()) {
        Some(d) => format!("RESONATE_TRACES_DIR={}", d.to_string_lossy()),
        None => format!("RESONATE_TRACES_DIR is unset, so the default {DEFAULT_DIR} was used"),
    };
    Err(format!(
        "no traces directory at {} ({how}). The traces recorded against the official server are not \
         part of this repository; point RESONATE_TRACES_DIR at a copy to replay them (spec/README.md, \
         \"Recorded traces\")",
        dir.display()
    ))
}

/// Whether a missing traces directory fails the suite (`RESONATE_TRACES_REQUIRED=1`, as CI sets).
pub fn required() -> bool {
    std::env::var("RESONATE_TRACES_REQUIRED").is_ok_and(|v| v == "1")
}

pub fn cases() -> Vec<Case> {
    vec![
        Case::new("resonate-sqlite-10wf-prefix.ndjson replays exactly", ten_workflows),
        Case::new("resonate-duplicate-awaited.ndjson differs only by duplicate-awaited", duplicate_awaited),
        Case::new("resonate-sdk-fanout.history differs only by empty-preload", sdk_fanout),
    ]
}

/// The lines of a recorded trace, addressed as `s`'s server spells worker addresses; a missing
/// file in a present directory fails the case (a replay that skips proves nothing).
fn lines(s: &Session, name: &str) -> Result<Vec<Value>, String> {
    let path = dir()?.join(name);
    let text = std::fs::read_to_string(&path).map_err(|e| format!("cannot read {} ({e})", path.display()))?;
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .enumerate()
        .map(|(i, l)| {
            let mut line = serde_json::from_str(l).map_err(|e| format!("{name}:{}: {e}", i + 1))?;
            if let Endpoint::Nats(_) = s.endpoint {
                readdress(&mut line, &s.endpoint);
            }
            Ok(line)
        })
        .collect()
}

/// Rewrites every `poll://any@group[/id]` string in `v` to the address of any worker of the
/// group at `endpoint`, and every `poll://uni@group/id` to that worker's.
fn readdress(v: &mut Value, endpoint: &Endpoint) {
    match v {
        Value::String(address) => {
            let Some((cast, rest)) = address.strip_prefix("poll://").and_then(|r| r.split_once('@')) else { return };
            let (group, id) = rest.split_once('/').map_or((rest, None), |(group, id)| (group, Some(id)));
            *address = endpoint.worker_address(group, id.filter(|_| cast == "uni"));
        }
        Value::Array(items) => items.iter_mut().for_each(|item| readdress(item, endpoint)),
        Value::Object(fields) => fields.values_mut().for_each(|field| readdress(field, endpoint)),
        _ => {}
    }
}

fn replay(s: &mut Session, line: &Value) -> Value {
    let kind = line["kind"].as_str().unwrap_or_default();
    s.send(kind, line["req"].clone(), line["now"].as_i64().unwrap_or_default()).1
}

/// Whether every key of `expected` is in `actual` with a matching value.
fn contains(actual: &Value, expected: &Value) -> bool {
    match (actual, expected) {
        (Value::Object(a), Value::Object(e)) => e.iter().all(|(k, v)| a.get(k).is_some_and(|a| contains(a, v))),
        _ => actual == expected,
    }
}

fn mismatch(name: &str, i: usize, line: &Value, actual: &Value) -> String {
    format!("{name} line {}: {} {}\nexpected {}\nactual   {actual}", i + 1, line["kind"], line["req"], line["res"])
}

/// A difference the test allows must still be documented.
fn documented(choice: &str) -> Check {
    let path = repo_root().join("spec/choices.yaml");
    let text = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    ensure!(text.contains(&format!("id: {choice}")), "spec/choices.yaml no longer documents {choice}");
    Ok(())
}

fn ten_workflows(s: &mut Session) -> Check {
    let name = "resonate-sqlite-10wf-prefix.ndjson";
    for (i, line) in lines(s, name)?.iter().enumerate() {
        let actual = replay(s, line);
        ensure!(actual == line["res"], "{}", mismatch(name, i, line, &actual));
    }
    Ok(())
}

fn duplicate_awaited(s: &mut Session) -> Check {
    documented("duplicate-awaited")?;
    let name = "resonate-duplicate-awaited.ndjson";
    let all = lines(s, name)?;
    let (last, agreed) = all.split_last().ok_or("empty trace")?;
    // The recorded answers carry only some envelope fields: matched as a subset.
    for (i, line) in agreed.iter().enumerate() {
        let actual = replay(s, line);
        ensure!(contains(&actual, &line["res"]), "{}", mismatch(name, i, line, &actual));
    }
    ensure!(last["res"]["head"]["status"] == json!(200), "the official server answered 200: {last}");
    let actual = replay(s, last);
    ensure!(
        actual["head"]["status"] == json!(400) && actual["data"] == json!("Actions must not await the same promise twice"),
        "choices.yaml duplicate-awaited: we answer 400 where the official server answered 200; got {actual}"
    );
    Ok(())
}

/// A concurrent SDK history, replayed in (now, return) order. The official server fills `preload`
/// with the promises of the same branch; ours is always empty.
fn sdk_fanout(s: &mut Session) -> Check {
    documented("empty-preload")?;
    let name = "resonate-sdk-fanout.history";
    let mut rows = lines(s, name)?;
    rows.sort_by_key(|r| (r["now"].as_i64(), r["return"].as_u64()));
    for (i, line) in rows.iter().enumerate() {
        let mut actual = replay(s, line);
        let mut expected = line["res"].clone();
        actual["head"]["corrId"] = expected["head"]["corrId"].clone();
        if let (Some(inner), Some(recorded)) =
            (actual.pointer_mut("/data/action/head/corrId"), expected.pointer("/data/action/head/corrId"))
        {
            *inner = recorded.clone();
        }
        for answer in [&mut actual, &mut expected] {
            if let Some(data) = answer["data"].as_object_mut() {
                if data.contains_key("preload") {
                    data.insert("preload".into(), json!([]));
                }
            }
        }
        ensure!(actual == expected, "{}", mismatch(name, i, line, &actual));
    }
    Ok(())
}
