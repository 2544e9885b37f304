//! Component processes: spawned in their own session (so a terminal's Ctrl-C or hang-up
//! reaches us, not them, and a whole group can be signalled), torn down by process group.
//!
//! An owned cluster's processes also get `PR_SET_PDEATHSIG=SIGKILL`, so even a SIGKILL of the
//! test or xtask process cannot leave them running. The kernel sends that signal when the
//! *thread* that forked them exits, so they are forked from one long-lived spawner thread
//! rather than from whichever (possibly short-lived) runtime thread called `start`.

use std::{
    fs,
    io::{self, Read, Seek, SeekFrom},
    os::unix::process::CommandExt,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::{mpsc, Mutex, OnceLock},
    time::{Duration, Instant},
};

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

type Reply = mpsc::Sender<io::Result<u32>>;

/// The spawner thread's inbox; the thread lives as long as the process.
fn spawner() -> &'static Mutex<mpsc::Sender<(Launch, Reply)>> {
    static SPAWNER: OnceLock<Mutex<mpsc::Sender<(Launch, Reply)>>> = OnceLock::new();
    SPAWNER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<(Launch, Reply)>();
        std::thread::Builder::new()
            .name("cluster-local-spawner".into())
            .spawn(move || {
                for (launch, reply) in rx {
                    let _ = reply.send(spawn_here(&launch));
                }
            })
            .expect("cannot start the spawner thread");
        Mutex::new(tx)
    })
}

/// Starts a component; returns its pid (which is also its process group and session id).
pub fn spawn(launch: Launch) -> io::Result<u32> {
    let (tx, rx) = mpsc::channel();
    spawner()
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .send((launch, tx))
        .map_err(|_| io::Error::other("the spawner thread is gone"))?;
    rx.recv()
        .map_err(|_| io::Error::other("the spawner thread is gone"))?
}

fn spawn_here(launch: &Launch) -> io::Result<u32> {
    if let Some(dir) = launch.log.parent() {
        fs::create_dir_all(dir)?;
    }
    let log = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&launch.log)?;
    let log_err = log.try_clone()?;
    let mut command = Command::new(&launch.program);
    command
        .args(&launch.args)
        .current_dir(&launch.cwd)
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log_err);
    let owned = launch.lifetime == Lifetime::Owned;
    // SAFETY: the closure runs between fork and exec and only makes async-signal-safe calls
    // (setsid, prctl, getppid, _exit), allocating nothing.
    let parent = std::process::id() as libc::pid_t;
    unsafe {
        command.pre_exec(move || {
            if libc::setsid() == -1 {
                return Err(io::Error::last_os_error());
            }
            if owned {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) == -1 {
                    return Err(io::Error::last_os_error());
                }
                // The parent may have died before prctl took effect.
                if libc::getppid() != parent {
                    libc::_exit(1);
                }
            }
            Ok(())
        });
    }
    // The Child handle is dropped without waiting: its pid is reaped by [`reap`].
    Ok(command.spawn()?.id())
}

/// Whether a pid still runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum State {
    Running,
    /// Exited; the code or signal when we could reap it ourselves.
    Exited(Option<String>),
}

/// Reaps `pid` if it is our child and has exited; else looks at /proc (detached clusters are
/// stopped by another process, which cannot wait for them; a zombie counts as exited).
pub fn state(pid: u32) -> State {
    let mut status: libc::c_int = 0;
    // SAFETY: plain syscall on a pid we started; status is a valid out-pointer.
    let reaped = unsafe { libc::waitpid(pid as libc::pid_t, &mut status, libc::WNOHANG) };
    if reaped == pid as libc::pid_t {
        let how = if libc::WIFEXITED(status) {
            format!("exit code {}", libc::WEXITSTATUS(status))
        } else if libc::WIFSIGNALED(status) {
            format!("signal {}", libc::WTERMSIG(status))
        } else {
            "unknown status".to_string()
        };
        return State::Exited(Some(how));
    }
    if reaped == 0 {
        return State::Running;
    }
    // Not our child (ECHILD): ask /proc.
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => {
            // The state letter follows the parenthesised command name.
            let zombie_or_dead = stat
                .rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().next())
                .is_some_and(|s| s == "Z" || s == "X");
            if zombie_or_dead {
                State::Exited(None)
            } else {
                State::Running
            }
        }
        Err(_) => State::Exited(None),
    }
}

/// The executable a pid runs, to make sure a recorded pid was not reused by something else.
pub fn executable(pid: u32) -> Option<PathBuf> {
    fs::read_link(format!("/proc/{pid}/exe")).ok()
}

/// Stops process groups: SIGTERM, up to `grace` to exit, then SIGKILL; waits until every
/// pid has exited (reaping our own children) so that their ports are free on return.
pub fn terminate(pids: &[u32], grace: Duration) {
    for &pid in pids {
        signal_group(pid, libc::SIGTERM);
    }
    let deadline = Instant::now() + grace;
    let mut killed = false;
    loop {
        let running: Vec<u32> = pids
            .iter()
            .copied()
            .filter(|&pid| state(pid) == State::Running)
            .collect();
        if running.is_empty() {
            return;
        }
        if Instant::now() >= deadline {
            if killed {
                // SIGKILL cannot be ignored; only an uninterruptible sleep delays it.
                if Instant::now() >= deadline + Duration::from_secs(10) {
                    return;
                }
            } else {
                for &pid in &running {
                    signal_group(pid, libc::SIGKILL);
                }
                killed = true;
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn signal_group(pid: u32, signal: libc::c_int) {
    // SAFETY: plain syscalls. Each component leads its own session, so its group id is its
    // pid; the single-pid kill covers a process that somehow left its group.
    unsafe {
        libc::kill(-(pid as libc::pid_t), signal);
        libc::kill(pid as libc::pid_t, signal);
    }
}

/// The last `lines` lines of a log, tokens shortened.
pub fn log_tail(log: &Path, lines: usize) -> String {
    let mut text = String::new();
    if let Ok(mut file) = fs::File::open(log) {
        // Only the end matters; logs can be large.
        let len = file.metadata().map(|m| m.len()).unwrap_or(0);
        let _ = file.seek(SeekFrom::Start(len.saturating_sub(64 * 1024)));
        let mut bytes = Vec::new();
        let _ = file.read_to_end(&mut bytes);
        text = String::from_utf8_lossy(&bytes).into_owned();
    }
    let all: Vec<&str> = text.lines().collect();
    let tail = all[all.len().saturating_sub(lines)..].join("\n");
    redact_tokens(&tail)
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
