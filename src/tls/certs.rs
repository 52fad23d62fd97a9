//! `gossip-ha certs`: the cluster CA and host certificates (rcgen). A host certificate names
//! its node (CN and DNS SAN) and may name IP addresses; peers check the node name against what
//! the agent gossips as, and a client checks the address it dialled. Secrets are written 0600
//! and nothing is overwritten without `force`.

use std::io::Write;
use std::net::IpAddr;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose, SanType,
};
use time::{Duration, OffsetDateTime};

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
            not_before: now - Duration::hours(1),
            not_after: now + Duration::days(days),
        }
    }
}

fn read(path: &Path) -> Result<String, CertError> {
    std::fs::read_to_string(path).map_err(|source| CertError::Read {
        path: path.to_path_buf(),
        source,
    })
}

/// Issues a host certificate signed by the CA in `ca_dir`; returns (certificate, key) PEM.
pub fn issue_pem(ca_dir: &Path, request: &HostRequest) -> Result<(String, String), CertError> {
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
    params.distinguished_name = DistinguishedName::new();
    params.distinguished_name.push(DnType::CommonName, request.name.clone());
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth];
    params.not_before = request.not_before;
    params.not_after = request.not_after;
    let key = KeyPair::generate().map_err(generate_error("host key"))?;
    let cert = params
        .signed_by(&key, &ca, &ca_key)
        .map_err(generate_error("host certificate"))?;
    Ok((cert.pem(), key.serialize_pem()))
}

/// Issues a host certificate into `out`: `cert.pem`, `key.pem` (0600) and a copy of `ca.pem`.
pub fn issue(ca_dir: &Path, request: &HostRequest, out: &Path, force: bool) -> Result<Vec<PathBuf>, CertError> {
    let paths = [out.join(HOST_CERT), out.join(HOST_KEY), out.join(CA_CERT)];
    for path in &paths {
        if path.exists() && !force {
            return Err(CertError::Exists(path.clone()));
        }
    }
    let (cert, key) = issue_pem(ca_dir, request)?;
    write_file(&paths[1], &key, 0o600, force)?;
    write_file(&paths[0], &cert, 0o644, force)?;
    write_file(&paths[2], &read(&ca_dir.join(CA_CERT))?, 0o644, force)?;
    Ok(paths.to_vec())
}

#[cfg(test)]
mod tests {
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
        issue(&ca, &request, &out, false).unwrap();
        assert_eq!(mode(&out.join(HOST_KEY)), 0o600);
        assert!(std::fs::read_to_string(out.join(HOST_CERT))
            .unwrap()
            .contains("BEGIN CERTIFICATE"));
        let err = issue(&ca, &request, &out, false).unwrap_err().to_string();
        assert!(err.contains("cert.pem exists") && err.contains("--force"), "{err}");
    }
}
