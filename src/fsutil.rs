//! Durable file replacement: what is written is either entirely there or not at all, even if
//! the process is killed or the machine loses power mid-write. Mode, owner and symlinks of an
//! existing file are kept.

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// The steps of a replacement, reported to `on_step` as each completes (tests kill the process
/// at each of them to show the target is never torn).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteStep {
    TempCreated,
    TempWritten,
    TempSynced,
    Renamed,
    DirSynced,
}

impl WriteStep {
    pub const ALL: [WriteStep; 5] = [
        WriteStep::TempCreated,
        WriteStep::TempWritten,
        WriteStep::TempSynced,
        WriteStep::Renamed,
        WriteStep::DirSynced,
    ];
}

const TEMP_MARKER: &str = ".gossip-ha-tmp-";

/// Writes `bytes` to `path` atomically; see `replace_file`.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    replace_file(path, bytes, &mut |_| {}).map(|_| ())
}

/// Replaces the file at `path` (the file a symlink points to, for a symlink) with `bytes`: a
/// temporary file in the same directory with the old file's mode and owner, fsync, rename over
/// the target, fsync the directory. Returns `false`, writing nothing, when the content is
/// already `bytes`. Temporary files left by an earlier crash are removed first.
pub fn replace_file(path: &Path, bytes: &[u8], on_step: &mut dyn FnMut(WriteStep)) -> std::io::Result<bool> {
    let target = match std::fs::canonicalize(path) {
        Ok(resolved) => resolved,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => path.to_path_buf(),
        Err(err) => return Err(err),
    };
    let existing = match std::fs::metadata(&target) {
        Ok(metadata) => Some(metadata),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => None,
        Err(err) => return Err(err),
    };
    if existing.is_some() && std::fs::read(&target)? == bytes {
        return Ok(false);
    }
    let dir = match target.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = target
        .file_name()
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidInput, "path has no file name"))?
        .to_string_lossy()
        .into_owned();
    remove_stale_temporaries(&dir, &name);
    let temporary = dir.join(format!(".{name}{TEMP_MARKER}{}", std::process::id()));
    let written = (|| {
        let mode = existing
            .as_ref()
            .map_or(0o644, |metadata| metadata.permissions().mode() & 0o7777);
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&temporary)?;
        on_step(WriteStep::TempCreated);
        file.write_all(bytes)?;
        on_step(WriteStep::TempWritten);
        if let Some(metadata) = &existing {
            nix::unistd::fchown(
                std::os::fd::AsRawFd::as_raw_fd(&file),
                Some(nix::unistd::Uid::from_raw(metadata.uid())),
                Some(nix::unistd::Gid::from_raw(metadata.gid())),
            )
            .map_err(std::io::Error::from)?;
        }
        file.set_permissions(std::fs::Permissions::from_mode(mode))?;
        file.sync_all()?;
        on_step(WriteStep::TempSynced);
        std::fs::rename(&temporary, &target)?;
        on_step(WriteStep::Renamed);
        std::fs::File::open(&dir)?.sync_all()?;
        on_step(WriteStep::DirSynced);
        Ok(())
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&temporary);
    }
    written.map(|()| true)
}

fn remove_stale_temporaries(dir: &Path, name: &str) {
    let prefix = format!(".{name}{TEMP_MARKER}");
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        if entry.file_name().to_string_lossy().starts_with(&prefix) {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

/// Reads a file read at start (configuration, certificates): a regular file of at most
/// `max_bytes`, opened without blocking, so a FIFO or a device (`/dev/zero`) is an error at once
/// instead of a hang or an endless read.
pub fn read_regular_file(path: &Path, max_bytes: u64) -> std::io::Result<Vec<u8>> {
    use std::io::{Error, ErrorKind, Read};
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::fcntl::OFlag::O_NONBLOCK.bits())
        .open(path)?;
    if !file.metadata()?.is_file() {
        return Err(Error::new(ErrorKind::InvalidInput, "not a regular file"));
    }
    let mut bytes = Vec::new();
    file.take(max_bytes + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > max_bytes {
        return Err(Error::new(
            ErrorKind::InvalidData,
            format!("larger than {max_bytes} bytes"),
        ));
    }
    Ok(bytes)
}

/// A configuration file (or a template) is a few KiB; a larger one is a mistake (or a device).
pub const MAX_CONFIG_BYTES: u64 = 1024 * 1024;

/// Reads a configuration file or template at start: `read_regular_file` bounded by
/// `MAX_CONFIG_BYTES`, as UTF-8 text.
pub fn read_config_text(path: &Path) -> std::io::Result<String> {
    let bytes = read_regular_file(path, MAX_CONFIG_BYTES)?;
    String::from_utf8(bytes).map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidData, "not UTF-8 text"))
}

/// Whether users other than the owner and its group can read `path` (mode `o+r`).
pub fn readable_by_others(path: &Path) -> bool {
    std::fs::metadata(path).is_ok_and(|metadata| metadata.mode() & 0o004 != 0)
}

/// Makes `dir` (created if missing) private to the agent: 0700, so nothing written under it —
/// saved transactions, dumps, the state file — is readable by other users whatever its mode.
pub fn private_directory(dir: &Path) -> std::io::Result<()> {
    std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir)?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_the_file_and_leaves_no_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        write_atomic(&path, b"one").unwrap();
        write_atomic(&path, b"two").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"two");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn unchanged_content_is_not_written() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.conf");
        assert!(replace_file(&path, b"x", &mut |_| {}).unwrap());
        let mut steps = Vec::new();
        assert!(!replace_file(&path, b"x", &mut |step| steps.push(step)).unwrap());
        assert!(steps.is_empty());
    }

    #[test]
    fn mode_is_kept_and_every_step_is_reported_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pandora_server.conf");
        std::fs::write(&path, "old").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
        let mut steps = Vec::new();
        replace_file(&path, b"new", &mut |step| steps.push(step)).unwrap();
        assert_eq!(steps, WriteStep::ALL);
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o7777, 0o640);
    }

    #[test]
    fn a_symlink_stays_a_symlink_and_its_target_is_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("real.conf");
        let link = dir.path().join("link.conf");
        std::fs::write(&real, "old").unwrap();
        std::os::unix::fs::symlink(&real, &link).unwrap();
        replace_file(&link, b"new", &mut |_| {}).unwrap();
        assert!(std::fs::symlink_metadata(&link).unwrap().file_type().is_symlink());
        assert_eq!(std::fs::read(&real).unwrap(), b"new");
    }

    #[test]
    fn leftovers_of_a_crash_are_cleaned_up() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.conf");
        std::fs::write(dir.path().join(format!(".a.conf{TEMP_MARKER}12345")), "torn").unwrap();
        write_atomic(&path, b"x").unwrap();
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn a_missing_directory_is_an_error_not_a_panic() {
        let dir = tempfile::tempdir().unwrap();
        assert!(write_atomic(&dir.path().join("absent/state.json"), b"x").is_err());
    }
}
