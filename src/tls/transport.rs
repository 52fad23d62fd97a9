//! A chitchat `Transport` over TCP with mutual TLS. Inbound: each connection must complete a
//! TLS handshake with a certificate of the cluster CA, then send a `Hello` whose node name the
//! certificate is valid for; anything else is refused (logged once per peer and reason).
//! Strangers cannot starve the configured peers: an address may hold only a few connections that
//! have not finished the handshake, and part of the slots is kept for the seeds and for addresses
//! that once sent a valid `Hello`.
//! Outbound: one connection per peer address, bound to this agent's advertise address, fed by a
//! bounded queue, so a slow or dead peer costs dropped gossip to it, never a stall for others.

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use chitchat::transport::{Socket, Transport};
use chitchat::{ChitchatMessage, Deserializable, Serializable};
use gossip_ha_proto::wire::Hello;
use gossip_ha_proto::PROTOCOL_VERSION;
use rustls::pki_types::ServerName;
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_rustls::{TlsAcceptor, TlsConnector};

use super::frame::{read_frame, write_frame};
use super::identity::{certificate_names, handshake_reason, IdentityHandle};
pub use super::refusals::RefusalSink;
use super::refusals::{Counts, Place, Refusals};

/// From accept to a checked `Hello`: a peer does both in a few round trips.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);
/// A dialler sends its ClientHello right after connecting; one that sends nothing this long is
/// not a peer (a reachability check closes at once, without a byte).
const FIRST_BYTE_TIMEOUT: Duration = Duration::from_secs(3);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
const WRITE_TIMEOUT: Duration = Duration::from_secs(5);
/// An inbound connection silent this long is closed (peers gossip several times a second).
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// A peer link with nothing to send this long ends; the next message starts a new one.
const LINK_IDLE: Duration = Duration::from_secs(600);
pub const MAX_INBOUND_CONNECTIONS: usize = 256;
/// Inbound slots only the seeds and known peers may use: a flood from elsewhere fills at most
/// `MAX_INBOUND_CONNECTIONS - RESERVED_FOR_PEERS`.
const RESERVED_FOR_PEERS: usize = 64;
/// Connections one address other than a known peer's may hold before its handshake and
/// `Hello` are done; a peer needs one.
const MAX_PENDING_PER_SOURCE: usize = 4;
/// A known address (a seed, this host's own, one that once sent a valid `Hello`) may have more
/// handshakes under way — agents on one host share it, reachability checks come in bursts — and
/// hold at most half the slots: a local user binding this host's address cannot take them all.
const MAX_PENDING_PER_KNOWN_SOURCE: usize = 32;
const MAX_SLOTS_PER_KNOWN_SOURCE: usize = MAX_INBOUND_CONNECTIONS / 2;
/// Addresses remembered as peers (a valid `Hello` came from there); beyond, no more are learnt.
const MAX_KNOWN_PEERS: usize = 1024;
/// Messages received but not yet taken by chitchat; beyond, new ones are dropped (gossip
/// tolerates loss, memory must not grow).
const INBOUND_QUEUE: usize = 1024;
/// Messages waiting for one peer's connection; beyond, new ones to that peer are dropped.
const PEER_QUEUE: usize = 64;
/// Outbound links at once, one per peer address: far above any Pandora cluster, and low enough
/// that the open-file need (`limits.rs`) stays honest.
pub const MAX_PEER_LINKS: usize = 256;
const BACKOFF_MIN: Duration = Duration::from_millis(100);
/// Short: a link back after a cut is the moment liveness and split-brain detection wait for.
const BACKOFF_MAX: Duration = Duration::from_secs(1);
/// Data unacknowledged this long breaks the link. Without it a link cut silently (packets
/// dropped) keeps taking writes into the socket buffer while TCP's retransmissions back off,
/// and after the cut heals the peer is heard again only at the next retransmission — many
/// seconds later, minutes after a long cut.
const UNACKNOWLEDGED_TIMEOUT: Duration = Duration::from_secs(3);
pub struct TlsTransport {
    identity: IdentityHandle,
    hello: Hello,
    refusals: RefusalSink,
    /// The configured seeds (`ip:port`), whose addresses get the reserved slots.
    seeds: Vec<String>,
}

impl TlsTransport {
    pub fn new(
        identity: IdentityHandle,
        cluster_id: &str,
        node_name: &str,
        advertise: SocketAddr,
        refusals: RefusalSink,
        seeds: &[String],
    ) -> Self {
        TlsTransport {
            identity,
            hello: Hello {
                version: PROTOCOL_VERSION,
                cluster_id: cluster_id.to_string(),
                node_name: node_name.to_string(),
                advertise,
            },
            refusals,
            seeds: seeds.to_vec(),
        }
    }
}

/// Addresses whose connections may use the reserved slots and skip the per-source cap.
#[derive(Default)]
struct KnownPeers(Mutex<HashSet<IpAddr>>);

impl KnownPeers {
    /// The seeds' addresses (settings hold them as `ip:port`, `localhost` already resolved) and
    /// this host's own: its reachability checks and any agent sharing the address come from there.
    fn new(seeds: &[String], own: IpAddr) -> Self {
        let seeds = seeds.iter().filter_map(|seed| seed.parse::<SocketAddr>().ok());
        KnownPeers(Mutex::new(seeds.map(|seed| seed.ip()).chain([own]).collect()))
    }

    fn contains(&self, ip: IpAddr) -> bool {
        self.0.lock().is_ok_and(|known| known.contains(&ip))
    }

    fn learn(&self, ip: IpAddr) {
        if let Ok(mut known) = self.0.lock() {
            if known.len() < MAX_KNOWN_PEERS {
                known.insert(ip);
            }
        }
    }
}

/// Who may take an inbound slot: counts of connections held and of those still unauthenticated.
#[derive(Default)]
struct Admission {
    slots: Counts<IpAddr>,
    pending: Counts<IpAddr>,
    known: KnownPeers,
}

impl Admission {
    /// A slot (held for the connection's life) and a pending place (given back after `Hello`),
    /// or why not.
    fn admit(&self, ip: IpAddr) -> Result<(Place<IpAddr>, Place<IpAddr>), String> {
        let known = self.known.contains(ip);
        let limit = if known {
            MAX_INBOUND_CONNECTIONS
        } else {
            MAX_INBOUND_CONNECTIONS - RESERVED_FOR_PEERS
        };
        let slot = self.slots.take(ip, |held| match (held.total < limit, known) {
            (true, true) if held.from_source >= MAX_SLOTS_PER_KNOWN_SOURCE => Err(format!(
                "{MAX_SLOTS_PER_KNOWN_SOURCE} gossip connections from it already open"
            )),
            (true, _) => Ok(()),
            (false, true) => Err(format!(
                "more than {MAX_INBOUND_CONNECTIONS} gossip connections at once"
            )),
            (false, false) => Err(format!(
                "{limit} gossip connections open, the other {RESERVED_FOR_PEERS} are kept for known peers"
            )),
        })?;
        let pending_limit = if known {
            MAX_PENDING_PER_KNOWN_SOURCE
        } else {
            MAX_PENDING_PER_SOURCE
        };
        let pending = self.pending.take(ip, |held| match held.from_source < pending_limit {
            true => Ok(()),
            false => Err(format!(
                "more than {pending_limit} connections from it without a finished handshake"
            )),
        })?;
        Ok((slot, pending))
    }
}

#[async_trait]
impl Transport for TlsTransport {
    async fn open(&self, listen_addr: SocketAddr) -> anyhow::Result<Box<dyn Socket>> {
        let listener = TcpListener::bind(listen_addr).await?;
        let (inbound_tx, inbound_rx) = mpsc::channel(INBOUND_QUEUE);
        let refusals = Arc::new(Refusals::new(self.refusals.clone()));
        let admission = Arc::new(Admission {
            known: KnownPeers::new(&self.seeds, self.hello.advertise.ip()),
            ..Admission::default()
        });
        let accept_task = tokio::spawn(accept_loop(
            listener,
            Inbound {
                identity: self.identity.clone(),
                cluster_id: self.hello.cluster_id.clone(),
                queue: inbound_tx,
                admission,
            },
            refusals,
        ));
        Ok(Box::new(TlsSocket {
            identity: self.identity.clone(),
            hello: Arc::new(self.hello.encode()),
            local_ip: self.hello.advertise.ip(),
            inbound: inbound_rx,
            links: HashMap::new(),
            accept_task,
        }))
    }
}

/// What every inbound connection task needs.
#[derive(Clone)]
struct Inbound {
    identity: IdentityHandle,
    cluster_id: String,
    queue: mpsc::Sender<(SocketAddr, ChitchatMessage)>,
    admission: Arc<Admission>,
}

async fn accept_loop(listener: TcpListener, inbound: Inbound, refusals: Arc<Refusals>) {
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(err) => {
                tracing::warn!("gossip accept failed: {err}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        // Refused at once, before any task or buffer: the stream closes here.
        let (slot, pending) = match inbound.admission.admit(peer.ip()) {
            Ok(places) => places,
            Err(reason) => {
                refusals.refuse(peer.ip(), reason);
                continue;
            }
        };
        let (inbound, refusals) = (inbound.clone(), refusals.clone());
        tokio::spawn(async move {
            if let Err(reason) = serve_inbound(stream, peer.ip(), &inbound, pending).await {
                refusals.refuse(peer.ip(), reason);
            }
            drop(slot);
        });
    }
}

/// Returns the reason when the peer is refused; a connection that simply ends is `Ok`.
async fn serve_inbound(stream: TcpStream, ip: IpAddr, inbound: &Inbound, pending: Place<IpAddr>) -> Result<(), String> {
    let _ = stream.set_nodelay(true);
    let deadline = tokio::time::Instant::now() + HANDSHAKE_TIMEOUT;
    // Other agents' reachability checks (`agent/reach.rs`) connect and close without a byte.
    let mut first_byte = [0u8; 1];
    match tokio::time::timeout(FIRST_BYTE_TIMEOUT, stream.peek(&mut first_byte)).await {
        Err(_) => return Err(format!("no TLS handshake within {} s", FIRST_BYTE_TIMEOUT.as_secs())),
        Ok(Ok(0)) => return Ok(()),
        Ok(_) => {}
    }
    let (mut tls, hello) = tokio::time::timeout_at(deadline, handshake(stream, inbound))
        .await
        .map_err(|_| format!("no TLS handshake and hello within {} s", HANDSHAKE_TIMEOUT.as_secs()))??;
    drop(pending);
    inbound.admission.known.learn(ip);
    relay(&mut tls, &hello, &inbound.queue).await
}

/// The TLS handshake and the `Hello`, checked against the client certificate.
async fn handshake(
    stream: TcpStream,
    inbound: &Inbound,
) -> Result<(tokio_rustls::server::TlsStream<TcpStream>, Hello), String> {
    let cluster_id = inbound.cluster_id.as_str();
    let acceptor = TlsAcceptor::from(inbound.identity.current().server.clone());
    let mut tls = acceptor.accept(stream).await.map_err(|err| {
        let hint = match err.to_string() {
            // The peer hung up on our certificate: it trusts another CA.
            text if text.contains("DecryptError") || text.contains("UnknownCA") || text.contains("BadCertificate") => {
                " (its certificate, or ours to it, is not from this cluster's CA)"
            }
            _ => "",
        };
        format!("TLS handshake failed: {}{hint}", handshake_reason(&err))
    })?;
    let certificate = tls
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|chain| chain.first())
        .cloned()
        .ok_or("no client certificate")?;
    let hello_frame = read_frame(&mut tls).await.map_err(|err| format!("no hello: {err}"))?;
    let hello = Hello::decode(&hello_frame)?;
    if hello.version != PROTOCOL_VERSION {
        return Err(format!(
            "protocol version {}, this agent speaks {PROTOCOL_VERSION}",
            hello.version
        ));
    }
    if hello.cluster_id != cluster_id {
        return Err(format!(
            "cluster `{}`, this agent is in `{cluster_id}`",
            hello.cluster_id
        ));
    }
    if !certificate_names(&certificate, &hello.node_name) {
        return Err(format!(
            "gossips as `{}` but its certificate is for another name",
            hello.node_name
        ));
    }
    Ok((tls, hello))
}

/// Hands the peer's gossip messages to chitchat until it goes silent or misbehaves.
async fn relay(
    tls: &mut tokio_rustls::server::TlsStream<TcpStream>,
    hello: &Hello,
    inbound: &mpsc::Sender<(SocketAddr, ChitchatMessage)>,
) -> Result<(), String> {
    loop {
        let frame = match tokio::time::timeout(IDLE_TIMEOUT, read_frame(tls)).await {
            Ok(Ok(frame)) => frame,
            Ok(Err(super::frame::FrameError::TooLarge(length))) => {
                return Err(format!("{} sent a {length}-byte frame", hello.node_name))
            }
            Ok(Err(_)) | Err(_) => return Ok(()),
        };
        let message = ChitchatMessage::deserialize(&mut &frame[..])
            .map_err(|err| format!("{} sent an unreadable gossip message: {err}", hello.node_name))?;
        // Full queue: this message is dropped; gossip repairs itself on the next round.
        let _ = inbound.try_send((hello.advertise, message));
    }
}

struct TlsSocket {
    identity: IdentityHandle,
    hello: Arc<Vec<u8>>,
    local_ip: IpAddr,
    inbound: mpsc::Receiver<(SocketAddr, ChitchatMessage)>,
    links: HashMap<SocketAddr, (mpsc::Sender<Vec<u8>>, JoinHandle<()>)>,
    accept_task: JoinHandle<()>,
}

impl Drop for TlsSocket {
    fn drop(&mut self) {
        self.accept_task.abort();
        for (_, task) in self.links.values() {
            task.abort();
        }
    }
}

#[async_trait]
impl Socket for TlsSocket {
    async fn send(&mut self, to: SocketAddr, message: ChitchatMessage) -> anyhow::Result<()> {
        let mut bytes = Vec::with_capacity(message.serialized_len());
        message.serialize(&mut bytes);
        let alive = self.links.get(&to).is_some_and(|(queue, _)| !queue.is_closed());
        if !alive {
            if self.links.len() >= MAX_PEER_LINKS {
                self.links.retain(|_, (queue, _)| !queue.is_closed());
            }
            if self.links.len() >= MAX_PEER_LINKS && !self.links.contains_key(&to) {
                tracing::debug!(peer = %to, "{MAX_PEER_LINKS} peer links open; message dropped");
                return Ok(());
            }
            let (queue, frames) = mpsc::channel(PEER_QUEUE);
            let task = tokio::spawn(peer_link(
                to,
                self.local_ip,
                self.identity.clone(),
                self.hello.clone(),
                frames,
            ));
            if let Some((_, old)) = self.links.insert(to, (queue, task)) {
                old.abort();
            }
        }
        if let Some((queue, _)) = self.links.get(&to) {
            // Full: this peer is slow or unreachable; drop rather than stall everyone else.
            let _ = queue.try_send(bytes);
        }
        Ok(())
    }

    async fn recv(&mut self) -> anyhow::Result<(SocketAddr, ChitchatMessage)> {
        self.inbound
            .recv()
            .await
            .ok_or_else(|| anyhow::anyhow!("the gossip listener stopped"))
    }
}

async fn connect(
    to: SocketAddr,
    local_ip: IpAddr,
    connector: &TlsConnector,
    hello: &[u8],
) -> Result<tokio_rustls::client::TlsStream<TcpStream>, String> {
    let socket = if to.is_ipv4() {
        TcpSocket::new_v4()
    } else {
        TcpSocket::new_v6()
    }
    .map_err(|err| err.to_string())?;
    // Leave from our own advertised address: hosts on distinct addresses stay distinct to the
    // network, and a cut between two of them is a real cut.
    socket
        .bind(SocketAddr::new(local_ip, 0))
        .map_err(|err| format!("cannot bind to {local_ip}: {err}"))?;
    let stream = tokio::time::timeout(CONNECT_TIMEOUT, socket.connect(to))
        .await
        .map_err(|_| "connect timed out".to_string())?
        .map_err(|err| format!("connect: {err}"))?;
    let _ = stream.set_nodelay(true);
    socket2::SockRef::from(&stream)
        .set_tcp_user_timeout(Some(UNACKNOWLEDGED_TIMEOUT))
        .map_err(|err| format!("TCP_USER_TIMEOUT: {err}"))?;
    let mut tls = tokio::time::timeout(
        HANDSHAKE_TIMEOUT,
        connector.connect(ServerName::IpAddress(to.ip().into()), stream),
    )
    .await
    .map_err(|_| "TLS handshake timed out".to_string())?
    .map_err(|err| format!("TLS handshake: {err}"))?;
    tokio::time::timeout(WRITE_TIMEOUT, write_frame(&mut tls, hello))
        .await
        .map_err(|_| "hello timed out".to_string())?
        .map_err(|err| format!("hello: {err}"))?;
    Ok(tls)
}

async fn peer_link(
    to: SocketAddr,
    local_ip: IpAddr,
    identity: IdentityHandle,
    hello: Arc<Vec<u8>>,
    mut frames: mpsc::Receiver<Vec<u8>>,
) {
    let mut connection = None;
    let mut backoff = BACKOFF_MIN;
    let mut retry_at = tokio::time::Instant::now();
    let mut last_failure = String::new();
    loop {
        let frame = match tokio::time::timeout(LINK_IDLE, frames.recv()).await {
            Ok(Some(frame)) => frame,
            Ok(None) | Err(_) => return,
        };
        if connection.is_none() {
            if tokio::time::Instant::now() < retry_at {
                continue; // backing off: this message to `to` is dropped
            }
            // The identity of the moment: a reloaded certificate is used from the next link on.
            let connector = TlsConnector::from(identity.current().client.clone());
            match connect(to, local_ip, &connector, &hello).await {
                Ok(tls) => {
                    connection = Some(tls);
                    backoff = BACKOFF_MIN;
                    last_failure.clear();
                }
                Err(reason) => {
                    if reason != last_failure {
                        tracing::debug!(peer = %to, "cannot reach: {reason}");
                        last_failure = reason;
                    }
                    retry_at = tokio::time::Instant::now() + backoff;
                    backoff = (backoff * 2).min(BACKOFF_MAX);
                    continue;
                }
            }
        }
        if let Some(tls) = connection.as_mut() {
            let written = tokio::time::timeout(WRITE_TIMEOUT, write_frame(tls, &frame)).await;
            if !matches!(written, Ok(Ok(()))) {
                connection = None;
            }
        }
    }
}
