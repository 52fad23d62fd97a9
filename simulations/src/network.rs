//! The in-memory network: a chitchat `Transport` whose links can be cut both ways or one way,
//! lose or delay messages — all decided by the seeded RNG, on simulated time. It is also the one
//! scheduler of gossip: it delivers messages and starts every node's rounds itself, in the order
//! of a queue, and hands a chitchat server new work only once every server is idle, so no
//! server ever has two kinds of work ready at once (see `replay.rs` for why that matters).

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use chitchat::transport::{Socket, Transport};
use chitchat::{ChitchatMessage, Serializable};
use gossip_ha::gossip::{RoundHandle, Rounds};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::replay::{self, Fnv64, PeerMemory};

/// Messages waiting at one node; beyond, new ones are dropped (as a full socket buffer would).
const INBOX: usize = 1024;
/// Yields a settling may take before a chitchat server counts as stuck (a bug in the harness).
const SETTLE_YIELDS: usize = 1_000_000;

enum Event {
    /// `socket` names the receiver's socket when the message was sent: a host restarted since
    /// never receives what was sent to the one before.
    Deliver {
        from: SocketAddr,
        to: SocketAddr,
        socket: u64,
        message: ChitchatMessage,
    },
    Round {
        addr: SocketAddr,
        driver: u64,
    },
}

/// One open socket and the work its chitchat server has been handed and not finished.
struct Port {
    id: u64,
    inbox: mpsc::Sender<(SocketAddr, ChitchatMessage)>,
    /// Messages in its inbox, not taken yet.
    queued: usize,
    /// A message taken and being handled: until its server asks for the next one.
    handling: bool,
    /// SYNs asked of it by a round and not sent yet.
    syns_asked: usize,
    /// Its server has not asked for a message yet: its first poll, where chitchat runs a round
    /// of its own, is still to come.
    unpolled: bool,
}

impl Port {
    fn busy(&self) -> bool {
        self.queued > 0 || self.handling || self.syns_asked > 0 || self.unpolled
    }
}

/// A driven node's rounds: its handle and what it remembers of its peers.
struct Driver {
    id: u64,
    handle: RoundHandle,
    memory: PeerMemory,
}

struct NetState {
    origin: Instant,
    ports: BTreeMap<SocketAddr, Port>,
    /// Ports whose server has work in hand.
    busy: usize,
    host_of: BTreeMap<SocketAddr, String>,
    /// Directed: (from, to) cannot deliver.
    cut: BTreeSet<(String, String)>,
    loss: f64,
    delay_ms: (u64, u64),
    /// Loss and delay.
    rng: StdRng,
    /// Gossip partners: a stream of its own, so a change in one does not shift the other.
    rounds_rng: StdRng,
    bytes_sent: BTreeMap<String, u64>,
    queue: BTreeMap<(Instant, u64), Event>,
    next_id: u64,
    drivers: BTreeMap<SocketAddr, Driver>,
    /// Every delivered message: when, from, to, which kind.
    trace: Fnv64,
}

impl NetState {
    fn id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    fn schedule(&mut self, at: Instant, event: Event) {
        let seq = self.id();
        self.queue.insert((at, seq), event);
    }

    /// Changes a port's work and keeps the count of busy ports; false when `socket` is gone.
    fn update(&mut self, addr: &SocketAddr, socket: u64, change: impl FnOnce(&mut Port)) -> bool {
        let Some(port) = self.ports.get_mut(addr).filter(|port| port.id == socket) else {
            return false;
        };
        let before = port.busy();
        change(port);
        let after = port.busy();
        self.busy = self.busy + usize::from(after) - usize::from(before);
        true
    }

    fn deliver(&mut self, at: Instant, from: SocketAddr, to: SocketAddr, socket: u64, message: ChitchatMessage) {
        let kind = match &message {
            ChitchatMessage::Syn { .. } => "syn",
            ChitchatMessage::SynAck { .. } => "synack",
            ChitchatMessage::Ack { .. } => "ack",
            _ => "other",
        };
        let Some(port) = self.ports.get(&to).filter(|port| port.id == socket) else {
            return;
        };
        if port.inbox.try_send((from, message)).is_ok() {
            self.update(&to, socket, |port| port.queued += 1);
            let at_ms = at.duration_since(self.origin).as_millis();
            self.trace.write(format!("{at_ms} {from} {to} {kind}").as_bytes());
        }
    }
}

#[derive(Clone)]
pub struct SimNetwork {
    state: Arc<Mutex<NetState>>,
}

impl SimNetwork {
    pub fn new(seed: u64) -> Self {
        SimNetwork {
            state: Arc::new(Mutex::new(NetState {
                origin: Instant::now(),
                ports: BTreeMap::new(),
                busy: 0,
                host_of: BTreeMap::new(),
                cut: BTreeSet::new(),
                loss: 0.0,
                delay_ms: (0, 2),
                rng: StdRng::seed_from_u64(seed ^ 0x6e65_7477_6f72_6b00),
                rounds_rng: replay::rounds_rng(seed),
                bytes_sent: BTreeMap::new(),
                queue: BTreeMap::new(),
                next_id: 0,
                drivers: BTreeMap::new(),
                trace: Fnv64::default(),
            })),
        }
    }

    fn with<T>(&self, f: impl FnOnce(&mut NetState) -> T) -> T {
        f(&mut self.state.lock().expect("network state"))
    }

    pub fn cut(&self, a: &str, b: &str) {
        self.cut_one_way(a, b);
        self.cut_one_way(b, a);
    }

    pub fn cut_one_way(&self, from: &str, to: &str) {
        self.with(|net| net.cut.insert((from.to_string(), to.to_string())));
    }

    pub fn heal(&self) {
        self.with(|net| {
            net.cut.clear();
            net.loss = 0.0;
            net.delay_ms = (0, 2);
        });
    }

    pub fn set_loss(&self, loss: f64) {
        self.with(|net| net.loss = loss);
    }

    pub fn set_delay(&self, min_ms: u64, max_ms: u64) {
        self.with(|net| net.delay_ms = (min_ms, max_ms.max(min_ms)));
    }

    /// `from` can send to `to`.
    pub fn delivers(&self, from: &str, to: &str) -> bool {
        from == to || self.with(|net| !net.cut.contains(&(from.to_string(), to.to_string())))
    }

    /// Both ways: what a TCP connection (a client, a replica) needs.
    pub fn connected(&self, a: &str, b: &str) -> bool {
        self.delivers(a, b) && self.delivers(b, a)
    }

    pub fn bytes_sent(&self) -> BTreeMap<String, u64> {
        self.with(|net| net.bytes_sent.clone())
    }

    /// The digest of every message delivered so far (for the run's replay hash).
    pub fn trace(&self) -> u64 {
        self.with(|net| net.trace.finish())
    }

    pub fn transport(&self, host: &str) -> SimTransport {
        SimTransport {
            network: self.clone(),
            host: host.to_string(),
        }
    }

    /// What a simulated node's gossip is started with: its rounds come from this network.
    pub fn rounds(&self) -> Rounds {
        let network = self.clone();
        Rounds::Driven(Arc::new(move |handle: RoundHandle| network.drive(handle)))
    }

    /// The node's first round is due at once, as chitchat's own is at start.
    fn drive(&self, handle: RoundHandle) {
        self.with(|net| {
            let (addr, id) = (handle.addr(), net.id());
            let memory = PeerMemory::default();
            net.drivers.insert(addr, Driver { id, handle, memory });
            net.schedule(Instant::now(), Event::Round { addr, driver: id });
        });
    }

    /// Simulated time passes until `deadline`: messages are delivered and rounds started in
    /// queue order, each batch once every chitchat server has finished the one before.
    pub async fn run_until(&self, deadline: Instant) {
        loop {
            self.settle().await;
            let next = self.with(|net| net.queue.keys().next().map(|(at, _)| *at));
            let Some(at) = next.filter(|at| *at <= deadline) else {
                break;
            };
            if at > Instant::now() {
                tokio::time::sleep_until(at).await;
            }
            self.run_batch(at).await;
        }
        if deadline > Instant::now() {
            tokio::time::sleep_until(deadline).await;
        }
    }

    pub async fn run_for(&self, duration: Duration) {
        self.run_until(Instant::now() + duration).await;
    }

    /// Waits until no chitchat server has work in hand: each then has one kind of work ready
    /// at a time, whatever order tokio polls its `select!` branches in.
    async fn settle(&self) {
        for _ in 0..SETTLE_YIELDS {
            if self.with(|net| net.busy == 0) {
                return;
            }
            tokio::task::yield_now().await;
        }
        panic!("a simulated chitchat server never became idle");
    }

    /// Every event due at `at` of the same kind as the first: deliveries, or rounds.
    async fn run_batch(&self, at: Instant) {
        let batch = self.with(|net| {
            let mut batch = Vec::new();
            while let Some(entry) = net.queue.first_entry() {
                let same_kind = matches!(
                    (batch.first(), entry.get()),
                    (None, _)
                        | (Some(Event::Deliver { .. }), Event::Deliver { .. })
                        | (Some(Event::Round { .. }), Event::Round { .. })
                );
                if entry.key().0 != at || !same_kind {
                    break;
                }
                batch.push(entry.remove());
            }
            batch
        });
        for event in batch {
            match event {
                Event::Deliver {
                    from,
                    to,
                    socket,
                    message,
                } => self.with(|net| net.deliver(at, from, to, socket, message)),
                Event::Round { addr, driver } => self.round(at, addr, driver).await,
            }
        }
    }

    /// One round of a driven node: partners from the seeded RNG, then chitchat's own SYNs.
    async fn round(&self, at: Instant, addr: SocketAddr, driver: u64) {
        let Some(handle) = self.with(|net| {
            let found = net.drivers.get(&addr).filter(|found| found.id == driver);
            found.map(|found| found.handle.clone())
        }) else {
            return;
        };
        let peers = handle.peers().await;
        let partners = self.with(|net| {
            let peers = peers?;
            let NetState {
                drivers, rounds_rng, ..
            } = net;
            let found = drivers.get_mut(&addr)?;
            Some(
                found
                    .memory
                    .partners(at, &peers, found.handle.seeds(), found.handle.interval(), rounds_rng),
            )
        });
        let socket = self.with(|net| net.ports.get(&addr).map(|port| port.id));
        let started = match (partners, socket) {
            (Some(partners), Some(socket)) => {
                self.with(|net| net.update(&addr, socket, |port| port.syns_asked += partners.len()));
                let started = handle.round(&partners).await;
                if !started {
                    self.with(|net| net.update(&addr, socket, |port| port.syns_asked = 0));
                }
                started
            }
            _ => false,
        };
        self.with(|net| {
            if started {
                net.schedule(at + handle.interval(), Event::Round { addr, driver });
            } else if net.drivers.get(&addr).is_some_and(|found| found.id == driver) {
                net.drivers.remove(&addr);
            }
        });
    }
}

pub struct SimTransport {
    network: SimNetwork,
    host: String,
}

#[async_trait]
impl Transport for SimTransport {
    async fn open(&self, listen_addr: SocketAddr) -> anyhow::Result<Box<dyn Socket>> {
        let (sender, inbox) = mpsc::channel(INBOX);
        let id = self.network.with(|net| {
            let id = net.id();
            if let Some(old) = net.ports.insert(
                listen_addr,
                Port {
                    id,
                    inbox: sender,
                    queued: 0,
                    handling: false,
                    syns_asked: 0,
                    unpolled: true,
                },
            ) {
                net.busy -= usize::from(old.busy());
            }
            net.busy += 1;
            net.host_of.insert(listen_addr, self.host.clone());
            id
        });
        Ok(Box::new(SimSocket {
            network: self.network.clone(),
            host: self.host.clone(),
            addr: listen_addr,
            id,
            inbox,
        }))
    }
}

struct SimSocket {
    network: SimNetwork,
    host: String,
    addr: SocketAddr,
    id: u64,
    inbox: mpsc::Receiver<(SocketAddr, ChitchatMessage)>,
}

impl Drop for SimSocket {
    fn drop(&mut self) {
        let (addr, id) = (self.addr, self.id);
        self.network.with(|net| {
            if net.ports.get(&addr).is_some_and(|port| port.id == id) {
                if let Some(port) = net.ports.remove(&addr) {
                    net.busy -= usize::from(port.busy());
                }
            }
        });
    }
}

#[async_trait]
impl Socket for SimSocket {
    async fn send(&mut self, to: SocketAddr, message: ChitchatMessage) -> anyhow::Result<()> {
        let (from, socket) = (self.addr, self.id);
        self.network.with(|net| {
            // Only the network starts rounds: a SYN nobody asked for is chitchat's own loop.
            if matches!(message, ChitchatMessage::Syn { .. }) {
                let mut asked = false;
                net.update(&from, socket, |port| {
                    asked = port.syns_asked > 0;
                    port.syns_asked = port.syns_asked.saturating_sub(1);
                });
                if !asked {
                    return;
                }
            }
            *net.bytes_sent.entry(self.host.clone()).or_default() += message.serialized_len() as u64;
            let Some(to_host) = net.host_of.get(&to).cloned() else {
                return;
            };
            let Some(to_socket) = net.ports.get(&to).map(|port| port.id) else {
                return;
            };
            if net.cut.contains(&(self.host.clone(), to_host)) || net.rng.gen_bool(net.loss.clamp(0.0, 1.0)) {
                return;
            }
            let delay_ms = net.rng.gen_range(net.delay_ms.0..=net.delay_ms.1);
            let at = Instant::now() + Duration::from_millis(delay_ms);
            net.schedule(
                at,
                Event::Deliver {
                    from,
                    to,
                    socket: to_socket,
                    message,
                },
            );
        });
        Ok(())
    }

    async fn recv(&mut self) -> anyhow::Result<(SocketAddr, ChitchatMessage)> {
        let (addr, socket) = (self.addr, self.id);
        // Asking for the next message means the last one is handled.
        self.network.with(|net| {
            net.update(&addr, socket, |port| {
                port.handling = false;
                port.unpolled = false;
            })
        });
        let received = self.inbox.recv().await;
        self.network.with(|net| {
            net.update(&addr, socket, |port| {
                port.queued = port.queued.saturating_sub(1);
                port.handling = received.is_some();
            })
        });
        received.ok_or_else(|| anyhow::anyhow!("simulated socket closed"))
    }
}
