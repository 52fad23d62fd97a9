//! Mutual TLS between agents (DESIGN §4): certificates from the cluster's CA, a chitchat
//! transport over TLS streams, and the tooling that makes the CA and host certificates.

pub mod certs;
pub mod frame;
pub mod identity;
pub mod refusals;
pub mod seal;
pub mod transport;
