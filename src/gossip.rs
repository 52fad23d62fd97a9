//! The chitchat node and the transport seam. Everything chitchat-specific stays here: the rest of
//! the agent sees `Observation`s, and a TLS transport replaces `transport_for` without touching
//! the core or the driver.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use chitchat::transport::{Transport, UdpTransport};
use chitchat::{
    spawn_chitchat, ChitchatConfig, ChitchatHandle, ChitchatId, Deserializable, FailureDetectorConfig, Heartbeat,
};
use gossip_ha_proto::db::DbAnnouncement;
use gossip_ha_proto::gossip::{
    Announcement, AnnouncementError, ClusterRequest, RequestAnswer, KEY_ANSWERS, KEY_CERT, KEY_DB, KEY_DB_PRIMARY,
    KEY_DB_REACH, KEY_REQUEST, KEY_SEAL,
};

use crate::config::Settings;
use crate::core::authority::{self, AuthorityPolicy, Grants, PeerIdentity};
use crate::core::Observation;
use crate::tls::identity::{IdentityHandle, TlsIdentity};
use crate::tls::seal;

mod sealed;
use crate::tls::transport::{RefusalSink, TlsTransport};
use sealed::{Reading, SealedStates, Shown};

/// How long a lock on chitchat's state may be waited for before a tick is skipped.
const STATE_LOCK_TIMEOUT: Duration = Duration::from_secs(1);
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(2);
/// Peers that stay silent this long are dropped from chitchat's state (our core keeps its own
/// memory of them, so status still lists them as down).
const DEAD_NODE_GRACE: Duration = Duration::from_secs(3600);
/// Chitchat's own round interval when rounds are driven from outside: its loop then runs one
/// round at start (with no seeds, nobody to send to) and never again within a simulated run.
const DRIVEN_INTERVAL: Duration = Duration::from_secs(365 * 24 * 3600);

#[derive(Debug, thiserror::Error)]
pub enum GossipError {
    #[error("cannot start gossip on {listen}: {message}")]
    Start { listen: String, message: String },
    #[error("gossip state stayed locked for {0:?}")]
    Locked(Duration),
    #[error("TLS: {0}")]
    Tls(String),
}

/// Chitchat's heartbeat advances once per gossip round; a tenth of the threshold gives the
/// threshold×2 rule about twenty heartbeats of margin, within sane bounds.
pub fn gossip_interval(threshold_ms: u64) -> Duration {
    Duration::from_millis((threshold_ms / 10).clamp(50, 1_000))
}

/// Loads the TLS identity when `[tls]` is set, exactly as `run` needs it (`check-config` too).
pub fn load_identity(settings: &Settings) -> Result<Option<TlsIdentity>, GossipError> {
    let Some(files) = &settings.tls else {
        return Ok(None);
    };
    TlsIdentity::load(files, &settings.node_name, &settings.roles)
        .map(Some)
        .map_err(|err| GossipError::Tls(err.to_string()))
}

/// Mutual TLS with `identity`; plain UDP without, which the configuration allows only on
/// loopback. `refusals` hears of every peer the TLS transport turns away.
pub fn transport_for(
    settings: &Settings,
    identity: Option<&IdentityHandle>,
    refusals: RefusalSink,
) -> Box<dyn Transport> {
    match identity {
        None => Box::new(UdpTransport),
        Some(identity) => Box::new(TlsTransport::new(
            identity.clone(),
            &settings.cluster_id,
            &settings.node_name,
            settings.advertise,
            refusals,
            &settings.seeds,
        )),
    }
}

/// Whose gossip is believed how far: certificates checked against the cluster CA over TLS,
/// gossip taken as said on plain loopback; `ha_hosts` limits DB claims either way.
#[derive(Clone, Default)]
pub struct Authority {
    /// Whose CA checks the certificates peers gossip (the agent's current identity's).
    pub certificates: Option<IdentityHandle>,
    pub policy: AuthorityPolicy,
    /// Without certificates, the grants each named peer is held to as if its certificate
    /// carried them. Only the simulations, which have no TLS, fill it (to screen a lying
    /// peer the way a certificate would); the daemon leaves it empty and believes plain gossip.
    pub plain_grants: BTreeMap<String, Grants>,
}

impl Authority {
    pub fn for_settings(settings: &Settings, identity: Option<&IdentityHandle>) -> Self {
        Authority {
            certificates: identity.cloned(),
            policy: AuthorityPolicy {
                ha_hosts: settings.db.ha_hosts.clone(),
            },
            plain_grants: BTreeMap::new(),
        }
    }

    /// How far `name`'s state is believed: its verified certificate's grants over TLS, else the
    /// grants given for plain gossip, else as said.
    fn identity_of<'a>(&'a self, name: &str, verified: Option<&'a Grants>) -> PeerIdentity<'a> {
        match verified.or_else(|| self.plain_grants.get(name)) {
            Some(grants) => PeerIdentity::Certified(grants),
            None => PeerIdentity::Unchecked,
        }
    }
}

/// A claim in a peer's gossip that its certificate does not allow, ignored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefusedClaim {
    pub name: String,
    pub reason: String,
}

/// A peer whose gossip keys this agent cannot use (another protocol version, invalid values).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IgnoredPeer {
    pub name: String,
    pub generation: u64,
    pub error: AnnouncementError,
}

pub struct Gossip {
    /// Shared only with a `RoundHandle` (weakly): the simulations' round driver.
    handle: Arc<ChitchatHandle>,
    authority: Authority,
    /// Peers' last verified states (over TLS).
    sealed: SealedStates,
    /// This node's seal counter: it only grows within a generation.
    seal_counter: AtomicU64,
    generation: u64,
}

/// What gossip shows of the peers this tick.
#[derive(Debug, Default)]
pub struct Seen {
    pub observations: Vec<Observation>,
    pub ignored: Vec<IgnoredPeer>,
    pub refused: Vec<RefusedClaim>,
}

/// What a chitchat node needs: from the settings in the agent, made up in the simulations.
#[derive(Debug, Clone)]
pub struct GossipParams {
    pub node_name: String,
    pub cluster_id: String,
    pub listen: std::net::SocketAddr,
    pub advertise: std::net::SocketAddr,
    pub seeds: Vec<String>,
    pub threshold_ms: u64,
    pub generation: u64,
    /// This agent's certificate (base64 DER) for the `cert` key, over TLS.
    pub certificate: Option<String>,
    pub rounds: Rounds,
}

/// Who starts this node's gossip rounds.
#[derive(Clone, Default)]
pub enum Rounds {
    /// Chitchat's own loop, every gossip interval, to partners it picks with an RNG it seeds
    /// from the OS: the agent.
    #[default]
    Chitchat,
    /// Whoever receives the `RoundHandle` (the simulations: partners from their seeded RNG, so a
    /// run replays exactly). Chitchat's own loop is kept out of the way: no seeds, an interval
    /// of a year.
    Driven(Arc<dyn Fn(RoundHandle) + Send + Sync>),
}

impl std::fmt::Debug for Rounds {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Rounds::Chitchat => "Chitchat",
            Rounds::Driven(_) => "Driven",
        })
    }
}

/// Starts a driven node's rounds; does nothing once the node's gossip has stopped.
#[derive(Clone)]
pub struct RoundHandle {
    handle: Weak<ChitchatHandle>,
    addr: SocketAddr,
    seeds: Vec<SocketAddr>,
    interval: Duration,
}

/// A peer as a round sees it: its gossip address and the newest heartbeat known of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RoundPeer {
    pub addr: SocketAddr,
    pub heartbeat: u64,
}

impl RoundHandle {
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The seeds, this node's own address left out.
    pub fn seeds(&self) -> &[SocketAddr] {
        &self.seeds
    }

    pub fn interval(&self) -> Duration {
        self.interval
    }

    /// Every other address in this node's chitchat state, in address order, with the newest
    /// heartbeat of any generation there; `None` once gossip has stopped.
    pub async fn peers(&self) -> Option<Vec<RoundPeer>> {
        let handle = self.handle.upgrade()?;
        let chitchat = handle.chitchat();
        let guard = tokio::time::timeout(STATE_LOCK_TIMEOUT, chitchat.lock()).await.ok()?;
        let mut newest: BTreeMap<SocketAddr, u64> = BTreeMap::new();
        for (id, state) in guard.node_states() {
            if id.gossip_advertise_addr != self.addr {
                let heartbeat = newest.entry(id.gossip_advertise_addr).or_default();
                *heartbeat = (*heartbeat).max(u64::from(state.heartbeat()));
            }
        }
        Some(
            newest
                .into_iter()
                .map(|(addr, heartbeat)| RoundPeer { addr, heartbeat })
                .collect(),
        )
    }

    /// One round, as chitchat's own: this node's heartbeat advances, then a SYN to each partner.
    /// False once gossip has stopped.
    pub async fn round(&self, partners: &[SocketAddr]) -> bool {
        let Some(handle) = self.handle.upgrade() else {
            return false;
        };
        let chitchat = handle.chitchat();
        let Ok(mut guard) = tokio::time::timeout(STATE_LOCK_TIMEOUT, chitchat.lock()).await else {
            return false;
        };
        // Chitchat advances its own heartbeat only inside its loop (`pub(crate)`); a heartbeat
        // can be made outside only from its serialized form.
        let own = guard.self_node_state();
        let next = u64::from(own.heartbeat()) + 1;
        if let Ok(next) = Heartbeat::deserialize(&mut &next.to_le_bytes()[..]) {
            own.try_set_heartbeat(next);
        }
        drop(guard);
        partners.iter().all(|partner| handle.gossip(*partner).is_ok())
    }
}

impl GossipParams {
    pub fn from_settings(settings: &Settings, generation: u64) -> Self {
        GossipParams {
            node_name: settings.node_name.clone(),
            cluster_id: settings.cluster_id.clone(),
            listen: settings.listen,
            advertise: settings.advertise,
            seeds: settings.seeds.clone(),
            threshold_ms: settings.threshold_ms(),
            generation,
            certificate: None,
            rounds: Rounds::Chitchat,
        }
    }
}

impl Gossip {
    pub async fn start(
        params: &GossipParams,
        announcement: &Announcement,
        transport: &dyn Transport,
        authority: Authority,
    ) -> Result<Gossip, GossipError> {
        let interval = gossip_interval(params.threshold_ms);
        let driven = matches!(params.rounds, Rounds::Driven(_));
        let config = ChitchatConfig {
            chitchat_id: ChitchatId::new(params.node_name.clone(), params.generation, params.advertise),
            cluster_id: params.cluster_id.clone(),
            gossip_interval: if driven { DRIVEN_INTERVAL } else { interval },
            listen_addr: params.listen,
            seed_nodes: if driven { Vec::new() } else { params.seeds.clone() },
            failure_detector_config: FailureDetectorConfig {
                initial_interval: interval,
                dead_node_grace_period: DEAD_NODE_GRACE,
                // Chitchat's phi detector only steers its choice of gossip targets here (our
                // liveness rule is the core's); 100 samples per peer instead of 1,000 saves 7 KB
                // per peer, 7 MB in a 1000-node cluster.
                sampling_window_size: 100,
                ..FailureDetectorConfig::default()
            },
            marked_for_deletion_grace_period: DEAD_NODE_GRACE,
            catchup_callback: None,
            extra_liveness_predicate: None,
        };
        // The certificate goes first: chitchat ships keys in version order, so a peer never
        // holds this node's announcement without the certificate that says what it may claim.
        let mut keys: Vec<(String, String)> = params
            .certificate
            .iter()
            .map(|cert| (KEY_CERT.to_string(), cert.clone()))
            .collect();
        keys.extend(announcement.to_key_values());
        let handle = spawn_chitchat(config, keys, transport)
            .await
            .map_err(|err| GossipError::Start {
                listen: params.listen.to_string(),
                message: format!("{err:#}"),
            })?;
        let gossip = Gossip {
            handle: Arc::new(handle),
            authority,
            sealed: SealedStates::default(),
            seal_counter: AtomicU64::new(0),
            generation: params.generation,
        };
        gossip.set_keys(&[]).await?;
        if let Rounds::Driven(give) = &params.rounds {
            give(RoundHandle {
                handle: Arc::downgrade(&gossip.handle),
                addr: params.advertise,
                seeds: params
                    .seeds
                    .iter()
                    .filter_map(|seed| seed.parse().ok())
                    .filter(|seed| *seed != params.advertise)
                    .collect(),
                interval,
            });
        }
        Ok(gossip)
    }

    /// What gossip shows of every peer: for each name, its newest generation with usable keys,
    /// stripped of what its certificate does not allow. Peers whose keys have not arrived yet
    /// are left out silently; unusable ones and refused claims are returned.
    pub async fn observations(&self) -> Result<Seen, GossipError> {
        let chitchat = self.handle.chitchat();
        let guard = tokio::time::timeout(STATE_LOCK_TIMEOUT, chitchat.lock())
            .await
            .map_err(|_| GossipError::Locked(STATE_LOCK_TIMEOUT))?;
        let self_id = guard.self_chitchat_id().clone();
        let identity = self.authority.certificates.as_ref().map(IdentityHandle::current);
        let mut newest: BTreeMap<String, Observation> = BTreeMap::new();
        let mut seen = Seen::default();
        for (id, state) in guard.node_states() {
            if id.node_id == self_id.node_id {
                continue;
            }
            let name = id.node_id.to_string();
            let shown: Shown<'_> = state.key_values().collect();
            let verified = match &identity {
                None => None,
                Some(identity) => match self.sealed.read(identity, &name, id.generation_id, &shown) {
                    Reading::Heard(verified) => Some(verified),
                    Reading::NotYet => continue,
                    Reading::Refused(reason) => {
                        let reason = format!("not heard at all: {reason}");
                        seen.refused.push(RefusedClaim { name, reason });
                        continue;
                    }
                },
            };
            // Over TLS what was verified, on plain loopback what gossip shows.
            let lookup = |key: &str| match &verified {
                Some(verified) => verified.values.get(key).map(String::as_str),
                None => shown.get(key).copied(),
            };
            let announcement = match Announcement::from_lookup(lookup) {
                Ok(announcement) => announcement,
                Err(AnnouncementError::Missing(_)) => continue,
                Err(error) => {
                    let generation = id.generation_id;
                    seen.ignored.push(IgnoredPeer {
                        name,
                        generation,
                        error,
                    });
                    continue;
                }
            };
            let observation = observation_of(id, u64::from(state.heartbeat()), announcement, lookup);
            let identity = self
                .authority
                .identity_of(&observation.name, verified.as_ref().map(|verified| &verified.grants));
            let (observation, reasons) = authority::screen(observation, identity, &self.authority.policy);
            seen.refused.extend(reasons.into_iter().map(|reason| RefusedClaim {
                name: observation.name.clone(),
                reason,
            }));
            match newest.get(&*id.node_id) {
                Some(kept) if kept.generation >= observation.generation => {}
                _ => {
                    newest.insert(id.node_id.to_string(), observation);
                }
            }
        }
        seen.observations = newest.into_values().collect();
        Ok(seen)
    }

    /// Sets this node's own keys; peers receive them with the next gossip rounds.
    pub async fn set_keys(&self, key_values: &[(&str, String)]) -> Result<(), GossipError> {
        let chitchat = self.handle.chitchat();
        let mut guard = tokio::time::timeout(STATE_LOCK_TIMEOUT, chitchat.lock())
            .await
            .map_err(|_| GossipError::Locked(STATE_LOCK_TIMEOUT))?;
        let own = guard.self_node_state();
        let changed = key_values
            .iter()
            .any(|(key, value)| own.get(key) != Some(value.as_str()));
        for (key, value) in key_values {
            own.set(*key, value);
        }
        let sealed = own.get(KEY_SEAL).is_some();
        if let Some(identity) = self.authority.certificates.as_ref().filter(|_| changed || !sealed) {
            // Set in the same lock, after the values: it has the highest version, so a peer
            // never holds it without the values it covers.
            let counter = self.seal_counter.fetch_add(1, Ordering::Relaxed) + 1;
            let node = guard.self_chitchat_id().node_id.clone();
            let own = guard.self_node_state();
            let message = seal::message(&node, self.generation, counter, own.key_values());
            match seal::sign(identity.current().signing_key.as_ref(), counter, &message) {
                Ok(sealed) => own.set(KEY_SEAL, sealed),
                Err(err) => tracing::warn!("gossip state not sealed: {err}"),
            }
        }
        Ok(())
    }

    /// Resolves when chitchat's server task ends on its own (a broken transport).
    pub fn termination(&self) -> impl std::future::Future<Output = anyhow::Result<()>> + use<> {
        self.handle.termination_watcher()
    }

    pub async fn shutdown(self) {
        // A round handle holds it only for the moment of a round, never across a shutdown.
        let handle = match Arc::try_unwrap(self.handle) {
            Ok(handle) => handle,
            Err(shared) => {
                let _ = shared.initiate_shutdown();
                return;
            }
        };
        match tokio::time::timeout(SHUTDOWN_TIMEOUT, handle.shutdown()).await {
            Ok(Ok(())) => {}
            Ok(Err(err)) => tracing::warn!("gossip stopped with an error: {err:#}"),
            Err(_) => tracing::warn!("gossip did not stop within {SHUTDOWN_TIMEOUT:?}; abandoned"),
        }
    }
}

/// One peer's observation from its (verified) keys.
fn observation_of<'a>(
    id: &ChitchatId,
    heartbeat: u64,
    announcement: Announcement,
    get: impl Fn(&str) -> Option<&'a str>,
) -> Observation {
    let list = |key: &str| -> Vec<String> {
        get(key)
            .map(|names| {
                names
                    .split(',')
                    .filter(|name| !name.is_empty())
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default()
    };
    Observation {
        name: id.node_id.to_string(),
        generation: id.generation_id,
        heartbeat,
        addr: id.gossip_advertise_addr.to_string(),
        announcement,
        db: get(KEY_DB).and_then(|json| serde_json::from_str::<DbAnnouncement>(json).ok()),
        db_primary: get(KEY_DB_PRIMARY).filter(|name| !name.is_empty()).map(str::to_string),
        db_reach: list(KEY_DB_REACH),
        request: get(KEY_REQUEST)
            .filter(|json| !json.is_empty())
            .and_then(|json| serde_json::from_str::<ClusterRequest>(json).ok()),
        answers: get(KEY_ANSWERS)
            .filter(|json| !json.is_empty())
            .and_then(|json| serde_json::from_str::<Vec<RequestAnswer>>(json).ok())
            .unwrap_or_default(),
    }
}
