//! HAProxy (Debian's package) in front of a test cluster's databases, checking each agent's
//! `/primary` as `deploy/haproxy/haproxy.cfg` does; and a client writing through it. Shared by
//! `tests/http.rs` and `benches/haproxy.rs`.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use super::db_cluster::Cluster;
use super::free_port;

/// HAProxy (Debian's) on loopback in front of `cluster`'s servers, checking `/primary` as
/// `deploy/haproxy/haproxy.cfg` does, faster (checks every 200 ms) to suit the test's 1 s
/// threshold. Killed when dropped.
pub struct HaProxy {
    child: std::process::Child,
    port: u16,
}

impl HaProxy {
    pub fn start(cluster: &Cluster, ports: &HashMap<String, u16>) -> HaProxy {
        let port = free_port();
        let servers: String = cluster
            .dbs
            .iter()
            .map(|db| {
                format!(
                    "    server {} {} check port {}\n",
                    db.name,
                    db.advertise(),
                    ports[&db.name]
                )
            })
            .collect();
        let config = format!(
            "global\n    maxconn 200\n\
             defaults\n    mode tcp\n    timeout connect 1s\n    timeout client 30s\n    timeout server 30s\n\
             listen pandora_db\n    bind 127.0.0.1:{port}\n    balance first\n    option httpchk\n\
             \x20   http-check send meth GET uri /primary\n    http-check expect status 200\n\
             \x20   default-server inter 200ms fall 2 rise 1 on-marked-down shutdown-sessions\n{servers}"
        );
        let path = cluster.dir.path().join("haproxy.cfg");
        std::fs::write(&path, config).unwrap();
        let log = std::fs::File::create(cluster.dir.path().join("haproxy.log")).unwrap();
        let child = std::process::Command::new("haproxy")
            .args(["-db", "-f"])
            .arg(&path)
            .stdin(std::process::Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("haproxy installed (apt-get install haproxy)");
        HaProxy { child, port }
    }

    pub fn url(&self) -> String {
        format!(
            "mysql://{}:{}@127.0.0.1:{}/",
            super::mariadb::APP_USER,
            super::mariadb::APP_PASSWORD,
            self.port
        )
    }
}

impl Drop for HaProxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Writes rows from `first` on through `url`, one connection each (as Pandora's short-lived
/// connections do), until `wanted` succeeded or `timeout`; the acknowledged ids and the
/// longest time between two acknowledgements.
pub fn write_through(url: &str, first: u32, wanted: usize, timeout: Duration) -> (Vec<u32>, Duration) {
    let started = Instant::now();
    let (mut acked, mut last_ack, mut longest_gap) = (Vec::new(), Instant::now(), Duration::ZERO);
    let mut id = first;
    while acked.len() < wanted && started.elapsed() < timeout {
        let statement = format!("INSERT INTO pandora.tagente_datos VALUES ({id}, 1.5, UNIX_TIMESTAMP())");
        if super::mariadb::sql(url, &[&statement]).is_ok() {
            acked.push(id);
            longest_gap = longest_gap.max(last_ack.elapsed());
            last_ack = Instant::now();
        } else {
            std::thread::sleep(Duration::from_millis(20));
        }
        id += 1;
    }
    (acked, longest_gap)
}
