//! Writes the report files atomically, and the short summary printed to stdout.

use std::{
    fmt::Write as _,
    io::Write as _,
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
};

use crate::{to_junit, to_markdown, Report, ReportError, Status};

/// The report's files, by name, in the report directory.
pub const JSON_FILE: &str = "report.json";
pub const MARKDOWN_FILE: &str = "report.md";
pub const JUNIT_FILE: &str = "junit.xml";

/// Where [`Report::write`] put each file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Written {
    pub json: PathBuf,
    pub markdown: PathBuf,
    pub junit: PathBuf,
}

impl Report {
    /// Writes `report.json`, `report.md` and `junit.xml` into `dir` (created if needed), tokens
    /// redacted. `strict` makes a drift a JUnit failure, as it makes it fail the exit status.
    pub fn write(&self, dir: &Path, strict: bool) -> Result<Written, ReportError> {
        let redacted = self.redacted();
        let json = serde_json::to_string_pretty(&redacted).expect("a Report always serializes");
        let written = Written {
            json: dir.join(JSON_FILE),
            markdown: dir.join(MARKDOWN_FILE),
            junit: dir.join(JUNIT_FILE),
        };
        write_atomic(&written.json, format!("{json}\n").as_bytes())?;
        write_atomic(&written.markdown, to_markdown(&redacted).as_bytes())?;
        write_atomic(&written.junit, to_junit(&redacted, strict).as_bytes())?;
        Ok(written)
    }
}

/// Writes `bytes` to `path` through a temporary file in the same directory and a rename, so a
/// reader (or an interrupted run) never sees a half-written file. The temporary file is removed
/// if anything fails.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), ReportError> {
    let err = |source| ReportError::Write {
        path: path.into(),
        source,
    };
    // The rename is only atomic within one filesystem, so the temporary file goes beside the
    // target, not in /tmp.
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    std::fs::create_dir_all(dir).map_err(err)?;
    // Named with a leading dot so `Report::from_run_dir` never reads one as a run.
    let mut tmp = tempfile::Builder::new()
        .prefix(".tmp-")
        .suffix(".partial")
        .tempfile_in(dir)
        .map_err(err)?;
    // tempfile creates 0600; a report is for everyone who can read the folder, like any file
    // the run writes (tokens in it are redacted).
    std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o644)).map_err(err)?;
    tmp.write_all(bytes).map_err(err)?;
    tmp.as_file().sync_all().map_err(err)?;
    tmp.persist(path).map_err(|e| err(e.error))?;
    Ok(())
}

/// A few lines for stdout: the step counts of each run, and where the full report is.
pub fn summary(report: &Report, report_dir: &Path) -> String {
    let labels: Vec<String> = report.runs.iter().map(|r| r.label()).collect();
    let width = labels.iter().map(|l| l.chars().count()).max().unwrap_or(0);
    let mut out = String::new();
    for (run, label) in report.runs.iter().zip(&labels) {
        let counts = run.counts();
        let parts: Vec<String> = Status::ALL
            .iter()
            .map(|s| format!("{} {s}", counts.get(*s)))
            .collect();
        let _ = writeln!(out, "{label:width$}  {}", parts.join(", "));
    }
    if report.runs.is_empty() {
        out.push_str("no runs recorded\n");
    }
    let _ = writeln!(out, "report: {}", report_dir.join(MARKDOWN_FILE).display());
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        fixtures::{jwt, sample_report, tokens_everywhere},
        shorten_token,
    };

    #[test]
    fn write_puts_the_three_files_in_the_dir_and_nothing_else() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("nested/report");
        let report = sample_report();
        let written = report.write(&out, false).unwrap();
        let mut names: Vec<String> = std::fs::read_dir(&out)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(names, [JUNIT_FILE, JSON_FILE, MARKDOWN_FILE]);
        let json: Report =
            serde_json::from_str(&std::fs::read_to_string(&written.json).unwrap()).unwrap();
        assert_eq!(json, report.redacted());
        assert!(std::fs::read_to_string(&written.markdown)
            .unwrap()
            .starts_with("# "));
        roxmltree::Document::parse(&std::fs::read_to_string(&written.junit).unwrap()).unwrap();
    }

    #[test]
    fn rewriting_replaces_the_files_without_leaving_temporaries() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(JSON_FILE), "stale").unwrap();
        sample_report().write(dir.path(), false).unwrap();
        sample_report().write(dir.path(), true).unwrap();
        let leftovers: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .filter(|n| n.to_string_lossy().starts_with('.'))
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
        assert_ne!(
            std::fs::read_to_string(dir.path().join(JSON_FILE)).unwrap(),
            "stale"
        );
    }

    #[test]
    fn a_failed_write_leaves_no_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        // A directory where the file should go makes the rename fail after the write.
        let target = dir.path().join("report.json");
        std::fs::create_dir(&target).unwrap();
        std::fs::write(target.join("keep"), "").unwrap();
        let err = write_atomic(&target, b"{}").unwrap_err();
        assert!(matches!(err, ReportError::Write { .. }), "{err}");
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["report.json"]);
    }

    #[test]
    fn report_files_are_readable_like_any_other_output() {
        let dir = tempfile::tempdir().unwrap();
        let written = tokens_everywhere().write(dir.path(), false).unwrap();
        for path in [&written.json, &written.markdown, &written.junit] {
            let mode = std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o644, "{}", path.display());
        }
    }

    #[test]
    fn no_token_reaches_report_json() {
        let dir = tempfile::tempdir().unwrap();
        let token = jwt();
        let written = tokens_everywhere().write(dir.path(), false).unwrap();
        for path in [&written.json, &written.markdown, &written.junit] {
            let text = std::fs::read_to_string(path).unwrap();
            assert!(!text.contains(&token), "{}", path.display());
            assert!(text.contains(&shorten_token(&token)), "{}", path.display());
        }
    }

    #[test]
    fn summary_counts_each_status_per_run_and_names_the_report() {
        let text = summary(&sample_report(), Path::new("target/report"));
        assert_eq!(
            text,
            "v1.24.17 (local)  3 holds, 0 drift, 1 fail, 0 skip\n\
             v1.29.2 (local)   2 holds, 1 drift, 0 fail, 1 skip\n\
             report: target/report/report.md\n"
        );
    }
}
