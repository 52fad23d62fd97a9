//! gossip-ha: quorum-free high availability for Pandora FMS. See ARCHITECTURE.md for the map.

pub mod address;
pub mod agent;
pub mod cli;
pub mod client;
pub mod clock;
pub mod command;
pub mod config;
pub mod core;
pub mod db;
pub mod events;
pub mod fsutil;
pub mod gossip;
pub mod hooks;
pub mod http;
pub mod init;
pub mod limits;
pub mod node;
pub mod render;
pub mod rewrite;
pub mod secret;
pub mod socket;
pub mod state_file;
pub mod tls;
pub mod transfer;
