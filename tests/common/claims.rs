//! Resources that test processes running side by side must not share: loopback ports and lab
//! subnets. A claim is an exclusive `flock` on a file under /tmp, so the kernel releases it when
//! the holding process ends, however it ends: no stale claims, no pid files to trust.

use std::fs::{File, OpenOptions};

use nix::fcntl::{Flock, FlockArg};
use std::net::{TcpListener, UdpSocket};
use std::sync::Mutex;

const CLAIMS_DIR: &str = "/tmp/gossip-ha-test-claims";

/// Ports handed out come from below Linux's ephemeral range (32768–60999 by default), so an
/// outgoing connection of any process can never take one between the test choosing it and the
/// agent binding it — the race that asking the kernel for port 0 has.
const PORT_RANGE_START: u16 = 20_000;
const PORT_RANGE_END: u16 = 32_768;
const PORTS_PER_BLOCK: u16 = 64;

/// Holds the claim named `name` until the returned file is dropped or the process ends; `None`
/// when another live process holds it.
pub fn claim(name: &str) -> Option<Flock<File>> {
    std::fs::create_dir_all(CLAIMS_DIR)
        .unwrap_or_else(|err| panic!("cannot create {CLAIMS_DIR} for test claims: {err}"));
    let path = format!("{CLAIMS_DIR}/{name}");
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .unwrap_or_else(|err| panic!("cannot open the claim file {path}: {err}"));
    Flock::lock(file, FlockArg::LockExclusiveNonblock).ok()
}

struct PortBlocks {
    /// Claims held for the life of the process.
    held: Vec<Flock<File>>,
    next: u16,
    end: u16,
}

static PORTS: Mutex<PortBlocks> = Mutex::new(PortBlocks {
    held: Vec::new(),
    next: 0,
    end: 0,
});

/// A loopback port no other test process was given, free for both TCP and UDP right now.
pub fn port() -> u16 {
    let mut blocks = PORTS.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    loop {
        while blocks.next < blocks.end {
            let port = blocks.next;
            blocks.next += 1;
            // Something outside the tests (a daemon on this machine) may listen there.
            if UdpSocket::bind(("127.0.0.1", port)).is_ok() && TcpListener::bind(("127.0.0.1", port)).is_ok() {
                return port;
            }
        }
        let (file, start) = claim_port_block();
        blocks.held.push(file);
        blocks.next = start;
        blocks.end = start + PORTS_PER_BLOCK;
    }
}

fn claim_port_block() -> (Flock<File>, u16) {
    let mut start = PORT_RANGE_START;
    while start + PORTS_PER_BLOCK <= PORT_RANGE_END {
        if let Some(file) = claim(&format!("ports-{start}")) {
            return (file, start);
        }
        start += PORTS_PER_BLOCK;
    }
    panic!(
        "every block of test ports in {PORT_RANGE_START}–{PORT_RANGE_END} is held by a running \
         test process (claims in {CLAIMS_DIR})"
    );
}
