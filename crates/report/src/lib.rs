//! The replay report: what each cluster version did with each step of the guide, and the files
//! that show it.
//!
//! Every writer passes every free-text field through [`redact`], so a service-account token that
//! a caller forgot to shorten never reaches a file that CI uploads.

mod redact;

pub use redact::{redact, shorten_token};

#[cfg(test)]
mod fixtures;
