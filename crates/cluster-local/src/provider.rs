//! The local provider behind `cluster::lifecycle::Cluster`, so `cargo xtask e2e` drives it
//! exactly like kind: create, suites, export logs, delete (also on failure and Ctrl-C).

use std::path::Path;

use cluster::{
    lifecycle::{BoxError, Cluster},
    ClusterInfo, FeatureGates,
};
use pins::KubePin;

use crate::{
    detached_state_dir, ControlPlaneBinaries, Lifetime, LocalCluster, LocalSpec, NodeBinaries,
    NodeSpec,
};

/// One local cluster as the lifecycle sees it.
#[derive(Debug)]
pub struct LocalProvider {
    spec: LocalSpec,
    cluster: Option<LocalCluster>,
    kept: bool,
}

impl LocalProvider {
    /// `keep`: the run may end with `--keep`. Then the cluster is detachable and lives where
    /// `cargo xtask cluster up` puts it, so `cargo xtask cluster down` stops it later.
    pub fn new(pin: &'static KubePin, feature_gates: FeatureGates, keep: bool) -> LocalProvider {
        let mut spec = LocalSpec::new(pin);
        spec.feature_gates = feature_gates;
        if keep {
            spec.lifetime = Lifetime::Detachable;
            spec.state_dir = Some(detached_state_dir(pin));
        }
        LocalProvider::from_spec(spec)
    }

    /// Gives the cluster a node (`cargo xtask e2e --node`): pods run, `has_node` is true.
    /// Needs root. Such a cluster dies with this process, so `--keep` cannot keep it (the
    /// lifecycle is told so); and there is one node per host at a time, so run clusters with
    /// a node one lifecycle after another, not side by side.
    pub fn with_node(mut self) -> LocalProvider {
        self.spec.node = Some(NodeSpec::default());
        self.spec.lifetime = Lifetime::Owned;
        self.spec.state_dir = None;
        self
    }

    /// Binaries the caller already has (built or checked before any cluster of the run
    /// starts), so the start does not look for them again.
    pub fn with_binaries(
        mut self,
        control_plane: ControlPlaneBinaries,
        node: Option<NodeBinaries>,
    ) -> LocalProvider {
        self.spec.binaries = Some(control_plane);
        if let (Some(spec), Some(node)) = (self.spec.node.as_mut(), node) {
            spec.binaries = Some(node);
        }
        self
    }

    /// Any spec. The lifecycle installs its own Ctrl-C handler, so ours is not.
    pub fn from_spec(mut spec: LocalSpec) -> LocalProvider {
        spec.signal_handler = false;
        LocalProvider {
            spec,
            cluster: None,
            kept: false,
        }
    }
}

impl Cluster for LocalProvider {
    fn name(&self) -> String {
        self.spec.name()
    }

    fn start(&mut self) -> Result<(), BoxError> {
        // The lifecycle is synchronous; the start's waits need a runtime of their own.
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        self.cluster = Some(runtime.block_on(LocalCluster::start(self.spec.clone()))?);
        Ok(())
    }

    fn info(&self) -> ClusterInfo {
        self.cluster
            .as_ref()
            .expect("info is only asked of a started cluster")
            .info()
    }

    fn export_logs(&mut self, dir: &Path) -> Result<(), BoxError> {
        if let Some(cluster) = &self.cluster {
            crate::copy_logs(&crate::Layout::new(cluster.state_dir()), dir)?;
        }
        Ok(())
    }

    fn delete(&mut self) -> Result<(), BoxError> {
        // A failed start has already cleaned up after itself.
        if let Some(cluster) = self.cluster.take() {
            cluster.stop();
        }
        Ok(())
    }

    fn keep(&mut self) {
        if let Some(cluster) = self.cluster.take() {
            match cluster.detach() {
                Ok(_) => self.kept = true,
                // An owned cluster cannot outlive us: say so rather than pretend.
                Err(e) => eprintln!("{}: {e}; it stops when this process exits", self.name()),
            }
        }
    }

    fn how_to_delete(&self) -> String {
        if self.kept || self.spec.lifetime == Lifetime::Detachable {
            format!(
                "cargo xtask cluster down --provider local --k8s {}",
                self.spec.pin.minor
            )
        } else {
            "nothing to do: its processes stop when the run's process exits".to_string()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_kept_cluster_lives_where_cluster_down_looks() {
        let pin = KubePin::find("1.24").unwrap();
        let provider = LocalProvider::new(pin, FeatureGates::new(), true);
        assert_eq!(provider.spec.state_dir, Some(detached_state_dir(pin)));
        assert_eq!(provider.spec.lifetime, Lifetime::Detachable);
        assert!(!provider.spec.signal_handler);
        assert_eq!(
            provider.how_to_delete(),
            "cargo xtask cluster down --provider local --k8s 1.24"
        );
        assert_eq!(provider.name(), "local-1.24");
    }

    #[test]
    fn a_cluster_with_a_node_is_owned_even_when_kept() {
        let pin = KubePin::find("1.29").unwrap();
        let provider = LocalProvider::new(pin, FeatureGates::new(), true).with_node();
        assert!(provider.spec.node.is_some());
        assert_eq!(provider.spec.lifetime, Lifetime::Owned);
        assert_eq!(provider.spec.state_dir, None);
        assert_eq!(
            provider.how_to_delete(),
            "nothing to do: its processes stop when the run's process exits"
        );
    }
}
