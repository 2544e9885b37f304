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
