//! MariaDB's own tools, run with the admin credentials in a 0600 option file (never on the
//! command line, where `ps` would show them), each bounded in time and killed on drop.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use mysql_async::Opts;
use tokio::process::Command;

use crate::db::DbError;

/// Stderr kept from a tool for its error message.
const STDERR_LIMIT: usize = 4_096;

/// An option file holding one server's address and credentials; removed when dropped.
pub struct ClientOptions {
    path: PathBuf,
}

impl ClientOptions {
    pub fn write(dir: &Path, name: &str, opts: &Opts, host_port: Option<(&str, u16)>) -> Result<Self, DbError> {
        let path = dir.join(format!(".{name}.cnf"));
        let mut text = String::from("[client]\n");
        if let Some(user) = opts.user() {
            text.push_str(&format!("user={}\n", quote(user)));
        }
        if let Some(password) = opts.pass() {
            text.push_str(&format!("password={}\n", quote(password)));
        }
        match (host_port, opts.socket()) {
            (Some((host, port)), _) => text.push_str(&format!("host={}\nport={port}\nprotocol=tcp\n", quote(host))),
            (None, Some(socket)) => text.push_str(&format!("socket={}\n", quote(socket))),
            (None, None) => text.push_str(&format!(
                "host={}\nport={}\nprotocol=tcp\n",
                quote(opts.ip_or_hostname()),
                opts.tcp_port()
            )),
        }
        let written = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&path)
            .and_then(|mut file| file.write_all(text.as_bytes()));
        written.map_err(|err| DbError::Query {
            target: path.display().to_string(),
            what: "write the tools' option file".into(),
            message: err.to_string(),
        })?;
        Ok(ClientOptions { path })
    }

    pub fn arg(&self) -> String {
        format!("--defaults-extra-file={}", self.path.display())
    }
}

impl Drop for ClientOptions {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Option-file values are double-quoted with backslash escapes.
fn quote(value: &str) -> String {
    format!("\"{}\"", value.replace('\\', "\\\\").replace('"', "\\\""))
}

pub fn tool_error(tool: &str, message: String) -> DbError {
    DbError::Query {
        target: "local".into(),
        what: tool.into(),
        message,
    }
}

pub fn spawn(program: &str, args: &[String], stdin: bool, stdout: bool) -> Result<tokio::process::Child, DbError> {
    Command::new(program)
        .args(args)
        .stdin(if stdin { Stdio::piped() } else { Stdio::null() })
        .stdout(if stdout { Stdio::piped() } else { Stdio::null() })
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|err| {
            tool_error(
                program,
                format!("cannot start it: {err} (is it installed and on PATH?)"),
            )
        })
}

/// Waits for a tool and turns a failure into an error carrying the end of its stderr.
pub async fn finish(program: &str, child: tokio::process::Child) -> Result<(), DbError> {
    let output = child
        .wait_with_output()
        .await
        .map_err(|err| tool_error(program, err.to_string()))?;
    if output.status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&output.stderr);
    let tail: String = stderr
        .chars()
        .rev()
        .take(STDERR_LIMIT)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    Err(tool_error(program, format!("{} : {}", output.status, tail.trim())))
}
