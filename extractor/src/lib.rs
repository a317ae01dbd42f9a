//! Frames (image folders, video files) to backbone embeddings in the HDF5 feature cache.
//!
//! What it does: finds the videos under a data root ([`sources`]: frame folders and video files),
//! decodes and resizes their frames on as many threads as the measured rates ask for
//! ([`pipeline`]), runs a backbone ([`backbones`]: IResNet, DenseNet, ResNet, MobileNetV2,
//! RegNet, EfficientNet, ViT, TorchScript, HOG) in batches on the CPU or a GPU, and writes one
//! crash-safe cache file per video ([`extract`]), optionally one shard of the videos
//! ([`shard`]); [`faces`] detects, aligns and tracks faces in raw videos (MTCNN: `extractor
//! faces`, `extract --detect-faces`); [`inspect`] summarises a cache;
//! [`sample_data`] writes the synthetic Aff-Wild2 sample.
//!
//! What it does not: train temporal models (that is `temporal`), or define the cache format (that is `shared`).

#![warn(missing_docs)]

pub mod backbones;
pub mod bench;
pub mod cli;
pub mod extract;
pub mod faces;
pub mod feature_sets;
pub mod inspect;
pub mod pipeline;
pub mod sample_data;
pub mod shard;
pub mod sources;
