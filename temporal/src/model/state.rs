//! The recurrent state carried from one segment of a stream to the next.
//!
//! What it does: [`States`] holds one [`RnnState`] per recurrent layer, named as the reference's
//! `state_names()` (`bottom`, `top_<task>`); [`States::carry`] zeroes the streams that start a new
//! video and detaches the rest, exactly as the reference's `_mask_state`.
//!
//! What it does not: decide which streams restart (the segment batcher knows that), or hold
//! anything for the Transformer, which attends within a segment only (its `States` are empty).

use std::collections::BTreeMap;
use tch::{Kind, Tensor};

/// The state of one recurrent layer, each tensor `[1, B, hidden]`.
#[derive(Debug)]
pub enum RnnState {
    /// A GRU's hidden state.
    Gru(Tensor),
    /// An LSTM's hidden and cell states.
    Lstm {
        /// Hidden state.
        h: Tensor,
        /// Cell state.
        c: Tensor,
    },
}

impl RnnState {
    /// The tensors of this state (one for GRU, h then c for LSTM).
    pub fn tensors(&self) -> Vec<&Tensor> {
        match self {
            RnnState::Gru(h) => vec![h],
            RnnState::Lstm { h, c } => vec![h, c],
        }
    }

    fn map(&self, f: impl Fn(&Tensor) -> Tensor) -> RnnState {
        match self {
            RnnState::Gru(h) => RnnState::Gru(f(h)),
            RnnState::Lstm { h, c } => RnnState::Lstm { h: f(h), c: f(c) },
        }
    }

    /// A second handle on the same tensors (no copy).
    pub fn shallow_clone(&self) -> RnnState {
        self.map(Tensor::shallow_clone)
    }
}

/// Per recurrent layer state: `bottom` and `top_<task>` for share-bottom and feedback.
#[derive(Debug, Default)]
pub struct States {
    layers: BTreeMap<String, RnnState>,
}

impl States {
    /// No state: every layer starts from zeros (the first segment, or a Transformer).
    pub fn empty() -> Self {
        States::default()
    }

    /// True when no layer has a state.
    pub fn is_empty(&self) -> bool {
        self.layers.is_empty()
    }

    /// Number of layers with a state.
    pub fn len(&self) -> usize {
        self.layers.len()
    }

    /// The state of layer `name` (`bottom`, `top_<task>`), if any.
    pub fn get(&self, name: &str) -> Option<&RnnState> {
        self.layers.get(name)
    }

    /// Sets the state of layer `name`.
    pub fn insert(&mut self, name: impl Into<String>, state: RnnState) {
        self.layers.insert(name.into(), state);
    }

    /// Layer names and states, sorted by name.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &RnnState)> {
        self.layers.iter().map(|(k, v)| (k.as_str(), v))
    }

    /// The state for the next segment: streams where `keep [B]` (bool) is false start a new
    /// video and get zeros; the others keep their state. Everything is detached, so no gradient
    /// flows into the previous segment (truncated back-propagation through time).
    pub fn carry(&self, keep: &Tensor) -> States {
        let layers = self
            .layers
            .iter()
            .map(|(name, state)| {
                let state = state.map(|s| {
                    let k = keep
                        .to_device(s.device())
                        .to_kind(s.kind())
                        .view([1, -1, 1]);
                    (s * k).detach()
                });
                (name.clone(), state)
            })
            .collect();
        States { layers }
    }

    /// The same state with every tensor detached from the graph (nothing zeroed).
    pub fn detach(&self) -> States {
        let layers = self
            .layers
            .iter()
            .map(|(n, s)| (n.clone(), s.map(Tensor::detach)))
            .collect();
        States { layers }
    }

    /// A second handle on the same tensors (no copy).
    pub fn shallow_clone(&self) -> States {
        let layers = self
            .layers
            .iter()
            .map(|(n, s)| (n.clone(), s.shallow_clone()))
            .collect();
        States { layers }
    }
}

/// `keep` from the streams that start a new video (`reset [B]`, bool): `!reset`.
pub fn keep_from_reset(reset: &Tensor) -> Tensor {
    reset.to_kind(Kind::Bool).logical_not()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn carry_zeroes_restarting_streams_and_detaches() {
        let h = Tensor::from_slice(&[1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0])
            .view([1, 3, 2])
            .set_requires_grad(true);
        let c = (&h * 10.0).set_requires_grad(false);
        let mut s = States::empty();
        s.insert("bottom", RnnState::Lstm { h: &h * 1.0, c });
        s.insert("top_expr", RnnState::Gru(&h * 2.0));
        let keep = Tensor::from_slice(&[true, false, true]);
        let next = s.carry(&keep);
        let RnnState::Lstm { h: nh, c: nc } = next.get("bottom").unwrap() else {
            panic!("bottom lost its LSTM state")
        };
        let v: Vec<f32> = Vec::try_from(nh.flatten(0, -1)).unwrap();
        assert_eq!(v, vec![1.0, 2.0, 0.0, 0.0, 5.0, 6.0]);
        let v: Vec<f32> = Vec::try_from(nc.flatten(0, -1)).unwrap();
        assert_eq!(v, vec![10.0, 20.0, 0.0, 0.0, 50.0, 60.0]);
        let RnnState::Gru(g) = next.get("top_expr").unwrap() else {
            panic!("top lost its state")
        };
        let v: Vec<f32> = Vec::try_from(g.flatten(0, -1)).unwrap();
        assert_eq!(v, vec![2.0, 4.0, 0.0, 0.0, 10.0, 12.0]);
        assert!(!nh.requires_grad() && !g.requires_grad());
        assert_eq!(
            keep_from_reset(&Tensor::from_slice(&[false, true, false])),
            keep
        );
    }
}
