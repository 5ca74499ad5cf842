//! Rendering: spec + manifest -> the files of one generated crate, in memory.
//!
//! Templates see a [`Ctx`] of view models computed here, so they hold Rust code and loops but no
//! naming or type logic. Every `.rs` output is parsed with syn and printed with prettyplease, then
//! prefixed with a stable `@generated` header (no version, no timestamp).

use crate::auth::AuthView;
use crate::manifest::{Auth, Manifest, Metrics, Push, Store, Transport};
use crate::spec::{Check, ConfigFormat, ConfigType, FieldType, RecordType, Spec};
use anyhow::{anyhow, bail, Result};
use askama::Template;
use std::collections::BTreeMap;

/// One rendered file: its path inside the crate and its contents.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct File {
    pub path: String,
    pub contents: String,
}

/// Everything a template may read.
pub struct Ctx<'a> {
    pub spec: &'a Spec,
    pub target: &'a Manifest,
    pub crate_name: String,
    pub refusals: Vec<RefusalView>,
    pub records: Vec<RecordView>,
    pub states: Vec<StatesView>,
    pub requests: Vec<RequestView>,
    pub options: Vec<OptionView>,
    /// The server's `--help` text, as a Rust string literal.
    pub help: String,
    pub push: bool,
    /// Token checks (manifest `auth: jwt`); `None` renders no auth code at all.
    pub auth: Option<AuthView>,
    /// Rule R8 and the `retention` option (manifest `retention: true`).
    pub retention: bool,
    /// Pushes to https:// addresses over rustls (manifest `push: https`).
    pub https: bool,
    /// `/metrics` in the Prometheus text format (manifest `metrics: prometheus`).
    pub metrics: bool,
    /// The read-only web dashboard at `/ui` (manifest `dashboard: true`).
    pub dashboard: bool,
}

pub struct RefusalView {
    pub id: String,
    pub variant: String,
    pub status: u16,
    /// The message as a `format!` string: `{detail}` becomes `{}`, other braces are escaped.
    pub format: String,
    /// The message as a Rust string literal (for messages without `{detail}`).
    pub literal: String,
    /// The message for doc comments, `{detail}` shown as `…`.
    pub text: String,
    /// The message as an SQL string literal (`{detail}` kept, for `replace`).
    pub sql: String,
    pub detail: bool,
}

pub struct StatesView {
    pub name: String,
    pub wire_list: String,
    /// `(wire name, variant)`.
    pub states: Vec<(String, String)>,
    /// A record field has this type, so the store converts it to and from text.
    pub stored: bool,
}

pub struct RecordView {
    pub name: String,
    pub doc: String,
    /// Sorted by wire name, so serde writes keys alphabetically as the official server does.
    pub fields: Vec<RecordFieldView>,
}

pub struct RecordFieldView {
    pub wire: String,
    pub rust: String,
    pub ty: String,
    pub optional: bool,
    pub doc: String,
}

pub struct RequestView {
    pub kind: String,
    pub variant: String,
    pub func: String,
    pub doc: String,
    pub debug: bool,
    pub fields: Vec<RequestFieldView>,
    /// The refusal for undecodable `data` (`InvalidRequest` unless the spec names another).
    pub decode_error: Option<String>,
    pub guards: Vec<(String, String)>,
    pub effects: Vec<String>,
    pub response: String,
}

/// One metric family of spec/metrics.yaml, for templates/server/metrics.rs.
pub struct MetricView {
    /// The Rust constant: the name without `resonate_`, in upper case.
    pub ident: String,
    pub name: String,
    pub kind: String,
    /// The help text as a Rust string literal.
    pub help: String,
    /// The help text itself.
    pub doc: String,
    pub labels: Vec<String>,
    pub official: bool,
}

pub struct RequestFieldView {
    pub wire: String,
    pub rust: String,
    pub ty: String,
    pub optional: bool,
    /// `(condition that fails the check, refusal variant)`, in spec order.
    pub checks: Vec<(String, String)>,
    /// A nested single action whose data has checks of its own.
    pub nested_checks: bool,
    /// The field's `Shape` in protocol.rs, which finds where a request fails to decode.
    pub shape: String,
}

pub struct OptionView {
    pub flag: String,
    pub env: String,
    pub field: String,
    pub ty: &'static str,
    pub default: String,
    /// The default as shown in `--help`.
    pub default_doc: String,
    pub min: Option<i64>,
    pub doc: String,
    pub is_bool: bool,
    /// Written like `7d` or `500ms`, held in milliseconds.
    pub is_duration: bool,
    /// A string that must be an `http(s)://` URL when set.
    pub is_url: bool,
}

/// `promise.create` -> `PromiseCreate`; `promise_id_required` -> `PromiseIdRequired`.
pub fn camel(s: &str) -> String {
    s.split(['.', '_', '-'])
        .map(|w| {
            let mut c = w.chars();
            c.next().map(|f| f.to_ascii_uppercase().to_string() + c.as_str()).unwrap_or_default()
        })
        .collect()
}

/// `timeoutAt` -> `timeout_at`; `promise.create` -> `promise_create`.
pub fn snake(s: &str) -> String {
    let mut out = String::new();
    for ch in s.chars() {
        if ch.is_ascii_uppercase() {
            out.push('_');
            out.push(ch.to_ascii_lowercase());
        } else if ch == '.' || ch == '-' {
            out.push('_');
        } else {
            out.push(ch);
        }
    }
    out
}

/// Kinds a PostgreSQL target answers in Rust rather than in its SQL functions.
const RUST_ONLY_KINDS: [&str; 3] = ["debug.start", "debug.stop", "debug.tick"];

/// The address forms a transport delivers to (spec/protocol.yaml `addresses`), joined by `, `.
pub fn accepted_addresses(spec: &Spec, transport: &str) -> String {
    let forms: Vec<&str> =
        spec.protocol.addresses.iter().filter(|a| a.served_by == transport).map(|a| a.form.as_str()).collect();
    forms.join(", ")
}

/// `it's` -> `'it''s'`.
pub fn sql_literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

fn record_type(t: RecordType) -> &'static str {
    match t {
        RecordType::String => "String",
        RecordType::Int => "i64",
        RecordType::Value => "Value",
        RecordType::Tags | RecordType::Headers => "Tags",
        RecordType::PromiseState => "PromiseState",
        RecordType::TaskState => "TaskState",
    }
}

impl<'a> Ctx<'a> {
    pub fn new(spec: &'a Spec, target: &'a Manifest) -> Ctx<'a> {
        let addresses = accepted_addresses(spec, target.transport.name());
        let refusals = spec
            .errors
            .iter()
            .filter(|(_, e)| e.feature.as_deref().is_none_or(|f| target.has_feature(f)))
            .filter(|(_, e)| e.stores.as_ref().is_none_or(|s| s.iter().any(|s| s == target.store.name())))
            .map(|(id, e)| {
                let message = e.message.replace("{addresses}", &addresses);
                RefusalView {
                    id: id.clone(),
                    variant: camel(id),
                    status: e.status,
                    format: format!("{:?}", message.replace('{', "{{").replace('}', "}}").replace("{{detail}}", "{}")),
                    literal: format!("{message:?}"),
                    text: message.replace("{detail}", "…"),
                    sql: sql_literal(&message),
                    detail: e.has_detail(),
                }
            })
            .collect();
        let records = [
            ("Value", &spec.records.value),
            ("Promise", &spec.records.promise),
            ("Task", &spec.records.task),
            ("Schedule", &spec.records.schedule),
        ]
        .into_iter()
        .map(|(name, r)| {
            let mut fields: Vec<RecordFieldView> = r
                .fields
                .iter()
                .map(|f| RecordFieldView {
                    wire: f.name.clone(),
                    rust: snake(&f.name),
                    ty: record_type(f.ty).to_string(),
                    optional: f.optional,
                    doc: f.doc.clone().unwrap_or_default(),
                })
                .collect();
            fields.sort_by(|a, b| a.wire.cmp(&b.wire));
            RecordView { name: name.to_string(), doc: r.doc.clone(), fields }
        })
        .collect();
        let requests = spec
            .kinds
            .iter()
            .map(|(name, k)| RequestView {
                kind: name.clone(),
                variant: camel(name),
                func: snake(name),
                doc: k.doc.clone(),
                debug: k.debug,
                fields: k
                    .fields
                    .iter()
                    .map(|f| {
                        let rust = snake(&f.name);
                        let of = f.of.as_ref().map(|o| o.kinds()).unwrap_or_default();
                        let ty = match f.ty {
                            FieldType::String => "String".to_string(),
                            FieldType::Int => "i64".to_string(),
                            FieldType::Value => "Value".to_string(),
                            FieldType::Tags => "Tags".to_string(),
                            FieldType::SettleState => "SettleState".to_string(),
                            FieldType::Action if of.len() == 1 => format!("Action<{}>", camel(of[0])),
                            FieldType::Action => "RawAction".to_string(),
                            FieldType::Actions => format!("Vec<Action<{}>>", camel(of[0])),
                            FieldType::TaskRefs => "Vec<TaskRef>".to_string(),
                        };
                        let ty = if f.optional && matches!(f.ty, FieldType::String | FieldType::Int)
                        {
                            format!("Option<{ty}>")
                        } else {
                            ty
                        };
                        let checks = f
                            .checks
                            .iter()
                            .map(|c| {
                                let cond = match c {
                                    Check::NonEmpty(_) => format!("self.{rust}.is_empty()"),
                                    Check::NoNul(_) => format!("self.{rust}.contains('\\0')"),
                                    Check::AtLeast { min, .. } => format!("self.{rust} < {min}"),
                                };
                                (cond, camel(c.error()))
                            })
                            .collect();
                        let nested_checks = f.ty == FieldType::Action
                            && of.len() == 1
                            && spec.kind(of[0]).fields.iter().any(|f| !f.checks.is_empty());
                        let shape = match f.ty {
                            FieldType::String => "Shape::String".to_string(),
                            FieldType::Int => "Shape::Int".to_string(),
                            FieldType::Value => "Shape::Value".to_string(),
                            FieldType::Tags => "Shape::Tags".to_string(),
                            FieldType::SettleState => "Shape::SettleState".to_string(),
                            FieldType::Action if of.len() == 1 => format!("Shape::Action({:?})", of[0]),
                            FieldType::Action => "Shape::RawAction".to_string(),
                            FieldType::Actions => format!("Shape::Actions({:?})", of[0]),
                            FieldType::TaskRefs => "Shape::TaskRefs".to_string(),
                        };
                        RequestFieldView {
                            wire: f.name.clone(),
                            rust,
                            ty,
                            optional: f.optional,
                            checks,
                            nested_checks,
                            shape,
                        }
                    })
                    .collect(),
                decode_error: k.decode_error.as_deref().map(camel),
                guards: k.guards.iter().map(|g| (camel(&g.error), g.when.clone())).collect(),
                effects: k.effects.clone(),
                response: k.response.clone(),
            })
            .collect();
        let options: Vec<OptionView> = spec
            .config
            .options
            .iter()
            .filter(|o| {
                o.stores.as_ref().is_none_or(|s| s.iter().any(|s| s == target.store.name()))
                    && o.transports.as_ref().is_none_or(|t| t.iter().any(|t| t == target.transport.name()))
                    && o.feature.as_deref().is_none_or(|f| target.has_feature(f))
            })
            .map(|o| OptionView {
                flag: o.name.clone(),
                env: o.env.clone(),
                field: snake(&o.name),
                ty: match o.ty {
                    ConfigType::U16 => "u16",
                    ConfigType::I64 | ConfigType::Duration => "i64",
                    ConfigType::Bool => "bool",
                    ConfigType::String => "String",
                },
                default: match o.ty {
                    ConfigType::String => format!("{:?}.to_string()", o.default),
                    _ => o.default.clone(),
                },
                default_doc: o.default.clone(),
                min: o.min,
                doc: o.doc.clone(),
                is_bool: o.ty == ConfigType::Bool,
                is_duration: o.ty == ConfigType::Duration,
                is_url: o.format == Some(ConfigFormat::Url),
            })
            .collect();
        let states = spec
            .records
            .states
            .iter()
            .map(|(name, states)| StatesView {
                name: camel(name),
                wire_list: states.iter().map(|s| format!("`{s}`")).collect::<Vec<_>>().join(", "),
                states: states.iter().map(|s| (s.clone(), camel(s))).collect(),
                stored: [&spec.records.promise, &spec.records.task, &spec.records.schedule]
                    .iter()
                    .flat_map(|r| &r.fields)
                    .any(|f| format!("{:?}", f.ty) == camel(name)),
            })
            .collect();
        let crate_name = format!("resonate-{}", target.name);
        let help = help_text(&crate_name, spec, target, &options);
        Ctx {
            spec,
            target,
            states,
            help,
            crate_name,
            refusals,
            records,
            requests,
            options,
            push: target.push != Push::None,
            auth: None,
            retention: target.retention,
            https: target.push == Push::Https,
            metrics: target.metrics == Metrics::Prometheus,
            dashboard: target.dashboard,
        }
    }

    pub fn sqlite(&self) -> bool {
        self.target.store == Store::Sqlite
    }

    pub fn postgres(&self) -> bool {
        self.target.store == Store::Postgres
    }

    pub fn mysql(&self) -> bool {
        self.target.store == Store::Mysql
    }

    /// Whether requests arrive over HTTP (`POST /`, SSE streams, probes).
    pub fn http(&self) -> bool {
        self.target.transport == Transport::Http
    }

    /// Whether requests arrive over NATS (request subjects in a queue group, `nats://` delivery).
    pub fn nats(&self) -> bool {
        self.target.transport == Transport::Nats
    }

    /// Whether the store runs the Rust state machine (`machine.rs`) over a `Tx`.
    pub fn machine(&self) -> bool {
        matches!(self.target.store, Store::Sqlite | Store::Mysql)
    }

    /// The wire names of a state list (`PromiseState`, `TaskState`) as an SQL array literal.
    pub fn sql_states(&self, name: &str) -> String {
        let states = self.states.iter().find(|s| s.name == name).map(|s| &s.states[..]).unwrap_or_default();
        let list: Vec<String> = states.iter().map(|(wire, _)| sql_literal(wire)).collect();
        format!("ARRAY[{}]", list.join(", "))
    }

    /// The kinds the store's SQL answers (those not handled in Rust: `debug.start`, `debug.stop`
    /// and `debug.tick` act on the process or need the cron module).
    pub fn sql_requests(&self) -> impl Iterator<Item = &RequestView> {
        self.requests.iter().filter(|r| !RUST_ONLY_KINDS.contains(&r.kind.as_str()))
    }

    /// Whether some option is a duration, so the server carries a parser for them.
    pub fn has_durations(&self) -> bool {
        self.options.iter().any(|o| o.is_duration)
    }

    /// spec/protocol.yaml `decode_detail` as a Rust array of `(from, to)` string pairs.
    pub fn decode_detail(&self) -> String {
        let pairs: Vec<String> =
            self.spec.protocol.decode_detail.iter().map(|(from, to)| format!("({from:?}, {to:?})")).collect();
        format!("[{}]", pairs.join(", "))
    }

    /// Whether some option must be a URL, so the server carries a check for them.
    pub fn has_urls(&self) -> bool {
        self.options.iter().any(|o| o.is_url)
    }

    /// Whether requests carry a JWT (`auth: jwt`).
    pub fn jwt(&self) -> bool {
        self.auth.is_some()
    }

    /// The departures from spec/choices.yaml this target makes (those of features it lacks, or
    /// of other stores, are left out).
    pub fn choices(&self) -> impl Iterator<Item = &crate::spec::Choice> {
        self.spec.choices.iter().filter(|ch| {
            ch.feature.as_deref().is_none_or(|f| self.target.has_feature(f))
                && ch.transports.as_ref().is_none_or(|t| t.iter().any(|t| t == self.target.transport.name()))
                && ch.stores.as_ref().is_none_or(|s| s.iter().any(|s| s == self.target.store.name()))
        })
    }

    /// The metric families of spec/metrics.yaml this target's store carries.
    pub fn metric_families(&self) -> Vec<MetricView> {
        self.spec
            .metrics
            .families
            .iter()
            .filter(|f| f.stores.as_ref().is_none_or(|s| s.iter().any(|s| s == self.target.store.name())))
            .map(|f| MetricView {
                ident: f.name.trim_start_matches("resonate_").to_uppercase(),
                name: f.name.clone(),
                kind: f.kind.clone(),
                help: format!("{:?}", f.help),
                doc: f.help.clone(),
                labels: f.labels.clone(),
                official: f.source == "official",
            })
            .collect()
    }

    /// The histogram bucket bounds of spec/metrics.yaml as Rust `f64` literals.
    pub fn metric_buckets(&self) -> String {
        self.spec.metrics.buckets.iter().map(|b| format!("{b:?}")).collect::<Vec<_>>().join(", ")
    }

    /// The protocol requests (not `debug.*`).
    pub fn protocol_requests(&self) -> impl Iterator<Item = &RequestView> {
        self.requests.iter().filter(|r| !r.debug)
    }
}

/// The `--help` of a generated server: usage, then each option with its variable and default.
fn help_text(crate_name: &str, spec: &Spec, target: &Manifest, options: &[OptionView]) -> String {
    let mut text = format!(
        "{crate_name}: a Resonate protocol {} server ({})\n\nUsage: {crate_name} [OPTIONS]\n\n\
         Every option can also be set by its environment variable; a flag wins over the environment.\n\n\
         Options:\n",
        spec.protocol.version, target.description
    );
    for o in options {
        let value = match (o.is_bool, o.is_duration) {
            (true, _) => String::new(),
            (_, true) => " <duration>".to_string(),
            _ => format!(" <{}>", o.ty.to_lowercase()),
        };
        text.push_str(&format!(
            "  --{}{value}\n      {} [env: {}] [default: {}]\n",
            o.flag, o.doc, o.env, o.default_doc
        ));
    }
    text.push_str("  -h, --help\n      Print this help\n  -V, --version\n      Print the name, version and protocol version\n");
    format!("{text:?}")
}

macro_rules! templates {
    ($($name:ident => $path:literal),* $(,)?) => {
        $(
            #[derive(Template)]
            #[template(path = $path, escape = "none")]
            struct $name<'a> {
                c: &'a Ctx<'a>,
            }
        )*
    };
}

templates! {
    CargoToml => "server/Cargo.toml",
    Readme => "server/README.md",
    MainRs => "server/main.rs",
    ConfigRs => "server/config.rs",
    ProtocolRs => "server/protocol.rs",
    MachineRs => "server/machine.rs",
    ServiceRs => "server/service.rs",
    HttpRs => "transport/http/http.rs",
    DeliveryRs => "transport/http/delivery.rs",
    MetricsRs => "server/metrics.rs",
    UiRs => "transport/http/ui.rs",
    UiHtml => "transport/http/ui.html",
    NatsDeliveryRs => "transport/nats/delivery.rs",
    SqliteStore => "store/sqlite/store.rs",
    PostgresStore => "store/postgres/store.rs",
    PostgresSchema => "store/postgres/schema.sql",
    AuthRs => "server/auth.rs",
    MysqlStore => "store/mysql/store.rs",
}

/// Renders one target into its files, formatted and headed, in a fixed order.
pub fn render(spec: &Spec, target: &Manifest) -> Result<Vec<File>> {
    let mut c = Ctx::new(spec, target);
    // Built for every target, so a bad `auth` path in the spec fails every render.
    let auth = AuthView::new(spec)?;
    if target.auth == Auth::Jwt {
        c.auth = Some(auth);
    }
    let c = c;
    let mut out = Vec::new();
    let mut add = |path: &str, template: &str, text: askama::Result<String>| -> Result<()> {
        let text = text.map_err(|e| anyhow!("templates/{template}: {e}"))?;
        out.push(format_file(&target.name, path, template, &text)?);
        Ok(())
    };
    add("Cargo.toml", "server/Cargo.toml", CargoToml { c: &c }.render())?;
    add("README.md", "server/README.md", Readme { c: &c }.render())?;
    add("src/main.rs", "server/main.rs", MainRs { c: &c }.render())?;
    add("src/config.rs", "server/config.rs", ConfigRs { c: &c }.render())?;
    add("src/protocol.rs", "server/protocol.rs", ProtocolRs { c: &c }.render())?;
    if c.jwt() {
        add("src/auth.rs", "server/auth.rs", AuthRs { c: &c }.render())?;
    }
    // The Rust state machine runs over stores with a `Tx` (SQLite, MySQL); the PostgreSQL store
    // runs the same transitions as server-side functions (store/postgres/schema.sql) instead.
    if c.machine() {
        add("src/machine.rs", "server/machine.rs", MachineRs { c: &c }.render())?;
    }
    // The clock, cron and outbox modules have nothing target-specific: they are copied as they are.
    add("src/clock.rs", "server/clock.rs", Ok(include_str!("../../templates/server/clock.rs").to_string()))?;
    add("src/cron.rs", "server/cron.rs", Ok(include_str!("../../templates/server/cron.rs").to_string()))?;
    add("src/outbox.rs", "server/outbox.rs", Ok(include_str!("../../templates/server/outbox.rs").to_string()))?;
    add("src/service.rs", "server/service.rs", ServiceRs { c: &c }.render())?;
    match target.store {
        Store::Sqlite => add("src/store.rs", "store/sqlite/store.rs", SqliteStore { c: &c }.render())?,
        Store::Postgres => {
            add("src/store.rs", "store/postgres/store.rs", PostgresStore { c: &c }.render())?;
            add("src/schema.sql", "store/postgres/schema.sql", PostgresSchema { c: &c }.render())?;
        }
        Store::Mysql => add("src/store.rs", "store/mysql/store.rs", MysqlStore { c: &c }.render())?,
    }
    // Stores reached by a URL share the code that keeps its password out of messages.
    if target.store != Store::Sqlite {
        add("src/url.rs", "store/shared/url.rs", Ok(include_str!("../../templates/store/shared/url.rs").to_string()))?;
    }
    match target.transport {
        Transport::Http => {
            add("src/http.rs", "transport/http/http.rs", HttpRs { c: &c }.render())?;
            add("src/delivery.rs", "transport/http/delivery.rs", DeliveryRs { c: &c }.render())?;
            if c.metrics {
                add("src/metrics.rs", "server/metrics.rs", MetricsRs { c: &c }.render())?;
                add("src/exporter.rs", "transport/http/exporter.rs", Ok(include_str!("../../templates/transport/http/exporter.rs").to_string()))?;
            }
            // The dashboard: its route module and page are rendered (auth or not); its script and
            // style are the same for every target, copied as they are.
            if c.dashboard {
                add("src/ui.rs", "transport/http/ui.rs", UiRs { c: &c }.render())?;
                add("src/ui.html", "transport/http/ui.html", UiHtml { c: &c }.render())?;
                add("src/ui.js", "transport/http/ui.js", Ok(include_str!("../../templates/transport/http/ui.js").to_string()))?;
                add("src/ui.css", "transport/http/ui.css", Ok(include_str!("../../templates/transport/http/ui.css").to_string()))?;
            }
            // TLS for https:// pushes only where the manifest asks for it (`push: https`).
            if c.https {
                add("src/tls.rs", "transport/http/tls.rs", Ok(include_str!("../../templates/transport/http/tls.rs").to_string()))?;
            }
        }
        Transport::Nats => {
            add("src/nats.rs", "transport/nats/nats.rs", Ok(include_str!("../../templates/transport/nats/nats.rs").to_string()))?;
            add("src/delivery.rs", "transport/nats/delivery.rs", NatsDeliveryRs { c: &c }.render())?;
        }
    }
    check_refusals_used(&c, &out)?;
    Ok(out)
}

/// One output file: Rust is parsed with syn and printed with prettyplease, then headed with the
/// `@generated` line naming its template; other files get their trailing blank lines trimmed.
/// `crate_name` names the output in errors.
pub fn format_file(crate_name: &str, path: &str, template: &str, text: &str) -> Result<File> {
    let contents = if path.ends_with(".rs") {
        let file = syn::parse_file(text).map_err(|e| {
            let line = e.span().start().line;
            let context: Vec<String> = text
                .lines()
                .enumerate()
                .skip(line.saturating_sub(4))
                .take(7)
                .map(|(i, l)| format!("{:>5} | {l}", i + 1))
                .collect();
            anyhow!(
                "templates/{template} rendered invalid Rust for {crate_name}/{path} at line {line}: {e}\n{}",
                context.join("\n")
            )
        })?;
        format!(
            "// @generated by resonate-gen from spec/ and templates/{template}. Do not edit.\n\n{}",
            unparse_spaced(file, text).map_err(|e| anyhow!("templates/{template}: {e}"))?
        )
    } else {
        text.trim_end().to_string() + "\n"
    };
    Ok(File { path: path.to_string(), contents })
}

/// Stands where a blank line goes while prettyplease prints; each line holding only it becomes empty.
const BLANK_LINE: &str = "__resonate_gen_blank_line__";

/// Prints a file with prettyplease, with a blank line between items as a person would write it:
/// prettyplease puts every item right after the one before. Between every two items of each item
/// list (the file, inline modules, impls, traits), and after a file's inner doc comments, a
/// marker macro call is inserted before printing; its printed line then becomes the blank line.
/// Runs of `use` declarations and of `mod name;` declarations stay together. Doc comments and
/// attributes belong to their item, so they stay above it, after the blank line. Macro bodies are
/// printed as code ([`crate::macros`]); `source` is the text the file was parsed from.
fn unparse_spaced(mut file: syn::File, source: &str) -> Result<String> {
    /// The marker as an item of some list (`syn::Item`, `syn::ImplItem`, `syn::TraitItem`).
    fn marker<T: syn::parse::Parse>() -> T {
        syn::parse_str(&format!("{BLANK_LINE}!();")).expect("a macro call parses as any item")
    }
    fn space<T: syn::parse::Parse>(items: &mut Vec<T>, together: impl Fn(&T, &T) -> bool) {
        let mut spaced: Vec<T> = Vec::with_capacity(items.len() * 2);
        for it in items.drain(..) {
            if spaced.last().is_some_and(|last| !together(last, &it)) {
                spaced.push(marker());
            }
            spaced.push(it);
        }
        *items = spaced;
    }
    fn space_items(items: &mut Vec<syn::Item>) {
        for it in items.iter_mut() {
            match it {
                syn::Item::Mod(module) => {
                    if let Some((_, inner)) = &mut module.content {
                        space_items(inner);
                    }
                }
                syn::Item::Impl(block) => space(&mut block.items, |_, _| false),
                syn::Item::Trait(block) => space(&mut block.items, |_, _| false),
                _ => {}
            }
        }
        let declared_mod = |i: &syn::Item| matches!(i, syn::Item::Mod(m) if m.content.is_none());
        space(items, |a, b| {
            matches!((a, b), (syn::Item::Use(_), syn::Item::Use(_))) || (declared_mod(a) && declared_mod(b))
        });
    }
    space_items(&mut file.items);
    let inner_docs = file.attrs.iter().any(|a| matches!(a.style, syn::AttrStyle::Inner(_)));
    if inner_docs && !file.items.is_empty() {
        file.items.insert(0, marker());
    }
    let bodies = crate::macros::bodies(&file);
    let keys = crate::macros::disguise(&mut file);
    let printed = crate::macros::undisguise(&prettyplease::unparse(&file), &keys, source)?;
    let reparsed = syn::parse_file(&printed).map_err(|e| anyhow!("macro bodies printed as invalid Rust: {e}"))?;
    if let Some((was, now)) = bodies.iter().zip(crate::macros::bodies(&reparsed)).find(|(was, now)| *was != now) {
        bail!("a macro body changed while it was printed: `{was}` became `{now}`");
    }
    if printed.matches(BLANK_LINE).count() != printed.lines().filter(|l| l.trim() == format!("{BLANK_LINE}!();")).count() {
        bail!("the rendered code holds {BLANK_LINE} itself, which stands for a blank line while it is printed");
    }
    let mut out = String::with_capacity(printed.len() + printed.len() / 16);
    for l in printed.lines() {
        if !l.contains(BLANK_LINE) {
            out.push_str(l);
        }
        out.push('\n');
    }
    Ok(out)
}

/// Every refusal in the spec must be answered somewhere in the rendered code: a guard the spec
/// lists but no template checks is a spec/template mismatch, caught at render time.
fn check_refusals_used(c: &Ctx, files: &[File]) -> Result<()> {
    // Definitions say `Self::X`; every `Refusal::X` is a place that answers it. In SQL
    // (PostgreSQL stores) the definitions say `WHEN 'x'` and every `refusal('x'` answers it.
    let code: String =
        files.iter().filter(|f| f.path.ends_with(".rs")).map(|f| f.contents.as_str()).collect();
    let sql: String =
        files.iter().filter(|f| f.path.ends_with(".sql")).map(|f| f.contents.as_str()).collect();
    let mut missing = BTreeMap::new();
    for r in &c.refusals {
        let in_rust = code.contains(&format!("Refusal::{}", r.variant));
        let in_sql = sql.contains(&format!("refusal('{}'", r.id));
        if !in_rust && !in_sql {
            missing.insert(r.id.clone(), r.variant.clone());
        }
    }
    if !missing.is_empty() {
        bail!(
            "target {}: the spec lists refusals that no template answers: {}",
            c.target.name,
            missing.keys().cloned().collect::<Vec<_>>().join(", ")
        );
    }
    Ok(())
}
