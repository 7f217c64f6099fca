//! Metrics, one file per benchmark family.

pub mod localization;
pub mod ngram;
pub mod scanqa;
pub mod sqa3d_em;
pub mod vsibench;
