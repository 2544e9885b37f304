//! Talking to the Go toolchain: finding it, asking the module proxy about a version, and
//! reading its failures.

use std::{
    ffi::{OsStr, OsString},
    path::{Path, PathBuf},
    process::Command,
};

use serde::Deserialize;

use crate::Error;

/// The oldest Go the modules in `k8s-build/` accept (their `go` directive).
pub const MIN_GO: &str = "1.21";

/// Finds `go` on `path` (a PATH-style list), like a shell would.
pub fn find_go(path: &OsStr) -> Result<PathBuf, Error> {
    find_on_path("go", path).ok_or(Error::GoMissing)
}

/// Looks `program` up in a PATH-style list, keeping only executable files.
pub fn find_on_path(program: &str, path: &OsStr) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    std::env::split_paths(path)
        .map(|dir| dir.join(program))
        .find(|candidate| {
            candidate
                .metadata()
                .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
                .unwrap_or(false)
        })
}

/// Runs `go version` and checks it against [`MIN_GO`]; returns `go1.26.8`.
pub fn check_version(go: &Path, path: &OsStr) -> Result<String, Error> {
    let output = Command::new(go)
        .arg("version")
        .env("PATH", path)
        .output()
        .map_err(|source| Error::Spawn {
            program: go.display().to_string(),
            source,
        })?;
    let text = String::from_utf8_lossy(&output.stdout);
    let version = parse_go_version(&text).unwrap_or_else(|| text.trim().to_string());
    if !version_at_least(&version, MIN_GO) {
        return Err(Error::GoTooOld {
            go: go.to_path_buf(),
            found: version,
        });
    }
    Ok(version)
}

/// `go version go1.26.8 linux/amd64` -> `go1.26.8`.
pub fn parse_go_version(text: &str) -> Option<String> {
    text.split_whitespace()
        .find(|word| word.starts_with("go1"))
        .map(str::to_string)
}

/// Compares `go1.26.8` (or `1.26`) with `1.21`, numerically.
pub fn version_at_least(version: &str, min: &str) -> bool {
    let numbers = |v: &str| -> Vec<u32> {
        v.trim_start_matches("go")
            .split(['.', 'r', 'b', '-'])
            .map_while(|p| p.parse().ok())
            .collect()
    };
    let (have, want) = (numbers(version), numbers(min));
    !have.is_empty() && have >= want
}

/// What `go mod download -json` prints for one module.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ModuleDownload {
    pub path: Option<String>,
    pub version: Option<String>,
    pub error: Option<String>,
    pub info: Option<PathBuf>,
    pub origin: Option<Origin>,
}

/// The proxy's record of where a version came from: for a tag, the commit.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Origin {
    pub hash: Option<String>,
}

/// The `.info` file of a module version: its commit time.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Info {
    time: Option<String>,
}

/// The commit and commit time of `module@version`, downloading it if needed.
///
/// The commit comes from the proxy's `Origin` record (present for versions fetched since Go
/// 1.20 from proxies that record it); without it the binaries simply carry no gitCommit.
pub fn module_origin(
    go: &Path,
    path: &OsStr,
    module_dir: &Path,
    module: &str,
    version: &str,
) -> Result<(Option<String>, Option<String>), Error> {
    let output = Command::new(go)
        .args(["mod", "download", "-json"])
        .arg(format!("{module}@{version}"))
        .current_dir(module_dir)
        .env("PATH", path)
        .output()
        .map_err(|source| Error::Spawn {
            program: go.display().to_string(),
            source,
        })?;
    let parsed: Option<ModuleDownload> = serde_json::from_slice(&output.stdout).ok();
    let refused = |detail: String| Error::ModuleUnavailable {
        module: module.to_string(),
        version: version.to_string(),
        detail,
    };
    let download = match parsed {
        Some(d) if d.error.is_none() && output.status.success() => d,
        Some(ModuleDownload {
            error: Some(detail),
            ..
        }) => return Err(refused(detail)),
        _ => {
            return Err(refused(
                String::from_utf8_lossy(&output.stderr).trim().to_string(),
            ))
        }
    };
    let commit = download.origin.and_then(|o| o.hash);
    let time = download
        .info
        .and_then(|info| std::fs::read(info).ok())
        .and_then(|bytes| serde_json::from_slice::<Info>(&bytes).ok())
        .and_then(|info| info.time);
    Ok((commit, time))
}

/// Picks `module@version` out of Go's complaint about a module it could not fetch, such as
/// `go: example.com/m@v1.2.3: reading https://proxy.golang.org/...: 404 Not Found`.
pub fn module_fetch_failure(stderr: &str) -> Option<(String, String, String)> {
    const SIGNS: [&str; 7] = [
        "404 Not Found",
        "410 Gone",
        "unknown revision",
        "invalid version",
        "reading https://",
        "verifying module",
        "dial tcp",
    ];
    stderr.lines().find_map(|line| {
        if !SIGNS.iter().any(|sign| line.contains(sign)) {
            return None;
        }
        // The first `path@version` token of the line names the module.
        let token = line
            .split_whitespace()
            .map(|w| w.trim_end_matches(':'))
            .find(|w| w.contains('@') && !w.contains("://"))?;
        let (module, version) = token.split_once('@')?;
        Some((
            module.to_string(),
            version.to_string(),
            line.trim().to_string(),
        ))
    })
}

/// Whether a failed `go build` failed at the link step. Go 1.23 started refusing
/// `//go:linkname` references into the standard library that old dependencies still make
/// (Go 1.23 release notes, "Linker"); `-checklinkname=0` turns that check off.
pub fn is_link_failure(stderr: &str) -> bool {
    stderr.lines().any(|line| {
        line.contains("/link: ")
            || line.starts_with("link: ")
            || line.contains("invalid reference to")
            || line.contains("linkname")
    })
}

/// The last `n` lines of a text, for error messages.
pub fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// The PATH to search: the given one, or the process's.
pub fn search_path(given: Option<&OsStr>) -> OsString {
    given
        .map(OsStr::to_os_string)
        .or_else(|| std::env::var_os("PATH"))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_go_version_output() {
        assert_eq!(
            parse_go_version("go version go1.26.8 linux/amd64\n").as_deref(),
            Some("go1.26.8")
        );
        assert!(version_at_least("go1.26.8", MIN_GO));
        assert!(version_at_least("go1.21", MIN_GO));
        assert!(version_at_least("go1.22rc1", MIN_GO));
        assert!(!version_at_least("go1.19.8", MIN_GO));
        assert!(!version_at_least("garbage", MIN_GO));
    }

    #[test]
    fn a_path_without_go_is_a_clear_error() {
        let empty = tempfile::tempdir().unwrap();
        let err = find_go(empty.path().as_os_str()).unwrap_err().to_string();
        assert!(err.contains("Go is not installed"), "{err}");
        assert!(err.contains("go.dev"), "{err}");
        assert!(err.contains("too old"), "{err}");
    }

    #[test]
    fn names_the_module_the_proxy_refused() {
        let stderr = "go: downloading k8s.io/api v0.29.2\n\
            go: k8s.io/kubernetes@v1.99.0: reading https://proxy.golang.org/k8s.io/kubernetes/@v/v1.99.0.info: 404 Not Found\n";
        let (module, version, line) = module_fetch_failure(stderr).unwrap();
        assert_eq!(
            (module.as_str(), version.as_str()),
            ("k8s.io/kubernetes", "v1.99.0")
        );
        assert!(line.contains("404"), "{line}");
        assert!(module_fetch_failure("# k8s.io/foo\n./x.go:1: undefined: y\n").is_none());
    }

    #[test]
    fn recognises_link_failures() {
        assert!(is_link_failure(
            "# k8s.io/kubernetes/cmd/kubelet\n/usr/local/go/pkg/tool/linux_amd64/link: \
             github.com/x/y: invalid reference to runtime.foo\n"
        ));
        assert!(!is_link_failure("./main.go:3:2: undefined: x\n"));
    }

    #[test]
    fn tails_text() {
        assert_eq!(tail("a\nb\nc\n", 2), "b\nc");
        assert_eq!(tail("a", 5), "a");
    }
}
