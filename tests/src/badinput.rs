//! Bad input: a seeded generator of requests every server must refuse with a 4xx and a clear
//! message, without changing its store.
//!
//! Structurally valid but wrong envelopes are derived from `spec/kinds.yaml`: for every kind a
//! well-typed `data` is built from its field list, then exactly one thing is broken (a field of
//! the wrong type, a required field missing, a failing field check, a huge or fractional number),
//! or the request is left valid but aimed at a record that does not exist (a 404, with extra
//! unknown fields). Around that: broken envelopes, truncated and invalid JSON, invalid UTF-8,
//! deeply nested JSON, random bytes, bodies over the size limit, wrong methods and paths. Over
//! NATS there are no methods or paths, and no payload over the NATS server's `max_payload`.

use crate::server::repo_root;
use serde_json::{json, Map, Value};
use std::fmt::Write as _;

/// The protocol version every request carries.
pub const VERSION: &str = "2026-04-01";
fn protocol_spec() -> serde_yaml::Value {
    let text = std::fs::read_to_string(repo_root().join("spec/protocol.yaml")).expect("spec/protocol.yaml");
    serde_yaml::from_str(&text).expect("spec/protocol.yaml parses")
}

/// The request body limit of spec/protocol.yaml (`http.body_limit_bytes`).
pub fn body_limit() -> usize {
    protocol_spec()["http"]["body_limit_bytes"].as_u64().expect("http.body_limit_bytes") as usize
}

/// The plain-text answer to a body over the limit (`http.body_too_large.body`).
pub fn too_large_message() -> String {
    protocol_spec()["http"]["body_too_large"]["body"].as_str().expect("http.body_too_large.body").to_string()
}

/// splitmix64: small, seeded, good enough to pick cases.
#[derive(Debug, Clone)]
pub struct Rng(pub u64);

impl Rng {
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// A number in `0..n` (`n` > 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }
    pub fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }
    pub fn pick<T: Clone>(&mut self, items: &[T]) -> T {
        items[self.below(items.len())].clone()
    }
}

/// What a case must be answered with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expect {
    /// Exactly this status, as a JSON envelope whose `data` is a message starting with the prefix.
    Refusal(u16, &'static str),
    /// Any 4xx envelope with a non-empty message (where the spec fixes the status but the
    /// message depends on which check fires first).
    AnyRefusal,
    /// 413 with the plain-text body-limit message.
    TooLarge,
    /// A 4xx from the HTTP layer (wrong method or path): the body may be empty.
    Route,
}

/// One request: method, path, body and what must come back.
#[derive(Debug, Clone)]
pub struct Case {
    pub what: String,
    pub method: &'static str,
    pub path: String,
    pub body: Vec<u8>,
    pub expect: Expect,
}

impl Case {
    fn rpc(what: impl Into<String>, body: Vec<u8>, expect: Expect) -> Case {
        Case { what: what.into(), method: "POST", path: "/".to_string(), body, expect }
    }
}

/// A field of a request kind, as `spec/kinds.yaml` lists it.
#[derive(Debug, Clone)]
struct Field {
    name: String,
    ty: String,
    optional: bool,
    /// `non_empty`, `no_nul` or `at_least:<min>`.
    checks: Vec<String>,
    /// For `action`/`actions`: the kinds whose fields the nested `data` has.
    of: Vec<String>,
}

#[derive(Debug, Clone)]
struct Kind {
    name: String,
    debug: bool,
    fields: Vec<Field>,
    /// Whether the kind answers a decode failure with its own fixed refusal (`decode_error`).
    fixed_decode_error: bool,
    /// Whether the kind looks up one record by `id` and answers 404 when it is absent.
    lookup: bool,
}

/// The generator: the spec's kinds and the seeded RNG.
pub struct Generator {
    kinds: Vec<Kind>,
    rng: Rng,
    limit: usize,
    /// An address the server delivers to.
    address: String,
    /// Over NATS, the largest payload a case may have; `None` over HTTP.
    max_payload: Option<usize>,
}

/// Ids no seeded record has: dots, NUL and other control characters, SQL, unicode.
const ABSENT_IDS: [&str; 10] = [
    "nx", "nx.a.b.c", "nx..", ".nx", "nx/../../etc/passwd", "nx'; DROP TABLE promises; --", "nx-ünïcødé-🦀", "nx%00%20",
    "nx\u{0}", "nx\u{0}.\u{1}\u{7f}",
];

impl Generator {
    /// Cases for a server that delivers to `address`, over HTTP, or over NATS when
    /// `max_payload` bounds the payloads.
    pub fn new(seed: u64, address: &str, max_payload: Option<usize>) -> Generator {
        let text = std::fs::read_to_string(repo_root().join("spec/kinds.yaml")).expect("spec/kinds.yaml");
        let spec: serde_yaml::Mapping = serde_yaml::from_str(&text).expect("spec/kinds.yaml parses");
        let mut kinds = Vec::new();
        for (name, kind) in &spec {
            let name = name.as_str().expect("kind names are strings").to_string();
            let fields = kind["fields"].as_sequence().map(Vec::as_slice).unwrap_or_default();
            let fields: Vec<Field> = fields.iter().map(field).collect();
            let guards = kind["guards"].as_sequence().map(Vec::as_slice).unwrap_or_default();
            let not_found = guards.iter().any(|g| {
                g["error"].as_str().is_some_and(|e| e.ends_with("_not_found") && !e.starts_with("suspend"))
            });
            let lookup = not_found && fields.first().is_some_and(|f| f.name == "id" || f.name == "awaited");
            kinds.push(Kind {
                debug: kind["debug"].as_bool().unwrap_or(false),
                fixed_decode_error: kind.get("decode_error").is_some(),
                lookup,
                fields,
                name,
            });
        }
        assert!(kinds.len() >= 20, "spec/kinds.yaml lists {} kinds", kinds.len());
        Generator { kinds, rng: Rng(seed), limit: body_limit(), address: address.to_string(), max_payload }
    }

    /// The next case. `big` allows the (slow) over-the-limit bodies.
    pub fn case(&mut self, big: bool) -> Case {
        match self.rng.below(100) {
            0..=39 => self.wrong_field(),
            40..=49 => self.absent(),
            50..=61 => self.bad_envelope(),
            62..=80 => self.bad_json(),
            81..=89 => self.random_bytes(),
            90..=93 => self.nested(),
            94..=98 if self.max_payload.is_none() => self.route(),
            94..=98 => self.bad_json(),
            // Bodies over the limit (2 MiB each) and 100 000-deep nesting are the slow ones.
            _ if big && self.rng.chance(25) => match self.max_payload {
                Some(max) if max <= self.limit => self.just_fitting(max),
                _ => self.too_large(),
            },
            _ if self.rng.chance(25) => self.nested_deep(),
            _ => self.nested(),
        }
    }

    fn envelope(&mut self, kind: &str, data: Value) -> Value {
        let mut head = json!({ "corrId": format!("c{}", self.rng.below(1000)), "version": VERSION });
        if self.rng.chance(30) {
            head["resonate:debug_time"] = json!(1_000);
        }
        json!({ "kind": kind, "head": head, "data": data })
    }

    /// A well-typed value of a field type; ids name records that do not exist.
    fn valid(&mut self, f: &Field) -> Value {
        match f.ty.as_str() {
            "string" => match f.name.as_str() {
                "address" => json!(self.address),
                "cron" => json!("* * * * *"),
                "state" => json!("pending"),
                _ => json!(self.rng.pick(&ABSENT_IDS)),
            },
            "int" => match f.name.as_str() {
                "ttl" => json!(60_000),
                "limit" => json!(10),
                _ => json!(4_000_000_000_000_i64),
            },
            "value" => json!({ "headers": { "h": "v" }, "data": "ZGF0YQ==" }),
            "tags" => json!({ "resonate:target": self.address }),
            "settle_state" => json!(self.rng.pick(&["resolved", "rejected", "rejected_canceled"])),
            "action" => {
                let of = self.rng.pick(&f.of);
                let data = self.valid_data(&of);
                json!({ "kind": of, "head": {}, "data": data })
            }
            "actions" => {
                let data = self.valid_data(&f.of[0]);
                json!([{ "kind": f.of[0], "head": {}, "data": data }])
            }
            "task_refs" => json!([{ "id": "nx", "version": 1 }]),
            other => panic!("spec/kinds.yaml: unknown field type {other}"),
        }
    }

    fn kind(&self, name: &str) -> &Kind {
        self.kinds.iter().find(|k| k.name == name).unwrap_or_else(|| panic!("no kind {name}"))
    }

    fn valid_data(&mut self, kind: &str) -> Value {
        let fields = self.kind(kind).fields.clone();
        let mut data = Map::new();
        for f in &fields {
            if !f.optional || self.rng.chance(50) {
                data.insert(f.name.clone(), self.valid(f));
            }
        }
        Value::Object(data)
    }

    /// A value of the wrong type (or an out-of-range number) for a field type: never `null`,
    /// which optional fields accept.
    fn wrong(&mut self, f: &Field) -> Value {
        let numbers = [
            json!(1.5),
            json!(-0.5),
            json!(u64::MAX),
            json!(i64::MAX as u64 + 1),
            json!("12"),
            json!(true),
            json!([1]),
            json!({ "n": 1 }),
        ];
        let strings = [json!(5), json!(-1), json!(true), json!([]), json!(["a"]), json!({}), json!(1e300)];
        let objects = [json!("x"), json!(5), json!([]), json!(true), json!({ "k": 5 }), json!({ "k": ["v"] }), json!({ "k": {} })];
        match f.ty.as_str() {
            "int" => self.rng.pick(&numbers),
            "string" => self.rng.pick(&strings),
            "value" => self.rng.pick(&[
                // (`[]` is not here: serde reads a sequence as a struct's fields in order, so
                // `[]` is an empty value, as on the official server.)
                json!("x"),
                json!(5),
                json!({ "data": 5 }),
                json!({ "headers": [] }),
                json!({ "headers": { "h": 1 } }),
                json!({ "data": {} }),
            ]),
            "tags" => self.rng.pick(&objects),
            "settle_state" => self.rng.pick(&[
                json!("pending"),
                json!("rejected_timedout"),
                json!("RESOLVED"),
                json!(""),
                json!("resolved\u{0}"),
                json!(1),
                json!({}),
            ]),
            "action" => {
                let mut bad = self.rng.pick(&[json!("x"), json!(5), json!([]), json!({}), json!({ "kind": "k", "head": {} })]);
                if self.rng.chance(50) {
                    // A nested envelope whose data breaks one field of its kind.
                    let of = self.rng.pick(&f.of);
                    if let Some((data, _, _)) = self.break_one(&of) {
                        bad = json!({ "kind": of, "head": {}, "data": data });
                    }
                }
                bad
            }
            "actions" => self.rng.pick(&[json!({}), json!("x"), json!([5]), json!([{}]), json!([{ "data": { "awaited": 5 } }])]),
            "task_refs" => self.rng.pick(&[json!({}), json!([5]), json!([{ "id": 5, "version": 1 }]), json!([{ "id": "a" }]), json!([{ "id": "a", "version": "1" }])]),
            other => panic!("spec/kinds.yaml: unknown field type {other}"),
        }
    }

    /// A value that decodes but fails one of the field's checks.
    fn failing_check(&mut self, f: &Field) -> Option<Value> {
        let check = self.rng.pick(&f.checks);
        if check == "non_empty" {
            Some(json!(""))
        } else if check == "no_nul" {
            Some(json!(self.rng.pick(&["a\u{0}b", "\u{0}", "nx.\u{0}.x"])))
        } else if let Some(min) = check.strip_prefix("at_least:") {
            let min: i64 = min.parse().expect("at_least min");
            Some(json!(self.rng.pick(&[min - 1, min - 1000, i64::MIN, -1_000_000_000_000])))
        } else {
            None
        }
    }

    /// The kind's valid data with exactly one field broken; `None` if the kind has no field
    /// that can break (it has no fields, or only optional untyped ones).
    fn break_one(&mut self, kind: &str) -> Option<(Value, String, String)> {
        let k = self.kind(kind).clone();
        if k.fields.is_empty() {
            return None;
        }
        let mut data = match self.valid_data(kind) {
            Value::Object(m) => m,
            _ => unreachable!(),
        };
        let f = self.rng.pick(&k.fields);
        let how = self.rng.below(3);
        let what = if how == 0 && !f.optional {
            data.remove(&f.name);
            format!("{kind}: {} missing", f.name)
        } else if how == 1 && !f.checks.is_empty() {
            let v = self.failing_check(&f)?;
            let what = format!("{kind}: {} = {v} fails its check", f.name);
            data.insert(f.name.clone(), v);
            what
        } else {
            let v = self.wrong(&f);
            let what = format!("{kind}: {} = {v} has the wrong type", f.name);
            data.insert(f.name.clone(), v);
            what
        };
        Some((Value::Object(data), what, f.name))
    }

    /// A kind's envelope with exactly one field of `data` broken (spec/kinds.yaml), sometimes
    /// with unknown extra fields beside it.
    fn wrong_field(&mut self) -> Case {
        for _ in 0..8 {
            let kind = self.rng.pick(&self.kinds).clone();
            // The debug kinds without fields would run (debug.reset!); only debug.tick can break.
            if kind.debug && kind.fields.is_empty() {
                continue;
            }
            let Some((mut data, what, field)) = self.break_one(&kind.name) else { continue };
            if self.rng.chance(30) {
                data["zzExtra"] = json!({ "nested": [1, 2, 3] });
            }
            let body = self.envelope(&kind.name, data).to_string().into_bytes();
            let expect = if kind.fixed_decode_error {
                Expect::Refusal(400, "Missing or invalid")
            } else if kind.name == "task.fence" && field == "action" {
                // A fenced action that decodes but fails its own checks is judged inside the
                // fence, after the task lookup (an inner 400 in a 200; here the task is absent).
                Expect::AnyRefusal
            } else {
                Expect::Refusal(400, "")
            };
            return Case::rpc(what, body, expect);
        }
        self.bad_envelope()
    }

    /// A valid request for a record that does not exist: 404 and nothing changes. Extra
    /// unknown fields ride along (they are ignored).
    fn absent(&mut self) -> Case {
        let lookups: Vec<Kind> = self.kinds.iter().filter(|k| k.lookup && !k.debug).cloned().collect();
        let kind = self.rng.pick(&lookups);
        let mut data = self.valid_data(&kind.name);
        // Keep the other ids apart from the looked-up one, so no "must differ" check fires first.
        if data.get("awaiter").is_some() {
            data["awaiter"] = json!("nx-awaiter");
        }
        if data.get("action").is_some() {
            // task.fulfill settles the task's own promise; task.fence must name another one.
            let inner = if kind.name == "task.fulfill" { data["id"].clone() } else { json!("nx-inner") };
            data["action"]["data"]["id"] = inner;
        }
        if let Some(actions) = data.get_mut("actions").and_then(Value::as_array_mut) {
            for a in actions {
                a["data"]["awaited"] = json!("nx-inner");
            }
        }
        let extra = self.rng.pick(&[json!(null), json!(1e300), json!({ "a": [{}] }), json!("x".repeat(100)), json!(u64::MAX)]);
        data[format!("extra{}", self.rng.below(3))] = extra;
        if self.rng.chance(20) {
            // Huge but valid numbers, on a record that does not exist.
            for f in kind.fields.iter().filter(|f| f.ty == "int") {
                data[&f.name] = json!(self.rng.pick(&[i64::MAX, i64::MAX - 1, 1 << 53]));
            }
        }
        let mut env = self.envelope(&kind.name, data);
        env["extraTop"] = json!([1, { "b": null }]);
        env["head"]["extraHead"] = json!({ "x": 1 });
        let body = env.to_string().into_bytes();
        Case::rpc(format!("{}: absent record", kind.name), body, Expect::Refusal(404, ""))
    }

    /// An envelope broken at the envelope level (spec/protocol.yaml checks, spec/README.md "Envelope").
    fn bad_envelope(&mut self) -> Case {
        let kind = self.rng.pick(&self.kinds).name.clone();
        let mut env = self.envelope(&kind, json!({}));
        let (what, expect): (&str, Expect) = match self.rng.below(14) {
            0 => {
                env.as_object_mut().unwrap().remove("kind");
                ("no kind", Expect::Refusal(400, "Invalid request envelope: missing field `kind`"))
            }
            1 => {
                env.as_object_mut().unwrap().remove("head");
                ("no head", Expect::Refusal(400, "Invalid request envelope: missing field `head`"))
            }
            2 => {
                env.as_object_mut().unwrap().remove("data");
                ("no data", Expect::Refusal(400, "Invalid request envelope: missing field `data`"))
            }
            3 => {
                env["head"].as_object_mut().unwrap().remove("corrId");
                ("no corrId", Expect::Refusal(400, "Invalid request envelope: missing field `corrId`"))
            }
            4 => {
                env["head"].as_object_mut().unwrap().remove("version");
                ("no version", Expect::Refusal(400, "Invalid request envelope: missing field `version`"))
            }
            5 => {
                env["kind"] = json!("");
                ("empty kind", Expect::Refusal(400, "Missing or invalid 'kind' field"))
            }
            6 => {
                env["kind"] = self.rng.pick(&[json!(5), json!(null), json!(["promise.get"]), json!({})]);
                ("kind not a string", Expect::Refusal(400, "Invalid request envelope: "))
            }
            7 => {
                env["data"] = self.rng.pick(&[json!(null), json!([]), json!("x"), json!(5), json!(true)]);
                ("data not an object", Expect::Refusal(400, "Invalid 'data' field"))
            }
            8 => {
                env["head"]["version"] = self.rng.pick(&[json!("2025-01-15"), json!(""), json!("2026-04-01 "), json!("2026-04-01\u{0}")]);
                ("wrong version", Expect::Refusal(400, "Unsupported protocol version"))
            }
            9 => {
                env["kind"] = json!(self.rng.pick(&["promise.nope", "promise", "debug", "PROMISE.GET", "promise.get\u{0}", "task.", "💥"]));
                ("unknown kind", Expect::Refusal(400, "Unknown operation: "))
            }
            10 => {
                env["head"] = self.rng.pick(&[json!(null), json!([]), json!("head"), json!(1)]);
                ("head not an object", Expect::Refusal(400, "Invalid request envelope: "))
            }
            11 => {
                env["head"]["corrId"] = self.rng.pick(&[json!(1), json!(null), json!({})]);
                ("corrId not a string", Expect::Refusal(400, "Invalid request envelope: "))
            }
            12 => {
                env["head"]["resonate:debug_time"] = self.rng.pick(&[json!("1000"), json!(1.5), json!(u64::MAX), json!([])]);
                ("debug_time not an i64", Expect::Refusal(400, "Invalid request envelope: "))
            }
            _ => {
                // Negative and huge request clocks are fine for a lookup that finds nothing.
                env["kind"] = json!("promise.get");
                env["data"] = json!({ "id": "nx" });
                env["head"]["resonate:debug_time"] = self.rng.pick(&[json!(-1), json!(i64::MIN), json!(i64::MAX), json!(0)]);
                ("odd debug_time on a lookup", Expect::Refusal(404, "Promise not found"))
            }
        };
        Case::rpc(what, env.to_string().into_bytes(), expect)
    }

    /// Syntactically broken JSON: truncated, trailing garbage, invalid UTF-8, huge numbers,
    /// bad escapes, an empty body.
    fn bad_json(&mut self) -> Case {
        let kind = self.rng.pick(&self.kinds).name.clone();
        let data = if self.kind(&kind).debug { json!({}) } else { self.valid_data(&kind) };
        let good = self.envelope(&kind, data).to_string().into_bytes();
        let invalid = Expect::Refusal(400, "Invalid request envelope: ");
        let (what, body): (&str, Vec<u8>) = match self.rng.below(9) {
            0 => {
                let cut = self.rng.below(good.len());
                ("truncated", good[..cut].to_vec())
            }
            1 => {
                let mut b = good;
                b.extend_from_slice(self.rng.pick(&[&b"x"[..], b"}", b",", b"{}", b"\x00"]));
                ("trailing garbage", b)
            }
            2 => {
                // Invalid UTF-8 bytes early in the body.
                let mut b = good;
                let bad: &[u8] = self.rng.pick(&[&[0xff][..], &[0xc3, 0x28], &[0xed, 0xa0, 0x80], &[0xf8, 0x88, 0x80, 0x80, 0x80], &[0x80]]);
                let at = 9.min(b.len());
                b.splice(at..at, bad.iter().copied());
                ("invalid UTF-8", b)
            }
            3 => {
                let n = self.rng.pick(&["1e309", "-1e309", "18446744073709551616", "99999999999999999999999999999", "-9223372036854775809", "1e99999999999", "NaN", "Infinity", "0x10", "01"]);
                let body = format!(r#"{{"kind":"promise.create","head":{{"corrId":"c","version":"{VERSION}"}},"data":{{"id":"nx","timeoutAt":{n}}}}}"#);
                // Integers past u64 parse as floats: a refusal of the request, not of the envelope.
                return Case::rpc("huge or non-JSON number", body.into_bytes(), Expect::Refusal(400, "Invalid request"));
            }
            4 => {
                let s = self.rng.pick(&[r#""\ud800""#, r#""\x41""#, r#""\u12""#, "\"a\nb\"", r#""\"#, "'single'", r#""\u0000""#]);
                let body = format!(r#"{{"kind":{s},"head":{{"corrId":"c","version":"{VERSION}"}},"data":{{}}}}"#);
                // `"\u0000"` is valid JSON: an unknown kind. Lone surrogates and bad escapes are not.
                let expect_unknown = s == r#""\u0000""#;
                return Case::rpc(
                    "bad string escape",
                    body.into_bytes(),
                    if expect_unknown { Expect::Refusal(400, "Unknown operation: ") } else { invalid },
                );
            }
            5 => ("empty body", Vec::new()),
            6 => ("whitespace body", b" \r\n\t ".to_vec()),
            7 => {
                let b = self.rng.pick(&[&b"null"[..], b"[]", b"5", b"\"x\"", b"true", b"{}"]);
                ("JSON that is not an envelope", b.to_vec())
            }
            _ => {
                let mut b = b"\xef\xbb\xbf".to_vec();
                b.extend_from_slice(&good);
                ("byte order mark", b)
            }
        };
        Case::rpc(what, body, invalid)
    }

    /// Random bytes, or a valid envelope with random bytes flipped, as the body of `POST /`.
    fn random_bytes(&mut self) -> Case {
        let len = self.rng.below(300);
        let mut body: Vec<u8> = (0..len).map(|_| self.rng.next_u64() as u8).collect();
        // Mostly not JSON at all; a byte that starts no JSON value makes sure of it.
        if body.first().is_some_and(|b| b" \t\r\n{[\"-0123456789tfn".contains(b)) || body.is_empty() {
            body.insert(0, b'#');
        }
        Case::rpc("random bytes", body, Expect::Refusal(400, "Invalid request envelope: "))
    }

    /// Deeply nested JSON in `data` or as the whole body.
    fn nested(&mut self) -> Case {
        let depth = self.rng.pick(&[129, 1_000, 5_000]);
        self.nested_to(depth)
    }

    fn nested_deep(&mut self) -> Case {
        self.nested_to(100_000)
    }

    fn nested_to(&mut self, depth: usize) -> Case {
        let (open, close) = self.rng.pick(&[("[", "]"), ("{\"a\":", "}")]);
        let mut inner = String::with_capacity(depth * 5 + 8);
        for _ in 0..depth {
            inner.push_str(open);
        }
        inner.push('1');
        if self.rng.chance(50) {
            for _ in 0..depth {
                inner.push_str(close);
            }
        }
        let body = if self.rng.chance(50) {
            inner
        } else {
            format!(r#"{{"kind":"promise.create","head":{{"corrId":"c","version":"{VERSION}"}},"data":{{"id":"nx","timeoutAt":1,"param":{inner}}}}}"#)
        };
        Case::rpc(format!("nested {depth} deep"), body.into_bytes(), Expect::Refusal(400, "Invalid request envelope: "))
    }

    /// A body just over the limit: 413 before it is parsed, even when it is otherwise valid.
    fn too_large(&mut self) -> Case {
        let pad = self.limit + 1 + self.rng.below(4096);
        let mut body = String::with_capacity(pad + 128);
        let _ = write!(body, r#"{{"kind":"promise.create","head":{{"corrId":"c","version":"{VERSION}"}},"data":{{"id":"big","timeoutAt":4000000000000,"param":{{"data":""#);
        while body.len() < pad {
            body.push('A');
        }
        body.push_str(r#""}}}"#);
        Case::rpc("over the body limit", body.into_bytes(), Expect::TooLarge)
    }

    /// Where NATS refuses anything over the body limit itself: an envelope as large as `max`
    /// allows, cut short inside its padding.
    fn just_fitting(&mut self, max: usize) -> Case {
        let size = max - self.rng.below(4096);
        let mut body = format!(r#"{{"kind":"promise.create","head":{{"corrId":"c","version":"{VERSION}"}},"data":{{"id":"big","timeoutAt":4000000000000,"param":{{"data":""#);
        body.extend(std::iter::repeat_n('A', size.saturating_sub(body.len())));
        Case::rpc("as large as NATS carries, cut short", body.into_bytes(), Expect::Refusal(400, "Invalid request envelope: "))
    }

    /// Wrong methods and paths.
    fn route(&mut self) -> Case {
        let (method, path, expect) = self.rng.pick(&[
            ("GET", "/", Expect::Route),
            ("PUT", "/", Expect::Route),
            ("DELETE", "/", Expect::Route),
            ("PATCH", "/", Expect::Route),
            ("OPTIONS", "/", Expect::Route),
            ("POST", "/rpc", Expect::Route),
            ("POST", "/health", Expect::Route),
            ("GET", "/nope", Expect::Route),
            ("GET", "/poll", Expect::Route),
            ("GET", "/poll/", Expect::Route),
            ("GET", "/poll/group", Expect::Route),
            ("GET", "/poll//id", Expect::Route),
            ("GET", "/poll/g/a/b", Expect::Route),
            ("POST", "/poll/g/id", Expect::Route),
            ("GET", "/promises", Expect::Route),
            ("POST", "/tasks/x", Expect::Route),
            ("DELETE", "/schedules/x", Expect::Route),
            ("GET", "//", Expect::Route),
            ("GET", "/%00", Expect::Route),
            ("GET", "/..%2f..%2fetc%2fpasswd", Expect::Route),
        ]);
        let body = if method == "GET" { Vec::new() } else { br#"{"kind":"promise.get","head":{"corrId":"c","version":"2026-04-01"},"data":{"id":"nx"}}"#.to_vec() };
        Case { what: format!("{method} {path}"), method, path: path.to_string(), body, expect }
    }
}

fn field(f: &serde_yaml::Value) -> Field {
    let mut checks = Vec::new();
    for c in f["checks"].as_sequence().map(Vec::as_slice).unwrap_or_default() {
        match c {
            serde_yaml::Value::Mapping(m) => {
                for (name, arg) in m {
                    let name = name.as_str().expect("check names are strings");
                    if name == "at_least" {
                        checks.push(format!("at_least:{}", arg["min"].as_i64().expect("at_least.min")));
                    } else {
                        checks.push(name.to_string());
                    }
                }
            }
            serde_yaml::Value::String(s) => checks.push(s.clone()),
            other => panic!("spec/kinds.yaml: odd check {other:?}"),
        }
    }
    let of = match &f["of"] {
        serde_yaml::Value::String(s) => vec![s.clone()],
        serde_yaml::Value::Sequence(s) => s.iter().filter_map(|k| k.as_str().map(str::to_string)).collect(),
        _ => Vec::new(),
    };
    Field {
        name: f["name"].as_str().expect("field name").to_string(),
        ty: f["type"].as_str().expect("field type").to_string(),
        optional: f["optional"].as_bool().unwrap_or(false),
        checks,
        of,
    }
}
