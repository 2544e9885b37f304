//! The page's kubectl commands, run as printed with kubectl at the cluster's version.

use std::{process::Stdio, time::Duration};

use anyhow::Context;
use tokio::io::AsyncWriteExt;

use crate::target::Target;

/// How long one kubectl command may take before the step fails.
const KUBECTL_TIMEOUT: Duration = Duration::from_secs(60);

/// What a command printed, with every token already shortened.
#[derive(Debug)]
pub struct Printed {
    pub command: String,
    pub stdout: String,
    pub stderr: String,
    pub code: Option<i32>,
}

impl Printed {
    pub fn success(&self) -> bool {
        self.code == Some(0)
    }

    /// Fails unless the command exited 0, showing what it printed.
    pub fn ok(self) -> anyhow::Result<Printed> {
        anyhow::ensure!(
            self.success(),
            "`{}` exited {:?}: {}",
            self.command,
            self.code,
            self.stderr.trim()
        );
        Ok(self)
    }
}

impl Target {
    /// `kubectl ARGS` against this cluster only (its own kubeconfig, never the user's).
    pub async fn kubectl(&self, args: &[&str]) -> anyhow::Result<Printed> {
        self.kubectl_with_stdin(args, None).await
    }

    /// `kubectl ARGS <<EOF ... EOF`, as the page applies its Secret.
    pub async fn kubectl_with_stdin(
        &self,
        args: &[&str],
        stdin: Option<&str>,
    ) -> anyhow::Result<Printed> {
        let raw = self.kubectl_raw(args, stdin).await?;
        Ok(Printed {
            command: format!("kubectl {}", args.join(" ")),
            stdout: report::redact(&raw.stdout).into_owned(),
            stderr: report::redact(&raw.stderr).into_owned(),
            code: raw.code,
        })
    }

    /// Like [`Target::kubectl_with_stdin`] but unredacted, for reading a token in the pod.
    /// Callers must wrap what they read in [`crate::jwt::Token`] or redact it.
    pub async fn kubectl_raw(&self, args: &[&str], stdin: Option<&str>) -> anyhow::Result<Raw> {
        let command = format!("kubectl {}", args.join(" "));
        let mut child = tokio::process::Command::new(&self.info.kubectl)
            .arg("--kubeconfig")
            .arg(&self.info.kubeconfig)
            .args(args)
            .env_remove("KUBECONFIG")
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| {
                format!(
                    "running {} (kubectl at the cluster's version)",
                    self.info.kubectl.display()
                )
            })?;
        if let Some(input) = stdin {
            let mut pipe = child.stdin.take().expect("stdin is piped");
            pipe.write_all(input.as_bytes()).await?;
        }
        let output = tokio::time::timeout(KUBECTL_TIMEOUT, child.wait_with_output())
            .await
            .with_context(|| format!("`{command}` did not finish within {KUBECTL_TIMEOUT:?}"))??;
        Ok(Raw::from(output))
    }
}

/// Unredacted output of a command. No `Debug`: it may hold a token.
pub struct Raw {
    pub stdout: String,
    pub stderr: String,
    pub code: Option<i32>,
}

impl Raw {
    /// What it printed, tokens shortened, stdout then stderr.
    pub fn shown(&self) -> String {
        let both = format!("{}{}", self.stdout, self.stderr);
        report::redact(both.trim()).into_owned()
    }
}

impl From<std::process::Output> for Raw {
    fn from(output: std::process::Output) -> Raw {
        Raw {
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
            code: output.status.code(),
        }
    }
}
