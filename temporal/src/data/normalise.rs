//! Per-dimension feature statistics of the training split, stored in the run folder
//! (`normalisation.safetensors`: `mean` and `std`, both [D]) and applied at prediction time.
//! They are computed by [`super::rows::FeatureRows::fit_normalisation`], in one pass over the
//! rows wherever they are kept.

use anyhow::{bail, Context, Result};
use std::path::Path;
use tch::{Device, Tensor};

/// Smallest standard deviation used; constant dimensions are centred, not blown up.
pub const MIN_STD: f64 = 1e-6;

/// Mean and standard deviation (population) of every feature dimension.
#[derive(Debug)]
pub struct Normalisation {
    /// Mean [D].
    pub mean: Tensor,
    /// Standard deviation [D], at least [`MIN_STD`].
    pub std: Tensor,
}

impl Normalisation {
    /// Normalise `feats` [N, D] in place.
    pub fn apply(&self, feats: &mut Tensor) -> Result<()> {
        let d = feats.size().last().copied().unwrap_or(0);
        if d != self.mean.size()[0] {
            bail!(
                "the features have {d} dims but the run was trained on {}; use the same --features",
                self.mean.size()[0]
            );
        }
        let device = feats.device();
        let _ = feats
            .f_sub_(&self.mean.to(device))?
            .f_div_(&self.std.to(device))?;
        Ok(())
    }

    /// Write `mean` and `std` to a safetensors file (atomically).
    pub fn save(&self, path: &Path) -> Result<()> {
        let tmp = shared::atomic::temp_path_for(path);
        Tensor::write_safetensors(&[("mean", &self.mean), ("std", &self.std)], &tmp)
            .with_context(|| format!("writing {}", tmp.display()))?;
        std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))?;
        Ok(())
    }

    /// Read a file written by [`Normalisation::save`].
    pub fn load(path: &Path) -> Result<Normalisation> {
        let tensors = Tensor::read_safetensors(path)
            .with_context(|| format!("reading the normalisation statistics {}", path.display()))?;
        let get = |name: &str| {
            tensors
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, t)| t.to_device(Device::Cpu))
                .with_context(|| format!("{}: no tensor {name:?}", path.display()))
        };
        Ok(Normalisation {
            mean: get("mean")?,
            std: get("std")?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::FeatureRows;

    #[test]
    fn normalised_training_features_have_zero_mean_unit_std() {
        let mut x = Tensor::from_slice(&[1f32, 10., 3., 10., 5., 10.]).view([3, 2]);
        let n = FeatureRows::Memory(x.shallow_clone())
            .fit_normalisation(2)
            .unwrap();
        n.apply(&mut x).unwrap();
        // column 0: mean 3, population std sqrt(8/3); column 1 constant: centred to 0
        let got = Vec::<f32>::try_from(x.flatten(0, -1)).unwrap();
        let s = (8f32 / 3.0).sqrt();
        let want = [-2.0 / s, 0.0, 0.0, 0.0, 2.0 / s, 0.0];
        for (g, w) in got.iter().zip(want) {
            assert!((g - w).abs() < 1e-5, "{got:?}");
        }
    }

    #[test]
    fn save_load_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("normalisation.safetensors");
        let n = Normalisation {
            mean: Tensor::from_slice(&[2.5f32, 5.0]),
            std: Tensor::from_slice(&[1.5f32, 3.0]),
        };
        n.save(&p).unwrap();
        let m = Normalisation::load(&p).unwrap();
        assert_eq!(Vec::<f32>::try_from(&m.mean).unwrap(), vec![2.5, 5.0]);
        assert_eq!(Vec::<f32>::try_from(&m.std).unwrap(), vec![1.5, 3.0]);
    }
}
