//! Sealed gossip state. Scuttlebutt relays every node's state through every member, so a member
//! holding any valid certificate could otherwise forge a whole state under another node's name
//! (its certificate is public: every agent gossips its own). Each agent therefore signs all of
//! its keys with its certificate's key — the `seal` key: the node name, the generation, a
//! counter that only grows, and every other key and value — and a receiver believes a node's
//! state only as far as the seal verifies against the certificate in it, issued by the cluster CA
//! for that very name. A state that does not verify (forged, or a delta cut short by the MTU
//! while the new seal is still on its way) is replaced by the last one that did.

use base64::Engine;
use rustls::pki_types::CertificateDer;
use rustls::SignatureScheme;

/// Schemes a seal may be signed with, in order of preference (rcgen's keys are P-256).
const SCHEMES: [SignatureScheme; 4] = [
    SignatureScheme::ECDSA_NISTP256_SHA256,
    SignatureScheme::ECDSA_NISTP384_SHA384,
    SignatureScheme::ED25519,
    SignatureScheme::RSA_PSS_SHA256,
];

/// A seal is a few hundred bytes; anything longer is not one.
const MAX_SEAL_BYTES: usize = 1024;

/// What is signed: unambiguous (every key and value length-prefixed), keys in order.
pub fn message<'a>(
    node: &str,
    generation: u64,
    counter: u64,
    keys: impl Iterator<Item = (&'a str, &'a str)>,
) -> Vec<u8> {
    let mut text = format!("gossip-ha seal 1\n{}:{node}\n{generation}\n{counter}\n", node.len());
    let mut sorted: Vec<(&str, &str)> = keys
        .filter(|(key, _)| *key != gossip_ha_proto::gossip::KEY_SEAL)
        .collect();
    sorted.sort_unstable();
    for (key, value) in sorted {
        text.push_str(&format!("{}:{key}{}:{value}\n", key.len(), value.len()));
    }
    text.into_bytes()
}

/// Signs `message` with `key`: the `seal` value, `scheme.counter.signature`.
pub fn sign(key: &dyn rustls::sign::SigningKey, counter: u64, message: &[u8]) -> Result<String, String> {
    let signer = key
        .choose_scheme(&SCHEMES)
        .ok_or("the key supports none of the seal's signature schemes")?;
    let signature = signer.sign(message).map_err(|err| format!("signing the seal: {err}"))?;
    Ok(format!(
        "{}.{counter}.{}",
        u16::from(signer.scheme()),
        base64::engine::general_purpose::STANDARD.encode(signature)
    ))
}

/// The counter a seal carries, if it reads as one.
pub fn counter_of(seal: &str) -> Option<u64> {
    seal.split('.').nth(1)?.parse().ok()
}

/// Checks `seal` over `message` against the public key of `certificate`.
pub fn verify(certificate: &CertificateDer<'_>, message: &[u8], seal: &str) -> Result<(), String> {
    if seal.len() > MAX_SEAL_BYTES {
        return Err("its seal is too long".into());
    }
    let mut parts = seal.splitn(3, '.');
    let (Some(scheme), Some(_counter), Some(signature)) = (parts.next(), parts.next(), parts.next()) else {
        return Err("its seal is unreadable".into());
    };
    let scheme = SignatureScheme::from(scheme.parse::<u16>().map_err(|_| "its seal names no scheme")?);
    if !SCHEMES.contains(&scheme) {
        return Err(format!("its seal uses {scheme:?}, not one of the seal's schemes"));
    }
    let signature = base64::engine::general_purpose::STANDARD
        .decode(signature)
        .map_err(|_| "its seal's signature is not base64")?;
    let algorithms = rustls::crypto::ring::default_provider().signature_verification_algorithms;
    let candidates = algorithms
        .mapping
        .iter()
        .find(|(known, _)| *known == scheme)
        .map(|(_, candidates)| *candidates)
        .unwrap_or_default();
    let end_entity = webpki::EndEntityCert::try_from(certificate).map_err(|err| format!("its certificate: {err}"))?;
    let verified = candidates
        .iter()
        .any(|algorithm| end_entity.verify_signature(*algorithm, message, &signature).is_ok());
    if verified {
        Ok(())
    } else {
        Err("its seal does not verify against its certificate's key (forged or altered state)".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_seal_binds_every_key_the_name_the_generation_and_the_counter() {
        let dir = tempfile::tempdir().unwrap();
        let ca = dir.path().join("ca");
        crate::tls::certs::init_ca(&ca, "test", false).unwrap();
        let request = crate::tls::certs::HostRequest::valid_for_days("db1", vec![], vec![], 1);
        let (cert_pem, key_pem) = crate::tls::certs::issue_pem(&ca, &request).unwrap();
        use rustls::pki_types::pem::PemObject;
        let certificate = CertificateDer::from_pem_slice(cert_pem.as_bytes()).unwrap();
        let key_der = rustls::pki_types::PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).unwrap();
        let key = rustls::crypto::ring::default_provider()
            .key_provider
            .load_private_key(key_der)
            .unwrap();
        let keys = [("db", "{\"epoch\":3}"), ("roles", "db")];
        let signed = message("db1", 7, 2, keys.iter().copied());
        let seal = sign(key.as_ref(), 2, &signed).unwrap();
        assert_eq!(counter_of(&seal), Some(2));
        verify(&certificate, &signed, &seal).unwrap();
        // The seal's own key is never part of what is signed, in any order of the keys.
        let reordered = [("roles", "db"), ("seal", seal.as_str()), ("db", "{\"epoch\":3}")];
        verify(&certificate, &message("db1", 7, 2, reordered.iter().copied()), &seal).unwrap();

        let altered = [
            message("db1", 7, 2, [("db", "{\"epoch\":999}"), ("roles", "db")].into_iter()),
            message("db2", 7, 2, keys.iter().copied()),
            message("db1", 8, 2, keys.iter().copied()),
            message("db1", 7, 3, keys.iter().copied()),
            message("db1", 7, 2, [("db", "{\"epoch\":3}")].into_iter()),
        ];
        for forged in altered {
            assert!(verify(&certificate, &forged, &seal).is_err());
        }
        for garbage in ["", "x", "1027.1.!!!", &"1.1.".repeat(400)] {
            assert!(verify(&certificate, &signed, garbage).is_err(), "{garbage}");
        }
    }
}
