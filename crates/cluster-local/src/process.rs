//! Component processes: spawned in their own session (so a terminal's Ctrl-C or hang-up
//! reaches us, not them, and a whole group can be signalled), torn down by process group.
//!
//! An owned cluster's processes also get `PR_SET_PDEATHSIG=SIGKILL`, so even a SIGKILL of the
//! test or xtask process cannot leave them running. The kernel sends that signal when the
//! *thread* that forked them exits, so they are forked from one long-lived spawner thread
//! rather than from whichever (possibly short-lived) runtime thread called `start`.
//!
//! The mechanics are `supervise`'s, shared with `node-local`; what is this crate's own is the
//! choice of [`Lifetime`], checking a recorded pid's [`executable`], and redacting logs.

use std::{
    io,
    path::{Path, PathBuf},
};

pub use supervise::{state, terminate, State};

/// How a component's processes relate to ours.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lifetime {
    /// Killed when the owning process dies, however it dies.
    Owned,
    /// Survive our exit (for `cargo xtask cluster up`); stopped from the recorded pids.
    Detachable,
}

/// What to run.
#[derive(Debug)]
pub struct Launch {
    pub program: PathBuf,
    pub args: Vec<String>,
    pub log: PathBuf,
    pub cwd: PathBuf,
    pub lifetime: Lifetime,
}

/// Starts a component; returns its pid (which is also its process group and session id).
pub fn spawn(launch: Launch) -> io::Result<u32> {
    supervise::spawn(supervise::Launch {
        program: launch.program,
        args: launch.args,
        log: launch.log,
        cwd: launch.cwd,
        die_with_parent: launch.lifetime == Lifetime::Owned,
    })
}

/// The executable a pid runs, to make sure a recorded pid was not reused by something else.
pub fn executable(pid: u32) -> Option<PathBuf> {
    std::fs::read_link(format!("/proc/{pid}/exe")).ok()
}

/// The last `lines` lines of a log, tokens shortened: component logs end up in errors and
/// reports, which never carry a whole ServiceAccount token.
pub fn log_tail(log: &Path, lines: usize) -> String {
    redact_tokens(&supervise::log_tail(log, lines))
}

/// Shortens anything shaped like a JWT (`eyJ` + base64url, 20+ characters) to its first 13
/// characters and `...`: the project never prints a whole ServiceAccount token.
pub fn redact_tokens(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("eyJ") {
        out.push_str(&rest[..start]);
        let candidate = &rest[start..];
        let len = candidate
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.'))
            .unwrap_or(candidate.len());
        if len >= 20 {
            out.push_str(&candidate[..13]);
            out.push_str("...");
        } else {
            out.push_str(&candidate[..len]);
        }
        rest = &candidate[len..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::*;

    #[test]
    fn shortens_tokens_and_leaves_the_rest() {
        let token = format!("eyJhbGciOiJSUzI1NiIsImtpZCI6{}.x.y", "A".repeat(200));
        let text = format!("token: {token} done, eyJshort stays");
        assert_eq!(
            redact_tokens(&text),
            "token: eyJhbGciOiJSU... done, eyJshort stays"
        );
    }

    #[test]
    fn spawns_in_its_own_session_and_terminates() {
        let dir = tempfile::tempdir().unwrap();
        let pid = spawn(Launch {
            program: "/bin/sleep".into(),
            args: vec!["60".into()],
            log: dir.path().join("sleep.log"),
            cwd: dir.path().into(),
            lifetime: Lifetime::Owned,
        })
        .unwrap();
        assert_eq!(state(pid), State::Running);
        // SAFETY: plain syscall.
        let sid = unsafe { libc::getsid(pid as libc::pid_t) };
        assert_eq!(sid, pid as libc::pid_t, "not a session leader");
        terminate(&[pid], Duration::from_secs(5));
        assert_ne!(state(pid), State::Running);
    }

    #[test]
    fn reports_the_exit_code_of_a_failed_component() {
        let dir = tempfile::tempdir().unwrap();
        let pid = spawn(Launch {
            program: "/bin/sh".into(),
            args: vec!["-c".into(), "echo boom >&2; exit 3".into()],
            log: dir.path().join("fail.log"),
            cwd: dir.path().into(),
            lifetime: Lifetime::Owned,
        })
        .unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        let exited = loop {
            match state(pid) {
                State::Exited(how) => break how,
                State::Running if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20))
                }
                State::Running => panic!("still running"),
            }
        };
        assert_eq!(exited.as_deref(), Some("exit code 3"));
        assert_eq!(log_tail(&dir.path().join("fail.log"), 5), "boom");
    }
}
