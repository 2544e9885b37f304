//! Create every cluster, run the suites, export logs, delete: also on failure and on Ctrl-C.
//!
//! This is kind's `hack/ci/e2e-k8s.sh` in Rust: one idempotent cleanup that exports logs first,
//! run at the end whatever happened and from the signal handler, and the first failure's exit
//! code returned after it. It knows clusters only through the [`Cluster`] trait, so any provider
//! can use it.

use std::{
    os::unix::process::CommandExt,
    panic::AssertUnwindSafe,
    path::{Path, PathBuf},
    process::{Command, ExitStatus},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex, MutexGuard, OnceLock, PoisonError,
    },
};

use crate::ClusterInfo;

/// The error a [`Cluster`] reports; the lifecycle only prints it.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The exit code after an interrupt: 128 + SIGINT, as a shell would report it.
pub const INTERRUPTED: i32 = 130;

/// What the lifecycle needs from a cluster provider.
pub trait Cluster: Send + 'static {
    /// A short name for messages and the cluster's log folder.
    fn name(&self) -> String;
    /// Brings the cluster up and waits until it is usable.
    fn start(&mut self) -> Result<(), BoxError>;
    /// What the suites need to know about it.
    fn info(&self) -> ClusterInfo;
    /// Writes the cluster's logs under `dir`.
    fn export_logs(&mut self, dir: &Path) -> Result<(), BoxError>;
    /// Tears the cluster down; also called after a failed or interrupted [`Cluster::start`].
    fn delete(&mut self) -> Result<(), BoxError>;
    /// Leaves the cluster running, even when its handle is dropped.
    fn keep(&mut self);
    /// The command that deletes the cluster by hand, for `--keep` and failed deletes.
    fn how_to_delete(&self) -> String;
}

/// So callers can hand the lifecycle clusters of several providers at once.
impl<C: Cluster + ?Sized> Cluster for Box<C> {
    fn name(&self) -> String {
        (**self).name()
    }
    fn start(&mut self) -> Result<(), BoxError> {
        (**self).start()
    }
    fn info(&self) -> ClusterInfo {
        (**self).info()
    }
    fn export_logs(&mut self, dir: &Path) -> Result<(), BoxError> {
        (**self).export_logs(dir)
    }
    fn delete(&mut self) -> Result<(), BoxError> {
        (**self).delete()
    }
    fn keep(&mut self) {
        (**self).keep()
    }
    fn how_to_delete(&self) -> String {
        (**self).how_to_delete()
    }
}

/// How the run ends up.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Each cluster's logs go to `<logs_dir>/<cluster name>`, e.g. `target/e2e-report/cluster-logs`.
    pub logs_dir: PathBuf,
    /// Leave the clusters running at the end (their logs are still exported).
    pub keep: bool,
}

/// The folder of the report dir that holds the clusters' logs; `.github/workflows/e2e.yml`
/// uploads it as its own artifact.
pub const LOGS_DIR: &str = "cluster-logs";

impl RunOptions {
    /// Logs in `<report_dir>/cluster-logs/<cluster name>`, where the e2e workflow uploads them from.
    pub fn new(report_dir: &Path, keep: bool) -> Self {
        Self {
            logs_dir: report_dir.join(LOGS_DIR),
            keep,
        }
    }
}

/// The part of the run a failure happened in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Bringing a cluster up.
    Create,
    /// The suites.
    Suites,
    /// Ctrl-C, SIGTERM or SIGHUP (or [`Interrupt::fire`]).
    Interrupted,
    /// Deleting a cluster: it may still be running.
    Delete,
}

/// One thing that went wrong, with the exit code it stands for.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct Failure {
    /// Where it happened.
    pub phase: Phase,
    /// The process exit code it stands for; never 0.
    pub code: i32,
    /// What happened, for the user.
    pub message: String,
}

impl Failure {
    /// The suites failed with this exit code (a 0 is taken as 1: a failure is never a success).
    pub fn suites(code: i32, message: impl Into<String>) -> Self {
        Self::new(Phase::Suites, code, message)
    }

    fn new(phase: Phase, code: i32, message: impl Into<String>) -> Self {
        Self {
            phase,
            code: if code == 0 { 1 } else { code },
            message: message.into(),
        }
    }
}

/// What a run did.
#[derive(Debug, Clone, Default)]
pub struct Outcome {
    /// Every failure, in the order they happened.
    pub failures: Vec<Failure>,
    /// Problems that do not fail the run, such as logs that could not be exported.
    pub warnings: Vec<String>,
    /// The clusters the suites were given.
    pub clusters: Vec<ClusterInfo>,
}

impl Outcome {
    /// The first failure's exit code, or 0.
    pub fn exit_code(&self) -> i32 {
        self.failures.first().map_or(0, |failure| failure.code)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// Not started: nothing to clean.
    Pending,
    /// `start` was called and failed or was cut short: delete, there are no useful logs.
    Broken,
    /// Up: export logs, then delete.
    Up,
    /// Cleaned up (or kept) already.
    Done,
}

struct Entry {
    cluster: Box<dyn Cluster>,
    stage: Stage,
}

struct Shared {
    entries: Vec<Mutex<Entry>>,
    opts: RunOptions,
    interrupted: AtomicBool,
    outcome: Mutex<Outcome>,
}

/// Triggers the run's cleanup from elsewhere: what the signal handler calls.
#[derive(Clone)]
pub struct Interrupt(Arc<Shared>);

impl Interrupt {
    /// Records the interrupt, stops further clusters from being created and runs the cleanup
    /// (logs, then delete unless kept), waiting for a `start` in progress to return first.
    /// Safe to call more than once and from any thread.
    pub fn fire(&self) {
        if !self.0.interrupted.swap(true, Ordering::SeqCst) {
            eprintln!("clusters: interrupted, cleaning up");
            self.0.fail(Failure::new(
                Phase::Interrupted,
                INTERRUPTED,
                "interrupted before the run finished",
            ));
        }
        // The suites first: they must not go on against clusters being deleted, nor outlive us.
        suite_process::stop();
        self.0.cleanup();
    }

    /// Whether [`Interrupt::fire`] was called: long suites may check it to stop early.
    pub fn fired(&self) -> bool {
        self.0.interrupted.load(Ordering::SeqCst)
    }
}

/// Runs the whole lifecycle, with Ctrl-C, SIGTERM and SIGHUP running the same cleanup and then
/// exiting with code 130 (the suites may be blocked in a child process, so the process cannot
/// wait for them to return).
pub fn run<C: Cluster>(
    clusters: impl IntoIterator<Item = C>,
    opts: &RunOptions,
    suites: impl FnOnce(&[ClusterInfo]) -> Result<(), Failure>,
) -> Outcome {
    let outcome = run_with(clusters, opts, ctrl_c::arm, suites);
    ctrl_c::disarm();
    outcome
}

/// [`run`], with `on_ready` given the [`Interrupt`] instead of a signal handler: for tests, and
/// for callers that handle signals themselves.
pub fn run_with<C: Cluster>(
    clusters: impl IntoIterator<Item = C>,
    opts: &RunOptions,
    on_ready: impl FnOnce(Interrupt),
    suites: impl FnOnce(&[ClusterInfo]) -> Result<(), Failure>,
) -> Outcome {
    let shared = Arc::new(Shared {
        entries: clusters
            .into_iter()
            .map(|cluster| {
                Mutex::new(Entry {
                    cluster: Box::new(cluster),
                    stage: Stage::Pending,
                })
            })
            .collect(),
        opts: opts.clone(),
        interrupted: AtomicBool::new(false),
        outcome: Mutex::new(Outcome::default()),
    });
    // Armed before the first cluster starts, so an interrupt during `kind create` cleans up too.
    on_ready(Interrupt(shared.clone()));

    let mut infos = Vec::new();
    for entry in &shared.entries {
        if shared.interrupted.load(Ordering::SeqCst) {
            break;
        }
        let mut entry = lock(entry);
        let name = entry.cluster.name();
        eprintln!("clusters: creating {name}");
        // Marked before starting: a start cut short leaves something to delete.
        entry.stage = Stage::Broken;
        match entry.cluster.start() {
            Ok(()) => {
                entry.stage = Stage::Up;
                infos.push(entry.cluster.info());
            }
            Err(err) => {
                shared.fail(Failure::new(
                    Phase::Create,
                    1,
                    format!("creating {name} failed: {}", chain(&*err)),
                ));
                break;
            }
        }
    }

    let created_all = infos.len() == shared.entries.len();
    if created_all && !shared.interrupted.load(Ordering::SeqCst) {
        match infos.len() {
            1 => eprintln!(
                "clusters: {} is up, running the suites",
                infos[0].kubernetes
            ),
            n => eprintln!("clusters: all {n} are up, running the suites"),
        }
        // A panicking suite must not skip the cleanup; 101 is what a Rust panic exits with.
        match std::panic::catch_unwind(AssertUnwindSafe(|| suites(&infos))) {
            Ok(Ok(())) => {}
            Ok(Err(failure)) => {
                shared.fail(Failure::new(Phase::Suites, failure.code, failure.message))
            }
            Err(_) => shared.fail(Failure::new(Phase::Suites, 101, "the suites panicked")),
        }
    }

    shared.cleanup();
    let mut outcome = std::mem::take(&mut *lock(&shared.outcome));
    outcome.clusters = infos;
    outcome
}

impl Shared {
    fn fail(&self, failure: Failure) {
        eprintln!("clusters: {failure}");
        lock(&self.outcome).failures.push(failure);
    }

    fn warn(&self, warning: String) {
        eprintln!("clusters: warning: {warning}");
        lock(&self.outcome).warnings.push(warning);
    }

    /// Idempotent: each cluster is cleaned once, by whichever caller (the run's end or the
    /// signal handler) locks it first; the other waits for it, so both return with all done.
    fn cleanup(&self) {
        for entry in &self.entries {
            let mut entry = lock(entry);
            let stage = entry.stage;
            if matches!(stage, Stage::Pending | Stage::Done) {
                continue;
            }
            let name = entry.cluster.name();
            if stage == Stage::Up {
                let dir = self.opts.logs_dir.join(&name);
                eprintln!("clusters: exporting {name}'s logs to {}", dir.display());
                if let Err(err) = entry.cluster.export_logs(&dir) {
                    self.warn(format!("exporting {name}'s logs failed: {}", chain(&*err)));
                }
            }
            if self.opts.keep {
                entry.cluster.keep();
                eprintln!(
                    "clusters: keeping {name} (--keep); delete it with `{}`",
                    entry.cluster.how_to_delete()
                );
            } else {
                eprintln!("clusters: deleting {name}");
                if let Err(err) = entry.cluster.delete() {
                    self.fail(Failure::new(
                        Phase::Delete,
                        1,
                        format!(
                            "deleting {name} failed, it may still be running: {}; delete it with `{}`",
                            chain(&*err),
                            entry.cluster.how_to_delete()
                        ),
                    ));
                }
            }
            entry.stage = Stage::Done;
        }
    }
}

/// A poisoned lock only means another thread panicked mid-cleanup; cleaning up is still right.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// An error and its causes on one line, as `anyhow`'s `{:#}` prints them.
fn chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Runs the suites' command (`cargo test ...`) and waits for it. It gets a process group of its
/// own, which an interrupt stops (SIGTERM, then SIGKILL) before the clusters are torn down:
/// otherwise a SIGTERM sent to this process alone (a CI cancel, `timeout`) would leave `cargo
/// test` and its test binary running against deleted clusters, rewriting the report after
/// the run has ended.
pub fn run_suite_process(command: &mut Command) -> std::io::Result<ExitStatus> {
    let mut child = command.process_group(0).spawn()?;
    suite_process::started(child.id());
    let status = child.wait();
    suite_process::finished();
    status
}

/// The one suite process group of a run, for the interrupt to stop.
mod suite_process {
    use std::{
        sync::Mutex,
        time::{Duration, Instant},
    };

    use super::lock;

    static GROUP: Mutex<Option<i32>> = Mutex::new(None);

    pub(super) fn started(pid: u32) {
        *lock(&GROUP) = i32::try_from(pid).ok();
    }

    pub(super) fn finished() {
        lock(&GROUP).take();
    }

    /// SIGTERM to the whole group, SIGKILL to what is left after five seconds.
    pub(super) fn stop() {
        let Some(group) = *lock(&GROUP) else {
            return;
        };
        eprintln!("clusters: stopping the suites (process group {group})");
        // SAFETY: kill has no memory preconditions; a negative pid names a process group.
        unsafe { libc::kill(-group, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(5);
        // kill(-group, 0) fails with ESRCH once no process of the group is left.
        while unsafe { libc::kill(-group, 0) } == 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        // SAFETY: as above.
        unsafe { libc::kill(-group, libc::SIGKILL) };
    }
}

/// The process-wide signal handler: installed once, pointed at the current run.
mod ctrl_c {
    use super::*;

    static CURRENT: Mutex<Option<Interrupt>> = Mutex::new(None);
    static INSTALLED: OnceLock<Result<(), String>> = OnceLock::new();

    pub(super) fn arm(interrupt: Interrupt) {
        *lock(&CURRENT) = Some(interrupt);
        let installed = INSTALLED.get_or_init(|| {
            ctrlc::set_handler(|| {
                // Cloned out so the slot is not held while cleaning up.
                let current = lock(&CURRENT).clone();
                if let Some(interrupt) = current {
                    interrupt.fire();
                }
                std::process::exit(INTERRUPTED);
            })
            .map_err(|err| err.to_string())
        });
        if let Err(err) = installed {
            eprintln!("clusters: warning: Ctrl-C will not clean up the clusters: {err}");
        }
    }

    pub(super) fn disarm() {
        lock(&CURRENT).take();
    }
}
