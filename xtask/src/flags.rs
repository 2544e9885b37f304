//! The command line of `cargo xtask`.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// `--k8s`'s default as it is typed (`1.24,1.29`), so `--help` shows it that way too.
static DEFAULT_K8S: std::sync::LazyLock<String> =
    std::sync::LazyLock::new(|| pins::DEFAULT_MINORS.join(","));

#[derive(Debug, Parser)]
#[command(
    name = "cargo xtask",
    about = "Replay the ServiceAccount guide against real clusters"
)]
#[command(arg_required_else_help = true)]
pub struct Xtask {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Bring one cluster up or down.
    #[command(subcommand)]
    Cluster(ClusterCmd),
    /// The main job: clusters per version, every step replayed, a report written.
    E2e(E2e),
    /// What CI checks: fmt, clippy and the hermetic tests.
    Ci(Ci),
    /// Benchmarks: `bench cluster-up` times local clusters to ready.
    Bench(Bench),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ProviderChoice {
    /// kind where a Docker engine answers, else local.
    Auto,
    Kind,
    Local,
}

#[derive(Debug, Subcommand)]
pub enum ClusterCmd {
    /// Start a cluster; the last line of stdout is the path of its admin kubeconfig.
    Up(ClusterUp),
    /// Stop a cluster and remove everything it made.
    Down(ClusterDown),
    /// Run the local provider's integration tests on real v1.24 and v1.29 clusters.
    Test(ClusterTest),
}

#[derive(Debug, Args)]
pub struct ClusterUp {
    #[arg(long, value_enum, default_value = "local")]
    pub provider: ProviderChoice,
    /// Kubernetes minor, such as 1.29.
    #[arg(long = "k8s")]
    pub k8s: String,
    /// Feature gates for this cluster: `Name=true,Other=false`.
    #[arg(long)]
    pub feature_gates: Option<String>,
    /// Give the cluster a node (kubelet, kube-proxy, containerd) so pods run. Needs root;
    /// the cluster then stays in the foreground until Ctrl-C, which removes it.
    #[arg(long)]
    pub node: bool,
}

#[derive(Debug, Args)]
pub struct ClusterDown {
    #[arg(long, value_enum, default_value = "local")]
    pub provider: ProviderChoice,
    #[arg(long = "k8s")]
    pub k8s: String,
}

#[derive(Debug, Args)]
pub struct E2e {
    #[arg(long, value_enum, default_value = "auto")]
    pub provider: ProviderChoice,
    /// Comma-separated Kubernetes minors.
    #[arg(long = "k8s", value_delimiter = ',', default_value = DEFAULT_K8S.as_str())]
    pub k8s: Vec<String>,
    #[arg(long, default_value = "target/e2e-report")]
    pub report_dir: PathBuf,
    /// Leave the clusters up at the end.
    #[arg(long)]
    pub keep: bool,
    /// Fail the run on drift too, not only on `fail`.
    #[arg(long)]
    pub strict: bool,
    /// Local provider: no node (control plane only; in-pod steps replayed from the host).
    /// By default, as root, each local cluster gets a node so the page's pod really runs.
    #[arg(long)]
    pub no_node: bool,
    /// Feature gates, optionally for one version: `1.24:LegacyServiceAccountTokenNoAutoGeneration=false`.
    #[arg(long)]
    pub feature_gates: Vec<String>,
}

#[derive(Debug, Args)]
pub struct Ci {}

#[derive(Debug, Args)]
pub struct ClusterTest {
    /// Run the node test instead (tests/local_node.rs: a pod curls the API server through
    /// the `kubernetes` Service; root).
    #[arg(long)]
    pub node: bool,
}

#[derive(Debug, Args)]
pub struct Bench {
    #[arg(value_enum)]
    pub target: BenchTarget,
    /// Comma-separated Kubernetes minors.
    #[arg(long = "k8s", value_delimiter = ',', default_value = DEFAULT_K8S.as_str())]
    pub k8s: Vec<String>,
    /// Clusters started per version.
    #[arg(long, default_value_t = 3)]
    pub runs: u32,
    /// Also time a build of the binaries with an empty Go build cache (many minutes).
    #[arg(long)]
    pub cold_build: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum BenchTarget {
    /// Time from `LocalCluster::start` to a ready cluster, from cached binaries.
    ClusterUp,
    /// Time from `LocalCluster::start` with a node to the page's sa-pod Running (root).
    PodRunning,
}
