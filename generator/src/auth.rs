//! View models for `templates/server/auth.rs` (targets with `auth: jwt`): which ids of each kind a
//! token's prefix must cover, turned from the `auth` paths of spec/kinds.yaml into Rust
//! expressions over the decoded request, and the algorithms each key type allows.

use crate::render::{camel, snake};
use crate::spec::{AuthId, Field, FieldType, KindAuth, Spec};
use anyhow::{bail, Result};

/// What the auth template reads.
pub struct AuthView {
    pub kinds: Vec<AuthKindView>,
    /// `Algorithm::…` variants per key type, as Rust array items.
    pub rsa: String,
    pub ec: Vec<String>,
    pub ed25519: String,
    /// The body of a `/poll` refused for want of a valid token.
    pub poll_body: String,
    pub poll_status: u16,
    pub poll_content_type: String,
}

pub struct AuthKindView {
    pub kind: String,
    pub variant: String,
    /// `None` for `all` (only a token that covers every id may send the kind); otherwise one
    /// boolean Rust expression per id the kind names, over `r` (the decoded request) and `prefix`.
    pub covers: Option<Vec<String>>,
}

impl AuthView {
    pub fn new(spec: &Spec) -> Result<AuthView> {
        let mut kinds = Vec::new();
        for (name, k) in &spec.kinds {
            let covers = match &k.auth {
                KindAuth::All(_) => None,
                KindAuth::Ids(ids) if ids.is_empty() => {
                    bail!("spec/kinds.yaml: at `{name}.auth`: list the ids the kind names, or say `all`")
                }
                KindAuth::Ids(ids) => Some(
                    ids.iter()
                        .map(|id| match id {
                            AuthId::Path(path) => expr(spec, &k.fields, "r", path)
                                .map_err(|e| anyhow::anyhow!("spec/kinds.yaml: at `{name}.auth`: `{path}`: {e}")),
                            AuthId::Template { template } => template_expr(&k.fields, template)
                                .map_err(|e| anyhow::anyhow!("spec/kinds.yaml: at `{name}.auth`: template `{template}`: {e}")),
                        })
                        .collect::<Result<Vec<_>>>()?,
                ),
            };
            kinds.push(AuthKindView { kind: name.clone(), variant: camel(name), covers });
        }
        let algs = |names: &[String]| names.iter().map(|a| format!("Algorithm::{a}")).collect::<Vec<_>>();
        let ec = algs(&spec.auth.keys.ec);
        Ok(AuthView {
            kinds,
            rsa: algs(&spec.auth.keys.rsa).join(", "),
            ec,
            ed25519: algs(&spec.auth.keys.ed25519).join(", "),
            poll_body: spec.auth.poll_unauthorized.body.clone(),
            poll_status: spec.auth.poll_unauthorized.status,
            poll_content_type: spec.auth.poll_unauthorized.content_type.clone(),
        })
    }
}

/// The Rust expression that holds when every id at `path` (below `base`) starts with `prefix`.
fn expr(spec: &Spec, fields: &[Field], base: &str, path: &str) -> Result<String> {
    let (head, rest) = path.split_once('.').unwrap_or((path, ""));
    let (name, each) = match head.strip_suffix("[]") {
        Some(name) => (name, true),
        None => (head, false),
    };
    let Some(field) = fields.iter().find(|f| f.name == name) else {
        bail!("the kind has no field `{name}`")
    };
    let at = format!("{base}.{}", snake(name));
    let list = matches!(field.ty, FieldType::Actions | FieldType::TaskRefs);
    if each != list {
        bail!("`{name}` is {}a list: write `{name}{}`", if list { "" } else { "not " }, if list { "[]" } else { "" });
    }
    let of = field.of.as_ref().map(|o| o.kinds()).unwrap_or_default();
    match field.ty {
        FieldType::String if rest.is_empty() => Ok(format!("under(prefix, &{at})")),
        FieldType::Action | FieldType::Actions => {
            let Some(inner) = rest.strip_prefix("data.") else {
                bail!("a nested action's ids are under `{name}.data.`")
            };
            let item = if each { "a" } else { at.as_str() };
            let check = if of.len() == 1 {
                expr(spec, &spec.kind(of[0]).fields, &format!("{item}.data"), inner)?
            } else if !inner.contains('.') {
                // Its kind decides how `data` decodes, after authorization: read the raw id, and
                // refuse (fail closed) when it is absent or not a string.
                format!(
                    "{item}.data.get(\"{inner}\").and_then(serde_json::Value::as_str).is_some_and(|id| under(prefix, id))"
                )
            } else {
                bail!("only a plain field of an action of several kinds can be named")
            };
            Ok(if each { format!("{at}.iter().all(|a| {check})") } else { check })
        }
        FieldType::TaskRefs if rest == "id" => Ok(format!("{at}.iter().all(|t| under(prefix, &t.id))")),
        _ => bail!("`{name}` is a {:?} field; an id path must end at a string", field.ty),
    }
}

/// `{ template: f }`: every id the template in string field `f` expands to (with the kind's own
/// `id`) must start with the prefix.
fn template_expr(fields: &[Field], template: &str) -> Result<String> {
    let is_string = |n: &str| fields.iter().any(|f| f.name == n && f.ty == FieldType::String);
    if !is_string(template) {
        bail!("the kind has no string field `{template}`");
    }
    if !is_string("id") {
        bail!("a template expands with the kind's `id`, and the kind has none");
    }
    Ok(format!("template_under(prefix, &r.{}, &r.id)", snake(template)))
}
