//! Keys and JWTs made with the `openssl` command, independently of the servers' JWT crate: for
//! the auth suite (tests/tests/auth.rs), and an admin key with which every other suite and
//! `resonate-gen conform` and `bench` run `*-jwt` targets.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;
use std::time::{SystemTime, UNIX_EPOCH};

/// Runs `openssl args..` with `input` on stdin; returns its stdout.
pub fn openssl(args: &[&str], input: &[u8]) -> Result<Vec<u8>, String> {
    let mut child = Command::new("openssl")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run the openssl command: {e}"))?;
    child.stdin.take().expect("stdin is piped").write_all(input).map_err(|e| e.to_string())?;
    let out = child.wait_with_output().map_err(|e| e.to_string())?;
    if !out.status.success() {
        return Err(format!("openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr)));
    }
    Ok(out.stdout)
}

/// Base64url without padding, as JWS encodes every part.
pub fn b64url(bytes: &[u8]) -> String {
    const ABC: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk.iter().enumerate().fold(0u32, |n, (i, b)| n | u32::from(*b) << (16 - 8 * i));
        for i in 0..=chunk.len() {
            out.push(char::from(ABC[(n >> (18 - 6 * i) & 63) as usize]));
        }
    }
    out
}

/// The Ed25519 signature of `input` with the private key in `pem` (openssl signs EdDSA input
/// from a file only; a scratch file beside the key holds it meanwhile).
pub fn eddsa_signature(pem: &Path, input: &str) -> Result<Vec<u8>, String> {
    static N: AtomicUsize = AtomicUsize::new(0);
    let file = pem.with_extension(format!("input-{}", N.fetch_add(1, Ordering::Relaxed)));
    std::fs::write(&file, input).map_err(|e| format!("{}: {e}", file.display()))?;
    let path = |p: &Path| p.to_str().map(str::to_owned).ok_or_else(|| format!("{}: not UTF-8", p.display()));
    let signature = openssl(&["pkeyutl", "-sign", "-inkey", &path(pem)?, "-rawin", "-in", &path(&file)?], b"");
    let _ = std::fs::remove_file(file);
    signature
}

/// An Ed25519 key pair and an admin token signed with it (valid for a day): what a suite needs
/// to hold a target with `auth: jwt` to everything else a server promises. The server gets
/// `--auth-publickey public_key`; every request carries `token` in `head.auth`.
pub struct AdminKey {
    pub public_key: PathBuf,
    pub token: String,
}

impl AdminKey {
    /// Makes the key pair in `dir` with the openssl command and signs the token.
    pub fn new(dir: &Path) -> Result<AdminKey, String> {
        let (private, public_key) = (dir.join("ed25519.pem"), dir.join("ed25519.pub.pem"));
        let path = |p: &Path| p.to_str().map(str::to_owned).ok_or_else(|| format!("{}: not UTF-8", p.display()));
        openssl(&["genpkey", "-algorithm", "ED25519", "-out", &path(&private)?], b"")?;
        openssl(&["pkey", "-in", &path(&private)?, "-pubout", "-out", &path(&public_key)?], b"")?;
        let exp = SystemTime::now().duration_since(UNIX_EPOCH).map_err(|e| e.to_string())?.as_secs() + 86_400;
        let claims = format!(r#"{{"exp":{exp},"role":"admin"}}"#);
        let signed = format!("{}.{}", b64url(br#"{"alg":"EdDSA","typ":"JWT"}"#), b64url(claims.as_bytes()));
        let signature = eddsa_signature(&private, &signed)?;
        Ok(AdminKey { public_key, token: format!("{signed}.{}", b64url(&signature)) })
    }

    /// This process's key, made at first use in a scratch directory of its own.
    pub fn shared() -> &'static AdminKey {
        SHARED.get_or_init(|| {
            let dir = std::env::temp_dir().join(format!("resonate-tests-admin-key-{}", std::process::id()));
            std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
            AdminKey::new(&dir).unwrap_or_else(|e| panic!("cannot make an admin key: {e}"))
        })
    }
}

static SHARED: OnceLock<AdminKey> = OnceLock::new();

/// The token [`crate::call`] puts in every request's `head.auth`: `RESONATE_TOKEN` if set (how
/// `resonate-gen conform` hands it to resonate-conform), else this process's [`AdminKey`] once a
/// server was started with it. Servers without auth ignore the field.
pub fn admin_token() -> Option<String> {
    std::env::var("RESONATE_TOKEN").ok().or_else(|| SHARED.get().map(|k| k.token.clone()))
}
