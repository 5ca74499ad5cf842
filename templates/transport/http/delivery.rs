//! Delivery of queued messages: `poll://` addresses to connected SSE streams, `http://`
//! addresses by one POST each.
//!
//! A message stays in the outbox until a stream took it or a push endpoint answered 2xx. An
//! execute that finds no stream is dropped (the task's retry sends a new one); anything else that
//! cannot be delivered is retried with exponential backoff. The loop sleeps until a commit queues
//! a message, a stream connects, or a deferred message falls due: an idle server does no work.

use crate::http::now;
use crate::config::Settings;
use crate::store::{Outgoing, Store};
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
/// Backoff bounds for a message that could not be delivered.
const BACKOFF_MIN_MS: i64 = 1_000;
const BACKOFF_MAX_MS: i64 = 60_000;
{% if c.push %}
/// How long a push may take before it counts as failed; the message is not retried before.
const PUSH_TIMEOUT: Duration = Duration::from_secs(30);
{% endif %}

/// The connected SSE streams, by worker group.
#[derive(Default)]
pub struct Hub {
    groups: Mutex<HashMap<String, Vec<Stream>>>,
    /// Notified when a stream connects, so queued messages for it go out.
    connected: Notify,
    next_key: AtomicU64,
}

struct Stream {
    key: u64,
    id: String,
    frames: mpsc::Sender<Bytes>,
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

    /// Hands a frame to the stream a `poll://cast@group[/id]` address names: `uni` only to the
    /// stream with that id; `any` to that id if connected, else to any stream of the group.
    /// Returns whether a stream took it.
    fn send(&self, address: &str, frame: &Bytes) -> bool {
        let Some((cast, path)) = address.strip_prefix("poll://").and_then(|a| a.split_once('@')) else {
            return false;
        };
        let (group, id) = match path.split_once('/') {
            Some((g, id)) => (g, Some(id)),
            None => (path, None),
        };
        let groups = self.groups.lock().expect("hub lock");
        let Some(streams) = groups.get(group) else { return false };
        let named = streams.iter().filter(|s| Some(s.id.as_str()) == id);
        if named.clone().any(|s| s.frames.try_send(frame.clone()).is_ok()) {
            return true;
        }
        if cast != "any" || streams.is_empty() {
            return false;
        }
        let start = (self.next_key.fetch_add(1, Ordering::Relaxed) as usize) % streams.len();
        streams.iter().cycle().skip(start).take(streams.len()).any(|s| s.frames.try_send(frame.clone()).is_ok())
    }
}

{% if c.postgres() %}
impl Hub {
    /// The streams this process holds: their groups, and `group/id` of each.
    pub fn streams(&self) -> (Vec<String>, Vec<String>) {
        let groups = self.groups.lock().expect("hub lock");
        let names = groups.keys().cloned().collect();
        let streams = groups.iter().flat_map(|(g, streams)| streams.iter().map(move |s| format!("{g}/{}", s.id))).collect();
        (names, streams)
    }
}

{% endif %}
/// The body of a `GET /poll` response: one `data:` event per message.
pub struct Events {
    rx: mpsc::Receiver<Bytes>,
    hub: Arc<Hub>,
    group: String,
    key: u64,
}

impl Body for Events {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.rx.poll_recv(cx).map(|frame| frame.map(|f| Ok(Frame::data(f))))
    }
}

impl Drop for Events {
    fn drop(&mut self) {
        self.hub.disconnect(&self.group, self.key);
    }
}

/// How long to wait before the next attempt at a message that failed `attempts` times.
fn backoff(attempts: i64) -> i64 {
    BACKOFF_MIN_MS.saturating_mul(1 << attempts.clamp(0, 16)).min(BACKOFF_MAX_MS)
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
        let at = now();
{% if c.sqlite() %}
        let next = match store.outbox(at, BATCH).await {
            Ok(rows) => {
                let full = rows.len() == BATCH;
                deliver(&store, &hub, rows).await;
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
                deliver(&store, &hub, rows).await;
                if full {
                    continue;
                }
                next
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
async fn deliver(store: &Store, hub: &Arc<Hub>, rows: Vec<Outgoing>) {
    let mut delivered = Vec::new();
    let mut deferred = Vec::new();
    for Outgoing { key, address, message, attempts } in rows {
        if address.starts_with("poll://") {
            let frame = Bytes::from(format!("data: {message}\n\n"));
            if hub.send(&address, &frame) || key.starts_with("execute:") {
                delivered.push((key, message));
            } else {
                deferred.push((key, message, now() + backoff(attempts)));
            }
            continue;
        }
{% if c.push %}
        if address.starts_with("http://") {
            // Held back for the length of the attempt, so the next pass does not send it again.
            deferred.push((key.clone(), message.clone(), now() + PUSH_TIMEOUT.as_millis() as i64));
            let store = store.clone();
            tokio::spawn(async move {
                let ok = matches!(tokio::time::timeout(PUSH_TIMEOUT, push(&address, &message)).await, Ok(Ok(true)));
                if !ok {
                    crate::log!(Warn, "push to {address} failed (attempt {})", attempts + 1);
                }
                let outcome = if ok {
                    store.record_delivery(vec![(key, message)], Vec::new())
                } else {
                    store.record_delivery(Vec::new(), vec![(key, message, now() + backoff(attempts))])
                };
                let _ = outcome.await;
            });
            continue;
        }
{% endif %}
        crate::log!(Warn, "this server cannot deliver to {address}");
        if key.starts_with("execute:") {
            delivered.push((key, message));
        } else {
            deferred.push((key, message, now() + BACKOFF_MAX_MS));
        }
    }
    if delivered.is_empty() && deferred.is_empty() {
        return;
    }
    if let Err(e) = store.record_delivery(delivered, deferred).await {
        crate::log!(Error, "cannot update the outbox: {e}");
    }
}
{% if c.push %}

/// POSTs one message to an `http://host[:port][/path]` address; true on a 2xx answer.
async fn push(address: &str, message: &str) -> Result<bool, String> {
    let rest = &address["http://".len()..];
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let connect_to = if authority.contains(':') && !authority.ends_with(']') {
        authority.to_string()
    } else {
        format!("{authority}:80")
    };
    let stream = tokio::net::TcpStream::connect(connect_to).await.map_err(|e| e.to_string())?;
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
