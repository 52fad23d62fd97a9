//! The driver loop (DESIGN §5): the one place that owns I/O. Each tick it reads gossip, feeds the
//! pure core with the local monotonic time, records the core's decisions as events and publishes
//! the status the socket serves.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use gossip_ha_proto::api::{EventKind, StatusReport};
use gossip_ha_proto::gossip::{Announcement, KEY_CERT, KEY_REQUEST};
use tokio::sync::watch;

use crate::config::{DbAgentSettings, Settings};
use crate::core::db::{DbAction, DbCore, DbDecision, DbPolicy, LocalDb};
use crate::core::settle::Settler;
use crate::core::{Core, Decision, MonoMs, NodeView};
use crate::db::mysql::MySqlBackend;
use crate::db::repair::{PhysicalSetup, RepairContext};
use crate::db::worker::{DbWorker, ReplicationCredentials, WorkerSetup};
use crate::events::EventLog;
use crate::gossip::{self, Gossip, GossipError, IgnoredPeer};
use crate::hooks::{Hook, Hooks};
use crate::rewrite::{fact_environment, Facts, Rewriter};
use crate::socket::{self, AdminPolicy, AdminRequest, ApiState, SocketError};
use crate::state_file::{PersistentState, StateError, StateFile};
use crate::tls::identity::{IdentityHandle, TlsIdentity};

mod admin;
mod pandora_view;
mod reach;
mod view;
pub use view::{describe, facts_from, role_list, view_keys};
use view::{empty_report, node_status, StatusBook};

const SOCKET_STOP_TIMEOUT: Duration = Duration::from_secs(2);
/// State-changing socket commands waiting for the driver; more are refused as busy.
const ADMIN_QUEUE: usize = 8;
const DB_STOP_TIMEOUT: Duration = Duration::from_secs(10);
const DB_CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Bounds every statement; `STOP SLAVE` may wait for the SQL thread's current event.
const DB_QUERY_TIMEOUT: Duration = Duration::from_secs(10);
/// Distinct names of states not heard at all that are reported as events; more only logged.
const MAX_REPORTED_UNHEARD_NAMES: usize = 32;
/// Distinct ignored-peer reasons remembered, so each is reported once, not once per tick.
const MAX_REMEMBERED_IGNORED: usize = 1_000;

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
    /// What the state file holds (or should: a failed write is retried on the next change).
    persisted: PersistentState,
    /// Actions handed to the worker and not yet reported done (a fence and a promotion may be
    /// queued together).
    in_flight: usize,
    /// The transfer service, when `db.transfer_port` is set.
    transfer: Option<tokio::task::JoinHandle<()>>,
    /// The DB nodes the transfer service may send backups to, kept current each tick.
    transfer_members: crate::transfer::DbMembers,
}

pub fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| elapsed.as_millis() as u64)
        .unwrap_or_default()
}

struct Driver {
    settings: Settings,
    started: Instant,
    core: Core,
    events: Arc<Mutex<EventLog>>,
    status: watch::Sender<Arc<StatusReport>>,
    ignored_seen: HashSet<(String, u64, String)>,
    db: Option<DbRuntime>,
    /// What this agent last put in its own gossip keys, to set only what changed.
    published: HashMap<&'static str, String>,
    rewriter: Option<Rewriter>,
    /// `None` only while shutting down.
    hooks: Option<Hooks>,
    settler: Settler<Facts>,
    /// Admin commands waiting for the cluster to show their effect.
    pending: Vec<admin::Pending>,
    /// This agent's pending request for another node, as gossiped (`KEY_REQUEST`).
    request: Option<String>,
    /// The TLS identity, reloaded on SIGHUP; `None` on plain loopback.
    identity: Option<IdentityHandle>,
    /// Names whose gossip states were not heard at all and were reported (bounded).
    unheard_names: HashSet<String>,
    /// `None` only while shutting down.
    reach: Option<reach::ReachProber>,
    /// Replicas' lag and agents' reach problems, remembered across ticks for status.
    status_book: StatusBook,
    /// What `/metrics` counts beyond the event kinds the event log feeds it.
    counters: Arc<crate::http::Counters>,
    /// Pandora's `tdatabase` view, on a DB node with `db.pandora_ha_view`.
    pandora_view: Option<pandora_view::ViewState>,
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

/// Why other nodes would ignore this agent's requests, when its certificate grants no admin:
/// the asking operator hears it at once instead of at the request's deadline.
fn relay_refusal(identity: &TlsIdentity) -> Option<String> {
    (!identity.grants.admin).then(|| {
        format!(
            "this host's certificate grants {}, not admin: other nodes ignore its requests; reissue it with `gossip-ha certs issue … --role admin --renew` to allow them",
            identity.grants
        )
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

/// The event a DB decision is recorded as (a note as `note_kind`: a repair's notes are repair
/// events); an action reads as its description, never as Rust debug text.
fn db_event(decision: DbDecision, note_kind: EventKind) -> (EventKind, String) {
    match decision {
        DbDecision::Note { reason } => (note_kind, reason),
        DbDecision::NeedsResync { reason } => (EventKind::DbNeedsResync, reason),
        DbDecision::Unreachable { reason } => (EventKind::DbUnreachable, reason),
        DbDecision::Reachable { reason } => (EventKind::DbReachable, reason),
        DbDecision::SplitBrain { reason } => (EventKind::SplitBrain, reason),
        DbDecision::Warning { reason } => (EventKind::DbWarning, reason),
        DbDecision::Act { action, reason } => (EventKind::DbAction, format!("{}: {reason}", describe(&action))),
    }
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

    let mut core = Core::new(
        &settings.node_name,
        &settings.advertise.to_string(),
        generation,
        announcement,
    )
    .with_seeds(settings.seeds.clone());
    let (status_tx, status_rx) = watch::channel(Arc::new(empty_report(&settings)));
    let (stop_tx, stop_rx) = watch::channel(false);
    let (admin_tx, admin_rx) = tokio::sync::mpsc::channel::<AdminRequest>(ADMIN_QUEUE);
    // Said once the agent has started: why its database is (or stays out of) maintenance.
    let mut maintenance_note = None;
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
            let mut persisted = persisted;
            let (maintenance, note) = admin::maintenance_at_start(&state, &mut persisted, db_settings.maintenance);
            maintenance_note = note;
            core = core.with_db(
                DbCore::new(
                    DbPolicy {
                        transfer: transfer_addr,
                        maintenance,
                        ..db_policy(db_settings)
                    },
                    persisted.epoch,
                )
                .with_promotion_record(persisted.promoted_from_gtid.clone(), persisted.promoted_unix_ms),
            );
            core.remember_cluster(persisted.known_nodes.clone(), persisted.last_db_primary.clone());
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
                persisted,
                in_flight: 0,
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
    let mut driver = Driver {
        started,
        core,
        events,
        status: status_tx,
        ignored_seen: HashSet::new(),
        db,
        published: HashMap::new(),
        rewriter,
        hooks: Some(hooks),
        settler: Settler::new(settings.rewrite_settle_ms),
        pending: Vec::new(),
        request: None,
        identity: identity.clone(),
        unheard_names: HashSet::new(),
        reach: Some(reach::ReachProber::spawn(
            gossip::gossip_interval(settings.threshold_ms()) * 5,
            gossip::gossip_interval(settings.threshold_ms()) * 5,
            stop_rx.clone(),
        )),
        status_book: StatusBook::new(
            settings.threshold_ms(),
            settings.db_agent.as_ref().map_or(1_000, |db| db.check_interval_ms),
        ),
        counters,
        pandora_view: settings
            .db_agent
            .as_ref()
            .filter(|db| db.pandora_ha_view)
            .map(|db| pandora_view::ViewState::new(&settings.db.ha_hosts, &settings.node_name, &db.advertise)),
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

    if let Some(note) = maintenance_note {
        driver.record(EventKind::AdminCommand, Some(driver.settings.node_name.clone()), note);
    }

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
                Some(request) = admin.recv() => self.administer(request),
            }
        }
    }

    /// The DB nodes heard with accepted claims may fetch backups from this node.
    fn update_transfer_members(&self) {
        // Only a DB agent serving backups needs them.
        let Some(db) = self.db.as_ref().filter(|db| db.transfer.is_some()) else {
            return;
        };
        let names: std::collections::BTreeSet<String> =
            self.core.db_addresses().into_iter().map(|(name, _, _)| name).collect();
        if let Ok(mut members) = db.transfer_members.write() {
            if *members != names {
                *members = names;
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
        for peer in seen.ignored {
            self.report_ignored(peer);
        }
        for claim in seen.refused {
            self.report_refused(claim);
        }
        let observations = seen.observations;
        self.collect_db_outcomes();
        if let Some(reach) = &self.reach {
            let targets = self
                .core
                .db_addresses()
                .into_iter()
                .filter_map(|(name, database, gossip)| Some((name, reach::check_address(&database, &gossip)?)));
            reach.set_targets(targets.collect());
            self.core.set_db_reach(reach.reached());
        }
        let local_db = self.local_db();
        let now = self.now();
        let decisions = self.core.step(now, observations, local_db.as_ref());
        self.update_transfer_members();
        // One view per tick serves the facts and the status: the core does not change between.
        let view = self.core.view(now);
        let facts = facts_from(&self.core, &view, &self.settings.cluster_id, &self.settings.node_name);
        for decision in decisions {
            self.fire_hook_for(&decision, &facts);
            let (kind, node, reason) = match decision {
                Decision::NodeUp { node, reason } => (EventKind::NodeUp, Some(node), reason),
                Decision::NodeDown { node, reason } => (EventKind::NodeDown, Some(node), reason),
                Decision::NodeRestarted { node, reason } => (EventKind::NodeRestarted, Some(node), reason),
                Decision::ServerMasterChanged { to, reason, .. } => (EventKind::ServerMasterChanged, to, reason),
                Decision::DbPrimaryChanged {
                    to,
                    reason,
                    switchover: true,
                    ..
                } => (EventKind::Switchover, to, reason),
                Decision::DbPrimaryChanged { to, reason, .. } => (EventKind::DbPrimaryChanged, to, reason),
                Decision::Request { from, reason } => (EventKind::AdminCommand, Some(from), reason),
                Decision::Db(DbDecision::Act { action, reason }) => {
                    self.start_db_action(action, reason);
                    continue;
                }
                Decision::Db(db) => {
                    if matches!(db, DbDecision::SplitBrain { .. }) {
                        self.counters.split_brain();
                    }
                    let (kind, reason) = db_event(db, EventKind::DbNote);
                    (kind, Some(self.settings.node_name.clone()), reason)
                }
            };
            self.record(kind, node, reason);
        }
        if let (Some(rewriter), Some(settled)) = (&self.rewriter, self.settler.observe(now, facts)) {
            rewriter.settle(settled);
        }
        self.remember_cluster();
        self.keep_maintenance(&view);
        self.answer_pending();
        self.publish_view(gossip).await;
        let (reach_changes, extras) = self.status_book.observe(now, self.core.db_primary(), &view);
        for change in reach_changes {
            let (checker, reason) = change.describe();
            self.record(EventKind::DbReach, Some(checker), reason);
        }
        let mut report = self.report(now, view);
        extras.apply(&mut report);
        self.keep_pandora_view(&report);
        self.status.send_replace(Arc::new(report));
    }

    /// Keeps the state file's memory of the cluster current (written only when it changes).
    fn remember_cluster(&mut self) {
        let (known_nodes, last_db_primary) = self.core.cluster_memory();
        let Some(db) = self.db.as_mut() else { return };
        if db.persisted.known_nodes == known_nodes && db.persisted.last_db_primary == last_db_primary {
            return;
        }
        let state = PersistentState {
            known_nodes,
            last_db_primary,
            ..db.persisted.clone()
        };
        let saved = db.state.save(state.clone());
        // Kept in memory either way: a failure is said once and tried again when the cluster
        // changes, not on every tick.
        db.persisted = state;
        if let Err(err) = saved {
            let me = Some(self.settings.node_name.clone());
            self.record(
                EventKind::DbActionFailed,
                me,
                format!("cannot remember the cluster: {err}"),
            );
        }
    }

    fn local_db(&self) -> Option<LocalDb> {
        let db = self.db.as_ref()?;
        let report = db.worker.latest()?;
        Some(LocalDb {
            probe: report.probe.map_err(|err| err.to_string()),
            unreachable_for_ms: report
                .unreachable_since
                .map(|since| since.elapsed().as_millis() as u64)
                .unwrap_or(0),
            action_in_flight: db.in_flight > 0,
        })
    }

    fn collect_db_outcomes(&mut self) {
        let Some(db) = self.db.as_mut() else { return };
        let mut finished = Vec::new();
        for outcome in db.worker.finished_actions() {
            db.in_flight = db.in_flight.saturating_sub(1);
            finished.push(outcome);
        }
        let progress = db.worker.progress();
        let me = Some(self.settings.node_name.clone());
        for line in progress {
            if let Some(core) = self.core.db_mut() {
                core.repair_progress(line.clone());
            }
            self.record(EventKind::Repair, me.clone(), line);
        }
        for outcome in finished {
            let hook = match (&outcome.action, &outcome.result) {
                (DbAction::Promote { .. }, Ok(_)) => Some(Hook::OnPromote),
                (DbAction::StepDown, Ok(_)) => Some(Hook::OnDemote),
                _ => None,
            };
            if let (DbAction::Merge(_), Ok(Some(summary))) = (&outcome.action, &outcome.result) {
                // Paged on like the split-brain itself: what was merged, and what waits in a file.
                if let Some(core) = self.core.db_mut() {
                    core.record_merge(summary);
                }
                self.record(EventKind::SplitBrain, me.clone(), summary.clone());
            }
            if matches!(outcome.action, DbAction::Merge(_) | DbAction::Resync { .. }) {
                let result = outcome.result.clone().map(|_| ()).map_err(|err| err.to_string());
                self.counters.repair_finished(result.is_ok());
                let decisions = self
                    .core
                    .db_mut()
                    .map(|core| core.repair_finished(&outcome.action, result))
                    .unwrap_or_default();
                for decision in decisions {
                    let (kind, reason) = db_event(decision, EventKind::Repair);
                    self.record(kind, me.clone(), reason);
                }
                self.repair_step_finished(&outcome);
            }
            if let (Some(hook), Some(hooks)) = (hook, &self.hooks) {
                let mut environment = fact_environment(&self.facts(self.now()));
                environment.push(("GOSSIP_HA_NODE".into(), self.settings.node_name.clone()));
                hooks.fire(hook, &environment);
            }
            match outcome.result {
                Ok(detail) => self.record(
                    EventKind::DbAction,
                    me.clone(),
                    format!(
                        "{} done in {} ms{}",
                        describe(&outcome.action),
                        outcome.took.as_millis(),
                        detail.map(|detail| format!(": {detail}")).unwrap_or_default()
                    ),
                ),
                Err(err) => self.record(
                    EventKind::DbActionFailed,
                    me.clone(),
                    format!(
                        "{} failed after {} ms: {err}",
                        describe(&outcome.action),
                        outcome.took.as_millis()
                    ),
                ),
            }
        }
    }

    fn start_db_action(&mut self, action: DbAction, reason: String) {
        let me = Some(self.settings.node_name.clone());
        let Some(db) = self.db.as_mut() else { return };
        if let DbAction::Promote { epoch, from_gtid } = &action {
            // The epoch must be on disk before the database is writable: a restarted agent
            // must never claim an older one.
            let promoted_unix_ms = unix_ms();
            let state = PersistentState {
                epoch: *epoch,
                promoted_from_gtid: Some(from_gtid.clone()),
                promoted_unix_ms: Some(promoted_unix_ms),
                ..db.persisted.clone()
            };
            if let Err(err) = db.state.save(state.clone()) {
                self.record(EventKind::DbActionFailed, me, format!("not promoting: {err}"));
                return;
            }
            db.persisted = state;
            if let Some(core) = self.core.db_mut() {
                core.promoted_at(promoted_unix_ms);
            }
        }
        let Some(db) = self.db.as_mut() else { return };
        let submitted = db.worker.submit(action.clone());
        match submitted {
            Ok(()) => {
                db.in_flight += 1;
                self.record(EventKind::DbAction, me, format!("{}: {reason}", describe(&action)));
            }
            Err(err) => self.record(EventKind::DbActionFailed, me, format!("{}: {err}", describe(&action))),
        }
    }

    /// Gossips this agent's database and its witness view, setting only what changed.
    async fn publish_view(&mut self, gossip: &Gossip) {
        let mut wanted = view_keys(&self.core);
        wanted.push((KEY_REQUEST, self.request.clone().unwrap_or_default()));
        wanted.retain(|(key, value)| self.published.get(key) != Some(value));
        if wanted.is_empty() {
            return;
        }
        match gossip.set_keys(&wanted).await {
            Ok(()) => self.published.extend(wanted),
            Err(err) => tracing::warn!("cannot publish this agent's view: {err}"),
        }
    }

    fn facts(&self, now: MonoMs) -> Facts {
        let view = self.core.view(now);
        facts_from(&self.core, &view, &self.settings.cluster_id, &self.settings.node_name)
    }

    fn fire_hook_for(&self, decision: &Decision, facts: &Facts) {
        let Some(hooks) = &self.hooks else { return };
        let (hook, node, previous, reason) = match decision {
            Decision::NodeUp { node, reason } | Decision::NodeRestarted { node, reason } => {
                (Hook::OnNodeUp, Some(node), None, reason)
            }
            Decision::NodeDown { node, reason } => (Hook::OnNodeDown, Some(node), None, reason),
            Decision::ServerMasterChanged { from, to, reason } => {
                (Hook::OnServerMasterChange, to.as_ref(), from.as_ref(), reason)
            }
            // Once per change of primary: the gap of a failover ("no primary") is not a change
            // a hook can act on, and the next primary's change names the old one as previous.
            Decision::DbPrimaryChanged { to: None, .. } => return,
            Decision::DbPrimaryChanged { from, to, .. } if from == to => return,
            Decision::DbPrimaryChanged { from, to, reason, .. } => {
                (Hook::OnDbPrimaryChange, to.as_ref(), from.as_ref(), reason)
            }
            Decision::Db(_) | Decision::Request { .. } => return,
        };
        let mut environment = fact_environment(facts);
        environment.push(("GOSSIP_HA_NODE".into(), node.cloned().unwrap_or_default()));
        environment.push(("GOSSIP_HA_PREVIOUS".into(), previous.cloned().unwrap_or_default()));
        environment.push(("GOSSIP_HA_REASON".into(), reason.clone()));
        hooks.fire(hook, &environment);
    }

    fn report_ignored(&mut self, peer: IgnoredPeer) {
        let key = (peer.name.clone(), peer.generation, peer.error.to_string());
        if !self.remember_ignored(key) {
            return;
        }
        self.record(
            EventKind::PeerIgnored,
            Some(peer.name.clone()),
            format!(
                "ignoring {} (generation {}): {}",
                peer.name, peer.generation, peer.error
            ),
        );
    }

    /// One event per (peer, reason): the claim is refused on every tick it is still gossiped.
    fn report_refused(&mut self, claim: gossip::RefusedClaim) {
        // Names of states not heard at all come from whoever forges them: a few are reported,
        // the rest only logged, so a flood of invented nodes cannot fill the event log.
        if claim.reason.starts_with("not heard at all") && !self.unheard_names.contains(&claim.name) {
            if self.unheard_names.len() >= MAX_REPORTED_UNHEARD_NAMES {
                tracing::debug!(node = %claim.name, "ignoring what it claims: {}", claim.reason);
                return;
            }
            self.unheard_names.insert(claim.name.clone());
        }
        let key = (claim.name.clone(), 0, claim.reason.clone());
        if !self.remember_ignored(key) {
            return;
        }
        self.record(
            EventKind::PeerIgnored,
            Some(claim.name.clone()),
            format!("ignoring what {} claims: {}", claim.name, claim.reason),
        );
    }

    /// Whether `key` is reported for the first time (then it is remembered, bounded).
    fn remember_ignored(&mut self, key: (String, u64, String)) -> bool {
        if self.ignored_seen.contains(&key) {
            return false;
        }
        if self.ignored_seen.len() >= MAX_REMEMBERED_IGNORED {
            self.ignored_seen.clear();
        }
        self.ignored_seen.insert(key)
    }

    fn record(&self, kind: EventKind, node: Option<String>, reason: String) {
        if let Ok(mut log) = self.events.lock() {
            log.push(unix_ms(), kind, node, reason);
        }
    }

    fn report(&self, now: MonoMs, view: Vec<NodeView>) -> StatusReport {
        StatusReport {
            nodes: view.into_iter().map(node_status).collect(),
            server_master: self.core.server_master().map(str::to_string),
            db_primary: self.core.db_primary().map(str::to_string),
            uptime_ms: now.0,
            rewrites: self.rewriter.as_ref().map(Rewriter::status).unwrap_or_default(),
            ..empty_report(&self.settings)
        }
    }
}
