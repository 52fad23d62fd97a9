//! Loads this agent's TLS identity: the cluster CA, its certificate and key, checked before the
//! agent starts so a mistake is an error naming the file, not a failed handshake later. Also
//! reads what a certificate grants (`urn:gossip-ha:role:…` URI names) and checks the
//! certificates peers gossip.

use std::collections::{BTreeSet, HashMap};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use gossip_ha_proto::gossip::Role;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use serde::Serialize;

use crate::core::authority::Grants;

/// A CA bundle, certificate or key is a few KiB; anything larger is not one (or is a device).
const MAX_PEM_BYTES: u64 = 1024 * 1024;
/// Peer certificates whose verdict is kept; beyond, the cache starts again.
const MAX_CACHED_PEERS: usize = 4096;
/// A host certificate is under 1 KiB of DER; its base64 in gossip is held to 8 KiB.
const MAX_GOSSIPED_CERT_CHARS: usize = 8 * 1024;
/// A peer certificate's verdict is reused this long, then checked again (it may have expired).
const PEER_RECHECK_SECS: u64 = 60;

/// `[tls]`: paths of the cluster CA, this host's certificate and its key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TlsFiles {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {path}: {message}")]
    Read { path: PathBuf, message: String },
    #[error("key file {path} is readable by others (mode {mode:o}); run `chmod 600 {path}`")]
    KeyExposed { path: PathBuf, mode: u32 },
    #[error("{path}: {message}")]
    Invalid { path: PathBuf, message: String },
}

pub struct TlsIdentity {
    pub server: Arc<ServerConfig>,
    pub client: Arc<ClientConfig>,
    /// This agent's own certificate, gossiped so that every peer can read its grants.
    pub leaf: CertificateDer<'static>,
    pub grants: Grants,
    /// The certificate's expiry, as a date (for events and status).
    pub not_after: String,
    /// The certificate's key, which seals this agent's gossip state (`tls::seal`).
    pub signing_key: Arc<dyn rustls::sign::SigningKey>,
    /// Checks the certificates peers gossip, against the same CA.
    pub peers: Arc<PeerCertificates>,
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Whether `cert` names `name` (as a DNS name or an IP address).
pub fn certificate_names(cert: &CertificateDer<'_>, name: &str) -> bool {
    let Ok(end_entity) = webpki::EndEntityCert::try_from(cert) else {
        return false;
    };
    match ServerName::try_from(name) {
        Ok(server_name) => end_entity.verify_is_valid_for_subject_name(&server_name).is_ok(),
        Err(_) => false,
    }
}

/// What `cert` grants its holder, read from its `urn:gossip-ha:role:` URI names.
pub fn grants_of(cert: &CertificateDer<'_>) -> Result<Grants, String> {
    let (_, parsed) =
        x509_parser::parse_x509_certificate(cert).map_err(|err| format!("unreadable certificate: {err}"))?;
    let names = parsed
        .subject_alternative_name()
        .map_err(|err| format!("unreadable subject alternative names: {err}"))?;
    let uris = names.into_iter().flat_map(|names| {
        names.value.general_names.iter().filter_map(|name| match name {
            x509_parser::extensions::GeneralName::URI(uri) => Some(*uri),
            _ => None,
        })
    });
    Grants::from_uris(uris)
}

/// The day `cert` expires, or why it cannot be read.
pub fn expiry_of(cert: &CertificateDer<'_>) -> String {
    match x509_parser::parse_x509_certificate(cert) {
        Ok((_, parsed)) => date(&UnixTime::since_unix_epoch(std::time::Duration::from_secs(
            parsed.validity().not_after.timestamp().max(0) as u64,
        ))),
        Err(err) => format!("unknown ({err})"),
    }
}

/// Reads a PEM file at start, bounded (`fsutil::read_regular_file`).
fn read_pem_file(path: &Path) -> Result<Vec<u8>, TlsError> {
    crate::fsutil::read_regular_file(path, MAX_PEM_BYTES).map_err(|err| TlsError::Read {
        path: path.to_path_buf(),
        message: err.to_string(),
    })
}

fn pem_error(path: &Path) -> impl FnOnce(rustls::pki_types::pem::Error) -> TlsError + '_ {
    move |err| TlsError::Read {
        path: path.to_path_buf(),
        message: err.to_string(),
    }
}

fn invalid(path: &Path, message: String) -> TlsError {
    TlsError::Invalid {
        path: path.to_path_buf(),
        message,
    }
}

/// The key must be private to the agent: mode 0600 or stricter, owned by root or the agent's
/// own user (another user who owns it could swap it).
fn check_key_file(path: &Path) -> Result<(), TlsError> {
    let metadata = std::fs::metadata(path).map_err(|err| TlsError::Read {
        path: path.to_path_buf(),
        message: err.to_string(),
    })?;
    let mode = metadata.mode();
    if mode & 0o077 != 0 {
        return Err(TlsError::KeyExposed {
            path: path.to_path_buf(),
            mode: mode & 0o777,
        });
    }
    let agent_uid = nix::unistd::geteuid().as_raw();
    if metadata.uid() != 0 && metadata.uid() != agent_uid {
        return Err(invalid(
            path,
            format!(
                "owned by uid {}, neither root nor this agent's user (uid {agent_uid}); run `chown {agent_uid} {}`",
                metadata.uid(),
                path.display()
            ),
        ));
    }
    Ok(())
}

fn load_roots(path: &Path) -> Result<RootCertStore, TlsError> {
    let bytes = read_pem_file(path)?;
    let mut roots = RootCertStore::empty();
    for ca in CertificateDer::pem_slice_iter(&bytes) {
        roots
            .add(ca.map_err(pem_error(path))?)
            .map_err(|err| invalid(path, format!("not a usable CA certificate: {err}")))?;
    }
    if roots.is_empty() {
        return Err(invalid(path, "holds no certificate".into()));
    }
    Ok(roots)
}

/// Verifies `leaf` under `roots` now, for client and server use alike.
fn verify_under(roots: &RootCertStore, leaf: &CertificateDer<'_>) -> Result<(), String> {
    let end_entity = webpki::EndEntityCert::try_from(leaf).map_err(|err| err.to_string())?;
    let algorithms = provider().signature_verification_algorithms;
    end_entity
        .verify_for_usage(
            algorithms.all,
            &roots.roots,
            &[],
            UnixTime::now(),
            webpki::KeyUsage::client_auth(),
            None,
            None,
        )
        .map(|_| ())
        .map_err(|err| stable_reason(&err))
}

/// The day of `time`, for reasons that must read the same on every attempt.
fn date(time: &UnixTime) -> String {
    time::OffsetDateTime::from_unix_timestamp(time.as_secs() as i64)
        .map(|moment| moment.date().to_string())
        .unwrap_or_else(|_| format!("{} (Unix seconds)", time.as_secs()))
}

/// A verification failure in words that do not change from one attempt to the next (webpki's
/// own text carries the current time), so a refusal is one event, not one per attempt.
pub fn stable_reason(err: &webpki::Error) -> String {
    match err {
        webpki::Error::CertExpired { not_after, .. } => format!("the certificate expired on {}", date(not_after)),
        webpki::Error::CertNotValidYet { not_before, .. } => {
            format!("the certificate is not valid before {}", date(not_before))
        }
        other => other.to_string(),
    }
}

/// A failed TLS handshake in stable words: an expired or not-yet-valid peer certificate is
/// named with its date, not rustls's text that carries the current time.
pub fn handshake_reason(err: &std::io::Error) -> String {
    use rustls::CertificateError;
    match err.get_ref().and_then(|inner| inner.downcast_ref::<rustls::Error>()) {
        Some(rustls::Error::InvalidCertificate(CertificateError::ExpiredContext { not_after, .. })) => {
            format!("its certificate expired on {}", date(not_after))
        }
        Some(rustls::Error::InvalidCertificate(CertificateError::NotValidYetContext { not_before, .. })) => {
            format!("its certificate is not valid before {}", date(not_before))
        }
        _ => err.to_string(),
    }
}

/// The grants of this agent's own certificate must cover the roles its configuration gives it:
/// peers would ignore the rest, so starting would only hide the mistake.
fn check_own_grants(path: &Path, grants: &Grants, node_name: &str, roles: &BTreeSet<Role>) -> Result<(), TlsError> {
    let missing: Vec<&str> = roles
        .iter()
        .filter(|role| !grants.roles.contains(role))
        .map(|role| role.as_str())
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    let wanted: Vec<String> = roles.iter().map(|role| format!("--role {role}")).collect();
    let what = if grants.is_empty() {
        "grants no role (it was issued without roles)".to_string()
    } else {
        format!("grants {grants}, not {}", missing.join(", "))
    };
    Err(invalid(
        path,
        format!(
            "the certificate {what}, and peers believe only what it grants; reissue it with `gossip-ha certs issue --name {node_name} {} [--role admin] --renew …`",
            wanted.join(" ")
        ),
    ))
}

impl TlsIdentity {
    /// Loads and checks everything; `roles` are this agent's configured roles.
    pub fn load(files: &TlsFiles, node_name: &str, roles: &BTreeSet<Role>) -> Result<TlsIdentity, TlsError> {
        check_key_file(&files.key)?;
        let roots = load_roots(&files.ca)?;
        let cert_bytes = read_pem_file(&files.cert)?;
        let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&cert_bytes)
            .collect::<Result<_, _>>()
            .map_err(pem_error(&files.cert))?;
        let leaf = chain
            .first()
            .cloned()
            .ok_or_else(|| invalid(&files.cert, "holds no certificate".into()))?;
        if !certificate_names(&leaf, node_name) {
            return Err(invalid(
                &files.cert,
                format!("the certificate is not for `{node_name}`, this agent's node_name; issue one with `gossip-ha certs issue --name {node_name}`"),
            ));
        }
        verify_under(&roots, &leaf)
            .map_err(|err| invalid(&files.cert, format!("not valid under {}: {err}", files.ca.display())))?;
        let grants = grants_of(&leaf).map_err(|err| invalid(&files.cert, err))?;
        check_own_grants(&files.cert, &grants, node_name, roles)?;
        let key = PrivateKeyDer::from_pem_slice(&read_pem_file(&files.key)?).map_err(pem_error(&files.key))?;

        let signing_key = provider()
            .key_provider
            .load_private_key(key.clone_key())
            .map_err(|err| invalid(&files.key, format!("not a usable key: {err}")))?;
        let roots = Arc::new(roots);
        let client_verifier = WebPkiClientVerifier::builder_with_provider(roots.clone(), provider())
            .build()
            .map_err(|err| invalid(&files.ca, err.to_string()))?;
        let server = ServerConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|err| invalid(&files.cert, err.to_string()))?
            .with_client_cert_verifier(client_verifier)
            .with_single_cert(chain.clone(), key.clone_key())
            .map_err(|err| invalid(&files.key, format!("does not match the certificate: {err}")))?;
        let client = ClientConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|err| invalid(&files.cert, err.to_string()))?
            .with_root_certificates(roots.clone())
            .with_client_auth_cert(chain, key)
            .map_err(|err| invalid(&files.key, format!("does not match the certificate: {err}")))?;
        Ok(TlsIdentity {
            server: Arc::new(server),
            client: Arc::new(client),
            not_after: expiry_of(&leaf),
            signing_key,
            leaf,
            grants,
            peers: Arc::new(PeerCertificates::new(roots)),
        })
    }

    /// This agent's certificate as it is gossiped (`cert` key).
    pub fn gossiped_certificate(&self) -> String {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD.encode(self.leaf.as_ref())
    }
}

/// The agent's current identity, replaced whole when it reloads its certificate (SIGHUP): new
/// connections use the new one, established ones keep the session they have.
#[derive(Clone)]
pub struct IdentityHandle(Arc<std::sync::RwLock<Arc<TlsIdentity>>>);

impl IdentityHandle {
    pub fn new(identity: TlsIdentity) -> Self {
        IdentityHandle(Arc::new(std::sync::RwLock::new(Arc::new(identity))))
    }

    pub fn current(&self) -> Arc<TlsIdentity> {
        match self.0.read() {
            Ok(current) => current.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    pub fn replace(&self, identity: TlsIdentity) {
        let mut current = match self.0.write() {
            Ok(current) => current,
            Err(poisoned) => poisoned.into_inner(),
        };
        *current = Arc::new(identity);
    }
}

/// When a (node, certificate) pair was checked, and what it grants or why nothing.
type Verdict = (std::time::Instant, Result<Grants, String>);

/// Checks the certificates peers gossip (base64 DER in their `cert` key): issued by the cluster
/// CA, valid now, naming the node whose state carries it. Verdicts are cached per certificate.
pub struct PeerCertificates {
    roots: Arc<RootCertStore>,
    verdicts: Mutex<HashMap<(String, String), Verdict>>,
}

impl PeerCertificates {
    fn new(roots: Arc<RootCertStore>) -> Self {
        PeerCertificates {
            roots,
            verdicts: Mutex::new(HashMap::new()),
        }
    }

    /// The certificate in a peer's `cert` key (base64 DER of at most 8 KiB).
    pub fn certificate(&self, gossiped: &str) -> Result<CertificateDer<'static>, String> {
        use base64::Engine;
        if gossiped.len() > MAX_GOSSIPED_CERT_CHARS {
            return Err("its gossiped certificate is too large to be one".into());
        }
        base64::engine::general_purpose::STANDARD
            .decode(gossiped)
            .map(CertificateDer::from)
            .map_err(|_| "its gossiped certificate is not base64".to_string())
    }

    /// What the certificate `gossiped` grants `node`, or why it grants nothing.
    pub fn grants(&self, node: &str, gossiped: &str) -> Result<Grants, String> {
        if gossiped.len() > MAX_GOSSIPED_CERT_CHARS {
            return Err("its gossiped certificate is too large to be one".into());
        }
        let key = (node.to_string(), gossiped.to_string());
        if let Ok(verdicts) = self.verdicts.lock() {
            if let Some((checked, verdict)) = verdicts.get(&key) {
                if checked.elapsed().as_secs() < PEER_RECHECK_SECS {
                    return verdict.clone();
                }
            }
        }
        let verdict = self.check(node, gossiped);
        if let Ok(mut verdicts) = self.verdicts.lock() {
            if verdicts.len() >= MAX_CACHED_PEERS {
                verdicts.clear();
            }
            verdicts.insert(key, (std::time::Instant::now(), verdict.clone()));
        }
        verdict
    }

    fn check(&self, node: &str, gossiped: &str) -> Result<Grants, String> {
        let cert = self.certificate(gossiped)?;
        verify_under(&self.roots, &cert).map_err(|err| format!("its gossiped certificate is not valid: {err}"))?;
        if !certificate_names(&cert, node) {
            return Err(format!("its gossiped certificate is not for `{node}`"));
        }
        let grants = grants_of(&cert).map_err(|err| format!("its gossiped certificate: {err}"))?;
        if grants.is_empty() {
            return Err("its certificate grants no role; reissue it with `gossip-ha certs issue --role …`".into());
        }
        Ok(grants)
    }
}
