//! `junit.xml`: one test suite per run and one test case per step, for CI test views.
//!
//! Hand-written rather than built with `quick-junit`: the document is a few fixed elements, and
//! the crate would bring `chrono`, `uuid` and `quick-xml` into every build for it. The escaping
//! below is what makes that safe, and the tests parse the output back to prove it.

use std::fmt::Write;

use crate::{Report, Run, Status, StepResult};

/// Renders the report as JUnit XML, tokens redacted. A drift passes (its claim and observation go
/// to `<system-out>`) unless `strict`, where it is a failure like `fail`.
pub fn to_junit(report: &Report, strict: bool) -> String {
    let report = report.redacted();
    let failed = |run: &Run| {
        let c = run.counts();
        c.fail + if strict { c.drift } else { 0 }
    };
    let tests: usize = report.runs.iter().map(|r| r.steps.len()).sum();
    let failures: usize = report.runs.iter().map(failed).sum();
    let skipped = report.counts().skip;

    let mut xml = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let _ = writeln!(
        xml,
        "<testsuites name=\"serviceaccount-guide-replay\" tests=\"{tests}\" failures=\"{failures}\" errors=\"0\" skipped=\"{skipped}\">"
    );
    for run in &report.runs {
        let _ = writeln!(
            xml,
            "  <testsuite name=\"{}\" tests=\"{}\" failures=\"{}\" errors=\"0\" skipped=\"{}\">",
            attr(&run.label()),
            run.steps.len(),
            failed(run),
            run.counts().skip
        );
        properties(&mut xml, run);
        for step in &run.steps {
            testcase(&mut xml, run, step, strict);
        }
        xml.push_str("  </testsuite>\n");
    }
    xml.push_str("</testsuites>\n");
    xml
}

fn properties(xml: &mut String, run: &Run) {
    xml.push_str("    <properties>\n");
    let mut property = |name: &str, value: &str| {
        let _ = writeln!(
            xml,
            "      <property name=\"{}\" value=\"{}\"/>",
            attr(name),
            attr(value)
        );
    };
    property("kubernetes", &run.kubernetes);
    property("provider", &run.provider.to_string());
    for (gate, on) in &run.feature_gates {
        property(&format!("feature-gate:{gate}"), &on.to_string());
    }
    for note in &run.notes {
        property("note", note);
    }
    xml.push_str("    </properties>\n");
}

fn testcase(xml: &mut String, run: &Run, step: &StepResult, strict: bool) {
    let _ = write!(
        xml,
        "    <testcase classname=\"{}\" name=\"{}\"",
        attr(&run.kubernetes),
        attr(&step.id)
    );
    match step.status {
        Status::Holds => xml.push_str("/>\n"),
        Status::Skip => {
            let _ = writeln!(
                xml,
                ">\n      <skipped message=\"{}\"/>\n    </testcase>",
                attr(&step.reason)
            );
        }
        Status::Fail => failure(xml, step, "fail", or(&step.reason, &step.observed)),
        Status::Drift if strict => {
            let message = format!("drift from the page: {}", or(&step.reason, &step.doc_claim));
            failure(xml, step, "drift", &message);
        }
        Status::Drift => {
            let _ = writeln!(
                xml,
                ">\n      <system-out>drift from the page\n{}</system-out>\n    </testcase>",
                text(&details(step))
            );
        }
    }
}

fn failure(xml: &mut String, step: &StepResult, kind: &str, message: &str) {
    let _ = writeln!(
        xml,
        ">\n      <failure message=\"{}\" type=\"{kind}\">{}</failure>\n    </testcase>",
        attr(message),
        text(&details(step))
    );
}

/// The claim, the observation and why, as the body of a failure or of `<system-out>`.
fn details(step: &StepResult) -> String {
    let mut out = format!(
        "vantage: {}\npage says: {}\nobserved:\n{}\n",
        step.vantage, step.doc_claim, step.observed
    );
    if !step.reason.is_empty() {
        let _ = writeln!(out, "why: {}", step.reason);
    }
    if !step.source.is_empty() {
        let _ = writeln!(out, "source: {}", step.source);
    }
    out
}

fn or<'a>(first: &'a str, fallback: &'a str) -> &'a str {
    if first.is_empty() {
        fallback
    } else {
        first
    }
}

/// Escapes element text. Characters XML 1.0 forbids (terminal escapes in command output, say)
/// become U+FFFD: a CI that cannot parse the file would show nothing at all.
fn text(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            c => out.push(valid(c)),
        }
    }
    out
}

/// Escapes an attribute value, keeping line breaks and tabs (a parser would turn them into
/// spaces if they were written raw).
fn attr(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\n' => out.push_str("&#10;"),
            '\r' => out.push_str("&#13;"),
            '\t' => out.push_str("&#9;"),
            c => out.push(valid(c)),
        }
    }
    out
}

fn valid(c: char) -> char {
    match c {
        '\t' | '\n' | '\r' | '\u{20}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'.. => c,
        _ => '\u{FFFD}',
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        fixtures::{jwt, sample_report, tokens_everywhere},
        shorten_token,
    };

    fn attribute<'a>(node: roxmltree::Node<'a, '_>, name: &str) -> &'a str {
        node.attribute(name)
            .unwrap_or_else(|| panic!("no {name} on {node:?}"))
    }

    #[test]
    fn junit_parses_with_a_suite_per_run_and_a_case_per_step() {
        let report = sample_report();
        let xml = to_junit(&report, false);
        let doc = roxmltree::Document::parse(&xml).unwrap();
        let root = doc.root_element();
        assert_eq!(root.tag_name().name(), "testsuites");
        assert_eq!(attribute(root, "tests"), "8");
        assert_eq!(attribute(root, "failures"), "1");
        assert_eq!(attribute(root, "skipped"), "1");

        let suites: Vec<_> = root
            .children()
            .filter(|n| n.has_tag_name("testsuite"))
            .collect();
        assert_eq!(suites.len(), 2);
        for (suite, run) in suites.iter().zip(&report.runs) {
            assert_eq!(attribute(*suite, "name"), run.label());
            let cases: Vec<_> = suite
                .children()
                .filter(|n| n.has_tag_name("testcase"))
                .collect();
            let names: Vec<&str> = cases.iter().map(|c| attribute(*c, "name")).collect();
            let ids: Vec<&str> = run.steps.iter().map(|s| s.id.as_str()).collect();
            assert_eq!(names, ids);
            assert!(cases
                .iter()
                .all(|c| attribute(*c, "classname") == run.kubernetes));
            let count = |tag: &str| cases.iter().filter(|c| child(**c, tag).is_some()).count();
            assert_eq!(count("failure").to_string(), attribute(*suite, "failures"));
            assert_eq!(count("skipped").to_string(), attribute(*suite, "skipped"));
            assert_eq!(cases.len().to_string(), attribute(*suite, "tests"));
        }
    }

    fn child<'a, 'i>(node: roxmltree::Node<'a, 'i>, tag: &str) -> Option<roxmltree::Node<'a, 'i>> {
        node.children().find(|n| n.has_tag_name(tag))
    }

    fn case<'a, 'i>(
        doc: &'a roxmltree::Document<'i>,
        version: &str,
        id: &str,
    ) -> roxmltree::Node<'a, 'i> {
        doc.descendants()
            .find(|n| {
                n.has_tag_name("testcase")
                    && n.attribute("classname") == Some(version)
                    && n.attribute("name") == Some(id)
            })
            .unwrap_or_else(|| panic!("no testcase {version} {id}"))
    }

    #[test]
    fn a_fail_is_a_failure_with_its_observation_and_reason() {
        let xml = to_junit(&sample_report(), false);
        let doc = roxmltree::Document::parse(&xml).unwrap();
        let failure = child(case(&doc, "v1.24.17", "pod-running"), "failure").unwrap();
        let message = attribute(failure, "message");
        assert!(
            message.starts_with("pod never scheduled; token eyJhbGciOiJSU..."),
            "{message}"
        );
        // The escaped `<none> & waiting` comes back intact.
        assert!(failure
            .text()
            .unwrap()
            .contains("observed:\nPending <none> & waiting\n"));
    }

    #[test]
    fn a_skip_carries_its_reason() {
        let xml = to_junit(&sample_report(), false);
        let doc = roxmltree::Document::parse(&xml).unwrap();
        let skipped = child(case(&doc, "v1.29.2", "pod-running"), "skipped").unwrap();
        assert_eq!(
            attribute(skipped, "message"),
            "no node: the local provider runs no kubelet"
        );
    }

    #[test]
    fn a_drift_passes_with_claim_and_observation_unless_strict() {
        let report = sample_report();
        let xml = to_junit(&report, false);
        let doc = roxmltree::Document::parse(&xml).unwrap();
        let drift = case(&doc, "v1.29.2", "sa-default-token-secret");
        assert!(child(drift, "failure").is_none());
        let out = child(drift, "system-out").unwrap().text().unwrap();
        assert!(
            out.contains("page says: Tokens: default-token-* | mountable secrets\n"),
            "{out}"
        );
        assert!(out.contains("observed:\nTokens: <none>\n"), "{out}");

        let strict = to_junit(&report, true);
        let doc = roxmltree::Document::parse(&strict).unwrap();
        let failure = child(case(&doc, "v1.29.2", "sa-default-token-secret"), "failure").unwrap();
        assert_eq!(attribute(failure, "type"), "drift");
        assert_eq!(attribute(doc.root_element(), "failures"), "2");
    }

    #[test]
    fn awkward_text_survives_a_round_trip() {
        let mut report = sample_report();
        let nasty = "a \"quoted\" 'x' <tag> & \u{1b}[31mred\u{1b}[0m\nline\ttab ]]> ✅";
        report.runs[0].steps[0].id = nasty.into();
        report.runs[0].steps[0].status = Status::Fail;
        report.runs[0].steps[0].reason = nasty.into();
        let xml = to_junit(&report, false);
        let doc = roxmltree::Document::parse(&xml).unwrap();
        let expected = nasty.replace('\u{1b}', "\u{FFFD}");
        let case = doc
            .descendants()
            .find(|n| n.attribute("name") == Some(expected.as_str()))
            .expect("the id round-trips");
        assert_eq!(
            attribute(child(case, "failure").unwrap(), "message"),
            expected
        );
    }

    #[test]
    fn no_token_reaches_the_junit() {
        let token = jwt();
        for strict in [false, true] {
            let xml = to_junit(&tokens_everywhere(), strict);
            assert!(!xml.contains(&token), "{xml}");
            assert!(xml.contains(&shorten_token(&token)));
        }
    }
}
