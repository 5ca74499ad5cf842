//! Delivery of queued messages to `nats://subject` addresses: each is published to its subject
//! on the server's NATS connection.
//!
//! Core NATS acknowledges nothing: a message counts as delivered once it is handed to the
//! connection, whether or not a worker was subscribed (spec/choices.yaml `nats-delivery`). A lost
//! `execute` is recovered by rule R6, which queues a new one every `tasks-retry-timeout` ms while
//! the task is pending. An address that is not a publishable subject is retried with backoff
//! like an unreachable push endpoint, under the same `messages-retry-cap`. The loop sleeps until
//! a commit queues a message or a deferred one falls due: an idle server does no work.

use crate::clock::now;
use crate::config::Settings;
use crate::outbox::{backoff, Deliveries, Outgoing, BACKOFF_MAX_MS, BACKOFF_MIN_MS};
use crate::store::Store;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, Notify};

/// Messages handled per pass.
const BATCH: usize = 256;
/// Protocol frames that may wait for the connection (while it is re-established, say).
const FRAME_BUFFER: usize = 4096;
/// How often a paused loop (debug.start) looks whether it was resumed.
const PAUSED_POLL: Duration = Duration::from_millis(50);

/// Writes protocol frames to the NATS connection, whichever connection is current; cheap to
/// clone. Frames queue while the connection is re-established.
#[derive(Clone)]
pub struct Publisher {
    frames: mpsc::Sender<Vec<u8>>,
    /// The largest payload the NATS server accepts (its INFO's `max_payload`): a larger PUB
    /// would make it close the connection.
    max_payload: Arc<AtomicUsize>,
}

/// Why a message was not published.
pub enum Unpublished {
    /// Larger than the NATS server's `max_payload`.
    TooLarge(usize),
    /// The connection's writer is gone.
    Closed,
}

impl Publisher {
    /// A publisher and the receiving end the connection writes from.
    pub fn new() -> (Publisher, mpsc::Receiver<Vec<u8>>) {
        let (frames, rx) = mpsc::channel(FRAME_BUFFER);
        (Publisher { frames, max_payload: Arc::new(AtomicUsize::new(usize::MAX)) }, rx)
    }

    /// Records the `max_payload` a (re)connected NATS server announced.
    pub fn set_max_payload(&self, bytes: usize) {
        self.max_payload.store(bytes, Ordering::Relaxed);
    }

    /// Publishes `payload` to `subject`, which must be [`valid_subject`].
    pub async fn publish(&self, subject: &str, payload: &[u8]) -> Result<(), Unpublished> {
        let max = self.max_payload.load(Ordering::Relaxed);
        if payload.len() > max {
            return Err(Unpublished::TooLarge(max));
        }
        let mut frame = Vec::with_capacity(subject.len() + payload.len() + 24);
        frame.extend_from_slice(format!("PUB {subject} {}\r\n", payload.len()).as_bytes());
        frame.extend_from_slice(payload);
        frame.extend_from_slice(b"\r\n");
        if self.send(frame).await {
            Ok(())
        } else {
            Err(Unpublished::Closed)
        }
    }

    /// Queues one raw protocol frame.
    pub async fn send(&self, frame: Vec<u8>) -> bool {
        self.frames.send(frame).await.is_ok()
    }
}

/// Whether `subject` can be published to: dot-separated non-empty tokens without whitespace,
/// control characters or wildcards (`*`, `>`). The same rule decides which `nats://` addresses
/// a promise may name (spec/protocol.yaml addresses).
pub fn valid_subject(subject: &str) -> bool {
    !subject.is_empty()
        && subject.split('.').all(|t| !t.is_empty() && !t.contains(|c: char| c.is_whitespace() || c.is_control() || c == '*' || c == '>'))
}

/// The delivery loop. debug.start pauses it, as it pauses the rules, so debug.snap shows the
/// outbox exactly as the steps left it.
pub async fn run(store: Store, publisher: Publisher, enqueued: Arc<Notify>, settings: Arc<Settings>) {
    loop {
        if settings.paused.load(Ordering::Relaxed) {
            tokio::time::sleep(PAUSED_POLL).await;
            continue;
        }
{% if c.sqlite() %}
        let next = match store.outbox(now(), BATCH).await {
            Ok(rows) => {
                let full = rows.len() == BATCH;
                deliver(&store, &publisher, rows).await;
                if full {
                    continue;
                }
                store.next_deferred().await.ok().flatten()
            }
{% else %}
        // Every replica can publish to every subject: each claims whatever is due.
        let next = match store.outbox(now(), BATCH, (Vec::new(), Vec::new())).await {
            Ok((rows, next)) => {
                let full = rows.len() == BATCH;
                deliver(&store, &publisher, rows).await;
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
            _ = async {
                match wait {
                    Some(w) => tokio::time::sleep(w).await,
                    None => std::future::pending().await,
                }
            } => {}
        }
    }
}

/// Publishes one pass of due messages and records the outcome.
async fn deliver(store: &Store, publisher: &Publisher, rows: Vec<Outgoing>) {
    let mut out = Deliveries::default();
    for Outgoing { key, address, message, attempts } in rows {
        let published = match address.strip_prefix("nats://").filter(|s| valid_subject(s)) {
            Some(subject) => publisher.publish(subject, message.as_bytes()).await,
            None => Err(Unpublished::Closed),
        };
        match published {
            Ok(()) => out.done.push((key, message)),
            Err(why) => {
                let why = match why {
                    Unpublished::TooLarge(max) => format!("{} bytes, over the NATS server's max_payload of {max}", message.len()),
                    Unpublished::Closed if address.starts_with("nats://") => "no NATS connection".to_string(),
                    Unpublished::Closed => "not a nats:// subject".to_string(),
                };
                crate::log!(Warn, "cannot deliver to {address} (attempt {}): {why}", attempts + 1);
                out.failed.push((key, message, now() + backoff(attempts)));
            }
        }
    }
    if out.is_empty() {
        return;
    }
    match store.record_delivery(out).await {
        Ok(0) => {}
        Ok(dropped) => crate::log!(Warn, "dropped {dropped} failed messages over messages-retry-cap"),
        Err(e) => crate::log!(Error, "cannot update the outbox: {e}"),
    }
}
