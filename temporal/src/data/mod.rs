//! From the feature cache and the annotation files to tensors the model consumes.
//!
//! [`labels`] finds which frames of which videos a split scores and their labels; [`join`] reads
//! the chosen feature sets of each video and joins them by frame number into the rows of one
//! split ([`join::SplitData`]), kept in memory or read from the cache step by step ([`rows`]);
//! [`normalise`] holds the training split's per-dimension statistics; [`streams`] cuts the videos into segments dealt over B parallel streams;
//! [`folds`] re-splits the labelled videos for k-fold cross-validation; [`pseudo`] fills the
//! training split's invalid labels from another model's predictions; [`resample`] picks the
//! training frames of an epoch of a frame-level model. Nothing here knows
//! about models or losses.

pub mod folds;
pub mod join;
pub mod labels;
pub mod normalise;
pub mod pseudo;
pub mod resample;
pub mod rows;
pub mod streams;
#[cfg(test)]
mod test_cache;

pub use join::{FrameMode, SplitData, VideoSpan};
pub use labels::{Split, SplitLabels};
pub use rows::{FeatureRows, FeatureStore};
