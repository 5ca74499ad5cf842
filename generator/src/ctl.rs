//! resonate-ctl: spec -> the files of `generated/resonate-ctl/`, a command line and MCP server.
//!
//! The crate's code is mostly fixed (templates/ctl/*.rs); what comes from the spec is one table,
//! `src/kinds.rs`: every kind of spec/kinds.yaml with its arguments. This module flattens each
//! kind's fields into arguments (a nested `action` becomes the flags of its kind, a list of actions
//! repeated flags, a field that may hold several kinds one subcommand per kind), names them,
//! writes their help from their types and checks, and makes examples from spec/ctl.yaml's samples.

use crate::render::{format_file, snake, File};
use crate::spec::{Check, FieldType, Kind, Spec, Unit};
use anyhow::{anyhow, bail, Result};
use askama::Template;
use std::collections::{BTreeMap, BTreeSet};

/// The directory under `generated/`.
pub const CRATE: &str = "resonate-ctl";

/// Global flags of the command line, which no kind's argument may take.
const GLOBAL_FLAGS: [&str; 7] = ["server", "token", "nats-api-prefix", "request-timeout", "json", "help", "all"];

/// Everything the ctl templates read.
pub struct CtlCtx {
    pub version: String,
    pub kinds: Vec<KindView>,
    /// `(name, about)` as Rust string literals.
    pub groups: Vec<(String, String)>,
    /// Kinds whose help spec/ctl.yaml adds to, for the README.
    pub hand_written: Vec<String>,
}

pub struct KindView {
    /// Plain text, for the README.
    pub kind: String,
    pub command: String,
    pub tool_name: String,
    pub doc_text: String,
    /// Rust literals and expressions, for kinds.rs.
    pub name: String,
    pub group: String,
    pub verb: String,
    pub tool: String,
    pub doc: String,
    pub help: String,
    pub debug: bool,
    pub request: String,
    pub subs: String,
    /// Each example as a comma-separated list of string literals.
    pub examples: Vec<String>,
}

/// One argument before it is written as Rust.
struct ArgSpec {
    flag: String,
    property: String,
    path: Vec<String>,
    ty: String,
    positional: bool,
    required: bool,
    alias: Option<String>,
    help: String,
    checks: Vec<String>,
    /// The sample for examples, already as command-line words (`--ttl 1m`), or none for a
    /// group's second way of writing the same field.
    sample: Option<Vec<String>>,
}

/// A request (a kind, or a subcommand's inner request) before it is written as Rust.
#[derive(Default)]
struct RequestSpec {
    args: Vec<ArgSpec>,
    wraps: Vec<(Vec<String>, String)>,
    copies: Vec<(Vec<String>, Vec<String>)>,
}

fn lit(s: &str) -> String {
    format!("{s:?}")
}

fn path_lit(path: &[String]) -> String {
    format!("&[{}]", path.iter().map(|p| lit(p)).collect::<Vec<_>>().join(", "))
}

/// `["actions", "[]", "data", "awaiter"]` -> `actions[].data.awaiter` (kinds.yaml `auth` syntax).
fn dotted(path: &[String]) -> String {
    path.join(".").replace(".[]", "[]")
}

fn kebab(s: &str) -> String {
    snake(s).replace('_', "-")
}

/// `tags` -> `tag`, `promiseTags` -> `promise-tag`.
fn singular(s: &str) -> String {
    kebab(s.strip_suffix('s').unwrap_or(s))
}

/// Where a kind's arguments come from while flattening.
struct Walk<'a> {
    spec: &'a Spec,
    /// The kind the command is for (samples and defaults are looked up under it).
    kind: &'a str,
    defaults: &'a BTreeMap<String, String>,
    /// Prefixed to MCP property names (`action_` inside a subcommand).
    property_prefix: String,
}

impl Walk<'_> {
    fn sample(&self, path: &[String], field: &str) -> Result<String> {
        let group = self.kind.split('.').next().unwrap_or_default();
        let keys = [format!("{}.{}", self.kind, dotted(path)), format!("{group}.{field}"), field.to_string()];
        keys.iter().find_map(|k| self.spec.ctl.samples.get(k)).cloned().ok_or_else(|| {
            anyhow!("spec/ctl.yaml: no sample for field `{}` of {} (add `samples.{field}` or `samples.{}`)", dotted(path), self.kind, keys[0])
        })
    }

    fn fields(&self, kind: &Kind, prefix: &[String], out: &mut RequestSpec, subs: &mut Vec<(String, String, RequestSpec)>) -> Result<()> {
        let in_list = prefix.iter().any(|p| p == "[]");
        for f in &kind.fields {
            let mut path = prefix.to_vec();
            path.push(f.name.clone());
            if let Some(from) = self.defaults.get(&dotted(&path)) {
                out.copies.push((path, from.split('.').map(str::to_string).collect()));
                continue;
            }
            let wire = format!("data.{}", dotted(&path));
            let mut constraints: Vec<String> = Vec::new();
            let mut checks = Vec::new();
            for c in &f.checks {
                let message = &self.spec.errors[c.error()].message;
                let (text, code) = match c {
                    Check::NonEmpty(_) => ("not empty".to_string(), format!("Check::NonEmpty({})", lit(message))),
                    Check::NoNul(_) => ("no NUL bytes".to_string(), format!("Check::NoNul({})", lit(message))),
                    Check::AtLeast { min, .. } => (format!("at least {min}"), format!("Check::AtLeast({min}, {})", lit(message))),
                };
                constraints.push(text);
                checks.push(code);
            }
            let constraint = if constraints.is_empty() { String::new() } else { format!("; {}", constraints.join(", ")) };
            let required = !f.optional;
            let arg = |flag: String, ty: &str, help: String, sample: Option<Vec<String>>| ArgSpec {
                property: format!("{}{}", self.property_prefix, flag.replace('-', "_")),
                flag,
                path: path.clone(),
                ty: ty.to_string(),
                positional: false,
                required,
                alias: None,
                help,
                checks: checks.clone(),
                sample,
            };
            let flagged = |flag: &str, value: String| Some(vec![format!("--{flag}"), value]);
            match (f.ty, f.unit) {
                (FieldType::String, _) => {
                    let sample = self.sample(&path, &f.name)?;
                    let positional = f.name == "id" && !in_list;
                    let flag = kebab(&f.name);
                    let words = if positional { Some(vec![sample]) } else { flagged(&flag, sample) };
                    let help = if in_list { format!("{wire}, one element each{constraint}") } else { format!("{wire}{constraint}") };
                    let mut a = arg(flag, "Type::Str", help, words);
                    a.positional = positional;
                    out.args.push(a);
                }
                (FieldType::Int, None) => {
                    let flag = kebab(&f.name);
                    let words = flagged(&flag, self.sample(&path, &f.name)?);
                    out.args.push(arg(flag, "Type::Int", format!("{wire}{constraint}"), words));
                }
                (FieldType::Int, Some(Unit::Duration)) => {
                    let flag = kebab(&f.name);
                    let words = flagged(&flag, self.sample(&path, &f.name)?);
                    let help = format!("{wire}, in ms{constraint}");
                    out.args.push(arg(flag, "Type::Duration", help, words));
                }
                (FieldType::Int, Some(Unit::Instant)) => match f.name.strip_suffix("At") {
                    Some(base) => {
                        let relative = kebab(base);
                        let words = flagged(&relative, self.sample(&path, &f.name)?);
                        let help = format!("sets {wire} to now plus this");
                        out.args.push(arg(relative, "Type::FromNow", help, words));
                        out.args.push(arg(kebab(&f.name), "Type::Instant", format!("{wire}{constraint}"), None));
                    }
                    None => {
                        let flag = kebab(&f.name);
                        let words = flagged(&flag, self.sample(&path, &f.name)?);
                        out.args.push(arg(flag, "Type::Instant", format!("{wire}{constraint}"), words));
                    }
                },
                (FieldType::Value, _) => {
                    let flag = kebab(&f.name);
                    let words = flagged(&flag, self.sample(&path, &f.name)?);
                    out.args.push(arg(flag, "Type::Value", wire.clone(), words));
                }
                (FieldType::Tags, _) => {
                    let flag = singular(&f.name);
                    let words = flagged(&flag, self.sample(&path, &f.name)?);
                    let mut a = arg(flag, "Type::Tags", wire.clone(), words);
                    a.property = format!("{}{}", self.property_prefix, snake(&f.name));
                    out.args.push(a);
                }
                (FieldType::TaskRefs, _) => {
                    let flag = singular(&f.name);
                    let words = flagged(&flag, self.sample(&path, &f.name)?);
                    let mut a = arg(flag, "Type::TaskRefs", format!("{wire}: tasks and their versions"), words);
                    a.property = format!("{}{}", self.property_prefix, snake(&f.name));
                    out.args.push(a);
                }
                (FieldType::SettleState, _) => {
                    let states = &self.spec.records.states["settle_state"];
                    let list = states.iter().map(|s| lit(s)).collect::<Vec<_>>().join(", ");
                    out.args.push(arg(kebab(&f.name), &format!("Type::Choice(&[{list}])"), wire.clone(), None));
                    for (i, state) in states.iter().enumerate() {
                        let verb = self.spec.ctl.settle_verbs.get(state).ok_or_else(|| {
                            anyhow!("spec/ctl.yaml: settle_verbs has no flag for the settle_state `{state}`")
                        })?;
                        let words = (i == 0).then(|| vec![format!("--{verb}")]);
                        out.args.push(arg(verb.clone(), &format!("Type::Const({})", lit(state)), format!("settle as {state} ({wire} = {state})"), words));
                    }
                }
                (FieldType::Action, _) => {
                    let of = f.of.as_ref().expect("validated").kinds();
                    if let [one] = of.as_slice() {
                        out.wraps.push((path.clone(), one.to_string()));
                        let mut inner = path.clone();
                        inner.push("data".into());
                        self.fields(self.spec.kind(one), &inner, out, subs)?;
                    } else {
                        for k in of {
                            let walk = Walk { property_prefix: format!("{}_", snake(&f.name)), ..*self };
                            let mut request = RequestSpec::default();
                            request.wraps.push((path.clone(), k.to_string()));
                            let mut inner = path.clone();
                            inner.push("data".into());
                            walk.fields(self.spec.kind(k), &inner, &mut request, &mut Vec::new())?;
                            subs.push((f.name.clone(), k.to_string(), request));
                        }
                    }
                }
                (FieldType::Actions, _) => {
                    let of = f.of.as_ref().expect("validated").kinds();
                    let mut list = path.clone();
                    list.push("[]".into());
                    out.wraps.push((list.clone(), of[0].to_string()));
                    list.push("data".into());
                    self.fields(self.spec.kind(of[0]), &list, out, subs)?;
                }
            }
        }
        Ok(())
    }
}

impl RequestSpec {
    /// Checks the flags, gives a lone payload the `--data` alias, and writes it as Rust.
    fn finish(&mut self, what: &str) -> Result<String> {
        let mut flags = BTreeSet::new();
        for a in &self.args {
            if GLOBAL_FLAGS.contains(&a.flag.as_str()) || !flags.insert(a.flag.clone()) {
                bail!("{what}: two arguments would be --{}; rename a field or give spec/ctl.yaml a default for one", a.flag);
            }
        }
        let payloads: Vec<usize> = self.args.iter().enumerate().filter(|(_, a)| a.ty == "Type::Value").map(|(i, _)| i).collect();
        if let [only] = payloads.as_slice() {
            if !flags.contains("data") && self.args[*only].flag != "data" {
                self.args[*only].alias = Some("data".into());
            }
        }
        let args: Vec<String> = self
            .args
            .iter()
            .map(|a| {
                format!(
                    "Arg {{ flag: {}, property: {}, path: {}, ty: {}, positional: {}, required: {}, alias: {}, help: {}, checks: &[{}] }}",
                    lit(&a.flag),
                    lit(&a.property),
                    path_lit(&a.path),
                    a.ty,
                    a.positional,
                    a.required,
                    a.alias.as_ref().map_or("None".to_string(), |s| format!("Some({})", lit(s))),
                    lit(&a.help),
                    a.checks.join(", ")
                )
            })
            .collect();
        let wraps: Vec<String> = self.wraps.iter().map(|(p, k)| format!("({}, {})", path_lit(p), lit(k))).collect();
        let copies: Vec<String> = self.copies.iter().map(|(to, from)| format!("({}, {})", path_lit(to), path_lit(from))).collect();
        Ok(format!(
            "Request {{ args: &[{}], wraps: &[{}], copies: &[{}] }}",
            args.join(", "),
            wraps.join(", "),
            copies.join(", ")
        ))
    }

    /// Words for the required arguments (`minimal`) or every argument that has a sample.
    fn example(&self, minimal: bool) -> Vec<String> {
        let mut words: Vec<String> = Vec::new();
        for a in self.args.iter().filter(|a| a.positional) {
            words.extend(a.sample.clone().unwrap_or_default());
        }
        for a in self.args.iter().filter(|a| !a.positional && (a.required || !minimal)) {
            words.extend(a.sample.clone().unwrap_or_default());
        }
        words
    }
}

impl CtlCtx {
    pub fn new(spec: &Spec) -> Result<CtlCtx> {
        let mut kinds = Vec::new();
        let mut groups: Vec<(String, Vec<String>, bool)> = Vec::new();
        for (name, kind) in &spec.kinds {
            let (group, verb) = name.split_once('.').ok_or_else(|| anyhow!("kind `{name}` is not <group>.<verb>"))?;
            let verb = kebab(verb);
            match groups.iter_mut().find(|(g, _, _)| g == group) {
                Some((_, verbs, _)) => verbs.push(verb.clone()),
                None => groups.push((group.to_string(), vec![verb.clone()], kind.debug)),
            }
            let extra = spec.ctl.kinds.get(name);
            let empty = BTreeMap::new();
            let walk = Walk { spec, kind: name, defaults: extra.map_or(&empty, |e| &e.defaults), property_prefix: String::new() };
            let mut request = RequestSpec::default();
            let mut subs = Vec::new();
            walk.fields(kind, &[], &mut request, &mut subs)?;
            // A minimal and a full example, or one per subcommand.
            let mut examples = Vec::new();
            if subs.is_empty() {
                examples.push(request.example(true));
                let full = request.example(false);
                if full != examples[0] {
                    examples.push(full);
                }
            }
            let mut sub_views = Vec::new();
            let sub_field = subs.first().map(|(field, _, _)| field.clone());
            for (_, sub_kind, mut sub_request) in subs {
                let sub_name = kebab(&sub_kind);
                let mut words = request.example(true);
                words.push(sub_name.clone());
                words.extend(sub_request.example(true));
                examples.push(words);
                let code = sub_request.finish(&format!("{name} {sub_name}"))?;
                sub_views.push(format!(
                    "Sub {{ name: {}, doc: {}, request: {code} }}",
                    lit(&sub_name),
                    lit(&spec.kind(&sub_kind).doc)
                ));
            }
            for e in extra.map(|e| &e.examples).into_iter().flatten() {
                examples.push(e.clone());
            }
            let command_words = [group.to_string(), verb.clone()];
            let examples = examples
                .into_iter()
                .map(|words| command_words.iter().chain(&words).map(|w| lit(w)).collect::<Vec<_>>().join(", "))
                .collect();
            let code = request.finish(name)?;
            let subs = match sub_field {
                Some(field) => format!("Some(({}, &[{}]))", lit(&field), sub_views.join(", ")),
                None => "None".to_string(),
            };
            let help = extra.map(|e| e.help.trim().to_string()).unwrap_or_default();
            kinds.push(KindView {
                kind: name.clone(),
                command: format!("{group} {verb}"),
                tool_name: snake(name),
                doc_text: kind.doc.clone(),
                name: lit(name),
                group: lit(group),
                verb: lit(&verb),
                tool: lit(&snake(name)),
                doc: lit(&kind.doc),
                help: lit(&help),
                debug: kind.debug,
                request: code,
                subs,
                examples,
            });
        }
        let groups = groups
            .into_iter()
            .map(|(g, verbs, debug)| {
                let note = if debug { " (only with a server started with --debug)" } else { "" };
                (lit(&g), lit(&format!("The {g}.* requests{note}: {}", verbs.join(", "))))
            })
            .collect();
        Ok(CtlCtx {
            version: spec.protocol.version.clone(),
            kinds,
            groups,
            hand_written: spec.ctl.kinds.keys().cloned().collect(),
        })
    }
}

macro_rules! templates {
    ($($name:ident => $path:literal),* $(,)?) => {
        $(
            #[derive(Template)]
            #[template(path = $path, escape = "none")]
            struct $name<'a> {
                c: &'a CtlCtx,
            }
        )*
    };
}

templates! {
    CargoToml => "ctl/Cargo.toml",
    Readme => "ctl/README.md",
    KindsRs => "ctl/kinds.rs",
}

/// Renders `generated/resonate-ctl/`: formatted and headed like every target, in a fixed order.
pub fn render(spec: &Spec) -> Result<Vec<File>> {
    let c = CtlCtx::new(spec)?;
    let mut out = Vec::new();
    let mut add = |path: &str, template: &str, text: askama::Result<String>| -> Result<()> {
        let text = text.map_err(|e| anyhow!("templates/{template}: {e}"))?;
        out.push(format_file(CRATE, path, template, &text)?);
        Ok(())
    };
    add("Cargo.toml", "ctl/Cargo.toml", CargoToml { c: &c }.render())?;
    add("README.md", "ctl/README.md", Readme { c: &c }.render())?;
    add("src/kinds.rs", "ctl/kinds.rs", KindsRs { c: &c }.render())?;
    // The rest has nothing from the spec: it reads the table above.
    add("src/main.rs", "ctl/main.rs", Ok(include_str!("../../templates/ctl/main.rs").to_string()))?;
    add("src/cli.rs", "ctl/cli.rs", Ok(include_str!("../../templates/ctl/cli.rs").to_string()))?;
    add("src/request.rs", "ctl/request.rs", Ok(include_str!("../../templates/ctl/request.rs").to_string()))?;
    add("src/client.rs", "ctl/client.rs", Ok(include_str!("../../templates/ctl/client.rs").to_string()))?;
    add("src/compose.rs", "ctl/compose.rs", Ok(include_str!("../../templates/ctl/compose.rs").to_string()))?;
    add("src/show.rs", "ctl/show.rs", Ok(include_str!("../../templates/ctl/show.rs").to_string()))?;
    add("src/mcp.rs", "ctl/mcp.rs", Ok(include_str!("../../templates/ctl/mcp.rs").to_string()))?;
    add("src/values.rs", "ctl/values.rs", Ok(include_str!("../../templates/ctl/values.rs").to_string()))?;
    Ok(out)
}
