//! `resonate-ctl mcp`: a Model Context Protocol server (revision 2025-06-18) over stdio, one
//! JSON-RPC 2.0 message per line. It answers `initialize`, `ping`, `tools/list` and `tools/call`;
//! the tools are the request kinds of [`KINDS`] (their input schemas from the same arguments as
//! the subcommands) plus `promise_wait`, `invoke` and `tree`, each a call to the server the
//! command line was pointed at.
//!
//! Written by hand rather than with the rmcp crate: these four methods are all a tools-only server
//! needs, and rmcp with its server feature brings in tokio, futures, schemars, serde_derive and syn
//! (about 65 crates, see README.md), where this file needs nothing beyond serde_json.

use crate::client::{Client, Failure};
use crate::compose::{invoke, run_kind, settled, tree, wait, Call};
use crate::kinds::{Arg, Kind, Request, Type, KINDS};
use crate::request::Inputs;
use crate::values::{decoded, parse_duration, read_payload};
use serde_json::{json, Map, Value};
use std::io::{BufRead, Write};
use std::time::Duration;

/// The revision this server implements; also accepted: the two before it.
const PROTOCOL: &str = "2025-06-18";
const ALSO_SPOKEN: [&str; 2] = ["2025-03-26", "2024-11-05"];

const PAYLOADS: &str = "Payloads (param, value) are any JSON value; they are stored base64-encoded as the SDKs \
     do and shown decoded. Durations are strings like \"30s\", \"5m\", \"1h30m\" or a number of milliseconds.";

/// Serves until standard input ends.
pub fn serve(client: &mut Client, server: &str) -> std::io::Result<()> {
    let stdin = std::io::stdin();
    let mut stdout = std::io::stdout().lock();
    for line in stdin.lock().lines() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        if let Some(reply) = handle(client, server, &line) {
            writeln!(stdout, "{reply}")?;
            stdout.flush()?;
        }
    }
    Ok(())
}

/// One message in, at most one out (notifications get none).
pub fn handle(client: &mut Client, server: &str, line: &str) -> Option<Value> {
    let message: Value = match serde_json::from_str(line) {
        Ok(m) => m,
        Err(e) => return Some(error(Value::Null, -32700, &format!("parse error: {e}"))),
    };
    let id = message.get("id").cloned();
    let method = message.get("method").and_then(Value::as_str).unwrap_or_default();
    let params = message.get("params").cloned().unwrap_or(json!({}));
    let id = id?; // a notification (notifications/initialized, cancelled): nothing to answer
    let result = match method {
        "initialize" => {
            let asked = params.get("protocolVersion").and_then(Value::as_str).unwrap_or(PROTOCOL);
            let version = if asked == PROTOCOL || ALSO_SPOKEN.contains(&asked) { asked } else { PROTOCOL };
            Ok(json!({
                "protocolVersion": version,
                "capabilities": { "tools": { "listChanged": false } },
                "serverInfo": { "name": "resonate-ctl", "title": "Resonate", "version": env!("CARGO_PKG_VERSION") },
                "instructions": format!(
                    "Tools for the Resonate server at {server}: durable promises (create one, settle it, \
                     wait for it with promise_wait), tasks and schedules, and invoke to start a function on \
                     workers. A promise keeps its value forever; creating an existing id returns it unchanged, \
                     so retries are safe. {PAYLOADS}"
                ),
            }))
        }
        "ping" => Ok(json!({})),
        "tools/list" => Ok(json!({ "tools": tools() })),
        "tools/call" => call(client, &params),
        _ => Err((-32601, format!("method not found: {method}"))),
    };
    Some(match result {
        Ok(result) => json!({ "jsonrpc": "2.0", "id": id, "result": result }),
        Err((code, message)) => error(id, code, &message),
    })
}

fn error(id: Value, code: i64, message: &str) -> Value {
    json!({ "jsonrpc": "2.0", "id": id, "error": { "code": code, "message": message } })
}

/// Every tool: one per kind, then the composed ones.
pub fn tools() -> Vec<Value> {
    let mut tools: Vec<Value> = KINDS.iter().map(kind_tool).collect();
    tools.push(tool(
        "promise_wait",
        "Wait for a durable promise to settle, up to a timeout (default 30s), and return it with \
         `settled` true; if it is still pending when the timeout runs out, `settled` is false and \
         you may wait again.",
        json!({
            "id": { "type": "string", "description": "the promise id" },
            "timeout": { "type": ["string", "integer"], "description": "how long to wait, e.g. \"30s\" (default)" },
        }),
        &["id"],
    ));
    tools.push(tool(
        "invoke",
        "Start a function on workers, as the SDKs' rpc does: creates a promise whose task the \
         server dispatches to a worker of the target group, which runs `func` with `args` and \
         settles the promise with its result. Returns the promise; use promise_wait for the result.",
        json!({
            "func": { "type": "string", "description": "the registered function's name" },
            "target": { "type": "string", "description": "the worker group (or an address such as poll://any@group)" },
            "args": { "type": "array", "description": "the function's arguments, JSON values" },
            "id": { "type": "string", "description": "the promise id; the same id never runs twice (default: <func>-<time>)" },
            "timeout": { "type": ["string", "integer"], "description": "how long the call may take (default \"24h\")" },
            "version": { "type": "integer", "description": "the function's version (default 1)" },
            "delay": { "type": ["string", "integer"], "description": "dispatch no earlier than this from now" },
            "tags": { "type": "object", "additionalProperties": { "type": "string" }, "description": "more tags" },
        }),
        &["func", "target"],
    ));
    tools.push(tool(
        "tree",
        "The call graph under a root promise: every promise a function run created (by the tags \
         resonate:origin and resonate:parent the SDKs set), as nested {id, state, func, children}.",
        json!({ "id": { "type": "string", "description": "the root promise id" } }),
        &["id"],
    ));
    tools
}

fn tool(name: &str, description: &str, properties: Value, required: &[&str]) -> Value {
    json!({
        "name": name,
        "description": description,
        "inputSchema": { "type": "object", "properties": properties, "required": required },
    })
}

/// A kind's tool: the spec's doc and help, its arguments as properties.
fn kind_tool(kind: &Kind) -> Value {
    let mut description = format!("{} (request kind {}.)", kind.doc, kind.name);
    if !kind.help.is_empty() {
        description = format!("{description} {}", kind.help);
    }
    if kind.debug {
        description.push_str(" Only a server started with --debug answers it.");
    }
    let mut properties = Map::new();
    let mut required = Vec::new();
    let mut one_of = Vec::new();
    add_properties(&kind.request, &mut properties, &mut required, &mut one_of);
    if let Some((field, subs)) = kind.subs {
        let names: Vec<&str> = subs.iter().map(|s| s.name).collect();
        properties.insert(field.to_string(), json!({ "type": "string", "enum": names, "description": "the inner request" }));
        required.push(field);
        let mut needs = Vec::new();
        for sub in subs {
            let (mut sub_required, mut sub_one_of) = (Vec::new(), Vec::new());
            add_properties(&sub.request, &mut properties, &mut sub_required, &mut sub_one_of);
            let all: Vec<String> = sub_required.iter().map(|s| s.to_string()).chain(sub_one_of).collect();
            needs.push(format!("{} (needs {})", sub.name, all.join(", ")));
        }
        description.push_str(&format!(
            " `{field}` chooses the inner request, whose arguments are the `{field}_*` properties: {}.",
            needs.join(" or ")
        ));
    }
    if kind.request.args.iter().any(|a| a.property == "cursor") {
        properties.insert("all".into(), json!({ "type": "boolean", "description": "follow the cursor and return every page" }));
    }
    if !one_of.is_empty() {
        description.push_str(&format!(" Required: {}.", one_of.join("; ")));
    }
    if kind.request.args.iter().any(|a| a.ty == Type::Value) {
        description = format!("{description} {PAYLOADS}");
    }
    tool(kind.tool, &description, Value::Object(properties), &required)
}

/// The request's arguments as properties (flags without a value are the command line's sugar
/// and left out); `required` gets those that must be given, `one_of` the groups of which one must.
fn add_properties(request: &Request, properties: &mut Map<String, Value>, required: &mut Vec<&'static str>, one_of: &mut Vec<String>) {
    for arg in request.args.iter().filter(|a| !matches!(a.ty, Type::Const(_))) {
        properties.insert(arg.property.to_string(), schema(arg));
        let alternatives: Vec<&str> =
            request.args.iter().filter(|a| a.path == arg.path && !matches!(a.ty, Type::Const(_))).map(|a| a.property).collect();
        if arg.required && alternatives.len() == 1 {
            required.push(arg.property);
        } else if arg.required && alternatives[0] == arg.property {
            one_of.push(alternatives.join(" or "));
        }
    }
}

fn schema(arg: &Arg) -> Value {
    let list = arg.path.contains(&"[]");
    let mut s = match arg.ty {
        Type::Str => json!({ "type": "string" }),
        Type::Int => json!({ "type": "integer" }),
        Type::Duration | Type::FromNow => json!({ "type": ["string", "integer"] }),
        Type::Instant => json!({ "type": ["integer", "string"] }),
        Type::Value => json!({}),
        Type::Tags => json!({ "type": "object", "additionalProperties": { "type": "string" } }),
        Type::TaskRefs => json!({
            "type": "array",
            "items": { "type": "object", "properties": { "id": { "type": "string" }, "version": { "type": "integer" } }, "required": ["id", "version"] },
        }),
        Type::Choice(options) => json!({ "type": "string", "enum": options }),
        Type::Const(_) => json!({ "type": "boolean" }),
    };
    if list {
        s = json!({ "type": "array", "items": s });
    }
    let how = match arg.ty {
        Type::Duration | Type::FromNow => ": a duration such as \"30s\", \"1h30m\", or ms",
        Type::Instant => ": Unix ms, or \"+DURATION\" from now",
        Type::Value => ": any JSON value, sent as base64 of its JSON as the SDKs do",
        Type::Tags => ": tag names to values",
        _ if list => ", one per element",
        _ => "",
    };
    let help = match arg.help.split_once("; ") {
        Some((what, constraints)) => format!("{what}{how}; {constraints}"),
        None => format!("{}{how}", arg.help),
    };
    s["description"] = json!(help);
    s
}

/// `tools/call`: a tool error (isError) for anything the server or the input refused; a JSON-RPC
/// error only for an unknown tool.
fn call(client: &mut Client, params: &Value) -> Result<Value, (i64, String)> {
    let name = params.get("name").and_then(Value::as_str).unwrap_or_default();
    let args = params.get("arguments").and_then(Value::as_object).cloned().unwrap_or_default();
    let outcome = match name {
        "promise_wait" => promise_wait(client, &args),
        "invoke" => invoke_tool(client, &args),
        "tree" => match args.get("id").and_then(Value::as_str) {
            Some(id) => tree(client, id).map(|t| t.to_json()),
            None => Err(Failure::Input("id is required".into())),
        },
        _ => {
            let kind = KINDS.iter().find(|k| k.tool == name).ok_or((-32602, format!("unknown tool: {name}")))?;
            kind_call(client, kind, &args)
        }
    };
    Ok(match outcome {
        Ok(value) => json!({
            "content": [{ "type": "text", "text": serde_json::to_string_pretty(&value).unwrap_or_default() }],
            "isError": false,
        }),
        Err(failure) => json!({ "content": [{ "type": "text", "text": failure.to_string() }], "isError": true }),
    })
}

fn kind_call(client: &mut Client, kind: &Kind, args: &Map<String, Value>) -> Result<Value, Failure> {
    let mut given = Inputs::new();
    collect(&kind.request, args, &mut given)?;
    let sub = match kind.subs {
        Some((field, subs)) => {
            let chosen = args.get(field).and_then(Value::as_str).unwrap_or_default();
            let sub = subs.iter().find(|s| s.name == chosen).ok_or_else(|| {
                let names: Vec<&str> = subs.iter().map(|s| s.name).collect();
                Failure::Input(format!("{field} must be one of {}", names.join(", ")))
            })?;
            collect(&sub.request, args, &mut given)?;
            Some(sub)
        }
        None => None,
    };
    let all = args.get("all").and_then(Value::as_bool).unwrap_or(false);
    let answer = run_kind(client, kind, sub, &given, all)?;
    let data = decoded(&answer.data);
    Ok(if answer.status == 200 { data } else { json!({ "status": answer.status, "data": data }) })
}

/// Tool arguments -> the texts the command line would have given.
fn collect(request: &Request, args: &Map<String, Value>, into: &mut Inputs) -> Result<(), Failure> {
    for arg in request.args.iter().filter(|a| !matches!(a.ty, Type::Const(_))) {
        let Some(value) = args.get(arg.property).filter(|v| !v.is_null()) else { continue };
        let bad = || Failure::Input(format!("{}: {value} is not {}", arg.property, schema(arg)["type"]));
        let texts = match (arg.ty, value) {
            (Type::Value, v) => vec![v.to_string()],
            (Type::Tags, Value::Object(tags)) => tags.iter().map(|(k, v)| format!("{k}={}", v.as_str().map_or(v.to_string(), str::to_string))).collect(),
            (Type::TaskRefs, Value::Array(refs)) => refs
                .iter()
                .map(|r| Some(format!("{}={}", r.get("id")?.as_str()?, r.get("version")?.as_i64()?)))
                .collect::<Option<Vec<_>>>()
                .ok_or_else(bad)?,
            (_, Value::Array(items)) if arg.path.contains(&"[]") => items.iter().map(plain).collect(),
            (_, Value::String(_) | Value::Number(_) | Value::Bool(_)) => vec![plain(value)],
            _ => return Err(bad()),
        };
        into.insert(arg.property.to_string(), texts);
    }
    Ok(())
}

fn plain(v: &Value) -> String {
    v.as_str().map_or_else(|| v.to_string(), str::to_string)
}

fn duration(args: &Map<String, Value>, key: &str, default: &str) -> Result<i64, Failure> {
    let text = args.get(key).map(plain).unwrap_or_else(|| default.to_string());
    parse_duration(&text).map_err(|e| Failure::Input(format!("{key}: {e}")))
}

fn promise_wait(client: &mut Client, args: &Map<String, Value>) -> Result<Value, Failure> {
    let id = args.get("id").and_then(Value::as_str).ok_or_else(|| Failure::Input("id is required".into()))?;
    let timeout = duration(args, "timeout", "30s")?;
    let promise = wait(client, id, Some(Duration::from_millis(timeout.max(0) as u64)), Duration::from_millis(250))?;
    Ok(json!({ "settled": settled(&promise), "promise": decoded(&promise) }))
}

fn invoke_tool(client: &mut Client, args: &Map<String, Value>) -> Result<Value, Failure> {
    let text = |k: &str| args.get(k).and_then(Value::as_str).map(str::to_string);
    let call = Call {
        func: text("func").ok_or_else(|| Failure::Input("func is required".into()))?,
        target: text("target").ok_or_else(|| Failure::Input("target is required".into()))?,
        args: match args.get("args") {
            Some(Value::Array(items)) => items.clone(),
            None | Some(Value::Null) => Vec::new(),
            Some(other) => Vec::from([read_payload(&other.to_string()).map_err(Failure::Input)?]),
        },
        id: text("id"),
        timeout_ms: duration(args, "timeout", "24h")?,
        version: args.get("version").and_then(Value::as_i64).unwrap_or(1),
        delay_ms: args.get("delay").map(|_| duration(args, "delay", "0")).transpose()?,
        tags: args.get("tags").and_then(Value::as_object).cloned().unwrap_or_default(),
    };
    let answer = invoke(client, call)?;
    Ok(decoded(&answer.data))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn offline() -> Client {
        Client::new("http://127.0.0.1:9", None, "resonate.requests", Duration::from_millis(200)).unwrap()
    }

    #[test]
    fn initialize_answers_the_revision_and_the_tools_capability() {
        let reply = handle(&mut offline(), "x", r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"t","version":"0"}}}"#).unwrap();
        assert_eq!(reply["result"]["protocolVersion"], PROTOCOL);
        assert!(reply["result"]["capabilities"]["tools"].is_object());
        assert!(handle(&mut offline(), "x", r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#).is_none());
        let unknown = handle(&mut offline(), "x", r#"{"jsonrpc":"2.0","id":2,"method":"resources/list"}"#).unwrap();
        assert_eq!(unknown["error"]["code"], -32601);
        assert_eq!(handle(&mut offline(), "x", "{").unwrap()["error"]["code"], -32700);
    }

    #[test]
    fn every_kind_is_a_tool_with_an_object_schema() {
        let tools = tools();
        for kind in KINDS {
            let tool = tools.iter().find(|t| t["name"] == kind.tool).unwrap_or_else(|| panic!("no tool for {}", kind.name));
            assert_eq!(tool["inputSchema"]["type"], "object");
            assert!(tool["description"].as_str().unwrap().contains(kind.doc));
            let name = tool["name"].as_str().unwrap();
            assert!(name.len() <= 64 && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'), "{name}");
        }
        let create = tools.iter().find(|t| t["name"] == "promise_create").unwrap();
        assert_eq!(create["inputSchema"]["required"], json!(["id"]));
        assert!(create["description"].as_str().unwrap().contains("timeout or timeout_at"));
    }

    #[test]
    fn an_unreachable_server_is_a_tool_error_not_a_protocol_error() {
        let reply = handle(&mut offline(), "x", r#"{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"promise_get","arguments":{"id":"p"}}}"#).unwrap();
        assert_eq!(reply["result"]["isError"], true);
        assert!(reply["result"]["content"][0]["text"].as_str().unwrap().starts_with("server unreachable"));
        let unknown = handle(&mut offline(), "x", r#"{"jsonrpc":"2.0","id":4,"method":"tools/call","params":{"name":"nope"}}"#).unwrap();
        assert_eq!(unknown["error"]["code"], -32602);
    }
}
