//! The versions this project pins, written once.
//!
//! Every other copy (`kind-config.yaml`, the workflows, the README, the Go modules under
//! `k8s-build/`) is checked against these constants by the tidy tests in `xtask`.

use std::fmt;

/// The kind release whose release notes list the node images below.
pub const KIND_VERSION: &str = "v0.22.0";

/// One supported Kubernetes minor and everything pinned for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KubePin {
    /// The minor as users type it: `1.29`.
    pub minor: &'static str,
    /// The patch release run by both providers: `v1.29.2`.
    pub version: &'static str,
    /// kind's node image for `version`, by tag and digest, from the kind release notes.
    pub kind_node_image: &'static str,
}

/// Every Kubernetes minor the project can run, oldest first.
pub const KUBERNETES: &[KubePin] = &[
    KubePin {
        minor: "1.24",
        version: "v1.24.17",
        kind_node_image: "kindest/node:v1.24.17@sha256:bad10f9b98d54586cba05a7eaa1b61c6b90bfc4ee174fdc43a7b75ca75c95e51",
    },
    KubePin {
        minor: "1.29",
        version: "v1.29.2",
        kind_node_image: "kindest/node:v1.29.2@sha256:51a1434a5397193442f0be2a297b488b6c919ce8a3931be0ce822606ea5ca245",
    },
];

/// The minors `cargo xtask e2e` runs when `--k8s` is not given.
pub const DEFAULT_MINORS: &[&str] = &["1.24", "1.29"];

/// A version the project has no pin for.
#[derive(Debug, thiserror::Error)]
#[error("unknown Kubernetes version `{asked}`: supported minors are {supported} (pins live in crates/pins/src/lib.rs)")]
pub struct UnknownVersion {
    asked: String,
    supported: String,
}

impl KubePin {
    /// Finds the pin for `1.29`, `v1.29` or the exact patch `v1.29.2`.
    pub fn find(asked: &str) -> Result<&'static KubePin, UnknownVersion> {
        let trimmed = asked.trim().trim_start_matches('v');
        KUBERNETES
            .iter()
            .find(|pin| pin.minor == trimmed || pin.version.trim_start_matches('v') == trimmed)
            .ok_or_else(|| UnknownVersion {
                asked: asked.to_string(),
                supported: KUBERNETES
                    .iter()
                    .map(|p| p.minor)
                    .collect::<Vec<_>>()
                    .join(", "),
            })
    }

    /// The minor as a number pair, for version comparisons in expectations.
    pub fn minor_number(&self) -> (u32, u32) {
        let mut parts = self.minor.split('.').map(|p| p.parse().unwrap_or(0));
        (parts.next().unwrap_or(0), parts.next().unwrap_or(0))
    }

    /// True when this cluster is at `major.minor` or newer.
    pub fn at_least(&self, major: u32, minor: u32) -> bool {
        self.minor_number() >= (major, minor)
    }
}

impl fmt::Display for KubePin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.version)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_a_pin_by_minor_or_patch() {
        assert_eq!(KubePin::find("1.29").unwrap().version, "v1.29.2");
        assert_eq!(KubePin::find("v1.24").unwrap().version, "v1.24.17");
        assert_eq!(KubePin::find("v1.24.17").unwrap().minor, "1.24");
    }

    #[test]
    fn an_unknown_version_names_the_supported_ones() {
        let err = KubePin::find("1.19").unwrap_err().to_string();
        assert!(
            err.contains("`1.19`") && err.contains("1.24, 1.29"),
            "{err}"
        );
    }

    #[test]
    fn every_default_minor_is_pinned() {
        for minor in DEFAULT_MINORS {
            KubePin::find(minor).unwrap();
        }
    }

    #[test]
    fn node_images_match_their_versions() {
        for pin in KUBERNETES {
            let tag = format!("kindest/node:{}@sha256:", pin.version);
            assert!(
                pin.kind_node_image.starts_with(&tag),
                "{}",
                pin.kind_node_image
            );
        }
    }
}
