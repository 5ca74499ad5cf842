//! Inbound auth of the `*-jwt` targets (spec/auth.yaml): one test per rule, every request kind
//! held to its token's prefix (nested actions and heartbeat lists included), `/poll`, the three
//! key types, and a randomized check that a prefix token never reads or writes outside its prefix.
//!
//! Runs against `RESONATE_TARGET` (by default `sqlite-http-jwt`). Keys are made and tokens
//! signed with the `openssl` command, independently of the server's JWT crate.

use resonate_tests::client::Client;
use resonate_tests::jwt::{self, b64url};
use resonate_tests::server::{build, Server};
use serde_json::{json, Value};
use serde_yaml::Value as Yaml;
use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const VERSION: &str = "2026-04-01";
/// The request clock (with `--debug`).
const T: i64 = 1_000;
/// A deadline no test reaches.
const FAR: i64 = 4_000_000_000_000;
/// A poll address no stream listens on.
const POLL: &str = "poll://any@nobody";

/// The jwt target under test: `RESONATE_TARGET`, by default `sqlite-http-jwt`.
fn target() -> String {
    let t = std::env::var("RESONATE_TARGET").ok().filter(|t| !t.is_empty());
    let t = t.unwrap_or_else(|| "sqlite-http-jwt".to_string());
    assert!(t.ends_with("-jwt"), "the auth suite runs on *-jwt targets, not {t}");
    t
}

// --- Keys and tokens, with the openssl command ----------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Key {
    Rsa,
    /// A second RSA key the server does not know.
    OtherRsa,
    Ec256,
    Ec384,
    Ed25519,
}

impl Key {
    fn file(self) -> &'static str {
        match self {
            Key::Rsa => "rsa",
            Key::OtherRsa => "rsa-other",
            Key::Ec256 => "ec256",
            Key::Ec384 => "ec384",
            Key::Ed25519 => "ed25519",
        }
    }

    /// The `-pkeyopt`s of `openssl genpkey`.
    fn genpkey(self) -> &'static [&'static str] {
        match self {
            Key::Rsa | Key::OtherRsa => &["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"],
            Key::Ec256 => &["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"],
            Key::Ec384 => &["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-384"],
            Key::Ed25519 => &["-algorithm", "ED25519"],
        }
    }
}

/// A directory with every key pair (`<name>.pem` private, `<name>.pub.pem` public), made once.
fn keys() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("resonate-auth-keys-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("key directory");
        for key in [Key::Rsa, Key::OtherRsa, Key::Ec256, Key::Ec384, Key::Ed25519] {
            let private = dir.join(format!("{}.pem", key.file()));
            let mut args = vec!["genpkey"];
            args.extend(key.genpkey());
            args.extend(["-out", private.to_str().unwrap()]);
            openssl(&args, None);
            let public = dir.join(format!("{}.pub.pem", key.file()));
            openssl(&["pkey", "-in", private.to_str().unwrap(), "-pubout", "-out", public.to_str().unwrap()], None);
        }
        dir
    })
}

fn public_key(key: Key) -> String {
    keys().join(format!("{}.pub.pem", key.file())).to_string_lossy().into_owned()
}

/// Runs openssl with `input` on stdin; returns stdout.
fn openssl(args: &[&str], input: Option<&[u8]>) -> Vec<u8> {
    jwt::openssl(args, input.unwrap_or_default()).unwrap_or_else(|e| panic!("the auth tests need openssl: {e}"))
}

/// An ECDSA signature in DER (`SEQUENCE { INTEGER r, INTEGER s }`) as JWS wants it: r || s.
fn der_to_raw(der: &[u8], size: usize) -> Vec<u8> {
    let mut at = 2; // SEQUENCE tag and (short) length
    let mut raw = Vec::new();
    for _ in 0..2 {
        assert_eq!(der[at], 0x02, "DER INTEGER expected");
        let len = der[at + 1] as usize;
        let int = &der[at + 2..at + 2 + len];
        let int = &int[int.len().saturating_sub(size)..];
        raw.extend(std::iter::repeat_n(0, size - int.len()));
        raw.extend(int);
        at += 2 + len;
    }
    raw
}

/// A token with header `alg`, these claims, signed with `key` (the signature `alg` asks for).
fn sign(key: Key, alg: &str, claims: &Value) -> String {
    let input = format!("{}.{}", b64url(json!({ "alg": alg, "typ": "JWT" }).to_string().as_bytes()), b64url(claims.to_string().as_bytes()));
    let pem = keys().join(format!("{}.pem", key.file()));
    let pem = pem.to_str().unwrap();
    let signature = match alg {
        "RS256" => openssl(&["dgst", "-sha256", "-sign", pem], Some(input.as_bytes())),
        "PS256" => openssl(
            &["dgst", "-sha256", "-sign", pem, "-sigopt", "rsa_padding_mode:pss", "-sigopt", "rsa_pss_saltlen:digest"],
            Some(input.as_bytes()),
        ),
        "ES256" => der_to_raw(&openssl(&["dgst", "-sha256", "-sign", pem], Some(input.as_bytes())), 32),
        "ES384" => der_to_raw(&openssl(&["dgst", "-sha384", "-sign", pem], Some(input.as_bytes())), 48),
        "EdDSA" => jwt::eddsa_signature(Path::new(pem), &input).unwrap_or_else(|e| panic!("{e}")),
        "HS256" => {
            // Algorithm confusion: the *public* key used as an HMAC secret.
            let secret = std::fs::read(public_key(key)).unwrap();
            let hex: String = secret.iter().map(|b| format!("{b:02x}")).collect();
            openssl(&["dgst", "-sha256", "-mac", "HMAC", "-macopt", &format!("hexkey:{hex}"), "-binary"], Some(input.as_bytes()))
        }
        "none" => Vec::new(),
        _ => panic!("no signer for {alg}"),
    };
    format!("{input}.{}", b64url(&signature))
}

/// Seconds since the epoch (JWT time).
fn now_s() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() as i64
}

/// An RS256 token with `exp` an hour ahead and these extra claims.
fn token(extra: Value) -> String {
    let mut claims = json!({ "exp": now_s() + 3600 });
    claims.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
    sign(Key::Rsa, "RS256", &claims)
}

fn admin() -> String {
    token(json!({ "role": "admin" }))
}

// --- A server and requests with a token -----------------------------------------------------

struct Rig {
    server: Server,
    client: Client,
}

impl Rig {
    /// A `--debug` server verifying with `key`, paused with an admin `debug.start`.
    fn start(key: Key, args: &[&str]) -> Rig {
        let public = public_key(key);
        let mut all = vec!["--debug", "--auth-publickey", public.as_str()];
        all.extend(args);
        let rig = Rig::plain(&all);
        let mut rig = rig;
        if key == Key::Rsa {
            assert_eq!(rig.send(Some(&admin()), "debug.start", json!({})).0, 200);
        }
        rig
    }

    /// A server with exactly these flags.
    fn plain(args: &[&str]) -> Rig {
        let server = Server::start(&build(&target()), args);
        Rig { client: server.client(), server }
    }

    /// One `POST /` with `head.auth = token` (absent when `None`) at clock `T`; checks the
    /// envelope echoes kind and corrId and returns the status and `data`.
    fn send(&mut self, token: Option<&str>, kind: &str, data: Value) -> (u16, Value) {
        let mut head = json!({ "corrId": "c7", "version": VERSION, "resonate:debug_time": T });
        if let Some(t) = token {
            head["auth"] = json!(t);
        }
        self.raw(json!({ "kind": kind, "head": head, "data": data }), &[])
    }

    fn raw(&mut self, envelope: Value, headers: &[(&str, &str)]) -> (u16, Value) {
        let kind = envelope["kind"].clone();
        let r = self.client.request("POST", "/", headers, envelope.to_string().as_bytes()).expect("POST /");
        let body = r.json();
        assert_eq!(body["kind"], kind, "{body}");
        assert_eq!(body["head"]["corrId"], "c7", "{body}");
        assert_eq!(body["head"]["status"], r.status, "{body}");
        (r.status, body["data"].clone())
    }

    fn ok(&mut self, token: &str, kind: &str, data: Value) -> Value {
        let (status, answer) = self.send(Some(token), kind, data.clone());
        assert_eq!(status, 200, "{kind} {data}: {answer}");
        answer
    }

    fn addr(&self) -> SocketAddr {
        self.server.addr
    }
}

fn unauthorized(answer: (u16, Value)) {
    assert_eq!(answer, (401, json!("Unauthorized")));
}

fn forbidden(answer: (u16, Value)) {
    assert_eq!(answer, (403, json!("Forbidden")));
}

fn targeted() -> Value {
    json!({ "resonate:target": POLL })
}

fn create(id: &str) -> Value {
    json!({ "id": id, "timeoutAt": FAR, "param": {}, "tags": targeted() })
}

// --- Authentication -------------------------------------------------------------------------

#[test]
fn a_request_without_a_token_is_unauthorized() {
    let mut rig = Rig::start(Key::Rsa, &[]);
    unauthorized(rig.send(None, "promise.get", json!({ "id": "a" })));
    // Before the kind is looked at: unknown and debug kinds too.
    unauthorized(rig.send(None, "no.such", json!({})));
    unauthorized(rig.send(None, "debug.snap", json!({})));
    // The HTTP Authorization header is not read on POST /.
    let bearer = format!("Bearer {}", admin());
    let envelope = json!({ "kind": "promise.get", "head": { "corrId": "c7", "version": VERSION }, "data": { "id": "a" } });
    unauthorized(rig.raw(envelope, &[("Authorization", &bearer)]));
    // Not a JWT at all.
    unauthorized(rig.send(Some("not-a-token"), "promise.get", json!({ "id": "a" })));
    unauthorized(rig.send(Some(""), "promise.get", json!({ "id": "a" })));
}

#[test]
fn a_bad_signature_is_unauthorized() {
    let mut rig = Rig::start(Key::Rsa, &[]);
    let claims = json!({ "exp": now_s() + 3600, "role": "admin" });
    unauthorized(rig.send(Some(&sign(Key::OtherRsa, "RS256", &claims)), "promise.get", json!({ "id": "a" })));
    // A valid token's claims swapped for others under the same signature.
    let good = token(json!({ "prefix": "a" }));
    let parts: Vec<&str> = good.split('.').collect();
    let forged = format!("{}.{}.{}", parts[0], b64url(claims.to_string().as_bytes()), parts[2]);
    unauthorized(rig.send(Some(&forged), "promise.get", json!({ "id": "b" })));
    // `alg: none`, and HS256 keyed with the public key (algorithm confusion).
    unauthorized(rig.send(Some(&sign(Key::Rsa, "none", &claims)), "promise.get", json!({ "id": "a" })));
    unauthorized(rig.send(Some(&sign(Key::Rsa, "HS256", &claims)), "promise.get", json!({ "id": "a" })));
    // The genuine token still works.
    assert_eq!(rig.send(Some(&good), "promise.get", json!({ "id": "a" })).0, 404);
}

#[test]
fn an_expired_token_is_unauthorized() {
    let mut rig = Rig::start(Key::Rsa, &[]);
    let expired = sign(Key::Rsa, "RS256", &json!({ "exp": now_s() - 5, "role": "admin" }));
    unauthorized(rig.send(Some(&expired), "promise.get", json!({ "id": "a" })));
    // A token the server has verified (and remembers) stops working at its exp all the same.
    let brief = sign(Key::Rsa, "RS256", &json!({ "exp": now_s() + 2, "role": "admin" }));
    assert_eq!(rig.send(Some(&brief), "promise.get", json!({ "id": "a" })).0, 404);
    std::thread::sleep(Duration::from_millis(3_100));
    unauthorized(rig.send(Some(&brief), "promise.get", json!({ "id": "a" })));
    // Not valid yet.
    let early = sign(Key::Rsa, "RS256", &json!({ "exp": now_s() + 3600, "nbf": now_s() + 600, "role": "admin" }));
    unauthorized(rig.send(Some(&early), "promise.get", json!({ "id": "a" })));
}

#[test]
fn a_token_without_exp_is_unauthorized() {
    let mut rig = Rig::start(Key::Rsa, &[]);
    let forever = sign(Key::Rsa, "RS256", &json!({ "role": "admin" }));
    unauthorized(rig.send(Some(&forever), "promise.get", json!({ "id": "a" })));
    let text_exp = sign(Key::Rsa, "RS256", &json!({ "exp": "tomorrow", "role": "admin" }));
    unauthorized(rig.send(Some(&text_exp), "promise.get", json!({ "id": "a" })));
}

#[test]
fn issuer_and_audience_are_checked_when_configured() {
    let public = public_key(Key::Rsa);
    let mut rig = Rig::plain(&["--auth-publickey", &public, "--auth-iss", "issuer", "--auth-aud", "resonate"]);
    let get = |rig: &mut Rig, claims: Value| rig.send(Some(&token(claims)), "promise.get", json!({ "id": "a" }));
    unauthorized(get(&mut rig, json!({ "prefix": "", "aud": "resonate" })));
    unauthorized(get(&mut rig, json!({ "prefix": "", "iss": "other", "aud": "resonate" })));
    unauthorized(get(&mut rig, json!({ "prefix": "", "iss": "issuer" })));
    unauthorized(get(&mut rig, json!({ "prefix": "", "iss": "issuer", "aud": "other" })));
    assert_eq!(get(&mut rig, json!({ "prefix": "", "iss": "issuer", "aud": "resonate" })).0, 404);
    assert_eq!(get(&mut rig, json!({ "prefix": "", "iss": "issuer", "aud": ["x", "resonate"] })).0, 404);
}

#[test]
fn a_bearer_prefixed_head_auth_is_unauthorized() {
    let mut rig = Rig::start(Key::Rsa, &[]);
    let bearer = format!("Bearer {}", admin());
    unauthorized(rig.send(Some(&bearer), "promise.get", json!({ "id": "a" })));
    assert_eq!(rig.send(Some(&admin()), "promise.get", json!({ "id": "a" })).0, 404);
}

#[test]
fn the_server_refuses_to_start_without_a_usable_key() {
    let bin = build(&target());
    for args in [vec![], vec!["--auth-publickey", "none"], vec!["--auth-publickey", "/nonexistent.pem"]] {
        let out = Command::new(&bin).args(&args).arg("--server-port").arg("0").output().unwrap();
        assert!(!out.status.success(), "{args:?} started");
        assert!(String::from_utf8_lossy(&out.stderr).contains("key"), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    }
}

// --- Key types ------------------------------------------------------------------------------

/// Each key type verifies its own algorithm and refuses a token signed for another.
#[test]
fn rsa_ec_and_ed25519_keys_verify_their_algorithms() {
    let claims = json!({ "exp": now_s() + 3600, "role": "admin" });
    for (key, good, wrong) in [
        (Key::Rsa, vec!["RS256", "PS256"], (Key::Ed25519, "EdDSA")),
        (Key::Ec256, vec!["ES256"], (Key::Rsa, "RS256")),
        (Key::Ec384, vec!["ES384"], (Key::Ec256, "ES256")),
        (Key::Ed25519, vec!["EdDSA"], (Key::Ec256, "ES256")),
    ] {
        let mut rig = Rig::start(key, &[]);
        for alg in good {
            let answer = rig.send(Some(&sign(key, alg, &claims)), "promise.get", json!({ "id": "a" }));
            assert_eq!(answer.0, 404, "{key:?} {alg}: {answer:?}");
        }
        unauthorized(rig.send(Some(&sign(wrong.0, wrong.1, &claims)), "promise.get", json!({ "id": "a" })));
        unauthorized(rig.send(Some(&sign(key, "HS256", &claims)), "promise.get", json!({ "id": "a" })));
    }
}

/// A PKCS#1 `RSA PUBLIC KEY` file works as well as a `PUBLIC KEY` one.
#[test]
fn a_pkcs1_rsa_public_key_is_accepted() {
    let pkcs1 = keys().join("rsa.pkcs1.pem");
    let private = keys().join("rsa.pem");
    openssl(&["rsa", "-in", private.to_str().unwrap(), "-RSAPublicKey_out", "-out", pkcs1.to_str().unwrap()], None);
    assert!(std::fs::read_to_string(&pkcs1).unwrap().contains("BEGIN RSA PUBLIC KEY"));
    let mut rig = Rig::plain(&["--auth-publickey", pkcs1.to_str().unwrap()]);
    assert_eq!(rig.send(Some(&admin()), "promise.get", json!({ "id": "a" })).0, 404);
    unauthorized(rig.send(Some(&sign(Key::OtherRsa, "RS256", &json!({ "exp": now_s() + 60, "role": "admin" }))), "promise.get", json!({ "id": "a" })));
}

// --- Authorization --------------------------------------------------------------------------

#[test]
fn an_admin_may_send_everything() {
    let mut rig = Rig::start(Key::Rsa, &[]);
    let admin = token(json!({ "role": "AdMiN", "prefix": "zzz" }));
    rig.ok(&admin, "promise.create", create("b1"));
    rig.ok(&admin, "promise.search", json!({}));
    rig.ok(&admin, "task.search", json!({}));
    rig.ok(&admin, "schedule.search", json!({}));
    assert_eq!(rig.ok(&admin, "debug.snap", json!({}))["promises"][0]["id"], "b1");
    assert_eq!(rig.send(Some(&admin), "no.such", json!({})).0, 400, "an admin learns the kind is unknown");
}

/// Per kind: a request whose ids all start with `a` (None: the kind spans every id), and
/// requests that name one id outside `a`, each somewhere else in the request.
fn scoped_cases() -> Vec<(&'static str, Option<Value>, Vec<Value>)> {
    let fence = |task: &str, id: &str, kind: &str| {
        let data = if kind == "promise.create" {
            json!({ "id": id, "timeoutAt": FAR })
        } else {
            json!({ "id": id, "state": "resolved", "value": {} })
        };
        json!({ "id": task, "version": 1, "action": { "kind": kind, "head": {}, "data": data } })
    };
    let suspend = |task: &str, awaited: &[&str], awaiter: &str| {
        let actions: Vec<Value> = awaited
            .iter()
            .map(|a| json!({ "kind": "promise.register_callback", "head": {}, "data": { "awaited": a, "awaiter": awaiter } }))
            .collect();
        json!({ "id": task, "version": 1, "actions": actions })
    };
    let task_create = |id: &str| {
        json!({ "pid": "p", "ttl": 60000, "action": { "kind": "promise.create", "head": {}, "data": create(id) } })
    };
    let fulfill = |task: &str, id: &str| {
        json!({ "id": task, "version": 1, "action": { "kind": "promise.settle", "head": {}, "data": { "id": id, "state": "resolved", "value": {} } } })
    };
    let schedule = |id: &str, template: &str| {
        json!({ "id": id, "cron": "* * * * *", "promiseId": template, "promiseTimeout": 60000 })
    };
    vec![
        ("promise.get", Some(json!({ "id": "a1" })), vec![json!({ "id": "b1" })]),
        ("promise.create", Some(create("a-new")), vec![create("b-new")]),
        ("promise.settle", Some(json!({ "id": "a2", "state": "resolved", "value": {} })), vec![json!({ "id": "b2", "state": "resolved", "value": {} })]),
        (
            "promise.register_callback",
            Some(json!({ "awaited": "a2", "awaiter": "a1" })),
            vec![json!({ "awaited": "b1", "awaiter": "a1" }), json!({ "awaited": "a2", "awaiter": "b1" })],
        ),
        (
            "promise.register_listener",
            Some(json!({ "awaited": "a2", "address": POLL })),
            vec![json!({ "awaited": "b1", "address": POLL })],
        ),
        ("promise.search", None, vec![json!({}), json!({ "tags": { "x": "a" } })]),
        ("task.get", Some(json!({ "id": "a1" })), vec![json!({ "id": "b1" })]),
        ("task.create", Some(task_create("a-root")), vec![task_create("b-root")]),
        ("task.acquire", Some(json!({ "id": "a3", "version": 0, "pid": "p", "ttl": 60000 })), vec![json!({ "id": "b3", "version": 0, "pid": "p", "ttl": 60000 })]),
        (
            "task.fence",
            Some(fence("a1", "a1.child", "promise.create")),
            vec![
                fence("a1", "b-child", "promise.create"),
                fence("a1", "b2", "promise.settle"),
                fence("b1", "a1.child", "promise.create"),
                // An action whose data names no id at all is refused too (fail closed).
                json!({ "id": "a1", "version": 1, "action": { "kind": "promise.create", "head": {}, "data": {} } }),
            ],
        ),
        (
            "task.heartbeat",
            Some(json!({ "pid": "p", "tasks": [{ "id": "a1", "version": 1 }, { "id": "a3", "version": 1 }] })),
            vec![
                json!({ "pid": "p", "tasks": [{ "id": "a1", "version": 1 }, { "id": "b1", "version": 1 }] }),
                json!({ "pid": "p", "tasks": [{ "id": "b1", "version": 1 }] }),
            ],
        ),
        (
            "task.suspend",
            Some(suspend("a1", &["a2"], "a1")),
            vec![suspend("a1", &["a2", "b2"], "a1"), suspend("b1", &["a2"], "b1"), suspend("a1", &["a2"], "b1")],
        ),
        ("task.fulfill", Some(fulfill("a1", "a1")), vec![fulfill("b1", "b1"), fulfill("a1", "b1")]),
        ("task.release", Some(json!({ "id": "a1", "version": 1 })), vec![json!({ "id": "b1", "version": 1 })]),
        ("task.halt", Some(json!({ "id": "a3" })), vec![json!({ "id": "b3" })]),
        ("task.continue", Some(json!({ "id": "a3" })), vec![json!({ "id": "b3" })]),
        ("task.search", None, vec![json!({})]),
        ("schedule.get", Some(json!({ "id": "a-s" })), vec![json!({ "id": "b-s" })]),
        (
            "schedule.create",
            Some(schedule("a-s2", concat!("{", "{.id}}.{", "{.timestamp}}"))),
            vec![
                schedule("b-s2", concat!("a.{", "{.timestamp}}")),
                schedule("a-s3", concat!("b.{", "{.timestamp}}")),
                schedule("a-s4", concat!("{", "{.timestamp}}.a")),
            ],
        ),
        ("schedule.delete", Some(json!({ "id": "a-s" })), vec![json!({ "id": "b-s" })]),
        ("schedule.search", None, vec![json!({})]),
        ("debug.start", None, vec![json!({})]),
        ("debug.stop", None, vec![json!({})]),
        ("debug.reset", None, vec![json!({})]),
        ("debug.tick", None, vec![json!({ "time": T })]),
        ("debug.snap", None, vec![json!({})]),
    ]
}

/// The kinds of spec/kinds.yaml.
fn spec_kinds() -> BTreeSet<String> {
    let path = resonate_tests::server::repo_root().join("spec/kinds.yaml");
    let yaml: Yaml = serde_yaml::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    yaml.as_mapping().unwrap().keys().map(|k| k.as_str().unwrap().to_string()).collect()
}

/// Ids under `a` and `b`: targeted promises whose tasks a1/b1 are held at version 1 and a3/b3
/// pending, pending a2/b2 (external), schedules a-s/b-s.
fn seed(rig: &mut Rig, admin: &str) {
    for p in ["a", "b"] {
        for n in 1..=3 {
            rig.ok(admin, "promise.create", create(&format!("{p}{n}")));
        }
        rig.ok(admin, "task.acquire", json!({ "id": format!("{p}1"), "version": 0, "pid": "p", "ttl": 600000 }));
        let template = format!("{p}-s.{}", concat!("{", "{.timestamp}}"));
        rig.ok(admin, "schedule.create", json!({ "id": format!("{p}-s"), "cron": "0 0 1 1 *", "promiseId": template, "promiseTimeout": 60000 }));
    }
}

#[test]
fn a_prefix_token_may_name_only_ids_under_its_prefix_in_every_kind() {
    let cases = scoped_cases();
    let covered: BTreeSet<String> = cases.iter().map(|(k, _, _)| k.to_string()).collect();
    assert_eq!(covered, spec_kinds(), "the table must cover every kind of spec/kinds.yaml");
    let admin = admin();
    let scoped = token(json!({ "prefix": "a" }));
    for (kind, allowed, refused) in cases {
        // A fresh store per kind, so one kind's effects do not decide another's answer.
        let mut rig = Rig::start(Key::Rsa, &[]);
        seed(&mut rig, &admin);
        let before = rig.ok(&admin, "debug.snap", json!({}));
        for data in refused {
            let answer = rig.send(Some(&scoped), kind, data.clone());
            assert_eq!(answer, (403, json!("Forbidden")), "{kind} {data}");
        }
        assert_eq!(rig.ok(&admin, "debug.snap", json!({})), before, "{kind}: a refused request changed the store");
        if let Some(data) = allowed {
            let (status, answer) = rig.send(Some(&scoped), kind, data.clone());
            assert!(status != 401 && status != 403, "{kind} {data}: {status} {answer}");
            assert!(status < 500, "{kind} {data}: {status} {answer}");
        }
    }
}

#[test]
fn searches_and_debug_need_a_prefix_that_covers_everything() {
    let mut rig = Rig::start(Key::Rsa, &[]);
    let everything = token(json!({ "prefix": "" }));
    for kind in ["promise.search", "task.search", "schedule.search"] {
        forbidden(rig.send(Some(&token(json!({ "prefix": "a" }))), kind, json!({})));
        rig.ok(&everything, kind, json!({}));
    }
    rig.ok(&everything, "debug.snap", json!({}));
}

#[test]
fn an_empty_prefix_allows_every_id() {
    let mut rig = Rig::start(Key::Rsa, &[]);
    let everything = token(json!({ "prefix": "" }));
    rig.ok(&everything, "promise.create", create("b1"));
    rig.ok(&everything, "promise.create", create("zz"));
    rig.ok(&everything, "task.acquire", json!({ "id": "zz", "version": 0, "pid": "p", "ttl": 60000 }));
    assert_eq!(rig.ok(&everything, "promise.search", json!({}))["promises"].as_array().unwrap().len(), 2);
}

#[test]
fn a_token_without_a_prefix_string_is_forbidden() {
    let mut rig = Rig::start(Key::Rsa, &[]);
    for claims in [json!({}), json!({ "prefix": null }), json!({ "prefix": 7 }), json!({ "role": "user" }), json!({ "role": ["admin"] })] {
        forbidden(rig.send(Some(&token(claims.clone())), "promise.get", json!({ "id": "a" })));
        forbidden(rig.send(Some(&token(claims)), "promise.search", json!({})));
    }
}

#[test]
fn unknown_kinds_fail_closed() {
    let mut rig = Rig::start(Key::Rsa, &[]);
    forbidden(rig.send(Some(&token(json!({ "prefix": "a" }))), "promise.nuke", json!({ "id": "a" })));
    forbidden(rig.send(Some(&token(json!({ "prefix": "" }))), "promise.nuke", json!({})));
}

#[test]
fn debug_kinds_stay_disabled_without_debug() {
    let mut rig = Rig::plain(&["--auth-publickey", &public_key(Key::Rsa)]);
    for kind in ["debug.start", "debug.stop", "debug.reset", "debug.tick", "debug.snap"] {
        let data = if kind == "debug.tick" { json!({ "time": 1 }) } else { json!({}) };
        let disabled = "Debug operations are disabled: start the server with --debug (or RESONATE_DEBUG=true) to use debug.* requests";
        assert_eq!(rig.send(Some(&admin()), kind, data.clone()), (403, json!(disabled)));
        unauthorized(rig.send(None, kind, data));
    }
}

// --- /poll ----------------------------------------------------------------------------------

/// Opens `GET /poll/g/w` with this Authorization header; returns the status, the head and
/// (unless the stream opened) the body.
fn poll(addr: SocketAddr, authorization: Option<&str>) -> (u16, String, String) {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut request = format!("GET /poll/g/w HTTP/1.1\r\nHost: {addr}\r\nAccept: text/event-stream\r\n");
    if let Some(a) = authorization {
        request.push_str(&format!("Authorization: {a}\r\n"));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).unwrap();
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        assert_eq!(stream.read(&mut byte).unwrap(), 1, "connection closed in the head");
        buf.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&buf).to_lowercase();
    let status: u16 = head[9..12].parse().unwrap();
    let mut body = String::new();
    if status != 200 {
        let len: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .map(|v| v.trim().parse().unwrap())
            .unwrap_or(0);
        let mut bytes = vec![0; len];
        stream.read_exact(&mut bytes).unwrap();
        body = String::from_utf8_lossy(&bytes).into_owned();
    }
    (status, head, body)
}

#[test]
fn poll_streams_need_a_valid_bearer_token() {
    let rig = Rig::start(Key::Rsa, &[]);
    for authorization in [None, Some("Bearer".to_string()), Some("Bearer nope".to_string()), Some(admin()), Some(format!("Basic {}", admin()))] {
        let (status, head, body) = poll(rig.addr(), authorization.as_deref());
        assert_eq!((status, body.as_str()), (401, "Unauthorized"), "{authorization:?}");
        assert!(head.contains("content-type: text/plain"), "{head}");
    }
    let expired = sign(Key::Rsa, "RS256", &json!({ "exp": now_s() - 5, "role": "admin" }));
    assert_eq!(poll(rig.addr(), Some(&format!("Bearer {expired}"))).0, 401);
    // Authentication only: any valid token opens any stream, whatever its prefix.
    for good in [admin(), token(json!({ "prefix": "zzz" })), token(json!({}))] {
        let (status, head, _) = poll(rig.addr(), Some(&format!("Bearer {good}")));
        assert_eq!(status, 200);
        assert!(head.contains("text/event-stream"), "{head}");
    }
}

// --- Randomized isolation -------------------------------------------------------------------

/// The rows of a `debug.snap` that name an id outside `a` (in any `id`, `awaited`, `awaiter`).
fn outside_a(snap: &Value) -> BTreeMap<String, BTreeSet<String>> {
    fn ids(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::Object(m) => {
                for (k, v) in m {
                    match (k.as_str(), v) {
                        ("id" | "awaited" | "awaiter", Value::String(s)) => out.push(s.clone()),
                        _ => ids(v, out),
                    }
                }
            }
            Value::Array(a) => a.iter().for_each(|v| ids(v, out)),
            _ => {}
        }
    }
    let mut tables = BTreeMap::new();
    for (table, rows) in snap.as_object().unwrap() {
        let rows: BTreeSet<String> = rows
            .as_array()
            .unwrap()
            .iter()
            .filter(|row| {
                let mut found = Vec::new();
                ids(row, &mut found);
                found.is_empty() || found.iter().any(|id| !id.starts_with('a'))
            })
            .map(Value::to_string)
            .collect();
        tables.insert(table.clone(), rows);
    }
    tables
}

/// Every string in a JSON value.
fn strings(v: &Value, out: &mut BTreeSet<String>) {
    match v {
        Value::String(s) => {
            out.insert(s.clone());
        }
        Value::Array(a) => a.iter().for_each(|v| strings(v, out)),
        Value::Object(m) => m.values().for_each(|v| strings(v, out)),
        _ => {}
    }
}

#[test]
fn a_prefix_token_never_reads_or_writes_outside_its_prefix() {
    let seed_value: u64 = std::env::var("RESONATE_AUTH_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(0x5eed);
    let mut rng = seed_value;
    let mut next = move |n: usize| {
        rng = rng.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        ((rng >> 33) as usize) % n
    };
    let mut rig = Rig::start(Key::Rsa, &[]);
    let admin = admin();
    seed(&mut rig, &admin);
    let foreign: BTreeSet<String> = ["b1", "b2", "b3", "b-s", "ba", "xa", "A1"].iter().map(|s| s.to_string()).collect();
    let before = outside_a(&rig.ok(&admin, "debug.snap", json!({})));
    let scoped = token(json!({ "prefix": "a" }));
    let pool = ["a1", "a2", "a3", "a4", "a-s", "ab", "b1", "b2", "b3", "b-s", "ba", "xa", "A1"];
    let kinds: Vec<(&str, Option<Value>, Vec<Value>)> = scoped_cases();
    for step in 0..400 {
        // A case of a random kind with every id replaced by a random one from the pool.
        let (kind, allowed, refused) = &kinds[next(kinds.len())];
        let mut data = match (allowed, next(2)) {
            (Some(a), 0) => a.clone(),
            _ => refused[next(refused.len())].clone(),
        };
        let mut named = Vec::new();
        fn rewrite(v: &mut Value, key: Option<&str>, pick: &mut dyn FnMut() -> String, named: &mut Vec<String>) {
            match v {
                Value::Object(m) => {
                    for (k, v) in m.iter_mut() {
                        rewrite(v, Some(k), pick, named);
                    }
                }
                Value::Array(a) => a.iter_mut().for_each(|v| rewrite(v, key, pick, named)),
                Value::String(s) if matches!(key, Some("id" | "awaited" | "awaiter")) => {
                    *s = pick();
                    named.push(s.clone());
                }
                _ => {}
            }
        }
        rewrite(&mut data, None, &mut || pool[next(pool.len())].to_string(), &mut named);
        // A schedule's promise ids: `{{.id}}` becomes the schedule id; what precedes the first
        // `{{.timestamp}}` is certain and must be under `a`.
        let template_outside = data["promiseId"].as_str().is_some_and(|t| {
            let expanded = t.replace(concat!("{", "{.id}}"), data["id"].as_str().unwrap());
            let certain = expanded.split(concat!("{", "{.timestamp}}")).next().unwrap();
            !certain.starts_with('a')
        });
        // A fenced action without an id cannot be judged, so it is refused.
        let fence_without_id = *kind == "task.fence" && data["action"]["data"].get("id").is_none();
        let (status, answer) = rig.send(Some(&scoped), kind, data.clone());
        let spans_all = allowed.is_none();
        let names_outside = named.iter().any(|id| !id.starts_with('a')) || template_outside || fence_without_id;
        if spans_all || names_outside {
            assert_eq!(status, 403, "step {step}: {kind} {data} answered {status} {answer}");
        } else {
            assert!(status != 403 && status != 401 && status < 500, "step {step}: {kind} {data}: {status} {answer}");
        }
        let mut seen = BTreeSet::new();
        strings(&answer, &mut seen);
        let leaked: Vec<&String> = seen.intersection(&foreign).collect();
        assert!(leaked.is_empty(), "step {step}: {kind} {data} read {leaked:?}: {answer}");
    }
    let after = outside_a(&rig.ok(&admin, "debug.snap", json!({})));
    assert_eq!(after, before, "a prefix-a token changed rows outside a");
}
