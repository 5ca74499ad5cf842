//! The wire protocol {{ c.spec.protocol.version }}, rendered from spec/: records, refusals and the
//! `data` of every request kind, with the field checks each kind runs after decoding.
//!
//! Records serialise their keys in alphabetical order and omit absent optional fields, as the
//! official server does.

use serde::{Deserialize, Deserializer, Serialize};
use std::collections::BTreeMap;

/// The protocol version this server speaks.
pub const VERSION: &str = "{{ c.spec.protocol.version }}";

/// String tags or headers, kept sorted by key.
pub type Tags = BTreeMap<String, String>;

{% for r in c.records %}
/// {{ r.doc }}
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct {{ r.name }} {
{% for f in r.fields %}
{% if !f.doc.is_empty() %}
    /// {{ f.doc }}
{% endif %}
{% if f.optional %}
    #[serde(rename = "{{ f.wire }}", default, skip_serializing_if = "Option::is_none")]
    pub {{ f.rust }}: Option<{{ f.ty }}>,
{% else %}
    #[serde(rename = "{{ f.wire }}")]
    pub {{ f.rust }}: {{ f.ty }},
{% endif %}
{% endfor %}
}

{% endfor %}
{% for st in c.states %}
/// One of {{ st.wire_list }}.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum {{ st.name }} {
{% for (_, v) in st.states %}
{% if loop.first %}
    #[default]
{% endif %}
    {{ v }},
{% endfor %}
}
{% if st.stored %}

impl {{ st.name }} {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
{% for (w, v) in st.states %}
            Self::{{ v }} => "{{ w }}",
{% endfor %}
        }
    }

    /// Parses a wire name.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
{% for (w, v) in st.states %}
            "{{ w }}" => Some(Self::{{ v }}),
{% endfor %}
            _ => None,
        }
    }
}
{% endif %}

{% endfor %}
impl From<SettleState> for PromiseState {
    fn from(s: SettleState) -> Self {
        match s {
            SettleState::Resolved => PromiseState::Resolved,
            SettleState::Rejected => PromiseState::Rejected,
            SettleState::RejectedCanceled => PromiseState::RejectedCanceled,
        }
    }
}

/// Every refusal the server answers: a status and an exact message (spec/errors.yaml).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
{% for r in c.refusals %}
    /// {{ r.status }}: {{ r.text }}
{% if r.detail %}
    {{ r.variant }}(String),
{% else %}
    {{ r.variant }},
{% endif %}
{% endfor %}
}

impl Refusal {
    /// The protocol status (also the HTTP status).
    pub fn status(&self) -> u16 {
        match self {
{% for r in c.refusals %}
            Self::{{ r.variant }}{% if r.detail %}(_){% endif %} => {{ r.status }},
{% endfor %}
        }
    }

    /// The message sent as the response's `data` string.
    pub fn message(&self) -> String {
        match self {
{% for r in c.refusals %}
{% if r.detail %}
            Self::{{ r.variant }}(detail) => format!({{ r.format }}, detail),
{% else %}
            Self::{{ r.variant }} => {{ r.literal }}.to_string(),
{% endif %}
{% endfor %}
        }
    }
}

/// A response: the protocol status and the JSON text of `data`.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub data: String,
}

impl Reply {
    /// 200 with `data` serialised.
    pub fn ok<T: Serialize>(data: &T) -> Reply {
        Reply::with(200, data)
    }

    pub fn with<T: Serialize>(status: u16, data: &T) -> Reply {
        Reply { status, data: serde_json::to_string(data).expect("records serialise") }
    }

    /// 200 `{}`.
    pub fn empty() -> Reply {
        Reply { status: 200, data: "{}".to_string() }
    }
}

impl From<Refusal> for Reply {
    fn from(r: Refusal) -> Reply {
        Reply::with(r.status(), &r.message())
    }
}

/// Accepts `null` wherever an empty value, tags or list is allowed.
fn nullable<'de, D: Deserializer<'de>, T: Default + Deserialize<'de>>(d: D) -> Result<T, D::Error> {
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// A nested request envelope (`task.create`, `task.fulfill`, `task.suspend`); its `head` is ignored.
#[derive(Debug, Deserialize{% if c.postgres() %}, Serialize{% endif %}{% if c.mysql() %}, Clone{% endif %})]
pub struct Action<T> {
    pub data: T,
}

/// A nested envelope whose `data` is decoded by its kind (`task.fence`).
#[derive(Debug, Deserialize{% if c.postgres() %}, Serialize{% endif %}{% if c.mysql() %}, Clone{% endif %})]
pub struct RawAction {
    pub kind: String,
    pub data: serde_json::Value,
}

/// A task a heartbeat names.
#[derive(Debug, Deserialize{% if c.postgres() %}, Serialize{% endif %}{% if c.mysql() %}, Clone{% endif %})]
pub struct TaskRef {
    pub id: String,
    pub version: i64,
}

{% for r in c.requests %}
/// `{{ r.kind }}`: {{ r.doc }}
///
/// Guards, in order:{% if r.guards.is_empty() %} none.{% endif %}
{% for (g, when) in r.guards %}
/// - `{{ g }}` when {{ when }}
{% endfor %}
///
/// Success: {{ r.response }}.
#[derive(Debug, Deserialize{% if c.postgres() %}, Serialize{% endif %}{% if c.mysql() %}, Clone{% endif %})]
pub struct {{ r.variant }} {
{% for f in r.fields %}
{% if f.optional %}
    #[serde(rename = "{{ f.wire }}", default, deserialize_with = "nullable")]
{% else %}
    #[serde(rename = "{{ f.wire }}")]
{% endif %}
    pub {{ f.rust }}: {{ f.ty }},
{% endfor %}
}

impl {{ r.variant }} {
    /// The field checks of spec/kinds.yaml, in order; the first failure answers.
    pub fn check(&self) -> Result<(), Refusal> {
{% for f in r.fields %}
{% for (cond, variant) in f.checks %}
        if {{ cond }} {
            return Err(Refusal::{{ variant }});
        }
{% endfor %}
{% if f.nested_checks %}
        self.{{ f.rust }}.data.check()?;
{% endif %}
{% endfor %}
        Ok(())
    }
}

{% endfor %}
/// A decoded request.
#[derive(Debug{% if c.mysql() %}, Clone{% endif %})]
pub enum Request {
{% for r in c.requests %}
    {{ r.variant }}({{ r.variant }}),
{% endfor %}
}

{% if c.postgres() %}
impl Request {
    /// The kind's wire name.
    pub fn kind(&self) -> &'static str {
        match self {
{% for r in c.requests %}
            Request::{{ r.variant }}(_) => "{{ r.kind }}",
{% endfor %}
        }
    }

    /// The decoded `data` as JSON: absent and null fields defaulted, unknown fields dropped.
    pub fn data(&self) -> String {
        match self {
{% for r in c.requests %}
            Request::{{ r.variant }}(r) => serde_json::to_string(r),
{% endfor %}
        }
        .expect("requests serialise")
    }
}

{% endif %}
/// Whether a kind belongs to the debug surface.
pub fn is_debug(kind: &str) -> bool {
    kind.starts_with("debug.")
}

/// Rust's words for types in serde's messages and the wire's, replaced in this order
/// (spec/protocol.yaml `decode_detail`).
const WIRE_WORDS: [(&str, &str); {{ c.spec.protocol.decode_detail.len() }}] = {{ c.decode_detail() }};

/// Decodes `data` as the fields of `kind`. A failure is described for the client
/// (spec/protocol.yaml `decode_detail`): the path of the field that failed, if any, then
/// serde's message in the wire's words, e.g.
/// `timeoutAt: invalid type: string "hi", expected a 64-bit integer`.
fn from_json<T: for<'de> Deserialize<'de>>(kind: &str, data: &serde_json::Value) -> Result<T, String> {
    T::deserialize(data).map_err(|e| {
        let mut message = e.to_string();
        for (rust, wire) in WIRE_WORDS {
            message = message.replace(rust, wire);
        }
        // Any other struct is a nested object of the request.
        while let Some(at) = message.find("expected struct ") {
            let name = &message[at + "expected struct ".len()..];
            let end = name.find(|c: char| !c.is_ascii_alphanumeric() && c != '_').unwrap_or(name.len());
            message.replace_range(at..at + "expected struct ".len() + end, "expected an object");
        }
        match failing_path(kind, data, "") {
            path if path.is_empty() => message,
            path => format!("{path}: {message}"),
        }
    })
}

/// What a request field must be, to find where a request fails to decode.
#[derive(Clone, Copy)]
enum Shape {
    String,
    Int,
    Value,
    Tags,
    SettleState,
    /// A nested request envelope whose `data` has the fields of this kind.
    Action(&'static str),
    /// A nested envelope of any kind (`task.fence`).
    RawAction,
    /// A list of nested envelopes of this kind.
    Actions(&'static str),
    TaskRefs,
}

/// The fields of each kind's `data` (spec/kinds.yaml): wire name, shape, optional.
fn shapes(kind: &str) -> &'static [(&'static str, Shape, bool)] {
    match kind {
{% for r in c.requests %}
        "{{ r.kind }}" => &[{% for f in r.fields %}("{{ f.wire }}", {{ f.shape }}, {{ f.optional }}), {% endfor %}],
{% endfor %}
        _ => &[],
    }
}

/// Whether `data` decodes as the fields of `kind`.
fn decodes(kind: &str, data: &serde_json::Value) -> bool {
    match kind {
{% for r in c.requests %}
        "{{ r.kind }}" => {{ r.variant }}::deserialize(data).is_ok(),
{% endfor %}
        _ => false,
    }
}

/// Where decoding `data` as `kind`'s fields first fails, as serde meets it: keys in order,
/// into nested envelopes, lists and tag maps; `path` itself when no field fails (a field is
/// missing, or `data` is not an object).
fn failing_path(kind: &str, data: &serde_json::Value, path: &str) -> String {
    let at = |key: &str| if path.is_empty() { key.to_string() } else { format!("{path}.{key}") };
    let Some(fields) = data.as_object() else { return path.to_string() };
    for (key, value) in fields {
        let Some((_, shape, optional)) = shapes(kind).iter().find(|(name, ..)| name == key) else { continue };
        if *optional && value.is_null() {
            continue;
        }
        if let Some(failed) = failing_value(*shape, value, &at(key)) {
            return failed;
        }
    }
    path.to_string()
}

/// The path inside `value` (itself at `path`) where it fails to decode as `shape`, if it does.
fn failing_value(shape: Shape, value: &serde_json::Value, path: &str) -> Option<String> {
    use serde_json::Value as Json;
    let failing = |ok: bool| (!ok).then(|| path.to_string());
    let strings = |map: &serde_json::Map<String, Json>, at: &str| {
        map.iter().find(|(_, v)| !v.is_string()).map(|(k, _)| format!("{at}.{k}"))
    };
    match (shape, value) {
        (Shape::String, v) => failing(v.is_string()),
        (Shape::Int, v) => failing(v.is_i64()),
        (Shape::SettleState, v) => failing(SettleState::deserialize(v).is_ok()),
        (Shape::Tags, Json::Object(map)) => strings(map, path),
        (Shape::Value, Json::Object(map)) => map.iter().find_map(|(k, v)| match (k.as_str(), v) {
            (_, Json::Null) => None,
            ("data", v) if !v.is_string() => Some(format!("{path}.data")),
            ("headers", Json::Object(headers)) => strings(headers, &format!("{path}.headers")),
            ("headers", _) => Some(format!("{path}.headers")),
            _ => None,
        }),
        (Shape::Value, v) => failing(Value::deserialize(v).is_ok()),
        (Shape::Action(kind), Json::Object(map)) => match map.get("data") {
            Some(data) => {
                let inner = format!("{path}.data");
                match failing_path(kind, data, &inner) {
                    failed if failed == inner && data.is_object() && decodes(kind, data) => None,
                    failed => Some(failed),
                }
            }
            None => Some(path.to_string()),
        },
        (Shape::RawAction, Json::Object(map)) => match (map.get("kind"), map.get("data")) {
            (Some(kind), _) if !kind.is_string() => Some(format!("{path}.kind")),
            (Some(_), Some(_)) => None,
            _ => Some(path.to_string()),
        },
        (Shape::Actions(kind), Json::Array(items)) => {
            items.iter().enumerate().find_map(|(i, item)| failing_value(Shape::Action(kind), item, &format!("{path}[{i}]")))
        }
        (Shape::TaskRefs, Json::Array(items)) => items.iter().enumerate().find_map(|(i, item)| {
            let here = format!("{path}[{i}]");
            match item {
                Json::Object(map) => map
                    .iter()
                    .find(|(k, v)| (k.as_str() == "id" && !v.is_string()) || (k.as_str() == "version" && !v.is_i64()))
                    .map(|(k, _)| format!("{here}.{k}"))
                    .or_else(|| (!map.contains_key("id") || !map.contains_key("version")).then_some(here)),
                _ => Some(here),
            }
        }),
        _ => Some(path.to_string()),
    }
}

/// Decodes `data` for a kind and runs its field checks.
pub fn decode(kind: &str, data: serde_json::Value) -> Result<Request, Refusal> {
    fn parse<T: for<'de> Deserialize<'de>>(kind: &str, data: serde_json::Value) -> Result<T, Refusal> {
        from_json(kind, &data).map_err(Refusal::InvalidRequest)
    }
    let request = match kind {
{% for r in c.requests %}
        "{{ r.kind }}" => {
{% if let Some(e) = r.decode_error %}
            let r: {{ r.variant }} = serde_json::from_value(data).map_err(|_| Refusal::{{ e }})?;
{% else %}
            let r: {{ r.variant }} = parse(kind, data)?;
{% endif %}
            r.check()?;
            Request::{{ r.variant }}(r)
        }
{% endfor %}
        _ => return Err(Refusal::UnknownOperation(kind.to_string())),
    };
    warn_if_seconds(&request);
    Ok(request)
}

/// Deadlines from this (2001-09-09 read as Unix seconds) up to [`MILLISECONDS_FROM`] (1973-03-03
/// read as Unix milliseconds) were most likely written in seconds.
const SECONDS_FROM: i64 = 1_000_000_000;
const MILLISECONDS_FROM: i64 = 100_000_000_000;

/// Logs a warning (at most one a minute) for a promise whose `timeoutAt` looks like Unix
/// seconds: it is valid, but it lies in 1970, so the promise is created already timed out.
fn warn_if_seconds(request: &Request) {
    use std::sync::atomic::{AtomicU64, Ordering};
    static LAST_WARNING: AtomicU64 = AtomicU64::new(0);
    let (kind, id, timeout_at) = match request {
        Request::PromiseCreate(r) => ("promise.create", r.id.as_str(), Some(r.timeout_at)),
        Request::TaskCreate(r) => ("task.create", r.action.data.id.as_str(), Some(r.action.data.timeout_at)),
        Request::TaskFence(r) if r.action.kind == "promise.create" => (
            "task.fence",
            r.action.data.get("id").and_then(|id| id.as_str()).unwrap_or_default(),
            r.action.data.get("timeoutAt").and_then(|t| t.as_i64()),
        ),
        _ => return,
    };
    let Some(timeout_at) = timeout_at.filter(|t| (SECONDS_FROM..MILLISECONDS_FROM).contains(t)) else {
        return;
    };
    let minute = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() / 60 + 1)
        .unwrap_or(1);
    if LAST_WARNING.swap(minute, Ordering::Relaxed) == minute {
        return;
    }
    crate::log!(
        Warn,
        "{kind} {id:?}: timeoutAt {timeout_at} is {} days after 1970-01-01 in Unix milliseconds, so the promise \
         is created already timed out; timeoutAt is in milliseconds (did you mean {}?)",
        timeout_at / 86_400_000,
        timeout_at.saturating_mul(1000)
    );
}

/// The request a `task.fence` carries.
#[derive(Debug)]
pub enum Fenced {
    Create(PromiseCreate),
    Settle(PromiseSettle),
}

impl Fenced {
    /// Decodes a fenced action's `data` by its kind: `Ok(None)` for a kind a fence may not carry.
    pub fn decode(action: RawAction) -> Result<Option<Fenced>, Refusal> {
        let decoded = match action.kind.as_str() {
            "promise.create" => from_json("promise.create", &action.data).map(Fenced::Create),
            "promise.settle" => from_json("promise.settle", &action.data).map(Fenced::Settle),
            _ => return Ok(None),
        };
        decoded.map(Some).map_err(Refusal::FenceData)
    }

    /// The promise the action acts on.
    pub fn id(&self) -> &str {
        match self {
            Fenced::Create(r) => &r.id,
            Fenced::Settle(r) => &r.id,
        }
    }

    /// The action's kind.
    pub fn kind(&self) -> &'static str {
        match self {
            Fenced::Create(_) => "promise.create",
            Fenced::Settle(_) => "promise.settle",
        }
    }
}
{% if !c.sqlite() %}

impl ScheduleCreate {
    /// The longest promise id an occurrence can expand to: the schedule id for `{.id}` and
    /// the longest timestamp for every `{.timestamp}` (both in double braces).
    pub fn longest_promise_id(&self) -> usize {
        self.promise_id
            .replace(concat!("{", "{.id}}"), &self.id)
            .replace(concat!("{", "{.timestamp}}"), &i64::MIN.to_string())
            .len()
    }
}
{% endif %}
