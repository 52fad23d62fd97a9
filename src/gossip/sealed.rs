//! Reading peers' sealed states (`tls::seal`): a state counts only with a seal that verifies
//! against the certificate in it, issued by the cluster CA for that node's name. The last
//! verified state of each (node, generation) is kept: it stands in while a newer one does not
//! verify (a delta cut short, a member injecting values), and a seal older than it is a replay.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use gossip_ha_proto::gossip::{KEY_CERT, KEY_SEAL};

use crate::core::authority::Grants;
use crate::tls::identity::TlsIdentity;
use crate::tls::seal;

/// Verified states kept; beyond, the memory starts again (each is re-verified once).
const MAX_KEPT_STATES: usize = 4096;

/// A peer's keys and values, as gossip shows them or as last verified.
pub type Values = BTreeMap<String, String>;

struct Verified {
    counter: u64,
    values: Values,
    grants: Grants,
}

/// What a peer's state may be taken as.
pub enum Reading {
    /// Its values (verified now or earlier) and what its certificate grants.
    Heard(Values, Grants),
    /// Its seal has not arrived yet: not heard, nothing to report.
    NotYet,
    /// Not heard at all, for this reason.
    Refused(String),
}

#[derive(Default)]
pub struct SealedStates {
    verified: Mutex<HashMap<(String, u64), Verified>>,
}

impl SealedStates {
    /// Reads the state `values` of `node` (generation `generation`), checked with `identity`'s CA.
    pub fn read(&self, identity: &TlsIdentity, node: &str, generation: u64, values: Values) -> Reading {
        let key = (node.to_string(), generation);
        let Ok(mut verified) = self.verified.lock() else {
            return Reading::NotYet;
        };
        let kept = verified.get(&key);
        if let Some(kept) = kept.filter(|kept| kept.values == values) {
            return Reading::Heard(kept.values.clone(), kept.grants.clone());
        }
        let outcome = check(identity, node, generation, &values, kept.map(|kept| kept.counter));
        match (outcome, kept) {
            (Ok((counter, grants)), _) => {
                if verified.len() >= MAX_KEPT_STATES {
                    verified.clear();
                }
                let reading = Reading::Heard(values.clone(), grants.clone());
                verified.insert(
                    key,
                    Verified {
                        counter,
                        values,
                        grants,
                    },
                );
                reading
            }
            // Not (yet) a verified whole: the last verified state stands.
            (Err(_), Some(kept)) => Reading::Heard(kept.values.clone(), kept.grants.clone()),
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
    values: &Values,
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
    let pairs = values.iter().map(|(key, value)| (key.as_str(), value.as_str()));
    let message = seal::message(node, generation, counter, pairs);
    seal::verify(&certificate, &message, seal_text).map_err(Check::Refused)?;
    Ok((counter, grants))
}
