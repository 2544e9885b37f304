//! Running programs: one-shot commands with their output, and daemons (registry, containerd)
//! in their own session so a whole group can be signalled, with `PR_SET_PDEATHSIG=SIGKILL`.
//!
//! The kernel sends the death signal when the *thread* that forked the child exits, so
//! daemons are forked from one long-lived spawner thread rather than from whichever
//! (possibly short-lived) thread called `NodeRuntime::start`.
//!
//! The daemon mechanics are `supervise`'s, shared with `cluster-local`; one-shot commands,
//! pid identity and the search of /proc for our shims are this crate's own.

use std::{
    ffi::OsStr,
    fs,
    path::PathBuf,
    process::{Command, Stdio},
};

pub use supervise::{log_tail, running, signal, terminate};

use crate::Error;

/// Runs a program to completion; its stdout on success, else [`Error::Command`].
pub fn run<I, S>(program: &str, args: I) -> Result<String, Error>
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let args: Vec<_> = args.into_iter().map(|a| a.as_ref().to_owned()).collect();
    let output = Command::new(program)
        .args(&args)
        .stdin(Stdio::null())
        .output()
        .map_err(|source| Error::Spawn {
            program: program.to_string(),
            source,
        })?;
    if output.status.success() {
        return Ok(String::from_utf8_lossy(&output.stdout).into_owned());
    }
    let rendered = std::iter::once(program.to_string())
        .chain(args.iter().map(|a| a.to_string_lossy().into_owned()))
        .collect::<Vec<_>>()
        .join(" ");
    Err(Error::Command {
        command: rendered,
        status: output.status.to_string(),
        stderr: String::from_utf8_lossy(&output.stderr).trim().to_string(),
    })
}

/// Like [`run`], for teardown: failures are expected (the thing may already be gone) and
/// only matter as a best effort, so they are returned as text rather than an error.
pub fn run_quiet(program: &str, args: &[&str]) -> Result<String, String> {
    run(program, args).map_err(|e| e.to_string())
}

/// A daemon to start.
#[derive(Debug)]
pub struct Launch {
    pub program: PathBuf,
    pub args: Vec<String>,
    pub log: PathBuf,
    pub cwd: PathBuf,
}

/// Starts a daemon that dies with us; returns its pid, which is also its process group and
/// session id.
pub fn spawn(launch: Launch) -> Result<u32, Error> {
    let program = launch.program.display().to_string();
    supervise::spawn(supervise::Launch {
        program: launch.program,
        args: launch.args,
        log: launch.log,
        cwd: launch.cwd,
        die_with_parent: true,
    })
    .map_err(|source| Error::Spawn { program, source })
}

/// The start time of `pid` in clock ticks since boot (field 22 of /proc/PID/stat): with the
/// pid it names a process uniquely, so a recorded owner is not confused with a reused pid.
pub fn start_time(pid: u32) -> Option<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, rest) = stat.rsplit_once(')')?;
    // rest starts at field 3 (state); field 22 is index 19 here.
    rest.split_whitespace().nth(19)?.parse().ok()
}

/// Pids of every process whose command line mentions `needle` (e.g. our containerd socket:
/// the shims containerd starts name it, and they outlive containerd by design).
pub fn pids_mentioning(needle: &str) -> Vec<u32> {
    let me = std::process::id();
    let mut pids = Vec::new();
    let Ok(entries) = fs::read_dir("/proc") else {
        return pids;
    };
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        if pid == me {
            continue;
        }
        if let Ok(cmdline) = fs::read(format!("/proc/{pid}/cmdline")) {
            if String::from_utf8_lossy(&cmdline).contains(needle) {
                pids.push(pid);
            }
        }
    }
    pids
}

/// Whether this process runs as root.
pub fn is_root() -> bool {
    // SAFETY: plain syscall.
    unsafe { libc::geteuid() == 0 }
}
