//! Every type that crosses a process boundary: the keys an agent gossips about itself and the
//! JSON-lines protocol of the local status socket. See `proto/PROTOCOL.md`.

pub mod api;
pub mod db;
pub mod gossip;
pub mod wire;

/// Version of both the gossip key layout and the socket protocol. Bumped on any incompatible
/// change; peers and clients with another version are refused with a message naming both.
pub const PROTOCOL_VERSION: u32 = 1;
