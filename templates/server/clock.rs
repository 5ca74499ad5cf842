//! The request clock: wall-clock Unix milliseconds that never go backwards within a process.

use std::sync::atomic::{AtomicI64, Ordering};

/// The last instant handed out.
static CLOCK: AtomicI64 = AtomicI64::new(0);

/// Wall-clock Unix ms, made monotonic.
pub fn now() -> i64 {
    let wall = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0);
    CLOCK.fetch_max(wall, Ordering::Relaxed).max(wall)
}
