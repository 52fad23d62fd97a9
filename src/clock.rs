//! Wall time, for what people and files read (event times, folder names, generations). Decisions
//! never use it: the core runs on each agent's monotonic clock. A leaf, so that the modules that
//! stamp things need not import the driver.

use std::time::{SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch; 0 when the clock is set before 1970.
pub fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| elapsed.as_millis() as u64)
        .unwrap_or_default()
}
