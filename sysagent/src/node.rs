//! The machine behind the API: cairn-init's control socket (services, logs,
//! reboot) and `cairnctl` for what the updater and the config loader do. The
//! agent adds no second way of doing any of it.

use crate::error::{ApiError, ApiResult, Kind};
use bytes::Bytes;
use std::path::PathBuf;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;
use tokio::sync::mpsc;

/// The most of one answer the agent holds (a service's log is bounded by
/// cairn-init already).
const MAX_ANSWER: u64 = 4 * 1024 * 1024;
const ANSWER_TIMEOUT: Duration = Duration::from_secs(30);
/// An update download and install, or a config loader run.
const CAIRNCTL_TIMEOUT: Duration = Duration::from_secs(900);

#[derive(Clone)]
pub struct Node {
    pub socket: PathBuf,
    pub cairnctl: PathBuf,
}

fn unavailable(what: &str, e: impl std::fmt::Display) -> ApiError {
    ApiError::new(Kind::Unavailable, format!("{what}: {e}"))
}

impl Node {
    async fn ask(&self, words: &[&str]) -> ApiResult<BufReader<UnixStream>> {
        if words.iter().any(|w| w.contains(['\t', '\n'])) {
            return Err(ApiError::new(Kind::BadRequest, "arguments may not contain tabs or newlines"));
        }
        let mut stream = tokio::time::timeout(ANSWER_TIMEOUT, UnixStream::connect(&self.socket))
            .await
            .map_err(|_| unavailable("cairn-init", "its socket did not accept in time"))?
            .map_err(|e| unavailable(&format!("cairn-init at {}", self.socket.display()), e))?;
        stream.write_all(format!("{}\n", words.join("\t")).as_bytes()).await.map_err(|e| unavailable("cairn-init", e))?;
        let mut reader = BufReader::new(stream);
        let mut first = String::new();
        tokio::time::timeout(ANSWER_TIMEOUT, (&mut reader).take(4096).read_line(&mut first))
            .await
            .map_err(|_| unavailable("cairn-init", "no answer in time"))?
            .map_err(|e| unavailable("cairn-init", e))?;
        let first = first.trim_end();
        if let Some(err) = first.strip_prefix("error: ") {
            let kind = if err.starts_with("no service named") { Kind::NotFound } else { Kind::Refused };
            return Err(ApiError::new(kind, err));
        }
        if first != "ok" {
            return Err(unavailable("cairn-init", format!("unexpected answer {first:?}")));
        }
        Ok(reader)
    }

    /// One request; the whole answer's text.
    pub async fn control(&self, words: &[&str]) -> ApiResult<String> {
        let reader = self.ask(words).await?;
        let mut text = String::new();
        tokio::time::timeout(ANSWER_TIMEOUT, reader.take(MAX_ANSWER).read_to_string(&mut text))
            .await
            .map_err(|_| unavailable("cairn-init", "the answer did not end in time"))?
            .map_err(|e| unavailable("cairn-init", e))?;
        Ok(text)
    }

    /// A followed log: lines as they come, until the client or init goes.
    pub async fn follow(&self, name: &str) -> ApiResult<mpsc::Receiver<Bytes>> {
        let mut reader = self.ask(&["logs-follow", name]).await?;
        let (tx, rx) = mpsc::channel(16);
        tokio::spawn(async move {
            let mut line = Vec::new();
            loop {
                line.clear();
                match (&mut reader).take(64 * 1024).read_until(b'\n', &mut line).await {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {
                        if tx.send(Bytes::copy_from_slice(&line)).await.is_err() {
                            break;
                        }
                    }
                }
            }
        });
        Ok(rx)
    }

    /// Runs `cairnctl ARGS`, bounded; its output, and whether it succeeded.
    pub async fn cairnctl(&self, args: &[&str], stdin: Option<&[u8]>) -> ApiResult<(bool, String)> {
        let mut cmd = tokio::process::Command::new(&self.cairnctl);
        cmd.args(args)
            .stdin(if stdin.is_some() { std::process::Stdio::piped() } else { std::process::Stdio::null() })
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true);
        let mut child = cmd.spawn().map_err(|e| unavailable(&format!("{}", self.cairnctl.display()), e))?;
        if let (Some(input), Some(mut pipe)) = (stdin, child.stdin.take()) {
            pipe.write_all(input).await.map_err(|e| unavailable("cairnctl", e))?;
        }
        let out = tokio::time::timeout(CAIRNCTL_TIMEOUT, child.wait_with_output())
            .await
            .map_err(|_| unavailable("cairnctl", format!("did not finish in {} s", CAIRNCTL_TIMEOUT.as_secs())))?
            .map_err(|e| unavailable("cairnctl", e))?;
        let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
        text.push_str(&String::from_utf8_lossy(&out.stderr));
        Ok((out.status.success(), text))
    }
}

/// One row of `list`: the columns cairn-init prints, by name.
#[derive(Debug, Clone, serde::Serialize, PartialEq, Eq)]
pub struct Service {
    pub name: String,
    pub state: String,
    pub pid: Option<u32>,
    pub restarts: u64,
    pub uptime_s: Option<u64>,
    pub health: String,
}

/// Reads cairn-init's `list` table: fixed columns (see its list_table).
pub fn parse_list(text: &str) -> Vec<Service> {
    let mut lines = text.lines();
    let Some(header) = lines.next() else { return Vec::new() };
    let col = |name: &str| header.find(name);
    let (Some(state), Some(health)) = (col("STATE"), col("HEALTH")) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for line in lines {
        let cut = |a: usize, b: usize| line.get(a..b.min(line.len())).unwrap_or("").trim().to_string();
        let name = cut(0, state);
        if name.is_empty() {
            continue;
        }
        // STATE may hold spaces; PID, RESTARTS and UPTIME are right-aligned words.
        let middle = cut(state, health);
        let words: Vec<&str> = middle.split_whitespace().collect();
        let n = words.len();
        if n < 4 {
            continue;
        }
        out.push(Service {
            name,
            state: words[..n - 3].join(" "),
            pid: words[n - 3].parse().ok(),
            restarts: words[n - 2].parse().unwrap_or(0),
            uptime_s: words[n - 1].trim_end_matches('s').parse().ok(),
            health: line.get(health..).unwrap_or("").trim().to_string(),
        });
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn the_list_table_reads_back() {
        let text = format!(
            "{:<16} {:<22} {:>7} {:>8} {:>9}  {}\n{:<16} {:<22} {:>7} {:>8} {:>9}  {}\n{:<16} {:<22} {:>7} {:>8} {:>9}  {}\n",
            "NAME", "STATE", "PID", "RESTARTS", "UPTIME", "HEALTH",
            "chrony", "running", 312, 0, "42s", "healthy",
            "web", "backing off (4s)", "-", 3, "-", "unhealthy: exit 1"
        );
        let rows = parse_list(&text);
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0], Service { name: "chrony".into(), state: "running".into(), pid: Some(312), restarts: 0, uptime_s: Some(42), health: "healthy".into() });
        assert_eq!(rows[1].state, "backing off (4s)");
        assert_eq!(rows[1].pid, None);
        assert_eq!(rows[1].restarts, 3);
        assert_eq!(rows[1].health, "unhealthy: exit 1");
    }
}
