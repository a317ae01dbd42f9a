//! Sweep definitions: the TOML file, its checks, and its members.
//!
//! What it does:
//! - [`SweepFile`]: a sweep definition (lists of seeds, archs, topologies, an optional k-fold
//!   scheme, an optional base training config and the sweep folder), read by [`load`], which
//!   checks it and names the file (and line) of any mistake.
//! - [`members`]: every combination as a [`Member`] with a fixed index, name and run folder
//!   `<out>/<name>`, in a documented order, so array task N always runs the same member;
//!   [`select`] picks the one to run (`--sweep-index`, or the Slurm array task id) and
//!   [`apply`] sets what it decides in a training config.
//!
//! What it does not: split videos into folds (that is `crate::data::folds`), look at run
//! folders (that is [`super::status`]), or train.
//!
//! # Sweep file
//! ```toml
//! name = "lstm-seeds"                  # a name, no path separators
//! base = "configs/demo.toml"           # optional training config every member starts from
//! out = "runs/sweeps/lstm-seeds"       # sweep folder; member runs go to <out>/<member-name>
//! seeds = [0, 1, 2]
//! archs = ["lstm", "gru"]              # gru | lstm | transformer
//! topologies = ["basic"]               # basic | share-bottom | feedback
//! features = [["hog"], ["synthetic"]]  # optional: feature sets per member (each a join list)
//! [folds]                              # optional k-fold by video
//! n = 5                                # number of folds (the ABAW seeds use 5 and 6)
//! which = "all"                        # "all" (default) or a list of folds, e.g. [0, 3]
//! scheme = "round-robin"               # or "frames": folds of similar frame counts
//! ```
//! Relative paths (`base`, `out`) are relative to the working directory, as every path in the
//! training configs (run sweeps from the repository root; Slurm starts jobs in the folder they were
//! submitted from).
//!
//! # Member order and names
//! Members are the cartesian product archs x topologies x folds x seeds, with the arch varying
//! slowest and the seed fastest, each list in the order written:
//! `index = ((a * n_topologies + t) * n_folds + f) * n_seeds + s` (`n_folds` is 1 without
//! `[folds]`). A member's name is `<arch>-<topology>-s<seed>`, plus `-f<K>of<N>` with folds
//! (e.g. `lstm-basic-s0-f2of5`); lists may not repeat a value, so names are unique.
//!
//! With `features` (a bagged committee whose members differ in feature set, ABAW5 Wang et al.),
//! the feature sets are one more dimension, the slowest of all (`index = x * n_rest + i` with
//! `i` the index above), and each name gets `-<sets joined by +>` (e.g.
//! `none-basic-s1-hog+synthetic`); without `features` every member trains on the base config's.
//!
//! The k-fold rule is documented in `crate::data::folds`.

use crate::config::TrainConfig;
use crate::data::folds::{Fold, FoldRule};
use crate::model::{Arch, Topology};
use anyhow::{anyhow, bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::fmt;
use std::path::{Path, PathBuf};

/// The batch script that runs a sweep as a Slurm array, as printed in submit hints.
pub const SBATCH_SCRIPT: &str = "configs/slurm/train-sweep.sbatch";

/// A sweep definition (see the module documentation for the file format).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SweepFile {
    /// Name of the sweep (a name, not a path).
    pub name: String,
    /// Training config (TOML) every member starts from [default: the built-in defaults].
    #[serde(default)]
    pub base: Option<PathBuf>,
    /// Sweep folder; member `m` trains into `<out>/<m.name>`.
    pub out: PathBuf,
    /// Seeds, in member order.
    pub seeds: Vec<u64>,
    /// Optional k-fold scheme by video.
    #[serde(default)]
    pub folds: Option<FoldScheme>,
    /// Temporal encoders, in member order.
    pub archs: Vec<Arch>,
    /// Multi-task topologies, in member order.
    pub topologies: Vec<Topology>,
    /// Feature sets of the members (each a list joined by frame), the slowest dimension
    /// [default: the base config's, one dimension of size 1].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub features: Option<Vec<Vec<String>>>,
}

/// The `[folds]` table of a sweep file: N folds, and which of them to run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FoldScheme {
    /// Number of folds N (at least 2; fold 0 is the official validation set).
    pub n: usize,
    /// The folds to run [default: all].
    #[serde(default)]
    pub which: FoldSelection,
    /// How the training videos are dealt into folds 1..N-1 [default: round-robin].
    #[serde(default)]
    pub scheme: FoldRule,
}

/// Which folds of a scheme a sweep runs: `"all"` or a list such as `[0, 3]`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum FoldSelection {
    /// Every fold 0..N-1.
    #[default]
    All,
    /// These folds, in this order.
    Only(Vec<usize>),
}

impl Serialize for FoldSelection {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        match self {
            FoldSelection::All => s.serialize_str("all"),
            FoldSelection::Only(v) => v.serialize(s),
        }
    }
}

impl<'de> Deserialize<'de> for FoldSelection {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = FoldSelection;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str(r#""all" or a list of fold numbers such as [0, 3]"#)
            }
            fn visit_str<E: serde::de::Error>(
                self,
                v: &str,
            ) -> std::result::Result<Self::Value, E> {
                if v == "all" {
                    Ok(FoldSelection::All)
                } else {
                    Err(E::invalid_value(serde::de::Unexpected::Str(v), &self))
                }
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> std::result::Result<Self::Value, A::Error> {
                let mut folds = Vec::new();
                while let Some(k) = seq.next_element::<usize>()? {
                    folds.push(k);
                }
                Ok(FoldSelection::Only(folds))
            }
        }
        d.deserialize_any(Visitor)
    }
}

impl FoldScheme {
    /// The folds to run, in order.
    pub fn folds(&self) -> Vec<Fold> {
        let ks: Vec<usize> = match &self.which {
            FoldSelection::All => (0..self.n).collect(),
            FoldSelection::Only(v) => v.clone(),
        };
        ks.into_iter().map(|k| Fold { k, n: self.n }).collect()
    }
}

/// One run of a sweep.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// Position in [`members`] (the Slurm array task id that runs it).
    pub index: usize,
    /// `<arch>-<topology>-s<seed>[-f<K>of<N>]`, also the name of its run folder.
    pub name: String,
    /// Temporal encoder.
    pub arch: Arch,
    /// Multi-task topology.
    pub topology: Topology,
    /// Seed of the run.
    pub seed: u64,
    /// k-fold split, if the sweep has `[folds]`.
    pub fold: Option<Fold>,
    /// Feature sets, if the sweep has `features`.
    pub features: Option<Vec<String>>,
}

impl Member {
    /// The member's run folder, `<out>/<name>`.
    pub fn run_dir(&self, sweep: &SweepFile) -> PathBuf {
        sweep.out.join(&self.name)
    }
}

/// Every member of a sweep, in the documented order (index = position).
pub fn members(s: &SweepFile) -> Vec<Member> {
    let folds: Vec<Option<Fold>> = match &s.folds {
        Some(scheme) => scheme.folds().into_iter().map(Some).collect(),
        None => vec![None],
    };
    let feature_sets: Vec<Option<Vec<String>>> = match &s.features {
        Some(sets) => sets.iter().cloned().map(Some).collect(),
        None => vec![None],
    };
    let mut out = Vec::new();
    for features in &feature_sets {
        for &arch in &s.archs {
            for &topology in &s.topologies {
                for &fold in &folds {
                    for &seed in &s.seeds {
                        let mut name = format!("{arch}-{topology}-s{seed}");
                        if let Some(f) = fold {
                            name = format!("{name}-{}", f.tag());
                        }
                        if let Some(sets) = features {
                            name = format!("{name}-{}", sets.join("+"));
                        }
                        out.push(Member {
                            index: out.len(),
                            name,
                            arch,
                            topology,
                            seed,
                            fold,
                            features: features.clone(),
                        });
                    }
                }
            }
        }
    }
    out
}

/// Read and check a sweep file; errors name the file (and the line for syntax and unknown values).
pub fn load(path: &Path) -> Result<SweepFile> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the sweep file {}", path.display()))?;
    let s: SweepFile =
        toml::from_str(&text).with_context(|| format!("{}: invalid sweep file", path.display()))?;
    s.check().map_err(|e| anyhow!("{}: {e}", path.display()))?;
    Ok(s)
}

impl SweepFile {
    /// The checks [`load`] makes: a usable name, non-empty lists without repeats, valid folds.
    pub fn check(&self) -> std::result::Result<(), String> {
        if self.name.trim().is_empty() {
            return Err("`name` is empty: give the sweep a name".into());
        }
        if self.name.contains(['/', '\\']) || self.name.chars().any(char::is_control) {
            return Err(format!(
                "`name = {:?}`: a name, not a path (no separators or control characters); \
                 the folder is `out`",
                self.name
            ));
        }
        fn distinct<T: Ord + fmt::Display>(
            key: &str,
            v: &[T],
            example: &str,
        ) -> std::result::Result<(), String> {
            if v.is_empty() {
                return Err(format!(
                    "`{key}` is empty: list at least one, e.g. {key} = {example}"
                ));
            }
            let mut seen = BTreeSet::new();
            for x in v {
                if !seen.insert(x) {
                    return Err(format!(
                        "`{key}` lists {x} twice: members would share a run folder; remove the repeat"
                    ));
                }
            }
            Ok(())
        }
        distinct("seeds", &self.seeds, "[0, 1, 2]")?;
        distinct("archs", &self.archs, r#"["lstm"]"#)?;
        distinct("topologies", &self.topologies, r#"["basic"]"#)?;
        if let Some(sets) = &self.features {
            let joined: Vec<String> = sets.iter().map(|s| s.join("+")).collect();
            distinct("features", &joined, r#"[["hog"], ["synthetic"]]"#)?;
            if let Some(bad) = sets.iter().find(|s| {
                s.is_empty()
                    || s.iter()
                        .any(|n| n.is_empty() || n.contains(['/', '\\', '+']))
            }) {
                return Err(format!(
                    "`features` lists {bad:?}: each entry is a non-empty list of feature-set \
                     names (cache folder names, no separators or `+`)"
                ));
            }
        }
        if let Some(f) = &self.folds {
            if f.n < 2 {
                return Err(format!(
                    "[folds] n = {}: a k-fold split needs at least 2 folds (e.g. 5 or 6)",
                    f.n
                ));
            }
            if let FoldSelection::Only(ks) = &f.which {
                distinct("[folds] which", ks, "[0, 1]")?;
                if let Some(k) = ks.iter().find(|&&k| k >= f.n) {
                    return Err(format!(
                        "[folds] which lists fold {k}, but folds count from 0 to n-1 = {}",
                        f.n - 1
                    ));
                }
            }
        }
        Ok(())
    }
}

/// The member index of a Slurm array task: `SLURM_ARRAY_TASK_ID` read through `env`, used as is
/// (not minus `SLURM_ARRAY_TASK_MIN`), so resubmitting a subset (`--array=1,4`) reruns exactly
/// those members. `Ok(None)` outside an array task.
pub fn index_from_env(env: impl Fn(&str) -> Option<String>) -> Result<Option<usize>> {
    match env("SLURM_ARRAY_TASK_ID") {
        None => Ok(None),
        Some(v) => v.trim().parse().map(Some).map_err(|_| {
            anyhow!("SLURM_ARRAY_TASK_ID={v:?} is not a whole number; give --sweep-index N")
        }),
    }
}

/// The member to run: `index` (from `--sweep-index`, else [`index_from_env`]); errors say the
/// valid range when it is out of range or missing.
pub fn select(s: &SweepFile, index: Option<usize>) -> Result<Member> {
    let all = members(s);
    let Some(i) = index else {
        bail!(
            "sweep {}: which member? give --sweep-index N (0..{}) or run it as a Slurm array task \
             (sbatch --array=0-{} {SBATCH_SCRIPT} FILE)",
            s.name,
            all.len() - 1,
            all.len() - 1
        );
    };
    all.get(i).cloned().ok_or_else(|| {
        anyhow!(
            "sweep {}: member {i} does not exist; it has {} members (indices 0..{}); \
             see `temporal sweep FILE --list`",
            s.name,
            all.len(),
            all.len() - 1
        )
    })
}

/// The training config a member starts from: the sweep's `base` file, else the defaults.
pub fn base_config(s: &SweepFile) -> Result<TrainConfig> {
    match &s.base {
        Some(p) => {
            TrainConfig::load(p).with_context(|| format!("the base config of sweep {}", s.name))
        }
        None => Ok(TrainConfig::default()),
    }
}

/// Set what the member decides in `cfg`: arch, topology, seed, feature sets (with `features`)
/// and run folder. (The fold is
/// `member.fold`; the trainer applies it with [`apply_fold`].)
pub fn apply(s: &SweepFile, member: &Member, cfg: &mut TrainConfig) {
    cfg.model.arch = member.arch;
    cfg.model.topology = member.topology;
    cfg.seed = member.seed;
    if let Some(features) = &member.features {
        cfg.features = features.clone();
    }
    cfg.out = Some(member.run_dir(s));
    if let Some(folds) = &s.folds {
        cfg.fold_scheme = folds.scheme;
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn parse(text: &str) -> std::result::Result<SweepFile, String> {
        let s: SweepFile = toml::from_str(text).map_err(|e| e.to_string())?;
        s.check()?;
        Ok(s)
    }

    pub(crate) const EXAMPLE: &str = r#"
name = "demo"
base = "configs/demo.toml"
out = "runs/sweeps/demo"
seeds = [0, 1]
archs = ["lstm", "gru"]
topologies = ["basic"]
[folds]
n = 5
which = [0, 2]
"#;

    #[test]
    fn members_follow_the_documented_order() {
        let s = parse(EXAMPLE).unwrap();
        let m = members(&s);
        let names: Vec<&str> = m.iter().map(|m| m.name.as_str()).collect();
        // arch slowest, then topology, then fold, seed fastest.
        assert_eq!(
            names,
            [
                "lstm-basic-s0-f0of5",
                "lstm-basic-s1-f0of5",
                "lstm-basic-s0-f2of5",
                "lstm-basic-s1-f2of5",
                "gru-basic-s0-f0of5",
                "gru-basic-s1-f0of5",
                "gru-basic-s0-f2of5",
                "gru-basic-s1-f2of5",
            ]
        );
        // index = ((a*T + t)*F + f)*S + s with a=1, t=0, f=1, s=1, T=1, F=2, S=2 -> 7.
        let last = &m[7];
        assert_eq!(last.index, 7);
        assert_eq!(
            (last.arch, last.topology, last.seed),
            (Arch::Gru, Topology::Basic, 1)
        );
        assert_eq!(last.fold, Some(Fold { k: 2, n: 5 }));
        assert_eq!(
            last.run_dir(&s),
            PathBuf::from("runs/sweeps/demo/gru-basic-s1-f2of5")
        );
        assert!(m.iter().enumerate().all(|(i, m)| m.index == i));
    }

    #[test]
    fn no_folds_and_all_folds() {
        let s = parse(
            r#"name = "x"
out = "o"
seeds = [3]
archs = ["transformer"]
topologies = ["share-bottom", "feedback"]"#,
        )
        .unwrap();
        let names: Vec<String> = members(&s).into_iter().map(|m| m.name).collect();
        assert_eq!(
            names,
            ["transformer-share-bottom-s3", "transformer-feedback-s3"]
        );
        assert_eq!(s.base, None);

        let s = parse("name = \"x\"\nout = \"o\"\nseeds = [0]\narchs = [\"lstm\"]\ntopologies = [\"basic\"]\n[folds]\nn = 6\n").unwrap();
        let folds: Vec<Option<Fold>> = members(&s).into_iter().map(|m| m.fold).collect();
        assert_eq!(
            folds,
            (0..6).map(|k| Some(Fold { k, n: 6 })).collect::<Vec<_>>()
        );
        let s = parse("name = \"x\"\nout = \"o\"\nseeds = [0]\narchs = [\"lstm\"]\ntopologies = [\"basic\"]\n[folds]\nn = 5\nwhich = \"all\"\n").unwrap();
        assert_eq!(members(&s).len(), 5);
        let s = parse("name = \"x\"\nout = \"o\"\nseeds = [0]\narchs = [\"lstm\"]\ntopologies = [\"basic\"]\n[folds]\nn = 6\nscheme = \"frames\"\n").unwrap();
        assert_eq!(s.folds.unwrap().scheme, FoldRule::Frames);
    }

    #[test]
    fn mistakes_are_named() {
        let base = "name = \"x\"\nout = \"o\"\nseeds = [0]\narchs = [\"lstm\"]\ntopologies = [\"basic\"]\n";
        let cases: [(String, &str); 9] = [
            (base.replace("\"lstm\"", "\"lstn\""), "lstn"),
            (
                base.replace("seeds = [0]", "seeds = []"),
                "`seeds` is empty",
            ),
            (
                base.replace("seeds = [0]", "seeds = [1, 1]"),
                "lists 1 twice",
            ),
            (base.replace("\"basic\"]", "\"basic\", \"basic\"]"), "twice"),
            (base.replace("name = \"x\"", "name = \"a/b\""), "not a path"),
            (format!("{base}[folds]\nn = 1\n"), "at least 2 folds"),
            (format!("{base}[folds]\nn = 5\nwhich = [0, 5]\n"), "fold 5"),
            (
                format!("{base}[folds]\nn = 5\nwhich = \"some\"\n"),
                "\"all\" or a list",
            ),
            (format!("{base}epochs = 3\n"), "unknown field `epochs`"),
        ];
        for (text, expected) in cases {
            let err = parse(&text).unwrap_err();
            assert!(err.contains(expected), "{text:?}: {err}");
        }
        // The TOML error names the line of the unknown arch.
        let err = parse(&base.replace("\"lstm\"", "\"lstn\"")).unwrap_err();
        assert!(err.contains("line 4"), "{err}");
    }

    #[test]
    fn load_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sweep.toml");
        std::fs::write(&path, EXAMPLE.replace("seeds = [0, 1]", "seeds = []")).unwrap();
        let err = format!("{:#}", load(&path).unwrap_err());
        assert!(
            err.contains("sweep.toml") && err.contains("`seeds` is empty"),
            "{err}"
        );
        std::fs::write(&path, EXAMPLE).unwrap();
        assert_eq!(load(&path).unwrap(), parse(EXAMPLE).unwrap());
        let err = format!("{:#}", load(&dir.path().join("none.toml")).unwrap_err());
        assert!(err.contains("none.toml"), "{err}");
    }

    #[test]
    fn slurm_index_and_selection() {
        let s = parse(EXAMPLE).unwrap();
        let env =
            |id: &'static str| move |k: &str| (k == "SLURM_ARRAY_TASK_ID").then(|| id.to_string());
        assert_eq!(index_from_env(env("5")).unwrap(), Some(5));
        assert_eq!(index_from_env(|_| None).unwrap(), None);
        assert!(index_from_env(env("x")).is_err());
        assert_eq!(select(&s, Some(5)).unwrap().name, "gru-basic-s1-f0of5");
        let err = select(&s, Some(8)).unwrap_err().to_string();
        assert!(err.contains("8 members") && err.contains("0..7"), "{err}");
        let err = select(&s, None).unwrap_err().to_string();
        assert!(err.contains("--sweep-index"), "{err}");
    }

    #[test]
    fn apply_sets_what_the_member_decides() {
        let mut s = parse(EXAMPLE).unwrap();
        s.base = None;
        let m = select(&s, Some(6)).unwrap();
        let mut cfg = base_config(&s).unwrap();
        cfg.epochs = 7;
        apply(&s, &m, &mut cfg);
        assert_eq!(
            (cfg.model.arch, cfg.model.topology, cfg.seed),
            (Arch::Gru, Topology::Basic, 0)
        );
        assert_eq!(
            cfg.run_dir(),
            PathBuf::from("runs/sweeps/demo/gru-basic-s0-f2of5")
        );
        assert_eq!(cfg.epochs, 7, "other settings are kept");
        assert_eq!(cfg.fold_scheme, FoldRule::RoundRobin);
        s.folds.as_mut().unwrap().scheme = FoldRule::Frames;
        apply(&s, &m, &mut cfg);
        assert_eq!(
            cfg.fold_scheme,
            FoldRule::Frames,
            "[folds] scheme reaches the member"
        );

        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().join("base.toml");
        std::fs::write(&base, "epochs = 4\nlr = 0.01\n").unwrap();
        s.base = Some(base);
        let cfg = base_config(&s).unwrap();
        assert_eq!((cfg.epochs, cfg.lr), (4, 0.01));
    }

    #[test]
    fn feature_sets_are_the_slowest_dimension_and_name_the_members() {
        let s = parse(
            r#"name = "bag"
out = "o"
seeds = [0, 1]
archs = ["none"]
topologies = ["basic"]
features = [["hog"], ["hog", "synthetic"]]"#,
        )
        .unwrap();
        let m = members(&s);
        let names: Vec<&str> = m.iter().map(|m| m.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "none-basic-s0-hog",
                "none-basic-s1-hog",
                "none-basic-s0-hog+synthetic",
                "none-basic-s1-hog+synthetic",
            ]
        );
        let mut cfg = TrainConfig::default();
        apply(&s, &m[3], &mut cfg);
        assert_eq!(
            (cfg.features.clone(), cfg.seed),
            (vec!["hog".to_string(), "synthetic".into()], 1)
        );
        let base = "name = \"x\"\nout = \"o\"\nseeds = [0]\narchs = [\"none\"]\ntopologies = [\"basic\"]\n";
        let err = parse(&format!("{base}features = [[\"hog\"], [\"hog\"]]\n")).unwrap_err();
        assert!(err.contains("`features` lists hog twice"), "{err}");
        let err = parse(&format!("{base}features = [[]]\n")).unwrap_err();
        assert!(err.contains("non-empty list"), "{err}");
    }

    /// Every sweep definition shipped in `configs/sweeps/` loads, and its base config exists.
    #[test]
    fn shipped_sweeps_load() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let mut n = 0;
        for entry in std::fs::read_dir(root.join("configs/sweeps")).unwrap() {
            let path = entry.unwrap().path();
            let s = load(&path).unwrap_or_else(|e| panic!("{e:#}"));
            if let Some(base) = &s.base {
                TrainConfig::load(&root.join(base)).unwrap_or_else(|e| panic!("{e:#}"));
            }
            assert!(!members(&s).is_empty());
            n += 1;
        }
        assert!(n >= 3, "the sweeps of configs/sweeps/");
    }
}
