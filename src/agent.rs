//! The driver loop (DESIGN §5): the one place that owns I/O. Each tick it reads gossip, feeds the
//! pure core with the local monotonic time, records the core's decisions as events and publishes
//! the status the socket serves.

use std::collections::HashSet;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use gossip_ha_proto::api::{EventKind, NodeLiveness, NodeStatus, StatusReport};
use gossip_ha_proto::gossip::Announcement;
use tokio::sync::watch;

use crate::config::Settings;
use crate::core::{Core, Decision, MonoMs, NodeView};
use crate::events::EventLog;
use crate::gossip::{self, Gossip, GossipError, IgnoredPeer};
use crate::socket::{self, ApiState, SocketError};

const SOCKET_STOP_TIMEOUT: Duration = Duration::from_secs(2);
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
}

/// Runs the agent until `shutdown` resolves (SIGTERM/SIGINT in the binary).
pub async fn run(settings: Settings, shutdown: impl Future<Output = ()>) -> Result<(), AgentError> {
    let started = Instant::now();
    // A restarted agent must be a new generation for its peers; the start time provides that.
    let generation = unix_ms();
    let announcement = Announcement {
        roles: settings.roles.clone(),
        master: settings.master,
        threshold_ms: settings.threshold_ms(),
        started_unix_ms: generation,
    };
    let listener = socket::bind(&settings.socket)?;
    let transport = gossip::transport_for(&settings);
    let gossip = match Gossip::start(&settings, generation, &announcement, transport.as_ref()).await {
        Ok(gossip) => gossip,
        Err(err) => {
            let _ = std::fs::remove_file(&settings.socket);
            return Err(err.into());
        }
    };

    let core = Core::new(
        &settings.node_name,
        &settings.advertise.to_string(),
        generation,
        announcement,
    );
    let events = Arc::new(Mutex::new(EventLog::default()));
    let (status_tx, status_rx) = watch::channel(Arc::new(empty_report(&settings)));
    let (stop_tx, stop_rx) = watch::channel(false);
    let api = tokio::spawn(socket::serve(
        listener,
        ApiState {
            status: status_rx,
            events: events.clone(),
        },
        stop_rx,
    ));

    let mut driver = Driver {
        settings,
        started,
        core,
        events,
        status: status_tx,
        ignored_seen: HashSet::new(),
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

    let outcome = driver.drive(&gossip, shutdown).await;

    driver.record(
        EventKind::AgentStopping,
        Some(driver.settings.node_name.clone()),
        "shutting down".into(),
    );
    let _ = stop_tx.send(true);
    if tokio::time::timeout(SOCKET_STOP_TIMEOUT, api).await.is_err() {
        tracing::warn!("status socket did not stop within {SOCKET_STOP_TIMEOUT:?}");
    }
    gossip.shutdown().await;
    if let Err(err) = std::fs::remove_file(&driver.settings.socket) {
        tracing::warn!("cannot remove socket {}: {err}", driver.settings.socket.display());
    }
    outcome
}

impl Driver {
    async fn drive(&mut self, gossip: &Gossip, shutdown: impl Future<Output = ()>) -> Result<(), AgentError> {
        let tick = gossip::gossip_interval(self.settings.threshold_ms()) / 2;
        let mut ticker = tokio::time::interval(tick);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        let gossip_ended = gossip.termination();
        tokio::pin!(shutdown, gossip_ended);
        loop {
            tokio::select! {
                _ = &mut shutdown => return Ok(()),
                ended = &mut gossip_ended => {
                    let reason = match ended {
                        Ok(()) => "the gossip task ended".to_string(),
                        Err(err) => format!("{err:#}"),
                    };
                    return Err(AgentError::GossipStopped(reason));
                }
                _ = ticker.tick() => self.tick(gossip).await,
            }
        }
    }

    fn now(&self) -> MonoMs {
        MonoMs(self.started.elapsed().as_millis() as u64)
    }

    async fn tick(&mut self, gossip: &Gossip) {
        let (observations, ignored) = match gossip.observations().await {
            Ok(seen) => seen,
            Err(err) => {
                tracing::warn!("skipping a tick: {err}");
                return;
            }
        };
        for peer in ignored {
            self.report_ignored(peer);
        }
        let now = self.now();
        for decision in self.core.step(now, observations, None) {
            let (kind, node, reason) = match decision {
                Decision::NodeUp { node, reason } => (EventKind::NodeUp, Some(node), reason),
                Decision::NodeDown { node, reason } => (EventKind::NodeDown, Some(node), reason),
                Decision::NodeRestarted { node, reason } => (EventKind::NodeRestarted, Some(node), reason),
                Decision::ServerMasterChanged { to, reason, .. } => (EventKind::ServerMasterChanged, to, reason),
                Decision::DbPrimaryChanged { to, reason, .. } => (EventKind::DbPrimaryChanged, to, reason),
                Decision::Db(_) => continue,
            };
            self.record(kind, node, reason);
        }
        let report = self.report(now);
        self.status.send_replace(Arc::new(report));
    }

    fn report_ignored(&mut self, peer: IgnoredPeer) {
        let key = (peer.name.clone(), peer.generation, peer.error.to_string());
        if self.ignored_seen.contains(&key) {
            return;
        }
        if self.ignored_seen.len() >= MAX_REMEMBERED_IGNORED {
            self.ignored_seen.clear();
        }
        self.ignored_seen.insert(key);
        self.record(
            EventKind::PeerIgnored,
            Some(peer.name.clone()),
            format!(
                "ignoring {} (generation {}): {}",
                peer.name, peer.generation, peer.error
            ),
        );
    }

    fn record(&self, kind: EventKind, node: Option<String>, reason: String) {
        if let Ok(mut log) = self.events.lock() {
            log.push(unix_ms(), kind, node, reason);
        }
    }

    fn report(&self, now: MonoMs) -> StatusReport {
        StatusReport {
            nodes: self.core.view(now).into_iter().map(node_status).collect(),
            server_master: self.core.server_master().map(str::to_string),
            uptime_ms: now.0,
            ..empty_report(&self.settings)
        }
    }
}

fn empty_report(settings: &Settings) -> StatusReport {
    StatusReport {
        self_name: settings.node_name.clone(),
        cluster_id: settings.cluster_id.clone(),
        server_master: None,
        db_primary: None,
        threshold_ms: settings.threshold_ms(),
        uptime_ms: 0,
        nodes: Vec::new(),
    }
}

fn node_status(view: NodeView) -> NodeStatus {
    NodeStatus {
        roles: view.announcement.roles.iter().copied().collect(),
        master: view.announcement.master,
        threshold_ms: view.announcement.threshold_ms,
        state: if view.alive {
            NodeLiveness::Alive
        } else {
            NodeLiveness::Down
        },
        last_contact_ms: view.last_contact_ms,
        generation: view.generation,
        is_self: view.is_self,
        db: view.db,
        addr: view.addr,
        name: view.name,
    }
}

pub fn role_list(roles: &[gossip_ha_proto::gossip::Role]) -> String {
    roles.iter().map(|role| role.as_str()).collect::<Vec<_>>().join(",")
}
