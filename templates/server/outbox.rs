//! The outbox as the store and the delivery loop exchange it: queued messages handed out, and
//! what became of them handed back.

/// Backoff bounds for a message that could not be delivered.
pub const BACKOFF_MIN_MS: i64 = 1_000;
pub const BACKOFF_MAX_MS: i64 = 60_000;

/// A queued message as the store hands it over: its key, address, JSON text and failed
/// attempts so far.
pub struct Outgoing {
    pub key: String,
    pub address: String,
    pub message: String,
    pub attempts: i64,
}

/// What became of messages handed to the transport, for the store to record.
#[derive(Default)]
pub struct Deliveries {
    /// `(key, message)` accepted: removed, unless a newer message replaced it meanwhile.
    pub done: Vec<(String, String)>,
    /// `(key, message, until)` with a stream or a push: not due again before `until`.
    pub held: Vec<(String, String, i64)>,
    /// `(key, message, until)` failed: one more attempt counted, due again at `until`.
    pub failed: Vec<(String, String, i64)>,
}

impl Deliveries {
    /// Whether there is nothing to record.
    pub fn is_empty(&self) -> bool {
        self.done.is_empty() && self.held.is_empty() && self.failed.is_empty()
    }
}

/// How long to wait before the next attempt at a message that failed `attempts` times:
/// 1 s doubling to 60 s.
pub fn backoff(attempts: i64) -> i64 {
    BACKOFF_MIN_MS.saturating_mul(1 << attempts.clamp(0, 16)).min(BACKOFF_MAX_MS)
}
