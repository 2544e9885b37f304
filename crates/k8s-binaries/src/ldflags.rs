//! The `-ldflags` that stamp the version into the binaries, as Kubernetes' own build does.
//!
//! Source: `hack/lib/version.sh` (`kube::version::ldflags`) at both pinned tags. It sets every
//! key on `k8s.io/component-base/version` (read by `/version` and `--version` of the servers)
//! and on `k8s.io/client-go/pkg/version` (read by kubectl's client version). Without them a
//! `go build` reports `v0.0.0-master+$Format:%H$` and the e2e check of `/version` fails.

/// The version facts `hack/lib/version.sh` derives from git.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionInfo {
    /// `v1.29.2`: the release tag.
    pub git_version: String,
    /// `1`.
    pub git_major: String,
    /// `29`: version.sh writes the minor without a `+` for an exact release tag.
    pub git_minor: String,
    /// The tag's commit, from the module proxy's origin record, when it gives one.
    pub git_commit: Option<String>,
    /// `clean`: the module zip is the tag's tree, untouched.
    pub git_tree_state: &'static str,
    /// RFC 3339 UTC. We use the tag's commit time so that rebuilds are reproducible
    /// (version.sh honours SOURCE_DATE_EPOCH the same way).
    pub build_date: String,
}

/// The packages version.sh stamps, without the `vendor/` prefix: our modules do not vendor.
const VERSION_PACKAGES: [&str; 2] = [
    "k8s.io/client-go/pkg/version",
    "k8s.io/component-base/version",
];

impl VersionInfo {
    /// Splits `v1.29.2` into its parts; `None` if it is not `vMAJOR.MINOR.PATCH`.
    pub fn for_release(
        git_version: &str,
        git_commit: Option<String>,
        build_date: String,
    ) -> Option<VersionInfo> {
        let mut parts = git_version.strip_prefix('v')?.split('.');
        let major = parts.next().filter(|p| p.parse::<u32>().is_ok())?;
        let minor = parts.next().filter(|p| p.parse::<u32>().is_ok())?;
        Some(VersionInfo {
            git_version: git_version.to_string(),
            git_major: major.to_string(),
            git_minor: minor.to_string(),
            git_commit,
            git_tree_state: "clean",
            build_date,
        })
    }
}

/// The single `-ldflags` argument for `go build`.
///
/// `-s -w` strip the symbol table and DWARF, as release builds do (version.sh leaves them on
/// only for `DBG=1`). `extra` goes last, for `-checklinkname=0`.
pub fn ldflags(info: &VersionInfo, extra: &[&str]) -> String {
    let mut keys: Vec<(&str, &str)> = vec![("buildDate", &info.build_date)];
    // version.sh only sets gitCommit/gitTreeState when it knows the commit.
    if let Some(commit) = &info.git_commit {
        keys.push(("gitCommit", commit));
        keys.push(("gitTreeState", info.git_tree_state));
    }
    keys.push(("gitVersion", &info.git_version));
    keys.push(("gitMajor", &info.git_major));
    keys.push(("gitMinor", &info.git_minor));

    let mut flags = vec!["-s".to_string(), "-w".to_string()];
    for (key, value) in keys {
        for package in VERSION_PACKAGES {
            flags.push(format!("-X {package}.{key}={value}"));
        }
    }
    flags.extend(extra.iter().map(|e| e.to_string()));
    flags.join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info() -> VersionInfo {
        VersionInfo::for_release(
            "v1.29.2",
            Some("4b8e819355d791d96b7e9d9efe4cbafae2311c88".into()),
            "2024-02-14T10:32:39Z".into(),
        )
        .unwrap()
    }

    #[test]
    fn splits_a_release_tag() {
        let info = info();
        assert_eq!(
            (info.git_major.as_str(), info.git_minor.as_str()),
            ("1", "29")
        );
        assert_eq!(info.git_tree_state, "clean");
        assert!(VersionInfo::for_release("1.29.2", None, String::new()).is_none());
        assert!(VersionInfo::for_release("vX.Y", None, String::new()).is_none());
    }

    #[test]
    fn stamps_both_version_packages_with_every_key() {
        let flags = ldflags(&info(), &[]);
        for package in VERSION_PACKAGES {
            for kv in [
                "gitVersion=v1.29.2",
                "gitMajor=1",
                "gitMinor=29",
                "gitCommit=4b8e819355d791d96b7e9d9efe4cbafae2311c88",
                "gitTreeState=clean",
                "buildDate=2024-02-14T10:32:39Z",
            ] {
                let want = format!("-X {package}.{kv}");
                assert!(flags.contains(&want), "missing {want} in {flags}");
            }
        }
        assert!(flags.starts_with("-s -w "), "{flags}");
    }

    #[test]
    fn leaves_commit_and_tree_state_out_when_the_commit_is_unknown() {
        let mut info = info();
        info.git_commit = None;
        let flags = ldflags(&info, &[]);
        assert!(
            !flags.contains("gitCommit") && !flags.contains("gitTreeState"),
            "{flags}"
        );
        assert!(flags.contains("gitVersion=v1.29.2"), "{flags}");
    }

    #[test]
    fn extra_flags_go_last() {
        let flags = ldflags(&info(), &["-checklinkname=0"]);
        assert!(flags.ends_with(" -checklinkname=0"), "{flags}");
    }
}
