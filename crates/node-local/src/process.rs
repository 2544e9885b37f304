//! Running programs: one-shot commands with their output, and daemons (registry, containerd)
//! in their own session so a whole group can be signalled, with `PR_SET_PDEATHSIG=SIGKILL`.
//!
//! The kernel sends the death signal when the *thread* that forked the child exits, so
//! daemons are forked from one long-lived spawner thread rather than from whichever
//! (possibly short-lived) thread called `NodeRuntime::start`.

use std::{
    ffi::OsStr,
    fs,
    io::{self, Read, Seek, SeekFrom},
    os::unix::process::CommandExt,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::{mpsc, Mutex, OnceLock},
    time::{Duration, Instant},
};

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

type Reply = mpsc::Sender<io::Result<u32>>;

fn spawner() -> &'static Mutex<mpsc::Sender<(Launch, Reply)>> {
    static SPAWNER: OnceLock<Mutex<mpsc::Sender<(Launch, Reply)>>> = OnceLock::new();
    SPAWNER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<(Launch, Reply)>();
        std::thread::Builder::new()
            .name("node-local-spawner".into())
            .spawn(move || {
                for (launch, reply) in rx {
                    let _ = reply.send(spawn_here(&launch));
                }
            })
            .expect("cannot start the spawner thread");
        Mutex::new(tx)
    })
}

/// Starts a daemon; returns its pid, which is also its process group and session id.
pub fn spawn(launch: Launch) -> Result<u32, Error> {
    let program = launch.program.display().to_string();
    let (tx, rx) = mpsc::channel();
    let gone = || io::Error::other("the spawner thread is gone");
    spawner()
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .send((launch, tx))
        .map_err(|_| gone())
        .and_then(|()| rx.recv().map_err(|_| gone())?)
        .map_err(|source| Error::Spawn { program, source })
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
    let parent = std::process::id() as libc::pid_t;
    // SAFETY: the closure runs between fork and exec and only makes async-signal-safe calls
    // (setsid, prctl, getppid, _exit), allocating nothing.
    unsafe {
        command.pre_exec(move || {
            if libc::setsid() == -1 {
                return Err(io::Error::last_os_error());
            }
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) == -1 {
                return Err(io::Error::last_os_error());
            }
            // The parent may have died before prctl took effect.
            if libc::getppid() != parent {
                libc::_exit(1);
            }
            Ok(())
        });
    }
    // The Child handle is dropped without waiting: the pid is reaped by [`running`].
    Ok(command.spawn()?.id())
}

/// Whether `pid` still runs (reaping it if it is our exited child; a zombie counts as gone).
pub fn running(pid: u32) -> bool {
    let mut status: libc::c_int = 0;
    // SAFETY: plain syscall; status is a valid out-pointer.
    let reaped = unsafe { libc::waitpid(pid as libc::pid_t, &mut status, libc::WNOHANG) };
    if reaped == pid as libc::pid_t {
        return false;
    }
    if reaped == 0 {
        return true;
    }
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|s| s == "Z" || s == "X"),
        Err(_) => false,
    }
}

/// The start time of `pid` in clock ticks since boot (field 22 of /proc/PID/stat): with the
/// pid it names a process uniquely, so a recorded owner is not confused with a reused pid.
pub fn start_time(pid: u32) -> Option<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, rest) = stat.rsplit_once(')')?;
    // rest starts at field 3 (state); field 22 is index 19 here.
    rest.split_whitespace().nth(19)?.parse().ok()
}

/// Sends `signal` to `pid` and its process group.
pub fn signal(pid: u32, signal: libc::c_int) {
    // SAFETY: plain syscalls; a daemon leads its own session, so its group id is its pid.
    unsafe {
        libc::kill(-(pid as libc::pid_t), signal);
        libc::kill(pid as libc::pid_t, signal);
    }
}

/// SIGTERM, up to `grace` to exit, then SIGKILL; returns once all are gone (or 10 s later).
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
            if killed && Instant::now() >= deadline + Duration::from_secs(10) {
                return;
            }
            if !killed {
                left.iter().for_each(|&p| signal(p, libc::SIGKILL));
                killed = true;
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
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

/// The last `lines` lines of a log.
pub fn log_tail(log: &Path, lines: usize) -> String {
    let mut text = String::new();
    if let Ok(mut file) = fs::File::open(log) {
        let len = file.metadata().map(|m| m.len()).unwrap_or(0);
        let _ = file.seek(SeekFrom::Start(len.saturating_sub(64 * 1024)));
        let mut bytes = Vec::new();
        let _ = file.read_to_end(&mut bytes);
        text = String::from_utf8_lossy(&bytes).into_owned();
    }
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Whether this process runs as root.
pub fn is_root() -> bool {
    // SAFETY: plain syscall.
    unsafe { libc::geteuid() == 0 }
}
