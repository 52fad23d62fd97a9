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

/// First frame on a transfer connection (DESIGN §2 resync): the asking agent wants a physical
/// backup of the answering agent's database, streamed back in `TransferFrame`s.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TransferRequest {
    pub version: u32,
    pub cluster_id: String,
    /// The asking node, for the answering agent's events.
    pub node_name: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum TransferFrame {
    /// The next bytes of the `mbstream` backup.
    Data(Vec<u8>),
    /// The backup ended; `ok: false` means what came before must be thrown away.
    End { ok: bool, message: String },
}

pub fn encode<T: Serialize>(message: &T) -> Vec<u8> {
    postcard::to_stdvec(message).expect("wire messages always encode")
}

pub fn decode<'a, T: Deserialize<'a>>(bytes: &'a [u8]) -> Result<T, String> {
    postcard::from_bytes(bytes).map_err(|err| format!("unreadable message: {err}"))
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

    #[test]
    fn transfer_messages_round_trip() {
        let frame = TransferFrame::Data(vec![1, 2, 3]);
        assert_eq!(decode::<TransferFrame>(&encode(&frame)).unwrap(), frame);
        let end = TransferFrame::End {
            ok: false,
            message: "mariabackup failed".into(),
        };
        assert_eq!(decode::<TransferFrame>(&encode(&end)).unwrap(), end);
        assert!(decode::<TransferRequest>(&[0xff, 0xff]).is_err());
    }
}
