//! The node's side of Pandora's HA view (`db/pandora_view.rs` reads and writes it): when to ask
//! the executor for a round, what to say about its outcome (once per fact), and the console's
//! `disabled` turned into this node's maintenance.
//!
//! Each DB agent reads its own row from its local server rather than the primary relaying a
//! maintenance request: the row replicates to every replica, so a disabled replica stays out
//! of promotion when the primary is gone (exactly when it matters), and no request needs an
//! admin certificate or a live relay.

use gossip_ha_proto::api::{EventKind, StatusReport};
use gossip_ha_proto::db::DbRole;

use super::Node;
use crate::core::db::LocalDb;
use crate::core::{Input, MonoMs};
use crate::db::pandora_view::{own_host, rows_from, ViewJob, ViewOutcome};

/// How often the view is read (and, on the primary, written when it changed).
const ROUND_MS: u64 = 1_000;
/// How often a missing `tdatabase` is looked for again (said once, not per round).
const ABSENT_ROUND_MS: u64 = 10_000;

pub(super) struct ViewState {
    own_host: String,
    next_round: MonoMs,
    table_absent: bool,
    last_failure: Option<String>,
    /// The own row's `disabled` last read: only a change moves maintenance, so an operator's
    /// `maintenance on|off` stands until the console changes the row.
    console_disabled: Option<bool>,
    /// The local database did not answer at the last tick: a round failing on the same lost
    /// connection is no news (its own `db_unreachable` event says so).
    database_down: bool,
}

impl ViewState {
    pub(super) fn new(ha_hosts: &[String], node: &str, advertise: &str) -> ViewState {
        ViewState {
            own_host: own_host(ha_hosts, node, advertise),
            next_round: MonoMs(0),
            table_absent: false,
            last_failure: None,
            console_disabled: None,
            database_down: false,
        }
    }
}

impl Node {
    /// Asks for the next round when it is due (after this tick's `report`).
    pub(super) fn keep_pandora_view(&mut self, report: &StatusReport, local: Option<&LocalDb>) {
        let writer = self.writes_pandora_view(report);
        let now = self.now;
        let wall_unix_ms = self.wall_unix_ms;
        let Some(view) = self.db.as_mut().and_then(|db| db.pandora.as_mut()) else {
            return;
        };
        view.database_down = local.is_some_and(|local| local.probe.is_err());
        if now < view.next_round {
            return;
        }
        view.next_round = MonoMs(now.0 + if view.table_absent { ABSENT_ROUND_MS } else { ROUND_MS });
        let rows = writer.then(|| rows_from(report, &self.setup.ha_hosts));
        self.ready.view_job = Some(ViewJob {
            own_host: view.own_host.clone(),
            rows,
            now_unix_seconds: (wall_unix_ms / 1_000) as i64,
        });
    }

    /// The primary's agent only, while its database is writable, no action or handover is under
    /// way (the executor checks `read_only` again before it writes), and a live peer sees it as
    /// the primary: a primary cut off from everyone would otherwise write transactions of its own
    /// and come back forked (merged and rebuilt) instead of simply behind.
    fn writes_pandora_view(&self, report: &StatusReport) -> bool {
        let me = &self.setup.name;
        let idle = self.db.as_ref().is_some_and(|db| db.in_flight == 0) && self.core.primary_vouched_for();
        let own = report
            .nodes
            .iter()
            .find(|node| node.is_self)
            .and_then(|node| node.db.as_ref());
        idle && report.db_primary.as_deref() == Some(me.as_str())
            && own
                .is_some_and(|db| db.role == DbRole::Primary && db.read_only == Some(false) && db.handover_to.is_none())
    }

    /// A round's outcome, from the executor.
    pub fn view_outcome(&mut self, outcome: ViewOutcome) {
        let Some(db) = self.db.as_mut() else { return };
        let table = db.database.clone();
        let Some(view) = db.pandora.as_mut() else { return };
        let note = match outcome {
            ViewOutcome::TableAbsent => (!std::mem::replace(&mut view.table_absent, true)).then(|| {
                format!("Pandora's HA view: no table {table}.tdatabase here, so the console's \"Manage Database HA\" page is not kept (looked for again every {} s; db.pandora_ha_view = false turns this off)", ABSENT_ROUND_MS / 1_000)
            }),
            ViewOutcome::Failed(_) if view.database_down => None,
            ViewOutcome::Failed(failure) => (view.last_failure.as_ref() != Some(&failure)).then(|| {
                view.last_failure = Some(failure.clone());
                format!("Pandora's HA view: {table}.tdatabase not read or written: {failure}")
            }),
            ViewOutcome::Done { disabled, .. } => {
                let found_again = std::mem::replace(&mut view.table_absent, false);
                view.last_failure = None;
                if found_again {
                    self.own_event(
                        EventKind::DbNote,
                        format!("Pandora's HA view: {table}.tdatabase found, kept from now on"),
                    );
                }
                self.follow_console_disabled(disabled);
                None
            }
        };
        if let Some(note) = note {
            self.own_event(EventKind::DbNote, note);
        }
    }

    /// `disabled = 1` on this node's row (set from the console) is maintenance, as
    /// `pandora_ha` skips disabled hosts; back to 0 ends it.
    fn follow_console_disabled(&mut self, disabled: Option<bool>) {
        let Some(view) = self.db.as_mut().and_then(|db| db.pandora.as_mut()) else {
            return;
        };
        let Some(disabled) = disabled else { return };
        let previous = view.console_disabled.replace(disabled);
        // At start only a disabled row acts: an enabled one says nothing the operator did not.
        // (A disabled row read at start wins over an operator's `maintenance off` given before
        // the restart: the safe side, a node kept from promotion.)
        if previous == Some(disabled) || (previous.is_none() && !disabled) {
            return;
        }
        let host = view.own_host.clone();
        let reason = match self.core.input(Input::Maintenance { on: disabled }).answer {
            Some(Ok(done)) => format!(
                "Pandora's console set tdatabase.disabled = {} for {host}: {done}",
                u8::from(disabled)
            ),
            Some(Err(refused)) => refused,
            None => return,
        };
        self.own_event(EventKind::AdminCommand, reason);
    }
}
