//! A minimal blocking NATS client over [`TcpStream`]: the `INFO`/`CONNECT` handshake (with
//! headers and no-responders), `SUB`/`UNSUB`, `PUB`/`HPUB`, reading `MSG`/`HMSG` with a
//! timeout, answering the server's `PING`, and request/reply through a unique inbox.
//!
//! Every read and write has a timeout, so a silent peer fails a test instead of hanging it.

use serde_json::Value;
use std::collections::hash_map::RandomState;
use std::collections::VecDeque;
use std::hash::{BuildHasher, Hasher};
use std::io::{self, BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// The NATS server every suite shares (see the README).
pub const LOCAL: SocketAddr = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 4222));
/// How long connecting, the handshake and every write may take.
const IO_TIMEOUT: Duration = Duration::from_secs(10);

/// Header fields in the order received.
pub type Headers = Vec<(String, String)>;

/// One message received: `MSG`, or `HMSG` with its header block parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Msg {
    pub subject: String,
    /// The subscription it arrived on.
    pub sid: u64,
    /// The NATS reply subject, if the publisher set one.
    pub reply: Option<String>,
    /// The status of a header block that carries one (`NATS/1.0 503` from the server: no responders).
    pub status: Option<u16>,
    pub headers: Headers,
    pub payload: Vec<u8>,
}

impl Msg {
    /// The value of the first header field called `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

/// A connection to a NATS server.
#[derive(Debug)]
pub struct Nats {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
    /// The server's `INFO`.
    info: Value,
    next_sid: u64,
    /// Messages read while waiting for something else (a `PONG`, a reply).
    queued: VecDeque<Msg>,
    /// `_INBOX.<unique>`: replies to this connection's requests arrive under it.
    inbox: String,
    /// The subscription to `{inbox}.*`, made by the first request.
    inbox_sid: Option<u64>,
    requests: u64,
}

impl Nats {
    /// Connects to the server at `addr` and completes the handshake (`CONNECT` with headers and
    /// no-responders, then `PING` until `PONG`).
    pub fn connect(addr: SocketAddr) -> io::Result<Nats> {
        let stream = TcpStream::connect_timeout(&addr, IO_TIMEOUT)?;
        stream.set_read_timeout(Some(IO_TIMEOUT))?;
        stream.set_write_timeout(Some(IO_TIMEOUT))?;
        stream.set_nodelay(true)?;
        let mut reader = BufReader::new(stream.try_clone()?);
        let line = read_line(&mut reader)?;
        let info = line
            .strip_prefix("INFO ")
            .and_then(|json| serde_json::from_str(json).ok())
            .ok_or_else(|| invalid(format!("expected INFO, got {line:?}")))?;
        let mut nats = Nats {
            reader,
            writer: stream,
            info,
            next_sid: 1,
            queued: VecDeque::new(),
            inbox: format!("_INBOX.{}", unique()),
            inbox_sid: None,
            requests: 0,
        };
        let connect = r#"{"verbose":false,"pedantic":false,"headers":true,"no_responders":true,"lang":"rust-resonate-tests","version":"0.1.0","protocol":1}"#;
        nats.write(format!("CONNECT {connect}\r\n").as_bytes())?;
        nats.flush()?;
        Ok(nats)
    }

    /// The server's `INFO` (its `version`, `max_payload`, ...).
    pub fn info(&self) -> &Value {
        &self.info
    }

    /// The largest payload (headers included) the server accepts (`max_payload` of its `INFO`).
    pub fn max_payload(&self) -> usize {
        self.info["max_payload"].as_u64().unwrap_or(1 << 20) as usize
    }

    /// Subscribes to `subject`, in `queue` group if given; returns the subscription id.
    pub fn subscribe(&mut self, subject: &str, queue: Option<&str>) -> io::Result<u64> {
        let sid = self.next_sid;
        self.next_sid += 1;
        let queue = queue.map(|q| format!(" {q}")).unwrap_or_default();
        self.write(format!("SUB {subject}{queue} {sid}\r\n").as_bytes())?;
        Ok(sid)
    }

    /// Ends subscription `sid`; messages it already received stay readable.
    pub fn unsubscribe(&mut self, sid: u64) -> io::Result<()> {
        self.write(format!("UNSUB {sid}\r\n").as_bytes())
    }

    /// Publishes `payload` to `subject`: `PUB` without headers, else `HPUB` with a `NATS/1.0`
    /// header block. Fails without sending when the message is over [`Nats::max_payload`].
    pub fn publish(&mut self, subject: &str, reply: Option<&str>, headers: &[(&str, &str)], payload: &[u8]) -> io::Result<()> {
        let mut block = Vec::new();
        if !headers.is_empty() {
            block.extend_from_slice(b"NATS/1.0\r\n");
            for (name, value) in headers {
                block.extend_from_slice(format!("{name}: {value}\r\n").as_bytes());
            }
            block.extend_from_slice(b"\r\n");
        }
        self.publish_block(subject, reply, &block, payload)
    }

    /// Publishes `payload` to `subject` with `block` as its raw header block (`HPUB`), or
    /// without one (`PUB`) when it is empty.
    pub fn publish_block(&mut self, subject: &str, reply: Option<&str>, block: &[u8], payload: &[u8]) -> io::Result<()> {
        let reply = reply.map(|r| format!(" {r}")).unwrap_or_default();
        let total = block.len() + payload.len();
        if total > self.max_payload() {
            return Err(invalid(format!("a {total}-byte message is over the server's max_payload {}", self.max_payload())));
        }
        let mut message = if block.is_empty() {
            format!("PUB {subject}{reply} {total}\r\n").into_bytes()
        } else {
            format!("HPUB {subject}{reply} {} {total}\r\n", block.len()).into_bytes()
        };
        message.extend_from_slice(block);
        message.extend_from_slice(payload);
        message.extend_from_slice(b"\r\n");
        self.write(&message)
    }

    /// Sends `PING` and reads until the server's `PONG`: everything written before has been
    /// processed by the server (subscriptions are in place). Messages meanwhile are kept.
    pub fn flush(&mut self) -> io::Result<()> {
        self.write(b"PING\r\n")?;
        let deadline = Instant::now() + IO_TIMEOUT;
        loop {
            match self.read_op(deadline)? {
                Some(Op::Pong) => return Ok(()),
                Some(Op::Msg(msg)) => self.queued.push_back(msg),
                None => return Err(io::Error::new(ErrorKind::TimedOut, "no PONG from the NATS server")),
            }
        }
    }

    /// The next message on any subscription, waiting up to `timeout`; `Ok(None)` on timeout.
    pub fn next_msg(&mut self, timeout: Duration) -> io::Result<Option<Msg>> {
        if let Some(msg) = self.queued.pop_front() {
            return Ok(Some(msg));
        }
        let deadline = Instant::now() + timeout;
        loop {
            match self.read_op(deadline)? {
                Some(Op::Msg(msg)) => return Ok(Some(msg)),
                Some(Op::Pong) => {}
                None => return Ok(None),
            }
        }
    }

    /// A subject no other request, connection or process uses, under this connection's inbox.
    pub fn new_inbox(&mut self) -> io::Result<String> {
        if self.inbox_sid.is_none() {
            let all = format!("{}.*", self.inbox);
            self.inbox_sid = Some(self.subscribe(&all, None)?);
        }
        self.requests += 1;
        Ok(format!("{}.{}", self.inbox, self.requests))
    }

    /// Publishes `payload` to `subject` with the NATS reply subject set to a fresh inbox, and
    /// waits up to `timeout` for the first message there; replies to earlier requests are
    /// dropped. A no-responders status (no subscriber to `subject`) is `ConnectionRefused`.
    pub fn request(&mut self, subject: &str, headers: &[(&str, &str)], payload: &[u8], timeout: Duration) -> io::Result<Msg> {
        let inbox = self.new_inbox()?;
        self.publish(subject, Some(&inbox), headers, payload)?;
        self.reply(&inbox, Instant::now() + timeout)
    }

    /// Waits until `deadline` for a message on `inbox` (from [`Nats::new_inbox`]); messages on
    /// other subjects are dropped.
    pub fn reply(&mut self, inbox: &str, deadline: Instant) -> io::Result<Msg> {
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let msg = self
                .next_msg(left)?
                .ok_or_else(|| io::Error::new(ErrorKind::TimedOut, format!("no reply on {inbox}")))?;
            if msg.subject != inbox {
                continue;
            }
            if msg.status == Some(503) {
                return Err(io::Error::new(ErrorKind::ConnectionRefused, "no responders: connection refused"));
            }
            return Ok(msg);
        }
    }

    fn write(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.writer.write_all(bytes)
    }

    /// Reads protocol lines until a message or a `PONG` arrives (answering `PING`, skipping
    /// `+OK` and `INFO`); `Ok(None)` once `deadline` passes, `Err` on `-ERR` or a closed connection.
    fn read_op(&mut self, deadline: Instant) -> io::Result<Option<Op>> {
        loop {
            if self.reader.buffer().is_empty() {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Ok(None);
                }
                self.reader.get_ref().set_read_timeout(Some(left))?;
                match self.reader.fill_buf() {
                    Ok([]) => return Err(io::Error::new(ErrorKind::UnexpectedEof, "the NATS server closed the connection")),
                    Ok(_) => {}
                    Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => return Ok(None),
                    Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                    Err(e) => return Err(e),
                }
            }
            // A line has begun: the rest of it and its payload follow promptly.
            self.reader.get_ref().set_read_timeout(Some(IO_TIMEOUT))?;
            let line = read_line(&mut self.reader)?;
            let (op, args) = line.split_once(' ').unwrap_or((&line, ""));
            match op.to_ascii_uppercase().as_str() {
                "PING" => self.write(b"PONG\r\n")?,
                "PONG" => return Ok(Some(Op::Pong)),
                "+OK" | "INFO" => {}
                "-ERR" => return Err(io::Error::other(format!("NATS server: {args}"))),
                "MSG" => return self.read_msg(args, false).map(|m| Some(Op::Msg(m))),
                "HMSG" => return self.read_msg(args, true).map(|m| Some(Op::Msg(m))),
                _ => return Err(invalid(format!("unexpected line from the NATS server: {line:?}"))),
            }
        }
    }

    /// Reads the body of `MSG <subject> <sid> [reply] <bytes>` or
    /// `HMSG <subject> <sid> [reply] <header bytes> <bytes>`.
    fn read_msg(&mut self, args: &str, with_headers: bool) -> io::Result<Msg> {
        let bad = || invalid(format!("bad message line {args:?}"));
        let parts: Vec<&str> = args.split_whitespace().collect();
        let counts = if with_headers { 2 } else { 1 };
        if parts.len() != 2 + counts && parts.len() != 3 + counts {
            return Err(bad());
        }
        let number = |s: &str| s.parse::<usize>().map_err(|_| bad());
        let total = number(parts[parts.len() - 1])?;
        let header_len = if with_headers { number(parts[parts.len() - 2])? } else { 0 };
        if header_len > total {
            return Err(bad());
        }
        let mut body = vec![0; total + 2];
        self.reader.read_exact(&mut body)?;
        if !body.ends_with(b"\r\n") {
            return Err(invalid("a message longer than its size"));
        }
        body.truncate(total);
        let payload = body.split_off(header_len);
        let (status, headers) = if with_headers { parse_headers(&body)? } else { (None, Vec::new()) };
        Ok(Msg {
            subject: parts[0].to_string(),
            sid: number(parts[1])? as u64,
            reply: (parts.len() == 3 + counts).then(|| parts[2].to_string()),
            status,
            headers,
            payload,
        })
    }
}

/// What [`Nats::read_op`] stops at.
enum Op {
    Msg(Msg),
    Pong,
}

/// Parses a `NATS/1.0[ status[ description]]` header block.
fn parse_headers(block: &[u8]) -> io::Result<(Option<u16>, Headers)> {
    let text = String::from_utf8_lossy(block);
    let mut lines = text.split("\r\n");
    let first = lines.next().unwrap_or_default();
    let rest = first.strip_prefix("NATS/1.0").ok_or_else(|| invalid(format!("bad header block {first:?}")))?;
    let status = rest.split_whitespace().next().and_then(|s| s.parse().ok());
    let headers = lines
        .filter(|l| !l.is_empty())
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_string(), v.trim().to_string()))
        .collect();
    Ok((status, headers))
}

/// Reads one CRLF-terminated protocol line, without the line break.
fn read_line(reader: &mut impl BufRead) -> io::Result<String> {
    let mut line = Vec::new();
    if reader.read_until(b'\n', &mut line)? == 0 || line.pop() != Some(b'\n') {
        return Err(io::Error::new(ErrorKind::UnexpectedEof, "the NATS server closed the connection"));
    }
    if line.last() == Some(&b'\r') {
        line.pop();
    }
    Ok(String::from_utf8_lossy(&line).into_owned())
}

/// A token no other call, in this or any process, returns: 16 hex digits from a randomly
/// keyed hash of the process id and a counter.
pub fn unique() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut hasher = RandomState::new().build_hasher();
    hasher.write_u32(std::process::id());
    hasher.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    format!("{:016x}", hasher.finish())
}

fn invalid(message: impl Into<String>) -> io::Error {
    io::Error::new(ErrorKind::InvalidData, message.into())
}

/// Against the [`LOCAL`] NATS server.
#[cfg(test)]
mod tests {
    use super::*;

    const WAIT: Duration = Duration::from_secs(5);

    fn connect() -> Nats {
        Nats::connect(LOCAL).expect("a NATS server on 127.0.0.1:4222")
    }

    #[test]
    fn published_messages_come_back_with_headers_and_reply_subjects() {
        let mut nats = connect();
        let subject = format!("test.{}", unique());
        let sid = nats.subscribe(&subject, None).unwrap();
        nats.flush().unwrap();
        nats.publish(&subject, None, &[], b"plain").unwrap();
        nats.publish(&subject, Some("back.here"), &[("A", "1"), ("Resonate-Reply-To", "x.y")], b"with\r\nheaders").unwrap();
        nats.publish(&subject, None, &[], b"").unwrap();
        let msg = nats.next_msg(WAIT).unwrap().unwrap();
        assert_eq!((msg.subject.as_str(), msg.sid, &msg.payload[..]), (subject.as_str(), sid, &b"plain"[..]));
        assert_eq!((msg.reply, msg.status, msg.headers.len()), (None, None, 0));
        let msg = nats.next_msg(WAIT).unwrap().unwrap();
        assert_eq!(msg.payload, b"with\r\nheaders");
        assert_eq!(msg.reply.as_deref(), Some("back.here"));
        assert_eq!(msg.header("resonate-reply-to"), Some("x.y"));
        assert_eq!(msg.header("a"), Some("1"));
        assert_eq!(nats.next_msg(WAIT).unwrap().unwrap().payload, b"");
        nats.unsubscribe(sid).unwrap();
        nats.publish(&subject, None, &[], b"unheard").unwrap();
        nats.flush().unwrap();
        assert_eq!(nats.next_msg(Duration::from_millis(100)).unwrap(), None);
    }

    #[test]
    fn a_queue_group_gets_each_message_once() {
        let mut nats = connect();
        let subject = format!("test.{}", unique());
        let a = nats.subscribe(&subject, Some("q")).unwrap();
        let b = nats.subscribe(&subject, Some("q")).unwrap();
        nats.flush().unwrap();
        for i in 0..10 {
            nats.publish(&subject, None, &[], format!("{i}").as_bytes()).unwrap();
        }
        let mut got = Vec::new();
        while let Some(msg) = nats.next_msg(Duration::from_millis(300)).unwrap() {
            assert!(msg.sid == a || msg.sid == b);
            got.push(String::from_utf8(msg.payload).unwrap());
        }
        assert_eq!(got, (0..10).map(|i| i.to_string()).collect::<Vec<_>>());
    }

    #[test]
    fn requests_get_their_own_reply_and_no_responders_is_refused() {
        let mut server = connect();
        let subject = format!("test.{}", unique());
        server.subscribe(&subject, Some("q")).unwrap();
        server.flush().unwrap();
        let answer = std::thread::spawn(move || {
            for _ in 0..2 {
                let msg = server.next_msg(WAIT).unwrap().unwrap();
                let to = msg.header("Resonate-Reply-To").map(str::to_string).or(msg.reply).unwrap();
                let mut echo = b"re: ".to_vec();
                echo.extend_from_slice(&msg.payload);
                server.publish(&to, None, &[], &echo).unwrap();
            }
        });
        let mut client = connect();
        let reply = client.request(&subject, &[], b"one", WAIT).unwrap();
        assert_eq!(reply.payload, b"re: one");
        let inbox = client.new_inbox().unwrap();
        client.publish(&subject, None, &[("Resonate-Reply-To", &inbox)], b"two").unwrap();
        assert_eq!(client.reply(&inbox, Instant::now() + WAIT).unwrap().payload, b"re: two");
        answer.join().unwrap();

        let e = client.request(&format!("test.{}", unique()), &[], b"anyone?", WAIT).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::ConnectionRefused, "{e}");
        assert!(e.to_string().contains("refused"), "{e}");
    }

    #[test]
    fn oversize_messages_are_not_sent() {
        let mut nats = connect();
        assert!(nats.max_payload() >= 1 << 20, "{}", nats.max_payload());
        let too_big = vec![b'x'; nats.max_payload() + 1];
        let e = nats.publish("test.big", None, &[], &too_big).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidData);
        let just_fits = vec![b'x'; nats.max_payload()];
        let subject = format!("test.{}", unique());
        nats.subscribe(&subject, None).unwrap();
        nats.publish(&subject, None, &[], &just_fits).unwrap();
        assert_eq!(nats.next_msg(WAIT).unwrap().unwrap().payload.len(), just_fits.len());
        // The connection still works: nothing made the server close it.
        nats.flush().unwrap();
    }

    /// A scripted server: checks the handshake, pings the client, splits a message across
    /// writes and ends with `-ERR`.
    #[test]
    fn server_pings_are_answered_and_split_messages_are_read() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let server = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            let mut r = BufReader::new(s.try_clone().unwrap());
            s.write_all(b"INFO {\"max_payload\":64,\"headers\":true}\r\n").unwrap();
            let connect = read_line(&mut r).unwrap();
            assert!(connect.starts_with("CONNECT {") && connect.contains(r#""headers":true"#), "{connect}");
            assert_eq!(read_line(&mut r).unwrap(), "PING");
            s.write_all(b"+OK\r\nPONG\r\n").unwrap();
            assert_eq!(read_line(&mut r).unwrap(), "SUB a.b q 1");
            s.write_all(b"PING\r\nHMSG a.b 1 re.ply 12 14\r\nNATS/1.0\r\n").unwrap();
            assert_eq!(read_line(&mut r).unwrap(), "PONG");
            std::thread::sleep(Duration::from_millis(50));
            s.write_all(b"\r\nhi\r\nmsg a.b 1 1\r\nx\r\n-ERR 'Stale Connection'\r\n").unwrap();
        });
        let mut nats = Nats::connect(addr).unwrap();
        assert_eq!(nats.max_payload(), 64);
        assert!(nats.publish("a", None, &[], &[0; 65]).is_err());
        nats.subscribe("a.b", Some("q")).unwrap();
        let msg = nats.next_msg(WAIT).unwrap().unwrap();
        assert_eq!((msg.reply.as_deref(), &msg.payload[..], msg.headers.len()), (Some("re.ply"), &b"hi"[..], 0));
        assert_eq!(nats.next_msg(WAIT).unwrap().unwrap().payload, b"x");
        let e = nats.next_msg(WAIT).unwrap_err();
        assert!(e.to_string().contains("Stale Connection"), "{e}");
        server.join().unwrap();
    }

    #[test]
    fn header_blocks_parse_status_and_fields() {
        let (status, headers) = parse_headers(b"NATS/1.0 503\r\n\r\n").unwrap();
        assert_eq!((status, headers.len()), (Some(503), 0));
        let (status, headers) = parse_headers(b"NATS/1.0\r\nA: 1\r\nB:two words \r\n\r\n").unwrap();
        assert_eq!(status, None);
        assert_eq!(headers, [("A".to_string(), "1".to_string()), ("B".to_string(), "two words".to_string())]);
        assert!(parse_headers(b"HTTP/1.1 200\r\n\r\n").is_err());
        assert_ne!(unique(), unique());
    }
}
