//! Agent-to-agent binary messages (serde + postcard). On a TLS gossip stream the first frame is
//! a `Hello`; every later frame is one chitchat message in chitchat's own encoding.

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    pub version: u32,
    pub cluster_id: String,
    /// Must be a name the sender's certificate is valid for.
    pub node_name: String,
    /// Where replies go: the sender's gossip address, not the connection's ephemeral port.
    pub advertise: SocketAddr,
}

impl Hello {
    pub fn encode(&self) -> Vec<u8> {
        postcard::to_stdvec(self).expect("a hello always encodes")
    }

    pub fn decode(bytes: &[u8]) -> Result<Hello, String> {
        postcard::from_bytes(bytes).map_err(|err| format!("unreadable hello: {err}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hello_round_trips_and_garbage_is_an_error() {
        let hello = Hello {
            version: crate::PROTOCOL_VERSION,
            cluster_id: "prod".into(),
            node_name: "db1".into(),
            advertise: "198.18.0.1:7946".parse().unwrap(),
        };
        assert_eq!(Hello::decode(&hello.encode()).unwrap(), hello);
        assert!(Hello::decode(b"\xff\xff\xff").is_err());
    }
}
