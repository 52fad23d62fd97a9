//! Loads this agent's TLS identity: the cluster CA, its certificate and key, checked before the
//! agent starts so a mistake is an error naming the file, not a failed handshake later.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use serde::Serialize;

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
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn read_error(path: &Path) -> impl FnOnce(rustls::pki_types::pem::Error) -> TlsError + '_ {
    move |err| TlsError::Read {
        path: path.to_path_buf(),
        message: err.to_string(),
    }
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

impl TlsIdentity {
    pub fn load(files: &TlsFiles, node_name: &str) -> Result<TlsIdentity, TlsError> {
        let mode = std::fs::metadata(&files.key)
            .map_err(|err| TlsError::Read {
                path: files.key.clone(),
                message: err.to_string(),
            })?
            .permissions()
            .mode();
        if mode & 0o077 != 0 {
            return Err(TlsError::KeyExposed {
                path: files.key.clone(),
                mode: mode & 0o777,
            });
        }
        let invalid = |path: &Path, message: String| TlsError::Invalid {
            path: path.to_path_buf(),
            message,
        };
        let mut roots = RootCertStore::empty();
        for ca in CertificateDer::pem_file_iter(&files.ca).map_err(read_error(&files.ca))? {
            roots
                .add(ca.map_err(read_error(&files.ca))?)
                .map_err(|err| invalid(&files.ca, format!("not a usable CA certificate: {err}")))?;
        }
        if roots.is_empty() {
            return Err(invalid(&files.ca, "holds no certificate".into()));
        }
        let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&files.cert)
            .map_err(read_error(&files.cert))?
            .collect::<Result<_, _>>()
            .map_err(read_error(&files.cert))?;
        let leaf = chain
            .first()
            .ok_or_else(|| invalid(&files.cert, "holds no certificate".into()))?;
        if !certificate_names(leaf, node_name) {
            return Err(invalid(
                &files.cert,
                format!("the certificate is not for `{node_name}`, this agent's node_name; issue one with `gossip-ha certs issue --name {node_name}`"),
            ));
        }
        let end_entity = webpki::EndEntityCert::try_from(leaf).map_err(|err| invalid(&files.cert, err.to_string()))?;
        let algorithms = provider().signature_verification_algorithms;
        let now = UnixTime::now();
        let trust: Vec<_> = roots.roots.clone();
        end_entity
            .verify_for_usage(
                algorithms.all,
                &trust,
                &[],
                now,
                webpki::KeyUsage::client_auth(),
                None,
                None,
            )
            .map_err(|err| invalid(&files.cert, format!("not valid under {}: {err}", files.ca.display())))?;
        let key = PrivateKeyDer::from_pem_file(&files.key).map_err(read_error(&files.key))?;

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
            .with_root_certificates(roots)
            .with_client_auth_cert(chain, key)
            .map_err(|err| invalid(&files.key, format!("does not match the certificate: {err}")))?;
        Ok(TlsIdentity {
            server: Arc::new(server),
            client: Arc::new(client),
        })
    }
}
