//! One client interface over both transports a server can speak: an [`Endpoint`] says where a
//! server is (its HTTP address, or its request subjects on a NATS server), a [`Conn`] carries
//! request envelopes to it, and a [`Worker`] receives what it sends to a worker (an SSE stream,
//! or NATS subscriptions).

use crate::client::{Client, Response, Sse};
use crate::nats::{self, Nats};
use serde_json::Value;
use std::fmt;
use std::io::{self, ErrorKind};
use std::net::SocketAddr;
use std::str::FromStr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The token of the subject requests are published to (`{prefix}.{token}`): the server takes any.
const TOKEN: &str = "default";
/// The header that names where a NATS request's answer goes.
pub const REPLY_TO: &str = "Resonate-Reply-To";
/// How long a request whose server was killed still waits for an answer already on its way.
const GRACE: Duration = Duration::from_millis(200);
/// How often a NATS request checks whether its server was killed.
const SLICE: Duration = Duration::from_millis(50);

/// Where a server under test is reached.
#[derive(Debug, Clone)]
pub enum Endpoint {
    /// `POST /` on the server's own listener.
    Http(SocketAddr),
    /// Requests published on a NATS server.
    Nats(NatsEndpoint),
}

/// A server on a NATS server: requests go to `{prefix}.default`.
#[derive(Debug, Clone)]
pub struct NatsEndpoint {
    pub nats: SocketAddr,
    pub prefix: String,
    /// How many times the server was killed: a request waiting when this moves gets no answer.
    kills: Arc<AtomicUsize>,
}

impl NatsEndpoint {
    /// Subjects of its own on the [`nats::LOCAL`] server, apart from every other server under test.
    pub fn fresh() -> NatsEndpoint {
        NatsEndpoint { nats: nats::LOCAL, prefix: format!("t.{}.requests", nats::unique()), kills: Arc::default() }
    }

    /// The server flags that put a server here: `--nats-url`, `--nats-api-prefix`, and the
    /// prefix as its `--nats-queue-group` too (a group of its own, shared only by its replicas).
    pub fn flags(&self) -> Vec<String> {
        let url = format!("nats://{}", self.nats);
        [("--nats-url", &url), ("--nats-api-prefix", &self.prefix), ("--nats-queue-group", &self.prefix)]
            .into_iter()
            .flat_map(|(flag, value)| [flag.to_string(), value.clone()])
            .collect()
    }
}

impl Endpoint {
    /// A connection with `timeout` on every answer; it connects at its first request.
    pub fn conn(&self, timeout: Duration) -> Conn {
        match self {
            Endpoint::Http(addr) => Conn::Http(Client::with_timeout(*addr, timeout)),
            Endpoint::Nats(at) => Conn::Nats { at: at.clone(), timeout, nats: None },
        }
    }

    /// The `serverUrl` the server puts in the head of an execute message, its default
    /// `--server-url`: `http://localhost:<port>`, or over NATS its `--nats-url`.
    pub fn server_url(&self) -> String {
        match self {
            Endpoint::Http(addr) => format!("http://localhost:{}", addr.port()),
            Endpoint::Nats(at) => format!("nats://{}", at.nats),
        }
    }

    /// Tells requests waiting over NATS that the server was killed: they will get no answer.
    pub fn killed(&self) {
        if let Endpoint::Nats(at) = self {
            at.kills.fetch_add(1, Ordering::SeqCst);
        }
    }

    /// The address that reaches any worker of `group` (`pid: None`) or the one worker `pid`:
    /// `poll://any@group`, `poll://uni@group/pid`, or `nats://resonate.recv.group[.pid]`.
    pub fn worker_address(&self, group: &str, pid: Option<&str>) -> String {
        match (self, pid) {
            (Endpoint::Http(_), None) => format!("poll://any@{group}"),
            (Endpoint::Http(_), Some(pid)) => format!("poll://uni@{group}/{pid}"),
            (Endpoint::Nats(_), None) => format!("nats://resonate.recv.{group}"),
            (Endpoint::Nats(_), Some(pid)) => format!("nats://resonate.recv.{group}.{pid}"),
        }
    }

    /// Worker `pid` of `group`, receiving what is sent to either [`Endpoint::worker_address`]:
    /// its SSE stream `GET /poll/group/pid`, or subscriptions to `resonate.recv.group.pid` and
    /// (in queue group `group`) `resonate.recv.group`.
    pub fn worker(&self, group: &str, pid: &str) -> io::Result<Worker> {
        match self {
            Endpoint::Http(addr) => match Sse::open(*addr, &format!("/poll/{group}/{pid}"))? {
                (_, Some(sse)) => Ok(Worker::Sse(sse)),
                (response, None) => Err(io::Error::other(format!("GET /poll/{group}/{pid} answered {}", response.status))),
            },
            Endpoint::Nats(at) => {
                let mut conn = Nats::connect(at.nats)?;
                conn.subscribe(&format!("resonate.recv.{group}.{pid}"), None)?;
                conn.subscribe(&format!("resonate.recv.{group}"), Some(group))?;
                conn.flush()?;
                Ok(Worker::Nats(conn))
            }
        }
    }
}

/// `http://ip:port`, or `nats://ip:port/prefix` (a subject has no `/`).
impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self {
            Endpoint::Http(addr) => write!(f, "http://{addr}"),
            Endpoint::Nats(at) => write!(f, "nats://{}/{}", at.nats, at.prefix),
        }
    }
}

impl FromStr for Endpoint {
    type Err = String;

    fn from_str(url: &str) -> Result<Endpoint, String> {
        let bad = || format!("{url}: expected http://<ip>:<port> or nats://<ip>:<port>/<api prefix>");
        if let Some(addr) = url.strip_prefix("http://") {
            return addr.trim_end_matches('/').parse().map(Endpoint::Http).map_err(|_| bad());
        }
        let (nats, prefix) = url.strip_prefix("nats://").and_then(|rest| rest.split_once('/')).ok_or_else(bad)?;
        if prefix.is_empty() {
            return Err(bad());
        }
        let nats = nats.parse().map_err(|_| bad())?;
        Ok(Endpoint::Nats(NatsEndpoint { nats, prefix: prefix.to_string(), kills: Arc::default() }))
    }
}

/// Carries one request envelope to a server and brings back its answer.
pub trait Rpc {
    /// Sends `envelope` (any bytes) as a request. Over HTTP the answer is the response to
    /// `POST /`; over NATS it is the reply, its status taken from the envelope's `head.status`
    /// (0 when the reply is no envelope) and its headers from the NATS header block.
    fn rpc(&mut self, envelope: &[u8]) -> io::Result<Response>;
}

impl Rpc for Client {
    fn rpc(&mut self, envelope: &[u8]) -> io::Result<Response> {
        self.post("/", envelope)
    }
}

/// A connection to a server over its transport.
#[derive(Debug)]
pub enum Conn {
    Http(Client),
    Nats {
        at: NatsEndpoint,
        timeout: Duration,
        /// Connected at the first request; dropped after a failure, so the next one reconnects.
        nats: Option<Nats>,
    },
}

impl Rpc for Conn {
    fn rpc(&mut self, envelope: &[u8]) -> io::Result<Response> {
        match self {
            Conn::Http(client) => client.rpc(envelope),
            Conn::Nats { at, timeout, nats } => {
                let conn = match nats {
                    Some(conn) => conn,
                    None => nats.insert(Nats::connect(at.nats)?),
                };
                let answer = request(conn, at, envelope, *timeout);
                if answer.is_err() {
                    *nats = None;
                }
                answer
            }
        }
    }
}

/// Publishes `envelope` to `{prefix}.default` with [`REPLY_TO`] and the NATS reply subject both
/// naming a fresh inbox, and waits up to `timeout` for the answer; gives up early, after a
/// [`GRACE`], when the server is killed meanwhile (`ConnectionAborted`, as an HTTP connection
/// would be reset). No subscriber (the server is down) is `ConnectionRefused`, as an HTTP connect
/// would be.
fn request(conn: &mut Nats, at: &NatsEndpoint, envelope: &[u8], timeout: Duration) -> io::Result<Response> {
    let inbox = conn.new_inbox()?;
    conn.publish(&format!("{}.{TOKEN}", at.prefix), Some(&inbox), &[(REPLY_TO, &inbox)], envelope)?;
    // Counted after publishing: a kill just before cannot make a request the next server is
    // still working on look unanswered (the test would then read the store too early).
    let kills = at.kills.load(Ordering::SeqCst);
    let deadline = Instant::now() + timeout;
    let mut gone_at = None;
    let msg = loop {
        let slice = (Instant::now() + SLICE).min(deadline);
        match conn.reply(&inbox, slice) {
            Err(e) if e.kind() == ErrorKind::TimedOut && Instant::now() < deadline => {}
            answer => break answer?,
        }
        if gone_at.is_none() && at.kills.load(Ordering::SeqCst) != kills {
            gone_at = Some(Instant::now());
        }
        if gone_at.is_some_and(|gone| gone.elapsed() > GRACE) {
            return Err(io::Error::new(ErrorKind::ConnectionAborted, "the server was killed before it answered"));
        }
    };
    let status = serde_json::from_slice::<Value>(&msg.payload).ok().and_then(|v| v["head"]["status"].as_u64()).unwrap_or(0);
    Ok(Response { status: status as u16, headers: msg.headers, body: msg.payload })
}

/// A worker's view of a server: what it sends to the worker's addresses.
#[derive(Debug)]
pub enum Worker {
    Sse(Sse),
    Nats(Nats),
}

impl Worker {
    /// Waits up to `timeout` for the next message and returns its JSON text; `Ok(None)` on timeout.
    pub fn next_message(&mut self, timeout: Duration) -> io::Result<Option<String>> {
        match self {
            Worker::Sse(sse) => sse.next_data(timeout),
            Worker::Nats(nats) => Ok(nats.next_msg(timeout)?.map(|m| String::from_utf8_lossy(&m.payload).into_owned())),
        }
    }
}
