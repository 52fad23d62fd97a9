//! The driver loop (DESIGN §5): the one place that owns I/O. Each tick it reads gossip, feeds the
//! pure core with the local monotonic time, records the core's decisions as events and publishes
//! the status the socket serves.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use gossip_ha_proto::api::{EventKind, StatusReport};
use gossip_ha_proto::gossip::{Announcement, KEY_CERT};
use tokio::sync::{oneshot, watch};

use crate::clock::unix_ms;
use crate::config::{DbAgentSettings, Settings};
use crate::core::db::DbPolicy;
use crate::core::MonoMs;
use crate::db::mysql::MySqlBackend;
use crate::db::repair::{PhysicalSetup, RepairContext};
use crate::db::worker::{DbWorker, ReplicationCredentials, WorkerSetup};
use crate::events::EventLog;
use crate::gossip::{self, Gossip, GossipError};
use crate::hooks::Hooks;
use crate::node::{empty_report, Counted, Finished, Node, NodeDbSetup, NodeSetup, Probe, Ready, Tick};
use crate::render::role_list;
use crate::rewrite::Rewriter;
use crate::socket::{self, AdminPolicy, AdminRequest, ApiState, SocketError};
use crate::state_file::{StateError, StateFile};
use crate::tls::identity::{IdentityHandle, TlsIdentity};

mod reach;

const SOCKET_STOP_TIMEOUT: Duration = Duration::from_secs(2);
/// State-changing socket commands waiting for the driver; more are refused as busy.
const ADMIN_QUEUE: usize = 8;
const DB_STOP_TIMEOUT: Duration = Duration::from_secs(10);
const DB_CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Bounds every statement; `STOP SLAVE` may wait for the SQL thread's current event.
const DB_QUERY_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error(transparent)]
    Socket(#[from] SocketError),
    #[error(transparent)]
    Gossip(#[from] GossipError),
    #[error("gossip stopped unexpectedly: {0}")]
    GossipStopped(String),
    #[error(transparent)]
    State(#[from] StateError),
    #[error("database: {0}")]
    Db(String),
    #[error(transparent)]
    Limits(#[from] crate::limits::LimitError),
    #[error("http_listen: {0}")]
    Http(String),
}

impl AgentError {
    /// A bad certificate or key is a configuration error (exit 2), like a bad value.
    pub fn is_configuration(&self) -> bool {
        matches!(self, AgentError::Gossip(GossipError::Tls(_)))
    }
}

/// The DB side of a `db` node's driver.
struct DbRuntime {
    worker: DbWorker,
    state: StateFile,
    /// The transfer service, when `db.transfer_port` is set.
    transfer: Option<tokio::task::JoinHandle<()>>,
    /// The DB nodes the transfer service may send backups to, kept current each tick.
    transfer_members: crate::transfer::DbMembers,
}

/// The daemon's I/O around the node: gossip, the DB worker, the state file, the rewriter, hooks,
/// the socket's commands and the published status.
struct Driver {
    settings: Settings,
    started: Instant,
    node: Node,
    events: Arc<Mutex<EventLog>>,
    status: watch::Sender<Arc<StatusReport>>,
    db: Option<DbRuntime>,
    rewriter: Option<Rewriter>,
    /// `None` only while shutting down.
    hooks: Option<Hooks>,
    /// Socket commands handed to the node, by the id their answer comes back with.
    replies: HashMap<u64, oneshot::Sender<Result<String, String>>>,
    next_admin_id: u64,
    /// The TLS identity, reloaded on SIGHUP; `None` on plain loopback.
    identity: Option<IdentityHandle>,
    /// `None` only while shutting down.
    reach: Option<reach::ReachProber>,
    /// What `/metrics` counts beyond the event kinds the event log feeds it.
    counters: Arc<crate::http::Counters>,
}

fn db_policy(db: &DbAgentSettings) -> DbPolicy {
    DbPolicy {
        priority: db.priority,
        advertise: db.advertise.clone(),
        ha_hosts_count: db.ha_hosts_count,
        maintenance: db.maintenance,
        promotion_cooldown_ms: db.promotion_cooldown_ms,
        catchup_timeout_ms: db.catchup_timeout_ms,
        splitbrain_autofix: db.splitbrain_autofix,
        splitbrain_lookback_ms: db.splitbrain_lookback_ms,
        switchover_timeout_ms: db.switchover_timeout_ms,
        transfer: None,
    }
}

fn repair_context(
    settings: &Settings,
    identity: Option<IdentityHandle>,
    db: &DbAgentSettings,
) -> Option<RepairContext> {
    let local = mysql_async::Opts::from_url(db.url.expose()).ok()?;
    Some(RepairContext {
        node: settings.node_name.clone(),
        local,
        database: db.database.clone(),
        tables: db.merge_tables.clone(),
        batch_rows: db.merge_batch_rows,
        state_dir: settings.state_dir.clone(),
        statement_timeout: Duration::from_millis(db.repair_statement_timeout_ms),
        resync_timeout: Duration::from_millis(db.resync_timeout_ms),
        physical: db.physical.as_ref().map(|physical| PhysicalSetup {
            datadir: physical.datadir.clone(),
            stop_command: physical.stop_command.clone(),
            start_command: physical.start_command.clone(),
            tls: identity,
            cluster_id: settings.cluster_id.clone(),
            node_name: settings.node_name.clone(),
        }),
    })
}

/// Starts the transfer service when `db.transfer_port` is set; returns its advertised address.
async fn start_transfer(
    settings: &Settings,
    identity: Option<IdentityHandle>,
    db: &DbAgentSettings,
    members: &crate::transfer::DbMembers,
    events: &Arc<Mutex<EventLog>>,
    stop: watch::Receiver<bool>,
) -> Result<Option<(String, tokio::task::JoinHandle<()>)>, AgentError> {
    let Some(port) = db.transfer_port else {
        return Ok(None);
    };
    let listen = std::net::SocketAddr::new(settings.listen.ip(), port);
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|err| AgentError::Db(format!("db.transfer_port: cannot listen on {listen}: {err}")))?;
    let local = mysql_async::Opts::from_url(db.url.expose()).map_err(|err| AgentError::Db(format!("db.url: {err}")))?;
    let source = Arc::new(crate::transfer::BackupSource {
        local,
        work_dir: settings.state_dir.join("transfer"),
        timeout: Duration::from_millis(db.resync_timeout_ms),
        cluster_id: settings.cluster_id.clone(),
        ha_hosts: settings.db.ha_hosts.clone(),
        members: members.clone(),
    });
    let report: crate::transfer::Report = {
        let events = events.clone();
        let me = settings.node_name.clone();
        Arc::new(move |line| {
            if let Ok(mut log) = events.lock() {
                log.push(unix_ms(), EventKind::Repair, Some(me.clone()), line);
            }
        })
    };
    let task = tokio::spawn(crate::transfer::serve(listener, identity, source, report, stop));
    Ok(Some((format!("{}:{port}", settings.advertise.ip()), task)))
}

/// Binds `http_listen` when set: a port in use is a start-up error, like the socket's.
async fn bind_http(settings: &Settings) -> Result<Option<tokio::net::TcpListener>, AgentError> {
    let Some(address) = settings.http_listen else {
        return Ok(None);
    };
    tokio::net::TcpListener::bind(address)
        .await
        .map(Some)
        .map_err(|err| AgentError::Http(format!("cannot listen on {address}: {err}")))
}

/// Runs the agent until `shutdown` resolves (SIGTERM/SIGINT in the binary).
pub async fn run(settings: Settings, shutdown: impl Future<Output = ()>) -> Result<(), AgentError> {
    crate::limits::raise_open_files()?;
    let started = Instant::now();
    // A restarted agent must be a new generation for its peers; the start time provides that.
    let generation = unix_ms();
    let announcement = Announcement {
        roles: settings.roles.clone(),
        master: settings.master,
        threshold_ms: settings.threshold_ms(),
        started_unix_ms: generation,
    };
    let counters = Arc::new(crate::http::Counters::default());
    let events = Arc::new(Mutex::new(EventLog::default().with_sink(counters.sink())));
    let refusals: crate::tls::transport::RefusalSink = {
        let events = events.clone();
        Arc::new(move |peer, reason| {
            if let Ok(mut log) = events.lock() {
                log.push(unix_ms(), EventKind::PeerRefused, Some(peer.to_string()), reason);
            }
        })
    };
    // Checked before anything binds: a bad certificate or key is a start-up error.
    let identity = gossip::load_identity(&settings)?.map(IdentityHandle::new);
    let transport = gossip::transport_for(&settings, identity.as_ref(), refusals);
    let socket_group = settings.socket_group.as_deref().and_then(crate::config::group_id);
    let listener = socket::bind(&settings.socket, socket_group)?;
    let http_listener = match bind_http(&settings).await {
        Ok(http_listener) => http_listener,
        Err(err) => {
            let _ = std::fs::remove_file(&settings.socket);
            return Err(err);
        }
    };
    let params = gossip::GossipParams {
        certificate: identity
            .as_ref()
            .map(|identity| identity.current().gossiped_certificate()),
        ..gossip::GossipParams::from_settings(&settings, generation)
    };
    let authority = gossip::Authority::for_settings(&settings, identity.as_ref());
    let gossip = match Gossip::start(&params, &announcement, transport.as_ref(), authority).await {
        Ok(gossip) => gossip,
        Err(err) => {
            let _ = std::fs::remove_file(&settings.socket);
            return Err(err.into());
        }
    };

    let (status_tx, status_rx) = watch::channel(Arc::new(empty_report(
        &settings.node_name,
        &settings.cluster_id,
        settings.threshold_ms(),
    )));
    let (stop_tx, stop_rx) = watch::channel(false);
    let (admin_tx, admin_rx) = tokio::sync::mpsc::channel::<AdminRequest>(ADMIN_QUEUE);
    let mut node_db = None;
    let db = match &settings.db_agent {
        None => None,
        Some(db_settings) => {
            let state = StateFile::in_dir(&settings.state_dir);
            let transfer_members = crate::transfer::DbMembers::default();
            // Saved transactions, dumps and backups land here: nothing in it is for other users.
            let private = crate::fsutil::private_directory(&settings.state_dir).map_err(|err| {
                AgentError::Db(format!(
                    "state_dir {}: cannot make it private (0700): {err}",
                    settings.state_dir.display()
                ))
            });
            let started = match private.and_then(|()| state.load().map_err(AgentError::from)) {
                Ok(persisted) => MySqlBackend::new(db_settings.url.expose(), DB_CONNECT_TIMEOUT, DB_QUERY_TIMEOUT)
                    .map(|backend| (persisted, backend))
                    .map_err(|message| AgentError::Db(format!("db.url: {message}"))),
                Err(err) => Err(err),
            };
            let started = match started {
                Ok((persisted, backend)) => start_transfer(
                    &settings,
                    identity.clone(),
                    db_settings,
                    &transfer_members,
                    &events,
                    stop_rx.clone(),
                )
                .await
                .map(|transfer| (persisted, backend, transfer)),
                Err(err) => Err(err),
            };
            let (persisted, backend, transfer) = match started {
                Ok(started) => started,
                Err(err) => {
                    let _ = std::fs::remove_file(&settings.socket);
                    gossip.shutdown().await;
                    return Err(err);
                }
            };
            let (transfer_addr, transfer_task) = transfer.unzip();
            node_db = Some(NodeDbSetup {
                policy: DbPolicy {
                    transfer: transfer_addr,
                    ..db_policy(db_settings)
                },
                persisted,
                check_interval_ms: db_settings.check_interval_ms,
                database: db_settings.database.clone(),
                pandora_view: db_settings.pandora_ha_view,
            });
            let setup = WorkerSetup {
                check_interval: Duration::from_millis(db_settings.check_interval_ms),
                credentials: ReplicationCredentials {
                    user: db_settings.replication_user.clone(),
                    password: db_settings.replication_password.clone(),
                },
                repair: repair_context(&settings, identity.clone(), db_settings),
                pandora_view: db_settings
                    .pandora_ha_view
                    .then(|| {
                        crate::db::pandora_view::ViewWriter::new(
                            db_settings.url.expose(),
                            &db_settings.database,
                            DB_CONNECT_TIMEOUT,
                            DB_QUERY_TIMEOUT,
                        )
                    })
                    .flatten(),
            };
            let worker = DbWorker::spawn(backend, setup, stop_rx.clone());
            Some(DbRuntime {
                worker,
                state,
                transfer: transfer_task,
                transfer_members,
            })
        }
    };
    let api = tokio::spawn(socket::serve(
        listener,
        ApiState {
            status: status_rx.clone(),
            events: events.clone(),
            admin: admin_tx,
            policy: AdminPolicy {
                admin_group: settings.admin_group.as_deref().and_then(crate::config::group_id),
            },
        },
        stop_rx.clone(),
    ));

    let http = http_listener.map(|http_listener| {
        let state = crate::http::HttpState {
            status: status_rx.clone(),
            counters: counters.clone(),
            started,
            stale_after: Duration::from_millis((settings.threshold_ms() * 2).max(5_000)),
        };
        let tls = settings.http_tls.then(|| identity.clone()).flatten();
        tokio::spawn(crate::http::serve(http_listener, state, tls, stop_rx.clone()))
    });
    let rewriter = (!settings.rewrite.is_empty()).then(|| {
        Rewriter::spawn(
            settings.rewrite.clone(),
            Duration::from_millis(settings.hook_timeout_ms),
            events.clone(),
            stop_rx.clone(),
        )
    });
    let hooks = Hooks::spawn(
        settings.hooks.configured(),
        Duration::from_millis(settings.hook_timeout_ms),
        events.clone(),
        stop_rx.clone(),
    );
    let node = Node::new(NodeSetup {
        name: settings.node_name.clone(),
        cluster_id: settings.cluster_id.clone(),
        advertise: settings.advertise.to_string(),
        generation,
        announcement,
        seeds: settings.seeds.clone(),
        rewrite_settle_ms: settings.rewrite_settle_ms,
        ha_hosts: settings.db.ha_hosts.clone(),
        relay_refusal: identity
            .as_ref()
            .and_then(|identity| identity.current().grants.relay_refusal()),
        db: node_db,
    });
    let mut driver = Driver {
        started,
        node,
        events,
        status: status_tx,
        db,
        rewriter,
        hooks: Some(hooks),
        replies: HashMap::new(),
        next_admin_id: 0,
        identity: identity.clone(),
        reach: Some(reach::ReachProber::spawn(
            gossip::gossip_interval(settings.threshold_ms()) * 5,
            gossip::gossip_interval(settings.threshold_ms()) * 5,
            stop_rx.clone(),
        )),
        counters,
        settings,
    };
    driver.record(
        EventKind::AgentStarted,
        Some(driver.settings.node_name.clone()),
        format!(
            "generation {generation} gossiping on {} (advertised as {}), roles {}, master {}, server_threshold {} s, socket {}",
            driver.settings.listen,
            driver.settings.advertise,
            role_list(&driver.settings.roles.iter().copied().collect::<Vec<_>>()),
            driver.settings.master,
            driver.settings.server_threshold,
            driver.settings.socket.display()
        ),
    );
    // The node's first `Ready`: why its database is (or stays out of) maintenance.
    driver.carry_out(&gossip).await;

    let outcome = driver.drive(&gossip, admin_rx, shutdown).await;

    driver.record(
        EventKind::AgentStopping,
        Some(driver.settings.node_name.clone()),
        "shutting down".into(),
    );
    let _ = stop_tx.send(true);
    if tokio::time::timeout(SOCKET_STOP_TIMEOUT, api).await.is_err() {
        tracing::warn!("status socket did not stop within {SOCKET_STOP_TIMEOUT:?}");
    }
    if let Some(http) = http {
        if tokio::time::timeout(SOCKET_STOP_TIMEOUT, http).await.is_err() {
            tracing::warn!("HTTP listener did not stop within {SOCKET_STOP_TIMEOUT:?}");
        }
    }
    if let Some(db) = driver.db.take() {
        db.worker.join(DB_STOP_TIMEOUT).await;
        if let Some(transfer) = db.transfer {
            if tokio::time::timeout(DB_STOP_TIMEOUT, transfer).await.is_err() {
                tracing::warn!("transfer service did not stop within {DB_STOP_TIMEOUT:?}");
            }
        }
    }
    if let Some(rewriter) = driver.rewriter.take() {
        rewriter.join(DB_STOP_TIMEOUT).await;
    }
    if let Some(hooks) = driver.hooks.take() {
        hooks.join(SOCKET_STOP_TIMEOUT).await;
    }
    if let Some(reach) = driver.reach.take() {
        reach.join(SOCKET_STOP_TIMEOUT).await;
    }
    gossip.shutdown().await;
    if let Err(err) = std::fs::remove_file(&driver.settings.socket) {
        tracing::warn!("cannot remove socket {}: {err}", driver.settings.socket.display());
    }
    outcome
}

impl Driver {
    async fn drive(
        &mut self,
        gossip: &Gossip,
        mut admin: tokio::sync::mpsc::Receiver<AdminRequest>,
        shutdown: impl Future<Output = ()>,
    ) -> Result<(), AgentError> {
        let tick = gossip::gossip_interval(self.settings.threshold_ms()) / 2;
        let mut ticker = tokio::time::interval(tick);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        let gossip_ended = gossip.termination();
        tokio::pin!(shutdown, gossip_ended);
        let mut hangups = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
            .map_err(|err| tracing::warn!("no SIGHUP reload: {err}"))
            .ok();
        loop {
            tokio::select! {
                _ = &mut shutdown => return Ok(()),
                Some(()) = async { hangups.as_mut()?.recv().await } => self.reload_identity(gossip).await,
                ended = &mut gossip_ended => {
                    let reason = match ended {
                        Ok(()) => "the gossip task ended".to_string(),
                        Err(err) => format!("{err:#}"),
                    };
                    return Err(AgentError::GossipStopped(reason));
                }
                _ = ticker.tick() => self.tick(gossip).await,
                Some(request) = admin.recv() => {
                    self.administer(request);
                    self.carry_out(gossip).await;
                }
            }
        }
    }

    fn now(&self) -> MonoMs {
        MonoMs(self.started.elapsed().as_millis() as u64)
    }

    /// SIGHUP: loads the certificate, key and CA bundle again, checked as at start; on success
    /// new connections use them and peers are given the new certificate, established links keep
    /// their session (no peer is dropped, so a renewal is no failover). On failure the current
    /// identity stays.
    async fn reload_identity(&mut self, gossip: &Gossip) {
        let (Some(handle), Some(files)) = (&self.identity, &self.settings.tls) else {
            self.record(
                EventKind::IdentityReloadFailed,
                None,
                "SIGHUP: no [tls] to reload".into(),
            );
            return;
        };
        let me = Some(self.settings.node_name.clone());
        match TlsIdentity::load(files, &self.settings.node_name, &self.settings.roles) {
            Ok(identity) => {
                let certificate = identity.gossiped_certificate();
                let text = format!(
                    "SIGHUP: reloaded {} (grants {}, valid until {}) and the CA bundle {}",
                    files.cert.display(),
                    identity.grants,
                    identity.not_after,
                    files.ca.display()
                );
                handle.replace(identity);
                if let Err(err) = gossip.set_keys(&[(KEY_CERT, certificate)]).await {
                    tracing::warn!("the new certificate is not gossiped yet: {err}");
                }
                self.record(EventKind::IdentityReloaded, me, text);
            }
            Err(err) => self.record(
                EventKind::IdentityReloadFailed,
                me,
                format!("SIGHUP: kept the current certificate: {err}"),
            ),
        }
    }

    async fn tick(&mut self, gossip: &Gossip) {
        let seen = match gossip.observations().await {
            Ok(seen) => seen,
            Err(err) => {
                tracing::warn!("skipping a tick: {err}");
                return;
            }
        };
        let now = self.now();
        self.collect_db_outcomes(now);
        let probe = self.probe();
        self.node.tick(Tick {
            now,
            wall_unix_ms: unix_ms(),
            observations: seen.observations,
            ignored: seen.ignored,
            refused: seen.refused,
            probe,
            db_reach: self.reach.as_ref().map(reach::ReachProber::reached),
        });
        self.carry_out(gossip).await;
    }

    /// Hands the worker's news to the node: progress lines, finished actions, a view round.
    fn collect_db_outcomes(&mut self, now: MonoMs) {
        let Some(db) = self.db.as_mut() else { return };
        let progress = db.worker.progress();
        let finished = db.worker.finished_actions();
        let view = db.worker.view_outcome();
        for line in progress {
            self.node.repair_progress(line);
        }
        for outcome in finished {
            self.node.action_finished(
                now,
                Finished {
                    action: outcome.action,
                    result: outcome.result.map_err(|err| err.to_string()),
                    took_ms: outcome.took.as_millis() as u64,
                    unsaved: outcome.unsaved,
                },
            );
        }
        if let Some(view) = view {
            self.node.view_outcome(view);
        }
    }

    fn probe(&self) -> Option<Probe> {
        let report = self.db.as_ref()?.worker.latest()?;
        Some(Probe {
            result: report.probe.map_err(|err| err.to_string()),
            unreachable_for_ms: report
                .unreachable_since
                .map(|since| since.elapsed().as_millis() as u64)
                .unwrap_or(0),
        })
    }

    /// A socket command: handed to the node, answered when its `Ready` says.
    fn administer(&mut self, request: AdminRequest) {
        self.next_admin_id += 1;
        let id = self.next_admin_id;
        self.replies.insert(id, request.reply);
        let now = self.now();
        self.node.admin(now, unix_ms(), id, request.command, request.caller_uid);
    }

    /// Carries out the node's `Ready` in its order: the state file first, then the actions (a
    /// promotion only once its record is on disk), events, hooks, gossip, files, answers, status.
    async fn carry_out(&mut self, gossip: &Gossip) {
        let mut ready = self.node.ready();
        self.persist_and_act(&mut ready);
        for event in std::mem::take(&mut ready.events) {
            self.record(event.kind, event.node, event.reason);
        }
        for counted in &ready.counted {
            match counted {
                Counted::SplitBrain => self.counters.split_brain(),
                Counted::RepairFinished { ok } => self.counters.repair_finished(*ok),
            }
        }
        if let Some(hooks) = &self.hooks {
            for call in &ready.hooks {
                hooks.fire(call.hook, &call.environment);
            }
        }
        if !ready.gossip.is_empty() {
            if let Err(err) = gossip.set_keys(&ready.gossip).await {
                tracing::warn!("cannot publish this agent's view: {err}");
                self.node.unpublish(&ready.gossip);
            }
        }
        if let (Some(rewriter), Some(settled)) = (&self.rewriter, ready.settled.take()) {
            rewriter.settle(settled);
        }
        for (id, answer) in ready.answers.drain(..) {
            if let Some(reply) = self.replies.remove(&id) {
                let _ = reply.send(answer);
            }
        }
        self.hand_to_services(&mut ready);
        if let Some(mut report) = ready.status.take() {
            report.rewrites = self.rewriter.as_ref().map(Rewriter::status).unwrap_or_default();
            self.status.send_replace(Arc::new(report));
        }
    }

    /// The state file, then the actions: a promotion whose record did not reach the disk does
    /// not run.
    fn persist_and_act(&mut self, ready: &mut Ready) {
        let Some(db) = self.db.as_ref() else { return };
        if let Some(persist) = ready.persist.take() {
            if let Err(err) = db.state.save(persist.state.clone()) {
                self.node.persist_failed(ready, &persist, &err.to_string());
            }
        }
        for act in std::mem::take(&mut ready.actions) {
            if let Err(err) = db.worker.submit(act.action.clone()) {
                self.node.not_started(ready, &act, &err);
            }
        }
    }

    /// The worker's view round, the transfer service's members, the reachability targets.
    fn hand_to_services(&mut self, ready: &mut Ready) {
        if let (Some(db), Some(job)) = (self.db.as_ref(), ready.view_job.take()) {
            db.worker.submit_view(job);
        }
        // Only a DB agent serving backups needs its members.
        if let (Some(db), Some(names)) = (
            self.db.as_ref().filter(|db| db.transfer.is_some()),
            ready.db_members.take(),
        ) {
            if let Ok(mut members) = db.transfer_members.write() {
                if *members != names {
                    *members = names;
                }
            }
        }
        if let (Some(reach), Some(targets)) = (&self.reach, ready.reach_targets.take()) {
            let targets = targets
                .into_iter()
                .filter_map(|(name, database, gossip)| Some((name, reach::check_address(&database, &gossip)?)));
            reach.set_targets(targets.collect());
        }
    }

    fn record(&self, kind: EventKind, node: Option<String>, reason: String) {
        if let Ok(mut log) = self.events.lock() {
            log.push(unix_ms(), kind, node, reason);
        }
    }
}
