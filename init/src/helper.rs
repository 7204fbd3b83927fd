//! Running one of PID 1's helper programs (the config loader, the service
//! loader) and taking its answer from stdout: bounded in time and size, with
//! the watchdog petted while it runs.

use std::io::Read;
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

/// The most PID 1 reads of a helper's answer.
const MAX_ANSWER: usize = 64 * 1024;

/// The helper's stdout, waited for at most `limit`; killed past it. `pet`
/// runs at least once a second meanwhile (the watchdog). The helper's
/// stderr goes to PID 1's (the console).
///
/// It waits for this one pid: at boot the reaper is not running yet, and
/// later the reaper runs only in this thread, between turns of the loop.
pub fn run(prog: &str, args: &[&str], limit: Duration, pet: &mut dyn FnMut()) -> Result<String, String> {
    let mut child = crate::sys::command(prog)
        .args(args)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::inherit())
        .spawn()
        .map_err(|e| format!("cannot run {prog}: {e}"))?;
    let Some(mut out) = child.stdout.take() else {
        let _ = child.kill();
        let _ = child.wait();
        return Err(format!("no pipe from {prog}"));
    };
    let deadline = Instant::now() + limit;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let outcome = loop {
        pet();
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break Err(format!("{prog} did not answer within {} s", limit.as_secs()));
        }
        match crate::sys::poll_readable(&[out.as_raw_fd()], Some(left.min(Duration::from_secs(1)))) {
            Ok(r) if r.first() == Some(&true) => match out.read(&mut chunk) {
                Ok(0) => break Ok(()),
                Ok(n) if buf.len() + n <= MAX_ANSWER => buf.extend_from_slice(&chunk[..n]),
                Ok(_) => break Err(format!("{prog}'s answer is larger than {MAX_ANSWER} bytes")),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => break Err(format!("reading {prog}'s answer: {e}")),
            },
            Ok(_) => {}
            Err(e) => break Err(format!("waiting for {prog}: {e}")),
        }
    };
    if outcome.is_err() {
        let _ = child.kill();
    }
    // It closed its stdout (or was killed): its exit is at most moments away.
    let status = child.wait().map_err(|e| format!("waiting for {prog}: {e}"))?;
    outcome?;
    if !status.success() {
        return Err(format!("{prog} failed ({status})"));
    }
    String::from_utf8(buf).map_err(|_| format!("{prog}'s answer is not UTF-8"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_taken_and_a_helper_that_hangs_is_killed() {
        let mut pets = 0;
        assert_eq!(run("/bin/sh", &["-c", "echo hi"], Duration::from_secs(5), &mut || pets += 1).unwrap(), "hi\n");
        assert!(pets >= 1);
        let e = run("/bin/sh", &["-c", "exec sleep 30"], Duration::from_secs(1), &mut || {}).unwrap_err();
        assert!(e.contains("did not answer within 1 s"), "{e}");
        let e = run("/bin/sh", &["-c", "exit 3"], Duration::from_secs(5), &mut || {}).unwrap_err();
        assert!(e.contains("failed"), "{e}");
        assert!(run("/nonexistent/helper", &[], Duration::from_secs(1), &mut || {}).unwrap_err().contains("cannot run"));
    }
}
