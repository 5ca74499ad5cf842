//! Answers for people: a record as aligned `name  value` lines (times in UTC with how far off they
//! are, payloads decoded from base64 JSON), a list as one line per record, a call tree drawn with
//! its states. `--json` bypasses all of it and prints the wire's data.

use crate::client::Answer;
use crate::compose::{func_of, Node};
use crate::values::{decode_value, format_duration, format_instant_relative};
use serde_json::Value;
use std::fmt::Write as _;

/// The answer to one kind, as text.
pub fn answer(answer: &Answer, now: i64) -> String {
    let data = &answer.data;
    if answer.status == 300 {
        return "not suspended: an awaited promise is already settled, resume now (300)\n".to_string();
    }
    let Some(fields) = data.as_object() else {
        return "ok\n".to_string();
    };
    if fields.is_empty() {
        return "ok\n".to_string();
    }
    // debug.snap, and anything a newer server may answer: the JSON itself, values decoded.
    const SHOWN: [&str; 9] = ["promise", "task", "schedule", "promises", "tasks", "schedules", "cursor", "preload", "action"];
    if fields.keys().any(|k| !SHOWN.contains(&k.as_str())) {
        return format!("{}\n", serde_json::to_string_pretty(&crate::values::decoded(data)).unwrap_or_default());
    }
    let mut out = String::new();
    if let Some(inner) = data.get("action") {
        // task.fence: the inner request's answer.
        let status = inner.pointer("/head/status").and_then(Value::as_u64).unwrap_or(0);
        let kind = inner.get("kind").and_then(Value::as_str).unwrap_or("?");
        let _ = writeln!(out, "{kind}: {status}");
        match inner.get("data") {
            Some(Value::String(message)) => out.push_str(&format!("{message}\n")),
            Some(d) => out.push_str(&self::answer(&Answer { status: status as u16, data: d.clone() }, now)),
            None => {}
        }
        return out;
    }
    for (key, show) in [("task", task as fn(&Value, i64) -> String), ("promise", promise), ("schedule", schedule)] {
        if let Some(record) = data.get(key) {
            if !out.is_empty() {
                out.push('\n');
            }
            out.push_str(&show(record, now));
        }
    }
    for (key, line) in [("promises", promise_line as fn(&Value, i64) -> String), ("tasks", task_line), ("schedules", schedule_line)] {
        if let Some(Value::Array(items)) = data.get(key) {
            if items.is_empty() {
                let _ = writeln!(out, "no {key}");
            }
            for item in items {
                out.push_str(&line(item, now));
                out.push('\n');
            }
        }
    }
    if let Some(cursor) = data.get("cursor").and_then(Value::as_str) {
        let _ = writeln!(out, "more: --cursor {} (or --all)", crate::cli::quote(cursor));
    }
    out
}

fn rows(rows: &[(&str, String)]) -> String {
    let width = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    rows.iter().filter(|(_, v)| !v.is_empty()).map(|(k, v)| format!("{k:<width$}  {v}\n")).collect()
}

fn text(v: &Value, key: &str) -> String {
    match v.get(key) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None => String::new(),
        Some(other) => other.to_string(),
    }
}

fn time(v: &Value, key: &str, now: i64) -> String {
    v.get(key).and_then(Value::as_i64).map(|ms| format_instant_relative(ms, now)).unwrap_or_default()
}

/// A value's payload for people; its headers after it.
fn payload(v: &Value, key: &str) -> String {
    let Some(value) = v.get(key) else { return String::new() };
    let mut out = decode_value(value).map(|d| d.to_string()).unwrap_or_default();
    if let Some(Value::Object(headers)) = value.get("headers") {
        if !headers.is_empty() {
            let pairs: Vec<String> = headers.iter().map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default())).collect();
            out = format!("{out}  (headers {})", pairs.join(" ")).trim_start().to_string();
        }
    }
    out
}

fn tags(v: &Value, key: &str) -> String {
    let Some(Value::Object(tags)) = v.get(key) else { return String::new() };
    tags.iter().map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default())).collect::<Vec<_>>().join(" ")
}

/// A promise, one field a line.
pub fn promise(p: &Value, now: i64) -> String {
    rows(&[
        ("promise", text(p, "id")),
        ("state", text(p, "state")),
        ("param", payload(p, "param")),
        ("value", payload(p, "value")),
        ("tags", tags(p, "tags")),
        ("created", time(p, "createdAt", now)),
        ("timeout", time(p, "timeoutAt", now)),
        ("settled", time(p, "settledAt", now)),
    ])
}

fn task(t: &Value, _now: i64) -> String {
    rows(&[
        ("task", text(t, "id")),
        ("state", text(t, "state")),
        ("version", text(t, "version")),
        ("resumes", text(t, "resumes")),
        ("pid", text(t, "pid")),
        ("ttl", t.get("ttl").and_then(Value::as_i64).map(format_duration).unwrap_or_default()),
    ])
}

fn schedule(s: &Value, now: i64) -> String {
    rows(&[
        ("schedule", text(s, "id")),
        ("cron", text(s, "cron")),
        ("promise id", text(s, "promiseId")),
        ("promise timeout", s.get("promiseTimeout").and_then(Value::as_i64).map(format_duration).unwrap_or_default()),
        ("promise param", payload(s, "promiseParam")),
        ("promise tags", tags(s, "promiseTags")),
        ("created", time(s, "createdAt", now)),
        ("next run", time(s, "nextRunAt", now)),
        ("last run", time(s, "lastRunAt", now)),
    ])
}

fn promise_line(p: &Value, _now: i64) -> String {
    format!("{}  {}  {}", text(p, "id"), text(p, "state"), tags(p, "tags")).trim_end().to_string()
}

fn task_line(t: &Value, _now: i64) -> String {
    let pid = t.get("pid").and_then(Value::as_str).map(|p| format!("  pid {p}")).unwrap_or_default();
    format!("{}  {}  v{}{pid}", text(t, "id"), text(t, "state"), text(t, "version"))
}

fn schedule_line(s: &Value, now: i64) -> String {
    format!("{}  {}  next {}", text(s, "id"), crate::cli::quote(&text(s, "cron")), time(s, "nextRunAt", now))
}

/// A call tree, one promise a line: `id  state  func`.
pub fn tree(node: &Node) -> String {
    fn walk(node: &Node, prefix: &str, last: bool, root: bool, out: &mut String) {
        let branch = match (root, last) {
            (true, _) => "",
            (false, true) => "└── ",
            (false, false) => "├── ",
        };
        let func = func_of(&node.promise).map(|f| format!("  {f}")).unwrap_or_default();
        let _ = writeln!(out, "{prefix}{branch}{}  {}{func}", text(&node.promise, "id"), text(&node.promise, "state"));
        let child_prefix = match (root, last) {
            (true, _) => String::new(),
            (false, true) => format!("{prefix}    "),
            (false, false) => format!("{prefix}│   "),
        };
        for (i, child) in node.children.iter().enumerate() {
            walk(child, &child_prefix, i + 1 == node.children.len(), false, out);
        }
    }
    let mut out = String::new();
    walk(node, "", true, true, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_promise_reads_as_aligned_lines_with_its_param_decoded() {
        let p = json!({"id": "wire.p1", "state": "pending", "param": {"data": "eyJmdW5jIjoiZm9vIn0=", "headers": {"h": "v"}},
                       "value": {}, "tags": {"env": "wire"}, "timeoutAt": 61_000, "createdAt": 1_000});
        let text = answer(&Answer { status: 200, data: json!({"promise": p}) }, 1_000);
        assert!(text.contains("promise  wire.p1\n"), "{text}");
        assert!(text.contains("param    {\"func\":\"foo\"}  (headers h=v)\n"), "{text}");
        assert!(text.contains("timeout  1970-01-01T00:01:01.000Z (in 1m)\n"), "{text}");
        assert!(!text.contains("settled"), "{text}");
    }

    #[test]
    fn a_tree_is_drawn_with_branches() {
        let leaf = |id: &str, state: &str| Node { promise: json!({"id": id, "state": state}), children: vec![] };
        let root = Node {
            promise: json!({"id": "r", "state": "pending"}),
            children: vec![Node { promise: json!({"id": "r.1", "state": "resolved"}), children: vec![leaf("r.1.1", "resolved")] }, leaf("r.2", "pending")],
        };
        assert_eq!(tree(&root), "r  pending\n├── r.1  resolved\n│   └── r.1.1  resolved\n└── r.2  pending\n");
    }

    #[test]
    fn empty_answers_say_ok() {
        assert_eq!(answer(&Answer { status: 200, data: json!({}) }, 0), "ok\n");
        assert_eq!(answer(&Answer { status: 200, data: json!([]) }, 0), "ok\n");
    }
}
