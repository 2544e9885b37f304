//! Everything that can go wrong while finding, building or caching the binaries.

use std::{io, path::PathBuf};

/// Why the binaries (or etcd) could not be provided.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No `go` executable was found on the search path.
    #[error(
        "Go is not installed (no `go` on PATH): install Go >= {min} from https://go.dev/dl \
         (or a distribution package at least that new; Debian 12's `apt-get install golang` is \
         Go 1.19, too old) and put its bin directory (for example /usr/local/go/bin) on PATH",
        min = crate::go::MIN_GO
    )]
    GoMissing,
    /// `go version` reported a Go older than the Kubernetes modules need.
    #[error(
        "{go} is Go {found}, too old to build Kubernetes: install Go >= {min} from \
         https://go.dev/dl and put it first on PATH",
        go = go.display(),
        min = crate::go::MIN_GO
    )]
    GoTooOld {
        /// The `go` that was found.
        go: PathBuf,
        /// The version it reported.
        found: String,
    },
    /// A helper program (go, apt-get, dpkg-deb, etcd) could not be started or waited for.
    #[error("cannot run {program}")]
    Spawn {
        /// The program, as it was looked up.
        program: String,
        #[source]
        source: io::Error,
    },
    /// The Go module proxy (or the network behind it) refused a module version.
    #[error(
        "the Go module proxy refused {module}@{version}: {detail}\n\
         (check GOPROXY=`go env GOPROXY`, and that {version} is a published tag of {module})"
    )]
    ModuleUnavailable {
        /// The module path, `k8s.io/kubernetes`.
        module: String,
        /// The version asked for, `v1.29.2`.
        version: String,
        /// What Go said.
        detail: String,
    },
    /// The Go module for this version is not in the repository.
    #[error(
        "no Go module to build {version} from: expected {dir}/go.mod (the modules live in \
         k8s-build/ at the repository root)",
        dir = dir.display()
    )]
    ModuleDirMissing {
        /// The pinned release.
        version: String,
        /// Where its module was expected.
        dir: PathBuf,
    },
    /// `go build` failed for a reason other than linking.
    #[error(
        "go build of {binary} {version} failed (full log: {log}):\n{tail}",
        log = log.display()
    )]
    BuildFailed {
        /// The binary being built.
        binary: String,
        /// The pinned release.
        version: String,
        /// Go's full output.
        log: PathBuf,
        /// The last lines of that output.
        tail: String,
    },
    /// Linking failed, also on the retry with `-checklinkname=0`.
    #[error(
        "linking {binary} {version} failed, also with -ldflags=-checklinkname=0 \
         (full log: {log}):\n{tail}",
        log = log.display()
    )]
    LinkFailed {
        /// The binary being built.
        binary: String,
        /// The pinned release.
        version: String,
        /// Go's full output of the retry.
        log: PathBuf,
        /// The last lines of that output.
        tail: String,
    },
    /// A cached binary does not match the sha256 recorded when it was built.
    #[error(
        "cached {binary} at {path} is corrupt or incomplete (sha256 {actual}, the manifest \
         {manifest} says {expected}): delete {dir} and rerun to rebuild it",
        path = path.display(),
        manifest = manifest.display(),
        dir = manifest.parent().unwrap_or(manifest).display()
    )]
    CorruptCache {
        /// The binary's name.
        binary: String,
        /// Its path in the cache.
        path: PathBuf,
        /// The manifest that recorded it.
        manifest: PathBuf,
        /// The digest recorded at build time.
        expected: String,
        /// The digest now, or `missing`.
        actual: String,
    },
    /// The cache manifest cannot be parsed.
    #[error(
        "cache manifest {path} is malformed at line {line}: delete {dir} and rerun to rebuild",
        path = path.display(),
        dir = dir.display()
    )]
    MalformedManifest {
        /// The manifest file.
        path: PathBuf,
        /// The first bad line, 1-based.
        line: usize,
        /// The cache entry to delete.
        dir: PathBuf,
    },
    /// A file or folder of the cache could not be read or written.
    #[error(
        "cannot access {} (the cache is $SA_REPLAY_CACHE, default ~/.cache/sa-replay: it must be \
         a folder this user can write)",
        path.display()
    )]
    Io {
        /// The path involved.
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// No usable etcd, and it could not be fetched from Debian's archive.
    #[error(
        "no etcd found: {detail}\nInstall one of: Debian/Ubuntu `apt-get update && apt-get \
         install etcd-server` (then make sure no etcd service kept running on port 2379: \
         `/etc/init.d/etcd stop`), an etcd >= 3.4 on PATH, or set SA_REPLAY_ETCD to its path"
    )]
    EtcdMissing {
        /// What was tried and how it failed.
        detail: String,
    },
    /// The etcd found does not say it is etcd: cut short, corrupt, or another program.
    #[error(
        "{} does not run as etcd (`etcd --version` printed {printed:?}); {what_to_do}",
        path.display()
    )]
    EtcdUnusable {
        /// The program found.
        path: PathBuf,
        /// What `--version` printed, stdout and stderr.
        printed: String,
        /// Delete the cached copy, or fix the one the user pointed at.
        what_to_do: String,
    },
    /// The etcd found is older than Kubernetes supports.
    #[error(
        "{} is etcd {found}; Kubernetes 1.24 and 1.29 need etcd >= 3.4",
        path.display()
    )]
    EtcdTooOld {
        /// The etcd found.
        path: PathBuf,
        /// The version it reported.
        found: String,
    },
}

impl Error {
    pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(io::Error) -> Error {
        let path = path.into();
        move |source| Error::Io { path, source }
    }
}
