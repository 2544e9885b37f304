//! `report.md`: the steps-by-version table and the details of every drift, failure and skip,
//! written to read well both in a terminal and as a GitHub step summary.

use std::fmt::Write;

use crate::{Report, Run, Status, StepResult, Vantage};

/// Renders the report as Markdown, tokens redacted.
pub fn to_markdown(report: &Report) -> String {
    let report = report.redacted();
    let mut md = String::new();
    md.push_str("# ServiceAccount guide replay\n\n");
    if report.runs.is_empty() {
        md.push_str("No runs were recorded.\n");
        return md;
    }
    table(&mut md, &report);
    runs(&mut md, &report);
    details(&mut md, &report, Status::Fail, "Failures");
    details(&mut md, &report, Status::Drift, "Drift from the page");
    skips(&mut md, &report);
    md
}

fn table(md: &mut String, report: &Report) {
    md.push_str("| step |");
    for run in &report.runs {
        let _ = write!(md, " {} |", cell(&run.label()));
    }
    md.push_str("\n|---|");
    for _ in &report.runs {
        md.push_str("---|");
    }
    md.push('\n');
    for id in report.step_ids() {
        let _ = write!(md, "| `{}` |", cell(id));
        for run in &report.runs {
            match run.steps.iter().find(|s| s.id == id) {
                // Say when a pod step was seen from the host: the reader must know the pod
                // never ran there.
                Some(step) if step.vantage == Vantage::Host => {
                    let _ = write!(md, " {} {} (host) |", step.status.marker(), step.status);
                }
                Some(step) => {
                    let _ = write!(md, " {} {} |", step.status.marker(), step.status);
                }
                None => md.push_str(" — |"),
            }
        }
        md.push('\n');
    }
    md.push('\n');
}

fn runs(md: &mut String, report: &Report) {
    md.push_str("## Clusters\n\n");
    for run in &report.runs {
        let gates = if run.feature_gates.is_empty() {
            "none".to_string()
        } else {
            run.feature_gates
                .iter()
                .map(|(name, on)| format!("`{name}={on}`"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let counts = run.counts();
        let _ = write!(
            md,
            "- **{}**: {} holds, {} drift, {} fail, {} skip; feature gates: {}",
            prose(&run.label()),
            counts.holds,
            counts.drift,
            counts.fail,
            counts.skip,
            gates
        );
        md.push('\n');
        // One nested bullet per note: a provider's notes can be long (package lists), and a
        // component's error spans lines, which must not end the bullet.
        for note in &run.notes {
            let _ = writeln!(md, "  - {}", one_line(note));
        }
    }
    md.push('\n');
}

fn details(md: &mut String, report: &Report, status: Status, title: &str) {
    let found: Vec<(&Run, &StepResult)> = report
        .runs
        .iter()
        .flat_map(|run| run.steps.iter().map(move |step| (run, step)))
        .filter(|(_, step)| step.status == status)
        .collect();
    if found.is_empty() {
        return;
    }
    let _ = writeln!(md, "## {title}\n");
    for (run, step) in found {
        let _ = writeln!(
            md,
            "### {} `{}` on {}\n",
            status.marker(),
            step.id,
            prose(&run.label())
        );
        let _ = writeln!(md, "**The page says:** {}\n", paragraph(&step.doc_claim));
        let _ = writeln!(md, "**Observed** (from the {}):\n", step.vantage);
        fenced(md, &step.observed);
        if !step.reason.is_empty() {
            let _ = writeln!(md, "**Why:** {}\n", paragraph(&step.reason));
        }
        if !step.source.is_empty() {
            let _ = writeln!(md, "**Source:** {}\n", paragraph(&step.source));
        }
    }
}

fn skips(md: &mut String, report: &Report) {
    let mut any = false;
    for run in &report.runs {
        for step in run.steps.iter().filter(|s| s.status == Status::Skip) {
            if !any {
                md.push_str("## Skipped\n\n");
                any = true;
            }
            let reason = if step.reason.is_empty() {
                "no reason given".to_string()
            } else {
                one_line(&step.reason)
            };
            let _ = writeln!(
                md,
                "- {} `{}` on {}: {}",
                Status::Skip.marker(),
                step.id,
                prose(&run.label()),
                reason
            );
        }
    }
    if any {
        md.push('\n');
    }
}

/// Observed output verbatim, in a fence longer than any run of backticks inside it, so
/// command output can neither end the block early nor be read as Markdown or HTML
/// (kubectl prints `<none>`, which GitHub would swallow as a tag).
fn fenced(md: &mut String, text: &str) {
    let longest = text.split(|c| c != '`').map(str::len).max().unwrap_or(0);
    let fence = "`".repeat(longest.max(2) + 1);
    let body = if text.is_empty() { "(nothing)" } else { text };
    let _ = writeln!(
        md,
        "{fence}text\n{}\n{fence}\n",
        body.trim_end_matches('\n')
    );
}

/// Text for a Markdown table cell: a `|` would end the cell and a newline the row.
fn cell(text: &str) -> String {
    prose(text).replace('|', "\\|").replace('\n', "<br>")
}

/// Free text in a paragraph: keep `<none>` and the like visible instead of parsed as HTML.
fn prose(text: &str) -> String {
    text.replace('<', "\\<")
}

/// A paragraph may span lines, but a blank line would end it and a `#` could start a heading,
/// so keep it on one line.
fn paragraph(text: &str) -> String {
    one_line(text)
}

fn one_line(text: &str) -> String {
    prose(text)
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        fixtures::{jwt, sample_report, tokens_everywhere},
        shorten_token,
    };

    fn table_rows(md: &str) -> Vec<&str> {
        md.lines().filter(|l| l.starts_with("| `")).collect()
    }

    /// Splits a table row on unescaped `|`.
    fn cells(row: &str) -> Vec<String> {
        let mut cells = vec![String::new()];
        let mut chars = row.trim().trim_matches('|').chars().peekable();
        while let Some(c) = chars.next() {
            match c {
                '\\' if chars.peek() == Some(&'|') => {
                    cells.last_mut().unwrap().push('|');
                    chars.next();
                }
                '|' => cells.push(String::new()),
                c => cells.last_mut().unwrap().push(c),
            }
        }
        cells.iter().map(|c| c.trim().to_string()).collect()
    }

    #[test]
    fn the_table_has_a_row_per_step_and_a_column_per_run() {
        let report = sample_report();
        let md = to_markdown(&report);
        let header = md.lines().find(|l| l.starts_with("| step |")).unwrap();
        assert_eq!(
            cells(header),
            ["step", "v1.24.17 (local)", "v1.29.2 (local)"]
        );
        let rows = table_rows(&md);
        let ids: Vec<String> = rows.iter().map(|r| cells(r)[0].clone()).collect();
        assert_eq!(
            ids,
            [
                "`sa-default-listed`",
                "`sa-default-token-secret`",
                "`pod-running`",
                "`token-shape`",
                "`api-token-no-rbac`"
            ]
        );
        for row in &rows {
            assert_eq!(cells(row).len(), 1 + report.runs.len(), "{row}");
        }
        let secret_row = cells(rows[1]);
        assert_eq!(secret_row[1], "✅ holds");
        assert_eq!(secret_row[2], "⚠️ drift");
        let pod_row = cells(rows[2]);
        assert_eq!(pod_row[1], "❌ fail");
        assert_eq!(pod_row[2], "⏭ skip");
        assert_eq!(cells(rows[3])[2], "—", "token-shape did not run on v1.29.2");
        assert_eq!(cells(rows[4])[2], "✅ holds (host)");
    }

    #[test]
    fn pipes_and_newlines_cannot_break_the_table() {
        assert_eq!(cell("a | b\nc"), "a \\| b<br>c");
        let mut report = sample_report();
        report.runs[0].steps[0].id = "odd|id\nhere".into();
        let md = to_markdown(&report);
        let row = md.lines().find(|l| l.starts_with("| `odd")).unwrap();
        assert_eq!(cells(row).len(), 3, "{row}");
    }

    #[test]
    fn runs_show_their_feature_gates_and_notes() {
        let md = to_markdown(&sample_report());
        assert!(
            md.contains(
                "- **v1.29.2 (local)**: 2 holds, 1 drift, 0 fail, 1 skip; feature gates: \
             `LegacyServiceAccountTokenCleanUp=false`\n  - no node: pod steps run from the host\n"
            ),
            "{md}"
        );
        assert!(md.contains("- **v1.24.17 (local)**: 3 holds, 0 drift, 1 fail, 0 skip; feature gates: none\n  - kubelet runs as a local process\n"), "{md}");
    }

    #[test]
    fn a_note_of_many_lines_stays_one_bullet() {
        let mut report = sample_report();
        report.runs[0].notes = vec![
            "the replay did not run: kube-apiserver said:\n\nE1204 unrecognized feature gate\n# not a heading".into(),
        ];
        let md = to_markdown(&report);
        assert!(
            md.contains("  - the replay did not run: kube-apiserver said: E1204 unrecognized feature gate # not a heading\n"),
            "{md}"
        );
    }

    #[test]
    fn every_drift_and_failure_has_a_section_with_claim_observation_reason_and_source() {
        let md = to_markdown(&sample_report());
        let drift = md
            .split("### ⚠️ `sa-default-token-secret` on v1.29.2 (local)")
            .nth(1)
            .unwrap();
        assert!(drift.contains("**The page says:** Tokens: default-token-* | mountable secrets"));
        // The observed text holds a triple backtick, so the fence is longer.
        assert!(
            drift.contains("````text\nTokens: <none>\n```\nnot a fence end\n````"),
            "{drift}"
        );
        assert!(drift.contains("**Why:** token secrets are no longer auto-generated"));
        assert!(drift.contains("**Source:** https://kubernetes.io/docs/"));
        let fail = md
            .split("### ❌ `pod-running` on v1.24.17 (local)")
            .nth(1)
            .unwrap();
        assert!(
            fail.contains("```text\nPending <none> & waiting\n```"),
            "{fail}"
        );
        assert!(md.find("## Failures").unwrap() < md.find("## Drift from the page").unwrap());
    }

    #[test]
    fn skips_are_listed_with_their_reason() {
        let md = to_markdown(&sample_report());
        assert!(md.contains(
            "## Skipped\n\n- ⏭ `pod-running` on v1.29.2 (local): no node: the local provider runs no kubelet\n"
        ), "{md}");
    }

    #[test]
    fn no_token_reaches_the_markdown() {
        let token = jwt();
        let md = to_markdown(&tokens_everywhere());
        assert!(!md.contains(&token), "{md}");
        assert!(md.contains(&shorten_token(&token)));
    }
}
