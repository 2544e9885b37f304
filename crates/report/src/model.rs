//! The report model, in the exact shape of `report.json`, and the merge of per-run files.

use std::{
    cmp::Ordering,
    collections::HashMap,
    fmt,
    path::{Path, PathBuf},
    process::ExitCode,
};

use cluster::{FeatureGates, Provider};
use serde::{Deserialize, Serialize};

use crate::{redact::redact, write::write_atomic, ReportError};

/// Every run of the replay, sorted by Kubernetes version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Report {
    pub runs: Vec<Run>,
}

/// One replay of the guide against one cluster.
// Unknown fields are refused so that a typo in an e2e suite shows up as a malformed run file
// instead of a silently missing column.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Run {
    /// The release the cluster runs, `v1.29.2`.
    pub kubernetes: String,
    pub provider: Provider,
    #[serde(default)]
    pub feature_gates: FeatureGates,
    /// How the cluster was made, when it matters to the reader (for example that it has no node).
    #[serde(default)]
    pub notes: Vec<String>,
    pub steps: Vec<StepResult>,
}

/// What one step of the guide did on one cluster.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StepResult {
    /// The step id from the catalogue (`guide`), `sa-create`.
    pub id: String,
    pub status: Status,
    pub vantage: Vantage,
    /// What the page says you will see.
    pub doc_claim: String,
    /// What the replay saw.
    pub observed: String,
    /// Why the step drifted, failed or was skipped; may be empty when it holds.
    // Always serialized (even when empty) so consumers of report.json can rely on the key.
    #[serde(default)]
    pub reason: String,
    /// Where the truth for this version is documented (a KEP, a changelog, a doc page).
    #[serde(default)]
    pub source: String,
}

/// How the observation compares with the page.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// The page's claim matches what the cluster did.
    Holds,
    /// The page is wrong or provider-specific for this version; the cluster behaved as upstream
    /// Kubernetes should.
    Drift,
    /// The cluster did not do what Kubernetes should at this version.
    Fail,
    /// The step could not be replayed here; `reason` says why.
    Skip,
}

impl Status {
    /// Every status, in the order reports list them.
    pub const ALL: [Status; 4] = [Status::Holds, Status::Drift, Status::Fail, Status::Skip];

    /// The word used in `report.json`.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Holds => "holds",
            Status::Drift => "drift",
            Status::Fail => "fail",
            Status::Skip => "skip",
        }
    }

    /// A marker that reads in a terminal and in a GitHub step summary alike.
    pub fn marker(self) -> &'static str {
        match self {
            Status::Holds => "✅",
            Status::Drift => "⚠️",
            Status::Fail => "❌",
            Status::Skip => "⏭",
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where the step was observed from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Vantage {
    /// Through the API server, as `kubectl` on the page does.
    Cluster,
    /// From inside the page's pod.
    Pod,
    /// From the host, standing in for the pod on a cluster without a node.
    Host,
}

impl Vantage {
    /// The word used in `report.json`.
    pub fn as_str(self) -> &'static str {
        match self {
            Vantage::Cluster => "cluster",
            Vantage::Pod => "pod",
            Vantage::Host => "host",
        }
    }
}

impl fmt::Display for Vantage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How many steps of a run (or of a report) ended in each status.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub holds: usize,
    pub drift: usize,
    pub fail: usize,
    pub skip: usize,
}

impl Counts {
    /// The count for one status.
    pub fn get(&self, status: Status) -> usize {
        match status {
            Status::Holds => self.holds,
            Status::Drift => self.drift,
            Status::Fail => self.fail,
            Status::Skip => self.skip,
        }
    }

    fn add(&mut self, status: Status) {
        *match status {
            Status::Holds => &mut self.holds,
            Status::Drift => &mut self.drift,
            Status::Fail => &mut self.fail,
            Status::Skip => &mut self.skip,
        } += 1;
    }

    /// All steps counted.
    pub fn total(&self) -> usize {
        self.holds + self.drift + self.fail + self.skip
    }
}

impl StepResult {
    /// A step with empty `reason` and `source`, to fill in as needed.
    pub fn new(
        id: impl Into<String>,
        status: Status,
        vantage: Vantage,
        doc_claim: impl Into<String>,
        observed: impl Into<String>,
    ) -> Self {
        StepResult {
            id: id.into(),
            status,
            vantage,
            doc_claim: doc_claim.into(),
            observed: observed.into(),
            reason: String::new(),
            source: String::new(),
        }
    }

    /// Sets why the step drifted, failed or was skipped.
    pub fn with_reason(mut self, reason: impl Into<String>) -> Self {
        self.reason = reason.into();
        self
    }

    /// Sets where the truth for this version is documented.
    pub fn with_source(mut self, source: impl Into<String>) -> Self {
        self.source = source.into();
        self
    }

    fn redacted(&self) -> StepResult {
        StepResult {
            id: redact(&self.id).into_owned(),
            status: self.status,
            vantage: self.vantage,
            doc_claim: redact(&self.doc_claim).into_owned(),
            observed: redact(&self.observed).into_owned(),
            reason: redact(&self.reason).into_owned(),
            source: redact(&self.source).into_owned(),
        }
    }
}

impl Run {
    /// An empty run for a cluster.
    pub fn new(kubernetes: impl Into<String>, provider: Provider) -> Self {
        Run {
            kubernetes: kubernetes.into(),
            provider,
            feature_gates: FeatureGates::new(),
            notes: Vec::new(),
            steps: Vec::new(),
        }
    }

    /// The minor release, `1.29` for `v1.29.2`; `None` when the version does not parse.
    pub fn minor(&self) -> Option<String> {
        let (major, minor, _) = parse_version(&self.kubernetes)?.0;
        Some(format!("{major}.{minor}"))
    }

    /// Orders runs by Kubernetes version (numerically, so `v1.9` comes before `v1.29`, and a
    /// pre-release before its release), then by provider. Versions that do not parse come last.
    pub fn cmp_version(&self, other: &Run) -> Ordering {
        let key = |run: &Run| {
            let parsed = parse_version(&run.kubernetes);
            // `None` must sort last, so compare "is unparsed" first.
            (parsed.is_none(), parsed)
        };
        key(self)
            .cmp(&key(other))
            .then_with(|| self.kubernetes.cmp(&other.kubernetes))
            .then_with(|| self.provider.to_string().cmp(&other.provider.to_string()))
    }

    /// `v1.29.2 (local)`: how the report names this run to a reader.
    pub fn label(&self) -> String {
        format!("{} ({})", self.kubernetes, self.provider)
    }

    /// The name [`Run::save`] gives this run's file: `v1.29.2-local.json`. The provider is part
    /// of it so that a local and a kind cluster at the same version do not overwrite each other.
    pub fn file_name(&self) -> String {
        let safe: String = self
            .kubernetes
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || "._-".contains(c) {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        format!("{safe}-{}.json", self.provider)
    }

    /// Counts the steps by status.
    pub fn counts(&self) -> Counts {
        let mut counts = Counts::default();
        for step in &self.steps {
            counts.add(step.status);
        }
        counts
    }

    /// Writes this run, redacted, as `dir/<file_name>` (atomically, so the xtask never reads a
    /// half-written run) and returns the path. Creates `dir` if needed.
    pub fn save(&self, dir: &Path) -> Result<PathBuf, ReportError> {
        let path = dir.join(self.file_name());
        let json = serde_json::to_vec_pretty(&self.redacted()).expect("a Run always serializes");
        write_atomic(&path, &json)?;
        Ok(path)
    }

    /// Reads a run file written by [`Run::save`] (or by hand, in the same shape).
    pub fn load(path: &Path) -> Result<Run, ReportError> {
        let bytes = std::fs::read(path).map_err(|source| ReportError::ReadRun {
            path: path.into(),
            source,
        })?;
        serde_json::from_slice(&bytes).map_err(|source| ReportError::MalformedRun {
            path: path.into(),
            source,
        })
    }

    /// Sorts the steps into catalogue order. Steps the catalogue does not know keep their
    /// relative order and go last, so nothing recorded is ever dropped from the report.
    pub fn sort_steps(&mut self, order: &[&str]) {
        let rank: HashMap<&str, usize> = order.iter().enumerate().map(|(i, id)| (*id, i)).collect();
        self.steps
            .sort_by_key(|step| rank.get(step.id.as_str()).copied().unwrap_or(usize::MAX));
    }

    pub(crate) fn redacted(&self) -> Run {
        Run {
            kubernetes: redact(&self.kubernetes).into_owned(),
            provider: self.provider,
            feature_gates: self.feature_gates.clone(),
            notes: self.notes.iter().map(|n| redact(n).into_owned()).collect(),
            steps: self.steps.iter().map(StepResult::redacted).collect(),
        }
    }
}

impl Report {
    /// Assembles the report from the per-run files (`*.json`) in `dir`: runs sorted by version,
    /// steps in the order of `order` (the catalogue's step ids, which live in `guide`).
    pub fn from_run_dir(dir: &Path, order: &[&str]) -> Result<Report, ReportError> {
        let list_err = |source| ReportError::ListRuns {
            dir: dir.into(),
            source,
        };
        let mut paths = Vec::new();
        for entry in std::fs::read_dir(dir).map_err(list_err)? {
            let path = entry.map_err(list_err)?.path();
            // Skip the temporary files of a save in progress: they start with a dot.
            let hidden = path
                .file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with('.'));
            if !hidden && path.extension().is_some_and(|e| e == "json") && path.is_file() {
                paths.push(path);
            }
        }
        if paths.is_empty() {
            return Err(ReportError::NoRuns { dir: dir.into() });
        }
        // Read in name order so that equal runs come out in the same order on every machine.
        paths.sort();
        let runs = paths
            .iter()
            .map(|path| Run::load(path))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Report::from_runs(runs, order))
    }

    /// Builds a report from runs, sorted as [`Report::from_run_dir`] sorts them.
    pub fn from_runs(mut runs: Vec<Run>, order: &[&str]) -> Report {
        runs.sort_by(Run::cmp_version);
        for run in &mut runs {
            run.sort_steps(order);
        }
        Report { runs }
    }

    /// Step counts over all runs.
    pub fn counts(&self) -> Counts {
        let mut counts = Counts::default();
        for step in self.runs.iter().flat_map(|r| &r.steps) {
            counts.add(step.status);
        }
        counts
    }

    /// Whether the replay passes: no `fail`, and with `strict` no `drift` either.
    pub fn passes(&self, strict: bool) -> bool {
        let counts = self.counts();
        counts.fail == 0 && (!strict || counts.drift == 0)
    }

    /// The process exit code for the replay, per [`Report::passes`].
    pub fn exit_status(&self, strict: bool) -> ExitCode {
        if self.passes(strict) {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        }
    }

    /// Every step id in the report, in an order that respects each run's order: an id missing
    /// from one run still lands next to its neighbours from the others.
    pub fn step_ids(&self) -> Vec<&str> {
        let mut ids: Vec<&str> = Vec::new();
        for run in &self.runs {
            for (i, step) in run.steps.iter().enumerate() {
                if ids.contains(&step.id.as_str()) {
                    continue;
                }
                // Place an unseen id just before the next id of this run already placed.
                let next = run.steps[i + 1..]
                    .iter()
                    .find_map(|s| ids.iter().position(|id| *id == s.id));
                match next {
                    Some(at) => ids.insert(at, &step.id),
                    None => ids.push(&step.id),
                }
            }
        }
        ids
    }

    /// The same report with every free-text field passed through [`redact`].
    pub fn redacted(&self) -> Report {
        Report {
            runs: self.runs.iter().map(Run::redacted).collect(),
        }
    }
}

type VersionKey = ((u64, u64, u64), bool);

/// `v1.29.2` → `((1, 29, 2), true)`; the flag is false for a pre-release (`v1.30.0-rc.1`) so that
/// it sorts before the release.
fn parse_version(version: &str) -> Option<VersionKey> {
    let v = version.strip_prefix('v').unwrap_or(version);
    // `-` starts a pre-release; `+` starts build metadata, which is still a release.
    let (core, release) = match v.find(['-', '+']) {
        Some(at) => (&v[..at], v.as_bytes()[at] == b'+'),
        None => (v, true),
    };
    let mut parts = core.split('.').map(|p| p.parse::<u64>().ok());
    let major = parts.next()??;
    let minor = parts.next()??;
    let patch = parts.next().unwrap_or(Some(0))?;
    if parts.next().is_some() {
        return None;
    }
    Some(((major, minor, patch), release))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        fixtures::{jwt, sample_report, STEP_ORDER},
        shorten_token,
    };

    #[test]
    fn json_has_exactly_the_documented_keys() {
        let value = serde_json::to_value(sample_report()).unwrap();
        let keys = |v: &serde_json::Value| {
            let mut k: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
            k.sort();
            k
        };
        assert_eq!(keys(&value), ["runs"]);
        let run = &value["runs"][0];
        assert_eq!(
            keys(run),
            ["feature_gates", "kubernetes", "notes", "provider", "steps"]
        );
        assert_eq!(run["provider"], "local");
        assert!(run["feature_gates"].is_object());
        for step in value["runs"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|r| r["steps"].as_array().unwrap())
        {
            assert_eq!(
                keys(step),
                [
                    "doc_claim",
                    "id",
                    "observed",
                    "reason",
                    "source",
                    "status",
                    "vantage"
                ]
            );
        }
    }

    #[test]
    fn empty_reason_and_source_keep_their_keys() {
        let step = StepResult::new("sa-create", Status::Holds, Vantage::Cluster, "a", "b");
        let value = serde_json::to_value(&step).unwrap();
        assert_eq!(value["reason"], "");
        assert_eq!(value["source"], "");
    }

    #[test]
    fn status_and_vantage_are_lowercase_in_json() {
        for status in Status::ALL {
            assert_eq!(
                serde_json::to_value(status).unwrap(),
                serde_json::Value::from(status.as_str())
            );
        }
        for vantage in [Vantage::Cluster, Vantage::Pod, Vantage::Host] {
            assert_eq!(
                serde_json::to_value(vantage).unwrap(),
                serde_json::Value::from(vantage.as_str())
            );
        }
    }

    #[test]
    fn report_round_trips_through_json() {
        let report = sample_report();
        let json = serde_json::to_string(&report).unwrap();
        assert_eq!(serde_json::from_str::<Report>(&json).unwrap(), report);
    }

    #[test]
    fn runs_sort_numerically_by_version() {
        let runs = [
            "v1.29.2",
            "v1.9.0",
            "v1.24.17",
            "v1.30.0",
            "v1.30.0-rc.1",
            "nonsense",
        ]
        .map(|v| Run::new(v, Provider::Local))
        .to_vec();
        let report = Report::from_runs(runs, &[]);
        let versions: Vec<&str> = report.runs.iter().map(|r| r.kubernetes.as_str()).collect();
        assert_eq!(
            versions,
            [
                "v1.9.0",
                "v1.24.17",
                "v1.29.2",
                "v1.30.0-rc.1",
                "v1.30.0",
                "nonsense"
            ]
        );
    }

    #[test]
    fn minor_is_major_dot_minor() {
        assert_eq!(
            Run::new("v1.29.2", Provider::Kind).minor().as_deref(),
            Some("1.29")
        );
        assert_eq!(Run::new("latest", Provider::Kind).minor(), None);
    }

    #[test]
    fn steps_follow_the_catalogue_and_unknown_ids_go_last() {
        let mut run = Run::new("v1.29.2", Provider::Local);
        for id in [
            "zz-extra",
            "api-token-rbac",
            "sa-create",
            "sa-default-listed",
        ] {
            run.steps
                .push(StepResult::new(id, Status::Holds, Vantage::Cluster, "", ""));
        }
        run.sort_steps(STEP_ORDER);
        let ids: Vec<&str> = run.steps.iter().map(|s| s.id.as_str()).collect();
        assert_eq!(
            ids,
            [
                "sa-default-listed",
                "sa-create",
                "api-token-rbac",
                "zz-extra"
            ]
        );
    }

    #[test]
    fn from_run_dir_merges_saved_runs() {
        let dir = tempfile::tempdir().unwrap();
        let sample = sample_report();
        // Save in reverse so the merge has to sort.
        for run in sample.runs.iter().rev() {
            let mut shuffled = run.clone();
            shuffled.steps.reverse();
            shuffled.save(dir.path()).unwrap();
        }
        // A stray file from a save in progress must not be read.
        std::fs::write(dir.path().join(".tmp-half.json"), "{").unwrap();
        let merged = Report::from_run_dir(dir.path(), STEP_ORDER).unwrap();
        assert_eq!(merged, sample.redacted());
    }

    #[test]
    fn saved_runs_are_redacted() {
        let dir = tempfile::tempdir().unwrap();
        let token = jwt();
        let mut run = Run::new("v1.29.2", Provider::Local);
        run.steps.push(StepResult::new(
            "token-shape",
            Status::Holds,
            Vantage::Pod,
            "a JWT",
            format!("token: {token}"),
        ));
        let path = run.save(dir.path()).unwrap();
        let text = std::fs::read_to_string(path).unwrap();
        assert!(!text.contains(&token));
        assert!(text.contains(&shorten_token(&token)));
    }

    #[test]
    fn an_empty_run_dir_says_to_run_the_suites() {
        let dir = tempfile::tempdir().unwrap();
        let err = Report::from_run_dir(dir.path(), STEP_ORDER).unwrap_err();
        assert!(matches!(err, ReportError::NoRuns { .. }), "{err}");
        assert!(err.to_string().contains("run the e2e suites"), "{err}");
    }

    #[test]
    fn a_malformed_run_file_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v1.29.2-local.json");
        std::fs::write(&path, r#"{"kubernetes":"v1.29.2"}"#).unwrap();
        let err = Report::from_run_dir(dir.path(), STEP_ORDER).unwrap_err();
        assert!(matches!(err, ReportError::MalformedRun { .. }), "{err}");
        assert!(err.to_string().contains("v1.29.2-local.json"), "{err}");
    }

    #[test]
    fn exit_status_fails_on_fail_and_on_drift_when_strict() {
        let mut report = sample_report();
        for run in &mut report.runs {
            run.steps.retain(|s| s.status != Status::Fail);
        }
        assert!(report.passes(false));
        assert!(!report.passes(true), "the sample has a drift");
        report.runs[0].steps[0].status = Status::Fail;
        assert!(!report.passes(false));
        assert_eq!(report.exit_status(false), ExitCode::FAILURE);
    }

    #[test]
    fn step_ids_keep_a_missing_step_next_to_its_neighbours() {
        let run = |ids: &[&str]| {
            let mut run = Run::new("v1.29.2", Provider::Local);
            for id in ids {
                run.steps.push(StepResult::new(
                    *id,
                    Status::Holds,
                    Vantage::Cluster,
                    "",
                    "",
                ));
            }
            run
        };
        let report = Report {
            runs: vec![run(&["a", "c"]), run(&["a", "b", "c"]), run(&["d", "c"])],
        };
        assert_eq!(report.step_ids(), ["a", "b", "d", "c"]);
    }
}
