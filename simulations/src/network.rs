//! The in-memory network: a chitchat `Transport` whose links can be cut both ways or one way,
//! lose or delay messages — all decided by the seeded RNG, on simulated time.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use chitchat::transport::{Socket, Transport};
use chitchat::{ChitchatMessage, Serializable};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::sync::mpsc;

/// Messages waiting at one node; beyond, new ones are dropped (as a full socket buffer would).
const INBOX: usize = 1024;

struct NetState {
    inboxes: HashMap<SocketAddr, mpsc::Sender<(SocketAddr, ChitchatMessage)>>,
    host_of: HashMap<SocketAddr, String>,
    /// Directed: (from, to) cannot deliver.
    cut: HashSet<(String, String)>,
    loss: f64,
    delay_ms: (u64, u64),
    rng: StdRng,
    bytes_sent: HashMap<String, u64>,
}

#[derive(Clone)]
pub struct SimNetwork {
    state: Arc<Mutex<NetState>>,
}

impl SimNetwork {
    pub fn new(seed: u64) -> Self {
        SimNetwork {
            state: Arc::new(Mutex::new(NetState {
                inboxes: HashMap::new(),
                host_of: HashMap::new(),
                cut: HashSet::new(),
                loss: 0.0,
                delay_ms: (0, 2),
                rng: StdRng::seed_from_u64(seed ^ 0x6e65_7477_6f72_6b00),
                bytes_sent: HashMap::new(),
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

    pub fn bytes_sent(&self) -> HashMap<String, u64> {
        self.with(|net| net.bytes_sent.clone())
    }

    pub fn transport(&self, host: &str) -> SimTransport {
        SimTransport {
            network: self.clone(),
            host: host.to_string(),
        }
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
        self.network.with(|net| {
            net.inboxes.insert(listen_addr, sender);
            net.host_of.insert(listen_addr, self.host.clone());
        });
        Ok(Box::new(SimSocket {
            network: self.network.clone(),
            host: self.host.clone(),
            addr: listen_addr,
            inbox,
        }))
    }
}

struct SimSocket {
    network: SimNetwork,
    host: String,
    addr: SocketAddr,
    inbox: mpsc::Receiver<(SocketAddr, ChitchatMessage)>,
}

impl Drop for SimSocket {
    fn drop(&mut self) {
        let addr = self.addr;
        self.network.with(|net| {
            net.inboxes.remove(&addr);
        });
    }
}

#[async_trait]
impl Socket for SimSocket {
    async fn send(&mut self, to: SocketAddr, message: ChitchatMessage) -> anyhow::Result<()> {
        let from = self.addr;
        let delivery = self.network.with(|net| {
            *net.bytes_sent.entry(self.host.clone()).or_default() += message.serialized_len() as u64;
            let to_host = net.host_of.get(&to)?.clone();
            if net.cut.contains(&(self.host.clone(), to_host)) || net.rng.gen_bool(net.loss.clamp(0.0, 1.0)) {
                return None;
            }
            let delay = net.rng.gen_range(net.delay_ms.0..=net.delay_ms.1);
            Some((net.inboxes.get(&to)?.clone(), delay))
        });
        if let Some((inbox, delay_ms)) = delivery {
            tokio::spawn(async move {
                tokio::time::sleep(std::time::Duration::from_millis(delay_ms)).await;
                let _ = inbox.try_send((from, message));
            });
        }
        Ok(())
    }

    async fn recv(&mut self) -> anyhow::Result<(SocketAddr, ChitchatMessage)> {
        self.inbox
            .recv()
            .await
            .ok_or_else(|| anyhow::anyhow!("simulated socket closed"))
    }
}
