//! The protocol as data: typed mirrors of the YAML files in `spec/`.
//!
//! Every struct rejects unknown keys, and [`Spec::load`] reports a bad file with its path and the
//! key path inside it, so a typo in the spec fails loudly instead of rendering a silent default.

use anyhow::{bail, Context, Result};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::Path;

/// The whole protocol, as loaded from `spec/`.
#[derive(Debug)]
pub struct Spec {
    pub protocol: Protocol,
    pub records: Records,
    pub errors: BTreeMap<String, Error>,
    /// Request kinds in the order `kinds.yaml` lists them.
    pub kinds: Vec<(String, Kind)>,
    pub tags: BTreeMap<String, Tag>,
    pub rules: Rules,
    pub config: Config,
    pub choices: Vec<Choice>,
    /// Inbound auth for targets with `auth: jwt` (`auth.yaml`).
    pub auth: Auth,
    /// What resonate-ctl says beyond the protocol (`ctl.yaml`).
    pub ctl: Ctl,
    /// Prometheus metrics of targets with `metrics: prometheus` (`metrics.yaml`).
    pub metrics: Metrics,
}

/// `metrics.yaml`: the metric families `/metrics` serves, and their label values.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Metrics {
    /// Upper bounds in seconds of the duration histograms' buckets.
    pub buckets: Vec<f64>,
    /// Every status a request can be answered with.
    pub statuses: Vec<u16>,
    /// The `kind` label of a request whose kind kinds.yaml does not list.
    pub unknown_kind: String,
    pub families: Vec<MetricFamily>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricFamily {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub labels: Vec<String>,
    pub help: String,
    /// `official` or `ours`.
    pub source: String,
    /// Only targets with one of these stores carry the metric (all when absent).
    pub stores: Option<Vec<String>>,
}

/// `ctl.yaml`: the command line's words beyond the protocol (samples, verbs, extra help).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Ctl {
    /// Sample values by `<kind>.<field>`, `<group>.<field>` or `<field>`.
    pub samples: BTreeMap<String, String>,
    /// The flag that stands for each settle state.
    pub settle_verbs: BTreeMap<String, String>,
    /// Per kind, where the spec's doc is not enough.
    #[serde(default)]
    pub kinds: BTreeMap<String, CtlKind>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CtlKind {
    #[serde(default)]
    pub help: String,
    /// Nested field path -> the field of the request whose value it takes.
    #[serde(default)]
    pub defaults: BTreeMap<String, String>,
    #[serde(default)]
    pub examples: Vec<Vec<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Protocol {
    pub version: String,
    pub envelope: Envelope,
    pub http: Http,
    pub addresses: Vec<Address>,
    /// Refusals a store answers for input it cannot keep (checked by the store, after decoding).
    #[serde(default)]
    pub store_checks: Vec<StoreCheck>,
    /// How a decode failure's detail speaks of types: `(Rust's words, the wire's)`, in order.
    pub decode_detail: Vec<(String, String)>,
}

/// A refusal only the listed stores give: they have a limit the others lack.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreCheck {
    pub error: String,
    pub stores: Vec<String>,
    pub when: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Envelope {
    pub request: String,
    pub response: String,
    pub checks: Vec<Guard>,
    pub ignore_unknown_fields: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Http {
    pub rpc: String,
    pub body_limit_bytes: usize,
    pub body_too_large: PlainReply,
    pub poll: String,
    pub health: String,
    pub ready: String,
    pub gone: Gone,
    /// The answer to any other method on `/`.
    pub not_post: PlainReply,
    pub json_key_order: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlainReply {
    pub status: u16,
    pub content_type: String,
    pub body: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Gone {
    pub paths: Vec<String>,
    pub status: u16,
    pub body: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Address {
    pub scheme: String,
    pub transport: String,
    /// The manifest transport whose targets deliver to this scheme.
    pub served_by: String,
    /// How to write such an address, for invalid_target's message.
    pub form: String,
    pub rule: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Records {
    pub value: Record,
    pub promise: Record,
    pub task: Record,
    pub schedule: Record,
    pub states: BTreeMap<String, Vec<String>>,
    pub messages: BTreeMap<String, Message>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Record {
    pub doc: String,
    pub fields: Vec<RecordField>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecordField {
    pub name: String,
    #[serde(rename = "type")]
    pub ty: RecordType,
    #[serde(default)]
    pub optional: bool,
    pub doc: Option<String>,
}

/// The value types a record field can have.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RecordType {
    String,
    Int,
    Value,
    Tags,
    Headers,
    PromiseState,
    TaskState,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Message {
    pub doc: String,
    pub head: String,
    pub data: String,
}

/// A refusal: the status and exact message a server answers.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Error {
    pub status: u16,
    pub message: String,
    pub source: ErrorSource,
    /// Only targets whose manifest turns this feature on carry the refusal (all when absent).
    pub feature: Option<String>,
    /// Only targets with one of these stores carry the refusal (all when absent).
    pub stores: Option<Vec<String>>,
}

#[derive(Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ErrorSource {
    Official,
    Ours,
    /// The official text followed by what to do about it.
    Extended,
}

impl Error {
    /// Whether the message has a run-time `{detail}` part.
    pub fn has_detail(&self) -> bool {
        self.message.contains("{detail}")
    }
}

/// One request kind.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Kind {
    #[serde(default)]
    pub debug: bool,
    pub doc: String,
    pub fields: Vec<Field>,
    /// The refusal answered when `data` does not decode, instead of `invalid_request`.
    pub decode_error: Option<String>,
    pub guards: Vec<Guard>,
    pub effects: Vec<String>,
    pub response: String,
    /// Which ids a token must cover to send this kind (targets with `auth: jwt`).
    pub auth: KindAuth,
}

/// A kind's `auth`: `all`, or the ids it names as paths into the decoded request.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum KindAuth {
    All(AuthAll),
    Ids(Vec<AuthId>),
}

/// `all`: the kind reads or writes across ids (searches, `debug.*`).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuthAll {
    All,
}

/// One id a kind names: a path such as `id`, `action.data.id` or `tasks[].id`, or
/// `{ template: promiseId }` for a promise id template whose expansions must be covered.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum AuthId {
    Path(String),
    Template {
        template: String,
    },
}

/// `auth.yaml`: inbound JWT authentication and per-id authorization.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Auth {
    /// The manifest feature that carries it.
    pub feature: String,
    pub token: BTreeMap<String, String>,
    /// Algorithms a token may name, by the type of the configured public key.
    pub keys: AuthKeys,
    pub claims: BTreeMap<String, String>,
    pub checks: Vec<AuthCheck>,
    pub poll_unauthorized: PlainReply,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthKeys {
    pub rsa: Vec<String>,
    pub ec: Vec<String>,
    pub ed25519: Vec<String>,
}

/// An auth refusal and the envelope check it follows.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthCheck {
    pub error: String,
    pub after: String,
    pub when: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Field {
    pub name: String,
    #[serde(rename = "type")]
    pub ty: FieldType,
    /// For `action` and `actions`: the kind (or kinds) whose fields the nested `data` has.
    pub of: Option<OneOrMany>,
    #[serde(default)]
    pub optional: bool,
    #[serde(default)]
    pub checks: Vec<Check>,
    /// For an `int`: whether it is an instant or a duration (both in milliseconds).
    pub unit: Option<Unit>,
}

/// What an `int` field measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Unit {
    /// A point in time, Unix milliseconds.
    Instant,
    /// A length of time in milliseconds.
    Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FieldType {
    String,
    Int,
    Value,
    Tags,
    SettleState,
    Action,
    Actions,
    TaskRefs,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    pub fn kinds(&self) -> Vec<&str> {
        match self {
            OneOrMany::One(k) => vec![k.as_str()],
            OneOrMany::Many(ks) => ks.iter().map(String::as_str).collect(),
        }
    }
}

/// A field check, run after decoding; the named error answers when it fails.
/// Written in YAML as a one-key map: `non_empty: <error>`, `no_nul: <error>`,
/// `at_least: { min: <n>, error: <error> }`.
#[derive(Debug)]
pub enum Check {
    NonEmpty(String),
    NoNul(String),
    AtLeast { min: i64, error: String },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CheckMap {
    non_empty: Option<String>,
    no_nul: Option<String>,
    at_least: Option<AtLeast>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AtLeast {
    min: i64,
    error: String,
}

impl<'de> Deserialize<'de> for Check {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let m = CheckMap::deserialize(d)?;
        match (m.non_empty, m.no_nul, m.at_least) {
            (Some(e), None, None) => Ok(Check::NonEmpty(e)),
            (None, Some(e), None) => Ok(Check::NoNul(e)),
            (None, None, Some(a)) => Ok(Check::AtLeast { min: a.min, error: a.error }),
            _ => Err(serde::de::Error::custom(
                "a check is exactly one of non_empty, no_nul, at_least",
            )),
        }
    }
}

impl Check {
    pub fn error(&self) -> &str {
        match self {
            Check::NonEmpty(e) | Check::NoNul(e) | Check::AtLeast { error: e, .. } => e,
        }
    }
}

/// A guard: a refusal and the condition under which it answers.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Guard {
    pub error: String,
    pub when: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tag {
    pub doc: String,
    pub rules: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rules {
    pub facts: BTreeMap<String, String>,
    pub read_discipline: ReadDiscipline,
    pub coupled_settlement: String,
    pub rules: BTreeMap<String, Rule>,
    pub schedule: ScheduleRules,
    pub delivery: Doc,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReadDiscipline {
    pub choice: String,
    pub doc: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    pub name: String,
    /// The manifest feature a rule belongs to (all targets when absent).
    pub feature: Option<String>,
    pub when: String,
    pub effect: String,
    pub fires: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScheduleRules {
    pub cron: String,
    pub expand: String,
    pub schedule_batch: u32,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Doc {
    pub doc: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub options: Vec<ConfigOption>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigOption {
    pub name: String,
    pub env: String,
    #[serde(rename = "type")]
    pub ty: ConfigType,
    pub default: String,
    pub min: Option<i64>,
    /// Only targets with one of these stores carry the option (all when absent).
    pub stores: Option<Vec<String>>,
    /// Only targets with one of these transports carry the option (all when absent).
    pub transports: Option<Vec<String>>,
    /// Only targets whose manifest turns this feature on carry the option (all when absent).
    pub feature: Option<String>,
    /// A shape a `string` option's value must have when it is set.
    pub format: Option<ConfigFormat>,
    pub doc: String,
}

/// The shapes a string option can be held to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConfigFormat {
    /// An absolute `http://` or `https://` URL with a host.
    Url,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConfigType {
    U16,
    I64,
    Bool,
    String,
    /// A length of time written `7d`, `12h`, `30m`, `10s`, `500ms` or a sum such as `1h30m`,
    /// held in milliseconds.
    Duration,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Choice {
    pub id: String,
    pub follows: String,
    pub choice: String,
    pub reason: String,
    /// Only targets whose manifest turns this feature on make this choice (all when absent);
    /// `!<feature>`: only those that leave it off.
    pub feature: Option<String>,
    /// Only targets with one of these transports make this choice (all when absent).
    pub transports: Option<Vec<String>>,
    /// Only targets with one of these stores make this choice (all when absent).
    pub stores: Option<Vec<String>>,
}

/// Reads one YAML file into `T`, naming the file and the key path on failure.
pub fn read_yaml<T: DeserializeOwned>(path: &Path) -> Result<T> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let de = serde_yaml::Deserializer::from_str(&text);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let key = e.path().to_string();
        anyhow::anyhow!("{}: {}", path.display(), yaml_error(&key, &e.into_inner().to_string()))
    })
}

/// A YAML decoding error in the words of a YAML file: where (`at the top level` or `at
/// `budget.crates``), the problem once (serde_yaml repeats the key path in front of its
/// message), keys rather than fields, YAML value kinds rather than Rust types, and the line.
fn yaml_error(key: &str, message: &str) -> String {
    let parent = key.rsplit_once('.').map_or(".", |(parent, _)| parent);
    let message = [key, parent].iter().find_map(|k| message.strip_prefix(&format!("{k}: "))).unwrap_or(message);
    let (message, line) = match message.rsplit_once(" at line ") {
        Some((m, l)) => (m, format!(" (line {})", l.replace(" column ", ", column "))),
        None => (message, String::new()),
    };
    let mut message = message.replace("missing field", "missing key").replace("unknown field", "unknown key");
    for (rust, yaml) in [
        ("expected usize", "expected a whole number of at least 0"),
        ("expected u64", "expected a whole number of at least 0"),
        ("expected u32", "expected a whole number of at least 0"),
        ("expected u16", "expected a whole number from 0 to 65535"),
        ("expected i64", "expected a whole number"),
        ("expected a boolean", "expected true or false"),
        ("expected a map", "expected a mapping (key: value lines)"),
        ("expected a sequence", "expected a list"),
    ] {
        message = message.replace(rust, yaml);
    }
    // An unknown key's path ends with the key itself: say where it stands instead.
    let last = key.rsplit_once('.').map_or(key, |(_, last)| last);
    let key = if message.starts_with(&format!("unknown key `{last}`")) { parent } else { key };
    let at = if key == "." { "at the top level".to_string() } else { format!("at `{key}`") };
    format!("{at}: {message}{line}")
}

impl Spec {
    /// Loads and cross-checks every file of `spec/`.
    pub fn load(dir: &Path) -> Result<Spec> {
        let kinds: serde_yaml::Mapping = read_yaml(&dir.join("kinds.yaml"))?;
        let mut ordered = Vec::new();
        for (name, _) in &kinds {
            let name = name.as_str().context("kinds.yaml: kind names must be strings")?;
            ordered.push(name.to_string());
        }
        let typed: BTreeMap<String, Kind> = read_yaml(&dir.join("kinds.yaml"))?;
        let mut typed = typed;
        let kinds = ordered
            .into_iter()
            .map(|n| {
                let k = typed.remove(&n).expect("same file, same keys");
                (n, k)
            })
            .collect();
        let spec = Spec {
            protocol: read_yaml(&dir.join("protocol.yaml"))?,
            records: read_yaml(&dir.join("records.yaml"))?,
            errors: read_yaml(&dir.join("errors.yaml"))?,
            kinds,
            tags: read_yaml(&dir.join("tags.yaml"))?,
            rules: read_yaml(&dir.join("rules.yaml"))?,
            config: read_yaml(&dir.join("config.yaml"))?,
            choices: read_yaml(&dir.join("choices.yaml"))?,
            auth: read_yaml(&dir.join("auth.yaml"))?,
            ctl: read_yaml(&dir.join("ctl.yaml"))?,
            metrics: read_yaml(&dir.join("metrics.yaml"))?,
        };
        spec.validate(dir)?;
        Ok(spec)
    }

    /// Cross-file rules that serde cannot see: every named error exists, every error is used,
    /// nested actions name real kinds, features are ones a manifest can turn on.
    fn validate(&self, dir: &Path) -> Result<()> {
        let mut used = std::collections::BTreeSet::new();
        let mut need = |file: &str, at: String, error: &str| -> Result<()> {
            if !self.errors.contains_key(error) {
                bail!(
                    "{}: at `{at}`: unknown error `{error}` (errors.yaml defines it)",
                    dir.join(file).display()
                );
            }
            used.insert(error.to_string());
            Ok(())
        };
        for (i, g) in self.protocol.envelope.checks.iter().enumerate() {
            need("protocol.yaml", format!("envelope.checks[{i}].error"), &g.error)?;
        }
        for (i, c) in self.protocol.store_checks.iter().enumerate() {
            need("protocol.yaml", format!("store_checks[{i}].error"), &c.error)?;
        }
        for (i, c) in self.auth.checks.iter().enumerate() {
            need("auth.yaml", format!("checks[{i}].error"), &c.error)?;
            let known = self.protocol.envelope.checks.iter().any(|g| g.error == c.after);
            if !known {
                bail!(
                    "{}: at `checks[{i}].after`: `{}` is not an envelope check of protocol.yaml",
                    dir.join("auth.yaml").display(),
                    c.after
                );
            }
        }
        for (name, kind) in &self.kinds {
            for (i, f) in kind.fields.iter().enumerate() {
                for (j, c) in f.checks.iter().enumerate() {
                    need("kinds.yaml", format!("{name}.fields[{i}].checks[{j}]"), c.error())?;
                }
                if f.unit.is_some() && f.ty != FieldType::Int {
                    bail!(
                        "{}: at `{name}.fields[{i}].unit`: only int fields have a unit",
                        dir.join("kinds.yaml").display()
                    );
                }
                let nested = matches!(f.ty, FieldType::Action | FieldType::Actions);
                match (&f.of, nested) {
                    (Some(of), true) => {
                        for k in of.kinds() {
                            if !self.kinds.iter().any(|(n, _)| n == k) {
                                bail!(
                                    "{}: at `{name}.fields[{i}].of`: unknown kind `{k}`",
                                    dir.join("kinds.yaml").display()
                                );
                            }
                        }
                    }
                    (None, true) => bail!(
                        "{}: at `{name}.fields[{i}]`: an {:?} field needs `of`",
                        dir.join("kinds.yaml").display(),
                        f.ty
                    ),
                    (Some(_), false) => bail!(
                        "{}: at `{name}.fields[{i}].of`: only action and actions fields take `of`",
                        dir.join("kinds.yaml").display()
                    ),
                    (None, false) => {}
                }
            }
            if let Some(e) = &kind.decode_error {
                need("kinds.yaml", format!("{name}.decode_error"), e)?;
            }
            for (i, g) in kind.guards.iter().enumerate() {
                need("kinds.yaml", format!("{name}.guards[{i}].error"), &g.error)?;
            }
        }
        let features = self
            .config
            .options
            .iter()
            .map(|o| ("config.yaml", &o.name, &o.feature))
            .chain(self.rules.rules.iter().map(|(name, r)| ("rules.yaml", name, &r.feature)))
            .chain(self.choices.iter().map(|ch| ("choices.yaml", &ch.id, &ch.feature)));
        for (file, name, feature) in features {
            // Choices may also name a feature a target leaves off (`!https`).
            let named = |f: &str| -> bool {
                let f = if file == "choices.yaml" { f.strip_prefix('!').unwrap_or(f) } else { f };
                crate::manifest::FEATURES.contains(&f)
            };
            if let Some(f) = feature.as_deref().filter(|f| !named(f)) {
                bail!(
                    "{}: at `{name}.feature`: unknown feature `{f}` (manifests know {})",
                    dir.join(file).display(),
                    crate::manifest::FEATURES.join(", ")
                );
            }
        }
        for name in self.ctl.kinds.keys() {
            if !self.kinds.iter().any(|(n, _)| n == name) {
                bail!("{}: at `kinds.{name}`: unknown kind (kinds.yaml lists them)", dir.join("ctl.yaml").display());
            }
        }
        for state in self.ctl.settle_verbs.keys() {
            if !self.records.states.get("settle_state").is_some_and(|s| s.contains(state)) {
                bail!("{}: at `settle_verbs.{state}`: not a settle_state of records.yaml", dir.join("ctl.yaml").display());
            }
        }
        let transports: Vec<&str> =
            <crate::manifest::Transport as clap::ValueEnum>::value_variants().iter().map(|t| t.name()).collect();
        for (i, a) in self.protocol.addresses.iter().enumerate() {
            if !transports.contains(&a.served_by.as_str()) {
                bail!(
                    "{}: at `addresses[{i}].served_by`: unknown transport `{}` (manifests know {})",
                    dir.join("protocol.yaml").display(),
                    a.served_by,
                    transports.join(", ")
                );
            }
        }
        let metrics = dir.join("metrics.yaml");
        if let Some((id, e)) = self.errors.iter().find(|(_, e)| !self.metrics.statuses.contains(&e.status)) {
            bail!("{}: at `statuses`: {} (errors.yaml `{id}`) is missing", metrics.display(), e.status);
        }
        if !self.metrics.buckets.windows(2).all(|w| w[0] < w[1]) {
            bail!("{}: at `buckets`: bounds must increase", metrics.display());
        }
        for (i, f) in self.metrics.families.iter().enumerate() {
            if !f.name.starts_with("resonate_") || !f.name.bytes().all(|b| b.is_ascii_lowercase() || b == b'_') {
                bail!("{}: at `families[{i}].name`: `{}` must be resonate_ and lowercase words", metrics.display(), f.name);
            }
            if !["counter", "gauge", "histogram"].contains(&f.kind.as_str()) || !["official", "ours"].contains(&f.source.as_str()) {
                bail!("{}: at `families[{i}]`: type is counter, gauge or histogram; source official or ours", metrics.display());
            }
        }
        if let Some(unused) = self.errors.keys().find(|e| !used.contains(*e)) {
            bail!(
                "{}: at `{unused}`: no kind or envelope check uses this error",
                dir.join("errors.yaml").display()
            );
        }
        Ok(())
    }

    pub fn kind(&self, name: &str) -> &Kind {
        &self.kinds.iter().find(|(n, _)| n == name).expect("validated").1
    }
}
