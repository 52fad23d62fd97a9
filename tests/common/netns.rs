//! Real hosts for partition tests: one network namespace per host, each joined by a veth link
//! to a bridge in a middle namespace, addresses from 198.18.N.0/24 (RFC 2544 benchmarking
//! space). The test process gets a link of its own onto the bridge (198.18.N.1) to set up and
//! check the databases. Cuts are nftables rules in the middle namespace's bridge, so every
//! packet between two hosts — gossip and MariaDB replication alike — crosses them. Everything is
//! removed on drop; a machine that cannot make namespaces fails the test with the reason.
//! Labs of concurrent tests each claim their own /24 (see `claims`).

use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

static LABS: AtomicU32 = AtomicU32::new(0);

pub struct Lab {
    prefix: String,
    hosts: Vec<String>,
    /// The third octet of this lab's 198.18.N.0/24.
    subnet: u8,
    /// Released when the lab drops, after its namespaces are gone.
    _subnet_claim: nix::fcntl::Flock<std::fs::File>,
}

/// The first /24 no running test process holds, with its claim.
fn claim_subnet() -> (u8, nix::fcntl::Flock<std::fs::File>) {
    for subnet in 1..=250u8 {
        if let Some(claim) = super::claims::claim(&format!("lab-198.18.{subnet}")) {
            remove_stale_test_link(subnet);
            return (subnet, claim);
        }
    }
    panic!("every lab subnet 198.18.1.0 – 198.18.250.0 is held by a running test process");
}

/// A test process killed before its lab dropped leaves its link holding 198.18.N.1 in the root
/// namespace; the next holder of the subnet deletes it, or the address would be routed twice.
fn remove_stale_test_link(subnet: u8) {
    let Ok(output) = Command::new("ip")
        .args(["-o", "-4", "addr", "show", "to", &format!("198.18.{subnet}.1/32")])
        .output()
    else {
        return;
    };
    for line in String::from_utf8_lossy(&output.stdout).lines() {
        // "7: gh1234t    inet 198.18.3.1/24 …"; veth names carry "@peer" in some versions.
        if let Some(name) = line.split_whitespace().nth(1) {
            let name = name.split('@').next().unwrap_or(name);
            let _ = Command::new("ip").args(["link", "delete", name]).status();
        }
    }
}

/// Runs a command, panicking with what it said when it fails.
fn run(program: &str, args: &[&str]) {
    let output = Command::new(program).args(args).output().unwrap_or_else(|err| {
        panic!("cannot run {program} (iproute2 and nftables are needed; `.ci/run` installs them): {err}")
    });
    assert!(
        output.status.success(),
        "`{program} {}` failed (network namespaces need root): {}",
        args.join(" "),
        String::from_utf8_lossy(&output.stderr).trim()
    );
}

impl Lab {
    /// Hosts get 198.18.N.11, .12, … in the order given.
    pub fn new(hosts: &[&str]) -> Lab {
        // Short and unique per process and lab: interface names hold 15 characters.
        let prefix = format!(
            "gh{}{}",
            std::process::id() % 10_000,
            LABS.fetch_add(1, Ordering::SeqCst)
        );
        let (subnet, subnet_claim) = claim_subnet();
        let lab = Lab {
            prefix,
            hosts: hosts.iter().map(|host| host.to_string()).collect(),
            subnet,
            _subnet_claim: subnet_claim,
        };
        let mid = lab.mid();
        run("ip", &["netns", "add", &mid]);
        run("ip", &["-n", &mid, "link", "set", "lo", "up"]);
        run("ip", &["-n", &mid, "link", "add", "br0", "type", "bridge"]);
        run("ip", &["-n", &mid, "link", "set", "br0", "up"]);
        for (index, _) in hosts.iter().enumerate() {
            let ns = lab.ns_at(index);
            let (inside, outside) = (format!("{}h{index}", lab.prefix), lab.port(index));
            run("ip", &["netns", "add", &ns]);
            run("ip", &["-n", &ns, "link", "set", "lo", "up"]);
            run(
                "ip",
                &["link", "add", &inside, "type", "veth", "peer", "name", &outside],
            );
            run("ip", &["link", "set", &inside, "netns", &ns]);
            run("ip", &["link", "set", &outside, "netns", &mid]);
            run("ip", &["-n", &ns, "link", "set", &inside, "name", "eth0"]);
            run(
                "ip",
                &[
                    "-n",
                    &ns,
                    "addr",
                    "add",
                    &format!("{}/24", lab.ip_at(index)),
                    "dev",
                    "eth0",
                ],
            );
            run("ip", &["-n", &ns, "link", "set", "eth0", "up"]);
            run("ip", &["-n", &mid, "link", "set", &outside, "master", "br0"]);
            run("ip", &["-n", &mid, "link", "set", &outside, "up"]);
        }
        // The test's own link: only the test process talks over it.
        let (inside, outside) = (format!("{}t", lab.prefix), format!("{}tm", lab.prefix));
        run(
            "ip",
            &["link", "add", &inside, "type", "veth", "peer", "name", &outside],
        );
        run("ip", &["link", "set", &outside, "netns", &mid]);
        run(
            "ip",
            &["addr", "add", &format!("198.18.{}.1/24", lab.subnet), "dev", &inside],
        );
        run("ip", &["link", "set", &inside, "up"]);
        run("ip", &["-n", &mid, "link", "set", &outside, "master", "br0"]);
        run("ip", &["-n", &mid, "link", "set", &outside, "up"]);
        lab.write_rules(&[]);
        lab
    }

    fn mid(&self) -> String {
        format!("{}-mid", self.prefix)
    }

    fn index(&self, host: &str) -> usize {
        self.hosts
            .iter()
            .position(|name| name == host)
            .unwrap_or_else(|| panic!("no host {host} in this lab"))
    }

    fn ns_at(&self, index: usize) -> String {
        format!("{}-{}", self.prefix, self.hosts[index])
    }

    /// The bridge port of a host, in the middle namespace.
    fn port(&self, index: usize) -> String {
        format!("{}m{index}", self.prefix)
    }

    fn ip_at(&self, index: usize) -> String {
        format!("198.18.{}.{}", self.subnet, 11 + index)
    }

    pub fn ns(&self, host: &str) -> String {
        self.ns_at(self.index(host))
    }

    pub fn ip(&self, host: &str) -> String {
        self.ip_at(self.index(host))
    }

    /// Drops what `from` sends to each of `to` (one way); `cut_both` for both ways.
    pub fn set_cuts(&self, cuts: &[(&str, &str)]) {
        self.write_rules(cuts);
    }

    pub fn cut_both(&self, a: &str, b: &str) {
        self.set_cuts(&[(a, b), (b, a)]);
    }

    /// Cuts `host` from every other host, both ways.
    pub fn isolate(&self, host: &str) {
        let others: Vec<&str> = self
            .hosts
            .iter()
            .map(String::as_str)
            .filter(|other| *other != host)
            .collect();
        let cuts: Vec<(&str, &str)> = others
            .iter()
            .flat_map(|other| [(host, *other), (*other, host)])
            .collect();
        self.set_cuts(&cuts);
    }

    pub fn heal(&self) {
        self.write_rules(&[]);
    }

    /// Replaces the whole rule set at once (one nft transaction).
    fn write_rules(&self, cuts: &[(&str, &str)]) {
        let mut rules = String::from("table bridge gossip_ha_lab\ndelete table bridge gossip_ha_lab\n");
        rules.push_str("table bridge gossip_ha_lab {\n  chain forward {\n    type filter hook forward priority 0; policy accept;\n");
        for (from, to) in cuts {
            rules.push_str(&format!(
                "    iifname \"{}\" oifname \"{}\" drop\n",
                self.port(self.index(from)),
                self.port(self.index(to))
            ));
        }
        rules.push_str("  }\n}\n");
        let mut child = Command::new("ip")
            .args(["netns", "exec", &self.mid(), "nft", "-f", "-"])
            .stdin(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("run nft in the lab's middle namespace");
        use std::io::Write;
        child.stdin.take().unwrap().write_all(rules.as_bytes()).unwrap();
        let output = child.wait_with_output().unwrap();
        assert!(
            output.status.success(),
            "nft refused the lab's rules: {}\n{rules}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        // Deleting a namespace deletes its ends of the veth pairs, and so their peers.
        for index in 0..self.hosts.len() {
            let _ = Command::new("ip")
                .args(["netns", "delete", &self.ns_at(index)])
                .status();
        }
        let _ = Command::new("ip").args(["netns", "delete", &self.mid()]).status();
        let _ = Command::new("ip")
            .args(["link", "delete", &format!("{}t", self.prefix)])
            .status();
    }
}
