//! A minimal blocking HTTP/1.1 client over [`TcpStream`], and a reader for
//! server-sent event streams.
//!
//! Every read and write has a timeout, so a hung server fails a test instead
//! of hanging it.

use std::fmt::Write as _;
use std::io::{self, BufRead, BufReader, ErrorKind, Read, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// How long a single read or write may block before the request fails.
pub const IO_TIMEOUT: Duration = Duration::from_secs(30);

/// A complete HTTP response.
#[derive(Debug, Clone)]
pub struct Response {
    /// The status code.
    pub status: u16,
    /// The header fields in the order received.
    pub headers: Vec<(String, String)>,
    /// The body, with any transfer coding removed.
    pub body: Vec<u8>,
}

impl Response {
    /// The value of the first header field called `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body parsed as JSON; panics with the body text if it is not JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("response body is not JSON ({e}): {:?}", self.text()))
    }

    /// The body as text, with invalid UTF-8 replaced.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// An HTTP/1.1 client for one server that keeps its connection alive between requests.
#[derive(Debug)]
pub struct Client {
    addr: SocketAddr,
    timeout: Duration,
    conn: Option<BufReader<TcpStream>>,
}

/// Why an exchange failed: `Stale` failures on a reused connection are retried once.
enum Failure {
    /// The connection was found closed before any response arrived.
    Stale(io::Error),
    /// Anything else.
    Fatal(io::Error),
}

impl Failure {
    fn into_inner(self) -> io::Error {
        match self {
            Failure::Stale(e) | Failure::Fatal(e) => e,
        }
    }
}

impl Client {
    /// A client for the server at `addr`, with 30 s read and write timeouts.
    pub fn new(addr: SocketAddr) -> Client {
        Client::with_timeout(addr, IO_TIMEOUT)
    }

    /// A client for the server at `addr` whose connects, reads and writes time out after `timeout`.
    pub fn with_timeout(addr: SocketAddr, timeout: Duration) -> Client {
        Client {
            addr,
            timeout,
            conn: None,
        }
    }

    /// POSTs `body` as `application/json`.
    pub fn post(&mut self, path: &str, body: &[u8]) -> io::Result<Response> {
        self.request("POST", path, &[("Content-Type", "application/json")], body)
    }

    /// GETs `path`.
    pub fn get(&mut self, path: &str) -> io::Result<Response> {
        self.request("GET", path, &[], &[])
    }

    /// Sends any request. `Host` and `Content-Length` are added unless `headers` has them
    /// (`Content-Length` only for a non-empty body or POST/PUT/PATCH, and not alongside a
    /// caller's `Transfer-Encoding`). A kept-alive connection is reused; if it turns out to
    /// be closed, the request is sent once more on a new connection.
    pub fn request(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> io::Result<Response> {
        let message = encode_request(self.addr, method, path, headers, body);
        let reused = self.conn.is_some();
        match self.exchange(method, &message) {
            Err(Failure::Stale(_)) if reused => self.exchange(method, &message),
            result => result,
        }
        .map_err(Failure::into_inner)
    }

    /// Sends `message` on the kept connection (or a new one) and reads the response.
    fn exchange(&mut self, method: &str, message: &[u8]) -> Result<Response, Failure> {
        let mut conn = match self.conn.take() {
            Some(conn) => conn,
            None => connect(self.addr, self.timeout).map_err(Failure::Fatal)?,
        };
        conn.get_mut().write_all(message).map_err(Failure::Stale)?;
        let head = match read_head(&mut conn) {
            Ok(Some(head)) => head,
            Ok(None) => return Err(Failure::Stale(eof("connection closed before a response"))),
            Err(e) if is_disconnect(&e) => return Err(Failure::Stale(e)),
            Err(e) => return Err(Failure::Fatal(e)),
        };
        let framing = framing(method, &head).map_err(Failure::Fatal)?;
        let body = read_body(&mut conn, &framing).map_err(Failure::Fatal)?;
        if head.keep_alive && !matches!(framing, Framing::UntilEof) {
            self.conn = Some(conn);
        }
        Ok(Response {
            status: head.status,
            headers: head.headers,
            body,
        })
    }
}

/// A server-sent event stream on its own connection.
#[derive(Debug)]
pub struct Sse {
    stream: TcpStream,
    /// Bytes received but not yet passed through the transfer decoding.
    raw: Vec<u8>,
    /// Where the transfer decoding stands.
    state: Chunking,
    /// Decoded bytes not yet split into lines.
    text: Vec<u8>,
    /// The `data:` lines of the event being read.
    data: Vec<String>,
}

/// The incremental transfer decoder's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Chunking {
    /// Not chunked: every byte is payload until EOF.
    Identity,
    /// Expecting a chunk-size line.
    Size,
    /// This many payload bytes of the current chunk remain.
    Data(usize),
    /// Expecting the line break that ends a chunk.
    DataEnd,
    /// The last chunk has been seen.
    Done,
}

impl Sse {
    /// Opens `GET path` with `Accept: text/event-stream`. Returns the status and headers
    /// (the body is empty on 200; otherwise it is read and the stream is `None`) and, on
    /// 200, the stream.
    pub fn open(addr: SocketAddr, path: &str) -> io::Result<(Response, Option<Sse>)> {
        Sse::open_with(addr, path, &[])
    }

    /// [`Sse::open`] with more header fields (an `Authorization`, say).
    pub fn open_with(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> io::Result<(Response, Option<Sse>)> {
        let mut conn = connect(addr, IO_TIMEOUT)?;
        let mut fields = vec![("Accept", "text/event-stream")];
        fields.extend_from_slice(headers);
        let message = encode_request(addr, "GET", path, &fields, &[]);
        conn.get_mut().write_all(&message)?;
        let head =
            read_head(&mut conn)?.ok_or_else(|| eof("connection closed before a response"))?;
        if head.status != 200 {
            let body = read_body(&mut conn, &framing("GET", &head)?)?;
            let response = Response {
                status: head.status,
                headers: head.headers,
                body,
            };
            return Ok((response, None));
        }
        let state = if is_chunked(&head) {
            Chunking::Size
        } else {
            Chunking::Identity
        };
        let mut sse = Sse {
            raw: conn.buffer().to_vec(),
            stream: conn.into_inner(),
            state,
            text: Vec::new(),
            data: Vec::new(),
        };
        sse.decode()?;
        let response = Response {
            status: head.status,
            headers: head.headers,
            body: Vec::new(),
        };
        Ok((response, Some(sse)))
    }

    /// Waits up to `timeout` for the next event that has data and returns its `data:` lines
    /// joined with `\n`; `Ok(None)` on timeout. Comments and other fields are skipped. An
    /// error once the stream has ended.
    pub fn next_data(&mut self, timeout: Duration) -> io::Result<Option<String>> {
        let deadline = Instant::now() + timeout;
        let mut buf = [0u8; 8192];
        loop {
            if let Some(data) = self.next_event() {
                return Ok(Some(data));
            }
            if self.state == Chunking::Done {
                return Err(eof("event stream ended"));
            }
            let remaining = deadline.saturating_duration_since(Instant::now());
            if remaining.is_zero() {
                return Ok(None);
            }
            self.stream.set_read_timeout(Some(remaining))?;
            match self.stream.read(&mut buf) {
                Ok(0) => return Err(eof("event stream closed")),
                Ok(n) => {
                    self.raw.extend_from_slice(&buf[..n]);
                    self.decode()?;
                }
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    return Ok(None)
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// Moves as much of `raw` as possible through the transfer decoding into `text`.
    fn decode(&mut self) -> io::Result<()> {
        loop {
            match self.state {
                Chunking::Identity => {
                    self.text.append(&mut self.raw);
                    return Ok(());
                }
                Chunking::Size => {
                    let Some(line) = take_line(&mut self.raw) else {
                        return Ok(());
                    };
                    self.state = match parse_chunk_size(&String::from_utf8_lossy(&line))? {
                        0 => Chunking::Done,
                        size => Chunking::Data(size),
                    };
                }
                Chunking::Data(left) => {
                    if self.raw.is_empty() {
                        return Ok(());
                    }
                    let n = left.min(self.raw.len());
                    self.text.extend(self.raw.drain(..n));
                    self.state = if n == left {
                        Chunking::DataEnd
                    } else {
                        Chunking::Data(left - n)
                    };
                }
                Chunking::DataEnd => {
                    let Some(line) = take_line(&mut self.raw) else {
                        return Ok(());
                    };
                    if !line.is_empty() {
                        return Err(invalid("chunk data longer than its size"));
                    }
                    self.state = Chunking::Size;
                }
                Chunking::Done => return Ok(()),
            }
        }
    }

    /// Consumes complete lines of `text` until an event with data ends, and returns its data.
    fn next_event(&mut self) -> Option<String> {
        while let Some(line) = take_line(&mut self.text) {
            let line = String::from_utf8_lossy(&line);
            if line.is_empty() {
                if !self.data.is_empty() {
                    return Some(std::mem::take(&mut self.data).join("\n"));
                }
            } else if !line.starts_with(':') {
                let (field, value) = match line.split_once(':') {
                    Some((field, value)) => (field, value.strip_prefix(' ').unwrap_or(value)),
                    None => (&*line, ""),
                };
                if field == "data" {
                    self.data.push(value.to_owned());
                }
            }
        }
        None
    }
}

/// Connects to `addr` with `timeout` on the connect and on every read and write.
fn connect(addr: SocketAddr, timeout: Duration) -> io::Result<BufReader<TcpStream>> {
    let stream = TcpStream::connect_timeout(&addr, timeout)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    stream.set_nodelay(true)?;
    Ok(BufReader::new(stream))
}

/// Serialises a request, adding `Host` and `Content-Length` where the caller did not.
fn encode_request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Vec<u8> {
    let has = |name: &str| headers.iter().any(|(n, _)| n.eq_ignore_ascii_case(name));
    let mut head = format!("{method} {path} HTTP/1.1\r\n");
    if !has("host") {
        let _ = write!(head, "Host: {addr}\r\n");
    }
    for (name, value) in headers {
        let _ = write!(head, "{name}: {value}\r\n");
    }
    let needs_length = !body.is_empty() || matches!(method, "POST" | "PUT" | "PATCH");
    if needs_length && !has("content-length") && !has("transfer-encoding") {
        let _ = write!(head, "Content-Length: {}\r\n", body.len());
    }
    head.push_str("\r\n");
    let mut message = head.into_bytes();
    message.extend_from_slice(body);
    message
}

/// A response's status line and header fields.
struct Head {
    status: u16,
    headers: Vec<(String, String)>,
    /// Whether the server lets the connection be reused.
    keep_alive: bool,
}

/// Reads a status line and header fields; `Ok(None)` if the connection closed before any byte.
fn read_head(reader: &mut impl BufRead) -> io::Result<Option<Head>> {
    let Some(status_line) = read_line(reader)? else {
        return Ok(None);
    };
    let mut parts = status_line.split_whitespace();
    let version = parts.next().filter(|v| v.starts_with("HTTP/"));
    let status = parts.next().and_then(|s| s.parse::<u16>().ok());
    let (Some(version), Some(status)) = (version, status) else {
        return Err(invalid(format!("bad status line {status_line:?}")));
    };
    let http10 = version == "HTTP/1.0";
    let mut headers = Vec::new();
    loop {
        let line = read_line(reader)?.ok_or_else(|| eof("connection closed in the headers"))?;
        if line.is_empty() {
            break;
        }
        let (name, value) = line
            .split_once(':')
            .ok_or_else(|| invalid(format!("bad header line {line:?}")))?;
        headers.push((name.trim().to_owned(), value.trim().to_owned()));
    }
    let connection = |token: &str| {
        headers.iter().any(|(n, v)| {
            n.eq_ignore_ascii_case("connection")
                && v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token))
        })
    };
    let keep_alive = !connection("close") && (!http10 || connection("keep-alive"));
    Ok(Some(Head {
        status,
        headers,
        keep_alive,
    }))
}

/// How a response body is delimited.
enum Framing {
    /// No body (HEAD, 1xx, 204, 304).
    Empty,
    /// `Transfer-Encoding: chunked`.
    Chunked,
    /// `Content-Length`.
    Length(usize),
    /// Neither: the body runs to EOF.
    UntilEof,
}

/// Works out how the body of `head`, answering a `method` request, is delimited.
fn framing(method: &str, head: &Head) -> io::Result<Framing> {
    if method.eq_ignore_ascii_case("HEAD") || matches!(head.status, 100..=199 | 204 | 304) {
        return Ok(Framing::Empty);
    }
    if is_chunked(head) {
        return Ok(Framing::Chunked);
    }
    let has_transfer_coding = head
        .headers
        .iter()
        .any(|(n, _)| n.eq_ignore_ascii_case("transfer-encoding"));
    if has_transfer_coding {
        return Ok(Framing::UntilEof);
    }
    match head
        .headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
    {
        Some((_, value)) => value
            .parse()
            .map(Framing::Length)
            .map_err(|_| invalid(format!("bad Content-Length {value:?}"))),
        None => Ok(Framing::UntilEof),
    }
}

/// Whether the last transfer coding of `head` is `chunked`.
fn is_chunked(head: &Head) -> bool {
    head.headers
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case("transfer-encoding"))
        .flat_map(|(_, v)| v.split(','))
        .last()
        .is_some_and(|coding| coding.trim().eq_ignore_ascii_case("chunked"))
}

/// Reads a body delimited as `framing` says.
fn read_body(reader: &mut impl BufRead, framing: &Framing) -> io::Result<Vec<u8>> {
    let mut body = Vec::new();
    match *framing {
        Framing::Empty => {}
        Framing::Length(len) => {
            body.resize(len, 0);
            reader.read_exact(&mut body)?;
        }
        Framing::UntilEof => {
            reader.read_to_end(&mut body)?;
        }
        Framing::Chunked => loop {
            let line =
                read_line(reader)?.ok_or_else(|| eof("connection closed in a chunked body"))?;
            let size = parse_chunk_size(&line)?;
            if size == 0 {
                // Skip any trailer fields up to the blank line that ends the body.
                while !read_line(reader)?
                    .ok_or_else(|| eof("connection closed in the trailers"))?
                    .is_empty()
                {}
                break;
            }
            let start = body.len();
            body.resize(start + size, 0);
            reader.read_exact(&mut body[start..])?;
            if read_line(reader)?.is_some_and(|rest| !rest.is_empty()) {
                return Err(invalid("chunk data longer than its size"));
            }
        },
    }
    Ok(body)
}

/// Parses a chunk-size line (hex digits, optionally followed by `;` extensions).
fn parse_chunk_size(line: &str) -> io::Result<usize> {
    let digits = line.split(';').next().unwrap_or_default().trim();
    usize::from_str_radix(digits, 16).map_err(|_| invalid(format!("bad chunk size line {line:?}")))
}

/// Reads one line without its LF or CRLF; `Ok(None)` at EOF before any byte.
fn read_line(reader: &mut impl BufRead) -> io::Result<Option<String>> {
    let mut line = Vec::new();
    if reader.read_until(b'\n', &mut line)? == 0 {
        return Ok(None);
    }
    if line.pop() != Some(b'\n') {
        return Err(eof("connection closed mid-line"));
    }
    if line.last() == Some(&b'\r') {
        line.pop();
    }
    Ok(Some(String::from_utf8_lossy(&line).into_owned()))
}

/// Removes the first complete line from `buf` and returns it without its LF or CRLF.
fn take_line(buf: &mut Vec<u8>) -> Option<Vec<u8>> {
    let end = buf.iter().position(|&b| b == b'\n')?;
    let mut line: Vec<u8> = buf.drain(..=end).collect();
    line.pop();
    if line.last() == Some(&b'\r') {
        line.pop();
    }
    Some(line)
}

/// Whether `e` says the peer dropped the connection.
fn is_disconnect(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        ErrorKind::ConnectionReset | ErrorKind::ConnectionAborted | ErrorKind::BrokenPipe
    )
}

fn eof(message: &str) -> io::Error {
    io::Error::new(ErrorKind::UnexpectedEof, message)
}

fn invalid(message: impl Into<String>) -> io::Error {
    io::Error::new(ErrorKind::InvalidData, message.into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::thread;

    /// A request as the test server saw it.
    struct Seen {
        method: String,
        path: String,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
    }

    impl Seen {
        fn header(&self, name: &str) -> Option<&str> {
            self.headers
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.as_str())
        }
    }

    /// Reads one `Content-Length`-framed request; `None` once the client has closed.
    fn read_request(reader: &mut BufReader<TcpStream>) -> Option<Seen> {
        let request_line = read_line(reader).ok()??;
        let mut parts = request_line.split(' ');
        let method = parts.next()?.to_owned();
        let path = parts.next()?.to_owned();
        let mut headers = Vec::new();
        loop {
            let line = read_line(reader).ok()??;
            if line.is_empty() {
                break;
            }
            let (n, v) = line.split_once(':')?;
            headers.push((n.trim().to_owned(), v.trim().to_owned()));
        }
        let len = headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
            .map_or(0, |(_, v)| v.parse().unwrap());
        let mut body = vec![0; len];
        reader.read_exact(&mut body).ok()?;
        Some(Seen {
            method,
            path,
            headers,
            body,
        })
    }

    /// Starts a server that answers every request on every connection with `respond`, which
    /// writes the raw response and returns whether to keep the connection open. Returns the
    /// address and a count of accepted connections.
    fn serve<F>(respond: F) -> (SocketAddr, Arc<AtomicUsize>)
    where
        F: Fn(&Seen, &mut TcpStream) -> bool + Send + Sync + 'static,
    {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&accepted);
        let respond = Arc::new(respond);
        thread::spawn(move || {
            for stream in listener.incoming() {
                let mut stream = stream.unwrap();
                counter.fetch_add(1, Ordering::SeqCst);
                let respond = Arc::clone(&respond);
                thread::spawn(move || {
                    let mut reader = BufReader::new(stream.try_clone().unwrap());
                    while let Some(seen) = read_request(&mut reader) {
                        if !respond(&seen, &mut stream) {
                            break;
                        }
                    }
                });
            }
        });
        (addr, accepted)
    }

    /// Answers with the request echoed as JSON, framed by Content-Length.
    fn echo(seen: &Seen, stream: &mut TcpStream) -> bool {
        let body = serde_json::json!({
            "method": seen.method,
            "path": seen.path,
            "contentType": seen.header("content-type"),
            "body": String::from_utf8_lossy(&seen.body),
        })
        .to_string();
        let response = format!(
            "HTTP/1.1 201 Created\r\nX-Echo: yes\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        stream.write_all(response.as_bytes()).unwrap();
        true
    }

    #[test]
    fn content_length_responses_reuse_the_connection() {
        let (addr, accepted) = serve(echo);
        let mut client = Client::new(addr);
        let response = client.post("/rpc", br#"{"a":1}"#).unwrap();
        assert_eq!(response.status, 201);
        assert_eq!(response.header("x-ECHO"), Some("yes"));
        assert_eq!(response.header("missing"), None);
        let json = response.json();
        assert_eq!(json["method"], "POST");
        assert_eq!(json["path"], "/rpc");
        assert_eq!(json["contentType"], "application/json");
        assert_eq!(json["body"], r#"{"a":1}"#);

        let json = client.get("/health").unwrap().json();
        assert_eq!(json["method"], "GET");
        assert_eq!(json["body"], "");

        let response = client
            .request("PUT", "/x", &[("Content-Type", "text/plain")], b"raw")
            .unwrap();
        assert_eq!(response.json()["contentType"], "text/plain");
        assert_eq!(response.json()["body"], "raw");
        assert_eq!(accepted.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn chunked_responses_are_decoded() {
        let (addr, accepted) = serve(|_, stream| {
            let parts: [&[u8]; 3] = [
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel",
                b"lo\r\n7;ext=1\r\n, world\r\n",
                b"0\r\nX-Trailer: t\r\n\r\n",
            ];
            for part in parts {
                stream.write_all(part).unwrap();
                stream.flush().unwrap();
                thread::sleep(Duration::from_millis(10));
            }
            true
        });
        let mut client = Client::new(addr);
        for _ in 0..2 {
            let response = client.get("/").unwrap();
            assert_eq!(response.status, 200);
            assert_eq!(response.text(), "hello, world");
        }
        assert_eq!(accepted.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn unframed_responses_run_to_eof() {
        let (addr, accepted) = serve(|_, stream| {
            stream
                .write_all(b"HTTP/1.1 404 Not Found\r\n\r\nnot here")
                .unwrap();
            false
        });
        let mut client = Client::new(addr);
        for _ in 0..2 {
            let response = client.get("/nope").unwrap();
            assert_eq!(response.status, 404);
            assert_eq!(response.text(), "not here");
        }
        assert_eq!(accepted.load(Ordering::SeqCst), 2);
    }

    #[test]
    fn a_closed_kept_connection_is_replaced() {
        // Advertises keep-alive but closes after each response.
        let (addr, accepted) = serve(|seen, stream| {
            echo(seen, stream);
            false
        });
        let mut client = Client::new(addr);
        for i in 0..3 {
            let body = format!("{i}");
            let response = client.post("/", body.as_bytes()).unwrap();
            assert_eq!(response.json()["body"], body);
            thread::sleep(Duration::from_millis(20));
        }
        assert_eq!(accepted.load(Ordering::SeqCst), 3);
    }

    #[test]
    fn connection_close_is_honoured() {
        let (addr, accepted) = serve(|_, stream| {
            stream
                .write_all(b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok")
                .unwrap();
            true
        });
        let mut client = Client::new(addr);
        assert_eq!(client.get("/").unwrap().text(), "ok");
        assert_eq!(client.get("/").unwrap().text(), "ok");
        assert_eq!(accepted.load(Ordering::SeqCst), 2);
    }

    #[test]
    fn non_json_bodies_panic_with_the_text() {
        let response = Response {
            status: 200,
            headers: Vec::new(),
            body: b"plain words".to_vec(),
        };
        let panic = std::panic::catch_unwind(|| response.json()).unwrap_err();
        let message = panic.downcast_ref::<String>().unwrap();
        assert!(message.contains("plain words"), "{message}");
    }

    #[test]
    fn sse_events_are_read_across_chunks() {
        let (addr, _) = serve(|seen, stream| {
            if seen.path != "/events" {
                let body = "no such stream";
                let head = format!(
                    "HTTP/1.1 404 Not Found\r\nContent-Length: {}\r\n\r\n",
                    body.len()
                );
                stream.write_all(head.as_bytes()).unwrap();
                stream.write_all(body.as_bytes()).unwrap();
                return true;
            }
            assert_eq!(seen.header("accept"), Some("text/event-stream"));
            let chunk = |stream: &mut TcpStream, text: &str| {
                let framed = format!("{:x}\r\n{text}\r\n", text.len());
                stream.write_all(framed.as_bytes()).unwrap();
            };
            // Head and first chunk in one write; then events split mid-line and mid-chunk.
            let first = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n\
                         Transfer-Encoding: chunked\r\n\r\n6\r\n: hi\r\n\r\n";
            stream.write_all(first.as_bytes()).unwrap();
            chunk(stream, "event: message\nid: 1\ndata: {\"a\":");
            thread::sleep(Duration::from_millis(30));
            chunk(stream, "1}\n\n");
            chunk(
                stream,
                "data: line one\r\ndata:line two\r\n\r\n: keepalive\n\nretry: 5\n\n",
            );
            let framed = format!("{:x}\r\ndata: late\n\n\r\n", "data: late\n\n".len());
            let (a, b) = framed.as_bytes().split_at(3);
            stream.write_all(a).unwrap();
            thread::sleep(Duration::from_millis(300));
            stream.write_all(b).unwrap();
            chunk(stream, "data: x\n\ndata: y\n\n");
            stream.write_all(b"0\r\n\r\n").unwrap();
            true
        });

        let (response, stream) = Sse::open(addr, "/missing").unwrap();
        assert_eq!(response.status, 404);
        assert_eq!(response.text(), "no such stream");
        assert!(stream.is_none());

        let (response, stream) = Sse::open(addr, "/events").unwrap();
        assert_eq!(response.status, 200);
        assert_eq!(response.header("content-type"), Some("text/event-stream"));
        assert!(response.body.is_empty());
        let mut sse = stream.unwrap();
        let wait = Duration::from_secs(5);
        assert_eq!(sse.next_data(wait).unwrap().as_deref(), Some(r#"{"a":1}"#));
        assert_eq!(
            sse.next_data(wait).unwrap().as_deref(),
            Some("line one\nline two")
        );
        assert_eq!(sse.next_data(Duration::from_millis(50)).unwrap(), None);
        assert_eq!(sse.next_data(wait).unwrap().as_deref(), Some("late"));
        assert_eq!(sse.next_data(wait).unwrap().as_deref(), Some("x"));
        assert_eq!(sse.next_data(Duration::ZERO).unwrap().as_deref(), Some("y"));
        let end = sse.next_data(wait).unwrap_err();
        assert_eq!(end.kind(), ErrorKind::UnexpectedEof);
    }
}
