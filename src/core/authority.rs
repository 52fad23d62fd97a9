//! What a peer's gossip may claim, given what its certificate grants (pure). A certificate is an
//! identity, not a permission: roles, DB claims and cluster requests count only as far as the
//! certificate of the node whose state it is allows. The shell reads the grants out of the
//! certificate (`tls::identity`); this module only decides.

use std::collections::BTreeSet;
use std::fmt;

use gossip_ha_proto::gossip::Role;

use super::Observation;
use crate::address::{bare_host, host_of};

/// URI subject alternative names `urn:gossip-ha:role:<role>` carry a certificate's grants.
pub const GRANT_URI_PREFIX: &str = "urn:gossip-ha:role:";
/// The grant that lets a node ask others to change (switchover, maintenance).
pub const ADMIN_GRANT: &str = "admin";

/// What a certificate allows its holder.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Grants {
    pub roles: BTreeSet<Role>,
    /// May ask other nodes for a switchover or maintenance.
    pub admin: bool,
}

impl Grants {
    pub fn is_empty(&self) -> bool {
        self.roles.is_empty() && !self.admin
    }

    /// The URIs written into a certificate for these grants.
    pub fn uris(&self) -> Vec<String> {
        self.names().map(|name| format!("{GRANT_URI_PREFIX}{name}")).collect()
    }

    /// Reads grants from a certificate's URI names; other URIs are not ours and are skipped.
    pub fn from_uris<'a>(uris: impl IntoIterator<Item = &'a str>) -> Result<Grants, String> {
        let mut grants = Grants::default();
        for name in uris.into_iter().filter_map(|uri| uri.strip_prefix(GRANT_URI_PREFIX)) {
            if name == ADMIN_GRANT {
                grants.admin = true;
            } else {
                let role = name
                    .parse::<Role>()
                    .map_err(|_| format!("unknown grant `{GRANT_URI_PREFIX}{name}`"))?;
                grants.roles.insert(role);
            }
        }
        Ok(grants)
    }

    /// Why other nodes ignore requests relayed by a holder of these grants (none with admin):
    /// the asking operator hears it at once instead of at the request's deadline.
    pub fn relay_refusal(&self) -> Option<String> {
        (!self.admin).then(|| {
            format!(
                "this host's certificate grants {self}, not admin: other nodes ignore its requests; reissue it with `gossip-ha certs issue … --role admin --renew` to allow them"
            )
        })
    }

    fn names(&self) -> impl Iterator<Item = &str> {
        let admin = self.admin.then_some(ADMIN_GRANT);
        self.roles.iter().map(|role| role.as_str()).chain(admin)
    }
}

impl fmt::Display for Grants {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = self.names().collect();
        if names.is_empty() {
            f.write_str("nothing")
        } else {
            f.write_str(&names.join(", "))
        }
    }
}

/// How far a peer's identity is known.
#[derive(Debug, Clone, Copy)]
pub enum PeerIdentity<'a> {
    /// Plain gossip on loopback (tests, demos): there are no certificates, gossip is believed.
    Unchecked,
    /// Mutual TLS: the grants of a certificate of the cluster CA that names the node.
    Certified(&'a Grants),
}

/// Cluster-wide limits on claims, from this agent's configuration.
#[derive(Debug, Clone, Default)]
pub struct AuthorityPolicy {
    /// Pandora's `ha_hosts`: node names or database hosts. When set, only databases listed here
    /// may be claimed; empty means this agent does not know the list.
    pub ha_hosts: Vec<String>,
}

impl AuthorityPolicy {
    /// Whether the database of `node`, advertised at `advertise` (`host:port`), is in `ha_hosts`.
    pub fn lists_database(&self, node: &str, advertise: &str) -> bool {
        self.ha_hosts.is_empty() || self.position_of(node, advertise).is_some()
    }

    /// Where the database of `node` at `advertise` stands in `ha_hosts` (the first is preferred).
    pub fn position_of(&self, node: &str, advertise: &str) -> Option<usize> {
        let host = host_of(advertise);
        self.ha_hosts.iter().map(|entry| entry.trim()).position(|entry| {
            let entry_host = match entry.parse::<std::net::SocketAddr>() {
                Ok(addr) => addr.ip().to_string(),
                Err(_) => bare_host(entry).to_string(),
            };
            entry == node || entry == advertise || same_host(&entry_host, host)
        })
    }
}

/// Host names compare as text (case-insensitively); IP addresses as addresses (`fd00:0::1` is
/// `fd00::1`).
fn same_host(a: &str, b: &str) -> bool {
    match (a.parse::<std::net::IpAddr>(), b.parse::<std::net::IpAddr>()) {
        (Ok(a), Ok(b)) => a == b,
        _ => a.eq_ignore_ascii_case(b),
    }
}

/// Strips from `observation` whatever its node's identity does not allow; returns what is left
/// and one sentence per claim refused (the shell reports each once).
pub fn screen(
    mut observation: Observation,
    identity: PeerIdentity<'_>,
    policy: &AuthorityPolicy,
) -> (Observation, Vec<String>) {
    let mut refused = Vec::new();
    if let PeerIdentity::Certified(grants) = identity {
        let outside: Vec<Role> = observation
            .announcement
            .roles
            .iter()
            .copied()
            .filter(|role| !grants.roles.contains(role))
            .collect();
        for role in outside {
            observation.announcement.roles.remove(&role);
            refused.push(format!(
                "gossips the {role} role, which its certificate does not grant (it grants {grants})"
            ));
        }
        if let Some(request) = observation.request.take_if(|_| !grants.admin) {
            refused.push(format!(
                "asks for {}, but its certificate grants no admin role (it grants {grants})",
                request.kind
            ));
        }
    }
    let roles = &mut observation.announcement.roles;
    if !roles.contains(&Role::Server) {
        observation.announcement.master = 0;
    }
    match observation.db.take() {
        Some(db) if !roles.contains(&Role::Db) => {
            refused.push(format!("announces a database ({}) without the db role", db.advertise));
        }
        Some(db) if !policy.lists_database(&observation.name, &db.advertise) => {
            roles.remove(&Role::Db);
            refused.push(format!(
                "announces database {}, which is not in ha_hosts ({})",
                db.advertise,
                policy.ha_hosts.join(",")
            ));
        }
        kept => observation.db = kept,
    }
    (observation, refused)
}

#[cfg(test)]
mod tests;
