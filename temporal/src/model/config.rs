//! The hyper-parameters of the temporal model ([`Config`]) and their vocabulary: encoder
//! architecture ([`Arch`]), multi-task topology ([`Topology`]) and output heads ([`HeadTask`]).
//!
//! What it does: names every choice exactly as the PyTorch reference `TemporalMTL` and the command
//! line do, gives the reference defaults, and checks a configuration before a model is built.
//!
//! What it does not: build tensors (that is [`super::TemporalMtl`]) or read files (a run's
//! `config.toml` is read by the trainer, which deserialises this struct from it).

pub use super::task_queries::{Graph, Positions, TaskQueriesConfig};
use serde::{Deserialize, Serialize};
use shared::tasks::Task;

/// Feature width of the reference system: MAE 768 + IResNet-100 512 + FAU 512 + DenseNet 342.
pub const REFERENCE_FEAT_DIM: i64 = 2134;

/// The temporal encoder.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    clap::ValueEnum,
)]
#[serde(rename_all = "lowercase")]
pub enum Arch {
    /// One GRU layer (`nn.GRU`, batch first) with a carried hidden state.
    Gru,
    /// One LSTM layer (`nn.LSTM`, batch first) with a carried (h, c) state.
    Lstm,
    /// `in_proj` + sinusoidal positions + a post-norm `nn.TransformerEncoder`; no carried state.
    Transformer,
    /// Frame-level baseline without temporal context: `bottom.fc = Linear(feat_dim, hidden)` +
    /// ReLU (and `tops.<task>.fc` for share-bottom/feedback). Not in the PyTorch reference.
    Mlp,
    /// No encoder: the features go straight to the heads, which then live at the root of the
    /// state dict (`au.*`, `va.*`, `ex.*`, ... as in MTL-ABAW4's `AMTL`). Frame-level: training
    /// draws shuffled frames in batches instead of segments. Basic topology only.
    None,
    /// The ABAW5 multi-rate temporal Transformer ([`super::multirate`]): three pipelines over a
    /// segment (Transformer; up x2 / strided-conv down; up / down / Transformer), each to 12 AU
    /// logits, fused by learned softmax weights. AU only, basic topology, no heads of its own
    /// (`in_proj.*`, `pipe_{a,b,c}.*`, `pipeline_logits` at the root); no carried state.
    Multirate,
}

impl Arch {
    /// True for GRU and LSTM, whose state is carried from one segment to the next.
    pub fn is_recurrent(self) -> bool {
        matches!(self, Arch::Gru | Arch::Lstm)
    }

    /// The name used in configs and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Arch::Gru => "gru",
            Arch::Lstm => "lstm",
            Arch::Transformer => "transformer",
            Arch::Mlp => "mlp",
            Arch::None => "none",
            Arch::Multirate => "multirate",
        }
    }

    /// True for `none`, which trains on shuffled frames rather than segments.
    pub fn is_frame_level(self) -> bool {
        self == Arch::None
    }
}

impl std::fmt::Display for Arch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// How the tasks share the encoder.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    clap::ValueEnum,
)]
#[serde(rename_all = "kebab-case")]
pub enum Topology {
    /// One shared encoder, one head per task.
    Basic,
    /// A shared bottom encoder, then one more encoder layer per task (`tops.<task>`), then heads.
    ShareBottom,
    /// Like share-bottom, but the target task's top layer also reads the source task's top
    /// output (detached): `concat(bottom, source)` (through `fuse` for the Transformer).
    Feedback,
}

impl Topology {
    /// The name used in configs and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Topology::Basic => "basic",
            Topology::ShareBottom => "share-bottom",
            Topology::Feedback => "feedback",
        }
    }
}

impl std::fmt::Display for Topology {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// One output head of the model, named as in the reference's state dict (`heads.<name>`).
///
/// The declaration order is the reference's task order, so sorting gives valence, arousal, expr, au.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    clap::ValueEnum,
)]
#[serde(rename_all = "lowercase")]
pub enum HeadTask {
    /// Valence regression, 1 output.
    Valence,
    /// Arousal regression, 1 output.
    Arousal,
    /// Expression logits, 8 outputs.
    Expr,
    /// Action unit logits, 12 outputs.
    Au,
}

impl HeadTask {
    /// All heads in the reference order.
    pub const ALL: [HeadTask; 4] = [
        HeadTask::Valence,
        HeadTask::Arousal,
        HeadTask::Expr,
        HeadTask::Au,
    ];

    /// The name used in state-dict keys, outputs and losses.
    pub fn name(self) -> &'static str {
        match self {
            HeadTask::Valence => "valence",
            HeadTask::Arousal => "arousal",
            HeadTask::Expr => "expr",
            HeadTask::Au => "au",
        }
    }

    /// Width of the head's output (the reference's `TASK_OUT`).
    pub fn out_dim(self) -> i64 {
        match self {
            HeadTask::Valence | HeadTask::Arousal => 1,
            HeadTask::Expr => shared::N_EXPR as i64,
            HeadTask::Au => shared::N_AU as i64,
        }
    }

    /// The heads that serve the command-line task groups (`va` is valence and arousal), in
    /// reference order and without duplicates.
    pub fn for_tasks(tasks: &[Task]) -> Vec<HeadTask> {
        HeadTask::ALL
            .into_iter()
            .filter(|h| {
                tasks.iter().any(|t| match t {
                    Task::Va => matches!(h, HeadTask::Valence | HeadTask::Arousal),
                    Task::Expr => *h == HeadTask::Expr,
                    Task::Au => *h == HeadTask::Au,
                })
            })
            .collect()
    }
}

impl std::fmt::Display for HeadTask {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for HeadTask {
    type Err = ConfigError;
    fn from_str(s: &str) -> Result<Self, ConfigError> {
        HeadTask::ALL
            .into_iter()
            .find(|h| h.name() == s)
            .ok_or_else(|| ConfigError::UnknownTask(s.to_string()))
    }
}

/// The valence/arousal head.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum VaHead {
    /// The reference's MLP head per task (`heads.valence.net.*`, `heads.arousal.net.*`).
    #[default]
    Mlp,
    /// One head for both, `tanh(BatchNorm1d(Linear(d, 2)))` (`va.fc.*`, `va.bn.*`, MTL-ABAW4).
    TanhBn,
    /// ABAW5 (Wang et al.): 3-class polarity classifiers that gate valence and arousal to
    /// exactly -1 / +1, and regressors for the other frames, the arousal one also reading the
    /// valence one's hidden features (`polarity.*`, `regressor.*`; [`super::polarity`]).
    Polarity,
}

/// The expression head.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ExprHead {
    /// The reference's MLP head (`heads.expr.net.*`).
    #[default]
    Mlp,
    /// Logits `Linear(d, 8)` (`ex.fc.*`).
    Linear,
    /// Logits `Linear(d, 8)` re-weighted by additive attention from the AU probabilities
    /// (`ex.fc.*`, `attention.{W_q,W_k,w_v}.weight`, MTL-ABAW4); needs the AU task.
    AuAttention,
}

/// The action-unit head.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AuHead {
    /// The reference's MLP head (`heads.au.net.*`), 12 logits.
    #[default]
    Mlp,
    /// ME-GraphAU's ANFL head (`au.sc`, `au.class_linears.*`, `au.gnn.*`), 12 probabilities.
    Anfl,
    /// The ABAW5 LRP-ARL-FF detector over token features (`au.lrp.*`, `au.arl.*`,
    /// `au.backbone_fc.*`, `au.fusion.*`; [`super::lrp_arl_ff`]), 12 logits. Needs
    /// `tokens` > 1 (a backbone's spatial map), `arch = "none"` and the AU task alone.
    LrpArlFf,
}

/// A model that produces the outputs of every task from one module (`[model.heads] all`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum JointHead {
    /// None: each task group has its own head (`va`, `expr`, `au`).
    #[default]
    None,
    /// The ABAW7 task queries over patch tokens with the AU-assisted GCN
    /// ([`super::task_queries`]; names at the root: `compress.*`, `queries`, `blocks.*`,
    /// `gcn.*`, `masks`, `{au,expr,va}_fc.*`). Needs `tokens` > 1, `arch = "none"` and the
    /// per-task heads left at their defaults.
    TaskQueries,
}

impl JointHead {
    /// The name in configs.
    pub fn name(self) -> &'static str {
        match self {
            JointHead::None => "none",
            JointHead::TaskQueries => "task-queries",
        }
    }
}

/// How the LRP-ARL-FF head fuses its two branches.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FusionKind {
    /// `w * arl + (1 - w) * backbone` with the constant `fusion_weight`.
    Fixed,
    /// `w` from a 2-layer Transformer over a weight token, the backbone token and the 12 AU
    /// tokens (`au.fusion.*`).
    #[default]
    Attention,
}

/// `[model.lrp]`: sizes of the LRP-ARL-FF head (the reference's defaults; the paper gives none).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LrpConfig {
    /// Number of LANets whose maximum is the region attention.
    pub lanets: i64,
    /// LANet reduction r (hidden width C / r).
    pub reduction: i64,
    /// Fixed or attention fusion.
    pub fusion: FusionKind,
    /// Weight of the ARL branch with fixed fusion.
    pub fusion_weight: f64,
    /// Attention fusion: heads (must divide the token width C).
    pub fusion_heads: i64,
    /// Attention fusion: feed-forward width [0 = 2 C].
    pub fusion_ff: i64,
    /// Attention fusion: encoder layers.
    pub fusion_layers: i64,
    /// Attention fusion: dropout inside the encoder layers.
    pub fusion_dropout: f64,
}

impl Default for LrpConfig {
    fn default() -> Self {
        LrpConfig {
            lanets: 4,
            reduction: 8,
            fusion: FusionKind::Attention,
            fusion_weight: 0.5,
            fusion_heads: 8,
            fusion_ff: 0,
            fusion_layers: 2,
            fusion_dropout: 0.1,
        }
    }
}

/// The output head of each task group (`[model.heads]` in TOML); the reference's MLP by default.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HeadKinds {
    /// Valence and arousal.
    pub va: VaHead,
    /// Expressions.
    pub expr: ExprHead,
    /// Action units.
    pub au: AuHead,
    /// One module for every task instead of the three above.
    pub all: JointHead,
}

/// Hyper-parameters of [`super::TemporalMtl`]; the defaults are the reference's
/// (`TemporalMTL()` in `../shared/peers/torch_temporal_ref.py`).
///
/// In TOML every key is optional and unknown keys are an error, e.g.
/// `arch = "lstm"`, `topology = "feedback"`, `source = "au"`, `target = "expr"`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Encoder architecture.
    pub arch: Arch,
    /// Multi-task topology.
    pub topology: Topology,
    /// Hidden width of every GRU/LSTM layer (recurrent archs only).
    pub hidden: i64,
    /// Transformer model width (Transformer only).
    pub d_model: i64,
    /// Number of Transformer layers in the shared bottom (Transformer only).
    pub n_layers: i64,
    /// Attention heads per Transformer layer; must divide `d_model`.
    pub n_heads: i64,
    /// Width of the Transformer feed-forward block.
    pub ff: i64,
    /// Dropout probability (encoder output, heads, Transformer layers).
    pub dropout: f64,
    /// Feedback topology: the task whose top output is fed to the target.
    pub source: HeadTask,
    /// Feedback topology: the task that reads the source's top output.
    pub target: HeadTask,
    /// Width of the input features (sum over the joined feature sets), per token.
    pub feat_dim: i64,
    /// Tokens per frame: 1 for one vector per frame, H * W for a backbone's spatial map
    /// (`extractor extract --output map`); the input is then `[B, L, tokens * feat_dim]`.
    pub tokens: i64,
    /// The heads to build, a subset of valence, arousal, expr, au in that order.
    pub tasks: Vec<HeadTask>,
    /// The kind of head of each task group.
    pub heads: HeadKinds,
    /// ANFL head: k of its k-nearest-neighbour AU graph.
    pub anfl_neighbors: i64,
    /// ANFL head: dropout before each AU block (0 in ME-GraphAU, 0.5 in MTL-ABAW4).
    pub anfl_dropout: f64,
    /// The LRP-ARL-FF head's sizes (`au = "lrp-arl-ff"`).
    pub lrp: LrpConfig,
    /// The task-queries model's sizes (`[model.heads] all = "task-queries"`).
    pub task_queries: TaskQueriesConfig,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            arch: Arch::Gru,
            topology: Topology::Basic,
            hidden: 1024,
            d_model: 512,
            n_layers: 4,
            n_heads: 4,
            ff: 1024,
            dropout: 0.3,
            source: HeadTask::Au,
            target: HeadTask::Expr,
            feat_dim: REFERENCE_FEAT_DIM,
            tokens: 1,
            tasks: HeadTask::ALL.to_vec(),
            heads: HeadKinds::default(),
            anfl_neighbors: 4,
            anfl_dropout: 0.0,
            lrp: LrpConfig::default(),
            task_queries: TaskQueriesConfig::default(),
        }
    }
}

impl Config {
    /// Width of the encoder output that the tops and heads read: `hidden` for GRU/LSTM and
    /// `mlp`, `d_model` for the Transformer, the feature width without an encoder.
    pub fn encoder_dim(&self) -> i64 {
        match self.arch {
            Arch::Transformer | Arch::Multirate => self.d_model,
            Arch::None => self.feat_dim,
            Arch::Gru | Arch::Lstm | Arch::Mlp => self.hidden,
        }
    }

    /// Checks that the reference could be built with these values and that `forward` can run.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let positive = [
            ("feat_dim", self.feat_dim),
            ("hidden", self.hidden),
            ("d_model", self.d_model),
            ("n_layers", self.n_layers),
            ("n_heads", self.n_heads),
            ("ff", self.ff),
            ("tokens", self.tokens),
        ];
        for (key, value) in positive {
            if value <= 0 {
                return Err(ConfigError::NotPositive { key, value });
            }
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return Err(ConfigError::Dropout(self.dropout));
        }
        if matches!(self.arch, Arch::Transformer | Arch::Multirate)
            && self.d_model % self.n_heads != 0
        {
            return Err(ConfigError::Heads {
                d_model: self.d_model,
                n_heads: self.n_heads,
            });
        }
        if self.tasks.is_empty() {
            return Err(ConfigError::NoTasks);
        }
        if self.tasks.windows(2).any(|w| w[0] >= w[1]) {
            return Err(ConfigError::TaskOrder(self.task_names()));
        }
        if self.arch == Arch::None && self.topology != Topology::Basic {
            return Err(ConfigError::NoEncoderTopology(self.topology));
        }
        if self.arch == Arch::Multirate
            && (self.tasks != [HeadTask::Au]
                || self.topology != Topology::Basic
                || self.heads != HeadKinds::default())
        {
            return Err(ConfigError::MultirateAuOnly {
                tasks: self.task_names(),
                topology: self.topology,
            });
        }
        if self.anfl_neighbors < 1 {
            return Err(ConfigError::NotPositive {
                key: "anfl_neighbors",
                value: self.anfl_neighbors,
            });
        }
        if !(0.0..1.0).contains(&self.anfl_dropout) {
            return Err(ConfigError::Dropout(self.anfl_dropout));
        }
        let has = |t: HeadTask| self.tasks.contains(&t);
        let needs = |head: &'static str, task: HeadTask| -> Result<(), ConfigError> {
            if has(task) {
                Ok(())
            } else {
                Err(ConfigError::HeadWithoutTask {
                    head,
                    task,
                    tasks: self.task_names(),
                })
            }
        };
        if self.heads.va == VaHead::TanhBn {
            needs("va = \"tanh-bn\"", HeadTask::Valence)?;
            needs("va = \"tanh-bn\"", HeadTask::Arousal)?;
        }
        if self.heads.va == VaHead::Polarity {
            needs("va = \"polarity\"", HeadTask::Valence)?;
            needs("va = \"polarity\"", HeadTask::Arousal)?;
        }
        if self.heads.expr != ExprHead::Mlp {
            needs("expr", HeadTask::Expr)?;
        }
        if self.heads.expr == ExprHead::AuAttention {
            needs("expr = \"au-attention\"", HeadTask::Au)?;
        }
        if self.heads.au == AuHead::Anfl {
            needs("au = \"anfl\"", HeadTask::Au)?;
        }
        self.validate_tokens()?;
        if self.topology == Topology::Feedback {
            for (role, task) in [("source", self.source), ("target", self.target)] {
                if !self.tasks.contains(&task) {
                    return Err(ConfigError::FeedbackTask {
                        role,
                        task,
                        tasks: self.task_names(),
                    });
                }
            }
            if self.source == self.target {
                return Err(ConfigError::FeedbackSelf(self.source));
            }
        }
        Ok(())
    }

    /// Token features go to the token models alone (the LRP-ARL-FF head, the task-queries
    /// model), which need them.
    fn validate_tokens(&self) -> Result<(), ConfigError> {
        let token_head = self.heads.au == AuHead::LrpArlFf;
        let joint = self.heads.all == JointHead::TaskQueries;
        if token_head && self.tokens == 1 {
            return Err(ConfigError::TokenHeadOnPooled);
        }
        if joint {
            self.validate_task_queries()?;
        }
        if self.tokens > 1
            && !joint
            && !(token_head && self.arch == Arch::None && self.tasks == [HeadTask::Au])
        {
            return Err(ConfigError::TokensWithoutTokenHead {
                tokens: self.tokens,
                dim: self.feat_dim,
            });
        }
        if token_head {
            let l = &self.lrp;
            for (key, value) in [
                ("lrp.lanets", l.lanets),
                ("lrp.reduction", l.reduction),
                ("lrp.fusion_heads", l.fusion_heads),
                ("lrp.fusion_layers", l.fusion_layers),
            ] {
                if value <= 0 {
                    return Err(ConfigError::NotPositive { key, value });
                }
            }
            if self.feat_dim < l.reduction {
                return Err(ConfigError::Reduction {
                    value: l.reduction,
                    width: self.feat_dim,
                });
            }
            if l.fusion == FusionKind::Attention && self.feat_dim % l.fusion_heads != 0 {
                return Err(ConfigError::Divides {
                    key: "lrp.fusion_heads",
                    value: l.fusion_heads,
                    width: self.feat_dim,
                });
            }
            if !(0.0..1.0).contains(&l.fusion_dropout) {
                return Err(ConfigError::Dropout(l.fusion_dropout));
            }
        }
        Ok(())
    }

    /// `[model.heads] all = "task-queries"`: token features, no encoder, no other head, sizes
    /// that build.
    fn validate_task_queries(&self) -> Result<(), ConfigError> {
        if self.tokens == 1 {
            return Err(ConfigError::TaskQueriesOnPooled { dim: self.feat_dim });
        }
        let defaults = HeadKinds {
            all: JointHead::TaskQueries,
            ..HeadKinds::default()
        };
        if self.arch != Arch::None || self.heads != defaults {
            return Err(ConfigError::TaskQueriesAlone { arch: self.arch });
        }
        let t = &self.task_queries;
        for (key, value) in [
            ("task_queries.channels", t.channels),
            ("task_queries.heads", t.heads),
            ("task_queries.blocks", t.blocks),
            ("task_queries.ff", t.ff),
            ("task_queries.neighbors", t.neighbors),
        ] {
            if value <= 0 {
                return Err(ConfigError::NotPositive { key, value });
            }
        }
        if t.compress_hidden < 0 {
            return Err(ConfigError::NotPositive {
                key: "task_queries.compress_hidden",
                value: t.compress_hidden,
            });
        }
        if t.channels % t.heads != 0 {
            return Err(ConfigError::Divides {
                key: "task_queries.heads",
                value: t.heads,
                width: t.channels,
            });
        }
        if !(0.0..1.0).contains(&t.dropout) {
            return Err(ConfigError::Dropout(t.dropout));
        }
        let side = (self.tokens as f64).sqrt().round() as i64;
        if t.positions == Positions::Sincos && (side * side != self.tokens || t.channels % 4 != 0) {
            return Err(ConfigError::SincosGrid {
                tokens: self.tokens,
                channels: t.channels,
            });
        }
        Ok(())
    }

    fn task_names(&self) -> String {
        self.tasks
            .iter()
            .map(|t| t.name())
            .collect::<Vec<_>>()
            .join(",")
    }
}

/// A configuration the model cannot be built from.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ConfigError {
    /// A size is zero or negative.
    #[error("model config: `{key}` is {value}; it must be a positive integer")]
    NotPositive {
        /// The config key.
        key: &'static str,
        /// Its value.
        value: i64,
    },
    /// Dropout outside [0, 1).
    #[error("model config: `dropout` is {0}; it must be in [0, 1)")]
    Dropout(f64),
    /// `n_heads` does not divide `d_model`.
    #[error("model config: `n_heads` = {n_heads} does not divide `d_model` = {d_model}; pick values such that d_model % n_heads == 0")]
    Heads {
        /// Model width.
        d_model: i64,
        /// Attention heads.
        n_heads: i64,
    },
    /// No head to build.
    #[error("model config: `tasks` is empty; list at least one of valence, arousal, expr, au")]
    NoTasks,
    /// Tasks repeated or out of the reference order.
    #[error("model config: `tasks` = [{0}] must list each of valence, arousal, expr, au at most once, in that order")]
    TaskOrder(String),
    /// A feedback source or target that has no head.
    #[error("model config: feedback {role} `{task}` is not among `tasks` = [{tasks}]; add it or choose another {role}")]
    FeedbackTask {
        /// "source" or "target".
        role: &'static str,
        /// The task named.
        task: HeadTask,
        /// The configured tasks.
        tasks: String,
    },
    /// Feedback from a task to itself.
    #[error("model config: feedback source and target are both `{0}`; choose two different tasks")]
    FeedbackSelf(HeadTask),
    /// A topology that needs an encoder on a model without one.
    #[error("model config: topology `{0}` needs an encoder; with arch = \"none\" use topology = \"basic\"")]
    NoEncoderTopology(Topology),
    /// The multi-rate encoder with other tasks, a topology or heads of its own.
    #[error("model config: arch = \"multirate\" is an AU model (its three pipelines end in the 12 AU logits): it needs tasks = [au] (got [{tasks}]), topology = \"basic\" (got {topology}) and no [model.heads]; train it with --tasks au")]
    MultirateAuOnly {
        /// The configured tasks.
        tasks: String,
        /// The configured topology.
        topology: Topology,
    },
    /// A head kind chosen for a task that is not trained.
    #[error("model config: [model.heads] {head} needs the task `{task}`, which is not among `tasks` = [{tasks}]; train it (--tasks) or use the default head")]
    HeadWithoutTask {
        /// The head choice.
        head: &'static str,
        /// The task it needs.
        task: HeadTask,
        /// The configured tasks.
        tasks: String,
    },
    /// The LRP-ARL-FF head on one vector per frame.
    #[error("model config: [model.heads] au = \"lrp-arl-ff\" is a token system: it reads a backbone's spatial map, but the features are one pooled vector per frame; extract the map (`extractor extract --output map`, or `extractor sample-data --synthetic-tokens N` for the sample) and train on that feature set")]
    TokenHeadOnPooled,
    /// Token features for a model that reads vectors.
    #[error("model config: the features have {tokens} tokens per frame (a spatial map, [{tokens}, {dim}] per frame), but this model reads one pooled vector per frame ([D]); only [model.heads] au = \"lrp-arl-ff\" (arch = \"none\", tasks = [au]) and all = \"task-queries\" (arch = \"none\") read tokens; train this model on pooled features (`extractor extract --output pooled`)")]
    TokensWithoutTokenHead {
        /// Tokens per frame.
        tokens: i64,
        /// Width of a token.
        dim: i64,
    },
    /// The task-queries model on one vector per frame.
    #[error("model config: [model.heads] all = \"task-queries\" is a token system: it reads patch tokens, [tokens, D] per frame (the paper: DINOv2's 289 x 1536), but the features are one pooled vector per frame ([{dim}]); extract the patch tokens (`extractor extract --output tokens` for a ViT, `--output map` for a CNN, or `extractor sample-data --synthetic-tokens N` for the sample) and train on that feature set")]
    TaskQueriesOnPooled {
        /// Width of the pooled vector.
        dim: i64,
    },
    /// The task-queries model with an encoder or other heads.
    #[error("model config: [model.heads] all = \"task-queries\" is the whole model: it needs arch = \"none\" (got {arch}) and no other [model.heads] entry (va, expr, au at their defaults)")]
    TaskQueriesAlone {
        /// The configured encoder.
        arch: Arch,
    },
    /// Sine-cosine positions off a square grid.
    #[error("model config: task_queries.positions = \"sincos\" needs a square patch grid and channels a multiple of 4, but there are {tokens} tokens and {channels} channels; use positions = \"learned\"")]
    SincosGrid {
        /// Tokens per frame.
        tokens: i64,
        /// Channels after compression.
        channels: i64,
    },
    /// A LANet reduction larger than the token width.
    #[error("model config: `lrp.reduction` = {value} leaves the LANets no hidden unit on tokens {width} wide (hidden = width / reduction); use at most {width}")]
    Reduction {
        /// The reduction.
        value: i64,
        /// The token width.
        width: i64,
    },
    /// A size that must divide the token width.
    #[error("model config: `{key}` = {value} must divide the token width {width}")]
    Divides {
        /// The config key.
        key: &'static str,
        /// Its value.
        value: i64,
        /// The token width (feature dims).
        width: i64,
    },
    /// A task name that is not a head.
    #[error("unknown model task {0:?}: expected valence, arousal, expr or au")]
    UnknownTask(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_reference_values_and_valid() {
        let c = Config::default();
        assert_eq!(
            (c.hidden, c.d_model, c.n_layers, c.n_heads, c.ff),
            (1024, 512, 4, 4, 1024)
        );
        assert_eq!((c.dropout, c.feat_dim), (0.3, 2134));
        assert_eq!((c.source, c.target), (HeadTask::Au, HeadTask::Expr));
        assert_eq!(c.encoder_dim(), 1024);
        c.validate().unwrap();
    }

    #[test]
    fn toml_uses_the_reference_names_and_rejects_typos() {
        let c: Config = toml::from_str(
            "arch = \"transformer\"\ntopology = \"share-bottom\"\ntasks = [\"valence\", \"au\"]\n",
        )
        .unwrap();
        assert_eq!(
            (c.arch, c.topology),
            (Arch::Transformer, Topology::ShareBottom)
        );
        assert_eq!(c.tasks, vec![HeadTask::Valence, HeadTask::Au]);
        assert_eq!(c.encoder_dim(), 512);
        let err = toml::from_str::<Config>("hiden = 3\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("hiden"), "{err}");
    }

    #[test]
    fn validate_rejects_what_cannot_be_built() {
        let with = |f: fn(&mut Config)| {
            let mut c = Config::default();
            f(&mut c);
            c.validate().unwrap_err()
        };
        assert!(matches!(
            with(|c| c.hidden = 0),
            ConfigError::NotPositive { key: "hidden", .. }
        ));
        assert!(matches!(
            with(|c| {
                c.arch = Arch::Transformer;
                c.n_heads = 3;
            }),
            ConfigError::Heads { .. }
        ));
        assert!(matches!(with(|c| c.tasks = vec![]), ConfigError::NoTasks));
        assert!(matches!(
            with(|c| c.tasks = vec![HeadTask::Au, HeadTask::Expr]),
            ConfigError::TaskOrder(_)
        ));
        assert!(matches!(
            with(|c| {
                c.topology = Topology::Feedback;
                c.tasks = vec![HeadTask::Valence, HeadTask::Expr];
            }),
            ConfigError::FeedbackTask { role: "source", .. }
        ));
        assert!(matches!(
            with(|c| {
                c.topology = Topology::Feedback;
                c.target = HeadTask::Au;
            }),
            ConfigError::FeedbackSelf(HeadTask::Au)
        ));
        assert!(matches!(with(|c| c.dropout = 1.0), ConfigError::Dropout(_)));
    }

    #[test]
    fn heads_for_cli_task_groups_follow_reference_order() {
        assert_eq!(
            HeadTask::for_tasks(&[Task::Au, Task::Va]),
            vec![HeadTask::Valence, HeadTask::Arousal, HeadTask::Au]
        );
        assert_eq!("expr".parse::<HeadTask>().unwrap(), HeadTask::Expr);
        assert!("va".parse::<HeadTask>().is_err());
    }

    #[test]
    fn the_task_queries_model_needs_tokens_no_encoder_and_no_other_head() {
        let tq = |tokens: i64| Config {
            arch: Arch::None,
            heads: HeadKinds {
                all: JointHead::TaskQueries,
                ..HeadKinds::default()
            },
            feat_dim: 1536,
            tokens,
            ..Config::default()
        };
        tq(289).validate().unwrap();
        let pooled = tq(1).validate().unwrap_err();
        assert_eq!(pooled, ConfigError::TaskQueriesOnPooled { dim: 1536 });
        let text = pooled.to_string();
        assert!(
            text.contains("token system")
                && text.contains("289 x 1536")
                && text.contains("[1536]")
                && text.contains("--output map"),
            "{text}"
        );
        let with_au_head = Config {
            heads: HeadKinds {
                au: AuHead::Anfl,
                all: JointHead::TaskQueries,
                ..HeadKinds::default()
            },
            ..tq(289)
        };
        assert!(matches!(
            with_au_head.validate(),
            Err(ConfigError::TaskQueriesAlone { .. })
        ));
        let on_gru = Config {
            arch: Arch::Gru,
            ..tq(289)
        };
        assert!(matches!(
            on_gru.validate(),
            Err(ConfigError::TaskQueriesAlone { arch: Arch::Gru })
        ));
        let mut odd_grid = tq(290);
        odd_grid.task_queries.positions = Positions::Sincos;
        assert!(matches!(
            odd_grid.validate(),
            Err(ConfigError::SincosGrid { tokens: 290, .. })
        ));
        let mut heads = tq(289);
        heads.task_queries.heads = 5;
        assert!(matches!(
            heads.validate(),
            Err(ConfigError::Divides {
                key: "task_queries.heads",
                ..
            })
        ));
        let pooled_model_on_tokens = Config {
            tokens: 289,
            feat_dim: 1536,
            ..Config::default()
        };
        let e = pooled_model_on_tokens.validate().unwrap_err().to_string();
        assert!(
            e.contains("[289, 1536]")
                && e.contains("task-queries")
                && e.contains("--output pooled"),
            "{e}"
        );
        let c: Config = toml::from_str(
            "arch = \"none\"\n[heads]\nall = \"task-queries\"\n[task_queries]\npositions = \"sincos\"\ngraph = \"full\"\n",
        )
        .unwrap();
        assert_eq!(c.heads.all, JointHead::TaskQueries);
        assert_eq!(
            (
                c.task_queries.positions,
                c.task_queries.graph,
                c.task_queries.channels
            ),
            (Positions::Sincos, Graph::Full, 128)
        );
    }

    #[test]
    fn token_features_go_to_the_token_head_and_it_needs_them() {
        let lrp = |tokens: i64| Config {
            arch: Arch::None,
            tasks: vec![HeadTask::Au],
            heads: HeadKinds {
                au: AuHead::LrpArlFf,
                ..HeadKinds::default()
            },
            feat_dim: 32,
            tokens,
            ..Config::default()
        };
        lrp(16).validate().unwrap();
        let pooled = lrp(1).validate().unwrap_err();
        assert_eq!(pooled, ConfigError::TokenHeadOnPooled);
        assert!(pooled.to_string().contains("--output map"), "{pooled}");
        let on_gru = Config {
            arch: Arch::Gru,
            topology: Topology::Basic,
            ..lrp(16)
        };
        assert!(matches!(
            on_gru.validate(),
            Err(ConfigError::TokensWithoutTokenHead { tokens: 16, .. })
        ));
        let mlp_on_tokens = Config {
            tokens: 49,
            ..Config::default()
        };
        let e = mlp_on_tokens.validate().unwrap_err().to_string();
        assert!(
            e.contains("49 tokens") && e.contains("--output pooled"),
            "{e}"
        );
        let mut bad_heads = lrp(16);
        bad_heads.lrp.fusion_heads = 5;
        assert!(matches!(
            bad_heads.validate(),
            Err(ConfigError::Divides {
                key: "lrp.fusion_heads",
                ..
            })
        ));
    }
}
