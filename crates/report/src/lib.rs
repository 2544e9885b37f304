//! The replay report: what each cluster version did with each step of the guide, and the files
//! (`report.json`, `report.md`, `junit.xml`) that show it.
//!
//! The e2e suites record one [`Run`] per cluster and save it with [`Run::save`]; the xtask
//! assembles them with [`Report::from_run_dir`] and writes the report with [`Report::write`].
//! Every writer passes every free-text field through [`redact`], so a service-account token that
//! a caller forgot to shorten never reaches a file that CI uploads.

mod junit;
mod markdown;
mod model;
mod redact;
mod write;

use std::path::PathBuf;

pub use junit::to_junit;
pub use markdown::to_markdown;
pub use model::{Counts, Report, Run, Status, StepResult, Vantage};
pub use redact::{redact, shorten_token};
pub use write::{summary, Written, JSON_FILE, JUNIT_FILE, MARKDOWN_FILE};

/// Reading runs or writing the report failed.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// The directory of per-run files could not be listed.
    #[error("cannot list the run files in {dir}")]
    ListRuns {
        dir: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The directory holds no run file, so there is nothing to report.
    #[error("no run files (*.json) in {dir}; run the e2e suites first")]
    NoRuns { dir: PathBuf },
    /// A run file could not be read.
    #[error("cannot read the run file {path}")]
    ReadRun {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A run file is not the JSON of one run.
    #[error("{path} is not a valid run file; rerun the e2e suite for that version to rewrite it")]
    MalformedRun {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    /// A report or run file could not be written.
    #[error("cannot write {path}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

#[cfg(test)]
mod fixtures;
