//! The NATS transport: requests arrive on `<nats-api-prefix>.>` in the queue group
//! `<nats-queue-group>`, so replicas in one group share them and each is answered once; the
//! answer is published to the subject the request's `Resonate-Reply-To` header names (the
//! official SDKs' NATS connectors), or else to the message's NATS reply subject. Messages for
//! workers go out through `delivery` on the same connection.
//!
//! The client speaks the NATS text protocol (INFO, CONNECT, SUB, PUB, MSG, HMSG, PING, PONG)
//! over one plain TCP connection and re-establishes it, with its subscription, whenever it
//! drops; a request in flight then is lost and the caller's timeout retries it. It carries no
//! TLS, JetStream or other client features the server does not use.

use crate::config::Config;
use crate::delivery::{self, valid_subject, Publisher, Unpublished};
use crate::protocol::Refusal;
use crate::service::{refused, response_too_large, salvage, too_large, Answer, Service, BODY_LIMIT};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, Notify, Semaphore};

/// The header naming the subject an answer goes to.
const REPLY_HEADER: &str = "Resonate-Reply-To";
/// The longest protocol line accepted from the NATS server (a MSG line names two subjects).
const LINE_LIMIT: u64 = 64 * 1024;
/// How long connecting and the handshake may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Bounds of the wait between attempts to re-establish a dropped connection.
const RECONNECT_MIN: Duration = Duration::from_millis(100);
const RECONNECT_MAX: Duration = Duration::from_secs(5);
/// How often the server pings NATS, so a dead connection is noticed while idle.
const PING_INTERVAL: Duration = Duration::from_secs(30);
/// Frames written to the socket at once, at most.
const WRITE_BATCH: usize = 64 * 1024;
/// Requests being answered at once, at most; past it the server stops reading from NATS until
/// one is answered, and NATS holds (or, for a slow consumer, drops) the rest.
const IN_FLIGHT: usize = 1024;

/// Where and as whom to connect: `nats://[user:password@]host[:port]`.
struct Endpoint {
    /// `host:port`.
    address: String,
    /// `"user":"…","pass":"…"` for CONNECT, when the URL carries them.
    credentials: Option<(String, String)>,
}

impl Endpoint {
    fn parse(url: &str) -> Result<Endpoint, String> {
        let rest = url
            .strip_prefix("nats://")
            .ok_or_else(|| format!("nats-url must look like nats://host:port, got '{}'", redact(url)))?;
        let (userinfo, host) = match rest.rsplit_once('@') {
            Some((u, h)) => (Some(u), h),
            None => (None, rest),
        };
        let host = host.trim_end_matches('/');
        if host.is_empty() || host.contains('/') {
            return Err(format!("nats-url must look like nats://host:port, got '{}'", redact(url)));
        }
        let address = if host.rsplit_once(':').is_some_and(|(_, port)| port.parse::<u16>().is_ok()) {
            host.to_string()
        } else {
            format!("{host}:4222")
        };
        let credentials = userinfo.map(|u| match u.split_once(':') {
            Some((user, pass)) => (user.to_string(), pass.to_string()),
            None => (u.to_string(), String::new()),
        });
        Ok(Endpoint { address, credentials })
    }

    /// The CONNECT frame: headers on, quiet (no +OK), named after the server.
    fn connect_frame(&self) -> Vec<u8> {
        let mut options = serde_json::json!({
            "verbose": false,
            "pedantic": false,
            "headers": true,
            "lang": "rust",
            "version": env!("CARGO_PKG_VERSION"),
            "name": env!("CARGO_PKG_NAME"),
            "protocol": 1,
        });
        if let Some((user, pass)) = &self.credentials {
            options["user"] = user.as_str().into();
            options["pass"] = pass.as_str().into();
        }
        format!("CONNECT {options}\r\n").into_bytes()
    }
}

/// A URL with any password replaced, for messages.
fn redact(url: &str) -> String {
    match url.split_once("://").and_then(|(scheme, rest)| rest.rsplit_once('@').map(|(_, host)| (scheme, host))) {
        Some((scheme, host)) => format!("{scheme}://***@{host}"),
        None => url.to_string(),
    }
}

/// Opens the store, connects to NATS, starts delivery and answers requests until the process
/// ends.
pub async fn serve(config: Config) -> Result<(), String> {
    crate::set_log_level(&config.level)?;
    let endpoint = Endpoint::parse(&config.nats_url)?;
    if !valid_subject(&config.nats_api_prefix) {
        return Err(format!(
            "nats-api-prefix must be a NATS subject (dot-separated tokens, no spaces or wildcards), got '{}'",
            config.nats_api_prefix
        ));
    }
    if config.nats_queue_group.is_empty() || config.nats_queue_group.contains(|c: char| c.is_whitespace()) {
        return Err(format!("nats-queue-group must be a non-empty name without spaces, got '{}'", config.nats_queue_group));
    }
    let subscribe = format!("SUB {}.> {} 1\r\n", config.nats_api_prefix, config.nats_queue_group).into_bytes();
    let enqueued = Arc::new(Notify::new());
    let settings = Arc::new(config.settings());
    let service = Arc::new(Service::open(&config, settings.clone(), enqueued.clone()).await?);
    let mut connection = connect(&endpoint, &subscribe)
        .await
        .map_err(|e| format!("cannot connect to NATS at {}: {e} (is nats-server running? see --nats-url)", redact(&config.nats_url)))?;
    crate::log!(
        Info,
        "taking requests on {}.> in queue group {} from nats://{}",
        config.nats_api_prefix,
        config.nats_queue_group,
        endpoint.address
    );
    let (publisher, mut frames) = Publisher::new();
    tokio::spawn(delivery::run(service.store().clone(), publisher.clone(), enqueued, settings));
    loop {
        let why = session(connection, &mut frames, &service, &publisher).await;
        crate::log!(Warn, "the NATS connection dropped ({why}); reconnecting");
        let mut wait = RECONNECT_MIN;
        connection = loop {
            tokio::time::sleep(wait).await;
            match connect(&endpoint, &subscribe).await {
                Ok(c) => break c,
                Err(e) => {
                    crate::log!(Warn, "cannot reconnect to NATS at nats://{}: {e}", endpoint.address);
                    wait = (wait * 2).min(RECONNECT_MAX);
                }
            }
        };
        crate::log!(Info, "reconnected to NATS at nats://{}", endpoint.address);
    }
}

/// An established connection: subscribed, and confirmed by the server's PONG.
struct Connection {
    reader: BufReader<OwnedReadHalf>,
    writer: OwnedWriteHalf,
    /// The INFO's `max_payload`.
    max_payload: usize,
}

/// Connects, reads INFO, sends CONNECT and waits for the PONG that confirms it (an
/// authorisation failure arrives as -ERR instead), then subscribes. Subscribing last means every
/// request the subscription brings is read by the session, none by the handshake.
async fn connect(endpoint: &Endpoint, subscribe: &[u8]) -> Result<Connection, String> {
    tokio::time::timeout(CONNECT_TIMEOUT, async {
        let stream = TcpStream::connect(&endpoint.address).await.map_err(|e| e.to_string())?;
        let _ = stream.set_nodelay(true);
        let (read, mut writer) = stream.into_split();
        let mut reader = BufReader::new(read);
        let info = read_line(&mut reader).await?;
        let Some(info) = info.strip_prefix("INFO ") else {
            return Err(format!("not a NATS server (it said '{}')", info.chars().take(80).collect::<String>()));
        };
        let info: serde_json::Value = serde_json::from_str(info).unwrap_or_default();
        // The NATS server's own default when it does not say.
        let max_payload = info["max_payload"].as_u64().map_or(1024 * 1024, |m| m as usize);
        let mut hello = endpoint.connect_frame();
        hello.extend_from_slice(b"PING\r\n");
        writer.write_all(&hello).await.map_err(|e| e.to_string())?;
        loop {
            let line = read_line(&mut reader).await?;
            match line.split_ascii_whitespace().next().unwrap_or_default() {
                "PONG" => break,
                "-ERR" => return Err(format!("the NATS server refused: {}", &line[4..].trim())),
                _ => {}
            }
        }
        writer.write_all(subscribe).await.map_err(|e| e.to_string())?;
        Ok(Connection { reader, writer, max_payload })
    })
    .await
    .map_err(|_| format!("no answer within {} s", CONNECT_TIMEOUT.as_secs()))?
}

/// Reads one protocol line, without its CRLF.
async fn read_line(reader: &mut BufReader<OwnedReadHalf>) -> Result<String, String> {
    let mut line = Vec::new();
    let n = (&mut *reader).take(LINE_LIMIT).read_until(b'\n', &mut line).await.map_err(|e| e.to_string())?;
    if n == 0 {
        return Err("the server closed the connection".into());
    }
    if line.last() != Some(&b'\n') {
        return Err("a protocol line too long".into());
    }
    Ok(String::from_utf8_lossy(&line).trim_end().to_string())
}

/// Serves one connection until it fails; returns why.
async fn session(
    Connection { mut reader, mut writer, max_payload }: Connection,
    frames: &mut mpsc::Receiver<Vec<u8>>,
    service: &Arc<Service>,
    publisher: &Publisher,
) -> String {
    publisher.set_max_payload(max_payload);
    let in_flight = Arc::new(Semaphore::new(IN_FLIGHT));
    let write = async {
        let mut pings = tokio::time::interval(PING_INTERVAL);
        let mut batch = Vec::with_capacity(WRITE_BATCH);
        loop {
            tokio::select! {
                frame = frames.recv() => {
                    let Some(frame) = frame else { return "the publisher closed".to_string() };
                    batch.extend_from_slice(&frame);
                    while batch.len() < WRITE_BATCH {
                        match frames.try_recv() {
                            Ok(frame) => batch.extend_from_slice(&frame),
                            Err(_) => break,
                        }
                    }
                }
                _ = pings.tick() => batch.extend_from_slice(b"PING\r\n"),
            }
            if let Err(e) = writer.write_all(&batch).await {
                return e.to_string();
            }
            batch.clear();
        }
    };
    let read = async {
        loop {
            match read_message(&mut reader, publisher).await {
                Ok(Some(message)) => {
                    let Ok(permit) = in_flight.clone().acquire_owned().await else { return "closed".to_string() };
                    let (service, publisher) = (service.clone(), publisher.clone());
                    tokio::spawn(async move {
                        answer(&service, &publisher, message).await;
                        drop(permit);
                    });
                }
                Ok(None) => {}
                Err(e) => return e,
            }
        }
    };
    tokio::select! {
        why = write => why,
        why = read => why,
    }
}

/// One request as NATS delivered it.
struct Message {
    /// The message's NATS reply subject, if it has one.
    reply: Option<String>,
    /// The header block (`NATS/1.0` and `Name: value` lines), empty for a plain MSG.
    headers: String,
    payload: Vec<u8>,
}

/// Reads the next protocol operation; a request message is returned, anything else handled
/// here (PING is answered, INFO and PONG ignored, -ERR logged).
async fn read_message(reader: &mut BufReader<OwnedReadHalf>, publisher: &Publisher) -> Result<Option<Message>, String> {
    let line = read_line(reader).await?;
    let mut parts = line.split_ascii_whitespace();
    let op = parts.next().unwrap_or_default().to_ascii_uppercase();
    let args: Vec<&str> = parts.collect();
    let (reply, header_len, total_len) = match (op.as_str(), args.as_slice()) {
        ("MSG", [_, _, total]) => (None, "0", *total),
        ("MSG", [_, _, reply, total]) => (Some(*reply), "0", *total),
        ("HMSG", [_, _, headers, total]) => (None, *headers, *total),
        ("HMSG", [_, _, reply, headers, total]) => (Some(*reply), *headers, *total),
        ("PING", _) => {
            // The reader cannot write: the PONG goes out through the writer, like any frame.
            publisher.send(b"PONG\r\n".to_vec()).await;
            return Ok(None);
        }
        ("-ERR", _) => {
            crate::log!(Warn, "the NATS server said {line}");
            return Ok(None);
        }
        _ => return Ok(None),
    };
    let (Ok(header_len), Ok(total_len)) = (header_len.parse::<usize>(), total_len.parse::<usize>()) else {
        return Err(format!("a malformed {op} line: {line}"));
    };
    if header_len > total_len {
        return Err(format!("a malformed {op} line: {line}"));
    }
    let mut body = vec![0; total_len + 2];
    reader.read_exact(&mut body).await.map_err(|e| e.to_string())?;
    body.truncate(total_len);
    let payload = body.split_off(header_len);
    Ok(Some(Message {
        reply: reply.map(str::to_string),
        headers: String::from_utf8_lossy(&body).into_owned(),
        payload,
    }))
}

/// The value of a header, its name matched without regard to case.
fn header<'h>(headers: &'h str, name: &str) -> Option<&'h str> {
    headers.lines().skip(1).find_map(|line| {
        let (key, value) = line.split_once(':')?;
        key.trim().eq_ignore_ascii_case(name).then(|| value.trim())
    })
}

/// Answers one request where its caller listens; a request with nowhere to answer is dropped
/// with a log line, unanswered and unapplied.
async fn answer(service: &Service, publisher: &Publisher, message: Message) {
    let fallback = message.reply.as_deref().filter(|r| valid_subject(r));
    let (to, answer) = match header(&message.headers, REPLY_HEADER) {
        Some(to) if valid_subject(to) => (to, None),
        Some(bad) => {
            let (kind, corr_id) = salvage(&message.payload);
            let refusal = Refusal::InvalidEnvelope(format!("the {REPLY_HEADER} header must name a NATS subject, got '{bad}'"));
            match fallback {
                Some(to) => (to, Some(refused(&kind, &corr_id, refusal))),
                None => {
                    crate::log!(Warn, "dropped a request whose {REPLY_HEADER} header is not a subject: '{bad}'");
                    return;
                }
            }
        }
        None => match fallback {
            Some(to) => (to, None),
            None => {
                crate::log!(Warn, "dropped a request with no {REPLY_HEADER} header and no reply subject");
                return;
            }
        },
    };
    let Answer { status, body } = match answer {
        Some(refusal) => refusal,
        None if message.payload.len() > BODY_LIMIT => too_large(&message.payload),
        None => service.handle(&message.payload).await,
    };
    match publisher.publish(to, body.as_bytes()).await {
        Ok(()) => crate::log!(Debug, "answered {status} on {to}"),
        Err(Unpublished::TooLarge(max)) => {
            // Said where the caller listens, instead of an answer NATS would refuse.
            crate::log!(Error, "an answer of {} bytes is over the NATS server's max_payload of {max}", body.len());
            let (kind, corr_id) = salvage(&message.payload);
            let too_big = response_too_large(&kind, &corr_id, body.len(), max);
            let _ = publisher.publish(to, too_big.body.as_bytes()).await;
        }
        Err(Unpublished::Closed) => crate::log!(Warn, "cannot answer on {to}: the connection is gone"),
    }
}
