//! kind clusters at the pinned node images, for users with Docker, and the run lifecycle.
//!
//! `cargo xtask e2e --provider kind` calls [`run_e2e`]: [`preflight`] checks Docker and kind,
//! one [`KindCluster`] per Kubernetes version is made from `kind-config.yaml`, the suites run,
//! logs are exported and the clusters deleted (also on failure and on Ctrl-C), and the first
//! failure's exit code comes back. The lifecycle itself ([`lifecycle::run`]) is generic over a
//! small [`Cluster`] trait so the local provider can use it too.
//!
//! Every program (`kind`, `docker`) is found through `PATH` ([`Tools`]), which is how the tests
//! put fake ones first.
//!
//! ```no_run
//! # use std::path::Path;
//! use cluster_kind::{run_e2e, Failure, KindSpec, RunOptions, Tools};
//!
//! let pin = pins::KubePin::find("1.24").unwrap();
//! let spec = KindSpec {
//!     pin,
//!     feature_gates: [("LegacyServiceAccountTokenNoAutoGeneration".to_string(), false)].into(),
//!     work_dir: "target/e2e-work".into(),
//!     kubectl: "target/k8s/v1.24.17/kubectl".into(),
//! };
//! let opts = RunOptions::new(Path::new("target/e2e-report"), false);
//! let outcome = run_e2e(&Tools::from_env(), vec![spec], &opts, |_clusters| {
//!     // Write clusters.json, run the suites; map their failure to its exit code.
//!     Err(Failure::suites(1, "2 steps failed"))
//! })?;
//! std::process::exit(outcome.exit_code());
//! # Ok::<(), cluster_kind::Error>(())
//! ```

mod config;
mod kind;
/// The lifecycle lives in `cluster`, shared with the local provider; re-exported for callers.
pub use cluster::lifecycle;

use std::{
    ffi::OsString,
    path::PathBuf,
    process::{Command, Output, Stdio},
};

pub use config::{render_config, CONFIG_TEMPLATE};
pub use kind::{cluster_name, KindCluster, KindSpec, WAIT};
pub use lifecycle::{
    Cluster, Failure, Interrupt, Outcome, Phase, RunOptions, INTERRUPTED, LOGS_DIR,
};

use cluster::ClusterInfo;
use pins::KubePin;

/// How to install the pinned kind, said wherever kind is missing or at another version.
pub const INSTALL_KIND: &str = "go install sigs.k8s.io/kind@v0.22.0";

/// Everything that can go wrong with Docker, kind or a kind cluster.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// `docker` is not on `PATH`.
    #[error("Docker is not installed (`docker` is not on PATH): install Docker Engine, or run with `--provider local`")]
    DockerMissing,
    /// `docker` is there but `docker info` fails: no daemon answers, or this user may not use it.
    #[error("the Docker daemon is not running (`docker info` failed: {detail}): start it (e.g. `sudo systemctl start docker`) and check that this user may use it, or run with `--provider local`")]
    DockerDaemonDown {
        /// The last line `docker info` printed on stderr.
        detail: String,
    },
    /// `kind` is not on `PATH`.
    #[error("kind is not installed (`kind` is not on PATH): install the pinned {wanted} with `{INSTALL_KIND}` and put $(go env GOPATH)/bin on PATH", wanted = pins::KIND_VERSION)]
    KindMissing,
    /// `kind version` names another release than [`pins::KIND_VERSION`], whose node images differ.
    #[error("kind {found} is installed but this project pins kind {wanted} (its node images are pinned by digest): install it with `{INSTALL_KIND}`", wanted = pins::KIND_VERSION)]
    KindVersion {
        /// What `kind version` printed.
        found: String,
    },
    /// A kind cluster with a name this run would use exists already, perhaps from a run left with `--keep`.
    #[error("a kind cluster named `{name}` already exists: delete it with `kind delete cluster --name {name}` and run again")]
    ClusterExists {
        /// The cluster's name.
        name: String,
    },
    /// A program could not be started at all.
    #[error("cannot run `{program}`")]
    Spawn {
        /// The program, as looked up on `PATH`.
        program: String,
        #[source]
        source: std::io::Error,
    },
    /// A command ran and exited with a failure.
    #[error("`{command}` failed ({status}){detail}")]
    Failed {
        /// The command line, for the user to rerun.
        command: String,
        /// How it ended, e.g. `exit status: 1`.
        status: std::process::ExitStatus,
        /// Its stderr when it was captured, else a pointer to the output above.
        detail: String,
    },
    /// `kind-config.yaml` is not the kind Cluster config this crate knows how to render.
    #[error("kind-config.yaml cannot be rendered: {reason}")]
    Template {
        /// What is wrong with it.
        reason: String,
    },
    /// A file in the work dir could not be written.
    #[error("cannot write {path}")]
    Io {
        /// The file or folder.
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Where `kind` and `docker` are looked up: this process's `PATH`, or one given explicitly.
///
/// An explicit `PATH` is set on every child process rather than on this process, so tests can
/// put fakes first without racing each other over the process environment.
#[derive(Debug, Clone, Default)]
pub struct Tools {
    path: Option<OsString>,
}

impl Tools {
    /// Programs from this process's `PATH`.
    pub fn from_env() -> Self {
        Self::default()
    }

    /// Programs from the given `PATH` (a `:`-separated list of folders).
    pub fn with_path(path: impl Into<OsString>) -> Self {
        Self {
            path: Some(path.into()),
        }
    }

    /// A command for `program`, resolved through this `PATH`.
    fn command(&self, program: &str) -> Command {
        let mut cmd = Command::new(program);
        if let Some(path) = &self.path {
            // std resolves the program through the child's PATH when it is set on the Command.
            cmd.env("PATH", path);
        }
        cmd
    }

    /// Runs a short query (`docker info`, `kind version`) and captures its output.
    fn query(&self, program: &str, args: &[&str]) -> Result<Output, Error> {
        self.command(program)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .map_err(|source| Error::Spawn {
                program: program.into(),
                source,
            })
    }
}

/// Checks that kind clusters for `pins` can be made here, with an error that says what to do
/// when not: Docker installed and its daemon up, kind at [`pins::KIND_VERSION`], and no cluster
/// already holding one of the names this run would use.
pub fn preflight(tools: &Tools, pins: &[&KubePin]) -> Result<(), Error> {
    match tools.query("docker", &["info"]) {
        Err(Error::Spawn { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
            return Err(Error::DockerMissing)
        }
        Err(other) => return Err(other),
        Ok(out) if !out.status.success() => {
            return Err(Error::DockerDaemonDown {
                detail: last_line(&out.stderr).unwrap_or_else(|| out.status.to_string()),
            })
        }
        Ok(_) => {}
    }

    let version = match tools.query("kind", &["version"]) {
        Err(Error::Spawn { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
            return Err(Error::KindMissing)
        }
        other => other?,
    };
    let printed = String::from_utf8_lossy(&version.stdout).trim().to_string();
    // `kind version` prints `kind v0.22.0 go1.21.7 linux/amd64`; the second word is the release.
    let found = printed.split_whitespace().nth(1).unwrap_or_default();
    if !version.status.success() || found != pins::KIND_VERSION {
        return Err(Error::KindVersion {
            found: if printed.is_empty() {
                "of unknown version".into()
            } else {
                printed
            },
        });
    }

    let listed = tools.query("kind", &["get", "clusters"])?;
    if !listed.status.success() {
        return Err(Error::Failed {
            command: "kind get clusters".into(),
            status: listed.status,
            detail: stderr_detail(&listed.stderr),
        });
    }
    let existing = String::from_utf8_lossy(&listed.stdout);
    for pin in pins {
        let name = cluster_name(pin);
        if existing.lines().any(|line| line.trim() == name) {
            return Err(Error::ClusterExists { name });
        }
    }
    Ok(())
}

/// The whole kind run `cargo xtask e2e --provider kind` needs, in one call: [`preflight`], one
/// cluster per spec, `suites` with their [`ClusterInfo`]s, logs exported, clusters deleted
/// (unless `opts.keep`), also on failure and on Ctrl-C/SIGTERM.
///
/// `Err` means nothing was created (preflight or config rendering failed). `Ok` carries the
/// [`Outcome`], whose [`Outcome::exit_code`] is the first failure's, as kind's own CI script does.
pub fn run_e2e(
    tools: &Tools,
    specs: Vec<KindSpec>,
    opts: &RunOptions,
    suites: impl FnOnce(&[ClusterInfo]) -> Result<(), Failure>,
) -> Result<Outcome, Error> {
    let pins: Vec<&KubePin> = specs.iter().map(|spec| spec.pin).collect();
    preflight(tools, &pins)?;
    let clusters = specs
        .into_iter()
        .map(|spec| KindCluster::prepare(spec, tools.clone()))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(lifecycle::run(clusters, opts, suites))
}

fn last_line(bytes: &[u8]) -> Option<String> {
    String::from_utf8_lossy(bytes)
        .lines()
        .map(str::trim)
        .rfind(|line| !line.is_empty())
        .map(str::to_string)
}

fn stderr_detail(stderr: &[u8]) -> String {
    match last_line(stderr) {
        Some(line) => format!(": {line}"),
        None => String::new(),
    }
}
