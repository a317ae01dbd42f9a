//! `seed = N` without a weights file gives the same backbone every time, and another seed another
//! one.
//!
//! Its own test binary: libtorch has one global generator, so a seeded initialisation is only
//! reproducible while no other thread draws from it, and the other backbone tests draw their
//! random images concurrently.

use extractor::backbones::{self, BackboneConfig};
use tch::{Device, Kind, Tensor};

#[test]
fn the_same_seed_builds_the_same_backbone_and_another_seed_another_one() {
    let cfg = |seed| BackboneConfig {
        seed,
        embed_dim: Some(32),
        depth: Some(2),
        num_heads: Some(4),
        registers: Some(4),
        input_size: Some(56),
        ..BackboneConfig::named("dinov2_vitb14")
    };
    let x = Tensor::rand([1, 3, 56, 56], (Kind::Float, Device::Cpu));
    let a = backbones::build(&cfg(3), Device::Cpu).unwrap();
    let b = backbones::build(&cfg(3), Device::Cpu).unwrap();
    let c = backbones::build(&cfg(4), Device::Cpu).unwrap();
    assert_eq!(a.weights_id(), "seed:3");
    assert_eq!(c.weights_id(), "seed:4");
    let (ya, yb, yc) = (a.forward(&x), b.forward(&x), c.forward(&x));
    assert_eq!(ya.size(), vec![1, 32]);
    assert!(ya.equal(&yb), "same seed, same numbers");
    assert!(!ya.equal(&yc), "another seed, other numbers");
}
