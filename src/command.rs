//! Runs an operator's command (a reload, a hook): argv without a shell, facts in the
//! environment, bounded in time (killed at the timeout) and in what is kept of its output.

use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncReadExt};

/// Bytes of combined output kept for the event; the rest is read and dropped.
const OUTPUT_KEPT: usize = 2048;
const OUTPUT_LINES: usize = 5;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandOutcome {
    /// `Ok(())` for exit status 0; otherwise what went wrong, for people.
    pub result: Result<(), String>,
    /// The first lines of stdout and stderr.
    pub output: String,
    pub took: Duration,
}

impl CommandOutcome {
    pub fn describe(&self, argv: &[String]) -> String {
        let status = match &self.result {
            Ok(()) => "exit 0".to_string(),
            Err(why) => why.clone(),
        };
        let output = if self.output.is_empty() {
            String::new()
        } else {
            format!("; output: {}", self.output)
        };
        format!(
            "`{}`: {status} after {} ms{output}",
            argv.join(" "),
            self.took.as_millis()
        )
    }
}

async fn read_bounded(mut stream: impl AsyncRead + Unpin) -> Vec<u8> {
    let mut kept = Vec::new();
    let mut buffer = [0u8; 4096];
    loop {
        match stream.read(&mut buffer).await {
            Ok(0) | Err(_) => return kept,
            Ok(read) => {
                let room = OUTPUT_KEPT.saturating_sub(kept.len());
                kept.extend_from_slice(&buffer[..read.min(room)]);
            }
        }
    }
}

fn first_lines(stdout: &[u8], stderr: &[u8]) -> String {
    let text = String::from_utf8_lossy(stdout) + String::from_utf8_lossy(stderr);
    text.lines()
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .take(OUTPUT_LINES)
        .collect::<Vec<_>>()
        .join(" | ")
}

pub async fn run(argv: &[String], env: &[(String, String)], timeout: Duration) -> CommandOutcome {
    let started = Instant::now();
    let Some((program, args)) = argv.split_first() else {
        return CommandOutcome {
            result: Err("empty command".into()),
            output: String::new(),
            took: Duration::ZERO,
        };
    };
    let spawned = tokio::process::Command::new(program)
        .args(args)
        .envs(env.iter().map(|(key, value)| (key.as_str(), value.as_str())))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        // Its own process group, so a timeout ends whatever it started too.
        .process_group(0)
        .spawn();
    let mut child = match spawned {
        Ok(child) => child,
        Err(err) => {
            return CommandOutcome {
                result: Err(format!("cannot start: {err}")),
                output: String::new(),
                took: started.elapsed(),
            }
        }
    };
    let process_group = child.id().map(|pid| nix::unistd::Pid::from_raw(pid as i32));
    let stdout = child.stdout.take();
    let stderr = child.stderr.take();
    let collect = async {
        let out = async {
            match stdout {
                Some(stream) => read_bounded(stream).await,
                None => Vec::new(),
            }
        };
        let err = async {
            match stderr {
                Some(stream) => read_bounded(stream).await,
                None => Vec::new(),
            }
        };
        let (out, err) = tokio::join!(out, err);
        let status = child.wait().await;
        (status, out, err)
    };
    match tokio::time::timeout(timeout, collect).await {
        Ok((status, out, err)) => CommandOutcome {
            result: match status {
                Ok(status) if status.success() => Ok(()),
                Ok(status) => Err(match status.code() {
                    Some(code) => format!("exit {code}"),
                    None => format!("killed by signal ({status})"),
                }),
                Err(err) => Err(format!("cannot wait for it: {err}")),
            },
            output: first_lines(&out, &err),
            took: started.elapsed(),
        },
        Err(_) => {
            if let Some(group) = process_group {
                let _ = nix::sys::signal::killpg(group, nix::sys::signal::Signal::SIGKILL);
            }
            CommandOutcome {
                result: Err(format!("killed after the {} ms timeout", timeout.as_millis())),
                output: String::new(),
                took: started.elapsed(),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(parts: &[&str]) -> Vec<String> {
        parts.iter().map(|part| part.to_string()).collect()
    }

    #[tokio::test]
    async fn success_failure_output_and_environment() {
        let outcome = run(
            &argv(&["sh", "-c", "echo \"hello $WHO\"; echo oops >&2"]),
            &[("WHO".into(), "db2".into())],
            Duration::from_secs(5),
        )
        .await;
        assert_eq!(outcome.result, Ok(()));
        assert_eq!(outcome.output, "hello db2 | oops");
        let outcome = run(&argv(&["sh", "-c", "exit 3"]), &[], Duration::from_secs(5)).await;
        assert_eq!(outcome.result, Err("exit 3".into()));
        let outcome = run(&argv(&["/nonexistent/reload"]), &[], Duration::from_secs(5)).await;
        assert!(outcome.result.unwrap_err().starts_with("cannot start"));
    }

    #[tokio::test]
    async fn a_hanging_command_is_killed_at_its_timeout() {
        let dir = tempfile::tempdir().unwrap();
        let marker = dir.path().join("still-running");
        // The grandchild (the subshell) must die with it, or it would touch the marker.
        let script = format!("(sleep 1; touch {}) & wait", marker.display());
        let outcome = run(&argv(&["sh", "-c", &script]), &[], Duration::from_millis(200)).await;
        assert!(outcome.result.unwrap_err().contains("timeout"));
        assert!(outcome.took < Duration::from_secs(5));
        tokio::time::sleep(Duration::from_millis(1500)).await;
        assert!(!marker.exists(), "a process the command started outlived the timeout");
    }

    #[tokio::test]
    async fn floods_of_output_are_cut_not_buffered() {
        let outcome = run(
            &argv(&["sh", "-c", "yes | head -c 10000000"]),
            &[],
            Duration::from_secs(10),
        )
        .await;
        assert_eq!(outcome.result, Ok(()));
        assert!(outcome.output.len() <= OUTPUT_KEPT);
    }
}
