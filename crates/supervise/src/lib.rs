//! Daemon processes, shared by `cluster-local` (control-plane and node components) and
//! `node-local` (registry, containerd): spawned in their own session (so a terminal's Ctrl-C or
//! hang-up reaches us, not them, and a whole group can be signalled), watched through
//! `waitpid` and /proc, torn down by process group.
//!
//! A process can also get `PR_SET_PDEATHSIG=SIGKILL`, so even a SIGKILL of the test or xtask
//! process cannot leave it running. The kernel sends that signal when the *thread* that forked
//! it exits, so every process is forked from one long-lived spawner thread rather than from
//! whichever (possibly short-lived) runtime thread asked for it.
//!
//! Errors are plain [`io::Error`]s: each caller wraps them in its own error type, naming the
//! component it was starting.

use std::{
    fs,
    io::{self, Read, Seek, SeekFrom},
    os::unix::process::CommandExt,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::{mpsc, Mutex, OnceLock},
    time::{Duration, Instant},
};

/// What to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Launch {
    /// The program to execute.
    pub program: PathBuf,
    /// Its arguments.
    pub args: Vec<String>,
    /// Where its stdout and stderr go (appended; parent directories are created).
    pub log: PathBuf,
    /// Its working directory.
    pub cwd: PathBuf,
    /// Whether it gets `PR_SET_PDEATHSIG=SIGKILL`, i.e. dies when this process dies, however
    /// this process dies; `false` for processes meant to outlive us.
    pub die_with_parent: bool,
}

type Reply = mpsc::Sender<io::Result<u32>>;

/// The spawner thread's inbox; the thread lives as long as the process.
fn spawner() -> &'static Mutex<mpsc::Sender<(Launch, Reply)>> {
    static SPAWNER: OnceLock<Mutex<mpsc::Sender<(Launch, Reply)>>> = OnceLock::new();
    SPAWNER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<(Launch, Reply)>();
        std::thread::Builder::new()
            .name("supervise-spawner".into())
            .spawn(move || {
                for (launch, reply) in rx {
                    let _ = reply.send(spawn_here(&launch));
                }
            })
            .expect("cannot start the spawner thread");
        Mutex::new(tx)
    })
}

/// Starts a process on the spawner thread; returns its pid, which is also its process group
/// and session id.
pub fn spawn(launch: Launch) -> io::Result<u32> {
    let gone = || io::Error::other("the spawner thread is gone");
    let (tx, rx) = mpsc::channel();
    spawner()
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .send((launch, tx))
        .map_err(|_| gone())?;
    rx.recv().map_err(|_| gone())?
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
    let die_with_parent = launch.die_with_parent;
    let parent = std::process::id() as libc::pid_t;
    // SAFETY: the closure runs between fork and exec and only makes async-signal-safe calls
    // (setsid, prctl, getppid, _exit), allocating nothing.
    unsafe {
        command.pre_exec(move || {
            if libc::setsid() == -1 {
                return Err(io::Error::last_os_error());
            }
            if die_with_parent {
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
    // The Child handle is dropped without waiting: its pid is reaped by [`state`].
    Ok(command.spawn()?.id())
}

/// Whether a pid still runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum State {
    /// Still running (or stopped, but not gone).
    Running,
    /// Exited; the code or signal when we could reap it ourselves.
    Exited(Option<String>),
}

/// Reaps `pid` if it is our child and has exited; else looks at /proc (a process stopped by
/// another process, e.g. a detached cluster's, cannot be waited for; a zombie counts as exited).
pub fn state(pid: u32) -> State {
    let mut status: libc::c_int = 0;
    // SAFETY: plain syscall; status is a valid out-pointer.
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

/// Whether `pid` still runs: [`state`] is [`State::Running`] (reaping it if it is our exited
/// child; a zombie counts as gone).
pub fn running(pid: u32) -> bool {
    state(pid) == State::Running
}

/// Sends `signal` to `pid`'s process group and to `pid` itself.
pub fn signal(pid: u32, signal: libc::c_int) {
    // SAFETY: plain syscalls. A spawned process leads its own session, so its group id is its
    // pid; the single-pid kill covers a process that somehow left its group.
    unsafe {
        libc::kill(-(pid as libc::pid_t), signal);
        libc::kill(pid as libc::pid_t, signal);
    }
}

/// Stops process groups: SIGTERM, up to `grace` to exit, then SIGKILL; waits until every pid
/// has exited (reaping our own children) so that their ports are free on return, or gives up
/// 10 s after the SIGKILL.
pub fn terminate(pids: &[u32], grace: Duration) {
    for &pid in pids {
        signal(pid, libc::SIGTERM);
    }
    let deadline = Instant::now() + grace;
    let mut killed = false;
    loop {
        let left: Vec<u32> = pids.iter().copied().filter(|&p| running(p)).collect();
        if left.is_empty() {
            return;
        }
        if Instant::now() >= deadline {
            if killed {
                // SIGKILL cannot be ignored; only an uninterruptible sleep delays it.
                if Instant::now() >= deadline + Duration::from_secs(10) {
                    return;
                }
            } else {
                for &pid in &left {
                    signal(pid, libc::SIGKILL);
                }
                killed = true;
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The last `lines` lines of a log (empty if it cannot be read).
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
    all[all.len().saturating_sub(lines)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn launch(dir: &Path, program: &str, args: &[&str], die_with_parent: bool) -> Launch {
        Launch {
            program: program.into(),
            args: args.iter().map(|a| a.to_string()).collect(),
            log: dir.join("logs/out.log"),
            cwd: dir.into(),
            die_with_parent,
        }
    }

    fn wait_exited(pid: u32) -> Option<String> {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            match state(pid) {
                State::Exited(how) => return how,
                State::Running if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20))
                }
                State::Running => panic!("pid {pid} still running"),
            }
        }
    }

    #[test]
    fn spawns_sleep_in_its_own_session_and_terminates_it() {
        for die_with_parent in [true, false] {
            let dir = tempfile::tempdir().unwrap();
            let pid = spawn(launch(dir.path(), "sleep", &["60"], die_with_parent)).unwrap();
            assert_eq!(state(pid), State::Running);
            assert!(running(pid));
            // SAFETY: plain syscall.
            let sid = unsafe { libc::getsid(pid as libc::pid_t) };
            assert_eq!(sid, pid as libc::pid_t, "not a session leader");
            terminate(&[pid], Duration::from_secs(5));
            // terminate reaped it, so only /proc is left to say so: gone.
            assert_eq!(state(pid), State::Exited(None));
            assert!(!running(pid));
        }
    }

    #[test]
    fn sigkills_what_ignores_sigterm() {
        let dir = tempfile::tempdir().unwrap();
        let script = "trap '' TERM; echo ready; while :; do sleep 0.05; done";
        let pid = spawn(launch(dir.path(), "sh", &["-c", script], true)).unwrap();
        let log = dir.path().join("logs/out.log");
        let deadline = Instant::now() + Duration::from_secs(5);
        while log_tail(&log, 1) != "ready" {
            assert!(Instant::now() < deadline, "the script never got ready");
            std::thread::sleep(Duration::from_millis(20));
        }
        let started = Instant::now();
        terminate(&[pid], Duration::from_millis(200));
        assert!(!running(pid));
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    #[test]
    fn reports_the_exit_code_and_keeps_the_output() {
        let dir = tempfile::tempdir().unwrap();
        let pid = spawn(launch(
            dir.path(),
            "sh",
            &["-c", "echo one; echo two >&2; exit 3"],
            true,
        ))
        .unwrap();
        assert_eq!(wait_exited(pid).as_deref(), Some("exit code 3"));
        assert_eq!(log_tail(&dir.path().join("logs/out.log"), 5), "one\ntwo");
    }

    #[test]
    fn reports_the_signal_that_ended_a_process() {
        let dir = tempfile::tempdir().unwrap();
        let pid = spawn(launch(dir.path(), "sleep", &["60"], true)).unwrap();
        signal(pid, libc::SIGKILL);
        assert_eq!(
            wait_exited(pid).as_deref(),
            Some(format!("signal {}", libc::SIGKILL).as_str())
        );
    }

    #[test]
    fn a_missing_program_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let err = spawn(launch(dir.path(), "/nonexistent/program", &[], true)).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
    }

    #[test]
    fn log_tail_keeps_the_last_lines_of_the_end_of_a_large_log() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("big.log");
        let text: String = (0..20_000).map(|i| format!("line {i}\n")).collect();
        fs::write(&log, text).unwrap();
        assert_eq!(log_tail(&log, 3), "line 19997\nline 19998\nline 19999");
        assert_eq!(log_tail(&log, 0), "");
        assert_eq!(log_tail(&dir.path().join("missing.log"), 3), "");
    }

    #[test]
    fn an_unknown_pid_is_exited() {
        // Above the kernel's pid_max limit (4194304), so never a real process.
        assert_eq!(state(99_999_999), State::Exited(None));
    }
}
