//! Renders `kind-config.yaml` for one Kubernetes version: its node image and its feature gates.

use cluster::FeatureGates;
use serde_yaml::{Mapping, Value};

use crate::Error;

/// The repository's `kind-config.yaml`, built in so the crate works from any folder.
pub const CONFIG_TEMPLATE: &str = include_str!("../../../kind-config.yaml");

const KIND: &str = "Cluster";
const API_VERSION: &str = "kind.x-k8s.io/v1alpha4";

/// Renders `template` (a kind `Cluster` config) for one version: every node gets `image`, and
/// `gates` are merged over the template's own `featureGates` (the caller's value wins).
///
/// Returns the YAML to write and the gates the cluster will really have, for the report.
pub fn render_config(
    template: &str,
    image: &str,
    gates: &FeatureGates,
    header: &str,
) -> Result<(String, FeatureGates), Error> {
    let invalid = |reason: String| Error::Template { reason };
    let mut doc: Mapping = serde_yaml::from_str(template)
        .map_err(|err| invalid(format!("not a YAML mapping: {err}")))?;

    for (key, wanted) in [("kind", KIND), ("apiVersion", API_VERSION)] {
        if doc.get(key).and_then(Value::as_str) != Some(wanted) {
            return Err(invalid(format!("`{key}` must be `{wanted}`")));
        }
    }

    let mut merged = FeatureGates::new();
    match doc.get("featureGates") {
        None | Some(Value::Null) => {}
        Some(Value::Mapping(existing)) => {
            for (name, on) in existing {
                match (name.as_str(), on.as_bool()) {
                    (Some(name), Some(on)) => {
                        merged.insert(name.to_string(), on);
                    }
                    _ => {
                        return Err(invalid(
                            "`featureGates` must map names to true or false".into(),
                        ))
                    }
                }
            }
        }
        Some(_) => return Err(invalid("`featureGates` must be a mapping".into())),
    }
    merged.extend(gates.iter().map(|(name, on)| (name.clone(), *on)));
    let gates_value: Mapping = merged
        .iter()
        .map(|(name, on)| (Value::from(name.as_str()), Value::from(*on)))
        .collect();
    doc.insert("featureGates".into(), Value::Mapping(gates_value));

    let nodes = match doc.get_mut("nodes") {
        Some(Value::Sequence(nodes)) if !nodes.is_empty() => nodes,
        _ => return Err(invalid("`nodes` must list at least one node".into())),
    };
    for node in nodes {
        let Value::Mapping(node) = node else {
            return Err(invalid("every entry of `nodes` must be a mapping".into()));
        };
        node.insert("image".into(), image.into());
    }

    let body = serde_yaml::to_string(&doc).expect("a YAML mapping always serializes");
    Ok((format!("{header}\n{body}"), merged))
}

#[cfg(test)]
mod tests {
    use super::*;

    const IMAGE_124: &str = "kindest/node:v1.24.17@sha256:bad10f9b98d54586cba05a7eaa1b61c6b90bfc4ee174fdc43a7b75ca75c95e51";

    fn render(gates: &[(&str, bool)]) -> (Value, FeatureGates) {
        let gates = gates.iter().map(|(n, on)| (n.to_string(), *on)).collect();
        let (yaml, merged) = render_config(CONFIG_TEMPLATE, IMAGE_124, &gates, "# test").unwrap();
        assert!(yaml.starts_with("# test\n"), "{yaml}");
        (serde_yaml::from_str(&yaml).unwrap(), merged)
    }

    #[test]
    fn every_node_gets_the_versions_image() {
        let (doc, _) = render(&[]);
        let nodes = doc["nodes"].as_sequence().unwrap();
        assert_eq!(nodes.len(), 1);
        assert_eq!(nodes[0]["role"], "control-plane");
        assert_eq!(nodes[0]["image"], IMAGE_124);
    }

    #[test]
    fn feature_gates_are_set_at_the_top_level() {
        let (doc, merged) = render(&[("LegacyServiceAccountTokenNoAutoGeneration", false)]);
        assert_eq!(
            doc["featureGates"]["LegacyServiceAccountTokenNoAutoGeneration"],
            Value::Bool(false)
        );
        assert_eq!(
            merged,
            FeatureGates::from([("LegacyServiceAccountTokenNoAutoGeneration".into(), false)])
        );
    }

    #[test]
    fn the_api_server_stays_on_loopback() {
        let (doc, _) = render(&[]);
        assert_eq!(doc["networking"]["apiServerAddress"], "127.0.0.1");
        assert_eq!(doc["kind"], "Cluster");
        assert_eq!(doc["apiVersion"], "kind.x-k8s.io/v1alpha4");
    }

    #[test]
    fn the_callers_gates_win_over_the_templates() {
        let template = "kind: Cluster\napiVersion: kind.x-k8s.io/v1alpha4\nfeatureGates: {A: true, B: true}\nnodes: [{role: control-plane}]\n";
        let gates = FeatureGates::from([("B".into(), false)]);
        let (_, merged) = render_config(template, IMAGE_124, &gates, "#").unwrap();
        assert_eq!(
            merged,
            FeatureGates::from([("A".into(), true), ("B".into(), false)])
        );
    }

    #[test]
    fn a_template_that_is_not_a_kind_cluster_is_refused() {
        let err = render_config("kind: Pod\n", IMAGE_124, &FeatureGates::new(), "#")
            .unwrap_err()
            .to_string();
        assert!(err.contains("`kind` must be `Cluster`"), "{err}");
    }
}
