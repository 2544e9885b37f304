//! The cluster under test: its record from the provider, a kube-rs client and a scratch dir.

use anyhow::Context;
use cluster::ClusterInfo;
use kube::config::{KubeConfigOptions, Kubeconfig};
use pins::KubePin;

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
        let workdir = tempfile::Builder::new().prefix("sa-replay-").tempdir()?;
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
