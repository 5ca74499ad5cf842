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

/// Decodes `data` for a kind and runs its field checks.
pub fn decode(kind: &str, data: serde_json::Value) -> Result<Request, Refusal> {
    fn parse<T: for<'de> Deserialize<'de>>(data: serde_json::Value) -> Result<T, Refusal> {
        serde_json::from_value(data).map_err(|e| Refusal::InvalidRequest(e.to_string()))
    }
    Ok(match kind {
{% for r in c.requests %}
        "{{ r.kind }}" => {
{% if let Some(e) = r.decode_error %}
            let r: {{ r.variant }} = serde_json::from_value(data).map_err(|_| Refusal::{{ e }})?;
{% else %}
            let r: {{ r.variant }} = parse(data)?;
{% endif %}
            r.check()?;
            Request::{{ r.variant }}(r)
        }
{% endfor %}
        _ => return Err(Refusal::UnknownOperation(kind.to_string())),
    })
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
            "promise.create" => serde_json::from_value(action.data).map(Fenced::Create),
            "promise.settle" => serde_json::from_value(action.data).map(Fenced::Settle),
            _ => return Ok(None),
        };
        decoded.map(Some).map_err(|e| Refusal::FenceData(e.to_string()))
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
