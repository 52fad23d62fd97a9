//! The driver's side of Pandora's HA view (`db/pandora_view.rs`): when to ask the DB worker
//! for a round, what to say about its outcome (once per fact), and the console's `disabled`
//! turned into this node's maintenance.
//!
//! Each DB agent reads its own row from its local server rather than the primary relaying a
//! maintenance request: the row replicates to every replica, so a disabled replica stays out
//! of promotion when the primary is gone (exactly when it matters), and no request needs an
//! admin certificate or a live relay.

use std::time::{Duration, Instant};

use gossip_ha_proto::api::{EventKind, StatusReport};
use gossip_ha_proto::db::DbRole;

use super::{unix_ms, Driver};
use crate::db::pandora_view::{own_host, rows_from, ViewJob, ViewOutcome};

/// How often the view is read (and, on the primary, written when it changed).
const ROUND: Duration = Duration::from_secs(1);
/// How often a missing `tdatabase` is looked for again (said once, not per round).
const ABSENT_ROUND: Duration = Duration::from_secs(10);

pub(super) struct ViewState {
    own_host: String,
    next_round: Instant,
    table_absent: bool,
    last_failure: Option<String>,
    /// The own row's `disabled` last read: only a change moves maintenance, so an operator's
    /// `maintenance on|off` stands until the console changes the row.
    console_disabled: Option<bool>,
}

impl ViewState {
    pub(super) fn new(ha_hosts: &[String], node: &str, advertise: &str) -> ViewState {
        ViewState {
            own_host: own_host(ha_hosts, node, advertise),
            next_round: Instant::now(),
            table_absent: false,
            last_failure: None,
            console_disabled: None,
        }
    }
}

impl Driver {
    /// Reads the last round's outcome, then asks for the next one when due.
    pub(super) fn keep_pandora_view(&mut self, report: &StatusReport) {
        let Some(outcome) = self.db.as_mut().and_then(|db| db.worker.view_outcome()) else {
            self.ask_pandora_view(report);
            return;
        };
        self.pandora_view_outcome(outcome);
        self.ask_pandora_view(report);
    }

    fn ask_pandora_view(&mut self, report: &StatusReport) {
        let writer = self.writes_pandora_view(report);
        let (Some(db), Some(view)) = (self.db.as_ref(), self.pandora_view.as_mut()) else {
            return;
        };
        if Instant::now() < view.next_round {
            return;
        }
        view.next_round = Instant::now() + if view.table_absent { ABSENT_ROUND } else { ROUND };
        let rows = writer.then(|| rows_from(report, &self.settings.db.ha_hosts));
        db.worker.submit_view(ViewJob {
            own_host: view.own_host.clone(),
            rows,
            now_unix_seconds: (unix_ms() / 1_000) as i64,
        });
    }

    /// The primary's agent only, while its database is writable, no action or handover is under
    /// way (the worker checks `read_only` again before it writes), and a live peer sees it as the
    /// primary: a primary cut off from everyone would otherwise write transactions of its own
    /// and come back forked (merged and rebuilt) instead of simply behind.
    fn writes_pandora_view(&self, report: &StatusReport) -> bool {
        let me = &self.settings.node_name;
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

    fn pandora_view_outcome(&mut self, outcome: ViewOutcome) {
        // While the local database does not answer, its own db_unreachable event says so: a
        // view round failing on the same lost connection is no news.
        let database_down = self.local_db().is_some_and(|local| local.probe.is_err());
        let Some(view) = self.pandora_view.as_mut() else { return };
        let me = Some(self.settings.node_name.clone());
        let table = self
            .settings
            .db_agent
            .as_ref()
            .map(|db| db.database.clone())
            .unwrap_or_default();
        match outcome {
            ViewOutcome::TableAbsent => {
                if !std::mem::replace(&mut view.table_absent, true) {
                    self.record(
                        EventKind::DbNote,
                        me,
                        format!("Pandora's HA view: no table {table}.tdatabase here, so the console's \"Manage Database HA\" page is not kept (looked for again every {} s; db.pandora_ha_view = false turns this off)", ABSENT_ROUND.as_secs()),
                    );
                }
            }
            ViewOutcome::Failed(_) if database_down => {}
            ViewOutcome::Failed(failure) => {
                if view.last_failure.as_ref() != Some(&failure) {
                    view.last_failure = Some(failure.clone());
                    self.record(
                        EventKind::DbNote,
                        me,
                        format!("Pandora's HA view: {table}.tdatabase not read or written: {failure}"),
                    );
                }
            }
            ViewOutcome::Done { disabled, .. } => {
                let found_again = std::mem::replace(&mut view.table_absent, false);
                view.last_failure = None;
                if found_again {
                    self.record(
                        EventKind::DbNote,
                        me,
                        format!("Pandora's HA view: {table}.tdatabase found, kept from now on"),
                    );
                }
                self.follow_console_disabled(disabled);
            }
        }
    }

    /// `disabled = 1` on this node's row (set from the console) is maintenance, as
    /// `pandora_ha` skips disabled hosts; back to 0 ends it.
    fn follow_console_disabled(&mut self, disabled: Option<bool>) {
        let Some(view) = self.pandora_view.as_mut() else { return };
        let Some(disabled) = disabled else { return };
        let previous = view.console_disabled.replace(disabled);
        // At start only a disabled row acts: an enabled one says nothing the operator did not.
        // (A disabled row read at start wins over an operator's `maintenance off` given before
        // the restart: the safe side, a node kept from promotion.)
        if previous == Some(disabled) || (previous.is_none() && !disabled) {
            return;
        }
        let host = view.own_host.clone();
        let me = Some(self.settings.node_name.clone());
        let reason = match self.core.apply_maintenance(disabled) {
            Ok(done) => format!(
                "Pandora's console set tdatabase.disabled = {} for {host}: {done}",
                u8::from(disabled)
            ),
            Err(refused) => refused,
        };
        self.record(EventKind::AdminCommand, me, reason);
    }
}
