//! `gossip-ha certs`: the cluster CA and host certificates (rcgen). A host certificate names
//! its node (CN and DNS SAN), may name IP addresses, and carries what its holder may do as URI
//! names (`urn:gossip-ha:role:db`, …, see `core::authority`); peers check the node name against
//! what the agent gossips as, a client checks the address it dialled, and every agent believes
//! a peer's roles only as far as its certificate grants them. Secrets are written 0600 and
//! nothing is overwritten without `force`; a renewal keeps the host's key and replaces the
//! certificate atomically, so an agent reloading it never reads half a file.

use std::io::Write;
use std::net::IpAddr;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, Ia5String, IsCa, KeyPair,
    KeyUsagePurpose, SanType,
};
use time::{Duration, OffsetDateTime};

use crate::core::authority::Grants;

pub const CA_CERT: &str = "ca.pem";
pub const CA_KEY: &str = "ca-key.pem";
pub const HOST_CERT: &str = "cert.pem";
pub const HOST_KEY: &str = "key.pem";

#[derive(Debug, thiserror::Error)]
pub enum CertError {
    #[error("{0} exists; pass --force to overwrite it")]
    Exists(PathBuf),
    #[error("cannot write {path}: {source}")]
    Write { path: PathBuf, source: std::io::Error },
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{what}: {message}")]
    Generate { what: String, message: String },
}

fn generate_error(what: &str) -> impl FnOnce(rcgen::Error) -> CertError + '_ {
    move |err| CertError::Generate {
        what: what.to_string(),
        message: err.to_string(),
    }
}

/// Writes `contents` with `mode`, refusing to replace an existing file unless `force`.
fn write_file(path: &Path, contents: &str, mode: u32, force: bool) -> Result<(), CertError> {
    if path.exists() && !force {
        return Err(CertError::Exists(path.to_path_buf()));
    }
    let write_error = |source| CertError::Write {
        path: path.to_path_buf(),
        source,
    };
    if let Some(dir) = path.parent().filter(|dir| !dir.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(write_error)?;
    }
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(path)
        .map_err(write_error)?;
    // The mode of an existing file, or one masked by the umask, is set explicitly.
    file.set_permissions(std::fs::Permissions::from_mode(mode))
        .map_err(write_error)?;
    file.write_all(contents.as_bytes()).map_err(write_error)?;
    file.sync_all().map_err(write_error)
}

/// Makes the cluster CA in `dir`: `ca.pem` (public) and `ca-key.pem` (0600).
pub fn init_ca(dir: &Path, cluster: &str, force: bool) -> Result<Vec<PathBuf>, CertError> {
    let cert_path = dir.join(CA_CERT);
    let key_path = dir.join(CA_KEY);
    for path in [&cert_path, &key_path] {
        if path.exists() && !force {
            return Err(CertError::Exists(path.clone()));
        }
    }
    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    params
        .distinguished_name
        .push(DnType::CommonName, format!("gossip-ha CA {cluster}"));
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    params.not_before = OffsetDateTime::now_utc() - Duration::hours(1);
    params.not_after = OffsetDateTime::now_utc() + Duration::days(3650);
    let key = KeyPair::generate().map_err(generate_error("CA key"))?;
    let cert = params.self_signed(&key).map_err(generate_error("CA certificate"))?;
    write_file(&key_path, &key.serialize_pem(), 0o600, force)?;
    write_file(&cert_path, &cert.pem(), 0o644, force)?;
    Ok(vec![cert_path, key_path])
}

/// What a host certificate names, and for how long it is valid.
#[derive(Debug, Clone)]
pub struct HostRequest {
    pub name: String,
    pub ips: Vec<IpAddr>,
    pub dns: Vec<String>,
    pub grants: Grants,
    pub not_before: OffsetDateTime,
    pub not_after: OffsetDateTime,
}

impl HostRequest {
    pub fn valid_for_days(name: &str, ips: Vec<IpAddr>, dns: Vec<String>, days: i64) -> Self {
        let now = OffsetDateTime::now_utc();
        HostRequest {
            name: name.to_string(),
            ips,
            dns,
            grants: Grants::default(),
            not_before: now - Duration::hours(1),
            not_after: now + Duration::days(days),
        }
    }

    pub fn with_grants(self, grants: Grants) -> Self {
        HostRequest { grants, ..self }
    }
}

/// Which key a host certificate is issued for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostKey {
    /// A new key (a new host, or rotating the key too).
    Generate,
    /// The key already in the output directory: a renewal that peers' pinned nothing notices.
    Keep,
}

fn read(path: &Path) -> Result<String, CertError> {
    std::fs::read_to_string(path).map_err(|source| CertError::Read {
        path: path.to_path_buf(),
        source,
    })
}

/// Issues a host certificate signed by the CA in `ca_dir` for a new key; returns
/// (certificate, key) PEM.
pub fn issue_pem(ca_dir: &Path, request: &HostRequest) -> Result<(String, String), CertError> {
    let key = KeyPair::generate().map_err(generate_error("host key"))?;
    issue_for_key(ca_dir, request, key)
}

fn issue_for_key(ca_dir: &Path, request: &HostRequest, key: KeyPair) -> Result<(String, String), CertError> {
    let ca_key = KeyPair::from_pem(&read(&ca_dir.join(CA_KEY))?).map_err(generate_error("reading the CA key"))?;
    let ca_params =
        CertificateParams::from_ca_cert_pem(&read(&ca_dir.join(CA_CERT))?).map_err(generate_error("reading the CA"))?;
    let ca = ca_params
        .self_signed(&ca_key)
        .map_err(generate_error("loading the CA"))?;

    let mut names = vec![request.name.clone()];
    names.extend(request.dns.iter().cloned());
    let mut params = CertificateParams::new(names).map_err(generate_error("host names"))?;
    params
        .subject_alt_names
        .extend(request.ips.iter().map(|ip| SanType::IpAddress(*ip)));
    for uri in request.grants.uris() {
        let uri = Ia5String::try_from(uri).map_err(generate_error("role names"))?;
        params.subject_alt_names.push(SanType::URI(uri));
    }
    params.distinguished_name = DistinguishedName::new();
    params.distinguished_name.push(DnType::CommonName, request.name.clone());
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth];
    params.not_before = request.not_before;
    params.not_after = request.not_after;
    let cert = params
        .signed_by(&key, &ca, &ca_key)
        .map_err(generate_error("host certificate"))?;
    Ok((cert.pem(), key.serialize_pem()))
}

/// Issues a host certificate into `out`: `cert.pem`, `key.pem` (0600) and a copy of `ca.pem`.
/// With `HostKey::Keep` the existing `key.pem` is kept and the certificate and CA copy are
/// replaced atomically (a renewal: no `force` needed, the key never leaves the file).
pub fn issue(
    ca_dir: &Path,
    request: &HostRequest,
    out: &Path,
    key: HostKey,
    force: bool,
) -> Result<Vec<PathBuf>, CertError> {
    let paths = [out.join(HOST_CERT), out.join(HOST_KEY), out.join(CA_CERT)];
    let ca_pem = read(&ca_dir.join(CA_CERT))?;
    if key == HostKey::Keep {
        let key = KeyPair::from_pem(&read(&paths[1])?).map_err(generate_error("reading the host key"))?;
        let (cert, _) = issue_for_key(ca_dir, request, key)?;
        for (path, contents) in [(&paths[0], &cert), (&paths[2], &ca_pem)] {
            crate::fsutil::write_atomic(path, contents.as_bytes()).map_err(|source| CertError::Write {
                path: path.clone(),
                source,
            })?;
        }
        return Ok(paths.to_vec());
    }
    for path in &paths {
        if path.exists() && !force {
            return Err(CertError::Exists(path.clone()));
        }
    }
    let (cert, key) = issue_pem(ca_dir, request)?;
    write_file(&paths[1], &key, 0o600, force)?;
    write_file(&paths[0], &cert, 0o644, force)?;
    write_file(&paths[2], &ca_pem, 0o644, force)?;
    Ok(paths.to_vec())
}

#[cfg(test)]
mod tests {
    use rustls::pki_types::pem::PemObject;

    use super::*;

    #[test]
    fn ca_and_host_files_have_safe_modes_and_are_not_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let ca = dir.path().join("ca");
        init_ca(&ca, "test", false).unwrap();
        let mode = |path: &Path| std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&ca.join(CA_KEY)), 0o600);
        assert!(matches!(init_ca(&ca, "test", false), Err(CertError::Exists(_))));
        init_ca(&ca, "test", true).unwrap();

        let out = dir.path().join("db1");
        let request = HostRequest::valid_for_days("db1", vec!["127.0.0.1".parse().unwrap()], vec![], 30);
        issue(&ca, &request, &out, HostKey::Generate, false).unwrap();
        assert_eq!(mode(&out.join(HOST_KEY)), 0o600);
        assert!(std::fs::read_to_string(out.join(HOST_CERT))
            .unwrap()
            .contains("BEGIN CERTIFICATE"));
        let err = issue(&ca, &request, &out, HostKey::Generate, false)
            .unwrap_err()
            .to_string();
        assert!(err.contains("cert.pem exists") && err.contains("--force"), "{err}");
    }

    #[test]
    fn a_renewal_keeps_the_key_and_writes_the_grants() {
        let dir = tempfile::tempdir().unwrap();
        let ca = dir.path().join("ca");
        init_ca(&ca, "test", false).unwrap();
        let out = dir.path().join("db1");
        let request = HostRequest::valid_for_days("db1", vec![], vec![], 30);
        issue(&ca, &request, &out, HostKey::Generate, false).unwrap();
        let key_before = std::fs::read(out.join(HOST_KEY)).unwrap();
        let cert_before = std::fs::read(out.join(HOST_CERT)).unwrap();

        let grants = Grants {
            roles: [gossip_ha_proto::gossip::Role::Db].into_iter().collect(),
            admin: true,
        };
        issue(
            &ca,
            &request.clone().with_grants(grants.clone()),
            &out,
            HostKey::Keep,
            false,
        )
        .unwrap();
        assert_eq!(std::fs::read(out.join(HOST_KEY)).unwrap(), key_before);
        assert_ne!(std::fs::read(out.join(HOST_CERT)).unwrap(), cert_before);
        let pem = std::fs::read(out.join(HOST_CERT)).unwrap();
        let der = rustls::pki_types::CertificateDer::from_pem_slice(&pem).unwrap();
        assert_eq!(crate::tls::identity::grants_of(&der).unwrap(), grants);
    }
}
