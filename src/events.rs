//! The bounded log of decisions and notable happenings, served by the `events` command.

use std::collections::VecDeque;
use std::sync::Arc;

use gossip_ha_proto::api::{Event, EventKind};

pub const MAX_EVENTS: usize = 1_000;

/// The kind's name as `events --json` shows it (`db_primary_changed`).
pub fn kind_name(kind: EventKind) -> String {
    serde_json::to_value(kind)
        .ok()
        .and_then(|value| value.as_str().map(str::to_string))
        .unwrap_or_else(|| format!("{kind:?}"))
}

/// Told of every event as it is recorded (the metrics' counters): the log itself keeps only
/// the newest, a sink sees them all.
pub type EventSink = Arc<dyn Fn(&Event) + Send + Sync>;

pub struct EventLog {
    next_seq: u64,
    entries: VecDeque<Event>,
    capacity: usize,
    sink: Option<EventSink>,
}

impl std::fmt::Debug for EventLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventLog")
            .field("next_seq", &self.next_seq)
            .field("entries", &self.entries.len())
            .finish()
    }
}

impl Default for EventLog {
    fn default() -> Self {
        Self::with_capacity(MAX_EVENTS)
    }
}

impl EventLog {
    pub fn with_capacity(capacity: usize) -> Self {
        EventLog {
            next_seq: 1,
            entries: VecDeque::with_capacity(capacity.min(64)),
            capacity: capacity.max(1),
            sink: None,
        }
    }

    pub fn with_sink(mut self, sink: EventSink) -> Self {
        self.sink = Some(sink);
        self
    }

    /// Records an event (and logs it: an operator tailing the journal sees the same reasons).
    pub fn push(&mut self, unix_ms: u64, kind: EventKind, node: Option<String>, reason: String) {
        // As fields, so `log_format = "json"` gives collectors kind, node and reason apart.
        tracing::info!(kind = %kind_name(kind), node = node.as_deref().unwrap_or("-"), reason = %reason);
        if self.entries.len() == self.capacity {
            self.entries.pop_front();
        }
        let event = Event {
            seq: self.next_seq,
            unix_ms,
            kind,
            node,
            reason,
        };
        if let Some(sink) = &self.sink {
            sink(&event);
        }
        self.entries.push_back(event);
        self.next_seq += 1;
    }

    /// The newest `limit` events (all kept when `None`), oldest first.
    pub fn recent(&self, limit: Option<usize>) -> Vec<Event> {
        let skip = limit.map_or(0, |limit| self.entries.len().saturating_sub(limit));
        self.entries.iter().skip(skip).cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_newest_within_capacity_with_rising_sequence_numbers() {
        let mut log = EventLog::with_capacity(3);
        for n in 0..5 {
            log.push(n, EventKind::NodeUp, None, format!("event {n}"));
        }
        let seqs: Vec<u64> = log.recent(None).iter().map(|event| event.seq).collect();
        assert_eq!(seqs, [3, 4, 5]);
        let newest: Vec<u64> = log.recent(Some(2)).iter().map(|event| event.seq).collect();
        assert_eq!(newest, [4, 5]);
        assert_eq!(log.recent(Some(0)).len(), 0);
    }
}
