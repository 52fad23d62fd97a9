//! The task that owns the local database connection: probes it every `check_interval`, carries
//! out one action at a time, and reports. The driver loop sends actions over a bounded channel
//! and reads the newest probe from a watch, so it never waits on the database.

use std::time::{Duration, Instant};

use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use super::pandora_view::{ViewJob, ViewOutcome, ViewWriter};
use super::repair::{self, Progress, RepairContext};
use super::{DbBackend, DbError, DbProbe, ReplicationSource};
use crate::address::split_host_port;
use crate::core::db::DbAction;
use crate::secret::Secret;

/// Actions queued at most; the core decides one at a time, so more means something is wrong.
const ACTION_QUEUE: usize = 4;
/// A fence holds up the promotion behind it. To a host this agent reaches it gets a SYN
/// retransmission's worth (Linux's first is at 1 s); to one it did not reach at its last check
/// it is a long shot, tried briefly: unreachable is fine, clients cannot reach it either.
const FENCE_CONNECT_REACHED: Duration = Duration::from_secs(2);
const FENCE_CONNECT_UNREACHED: Duration = Duration::from_millis(500);
const OUTCOME_QUEUE: usize = 16;
/// Progress lines of a merge or resync not yet read by the driver; more are dropped.
const PROGRESS_QUEUE: usize = 64;

/// The newest probe and since when the database has failed to answer, on the monotonic clock.
#[derive(Debug, Clone)]
pub struct ProbeReport {
    pub probe: Result<DbProbe, DbError>,
    pub unreachable_since: Option<Instant>,
}

#[derive(Debug, Clone)]
pub struct ActionOutcome {
    pub action: DbAction,
    /// What a merge or resync did, in a line.
    pub result: Result<Option<String>, DbError>,
    pub took: Duration,
    /// What a merge could neither copy nor save: its rebuild saves this node first.
    pub unsaved: Option<String>,
}

#[derive(Debug, Clone)]
pub struct ReplicationCredentials {
    pub user: String,
    pub password: Secret,
}

pub struct DbWorker {
    actions: mpsc::Sender<DbAction>,
    view_jobs: mpsc::Sender<ViewJob>,
    view_outcomes: watch::Receiver<Option<ViewOutcome>>,
    reports: watch::Receiver<Option<ProbeReport>>,
    outcomes: mpsc::Receiver<ActionOutcome>,
    progress: mpsc::Receiver<String>,
    task: JoinHandle<()>,
}

/// What the worker needs to carry out its actions besides the backend.
pub struct WorkerSetup {
    pub check_interval: Duration,
    pub credentials: ReplicationCredentials,
    /// `None` where repairs cannot run (the simulations' model database).
    pub repair: Option<RepairContext>,
    /// Pandora's `tdatabase` view (`db.pandora_ha_view`), kept between actions.
    pub pandora_view: Option<ViewWriter>,
}

impl DbWorker {
    pub fn spawn<B: DbBackend>(backend: B, setup: WorkerSetup, stop: watch::Receiver<bool>) -> DbWorker {
        let (actions_tx, actions_rx) = mpsc::channel(ACTION_QUEUE);
        let (reports_tx, reports_rx) = watch::channel(None);
        let (outcomes_tx, outcomes_rx) = mpsc::channel(OUTCOME_QUEUE);
        let (progress_tx, progress_rx) = mpsc::channel(PROGRESS_QUEUE);
        // One round waits at most: the driver asks again on its next period.
        let (view_jobs_tx, view_jobs_rx) = mpsc::channel(1);
        let (view_outcomes_tx, view_outcomes_rx) = watch::channel(None);
        let channels = Channels {
            actions: actions_rx,
            view_jobs: view_jobs_rx,
            view_outcomes: view_outcomes_tx,
            reports: reports_tx,
            outcomes: outcomes_tx,
            progress: progress_tx,
        };
        let task = tokio::spawn(run(backend, setup, channels, stop));
        DbWorker {
            actions: actions_tx,
            view_jobs: view_jobs_tx,
            view_outcomes: view_outcomes_rx,
            reports: reports_rx,
            outcomes: outcomes_rx,
            progress: progress_rx,
            task,
        }
    }

    pub fn progress(&mut self) -> Vec<String> {
        let mut lines = Vec::new();
        while let Ok(line) = self.progress.try_recv() {
            lines.push(line);
        }
        lines
    }

    /// Queues an action; refused (and said so) when the queue is full or the worker is gone.
    pub fn submit(&self, action: DbAction) -> Result<(), String> {
        self.actions
            .try_send(action)
            .map_err(|err| format!("database worker cannot take the action: {err}"))
    }

    /// Asks for a round of Pandora's view; skipped while one is still queued.
    pub fn submit_view(&self, job: ViewJob) {
        let _ = self.view_jobs.try_send(job);
    }

    /// The outcome of the newest round, once.
    pub fn view_outcome(&mut self) -> Option<ViewOutcome> {
        if !self.view_outcomes.has_changed().unwrap_or(false) {
            return None;
        }
        self.view_outcomes.borrow_and_update().clone()
    }

    pub fn latest(&self) -> Option<ProbeReport> {
        self.reports.borrow().clone()
    }

    pub fn finished_actions(&mut self) -> Vec<ActionOutcome> {
        let mut done = Vec::new();
        while let Ok(outcome) = self.outcomes.try_recv() {
            done.push(outcome);
        }
        done
    }

    pub async fn join(self, timeout: Duration) {
        if tokio::time::timeout(timeout, self.task).await.is_err() {
            tracing::warn!("database worker did not stop within {timeout:?}");
        }
    }
}

struct Channels {
    actions: mpsc::Receiver<DbAction>,
    view_jobs: mpsc::Receiver<ViewJob>,
    view_outcomes: watch::Sender<Option<ViewOutcome>>,
    reports: watch::Sender<Option<ProbeReport>>,
    outcomes: mpsc::Sender<ActionOutcome>,
    progress: mpsc::Sender<String>,
}

async fn run<B: DbBackend>(
    mut backend: B,
    mut setup: WorkerSetup,
    channels: Channels,
    mut stop: watch::Receiver<bool>,
) {
    let Channels {
        mut actions,
        mut view_jobs,
        view_outcomes,
        reports,
        outcomes,
        progress,
    } = channels;
    let mut ticker = tokio::time::interval(setup.check_interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut unreachable_since: Option<Instant> = None;
    loop {
        // Biased: a stop, then a queued action (a step-down, a promotion) go before the Pandora
        // view; the view (asked at most once a second, one short transaction) before the probe,
        // which a slow server could otherwise keep due on every turn, starving the view.
        let (action, view_job) = tokio::select! {
            biased;
            _ = stop.wait_for(|stopped| *stopped) => break,
            action = actions.recv() => match action {
                Some(action) => (Some(action), None),
                None => break,
            },
            Some(job) = view_jobs.recv() => (None, Some(job)),
            _ = ticker.tick() => (None, None),
        };
        // Between actions, never during one: a write cannot slip past the worker setting the
        // server read-only.
        if let Some(job) = view_job {
            if let Some(view) = setup.pandora_view.as_mut() {
                view_outcomes.send_replace(Some(view.run(&job).await));
            }
            continue;
        }
        let outcome = match action {
            Some(action) => {
                let started = Instant::now();
                let (result, unsaved) = match &action {
                    DbAction::Merge(_) | DbAction::Resync { .. } => {
                        let mut lines = Progress::new(progress.clone());
                        let result = execute_repair(setup.repair.as_ref(), &action, &mut lines, &stop).await;
                        backend.content_changed();
                        match result {
                            Ok(merged) => (Ok(Some(merged.summary)), merged.unsaved),
                            Err(err) => (Err(err), None),
                        }
                    }
                    _ => (
                        execute(&mut backend, &action, &setup.credentials).await.map(|()| None),
                        None,
                    ),
                };
                Some(ActionOutcome {
                    action,
                    result,
                    took: started.elapsed(),
                    unsaved,
                })
            }
            None => None,
        };
        // Probe right after an action, so the driver sees its effect before the outcome.
        let probe = backend.probe().await;
        unreachable_since = match &probe {
            Ok(_) => None,
            Err(_) => Some(unreachable_since.unwrap_or_else(Instant::now)),
        };
        reports.send_replace(Some(ProbeReport {
            probe,
            unreachable_since,
        }));
        if let Some(outcome) = outcome {
            if outcomes.send(outcome).await.is_err() {
                break;
            }
        }
    }
}

async fn execute<B: DbBackend>(
    backend: &mut B,
    action: &DbAction,
    credentials: &ReplicationCredentials,
) -> Result<(), DbError> {
    match action {
        DbAction::SetReadOnly | DbAction::StepDown => backend.set_read_only().await,
        DbAction::Merge(_) | DbAction::Resync { .. } => unreachable!("repairs run in execute_repair"),
        // Resuming after an abandoned switchover is the promotion's statements again.
        DbAction::Promote { .. } | DbAction::Resume => backend.promote().await,
        DbAction::StopReplication => backend.stop_replication().await,
        DbAction::Fence { addr, host_reached, .. } => {
            let (host, port) = split_host_port(addr).ok_or_else(|| DbError::Unreadable {
                target: addr.clone(),
                what: "address to fence".into(),
                message: "expected host:port".into(),
            })?;
            let connect_timeout = if *host_reached {
                FENCE_CONNECT_REACHED
            } else {
                FENCE_CONNECT_UNREACHED
            };
            backend.fence(&host, port, connect_timeout).await
        }
        DbAction::ReplicateFrom { addr, .. } => {
            let (host, port) = split_host_port(addr).ok_or_else(|| DbError::Unreadable {
                target: addr.clone(),
                what: "primary address".into(),
                message: "expected host:port".into(),
            })?;
            let source = ReplicationSource {
                host,
                port,
                user: credentials.user.clone(),
                password: credentials.password.clone(),
            };
            backend.replicate_from(&source).await
        }
    }
}

async fn execute_repair(
    context: Option<&RepairContext>,
    action: &DbAction,
    progress: &mut Progress,
    stop: &watch::Receiver<bool>,
) -> Result<repair::Merged, DbError> {
    let context = context.ok_or_else(|| DbError::Query {
        target: "agent".into(),
        what: "repair".into(),
        message: "repairs are not available here".into(),
    })?;
    match action {
        DbAction::Merge(plan) => repair::merge(context, plan, progress, stop).await,
        DbAction::Resync {
            node,
            addr,
            transfer,
            save_first,
        } => repair::resync(context, node, addr, transfer.as_deref(), *save_first, progress, stop)
            .await
            .map(|summary| repair::Merged { summary, unsaved: None }),
        _ => unreachable!("only merges and resyncs are repairs"),
    }
}
