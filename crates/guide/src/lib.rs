//! The page being replayed: its step catalogue, and its manifests and commands as printed.
//!
//! `page/service-accounts.txt` is a verbatim copy of the published guide and
//! `page/STEPS.md` the catalogue that gives its steps stable ids. Manifests are cut out of
//! the page text itself, so what the suites apply is what a reader would copy.

mod page;
mod steps;

pub use page::{
    pod_manifest, secret_manifest, PAGE, PAGE_API_URL, PAGE_EXPORT_LINE, PAGE_FORBIDDEN_WORDING,
    PAGE_TOKEN_PREFIX,
};
pub use steps::{step, Step, STEPS};

/// Step ids in catalogue order, the order of every report.
pub fn step_ids() -> Vec<&'static str> {
    STEPS.iter().map(|s| s.id).collect()
}
