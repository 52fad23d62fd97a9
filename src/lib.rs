//! gossip-ha: quorum-free high availability for Pandora FMS. See ARCHITECTURE.md for the map.

pub mod config;
pub mod core;
