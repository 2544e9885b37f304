//! `cargo xtask`: the project's tasks in plain Rust (see `.cargo/config.toml` for the alias).
//!
//! One module per task; each flags struct has `fn run(self, sh: &Shell) -> anyhow::Result<()>`.

mod bench;
mod ci;
mod cluster;
mod e2e;
mod flags;
mod providers;
#[cfg(test)]
mod tidy;

use clap::Parser;
use xshell::Shell;

/// Errors end the process with their chain of causes, not a backtrace: they are for users.
fn main() -> std::process::ExitCode {
    match run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run() -> anyhow::Result<()> {
    let flags = flags::Xtask::parse();
    forget_cargo_run_env();
    pin_cache_dir();
    let sh = Shell::new()?;
    sh.change_dir(project_root());
    match flags.command {
        flags::Command::Cluster(cmd) => cmd.run(&sh),
        flags::Command::E2e(cmd) => cmd.run(&sh),
        flags::Command::Ci(cmd) => cmd.run(&sh),
        flags::Command::Bench(cmd) => cmd.run(&sh),
    }
}

/// The workspace root, whatever folder `cargo xtask` was called from.
pub fn project_root() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives one level below the workspace root")
        .to_path_buf()
}

/// `cargo run` hands this process its package's variables (`CARGO_MANIFEST_DIR` and the
/// like); passed on to the `cargo` this task runs, they reach build scripts that watch them
/// (ring's watches `CARGO_MANIFEST_DIR`) and rebuild half the dependency graph, twice a run.
fn forget_cargo_run_env() {
    let leaked: Vec<_> = std::env::vars_os()
        .map(|(name, _)| name)
        .filter(|name| {
            let name = name.to_string_lossy();
            name.starts_with("CARGO_PKG_")
                || [
                    "CARGO_MANIFEST_DIR",
                    "CARGO_MANIFEST_PATH",
                    "CARGO_MANIFEST_LINKS",
                    "CARGO_BIN_NAME",
                    "CARGO_CRATE_NAME",
                    "CARGO_PRIMARY_PACKAGE",
                ]
                .contains(&name.as_ref())
        })
        .collect();
    for name in leaked {
        // Before this process starts any thread.
        std::env::remove_var(name);
    }
}

/// A relative `$SA_REPLAY_CACHE` means the folder the user typed it in; the suites and tests
/// this task starts run elsewhere, so they are handed it as an absolute path.
fn pin_cache_dir() {
    if std::env::var_os(k8s_binaries::CACHE_ENV).is_some_and(|d| !d.is_empty()) {
        // Set before this process starts any thread; only child processes read it after.
        std::env::set_var(k8s_binaries::CACHE_ENV, k8s_binaries::cache_root());
    }
}
