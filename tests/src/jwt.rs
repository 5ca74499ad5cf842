//! Keys and JWTs made with the `openssl` command, independently of the servers' JWT crate: for
//! the auth suite (tests/tests/auth.rs) and for benchmarking `*-jwt` targets (resonate-gen bench).

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};

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
