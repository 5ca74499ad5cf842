//! HTTPS push (manifest `push: https`, spec/choices.yaml `https-push`): messages for https://
//! addresses go out over TLS, trusting the platform's roots plus `--transports-http-push-ca-file`.
//! A throw-away CA and a certificate for 127.0.0.1 and localhost are made with the openssl command
//! in a temporary directory; the endpoint is Python's http.server behind its ssl module, which
//! prints the body of every POST it answered 200. Runs on sqlite-http-ops (RESONATE_HTTPS_TARGET
//! names another target with push: https).

use resonate_tests::{ok, queued};
use resonate_tests::client::Client;
use resonate_tests::server::{build, Server};
use serde_json::{json, Value};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

const FAR: i64 = 4_000_000_000_000;
/// Longest a test waits for the outcome it expects (backoff doubles from 1 s).
const WAIT: Duration = Duration::from_secs(20);
const CA_FLAG: &str = "--transports-http-push-ca-file";

fn https_target() -> String {
    std::env::var("RESONATE_HTTPS_TARGET").unwrap_or_else(|_| "sqlite-http-ops".into())
}

/// A temporary directory with `ca.pem` (a throw-away CA), `server.pem`/`server.key` (signed by
/// it, for IP 127.0.0.1 and DNS localhost) and `other-ca.pem` (a CA that signed nothing here).
struct Certs {
    dir: PathBuf,
}

impl Certs {
    fn make(name: &str) -> Certs {
        let dir = std::env::temp_dir().join(format!("resonate-https-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
        let ca = |key: &str, cert: &str, cn: &str| {
            let subject = format!("/CN={cn}");
            let mut args = vec!["req", "-x509"];
            args.extend(ec);
            args.extend(["-keyout", key, "-out", cert, "-days", "2", "-subj", &subject]);
            args.extend(["-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign"]);
            openssl(&dir, &args);
        };
        ca("ca.key", "ca.pem", "resonate test CA");
        ca("other-ca.key", "other-ca.pem", "resonate unrelated CA");
        let mut args = vec!["req"];
        args.extend(ec);
        args.extend(["-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=localhost"]);
        openssl(&dir, &args);
        std::fs::write(
            dir.join("server.ext"),
            "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
        )
        .unwrap();
        openssl(
            &dir,
            &["x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial"]
                .into_iter()
                .chain(["-out", "server.pem", "-days", "2", "-extfile", "server.ext"])
                .collect::<Vec<_>>(),
        );
        Certs { dir }
    }

    fn path(&self, file: &str) -> String {
        self.dir.join(file).display().to_string()
    }
}

impl Drop for Certs {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl").args(args).current_dir(dir).output().expect("the openssl command runs");
    assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// The endpoint: HTTPS on a free loopback port with the certificate `certs` made.
const ENDPOINT: &str = r#"
import http.server, ssl, sys
class Hook(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()
        print(body.decode(), flush=True)
    def log_message(self, *args):
        pass
server = http.server.HTTPServer(("127.0.0.1", 0), Hook)
tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
tls.load_cert_chain(sys.argv[1], sys.argv[2])
server.socket = tls.wrap_socket(server.socket, server_side=True)
print(server.server_address[1], flush=True)
server.serve_forever()
"#;

/// The running endpoint: its port, and the POST bodies it answered, one JSON value each.
struct Endpoint {
    child: Child,
    port: u16,
    pushes: mpsc::Receiver<Value>,
}

impl Endpoint {
    fn start(certs: &Certs) -> Endpoint {
        let mut child = Command::new("python3")
            .args(["-c", ENDPOINT, &certs.path("server.pem"), &certs.path("server.key")])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .expect("python3 runs");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let port = lines.next().expect("the endpoint says its port").unwrap().trim().parse().unwrap();
        let (tx, pushes) = mpsc::channel();
        thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                let body = serde_json::from_str(&line).unwrap_or_else(|e| panic!("a push is JSON ({e}): {line}"));
                if tx.send(body).is_err() {
                    return;
                }
            }
        });
        Endpoint { child, port, pushes }
    }
}

impl Drop for Endpoint {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A delivering `--debug` server whose background rules wait an hour between passes.
fn start(args: &[&str]) -> (Server, Client) {
    let mut all = vec!["--debug", "--timeouts-poll-interval", "3600000"];
    all.extend_from_slice(args);
    let server = Server::start(&build(&https_target()), &all);
    let client = server.client();
    (server, client)
}


/// A promise `id` targeted at `address`: its task's execute message is queued for it.
fn execute_to(client: &mut Client, id: &str, address: &str) {
    let tags = json!({ "resonate:target": address });
    ok(client, "promise.create", json!({ "id": id, "timeoutAt": FAR, "param": {}, "tags": tags }));
}


/// Waits until `done` holds, checking every 50 ms; panics with `what` after [`WAIT`].
fn eventually(what: &str, done: impl FnMut() -> bool) {
    resonate_tests::eventually(what, WAIT, done)
}

#[test]
fn a_trusted_endpoint_gets_its_messages_over_tls() {
    let certs = Certs::make("trusted");
    let hook = Endpoint::start(&certs);
    let (_server, mut client) = start(&[CA_FLAG, &certs.path("ca.pem")]);
    // An IP address in the certificate, then a DNS name.
    let by_ip = format!("https://127.0.0.1:{}/hook", hook.port);
    execute_to(&mut client, "t", &by_ip);
    let execute = hook.pushes.recv_timeout(WAIT).expect("the execute arrives over TLS");
    assert_eq!(execute["kind"], "execute", "{execute}");
    assert_eq!(execute["data"]["task"]["id"], "t", "{execute}");
    eventually("the delivered execute leaves the outbox", || queued(&mut client, &by_ip).is_empty());

    let by_name = format!("https://localhost:{}/hook", hook.port);
    let tags = json!({ "resonate:external": "true" });
    ok(&mut client, "promise.create", json!({ "id": "u", "timeoutAt": FAR, "param": {}, "tags": tags }));
    ok(&mut client, "promise.register_listener", json!({ "awaited": "u", "address": by_name }));
    ok(&mut client, "promise.settle", json!({ "id": "u", "state": "resolved", "value": {} }));
    let unblock = hook.pushes.recv_timeout(WAIT).expect("the unblock arrives over TLS");
    assert_eq!(unblock["kind"], "unblock", "{unblock}");
    assert_eq!(unblock["data"]["promise"]["id"], "u", "{unblock}");
    eventually("the delivered unblock leaves the outbox", || queued(&mut client, &by_name).is_empty());
}

#[test]
fn an_untrusted_endpoint_gets_nothing_and_the_message_stays_queued() {
    let certs = Certs::make("untrusted");
    let hook = Endpoint::start(&certs);
    // Only the platform's roots: the throw-away CA is not among them.
    let (server, mut client) = start(&[]);
    let address = format!("https://127.0.0.1:{}/hook", hook.port);
    execute_to(&mut client, "t", &address);
    // The first attempt, and its retry after 1 s.
    let failure = format!("push to {address} failed (attempt 2): TLS: certificate not trusted");
    eventually("two attempts fail on the certificate", || server.log().contains(&failure));
    let log = server.log();
    let line = log.lines().find(|l| l.contains(&failure)).unwrap();
    assert!(line.contains(CA_FLAG), "the log says which flag trusts a private CA: {line}");
    let kept = queued(&mut client, &address);
    assert_eq!(kept.len(), 1, "the execute stays queued: {kept:?}");
    assert_eq!(kept[0]["kind"], "execute");
    assert!(hook.pushes.try_recv().is_err(), "nothing reached the endpoint");
}

#[test]
fn a_message_kept_for_an_untrusted_endpoint_goes_out_once_its_ca_is_trusted() {
    let certs = Certs::make("later");
    let hook = Endpoint::start(&certs);
    // The CA file holds an unrelated CA at first.
    let ca_file = certs.path("trust.pem");
    std::fs::copy(certs.path("other-ca.pem"), &ca_file).unwrap();
    let (mut server, mut client) = start(&[CA_FLAG, &ca_file]);
    let address = format!("https://localhost:{}/hook", hook.port);
    execute_to(&mut client, "t", &address);
    eventually("an attempt fails on the certificate", || server.log().contains("certificate not trusted"));
    assert_eq!(queued(&mut client, &address).len(), 1, "the execute stays queued");

    // The right CA is added to the file; the file is read at start-up.
    let both = std::fs::read_to_string(certs.path("other-ca.pem")).unwrap() + &std::fs::read_to_string(certs.path("ca.pem")).unwrap();
    std::fs::write(&ca_file, both).unwrap();
    server.restart();
    let execute = hook.pushes.recv_timeout(WAIT).expect("the kept execute is delivered");
    assert_eq!(execute["kind"], "execute", "{execute}");
    assert_eq!(execute["data"]["task"]["id"], "t", "{execute}");
    let mut client = server.client();
    eventually("the delivered execute leaves the outbox", || queued(&mut client, &address).is_empty());
}

#[test]
fn a_ca_file_that_cannot_be_used_stops_the_server_naming_flag_and_path() {
    let certs = Certs::make("bad");
    std::fs::write(certs.dir.join("empty.pem"), "no certificate here\n").unwrap();
    let bin = build(&https_target());
    for file in [certs.path("missing.pem"), certs.path("empty.pem"), certs.path("server.key")] {
        let out = Command::new(&bin)
            .args([CA_FLAG, &file, "--server-port", "0", "--server-bind", "127.0.0.1"])
            .current_dir(&certs.dir)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{file}: {stderr}");
        assert!(stderr.contains(CA_FLAG) && stderr.contains(&file), "{file}: {stderr}");
    }
}
