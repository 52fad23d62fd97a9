//! The bounded log of decisions and notable happenings, served by the `events` command.

use std::collections::VecDeque;

use gossip_ha_proto::api::{Event, EventKind};

pub const MAX_EVENTS: usize = 1_000;

#[derive(Debug)]
pub struct EventLog {
    next_seq: u64,
    entries: VecDeque<Event>,
    capacity: usize,
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
        }
    }

    /// Records an event (and logs it: an operator tailing the journal sees the same reasons).
    pub fn push(&mut self, unix_ms: u64, kind: EventKind, node: Option<String>, reason: String) {
        tracing::info!(event = ?kind, node = node.as_deref().unwrap_or("-"), "{reason}");
        if self.entries.len() == self.capacity {
            self.entries.pop_front();
        }
        self.entries.push_back(Event {
            seq: self.next_seq,
            unix_ms,
            kind,
            node,
            reason,
        });
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
