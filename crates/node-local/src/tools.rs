//! crictl, the CRI's command-line client, for tests and debugging: Debian bookworm ships no
//! `cri-tools`, so it is built once with `go install` (a Go module from the module proxy)
//! into `$SA_REPLAY_CACHE/tools/`. The version is the newest the proxy here serves; it
//! speaks CRI v1, which containerd 1.6 serves.

use std::path::{Path, PathBuf};

use crate::{process, Error};

/// The cri-tools module version built.
pub const CRICTL_VERSION: &str = "v1.34.0";

/// Path to a crictl binary, built on first use.
pub fn crictl(cache_root: &Path) -> Result<PathBuf, Error> {
    let dir = cache_root
        .join("tools")
        .join(format!("crictl-{CRICTL_VERSION}"));
    let bin = dir.join("crictl");
    if bin.is_file() {
        return Ok(bin);
    }
    let scratch = dir.with_extension(format!("tmp-{}", std::process::id()));
    std::fs::create_dir_all(&scratch).map_err(Error::io("create", &scratch))?;
    let out = std::process::Command::new("go")
        .args([
            "install",
            &format!("sigs.k8s.io/cri-tools/cmd/crictl@{CRICTL_VERSION}"),
        ])
        .env("GOBIN", &scratch)
        .env("CGO_ENABLED", "0")
        .output()
        .map_err(|source| Error::Spawn {
            program: "go".into(),
            source,
        })?;
    if !out.status.success() {
        let _ = std::fs::remove_dir_all(&scratch);
        return Err(Error::Command {
            command: format!("go install sigs.k8s.io/cri-tools/cmd/crictl@{CRICTL_VERSION}"),
            status: out.status.to_string(),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    if std::fs::rename(&scratch, &dir).is_err() {
        let _ = std::fs::remove_dir_all(&scratch);
    }
    let _ = process::run(bin.to_str().unwrap_or("crictl"), ["--version"])?;
    Ok(bin)
}
