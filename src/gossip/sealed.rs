//! Reading peers' sealed states (`tls::seal`): a state counts only with a seal that verifies
//! against the certificate in it, issued by the cluster CA for that node's name. The last
//! verified state of each (node, generation) is kept: it stands in while a newer one does not
//! verify (a delta cut short, a member injecting values), and a seal older than it is a replay.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use gossip_ha_proto::gossip::{KEY_CERT, KEY_SEAL};

use crate::core::authority::Grants;
use crate::tls::identity::TlsIdentity;
use crate::tls::seal;

/// Verified states kept; beyond, the memory starts again (each is re-verified once).
const MAX_KEPT_STATES: usize = 4096;

/// A peer's keys and values as gossip shows them this tick (borrowed from chitchat's state).
pub type Shown<'a> = BTreeMap<&'a str, &'a str>;

/// A verified state: its keys and values and what its certificate grants. Shared, so the
/// tick that finds it unchanged copies nothing.
pub struct Verified {
    counter: u64,
    pub values: BTreeMap<String, String>,
    pub grants: Grants,
}

impl Verified {
    fn shows(&self, shown: &Shown<'_>) -> bool {
        self.values.len() == shown.len()
            && self
                .values
                .iter()
                .zip(shown)
                .all(|((key, value), (shown_key, shown_value))| key == shown_key && value == shown_value)
    }
}

/// What a peer's state may be taken as.
pub enum Reading {
    /// Its state, verified now or earlier.
    Heard(Arc<Verified>),
    /// Its seal has not arrived yet: not heard, nothing to report.
    NotYet,
    /// Not heard at all, for this reason.
    Refused(String),
}

#[derive(Default)]
pub struct SealedStates {
    verified: Mutex<HashMap<(String, u64), Arc<Verified>>>,
}

impl SealedStates {
    /// Reads the state `shown` of `node` (generation `generation`), checked with `identity`'s CA.
    /// Only a state that changed is verified again (the signature check is the costly part).
    pub fn read(&self, identity: &TlsIdentity, node: &str, generation: u64, shown: &Shown<'_>) -> Reading {
        let key = (node.to_string(), generation);
        let Ok(mut verified) = self.verified.lock() else {
            return Reading::NotYet;
        };
        let kept = verified.get(&key).cloned();
        if let Some(kept) = kept.as_ref().filter(|kept| kept.shows(shown)) {
            return Reading::Heard(kept.clone());
        }
        match (
            check(
                identity,
                node,
                generation,
                shown,
                kept.as_ref().map(|kept| kept.counter),
            ),
            kept,
        ) {
            (Ok((counter, grants)), _) => {
                if verified.len() >= MAX_KEPT_STATES {
                    verified.clear();
                }
                let values = shown
                    .iter()
                    .map(|(key, value)| (key.to_string(), value.to_string()))
                    .collect();
                let state = Arc::new(Verified {
                    counter,
                    values,
                    grants,
                });
                verified.insert(key, state.clone());
                Reading::Heard(state)
            }
            // Not (yet) a verified whole: the last verified state stands.
            (Err(_), Some(kept)) => Reading::Heard(kept),
            (Err(Check::NoSeal), None) => Reading::NotYet,
            (Err(Check::Refused(reason)), None) => Reading::Refused(reason),
        }
    }
}

enum Check {
    NoSeal,
    Refused(String),
}

/// Verifies `values` as a whole: certificate, seal, and a counter no older than `kept_counter`.
fn check(
    identity: &TlsIdentity,
    node: &str,
    generation: u64,
    values: &Shown<'_>,
    kept_counter: Option<u64>,
) -> Result<(u64, Grants), Check> {
    let Some(cert) = values.get(KEY_CERT) else {
        return Err(Check::Refused(
            "its gossip carries no certificate (an agent of a release before role certificates, or forged state)"
                .into(),
        ));
    };
    let seal_text = values.get(KEY_SEAL).ok_or(Check::NoSeal)?;
    let grants = identity.peers.grants(node, cert).map_err(Check::Refused)?;
    let counter = seal::counter_of(seal_text).ok_or_else(|| Check::Refused("its seal is unreadable".into()))?;
    if kept_counter.is_some_and(|kept| counter < kept) {
        return Err(Check::Refused("it replays an older seal".into()));
    }
    let certificate = identity.peers.certificate(cert).map_err(Check::Refused)?;
    let message = seal::message(
        node,
        generation,
        counter,
        values.iter().map(|(key, value)| (*key, *value)),
    );
    seal::verify(&certificate, &message, seal_text).map_err(Check::Refused)?;
    Ok((counter, grants))
}
