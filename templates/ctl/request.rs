//! From arguments to a request's `data`: each argument of a [`Request`] is converted by its
//! [`Type`], held to the spec's checks and placed at its path; then copies and nested envelopes
//! are filled in. The command line and the MCP tools both end here, so they send the same bytes.

use crate::client::Failure;
use crate::kinds::{Arg, Check, Request, Type, PROTOCOL_VERSION};
use crate::values::{encode_value, parse_duration, parse_instant, parse_pair, read_payload};
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;

/// The arguments given, by MCP property name: every occurrence, as text (a `Const` flag as "true").
pub type Inputs = BTreeMap<String, Vec<String>>;

/// Builds the `data` of `request` from `inputs`, at the time `now` (Unix ms).
pub fn build(request: &Request, inputs: &Inputs, now: i64) -> Result<Value, Failure> {
    let mut data = json!({});
    let mut given: BTreeMap<&[&str], &str> = BTreeMap::new();
    for arg in request.args {
        let Some(texts) = inputs.get(arg.property).filter(|t| !t.is_empty()) else { continue };
        if let Some(other) = given.insert(arg.path, arg.flag) {
            return Err(input(format!("--{other} and --{} set the same field; give one", arg.flag)));
        }
        let list = arg.path.contains(&"[]");
        let values = if list || matches!(arg.ty, Type::Tags | Type::TaskRefs) {
            texts.iter().map(|t| convert(arg, t, now)).collect::<Result<Vec<_>, _>>()?
        } else if texts.len() > 1 {
            return Err(input(format!("--{} is given {} times; give it once", arg.flag, texts.len())));
        } else {
            Vec::from([convert(arg, &texts[0], now)?])
        };
        for value in &values {
            check(arg, value)?;
        }
        match arg.ty {
            Type::Tags => {
                let tags: Map<String, Value> = values.into_iter().filter_map(|v| v.as_object().cloned()).flatten().collect();
                set(&mut data, arg.path, Value::Object(tags));
            }
            Type::TaskRefs => set(&mut data, arg.path, Value::Array(values)),
            _ if list => {
                for (i, value) in values.into_iter().enumerate() {
                    set_nth(&mut data, arg.path, i, value);
                }
            }
            _ => set(&mut data, arg.path, values.into_iter().next().expect("one value")),
        }
    }
    for arg in request.args.iter().filter(|a| a.required) {
        if !given.contains_key(arg.path) {
            let flags: Vec<String> = request.args.iter().filter(|a| a.path == arg.path).map(name).collect();
            return Err(input(format!("{} is required", flags.join(" or "))));
        }
    }
    for (to, from) in request.copies {
        let value = get(&data, from).cloned().unwrap_or(Value::Null);
        let count = list_len(&data, to);
        if to.contains(&"[]") {
            for i in 0..count {
                set_nth(&mut data, to, i, value.clone());
            }
        } else {
            set(&mut data, to, value);
        }
    }
    for (at, kind) in request.wraps {
        let head = json!({ "corrId": "ctl", "version": PROTOCOL_VERSION });
        if at.last() == Some(&"[]") {
            let count = list_len(&data, at);
            for i in 0..count {
                let mut path = at.to_vec();
                path.push("kind");
                set_nth(&mut data, &path, i, json!(kind));
                *path.last_mut().expect("kind") = "head";
                set_nth(&mut data, &path, i, head.clone());
            }
        } else {
            let mut path = at.to_vec();
            path.push("kind");
            set(&mut data, &path, json!(kind));
            *path.last_mut().expect("kind") = "head";
            set(&mut data, &path, head);
        }
    }
    Ok(data)
}

fn input(why: String) -> Failure {
    Failure::Input(why)
}

/// How the argument is written on the command line: `--flag` or `ID`.
pub fn name(arg: &Arg) -> String {
    if arg.positional {
        arg.flag.to_uppercase()
    } else {
        format!("--{}", arg.flag)
    }
}

/// One occurrence of an argument -> its wire value.
fn convert(arg: &Arg, text: &str, now: i64) -> Result<Value, Failure> {
    let at = |why: String| input(format!("{}: {why}", name(arg)));
    Ok(match arg.ty {
        Type::Str => json!(text),
        Type::Int => json!(text.trim().parse::<i64>().map_err(|_| at(format!("{text:?} is not an integer")))?),
        Type::Duration => json!(parse_duration(text).map_err(at)?),
        Type::FromNow => json!(now.saturating_add(parse_duration(text).map_err(at)?)),
        Type::Instant => json!(parse_instant(text, now).map_err(at)?),
        Type::Value => encode_value(&read_payload(text).map_err(at)?),
        Type::Tags => {
            let (k, v) = parse_pair(text, "KEY=VALUE").map_err(at)?;
            json!({ k: v })
        }
        Type::TaskRefs => {
            let (id, version) = text.rsplit_once('=').ok_or_else(|| at(format!("{text:?} is not ID=VERSION")))?;
            let version: i64 = version.parse().map_err(|_| at(format!("{text:?} is not ID=VERSION")))?;
            json!({ "id": id, "version": version })
        }
        Type::Choice(options) if options.contains(&text) => json!(text),
        Type::Choice(options) => return Err(at(format!("{text:?} is not one of {}", options.join(", ")))),
        Type::Const(value) => json!(value),
    })
}

/// The spec's field checks, with the server's messages.
fn check(arg: &Arg, value: &Value) -> Result<(), Failure> {
    for c in arg.checks {
        let failed = match (c, value) {
            (Check::NonEmpty(_), Value::String(s)) => s.is_empty(),
            (Check::NoNul(_), Value::String(s)) => s.contains('\0'),
            (Check::AtLeast(min, _), Value::Number(n)) => n.as_i64().is_some_and(|n| n < *min),
            _ => false,
        };
        if failed {
            let (Check::NonEmpty(message) | Check::NoNul(message) | Check::AtLeast(_, message)) = c;
            return Err(input(format!("{}: {message}", name(arg))));
        }
    }
    Ok(())
}

fn get<'a>(data: &'a Value, path: &[&str]) -> Option<&'a Value> {
    path.iter().try_fold(data, |v, k| v.get(*k))
}

/// Sets `path` (no `[]` in it), creating objects on the way.
fn set(data: &mut Value, path: &[&str], value: Value) {
    let (last, parents) = path.split_last().expect("a path has a field");
    let mut at = data;
    for key in parents {
        at = at.as_object_mut().expect("paths go through objects").entry(*key).or_insert_with(|| json!({}));
    }
    at.as_object_mut().expect("paths go through objects").insert(last.to_string(), value);
}

/// Sets `path` inside the `index`th element of the list at its `[]` step.
fn set_nth(data: &mut Value, path: &[&str], index: usize, value: Value) {
    let split = path.iter().position(|k| *k == "[]").expect("a list path");
    let (list, rest) = (&path[..split], &path[split + 1..]);
    if get(data, list).is_none() {
        set(data, list, json!([]));
    }
    let mut at = &mut *data;
    for key in list {
        at = at.get_mut(*key).expect("created above");
    }
    let items = at.as_array_mut().expect("a list");
    while items.len() <= index {
        items.push(json!({}));
    }
    if rest.is_empty() {
        items[index] = value;
    } else {
        set(&mut items[index], rest, value);
    }
}

/// How many elements the list at the `[]` step of `path` has.
fn list_len(data: &Value, path: &[&str]) -> usize {
    let split = path.iter().position(|k| *k == "[]").unwrap_or(path.len());
    get(data, &path[..split]).and_then(Value::as_array).map_or(0, Vec::len)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kinds::KINDS;

    fn kind(name: &str) -> &'static crate::kinds::Kind {
        KINDS.iter().find(|k| k.name == name).unwrap()
    }

    fn inputs(pairs: &[(&str, &str)]) -> Inputs {
        let mut out = Inputs::new();
        for (k, v) in pairs {
            out.entry(k.to_string()).or_default().push(v.to_string());
        }
        out
    }

    #[test]
    fn promise_create_takes_a_deadline_from_now_tags_and_a_json_param() {
        let given = inputs(&[("id", "p1"), ("timeout", "1h"), ("tags", "env=dev"), ("tags", "a=b=c"), ("param", "{\"func\":\"foo\"}")]);
        let data = build(&kind("promise.create").request, &given, 1_000).unwrap();
        assert_eq!(
            data,
            json!({"id": "p1", "timeoutAt": 3_601_000, "tags": {"env": "dev", "a": "b=c"}, "param": {"data": "eyJmdW5jIjoiZm9vIn0="}})
        );
        let absolute = inputs(&[("id", "p1"), ("timeout_at", "5000")]);
        assert_eq!(build(&kind("promise.create").request, &absolute, 1_000).unwrap()["timeoutAt"], 5_000);
        let both = inputs(&[("id", "p1"), ("timeout", "1h"), ("timeout_at", "5000")]);
        assert!(build(&kind("promise.create").request, &both, 0).is_err());
        let neither = inputs(&[("id", "p1")]);
        let Err(Failure::Input(why)) = build(&kind("promise.create").request, &neither, 0) else { panic!() };
        assert!(why.contains("--timeout") && why.contains("required"), "{why}");
    }

    #[test]
    fn the_specs_checks_answer_with_the_servers_message() {
        let given = inputs(&[("id", ""), ("timeout", "1h")]);
        let Err(Failure::Input(why)) = build(&kind("promise.create").request, &given, 0) else { panic!() };
        assert!(why.ends_with("Promise ID is required"), "{why}");
        let given = inputs(&[("id", "t"), ("version", "0"), ("pid", "w"), ("ttl", "0")]);
        let Err(Failure::Input(why)) = build(&kind("task.acquire").request, &given, 0) else { panic!() };
        assert!(why.starts_with("--ttl"), "{why}");
    }

    #[test]
    fn nested_requests_get_their_envelopes_and_copied_fields() {
        let given = inputs(&[("id", "t1"), ("version", "1"), ("resolve", "true"), ("value", "3")]);
        let data = build(&kind("task.fulfill").request, &given, 0).unwrap();
        assert_eq!(data["action"]["kind"], "promise.settle");
        assert_eq!(data["action"]["data"], json!({"id": "t1", "state": "resolved", "value": {"data": "Mw=="}}));

        let given = inputs(&[("id", "t1"), ("version", "1"), ("awaited", "a"), ("awaited", "b")]);
        let data = build(&kind("task.suspend").request, &given, 0).unwrap();
        let actions = data["actions"].as_array().unwrap();
        assert_eq!(actions.len(), 2);
        assert_eq!(actions[1]["kind"], "promise.register_callback");
        assert_eq!(actions[1]["data"], json!({"awaited": "b", "awaiter": "t1"}));

        let given = inputs(&[("pid", "w"), ("ttl", "1m"), ("id", "r"), ("timeout", "1m"), ("tags", "resonate:target=poll://any@g")]);
        let data = build(&kind("task.create").request, &given, 0).unwrap();
        assert_eq!(data["ttl"], 60_000);
        assert_eq!(data["action"]["data"]["timeoutAt"], 60_000);
        assert_eq!(data["action"]["kind"], "promise.create");

        let given = inputs(&[("tasks", "a=1"), ("tasks", "b:1=2"), ("pid", "w")]);
        let data = build(&kind("task.heartbeat").request, &given, 0).unwrap();
        assert_eq!(data["tasks"], json!([{"id": "a", "version": 1}, {"id": "b:1", "version": 2}]));
    }
}
