//! The one error type of this crate: each variant says what failed and what to do about it.

use std::{io, path::PathBuf};

/// Why the node runtime could not be prepared, started or torn down.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Debian packages the node needs are missing, and this process may not install them.
    #[error(
        "missing Debian packages: {}; install them as root with `apt-get update && apt-get install -y {}`",
        missing.join(", "), missing.join(" ")
    )]
    MissingPackages { missing: Vec<String> },

    /// The node needs root (network namespaces, mounts, iptables, cgroups).
    #[error("{what} needs root; run as root (e.g. through `cargo xtask`, or sudo)")]
    NotRoot { what: &'static str },

    /// A program could not be started at all.
    #[error("cannot run `{program}`; is it installed?")]
    Spawn {
        program: String,
        #[source]
        source: io::Error,
    },

    /// A program ran and failed.
    #[error("`{command}` failed ({status}): {stderr}")]
    Command {
        command: String,
        status: String,
        stderr: String,
    },

    /// Reading or writing a file or folder failed.
    #[error("cannot {action} {}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    /// A daemon we started exited before it answered.
    #[error("{component} exited before it was ready; its log {} ends with:\n{tail}", log.display())]
    Exited {
        component: &'static str,
        log: PathBuf,
        tail: String,
    },

    /// A daemon we started did not answer in time.
    #[error("{component} was not ready after {secs}s; see {}:\n{tail}", log.display())]
    NotReady {
        component: &'static str,
        secs: u64,
        log: PathBuf,
        tail: String,
    },

    /// The loopback registry refused an upload.
    #[error("pushing {what} to the loopback registry failed")]
    Push {
        what: String,
        #[source]
        source: Box<ureq::Error>,
    },

    /// The registry answered a push in a way the distribution API does not allow.
    #[error("the loopback registry answered {what} unexpectedly: {detail}")]
    Registry { what: String, detail: String },

    /// Every candidate pod subnet overlaps a host route or another run's bridge.
    #[error("no free pod subnet among {tried}; see `ip route` and remove stale bridges (`cargo xtask cluster down` runs cleanup)")]
    NoFreeSubnet { tried: String },

    /// A shared library a program in an image needs is not on this machine.
    #[error("{program} needs {library}, which is not installed; install the Debian package that ships it")]
    MissingLibrary { program: String, library: String },

    /// A cached image no longer has the files its manifest names, or they changed.
    #[error("the cached image in {} is incomplete or corrupt; delete that folder and run again to rebuild it", dir.display())]
    BrokenCache { dir: PathBuf },

    /// A JSON file we wrote could not be read back.
    #[error("cannot parse {}", path.display())]
    Json {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
}

impl Error {
    /// An [`Error::Io`] for `path`.
    pub(crate) fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(io::Error) -> Error {
        let path = path.into();
        move |source| Error::Io {
            action,
            path,
            source,
        }
    }
}
