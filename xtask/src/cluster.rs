//! `cargo xtask cluster up|down`: one cluster at a time.

use xshell::Shell;

use crate::flags::{ClusterCmd, ClusterDown, ClusterUp};

impl ClusterCmd {
    pub fn run(self, sh: &Shell) -> anyhow::Result<()> {
        match self {
            ClusterCmd::Up(up) => up.run(sh),
            ClusterCmd::Down(down) => down.run(sh),
        }
    }
}

impl ClusterUp {
    pub fn run(self, _sh: &Shell) -> anyhow::Result<()> {
        anyhow::bail!("cluster up is not built yet")
    }
}

impl ClusterDown {
    pub fn run(self, _sh: &Shell) -> anyhow::Result<()> {
        anyhow::bail!("cluster down is not built yet")
    }
}
