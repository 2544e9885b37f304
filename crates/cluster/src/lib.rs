//! The contract between cluster providers (`cluster-local`, `cluster-kind`) and the e2e suites.
//!
//! A provider brings a cluster up and describes it with a [`ClusterInfo`]; `cargo xtask e2e`
//! writes the list of them to a JSON file and points the suites at it with [`CLUSTERS_ENV`].

use std::{
    collections::BTreeMap,
    fmt,
    path::{Path, PathBuf},
    str::FromStr,
};

use serde::{Deserialize, Serialize};

pub mod lifecycle;

/// Environment variable naming the `clusters.json` file the e2e suites read.
pub const CLUSTERS_ENV: &str = "SA_REPLAY_CLUSTERS";

/// Feature gates set on a cluster, by name. Ordered so reports are stable.
pub type FeatureGates = BTreeMap<String, bool>;

/// Where a cluster comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Provider {
    /// Upstream binaries run as local processes.
    Local,
    /// kind: Kubernetes in Docker containers.
    Kind,
}

impl fmt::Display for Provider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Provider::Local => "local",
            Provider::Kind => "kind",
        })
    }
}

impl FromStr for Provider {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "local" => Ok(Provider::Local),
            "kind" => Ok(Provider::Kind),
            other => Err(format!("unknown provider `{other}`: use `local` or `kind`")),
        }
    }
}

/// A running cluster, as the e2e suites need to know it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClusterInfo {
    pub provider: Provider,
    /// The pinned minor, `1.29`.
    pub minor: String,
    /// The pinned release, `v1.29.2`; the suites check `/version` against it.
    pub kubernetes: String,
    /// An admin kubeconfig dedicated to this cluster.
    pub kubeconfig: PathBuf,
    /// kubectl at the cluster's version, used to replay the page's commands as printed.
    pub kubectl: PathBuf,
    /// Feature gates set on the control plane, as the report shows them.
    #[serde(default)]
    pub feature_gates: FeatureGates,
    /// Whether pods can run (a node with a kubelet exists).
    pub has_node: bool,
    /// Facts about how the cluster was made that the report should show
    /// (for example that an image was built locally).
    #[serde(default)]
    pub notes: Vec<String>,
}

/// A `--feature-gates` value that is not `Name=true|false[,...]`.
#[derive(Debug, thiserror::Error)]
#[error("bad feature gate `{entry}`: write `Name=true` or `Name=false`, comma-separated (for example LegacyServiceAccountTokenNoAutoGeneration=false)")]
pub struct BadFeatureGate {
    entry: String,
}

/// Parses `Name=true,Other=false`, the syntax of the components' own `--feature-gates` flag.
pub fn parse_feature_gates(text: &str) -> Result<FeatureGates, BadFeatureGate> {
    let mut gates = FeatureGates::new();
    for entry in text.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let bad = || BadFeatureGate {
            entry: entry.to_string(),
        };
        let (name, value) = entry.split_once('=').ok_or_else(bad)?;
        let name = name.trim();
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric()) {
            return Err(bad());
        }
        let value = value.trim().parse::<bool>().map_err(|_| bad())?;
        gates.insert(name.to_string(), value);
    }
    Ok(gates)
}

/// Renders gates back as `Name=true,Other=false` for a component flag.
pub fn format_feature_gates(gates: &FeatureGates) -> String {
    gates
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// Reading or writing a `clusters.json` failed.
#[derive(Debug, thiserror::Error)]
pub enum ClustersFileError {
    /// The file could not be read or written.
    #[error("cannot access {path}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The file is not a JSON list of clusters.
    #[error("{path} is not a valid clusters file; rerun `cargo xtask e2e` to rewrite it")]
    Malformed {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
}

/// Writes the clusters list the e2e suites read.
pub fn write_clusters(path: &Path, clusters: &[ClusterInfo]) -> Result<(), ClustersFileError> {
    let json = serde_json::to_vec_pretty(clusters).expect("ClusterInfo always serializes");
    std::fs::write(path, json).map_err(|source| ClustersFileError::Io {
        path: path.into(),
        source,
    })
}

/// Reads the clusters list written by [`write_clusters`].
pub fn read_clusters(path: &Path) -> Result<Vec<ClusterInfo>, ClustersFileError> {
    let bytes = std::fs::read(path).map_err(|source| ClustersFileError::Io {
        path: path.into(),
        source,
    })?;
    serde_json::from_slice(&bytes).map_err(|source| ClustersFileError::Malformed {
        path: path.into(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clusters_file_round_trips() {
        let dir = std::env::temp_dir().join(format!("clusters-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("clusters.json");
        let info = ClusterInfo {
            provider: Provider::Local,
            minor: "1.29".into(),
            kubernetes: "v1.29.2".into(),
            kubeconfig: "/tmp/k".into(),
            kubectl: "/tmp/kubectl".into(),
            feature_gates: FeatureGates::from([("A".to_string(), true)]),
            has_node: false,
            notes: vec![],
        };
        write_clusters(&path, std::slice::from_ref(&info)).unwrap();
        assert_eq!(read_clusters(&path).unwrap(), vec![info]);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn feature_gates_parse_and_render() {
        let gates = parse_feature_gates("B=false, A=true").unwrap();
        assert_eq!(format_feature_gates(&gates), "A=true,B=false");
        assert!(parse_feature_gates("").unwrap().is_empty());
    }

    #[test]
    fn a_malformed_feature_gate_says_how_to_write_one() {
        for bad in ["A", "A=yes", "=true", "A B=true"] {
            let err = parse_feature_gates(bad).unwrap_err().to_string();
            assert!(err.contains("Name=true"), "{bad}: {err}");
        }
    }

    #[test]
    fn a_malformed_clusters_file_says_how_to_fix_it() {
        let path = std::env::temp_dir().join(format!("bad-clusters-{}.json", std::process::id()));
        std::fs::write(&path, "{not json").unwrap();
        let err = read_clusters(&path).unwrap_err().to_string();
        assert!(err.contains("rerun `cargo xtask e2e`"), "{err}");
        std::fs::remove_file(path).unwrap();
    }
}
