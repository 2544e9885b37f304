//! `cargo xtask ci`: the promise that a green local run means a green CI.

use xshell::{cmd, Shell};

use crate::flags::Ci;

impl Ci {
    pub fn run(self, sh: &Shell) -> anyhow::Result<()> {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        cmd!(sh, "{cargo} fmt --all -- --check").run()?;
        cmd!(
            sh,
            "{cargo} clippy --workspace --all-targets -- -D warnings"
        )
        .run()?;
        cmd!(sh, "{cargo} test --workspace").run()?;
        Ok(())
    }
}
