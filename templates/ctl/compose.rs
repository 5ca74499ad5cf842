//! What takes more than one request, shared by the command line and the MCP tools: a kind with its
//! nested subcommand or every page of a search, waiting for a promise to settle, the call tree
//! under a root, and starting a function on workers as the SDKs' `rpc` does.

use crate::client::{Answer, Client, Failure};
use crate::kinds::{Kind, Sub};
use crate::request::{build, Inputs};
use crate::values::{base64_encode, decode_value, now_ms};
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// Sends one kind: its own arguments, merged with those of its chosen subcommand (`task fence …
/// promise-create`); with `all`, follows the cursor of a search and joins the pages.
pub fn run_kind(client: &mut Client, kind: &Kind, sub: Option<&Sub>, inputs: &Inputs, all: bool) -> Result<Answer, Failure> {
    let now = now_ms();
    let mut data = build(&kind.request, inputs, now)?;
    if let Some(sub) = sub {
        merge(&mut data, build(&sub.request, inputs, now)?);
    } else if let Some((field, subs)) = kind.subs {
        let names: Vec<&str> = subs.iter().map(|s| s.name).collect();
        return Err(Failure::Input(format!("{field}: give one of {}", names.join(", "))));
    }
    let mut answer = client.call(kind.name, data.clone())?;
    // The page's list is its one array: promises, tasks or schedules.
    let list = answer.data.as_object().and_then(|o| o.iter().find(|(_, v)| v.is_array())).map(|(k, _)| k.clone());
    while let (true, Some(cursor), Some(list)) = (all, answer.data.get("cursor").cloned(), &list) {
        data["cursor"] = cursor;
        let mut next = client.call(kind.name, data.clone())?.data;
        if let (Some(Value::Array(more)), Some(Value::Array(items))) = (next.get_mut(list).map(Value::take), answer.data.get_mut(list)) {
            items.extend(more);
        }
        match (next.get("cursor").cloned(), answer.data.as_object_mut()) {
            (Some(c), Some(o)) => o.insert("cursor".to_string(), c),
            (None, Some(o)) => o.remove("cursor"),
            _ => None,
        };
    }
    Ok(answer)
}

fn merge(into: &mut Value, from: Value) {
    match (into, from) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, v) in b {
                match a.get_mut(&k) {
                    Some(existing) => merge(existing, v),
                    None => {
                        a.insert(k, v);
                    }
                }
            }
        }
        (slot, v) => *slot = v,
    }
}

/// Whether a promise record reads settled.
pub fn settled(promise: &Value) -> bool {
    promise.get("state").and_then(Value::as_str).is_some_and(|s| s != "pending")
}

/// Asks for the promise every `interval` until it is settled or `timeout` (if any) has passed;
/// returns the last record read.
pub fn wait(client: &mut Client, id: &str, timeout: Option<Duration>, interval: Duration) -> Result<Value, Failure> {
    let deadline = timeout.map(|t| Instant::now() + t);
    loop {
        let promise = client.call("promise.get", json!({ "id": id }))?.data["promise"].take();
        if settled(&promise) || deadline.is_some_and(|d| Instant::now() + interval > d) {
            return Ok(promise);
        }
        std::thread::sleep(interval);
    }
}

/// One promise of a call tree and the promises it created.
pub struct Node {
    pub promise: Value,
    pub children: Vec<Node>,
}

impl Node {
    /// `{id, state, func?, children}`, for --json and agents.
    pub fn to_json(&self) -> Value {
        let mut out = json!({ "id": self.promise["id"], "state": self.promise["state"] });
        if let Some(func) = func_of(&self.promise) {
            out["func"] = json!(func);
        }
        out["children"] = Value::Array(self.children.iter().map(Node::to_json).collect());
        out
    }
}

/// The function a promise calls, when its param is an SDK call (`{"func": …}`).
pub fn func_of(promise: &Value) -> Option<String> {
    decode_value(promise.get("param")?)?.get("func")?.as_str().map(str::to_string)
}

/// The call tree under `root`: every promise with the root's origin, hung under its
/// `resonate:parent` (or, without the tag, the longest id prefix before a `.` or `:` that is in
/// the tree), in id order.
pub fn tree(client: &mut Client, root: &str) -> Result<Node, Failure> {
    let root_promise = client.call("promise.get", json!({ "id": root }))?.data["promise"].take();
    let tag = |p: &Value, t: &str| p.pointer(&format!("/tags/{}", t.replace('/', "~1"))).and_then(Value::as_str).map(str::to_string);
    let origin = tag(&root_promise, "resonate:origin").unwrap_or_else(|| root.to_string());
    let mut all: BTreeMap<String, Value> = BTreeMap::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut data = json!({ "tags": { "resonate:origin": origin }, "limit": 1000 });
        if let Some(c) = &cursor {
            data["cursor"] = json!(c);
        }
        let page = client.call("promise.search", data)?.data;
        for p in page["promises"].as_array().into_iter().flatten() {
            if let Some(id) = p["id"].as_str() {
                all.insert(id.to_string(), p.clone());
            }
        }
        match page.get("cursor").and_then(Value::as_str) {
            Some(c) => cursor = Some(c.to_string()),
            None => break,
        }
    }
    all.insert(root.to_string(), root_promise);
    let mut children: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (id, p) in &all {
        if id == root {
            continue;
        }
        let parent = tag(p, "resonate:parent").filter(|parent| parent != id && all.contains_key(parent)).or_else(|| {
            let mut prefix = id.as_str();
            while let Some(i) = prefix.rfind(['.', ':']) {
                prefix = &prefix[..i];
                if all.contains_key(prefix) {
                    return Some(prefix.to_string());
                }
            }
            None
        });
        if let Some(parent) = parent {
            children.entry(parent).or_default().push(id.clone());
        }
    }
    fn grow(id: &str, all: &BTreeMap<String, Value>, children: &BTreeMap<String, Vec<String>>, depth: usize) -> Node {
        let kids = if depth > 200 { &[][..] } else { children.get(id).map(Vec::as_slice).unwrap_or_default() };
        Node {
            promise: all[id].clone(),
            children: kids.iter().map(|k| grow(k, all, children, depth + 1)).collect(),
        }
    }
    Ok(grow(root, &all, &children, 0))
}

/// A call as `invoke` and the `invoke` tool take it.
pub struct Call {
    pub func: String,
    pub args: Vec<Value>,
    /// A worker group, or an address.
    pub target: String,
    pub id: Option<String>,
    pub timeout_ms: i64,
    pub version: i64,
    pub delay_ms: Option<i64>,
    pub tags: Map<String, Value>,
}

/// Starts `call` on workers: promise.create with the SDKs' root tags and their param encoding
/// (spec/README.md, "How the SDKs use it").
pub fn invoke(client: &mut Client, call: Call) -> Result<Answer, Failure> {
    let now = now_ms();
    let id = call.id.unwrap_or_else(|| format!("{}-{now}", call.func));
    let target = if call.target.contains("://") {
        call.target
    } else if client.is_nats() {
        format!("nats://resonate.recv.{}", call.target)
    } else {
        format!("poll://any@{}", call.target)
    };
    let param = json!({ "func": call.func, "args": call.args, "version": call.version });
    let mut tags = call.tags;
    for (k, v) in [
        ("resonate:origin", id.as_str()),
        ("resonate:branch", id.as_str()),
        ("resonate:parent", id.as_str()),
        ("resonate:scope", "global"),
        ("resonate:target", target.as_str()),
    ] {
        tags.insert(k.to_string(), json!(v));
    }
    if let Some(delay) = call.delay_ms {
        tags.insert("resonate:delay".to_string(), json!((now + delay).to_string()));
    }
    let data = json!({
        "id": id,
        "timeoutAt": now.saturating_add(call.timeout_ms),
        "param": { "data": base64_encode(param.to_string().as_bytes()) },
        "tags": tags,
    });
    client.call("promise.create", data)
}
