//! Inbound auth (spec/auth.yaml): every `POST /` carries a JWT in `head.auth`, every `/poll`
//! stream one in `Authorization: Bearer …`. A token is verified with the configured public key
//! (its type decides the algorithms a token may use) and must carry `exp`. `POST /` requests are
//! then scoped: a token with `role: admin` may send anything; any other token may only name ids
//! that start with its `prefix` claim (`""` covers every id; no prefix covers none).

{% if let Some(a) = c.auth %}
use crate::config::Config;
use crate::protocol::{Refusal, Request};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use spki::{ObjectIdentifier, SubjectPublicKeyInfoRef};
use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::{SystemTime, UNIX_EPOCH};

/// How many verified tokens are remembered. SDKs send the same token with every request, and
/// verifying an RSA signature takes about 0.4 ms, several times the rest of a request.
const VERIFIED_TOKENS: usize = 1024;

/// The key and the rules a token is checked against.
pub struct Auth {
    key: DecodingKey,
    validation: Validation,
    /// Tokens that passed verification, with their grant and `exp`: a token is trusted again
    /// without a signature check until its `exp` (the key, `iss` and `aud` never change).
    verified: Mutex<HashMap<String, (Grant, u64)>>,
}

/// The claims that scope a token; `exp`, `iss` and `aud` are checked by [`Validation`].
/// Both are read as any JSON value so that a claim of an unexpected type narrows the token
/// (to no ids) instead of failing it.
#[derive(Deserialize)]
struct Claims {
    /// Validated (required, not past) before the claims are read.
    exp: u64,
    #[serde(default)]
    role: Option<serde_json::Value>,
    #[serde(default)]
    prefix: Option<serde_json::Value>,
}

/// What a verified token may do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Grant {
    /// `role: admin` (any case): every request.
    Admin,
    /// Requests whose every id starts with this prefix.
    Prefix(String),
    /// No `prefix` string: no request that names or lists ids.
    Nothing,
}

impl Auth {
    /// Reads the public key file `--auth-publickey` names and detects its type.
    pub fn load(config: &Config) -> Result<Auth, String> {
        let path = config.auth_publickey.as_str();
        if path.is_empty() {
            return Err("--auth-publickey is required: this server verifies a JWT on every request (see --help)".into());
        }
        if path == "none" {
            return Err("--auth-publickey none (unsigned tokens) is not supported: give a public key file".into());
        }
        let pem = std::fs::read(path).map_err(|e| format!("cannot read the public key {path}: {e}"))?;
        let (key, algorithms) = detect(&pem).ok_or_else(|| {
            format!("{path} is not a PEM public key of a supported type (RSA, EC P-256/P-384, Ed25519)")
        })?;
        let mut validation = Validation::new(algorithms[0]);
        validation.algorithms = algorithms;
        // `exp` is required and judged without leeway; so is `nbf` when a token has one.
        validation.leeway = 0;
        validation.validate_nbf = true;
        let mut required = vec!["exp"];
        if !config.auth_iss.is_empty() {
            validation.set_issuer(&[&config.auth_iss]);
            required.push("iss");
        }
        // An `aud` claim is only judged when an audience is configured.
        validation.validate_aud = !config.auth_aud.is_empty();
        if validation.validate_aud {
            validation.set_audience(&[&config.auth_aud]);
            required.push("aud");
        }
        validation.set_required_spec_claims(&required);
        Ok(Auth { key, validation, verified: Mutex::default() })
    }

    /// Verifies the raw token of `head.auth` (no `Bearer ` in front of it).
    pub fn authenticate(&self, token: Option<&str>) -> Result<Grant, Refusal> {
        let token = token.ok_or(Refusal::Unauthorized)?;
        let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        let mut verified = self.verified.lock().unwrap_or_else(PoisonError::into_inner);
        match verified.get(token) {
            // Valid up to and including its `exp` second, as the signature check judges it.
            Some((grant, exp)) if *exp >= now => return Ok(grant.clone()),
            Some(_) => {
                verified.remove(token);
            }
            None => {}
        }
        let claims = jsonwebtoken::decode::<Claims>(token, &self.key, &self.validation)
            .map_err(|_| Refusal::Unauthorized)?
            .claims;
        let admin = matches!(&claims.role, Some(serde_json::Value::String(r)) if r.eq_ignore_ascii_case("admin"));
        let grant = match claims.prefix {
            _ if admin => Grant::Admin,
            Some(serde_json::Value::String(prefix)) => Grant::Prefix(prefix),
            _ => Grant::Nothing,
        };
        if verified.len() >= VERIFIED_TOKENS {
            verified.clear();
        }
        verified.insert(token.to_string(), (grant.clone(), claims.exp));
        Ok(grant)
    }

    /// Verifies the `Authorization: Bearer <jwt>` header of a `/poll` stream.
    pub fn authenticate_bearer(&self, header: Option<&hyper::header::HeaderValue>) -> Result<Grant, Refusal> {
        let value = header.and_then(|h| h.to_str().ok()).ok_or(Refusal::Unauthorized)?;
        let (scheme, token) = value.split_once(' ').ok_or(Refusal::Unauthorized)?;
        if !scheme.eq_ignore_ascii_case("bearer") {
            return Err(Refusal::Unauthorized);
        }
        self.authenticate(Some(token.trim()))
    }
}

/// Key algorithms of a `PUBLIC KEY` (SubjectPublicKeyInfo), by object identifier.
const RSA_ENCRYPTION: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1");
const EC_PUBLIC_KEY: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");
const P256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.3.1.7");
const P384: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.132.0.34");
const ED25519: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.101.112");

/// The key in a PEM file (`PUBLIC KEY`, or PKCS#1 `RSA PUBLIC KEY`) and the algorithms a token
/// verified by it may name.
fn detect(pem: &[u8]) -> Option<(DecodingKey, Vec<Algorithm>)> {
    let rsa = vec![{{ a.rsa }}];
    let (label, der) = spki::der::pem::decode_vec(pem).ok()?;
    if label == "RSA PUBLIC KEY" {
        return Some((DecodingKey::from_rsa_der(&der), rsa));
    }
    if label != "PUBLIC KEY" {
        return None;
    }
    let info = SubjectPublicKeyInfoRef::try_from(der.as_slice()).ok()?;
    // RSA: a PKCS#1 RSAPublicKey; EC: an uncompressed point; Ed25519: the 32 key bytes.
    let key = info.subject_public_key.as_bytes()?;
    let (algorithm, curve) = info.algorithm.oids().ok()?;
    if algorithm == RSA_ENCRYPTION {
        Some((DecodingKey::from_rsa_der(key), rsa))
    } else if algorithm == EC_PUBLIC_KEY && curve == Some(P256) {
        Some((DecodingKey::from_ec_der(key), vec![{{ a.ec[0] }}]))
    } else if algorithm == EC_PUBLIC_KEY && curve == Some(P384) {
        Some((DecodingKey::from_ec_der(key), vec![{{ a.ec[1] }}]))
    } else if algorithm == ED25519 && curve.is_none() {
        Some((DecodingKey::from_ed_der(key), vec![{{ a.ed25519 }}]))
    } else {
        None
    }
}

impl Grant {
    /// Lets a decoded request through if the token covers every id it names (spec/kinds.yaml
    /// `auth`). A request that did not decode touches nothing and keeps its own refusal, except
    /// that a kind this server does not know is forbidden to all but an admin (fail closed).
    pub fn authorize(&self, decoded: Result<Request, Refusal>) -> Result<Request, Refusal> {
        let prefix = match self {
            Grant::Admin => return decoded,
            Grant::Prefix(prefix) => Some(prefix.as_str()),
            Grant::Nothing => None,
        };
        match decoded {
            Err(Refusal::UnknownOperation(_)) => Err(Refusal::Forbidden),
            Err(refusal) => Err(refusal),
            Ok(request) if prefix.is_some_and(|p| covers(p, &request)) => Ok(request),
            Ok(_) => Err(Refusal::Forbidden),
        }
    }
}

{% if c.dashboard %}
impl Grant {
    /// Whether the token may read promise `id`, as `promise.get {id}` would (the dashboard's
    /// `POST /ui/waiters`, spec/choices.yaml dashboard-waiters).
    pub fn covers_id(&self, id: &str) -> bool {
        match self {
            Grant::Admin => true,
            Grant::Prefix(prefix) => under(prefix, id),
            Grant::Nothing => false,
        }
    }
}

{% endif %}
/// Whether every id `request` names starts with `prefix`. Kinds that read or write across ids
/// (searches, `debug.*`) need a prefix that covers every id: `""`.
fn covers(prefix: &str, request: &Request) -> bool {
    match request {
{% for k in a.kinds %}
{% match k.covers %}
{% when Some with (checks) %}
        Request::{{ k.variant }}(r) => {% for check in checks %}{% if !loop.first %} && {% endif %}{{ check }}{% endfor %},
{% when None %}
        Request::{{ k.variant }}(_) => prefix.is_empty(),
{% endmatch %}
{% endfor %}
    }
}

fn under(prefix: &str, id: &str) -> bool {
    id.starts_with(prefix)
}

/// Whether every promise id a schedule's template can expand to starts with `prefix`:
/// `{{ "{{" }}.id}}` becomes the schedule id, then each `{{ "{{" }}.timestamp}}` an occurrence, so
/// the text before the first `{{ "{{" }}.timestamp}}` of the first expansion is certain.
fn template_under(prefix: &str, template: &str, schedule_id: &str) -> bool {
    let expanded = template.replace(concat!("{", "{.id}}"), schedule_id);
    let certain = match expanded.find(concat!("{", "{.timestamp}}")) {
        Some(at) => &expanded[..at],
        None => &expanded[..],
    };
    certain.starts_with(prefix)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_are_judged_by_their_certain_text() {
        let (id, ts) = (concat!("{", "{.id}}"), concat!("{", "{.timestamp}}"));
        assert!(template_under("a", &format!("{id}.{ts}"), "a1"));
        assert!(!template_under("a", &format!("{id}.{ts}"), "b1"));
        assert!(template_under("a", &format!("a.{ts}"), "b1"));
        assert!(!template_under("ab", &format!("a{ts}"), "ab1"));
        assert!(template_under("", ts, "x"));
        // An id that itself looks like a placeholder is expanded too; only text before it counts.
        assert!(!template_under("a", id, ts));
    }
}
{% endif %}
