//! The chitchat node and the transport seam. Everything chitchat-specific stays here: the rest of
//! the agent sees `Observation`s, and a TLS transport replaces `transport_for` without touching
//! the core or the driver.

use std::collections::BTreeMap;
use std::time::Duration;

use chitchat::transport::{Transport, UdpTransport};
use chitchat::{spawn_chitchat, ChitchatConfig, ChitchatHandle, ChitchatId, FailureDetectorConfig};
use gossip_ha_proto::db::DbAnnouncement;
use gossip_ha_proto::gossip::{
    Announcement, AnnouncementError, ClusterRequest, RequestAnswer, KEY_ANSWERS, KEY_CERT, KEY_DB, KEY_DB_PRIMARY,
    KEY_DB_REACH, KEY_REQUEST,
};

use crate::config::Settings;
use crate::core::authority::{self, AuthorityPolicy, PeerIdentity};
use crate::core::Observation;
use crate::tls::identity::{IdentityHandle, TlsIdentity};
use crate::tls::transport::{RefusalSink, TlsTransport};

/// How long a lock on chitchat's state may be waited for before a tick is skipped.
const STATE_LOCK_TIMEOUT: Duration = Duration::from_secs(1);
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(2);
/// Peers that stay silent this long are dropped from chitchat's state (our core keeps its own
/// memory of them, so status still lists them as down).
const DEAD_NODE_GRACE: Duration = Duration::from_secs(3600);

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
}

impl Authority {
    pub fn for_settings(settings: &Settings, identity: Option<&IdentityHandle>) -> Self {
        Authority {
            certificates: identity.cloned(),
            policy: AuthorityPolicy {
                ha_hosts: settings.db.ha_hosts.clone(),
            },
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
    handle: ChitchatHandle,
    authority: Authority,
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
        let config = ChitchatConfig {
            chitchat_id: ChitchatId::new(params.node_name.clone(), params.generation, params.advertise),
            cluster_id: params.cluster_id.clone(),
            gossip_interval: interval,
            listen_addr: params.listen,
            seed_nodes: params.seeds.clone(),
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
        Ok(Gossip { handle, authority })
    }

    /// How far the node whose state this is may be believed, or why it is not heard at all.
    fn identity_of(&self, name: &str, cert: Option<&str>) -> Result<authority::Grants, String> {
        match (&self.authority.certificates, cert) {
            (None, _) => Ok(authority::Grants::default()),
            (Some(identity), Some(cert)) => identity.current().peers.grants(name, cert),
            (Some(_), None) => Err(
                "its gossip carries no certificate (an agent of a release before role certificates, or forged state)"
                    .into(),
            ),
        }
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
        let mut newest: BTreeMap<String, Observation> = BTreeMap::new();
        let mut ignored = Vec::new();
        let mut refused = Vec::new();
        for (id, state) in guard.node_states() {
            if id.node_id == self_id.node_id {
                continue;
            }
            let announcement = match Announcement::from_lookup(|key| state.get(key)) {
                Ok(announcement) => announcement,
                Err(AnnouncementError::Missing(_)) => continue,
                Err(error) => {
                    ignored.push(IgnoredPeer {
                        name: id.node_id.to_string(),
                        generation: id.generation_id,
                        error,
                    });
                    continue;
                }
            };
            let name = id.node_id.to_string();
            let grants = match self.identity_of(&name, state.get(KEY_CERT)) {
                Ok(grants) => grants,
                Err(reason) => {
                    refused.push(RefusedClaim {
                        name,
                        reason: format!("not heard at all: {reason}"),
                    });
                    continue;
                }
            };
            let observation = Observation {
                name: id.node_id.to_string(),
                generation: id.generation_id,
                heartbeat: u64::from(state.heartbeat()),
                addr: id.gossip_advertise_addr.to_string(),
                announcement,
                db: state
                    .get(KEY_DB)
                    .and_then(|json| serde_json::from_str::<DbAnnouncement>(json).ok()),
                db_primary: state
                    .get(KEY_DB_PRIMARY)
                    .filter(|name| !name.is_empty())
                    .map(str::to_string),
                db_reach: state
                    .get(KEY_DB_REACH)
                    .map(|names| {
                        names
                            .split(',')
                            .filter(|name| !name.is_empty())
                            .map(str::to_string)
                            .collect()
                    })
                    .unwrap_or_default(),
                request: state
                    .get(KEY_REQUEST)
                    .filter(|json| !json.is_empty())
                    .and_then(|json| serde_json::from_str::<ClusterRequest>(json).ok()),
                answers: state
                    .get(KEY_ANSWERS)
                    .filter(|json| !json.is_empty())
                    .and_then(|json| serde_json::from_str::<Vec<RequestAnswer>>(json).ok())
                    .unwrap_or_default(),
            };
            let identity = match self.authority.certificates {
                None => PeerIdentity::Unchecked,
                Some(_) => PeerIdentity::Certified(&grants),
            };
            let (observation, reasons) = authority::screen(observation, identity, &self.authority.policy);
            refused.extend(reasons.into_iter().map(|reason| RefusedClaim {
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
        Ok(Seen {
            observations: newest.into_values().collect(),
            ignored,
            refused,
        })
    }

    /// Sets this node's own keys; peers receive them with the next gossip rounds.
    pub async fn set_keys(&self, key_values: &[(&str, String)]) -> Result<(), GossipError> {
        let chitchat = self.handle.chitchat();
        let mut guard = tokio::time::timeout(STATE_LOCK_TIMEOUT, chitchat.lock())
            .await
            .map_err(|_| GossipError::Locked(STATE_LOCK_TIMEOUT))?;
        let own = guard.self_node_state();
        for (key, value) in key_values {
            own.set(*key, value);
        }
        Ok(())
    }

    /// Resolves when chitchat's server task ends on its own (a broken transport).
    pub fn termination(&self) -> impl std::future::Future<Output = anyhow::Result<()>> + use<> {
        self.handle.termination_watcher()
    }

    pub async fn shutdown(self) {
        match tokio::time::timeout(SHUTDOWN_TIMEOUT, self.handle.shutdown()).await {
            Ok(Ok(())) => {}
            Ok(Err(err)) => tracing::warn!("gossip stopped with an error: {err:#}"),
            Err(_) => tracing::warn!("gossip did not stop within {SHUTDOWN_TIMEOUT:?}; abandoned"),
        }
    }
}
