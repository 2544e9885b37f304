//! Repository invariants as tests (rust-analyzer's `tidy.rs`): every copy of a pinned version
//! agrees with `crates/pins`, and the workflows parse and run the pinned matrix.
//!
//! Pins are written once in `crates/pins/src/lib.rs` and copied where a tool needs them spelled
//! out (kind-config.yaml, the workflows, the Go modules, docs); these tests are what keeps the
//! copies from drifting when a pin moves.

use std::{
    collections::BTreeSet,
    io::Write,
    path::{Path, PathBuf},
    process::Command,
};

use pins::{KubePin, KIND_VERSION, KUBERNETES};
use serde_yaml::Value;

use crate::{
    ci::{find_actionlint, ACTIONLINT},
    project_root,
};

#[test]
fn kind_config_lists_exactly_the_pinned_node_images() {
    let text = read("kind-config.yaml");
    let found: BTreeSet<String> = tokens_after(&text, "kindest/node:").collect();
    let pinned: BTreeSet<String> = KUBERNETES
        .iter()
        .map(|pin| {
            pin.kind_node_image
                .trim_start_matches("kindest/node:")
                .to_string()
        })
        .collect();
    assert_eq!(
        found, pinned,
        "kind-config.yaml must name each pinned node image (crates/pins/src/lib.rs), and no other"
    );

    let doc: Value = serde_yaml::from_str(&text).expect("kind-config.yaml is YAML");
    assert_eq!(doc["kind"], "Cluster");
    assert_eq!(doc["apiVersion"], "kind.x-k8s.io/v1alpha4");
    assert_eq!(
        doc["networking"]["apiServerAddress"], "127.0.0.1",
        "the API server stays on loopback"
    );
}

#[test]
fn every_node_image_named_anywhere_is_a_pin() {
    let mut wrong = Vec::new();
    for (path, text) in repo_text_files() {
        for tag in tokens_after(&text, "kindest/node:") {
            // Tokens without a version (a prose mention, a format string) are not copies.
            if !tag.starts_with('v') {
                continue;
            }
            let matches = KUBERNETES.iter().any(|pin| {
                let pinned = pin.kind_node_image.trim_start_matches("kindest/node:");
                // A tag alone must be a pinned tag; with a digest it must be the pinned digest.
                pinned == tag || (!tag.contains('@') && pinned.split('@').next() == Some(&tag))
            });
            if !matches {
                wrong.push(format!("{}: kindest/node:{tag}", path.display()));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "node images that are not pinned in crates/pins/src/lib.rs:\n{}",
        wrong.join("\n")
    );
}

#[test]
fn every_copy_of_the_kind_version_is_the_pin() {
    let mut wrong = Vec::new();
    for (path, text) in repo_text_files() {
        // `sigs.k8s.io/kind@${KIND_VERSION}` is covered by the `KIND_VERSION:` it expands.
        let mut versions: Vec<String> = tokens_after(&text, "sigs.k8s.io/kind@")
            .filter(|version| version.starts_with('v'))
            .collect();
        if is_doc_or_yaml(&path) {
            versions.extend(
                tokens_after(&text, "KIND_VERSION: ")
                    .filter(|value| value.starts_with(|c: char| c == 'v' || c.is_ascii_digit())),
            );
            // Prose like "kind v0.22.0"; Rust sources are left out, where test fixtures
            // spell other versions on purpose.
            versions.extend(tokens_after(&text, "kind v0.").map(|rest| format!("v0.{rest}")));
        }
        for version in versions {
            let version = version.trim_end_matches('.');
            if version != KIND_VERSION {
                wrong.push(format!("{}: kind {version}", path.display()));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "kind versions other than pins::KIND_VERSION ({KIND_VERSION}):\n{}",
        wrong.join("\n")
    );
}

#[test]
fn docs_and_yaml_name_the_pinned_kubernetes_patch_releases() {
    let mut wrong = Vec::new();
    for (path, text) in repo_text_files() {
        if !is_doc_or_yaml(&path) {
            continue;
        }
        for pin in KUBERNETES {
            let prefix = format!("v{}.", pin.minor);
            for rest in tokens_after(&text, &prefix) {
                let patch: String = rest.chars().take_while(char::is_ascii_digit).collect();
                if patch.is_empty() {
                    continue;
                }
                let named = format!("{prefix}{patch}");
                if named != pin.version {
                    wrong.push(format!(
                        "{}: {named} (pinned: {})",
                        path.display(),
                        pin.version
                    ));
                }
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "Kubernetes releases other than the pinned ones:\n{}",
        wrong.join("\n")
    );
}

#[test]
fn go_modules_require_the_pinned_kubernetes() {
    let root = project_root().join("k8s-build");
    let mut seen = BTreeSet::new();
    for entry in std::fs::read_dir(&root).expect("k8s-build/ exists") {
        let dir = entry.unwrap().path();
        let Some(name) = dir.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        if !dir.join("go.mod").is_file() {
            continue;
        }
        let pin = KubePin::find(name)
            .unwrap_or_else(|err| panic!("k8s-build/{name} is not a pinned version: {err}"));
        let go_mod = std::fs::read_to_string(dir.join("go.mod")).unwrap();
        let required: Vec<&str> = go_mod
            .lines()
            .filter_map(|line| line.trim().strip_prefix("require k8s.io/kubernetes "))
            .chain(go_mod.lines().filter_map(|line| {
                // Inside a `require (` block the line starts with the module path.
                line.trim()
                    .strip_prefix("k8s.io/kubernetes ")
                    .filter(|rest| rest.starts_with('v'))
            }))
            .map(|version| version.split_whitespace().next().unwrap_or_default())
            .collect();
        assert_eq!(
            required,
            [pin.version],
            "k8s-build/{name}/go.mod must require k8s.io/kubernetes {} once",
            pin.version
        );
        seen.insert(pin.minor);
    }
    let pinned: BTreeSet<&str> = KUBERNETES.iter().map(|pin| pin.minor).collect();
    assert_eq!(
        seen, pinned,
        "one k8s-build/v<minor>/go.mod per pinned minor"
    );
}

#[test]
fn workflows_parse_as_yaml() {
    let workflows = workflow_files();
    assert!(
        workflows.iter().any(|p| p.ends_with("ci.yml"))
            && workflows.iter().any(|p| p.ends_with("e2e.yml")),
        "{workflows:?}"
    );
    for path in workflows {
        let text = std::fs::read_to_string(&path).unwrap();
        let doc: Value = serde_yaml::from_str(&text)
            .unwrap_or_else(|err| panic!("{} is not YAML: {err}", path.display()));
        assert!(doc["jobs"].is_mapping(), "{} has no jobs", path.display());
    }
}

#[test]
fn the_e2e_workflow_runs_every_pinned_minor_on_kind() {
    let doc = workflow("e2e.yml");
    let job = &doc["jobs"]["e2e"];
    let matrix: Vec<&str> = job["strategy"]["matrix"]["k8s"]
        .as_sequence()
        .expect("e2e.yml: jobs.e2e.strategy.matrix.k8s is a list")
        .iter()
        .map(|minor| {
            minor
                .as_str()
                .expect("minors are strings: \"1.24\", not 1.24")
        })
        .collect();
    let pinned: Vec<&str> = KUBERNETES.iter().map(|pin| pin.minor).collect();
    assert_eq!(matrix, pinned, "e2e.yml's matrix is the pinned minors");
    assert_eq!(job["strategy"]["fail-fast"], Value::Bool(false));
    assert_eq!(doc["env"]["KIND_VERSION"], KIND_VERSION);

    let steps = job_steps(job);
    assert!(
        steps
            .iter()
            .any(|s| s.contains("cargo xtask e2e --provider kind --k8s \"${{ matrix.k8s }}\"")),
        "e2e.yml runs `cargo xtask e2e --provider kind` per matrix entry"
    );
    assert!(steps.iter().any(|s| s.contains("Swatinem/rust-cache")));
    assert!(steps.iter().any(|s| s.contains("GITHUB_STEP_SUMMARY")));
    for minor in &pinned {
        let go_mod = project_root().join(format!("k8s-build/v{minor}/go.mod"));
        assert!(go_mod.is_file(), "setup-go reads {}", go_mod.display());
    }
}

#[test]
fn the_ci_workflow_is_cargo_xtask_ci() {
    let doc = workflow("ci.yml");
    let steps: Vec<String> = doc["jobs"]
        .as_mapping()
        .unwrap()
        .values()
        .flat_map(job_steps)
        .collect();
    assert!(steps.iter().any(|s| s == "cargo xtask ci"), "{steps:?}");
    // `cargo xtask ci` installs actionlint with Go; the workflow only has to provide Go.
    assert!(
        steps.iter().any(|s| s.starts_with("actions/setup-go@")),
        "{steps:?}"
    );
}

#[test]
fn actions_are_pinned_to_a_release() {
    for path in workflow_files() {
        let text = std::fs::read_to_string(&path).unwrap();
        for action in tokens_after(&text, "uses: ") {
            let (name, version) = action.split_once('@').unwrap_or((&action, ""));
            // dtolnay/rust-toolchain's refs are toolchain names (`stable`), by its design.
            if name == "dtolnay/rust-toolchain" {
                continue;
            }
            assert!(
                version.starts_with('v') || version.len() == 40,
                "{}: `{action}` should name a release tag or a commit, not a branch",
                path.display()
            );
        }
    }
}

#[test]
fn actionlint_passes_on_the_workflows() {
    let Some(actionlint) = find_actionlint() else {
        // Written past the test harness's capture so a skip is never silent.
        let _ = writeln!(
            std::io::stderr(),
            "tidy: actionlint SKIPPED: not on PATH nor in $(go env GOPATH)/bin; install it with `go install {ACTIONLINT}`"
        );
        return;
    };
    let output = Command::new(&actionlint)
        .arg("-color=false")
        .args(workflow_files())
        .current_dir(project_root())
        .output()
        .expect("actionlint runs");
    assert!(
        output.status.success(),
        "{} found problems:\n{}{}",
        actionlint.display(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

fn workflow(name: &str) -> Value {
    let text = read(&format!(".github/workflows/{name}"));
    serde_yaml::from_str(&text).unwrap_or_else(|err| panic!("{name} is not YAML: {err}"))
}

/// Each step of a job as one string: its `uses`, or its `run` script.
fn job_steps(job: &Value) -> Vec<String> {
    job["steps"]
        .as_sequence()
        .map(|steps| {
            steps
                .iter()
                .filter_map(|step| step["run"].as_str().or_else(|| step["uses"].as_str()))
                .map(|s| s.trim().to_string())
                .collect()
        })
        .unwrap_or_default()
}

fn workflow_files() -> Vec<PathBuf> {
    let dir = project_root().join(".github/workflows");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .map(|entries| {
            entries
                .map(|entry| entry.unwrap().path())
                .filter(|path| {
                    matches!(
                        path.extension().and_then(|e| e.to_str()),
                        Some("yml" | "yaml")
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    files
}

fn read(relative: &str) -> String {
    let path = project_root().join(relative);
    std::fs::read_to_string(&path).unwrap_or_else(|err| panic!("{}: {err}", path.display()))
}

fn is_doc_or_yaml(path: &Path) -> bool {
    matches!(
        path.extension().and_then(|e| e.to_str()),
        Some("md" | "yml" | "yaml")
    )
}

/// What follows each `needle` in `text`, up to the first character that cannot be part of an
/// image reference or version: a tag and digest, `v0.22.0`, `owner/action@v4`.
fn tokens_after<'a>(text: &'a str, needle: &'a str) -> impl Iterator<Item = String> + 'a {
    text.match_indices(needle).map(move |(at, _)| {
        text[at + needle.len()..]
            .chars()
            .take_while(|c| {
                c.is_ascii_alphanumeric() || matches!(c, '.' | ':' | '@' | '_' | '-' | '/')
            })
            .collect()
    })
}

/// Every text file of the repository, by path relative to the root, skipping build output,
/// git's own files and Go checksums (which name every dependency's version).
fn repo_text_files() -> Vec<(PathBuf, String)> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<(PathBuf, String)>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if path.is_dir() {
                let skipped = matches!(name.as_ref(), "target" | "node_modules" | ".git")
                    || (name.starts_with('.') && name != ".github" && name != ".cargo");
                if !skipped {
                    walk(root, &path, out);
                }
            } else if name != "go.sum" && name != "Cargo.lock" {
                let small = entry
                    .metadata()
                    .map(|m| m.len() < 2_000_000)
                    .unwrap_or(false);
                if let (true, Ok(text)) = (small, std::fs::read_to_string(&path)) {
                    let relative = path.strip_prefix(root).unwrap_or(&path).to_path_buf();
                    out.push((relative, text));
                }
            }
        }
    }
    let root = project_root();
    let mut out = Vec::new();
    walk(&root, &root, &mut out);
    out
}
