//! One protocol request, over whichever transport the server speaks: `http://` (the envelope as the
//! body of `POST /`) or `nats://` (the envelope published to `<api prefix>.default` with a
//! `Resonate-Reply-To` header naming an inbox this client subscribed to first, as the SDKs' NATS
//! connectors do). Both are small blocking clients over `std::net`, so the binary carries no async
//! runtime and no HTTP or NATS library.

use crate::kinds::PROTOCOL_VERSION;
use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

/// Why a request did not succeed. Each has its own exit code (main.rs).
#[derive(Debug)]
pub enum Failure {
    /// The server answered 4xx: the request was refused with this message, exactly as sent.
    Refused { status: u16, message: String },
    /// No server answered: connection refused, unknown host, no answer in time, no NATS subscriber.
    Unreachable(String),
    /// The server answered 5xx or something that is not a protocol answer.
    Server(String),
    /// The input was not valid before anything was sent (a failed check, an unreadable file).
    Input(String),
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Refused { message, .. } => f.write_str(message),
            Failure::Unreachable(why) => write!(f, "server unreachable: {why}"),
            Failure::Server(why) => write!(f, "server error: {why}"),
            Failure::Input(why) => f.write_str(why),
        }
    }
}

/// A successful answer (2xx, or 300 for a task.suspend that must resume at once).
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    pub data: Value,
}

/// Where requests go.
enum Transport {
    Http { host: String, port: u16, path: String },
    Nats { host: String, port: u16, user: Option<(String, String)>, subject: String, conn: Option<Nats> },
}

/// A client for one server.
pub struct Client {
    transport: Transport,
    token: Option<String>,
    timeout: Duration,
    requests: u64,
}

impl Client {
    /// A client for `server` (`http://host:port[/path]` or `nats://[user:pass@]host:port`); over
    /// NATS requests go to `<nats_prefix>.default`. `token` is sent as `head.auth`.
    pub fn new(server: &str, token: Option<String>, nats_prefix: &str, timeout: Duration) -> Result<Client, Failure> {
        let bad = |why: &str| Failure::Input(format!("--server {server:?}: {why}"));
        let (scheme, rest) = server.split_once("://").ok_or_else(|| bad("write http://host:port or nats://host:port"))?;
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        let (user, hostport) = match authority.rsplit_once('@') {
            Some((user, hostport)) => (Some(user), hostport),
            None => (None, authority),
        };
        let default_port = match scheme {
            "http" => 80,
            "nats" => 4222,
            "https" => return Err(bad("https is not supported; put the server behind no TLS or use a local proxy")),
            _ => return Err(bad("the scheme must be http:// or nats://")),
        };
        let (host, port) = match hostport.rsplit_once(':') {
            Some((h, p)) if !h.ends_with(']') || h.starts_with('[') => (h, p.parse().map_err(|_| bad("the port is not a number"))?),
            _ => (hostport, default_port),
        };
        if host.is_empty() {
            return Err(bad("no host"));
        }
        let host = host.trim_start_matches('[').trim_end_matches(']').to_string();
        let transport = if scheme == "http" {
            Transport::Http { host, port, path: path.to_string() }
        } else {
            let user = user.map(|u| {
                let (name, pass) = u.split_once(':').unwrap_or((u, ""));
                (name.to_string(), pass.to_string())
            });
            Transport::Nats { host, port, user, subject: format!("{nats_prefix}.default"), conn: None }
        };
        Ok(Client { transport, token, timeout, requests: 0 })
    }

    /// Whether requests go over NATS (workers there are reached at `nats://` addresses).
    pub fn is_nats(&self) -> bool {
        matches!(self.transport, Transport::Nats { .. })
    }

    /// Sends one request and returns its answer; a 4xx is `Failure::Refused` with the server's message.
    pub fn call(&mut self, kind: &str, data: Value) -> Result<Answer, Failure> {
        self.requests += 1;
        let mut head = json!({ "corrId": format!("ctl-{}-{}", std::process::id(), self.requests), "version": PROTOCOL_VERSION });
        if let Some(token) = &self.token {
            head["auth"] = json!(token);
        }
        let envelope = json!({ "kind": kind, "head": head, "data": data });
        let envelope = envelope.to_string();
        let deadline = Instant::now() + self.timeout;
        let body = match &mut self.transport {
            Transport::Http { host, port, path } => http_post(host, *port, path, envelope.as_bytes(), deadline)?,
            Transport::Nats { host, port, user, subject, conn } => {
                if conn.is_none() {
                    *conn = Some(Nats::connect(host, *port, user.as_ref(), deadline)?);
                }
                let nats = conn.as_mut().expect("connected above");
                let answer = nats.request(subject, envelope.as_bytes(), deadline);
                if answer.is_err() {
                    *conn = None;
                }
                (0, answer?)
            }
        };
        answer(body)
    }
}

/// Reads a response body (and, over HTTP, its status) as a protocol answer.
fn answer((http_status, body): (u16, Vec<u8>)) -> Result<Answer, Failure> {
    let text = String::from_utf8_lossy(&body).into_owned();
    let envelope: Option<Value> = serde_json::from_slice(&body).ok();
    let status = envelope
        .as_ref()
        .and_then(|e| e.pointer("/head/status"))
        .and_then(Value::as_u64)
        .map(|s| s as u16)
        .unwrap_or(http_status);
    let data = envelope.as_ref().and_then(|e| e.get("data")).cloned();
    match (status, data) {
        (200..=399, Some(data)) => Ok(Answer { status, data }),
        (400..=499, Some(Value::String(message))) => Err(Failure::Refused { status, message }),
        // A refusal from before the protocol layer, such as 413 for a body over the limit.
        (400..=499, _) => Err(Failure::Refused { status, message: text.trim_end().to_string() }),
        (500.., Some(Value::String(message))) => Err(Failure::Server(format!("{status} {message}"))),
        _ => Err(Failure::Server(format!("not a protocol answer (status {status}): {}", text.chars().take(200).collect::<String>()))),
    }
}

fn connect(host: &str, port: u16, deadline: Instant) -> Result<TcpStream, Failure> {
    let addrs: Vec<_> = (host, port)
        .to_socket_addrs()
        .map_err(|e| Failure::Unreachable(format!("cannot resolve {host}: {e}")))?
        .collect();
    let mut last = format!("{host}:{port} has no address");
    for addr in addrs {
        let left = deadline.saturating_duration_since(Instant::now()).max(Duration::from_millis(1));
        match TcpStream::connect_timeout(&addr, left) {
            Ok(stream) => {
                stream.set_nodelay(true).ok();
                return Ok(stream);
            }
            Err(e) => last = format!("cannot connect to {host}:{port}: {e}"),
        }
    }
    Err(Failure::Unreachable(last))
}

/// Applies what is left of the deadline to the next read or write.
fn arm(stream: &TcpStream, deadline: Instant) -> Result<(), Failure> {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        return Err(Failure::Unreachable("no answer in time (see --request-timeout)".into()));
    }
    stream.set_read_timeout(Some(left)).and_then(|()| stream.set_write_timeout(Some(left))).map_err(io)
}

fn io(e: std::io::Error) -> Failure {
    match e.kind() {
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut => {
            Failure::Unreachable("no answer in time (see --request-timeout)".into())
        }
        _ => Failure::Unreachable(format!("connection failed: {e}")),
    }
}

/// `POST <path>` with the envelope as a JSON body on a fresh connection; returns status and body.
fn http_post(host: &str, port: u16, path: &str, body: &[u8], deadline: Instant) -> Result<(u16, Vec<u8>), Failure> {
    let stream = connect(host, port, deadline)?;
    arm(&stream, deadline)?;
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let mut writer = &stream;
    writer.write_all(head.as_bytes()).and_then(|()| writer.write_all(body)).map_err(io)?;
    let mut reader = BufReader::new(&stream);
    let mut line = String::new();
    reader.read_line(&mut line).map_err(io)?;
    let status = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| Failure::Server(format!("not an HTTP response: {:?}", line.trim_end())))?;
    let (mut length, mut chunked) = (None, false);
    loop {
        line.clear();
        reader.read_line(&mut line).map_err(io)?;
        let header = line.trim_end();
        if header.is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':') {
            let value = value.trim();
            if name.eq_ignore_ascii_case("content-length") {
                length = value.parse::<usize>().ok();
            } else if name.eq_ignore_ascii_case("transfer-encoding") && value.eq_ignore_ascii_case("chunked") {
                chunked = true;
            }
        }
    }
    let mut body = Vec::new();
    if chunked {
        loop {
            line.clear();
            reader.read_line(&mut line).map_err(io)?;
            let size = usize::from_str_radix(line.trim().split(';').next().unwrap_or(""), 16)
                .map_err(|_| Failure::Server("a bad chunk in the response".into()))?;
            if size == 0 {
                break;
            }
            let start = body.len();
            body.resize(start + size, 0);
            reader.read_exact(&mut body[start..]).map_err(io)?;
            line.clear();
            reader.read_line(&mut line).map_err(io)?;
        }
    } else if let Some(n) = length {
        body.resize(n, 0);
        reader.read_exact(&mut body).map_err(io)?;
    } else {
        reader.read_to_end(&mut body).map_err(io)?;
    }
    Ok((status, body))
}

/// A NATS connection with one inbox subscription (`<inbox>.*`, sid 1); each request waits on
/// `<inbox>.<n>`.
struct Nats {
    reader: BufReader<TcpStream>,
    inbox: String,
    max_payload: usize,
    next: u64,
}

impl Nats {
    /// Connects, reads INFO, sends CONNECT (headers and no-responders on) and SUB, and waits for
    /// the PONG that confirms both.
    fn connect(host: &str, port: u16, user: Option<&(String, String)>, deadline: Instant) -> Result<Nats, Failure> {
        let stream = connect(host, port, deadline)?;
        arm(&stream, deadline)?;
        let mut reader = BufReader::new(stream);
        let mut line = String::new();
        reader.read_line(&mut line).map_err(io)?;
        let info: Value = line
            .strip_prefix("INFO ")
            .and_then(|i| serde_json::from_str(i).ok())
            .ok_or_else(|| Failure::Unreachable(format!("{host}:{port} is not a NATS server")))?;
        let max_payload = info.get("max_payload").and_then(Value::as_u64).unwrap_or(1 << 20) as usize;
        let mut options = json!({
            "verbose": false, "pedantic": false, "headers": true, "no_responders": true,
            "name": "resonate-ctl", "lang": "rust", "version": env!("CARGO_PKG_VERSION"), "protocol": 1,
        });
        if let Some((name, pass)) = user {
            options["user"] = json!(name);
            options["pass"] = json!(pass);
        }
        let nanos = clock_nanos();
        let inbox = format!("_INBOX.resonate-ctl.{}.{nanos}", std::process::id());
        let hello = format!("CONNECT {options}\r\nSUB {inbox}.* 1\r\nPING\r\n");
        reader.get_mut().write_all(hello.as_bytes()).map_err(io)?;
        loop {
            line.clear();
            if reader.read_line(&mut line).map_err(io)? == 0 {
                return Err(Failure::Unreachable("the NATS server closed the connection".into()));
            }
            match line.trim_end() {
                "PONG" => break,
                err if err.starts_with("-ERR") => return Err(Failure::Unreachable(format!("NATS refused the connection: {err}"))),
                _ => {}
            }
        }
        Ok(Nats { reader, inbox, max_payload, next: 0 })
    }

    /// Publishes `body` to `subject` with `Resonate-Reply-To: <inbox>.<n>` (also the NATS reply
    /// subject, so NATS itself says at once when no server subscribes) and waits for the answer.
    fn request(&mut self, subject: &str, body: &[u8], deadline: Instant) -> Result<Vec<u8>, Failure> {
        self.next += 1;
        let reply = format!("{}.{}", self.inbox, self.next);
        let headers = format!("NATS/1.0\r\nResonate-Reply-To: {reply}\r\n\r\n");
        if headers.len() + body.len() > self.max_payload {
            return Err(Failure::Input(format!(
                "the request is {} bytes; the NATS server takes at most {} (max_payload)",
                headers.len() + body.len(),
                self.max_payload
            )));
        }
        arm(self.reader.get_ref(), deadline)?;
        let mut frame = format!("HPUB {subject} {reply} {} {}\r\n{headers}", headers.len(), headers.len() + body.len()).into_bytes();
        frame.extend_from_slice(body);
        frame.extend_from_slice(b"\r\n");
        self.reader.get_mut().write_all(&frame).map_err(io)?;
        let mut line = String::new();
        loop {
            arm(self.reader.get_ref(), deadline)?;
            line.clear();
            if self.reader.read_line(&mut line).map_err(io)? == 0 {
                return Err(Failure::Unreachable("the NATS server closed the connection".into()));
            }
            let words: Vec<&str> = line.split_whitespace().collect();
            let (to, header_len, total) = match words.as_slice() {
                ["PING"] => {
                    self.reader.get_mut().write_all(b"PONG\r\n").map_err(io)?;
                    continue;
                }
                ["MSG", to, _sid, total] | ["MSG", to, _sid, _, total] => (to.to_string(), 0, total.parse::<usize>().ok()),
                ["HMSG", to, _sid, h, total] | ["HMSG", to, _sid, _, h, total] => {
                    (to.to_string(), h.parse::<usize>().unwrap_or(0), total.parse::<usize>().ok())
                }
                [err, ..] if err.starts_with("-ERR") => return Err(Failure::Unreachable(format!("NATS: {}", line.trim_end()))),
                _ => continue,
            };
            let total = total.ok_or_else(|| Failure::Server(format!("a bad NATS frame: {}", line.trim_end())))?;
            let mut payload = vec![0; total + 2];
            self.reader.read_exact(&mut payload).map_err(io)?;
            payload.truncate(total);
            if to != reply {
                continue; // an answer to an earlier request that timed out
            }
            let (head, body) = payload.split_at(header_len.min(total));
            let status = String::from_utf8_lossy(head);
            if status.starts_with("NATS/1.0 503") {
                return Err(Failure::Unreachable(format!("no Resonate server subscribes to {subject} on this NATS server")));
            }
            return Ok(body.to_vec());
        }
    }
}

/// Nanoseconds of the wall clock, to make an inbox name no other process uses.
fn clock_nanos() -> u128 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn servers_are_http_or_nats_urls() {
        let c = Client::new("http://127.0.0.1:8001", None, "resonate.requests", Duration::from_secs(1)).unwrap();
        assert!(!c.is_nats());
        let c = Client::new("nats://u:p@localhost", None, "x.requests", Duration::from_secs(1)).unwrap();
        assert!(c.is_nats());
        match c.transport {
            Transport::Nats { port, subject, user, .. } => {
                assert_eq!((port, subject.as_str()), (4222, "x.requests.default"));
                assert_eq!(user, Some(("u".into(), "p".into())));
            }
            _ => unreachable!(),
        }
        for bad in ["127.0.0.1:8001", "https://x", "ftp://x", "http://:80", "http://h:port"] {
            assert!(matches!(Client::new(bad, None, "p", Duration::from_secs(1)), Err(Failure::Input(_))), "{bad}");
        }
    }

    #[test]
    fn answers_split_into_success_refusal_and_server_error() {
        let ok = answer((200, br#"{"kind":"promise.get","head":{"status":200},"data":{"promise":{}}}"#.to_vec())).unwrap();
        assert_eq!(ok.data, json!({"promise": {}}));
        let refused = answer((404, br#"{"kind":"promise.get","head":{"status":404},"data":"Promise not found"}"#.to_vec()));
        assert!(matches!(refused, Err(Failure::Refused { status: 404, message }) if message == "Promise not found"));
        let too_large = answer((413, b"Failed to buffer the request body: length limit exceeded".to_vec()));
        assert!(matches!(too_large, Err(Failure::Refused { status: 413, .. })));
        assert!(matches!(answer((502, b"bad gateway".to_vec())), Err(Failure::Server(_))));
    }

    #[test]
    fn a_closed_port_is_unreachable() {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let mut c = Client::new(&format!("http://127.0.0.1:{port}"), None, "p", Duration::from_secs(2)).unwrap();
        assert!(matches!(c.call("promise.get", json!({"id": "x"})), Err(Failure::Unreachable(_))));
    }
}
