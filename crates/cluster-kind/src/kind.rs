//! One kind cluster at a pinned node image: created, described, its logs exported, deleted.

use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

use cluster::{ClusterInfo, FeatureGates, Provider};
use pins::KubePin;

use crate::{config, lifecycle, Error, Tools};

/// How long `kind create cluster` waits for the control plane to be Ready.
pub const WAIT: &str = "5m";

/// The name of the kind cluster for a version: `sa-replay-1-29`, so `kind get clusters` and
/// `docker ps` say which version each one is.
pub fn cluster_name(pin: &KubePin) -> String {
    format!("sa-replay-{}", pin.minor.replace('.', "-"))
}

/// What to make a kind cluster from.
#[derive(Debug, Clone)]
pub struct KindSpec {
    /// The Kubernetes version; its `kind_node_image` is what the cluster runs.
    pub pin: &'static KubePin,
    /// Gates for every component, merged over `kind-config.yaml`'s own.
    pub feature_gates: FeatureGates,
    /// The run's work dir; the cluster's rendered config and kubeconfig go in `<work_dir>/<name>/`.
    pub work_dir: PathBuf,
    /// kubectl at this cluster's version, built by the caller; handed on in [`ClusterInfo`].
    pub kubectl: PathBuf,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Config rendered, nothing started.
    Prepared,
    /// `kind create cluster` was run (whether or not it succeeded): containers may exist.
    Started,
    /// `kind delete cluster` succeeded.
    Deleted,
}

/// A kind cluster this process made. Dropping it deletes it, unless [`KindCluster::keep`] was called.
#[derive(Debug)]
pub struct KindCluster {
    name: String,
    pin: &'static KubePin,
    feature_gates: FeatureGates,
    config: PathBuf,
    kubeconfig: PathBuf,
    kubectl: PathBuf,
    tools: Tools,
    state: State,
    keep: bool,
}

impl KindCluster {
    /// Renders the config for `spec` into its work dir, without starting anything: the lifecycle
    /// registers the cluster for cleanup before [`KindCluster::start`], so an interrupt during
    /// `kind create` still deletes whatever it left.
    pub fn prepare(spec: KindSpec, tools: Tools) -> Result<Self, Error> {
        let name = cluster_name(spec.pin);
        let dir = spec.work_dir.join(&name);
        std::fs::create_dir_all(&dir).map_err(|source| Error::Io {
            path: dir.clone(),
            source,
        })?;
        let header = format!(
            "# Rendered from kind-config.yaml by crates/cluster-kind for {} ({}); rewritten every run.",
            spec.pin.version, name
        );
        let (yaml, feature_gates) = config::render_config(
            config::CONFIG_TEMPLATE,
            spec.pin.kind_node_image,
            &spec.feature_gates,
            &header,
        )?;
        let config = dir.join("kind-config.yaml");
        std::fs::write(&config, yaml).map_err(|source| Error::Io {
            path: config.clone(),
            source,
        })?;
        Ok(Self {
            name,
            pin: spec.pin,
            feature_gates,
            config,
            kubeconfig: dir.join("kubeconfig"),
            kubectl: spec.kubectl,
            tools,
            state: State::Prepared,
            keep: false,
        })
    }

    /// Prepares and starts a cluster for `spec`, waiting until its control plane is Ready.
    pub fn create(spec: KindSpec, tools: Tools) -> Result<Self, Error> {
        let mut cluster = Self::prepare(spec, tools)?;
        cluster.start()?;
        Ok(cluster)
    }

    /// Runs `kind create cluster` with the rendered config, the pinned image and a kubeconfig of
    /// its own, so the user's default kubeconfig is never touched.
    pub fn start(&mut self) -> Result<(), Error> {
        // A kubeconfig left by an earlier run would be merged into, not replaced.
        match std::fs::remove_file(&self.kubeconfig) {
            Err(err) if err.kind() != std::io::ErrorKind::NotFound => {
                return Err(Error::Io {
                    path: self.kubeconfig.clone(),
                    source: err,
                })
            }
            _ => {}
        }
        let mut cmd = self.kind();
        cmd.args(["create", "cluster", "--name", &self.name, "--config"])
            .arg(&self.config)
            .args(["--image", self.pin.kind_node_image, "--kubeconfig"])
            .arg(&self.kubeconfig)
            .args(["--wait", WAIT]);
        self.state = State::Started;
        // In the terminal's process group, unlike the cleanup commands: Ctrl-C must stop it.
        run_visibly(cmd, Group::Terminal)
    }

    /// What the e2e suites need to know about this cluster.
    pub fn info(&self) -> ClusterInfo {
        ClusterInfo {
            provider: Provider::Kind,
            minor: self.pin.minor.into(),
            kubernetes: self.pin.version.into(),
            kubeconfig: self.kubeconfig.clone(),
            kubectl: self.kubectl.clone(),
            feature_gates: self.feature_gates.clone(),
            has_node: true,
            notes: vec![format!(
                "kind {} cluster `{}` from {}",
                pins::KIND_VERSION,
                self.name,
                self.pin.kind_node_image
            )],
        }
    }

    /// The kind cluster's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The rendered kind config this cluster is created from.
    pub fn config_path(&self) -> &Path {
        &self.config
    }

    /// Runs `kind export logs <dir> --name <name>`: node journals, container logs, kind's own.
    pub fn export_logs(&self, dir: &Path) -> Result<(), Error> {
        if let Some(parent) = dir.parent() {
            std::fs::create_dir_all(parent).map_err(|source| Error::Io {
                path: parent.into(),
                source,
            })?;
        }
        let mut cmd = self.kind();
        cmd.args(["export", "logs"])
            .arg(dir)
            .args(["--name", &self.name]);
        run_visibly(cmd, Group::Own)
    }

    /// Runs `kind delete cluster`, which also removes the cluster from its own kubeconfig.
    /// Deleting twice runs kind once.
    pub fn delete(&mut self) -> Result<(), Error> {
        if self.state == State::Deleted {
            return Ok(());
        }
        let mut cmd = self.kind();
        cmd.args(["delete", "cluster", "--name", &self.name, "--kubeconfig"])
            .arg(&self.kubeconfig);
        run_visibly(cmd, Group::Own)?;
        self.state = State::Deleted;
        Ok(())
    }

    /// Leaves the cluster running when this handle is dropped (`cargo xtask e2e --keep`).
    pub fn keep(&mut self) {
        self.keep = true;
    }

    fn kind(&self) -> Command {
        let mut cmd = self.tools.command("kind");
        // kind falls back to $KUBECONFIG, then ~/.kube/config, for anything not given
        // --kubeconfig: point it at this cluster's own file so the user's is never written.
        cmd.env("KUBECONFIG", &self.kubeconfig);
        cmd
    }
}

impl Drop for KindCluster {
    fn drop(&mut self) {
        if self.state == State::Started && !self.keep {
            if let Err(err) = self.delete() {
                eprintln!(
                    "cluster-kind: could not delete kind cluster `{}`: {err}; delete it with `kind delete cluster --name {}`",
                    self.name, self.name
                );
            }
        }
    }
}

impl lifecycle::Cluster for KindCluster {
    fn name(&self) -> String {
        self.name.clone()
    }
    fn start(&mut self) -> Result<(), lifecycle::BoxError> {
        Ok(KindCluster::start(self)?)
    }
    fn info(&self) -> ClusterInfo {
        KindCluster::info(self)
    }
    fn export_logs(&mut self, dir: &Path) -> Result<(), lifecycle::BoxError> {
        Ok(KindCluster::export_logs(self, dir)?)
    }
    fn delete(&mut self) -> Result<(), lifecycle::BoxError> {
        Ok(KindCluster::delete(self)?)
    }
    fn keep(&mut self) {
        KindCluster::keep(self)
    }
    fn how_to_delete(&self) -> String {
        format!(
            "kind delete cluster --name {} --kubeconfig {}",
            self.name,
            self.kubeconfig.display()
        )
    }
}

/// Which process group a kind command runs in.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Group {
    /// The terminal's: Ctrl-C reaches it.
    Terminal,
    /// Its own: cleanup commands, which a second Ctrl-C must not kill halfway (the first one is
    /// what started the cleanup).
    Own,
}

/// Runs a long kind command with its progress on the user's terminal.
fn run_visibly(mut cmd: Command, group: Group) -> Result<(), Error> {
    let command = describe(&cmd);
    cmd.stdin(Stdio::null());
    // kind's progress is on stderr; its stdout goes there too, because the xtask's stdout
    // carries results (`cargo xtask cluster up` prints the kubeconfig path last).
    cmd.stdout(std::io::stderr());
    #[cfg(unix)]
    if group == Group::Own {
        std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
    }
    #[cfg(not(unix))]
    let _ = group;
    let status = cmd.status().map_err(|source| match source.kind() {
        std::io::ErrorKind::NotFound => Error::KindMissing,
        _ => Error::Spawn {
            program: "kind".into(),
            source,
        },
    })?;
    if status.success() {
        Ok(())
    } else {
        Err(Error::Failed {
            command,
            status,
            detail: "; kind's output is above".into(),
        })
    }
}

fn describe(cmd: &Command) -> String {
    std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(|arg| arg.to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}
