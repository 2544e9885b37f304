//! The cluster under test: its record from the provider, a kube-rs client and a scratch dir.

use std::{
    os::unix::fs::PermissionsExt,
    path::PathBuf,
    sync::{Mutex, OnceLock, PoisonError},
};

use anyhow::Context;
use cluster::ClusterInfo;
use kube::config::{KubeConfigOptions, Kubeconfig};
use pins::KubePin;

/// The scratch folders of this process. A killed process runs no destructors, and the
/// lifecycle stops the suites with SIGTERM when a run is interrupted: a handler removes
/// them, so no host copy of a token stays in the temp dir.
static SCRATCH: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

/// A fresh owner-only folder under the temp dir, removed on drop and on SIGTERM/SIGINT/SIGHUP.
fn scratch_dir() -> anyhow::Result<tempfile::TempDir> {
    static HANDLER: OnceLock<()> = OnceLock::new();
    HANDLER.get_or_init(|| {
        let installed = ctrlc::set_handler(|| {
            let dirs = SCRATCH.lock().unwrap_or_else(PoisonError::into_inner);
            for dir in dirs.iter() {
                let _ = std::fs::remove_dir_all(dir);
            }
            // 128 + SIGTERM, as a shell reports a process ended by it.
            std::process::exit(143);
        });
        if let Err(e) = installed {
            eprintln!("e2e: warning: an interrupt will leave the scratch folders behind: {e}");
        }
    });
    let dir = tempfile::Builder::new()
        .prefix("sa-replay-")
        .permissions(std::fs::Permissions::from_mode(0o700))
        .tempdir()
        .context("creating a scratch folder in the temp dir")?;
    SCRATCH
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .push(dir.path().to_path_buf());
    Ok(dir)
}

/// A cluster the replay runs against.
pub struct Target {
    pub info: ClusterInfo,
    pub pin: &'static KubePin,
    pub client: kube::Client,
    /// The API server's URL as this host reaches it (the kubeconfig's `server`).
    pub server: String,
    /// Scratch files: the page's `sa-pod.yaml`, host copies of the secret volume.
    pub workdir: tempfile::TempDir,
}

impl Target {
    pub async fn connect(info: ClusterInfo) -> anyhow::Result<Target> {
        let pin = KubePin::find(&info.minor)?;
        let kubeconfig = Kubeconfig::read_from(&info.kubeconfig)
            .with_context(|| format!("reading the kubeconfig {}", info.kubeconfig.display()))?;
        let config =
            kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
                .await
                .with_context(|| format!("loading the kubeconfig {}", info.kubeconfig.display()))?;
        let server = config
            .cluster_url
            .to_string()
            .trim_end_matches('/')
            .to_string();
        let client = kube::Client::try_from(config).context("building a kube client")?;
        let workdir = scratch_dir()?;
        Ok(Target {
            info,
            pin,
            client,
            server,
            workdir,
        })
    }

    /// The value of a feature gate set on this cluster, if it was set.
    pub fn gate(&self, name: &str) -> Option<bool> {
        self.info.feature_gates.get(name).copied()
    }

    pub fn api<K>(&self) -> kube::Api<K>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>,
        <K as kube::Resource>::DynamicType: Default,
    {
        kube::Api::namespaced(self.client.clone(), "default")
    }
}
