{% if c.https %}
//! Delivery of queued messages: `poll://` addresses to connected SSE streams, `http://` and
//! `https://` addresses by one POST each.
{% else %}
//! Delivery of queued messages: `poll://` addresses to connected SSE streams, `http://`
//! addresses by one POST each.
{% endif %}
//!
//! At least once: a message stays in the outbox until a stream wrote it to its connection or a
//! push endpoint answered 2xx. While a stream or a push has it, the row is held (not due again
//! for a while), so a stream that drops before writing it, or a process killed meanwhile, only
//! delays it. An execute that finds no stream is dropped (rule R6 queues a new one while the task
//! is pending); anything else that cannot be delivered is retried with exponential backoff, and
//! the failed messages of one address are capped (`messages-retry-cap`) so a dead endpoint
//! cannot grow the outbox without bound. The loop sleeps until a commit queues a message, a
//! stream connects or writes, or a deferred message falls due: an idle server does no work.

use crate::clock::now;
use crate::config::Settings;
use crate::outbox::{backoff, Deliveries, Outgoing, BACKOFF_MAX_MS, BACKOFF_MIN_MS};
use crate::store::Store;
use http_body_util::BodyExt;
use hyper::body::{Body, Bytes, Frame};
use std::collections::HashMap;
use std::convert::Infallible;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::sync::{mpsc, Notify};

/// Messages one stream may have waiting before it counts as unable to take more.
const STREAM_BUFFER: usize = 100;
/// Messages handled per pass.
const BATCH: usize = 256;
/// How long a message handed to a stream is held before it is sent again, should the stream
/// close before writing it.
const STREAM_HOLD_MS: i64 = 10_000;

/// The connected SSE streams, by worker group.
#[derive(Default)]
pub struct Hub {
    groups: Mutex<HashMap<String, Vec<Stream>>>,
    /// Notified when a stream connects, so queued messages for it go out, or wrote a message.
    connected: Notify,
    /// `(key, message)` of the messages streams wrote, for the loop to record as delivered.
    written: Mutex<Vec<(String, String)>>,
    next_key: AtomicU64,
}

/// A message on its way to a stream: the SSE frame, and the outbox row it came from.
struct Sent {
    frame: Bytes,
    key: String,
    message: String,
}

struct Stream {
    key: u64,
    id: String,
    frames: mpsc::Sender<Sent>,
}

impl Hub {
    /// Registers a stream for `group`/`id`; it is removed when the response body is dropped.
    pub fn connect(self: &Arc<Self>, group: &str, id: &str) -> Events {
        let (frames, rx) = mpsc::channel(STREAM_BUFFER);
        let key = self.next_key.fetch_add(1, Ordering::Relaxed);
        let stream = Stream { key, id: id.to_string(), frames };
        self.groups.lock().expect("hub lock").entry(group.to_string()).or_default().push(stream);
        self.connected.notify_one();
        Events { rx, hub: self.clone(), group: group.to_string(), key }
    }

    fn disconnect(&self, group: &str, key: u64) {
        let mut groups = self.groups.lock().expect("hub lock");
        if let Some(streams) = groups.get_mut(group) {
            streams.retain(|s| s.key != key);
            if streams.is_empty() {
                groups.remove(group);
            }
        }
    }

    /// Hands a message to the stream a `poll://cast@group[/id]` address names: `uni` only to the
    /// stream with that id; `any` to that id if connected, else to any stream of the group.
    /// Returns whether a stream took it.
    fn send(&self, address: &str, key: &str, message: &str) -> bool {
        let Some((cast, path)) = address.strip_prefix("poll://").and_then(|a| a.split_once('@')) else {
            return false;
        };
        let (group, id) = match path.split_once('/') {
            Some((g, id)) => (g, Some(id)),
            None => (path, None),
        };
        let groups = self.groups.lock().expect("hub lock");
        let Some(streams) = groups.get(group) else { return false };
        let sent = || Sent {
            frame: Bytes::from(format!("data: {message}\n\n")),
            key: key.to_string(),
            message: message.to_string(),
        };
        let named = streams.iter().filter(|s| Some(s.id.as_str()) == id);
        if named.clone().any(|s| s.frames.try_send(sent()).is_ok()) {
            return true;
        }
        if cast != "any" || streams.is_empty() {
            return false;
        }
        let start = (self.next_key.fetch_add(1, Ordering::Relaxed) as usize) % streams.len();
        streams.iter().cycle().skip(start).take(streams.len()).any(|s| s.frames.try_send(sent()).is_ok())
    }

    /// Takes the `(key, message)` of every message a stream wrote since the last call.
    fn take_written(&self) -> Vec<(String, String)> {
        std::mem::take(&mut *self.written.lock().expect("hub lock"))
    }
}

{% if !c.sqlite() %}
impl Hub {
    /// The streams this process holds: their groups, and `group/id` of each.
    pub fn streams(&self) -> (Vec<String>, Vec<String>) {
        let groups = self.groups.lock().expect("hub lock");
        let names = groups.keys().cloned().collect();
        let streams = groups.iter().flat_map(|(g, streams)| streams.iter().map(move |s| format!("{g}/{}", s.id))).collect();
        (names, streams)
    }
{% if c.mysql() %}

    /// Whether any stream is connected to this process.
    pub fn has_streams(&self) -> bool {
        !self.groups.lock().expect("hub lock").is_empty()
    }
{% endif %}
}

{% endif %}
/// The body of a `GET /poll` response: one `data:` event per message.
pub struct Events {
    rx: mpsc::Receiver<Sent>,
    hub: Arc<Hub>,
    group: String,
    key: u64,
}

impl Body for Events {
    type Data = Bytes;
    type Error = Infallible;

    /// Yields the next frame to hyper, which writes it to the connection; from here on the
    /// message counts as delivered.
    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.rx.poll_recv(cx).map(|sent| {
            sent.map(|Sent { frame, key, message }| {
                self.hub.written.lock().expect("hub lock").push((key, message));
                self.hub.connected.notify_one();
                Ok(Frame::data(frame))
            })
        })
    }
}

impl Drop for Events {
    fn drop(&mut self) {
        self.hub.disconnect(&self.group, self.key);
    }
}

/// How often a paused loop (debug.start) looks whether it was resumed.
const PAUSED_POLL: Duration = Duration::from_millis(50);

/// The delivery loop. debug.start pauses it, as it pauses the rules, so debug.snap shows the
/// outbox exactly as the steps left it.
pub async fn run(store: Store, hub: Arc<Hub>, enqueued: Arc<Notify>, settings: Arc<Settings>) {
    loop {
        if settings.paused.load(Ordering::Relaxed) {
            tokio::time::sleep(PAUSED_POLL).await;
            continue;
        }
        let written = hub.take_written();
        if !written.is_empty() {
{% if c.metrics %}
            crate::metrics::delivered(crate::metrics::Delivery::Success, written.len());
{% endif %}
            record(&store, Deliveries { done: written, ..Deliveries::default() }).await;
        }
        let at = now();
{% if c.sqlite() %}
        let next = match store.outbox(at, BATCH).await {
            Ok(rows) => {
                let full = rows.len() == BATCH;
                deliver(&store, &hub, {% if c.push %}&settings, &enqueued, {% endif %}rows).await;
                if full {
                    continue;
                }
                store.next_deferred().await.ok().flatten()
            }
{% else %}
        // Claims only what this replica can deliver: pushes, and poll:// messages for its streams.
        let next = match store.outbox(at, BATCH, hub.streams()).await {
            Ok((rows, next)) => {
                let full = rows.len() == BATCH;
                deliver(&store, &hub, {% if c.push %}&settings, &enqueued, {% endif %}rows).await;
                if full {
                    continue;
                }
{% if c.mysql() %}
                // MySQL announces nothing across processes: while this replica holds streams it
                // looks again every messages-poll-interval ms for what other replicas queued for
                // them; without streams it sleeps until its own commits or deadlines wake it.
                let soon = now() + store.poll_interval();
                if hub.has_streams() { Some(next.map_or(soon, |n| n.min(soon))) } else { next }
{% else %}
                next
{% endif %}
            }
{% endif %}
            Err(e) => {
                crate::log!(Error, "cannot read the outbox: {e}");
                Some(now() + BACKOFF_MIN_MS)
            }
        };
        let wait = next.map(|n| Duration::from_millis((n - now()).clamp(0, BACKOFF_MAX_MS) as u64));
        tokio::select! {
            _ = enqueued.notified() => {}
            _ = hub.connected.notified() => {}
            _ = async {
                match wait {
                    Some(w) => tokio::time::sleep(w).await,
                    None => std::future::pending().await,
                }
            } => {}
        }
    }
}

/// One pass over due messages.
async fn deliver(store: &Store, hub: &Arc<Hub>, {% if c.push %}settings: &Settings, wake: &Arc<Notify>, {% endif %}rows: Vec<Outgoing>) {
    let mut out = Deliveries::default();
{% if c.push %}
    let mut pushes = Vec::new();
{% endif %}
    for Outgoing { key, address, message, attempts } in rows {
{% if c.metrics %}
        crate::metrics::message(&key);
{% endif %}
        if address.starts_with("poll://") {
            if hub.send(&address, &key, &message) {
                out.held.push((key, message, now() + STREAM_HOLD_MS));
            } else if key.starts_with("execute:") {
{% if c.metrics %}
                crate::metrics::delivered(crate::metrics::Delivery::Dropped, 1);
{% endif %}
                out.done.push((key, message));
            } else {
{% if c.metrics %}
                crate::metrics::delivered(crate::metrics::Delivery::Error, 1);
{% endif %}
                out.failed.push((key, message, now() + backoff(attempts)));
            }
            continue;
        }
{% if c.push %}
        if address.starts_with("http://"){% if c.https %} || address.starts_with("https://"){% endif %} {
            // Held for the length of the attempt, so the next pass does not send it again.
            out.held.push((key.clone(), message.clone(), now() + settings.push_timeout));
            pushes.push(Outgoing { key, address, message, attempts });
            continue;
        }
{% endif %}
        crate::log!(Warn, "this server cannot deliver to {address}");
        if key.starts_with("execute:") {
{% if c.metrics %}
            crate::metrics::delivered(crate::metrics::Delivery::Dropped, 1);
{% endif %}
            out.done.push((key, message));
        } else {
{% if c.metrics %}
            crate::metrics::delivered(crate::metrics::Delivery::Error, 1);
{% endif %}
            out.failed.push((key, message, now() + BACKOFF_MAX_MS));
        }
    }
    // The holds are on record before any push starts, so a fast outcome is not overwritten.
    record(store, out).await;
{% if c.push %}
    for outgoing in pushes {
        tokio::spawn(push_one(store.clone(), wake.clone(), outgoing, settings.push_timeout{% if c.https %}, settings.tls.clone(){% endif %}));
    }
{% endif %}
}
{% if c.push %}

/// One push attempt, its outcome recorded: delivered on a 2xx, else failed with backoff.
async fn push_one(store: Store, wake: Arc<Notify>, Outgoing { key, address, message, attempts }: Outgoing, timeout: i64{% if c.https %}, tls: crate::tls::Tls{% endif %}) {
    let pushed = tokio::time::timeout(Duration::from_millis(timeout as u64), push({% if c.https %}&tls, {% endif %}&address, &message)).await;
    let outcome = match pushed {
{% if c.metrics %}
        Ok(Ok(true)) => {
            crate::metrics::delivered(crate::metrics::Delivery::Success, 1);
            Deliveries { done: vec![(key, message)], ..Deliveries::default() }
        }
{% else %}
        Ok(Ok(true)) => Deliveries { done: vec![(key, message)], ..Deliveries::default() },
{% endif %}
        failure => {
{% if c.metrics %}
            crate::metrics::delivered(crate::metrics::Delivery::Error, 1);
{% endif %}
            let why = match failure {
                Ok(Ok(_)) => "answered with a non-2xx status".to_string(),
                Ok(Err(e)) => e,
                Err(_) => format!("no answer within {timeout} ms"),
            };
            crate::log!(Warn, "push to {address} failed (attempt {}): {why}", attempts + 1);
            Deliveries { failed: vec![(key, message, now() + backoff(attempts))], ..Deliveries::default() }
        }
    };
    let failed = !outcome.failed.is_empty();
    record(&store, outcome).await;
    // The loop sleeps until the push's hold runs out (the request timeout); a failure that came
    // sooner is due again after its backoff, so the loop looks again now.
    if failed {
        wake.notify_one();
    }
}
{% endif %}

/// Records what became of messages, and says when the retry cap dropped some.
async fn record(store: &Store, deliveries: Deliveries) {
    if deliveries.is_empty() {
        return;
    }
    match store.record_delivery(deliveries).await {
        Ok(0) => {}
{% if c.metrics %}
        Ok(dropped) => {
            crate::metrics::delivered(crate::metrics::Delivery::Dropped, dropped);
            crate::log!(Warn, "dropped {dropped} failed messages over messages-retry-cap")
        }
{% else %}
        Ok(dropped) => crate::log!(Warn, "dropped {dropped} failed messages over messages-retry-cap"),
{% endif %}
        Err(e) => crate::log!(Error, "cannot update the outbox: {e}"),
    }
}
{% if c.push %}

{% if c.https %}
/// POSTs one message to an `http://` or `https://host[:port][/path]` address (TLS verified
/// against the trusted roots); true on a 2xx answer.
async fn push(tls: &crate::tls::Tls, address: &str, message: &str) -> Result<bool, String> {
    let (secure, rest) = match address.strip_prefix("https://") {
        Some(rest) => (true, rest),
        None => (false, &address["http://".len()..]),
    };
{% else %}
/// POSTs one message to an `http://host[:port][/path]` address; true on a 2xx answer.
async fn push(address: &str, message: &str) -> Result<bool, String> {
    let rest = &address["http://".len()..];
{% endif %}
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let connect_to = if authority.contains(':') && !authority.ends_with(']') {
        authority.to_string()
{% if c.https %}
    } else if secure {
        format!("{authority}:443")
{% endif %}
    } else {
        format!("{authority}:80")
    };
    let stream = tokio::net::TcpStream::connect(connect_to).await.map_err(|e| e.to_string())?;
{% if c.https %}
    if secure {
        // The name the certificate must carry: the host without port, an IPv6 one without brackets.
        let host = match authority.strip_prefix('[') {
            Some(v6) => v6.split(']').next().unwrap_or(v6),
            None => authority.split(':').next().unwrap_or(authority),
        };
        return post(tls.connect(host, stream).await?, authority, path, message).await;
    }
    post(stream, authority, path, message).await
}

/// Sends one message as `POST path` over an open connection; true on a 2xx answer.
async fn post<S>(stream: S, authority: &str, path: &str, message: &str) -> Result<bool, String>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
{% endif %}
    let (mut sender, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    let request = hyper::Request::post(path)
        .header(hyper::header::HOST, authority)
        .header(hyper::header::CONTENT_TYPE, "application/json")
        .header(hyper::header::ACCEPT, "*/*")
        .body(http_body_util::Full::new(Bytes::from(message.to_string())))
        .map_err(|e| e.to_string())?;
    let response = sender.send_request(request).await.map_err(|e| e.to_string())?;
    let ok = response.status().is_success();
    let _ = response.into_body().collect().await;
    Ok(ok)
}
{% endif %}
