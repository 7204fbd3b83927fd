//! Running the format tools (qemu-img, zstd, bmaptool, tar, gzip).

use anyhow::{bail, Context, Result};
use std::path::Path;
use std::process::{Command, Stdio};

/// Variables through which a user's environment would change the tools'
/// output bytes (default options, compression level, threads).
const OUTPUT_CHANGING_ENV: &[&str] = &["TAR_OPTIONS", "GZIP", "ZSTD_CLEVEL", "ZSTD_NBTHREADS"];

fn clean(cmd: &mut Command) -> &mut Command {
    for v in OUTPUT_CHANGING_ENV {
        cmd.env_remove(v);
    }
    cmd.stdin(Stdio::null())
}

fn failed(what: &str, status: std::process::ExitStatus, stderr: &[u8]) -> anyhow::Error {
    anyhow::anyhow!("{what} failed ({status}): {}", String::from_utf8_lossy(stderr).trim())
}

/// Runs a tool to the end; its error output goes into the error.
pub fn run(cmd: &mut Command, what: &str) -> Result<()> {
    let out = clean(cmd).output().with_context(|| format!("Cannot run {what}"))?;
    if !out.status.success() {
        return Err(failed(what, out.status, &out.stderr));
    }
    Ok(())
}

/// Runs `producer` with its output through `gzip -n` (no name, no time
/// stamp) into `out`.
pub fn pipe_to_gzip(mut producer: Command, out: &Path) -> Result<()> {
    let file = std::fs::File::create(out).with_context(|| format!("Cannot create {}", out.display()))?;
    let mut p = clean(&mut producer).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().context("Cannot run tar")?;
    let Some(stdout) = p.stdout.take() else { bail!("tar has no output pipe") };
    let gz = clean(Command::new("gzip").args(["-n", "-6", "-c"]))
        .stdin(stdout)
        .stdout(file)
        .stderr(Stdio::piped())
        .spawn()
        .context("Cannot run gzip")?;
    let gz = gz.wait_with_output().context("Cannot wait for gzip")?;
    let p = p.wait_with_output().context("Cannot wait for tar")?;
    if !p.status.success() {
        return Err(failed("tar", p.status, &p.stderr));
    }
    if !gz.status.success() {
        return Err(failed("gzip", gz.status, &gz.stderr));
    }
    Ok(())
}
