//! `cargo xtask ci`: the promise that a green local run means a green CI.

use std::{path::PathBuf, process::Command};

use xshell::{cmd, Shell};

use crate::flags::Ci;

/// The actionlint the tidy test runs on the workflows; `cargo xtask ci` installs it with Go
/// when it is missing, so a fresh machine checks the workflows instead of skipping them.
pub const ACTIONLINT: &str = "github.com/rhysd/actionlint/cmd/actionlint@v1.7.12";

impl Ci {
    pub fn run(self, sh: &Shell) -> anyhow::Result<()> {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        cmd!(sh, "{cargo} fmt --all -- --check").run()?;
        cmd!(
            sh,
            "{cargo} clippy --workspace --all-targets -- -D warnings"
        )
        .run()?;
        ensure_actionlint(sh);
        cmd!(sh, "{cargo} test --workspace").run()?;
        Ok(())
    }
}

/// Installs the pinned actionlint into `$(go env GOPATH)/bin` unless one is already there or on
/// PATH. Without Go, or if the module proxy refuses, the tidy test says it skipped, and why.
fn ensure_actionlint(sh: &Shell) {
    if find_actionlint().is_some() {
        return;
    }
    if Command::new("go").arg("version").output().is_err() {
        eprintln!(
            "ci: Go is not on PATH, so actionlint cannot be installed; the tidy test will skip it"
        );
        return;
    }
    eprintln!("ci: installing {ACTIONLINT} (once; it lands in $(go env GOPATH)/bin)");
    if let Err(e) = cmd!(sh, "go install {ACTIONLINT}").run() {
        eprintln!("ci: could not install actionlint ({e}); the tidy test will skip it");
    }
}

/// actionlint on PATH, else in `$(go env GOPATH)/bin`.
pub fn find_actionlint() -> Option<PathBuf> {
    let on_path = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|path| std::env::split_paths(&path).collect::<Vec<_>>())
        .map(|dir| dir.join("actionlint"));
    let gopath = Command::new("go")
        .args(["env", "GOPATH"])
        .output()
        .ok()
        .filter(|out| out.status.success())
        .map(|out| {
            PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()).join("bin/actionlint")
        });
    on_path.chain(gopath).find(|path| path.is_file())
}
