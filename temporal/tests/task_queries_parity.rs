//! Parity of the task-queries model (issue 15) with its PyTorch reference
//! `scripts/fixtures/task_queries_refs.py` (`TaskQueries`).
//!
//! Each `tests/fixtures/task_queries_*.safetensors` (written by
//! `scripts/fixtures/task_queries_fixture.py`, see its docstring) holds the reference's state dict
//! as `state.<name>`, the input tokens, the evaluation-mode outputs, labels, the loss value and
//! every parameter's gradient. Here the model is built the way a run builds it (`arch = "none"`,
//! `[model.heads] all = "task-queries"`, token features `[1, N, tokens * D]`), the state dict
//! loaded strictly, and the outputs, the multi-task loss and the gradients compared.
//!
//! Regenerate the fixtures with:
//! ```text
//! PY=$(bash scripts/fixtures/venv.sh)
//! $PY scripts/fixtures/task_queries_fixture.py
//! cargo test -p temporal --test task_queries_parity
//! ```

mod common;
use common::Fixture;
use tch::{nn, Device, Kind, Tensor};
use temporal::loss::{mtl_loss, LabelTensors, LossConfig, VaLoss};
use temporal::model::config::{Graph, HeadKinds, JointHead, Positions, TaskQueriesConfig};
use temporal::model::{checkpoint, Arch, Config, HeadTask, TemporalMtl};

const FORMAT: &str = "task-queries-parity-v1";
const TOL: f64 = 1e-5;

fn max_abs_diff(a: &Tensor, b: &Tensor) -> f64 {
    assert_eq!(a.size(), b.size(), "shapes differ");
    (a.to_kind(Kind::Double) - b.to_kind(Kind::Double))
        .abs()
        .max()
        .double_value(&[])
}

/// The temporal model config of a fixture's constructor arguments.
fn config_of(fx: &Fixture) -> Config {
    let a = &fx.doc["args"];
    let int = |k: &str| {
        a[k].as_i64()
            .unwrap_or_else(|| panic!("{}: args.{k}", fx.case))
    };
    let text = |k: &str| {
        a[k].as_str()
            .unwrap_or_else(|| panic!("{}: args.{k}", fx.case))
    };
    Config {
        arch: Arch::None,
        feat_dim: int("dim"),
        tokens: int("tokens"),
        tasks: HeadTask::ALL.to_vec(),
        heads: HeadKinds {
            all: JointHead::TaskQueries,
            ..HeadKinds::default()
        },
        task_queries: TaskQueriesConfig {
            channels: int("channels"),
            compress_hidden: int("compress_hidden"),
            heads: int("heads"),
            blocks: int("blocks"),
            ff: int("ff"),
            dropout: a["dropout"].as_f64().unwrap(),
            positions: match text("positions") {
                "learned" => Positions::Learned,
                _ => Positions::Sincos,
            },
            graph: match text("graph") {
                "knn" => Graph::Knn,
                _ => Graph::Full,
            },
            neighbors: int("neighbors"),
        },
        ..Config::default()
    }
}

fn check(case: &str) {
    tch::set_num_threads(1);
    let fx = Fixture::read(case, FORMAT, "task_queries_fixture.py");
    let cfg = config_of(&fx);
    let mut vs = nn::VarStore::new(Device::Cpu);
    let model = TemporalMtl::new(&vs.root(), &cfg);
    assert_eq!(
        checkpoint::named_shapes(&vs),
        fx.names_and_shapes(),
        "{case}: the state dict names and shapes"
    );
    let dir = tempfile::tempdir().unwrap();
    checkpoint::load_strict(&mut vs, &fx.state_dict_file(dir.path())).expect("strict load");

    // The N frames as one video of N frames, each row its tokens one after the other.
    let x = fx.get("x");
    let n = x.size()[0];
    let x = x.reshape([1, n, -1]);
    let (out, _) = tch::no_grad(|| model.forward_t(&x, None, None, false));
    let get = |name: &str| out.by_task[name].squeeze_dim(0);
    let va = fx.get("out.va");
    for (what, ours, reference) in [
        ("AU logits", get("au"), fx.get("out.au").shallow_clone()),
        (
            "expression logits",
            get("expr"),
            fx.get("out.expr").shallow_clone(),
        ),
        ("valence", get("valence"), va.narrow(1, 0, 1)),
        ("arousal", get("arousal"), va.narrow(1, 1, 1)),
    ] {
        let d = max_abs_diff(&ours, &reference);
        assert!(
            d <= TOL,
            "{case}: {what}: max |rust - torch| = {d:e} > {TOL:e}"
        );
    }

    // The paper's loss (BCE + CE + (1 - CCC_v) + (1 - CCC_a), unweighted) and its gradients,
    // in evaluation mode (the reference's gradients are of its eval-mode forward).
    let labels = LabelTensors {
        va: fx.get("y.va").unsqueeze(0),
        expr: fx.get("y.expr").unsqueeze(0),
        au: fx.get("y.au").unsqueeze(0),
    };
    let valid = Tensor::ones([1, n], (Kind::Bool, Device::Cpu));
    let loss_cfg = LossConfig {
        va_loss: VaLoss::Ccc,
        ..LossConfig::default()
    };
    let (mut out, _) = model.forward_t(&x, None, None, false);
    let (loss, _) = mtl_loss(&out, &labels, &valid, &loss_cfg);
    let want = fx.doc["loss"].as_f64().unwrap();
    let got = loss.double_value(&[]);
    assert!(
        (got - want).abs() <= TOL * want.abs().max(1.0),
        "{case}: loss {got} vs the reference's {want}"
    );
    out.backward(&loss);
    let vars = vs.trainable_variables();
    let named = vs.variables();
    let grads: Vec<(String, Tensor)> = named
        .iter()
        .filter(|(_, t)| t.requires_grad())
        .map(|(k, t)| (k.clone(), t.grad()))
        .collect();
    assert_eq!(grads.len(), vars.len());
    let largest = grads
        .iter()
        .map(|(k, _)| fx.get(&format!("grad.{k}")).abs().max().double_value(&[]))
        .fold(0.0, f64::max);
    for (k, g) in &grads {
        let reference = fx.get(&format!("grad.{k}"));
        assert!(g.defined(), "{case}: no gradient for {k}");
        let tol = 1e-5 * largest + 1e-4 * reference.abs().max().double_value(&[]);
        let d = max_abs_diff(g, reference);
        assert!(
            d <= tol,
            "{case}: gradient of {k} differs by {d:e} > {tol:e}"
        );
    }
}

#[test]
fn task_queries_with_learned_positions_and_the_knn_graph_equal_the_reference() {
    check("task_queries_learned_knn");
}

#[test]
fn task_queries_with_sincos_positions_and_the_full_graph_equal_the_reference() {
    check("task_queries_sincos_full");
}
