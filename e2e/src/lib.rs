//! The e2e harness: replays every step of the guide on each cluster `cargo xtask e2e` started.
//!
//! `tests/steps.rs` holds one test per step id, run for every version. The first test of a
//! version replays the whole page once on that cluster (the page is a procedure: each step
//! builds on the last) and saves the run for the report; every test then asserts its own
//! step's row. The tests are `#[ignore]`d so plain `cargo test` never needs a cluster.

mod expect;
mod jwt;
mod kubectl;
mod replay;
mod shell;
mod steps;
mod target;
mod text;

pub use replay::{assert_step, REPORT_DIR_ENV};

#[cfg(test)]
mod tests {
    const SUITE: &str = include_str!("../tests/steps.rs");

    #[test]
    fn every_step_id_has_its_own_test() {
        for id in guide::step_ids() {
            let call = format!("e2e::assert_step(minor, \"{id}\");");
            let name = format!("fn {}(", id.replace('-', "_"));
            assert!(
                SUITE.contains(&call) && SUITE.contains(&name),
                "no test for step {id}"
            );
        }
    }

    #[test]
    fn the_suite_runs_every_pinned_version() {
        for pin in pins::KUBERNETES {
            let case = format!(
                "#[case::v{}(\"{}\")]",
                pin.minor.replace('.', "_"),
                pin.minor
            );
            assert!(
                SUITE.contains(&case),
                "tests/steps.rs has no case for {}",
                pin.minor
            );
        }
    }
}
