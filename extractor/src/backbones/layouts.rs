//! The public checkpoint layouts this tool knows, how to recognise them from a file's tensor
//! names, and how to map their names onto the native ones of our backbones.
//!
//! What it does: [`KNOWN`] lists each layout as the set of its name patterns (a name with every
//! numeric part written `#`, e.g. `blocks.#.attn.qkv.weight`), taken from the public libraries'
//! own modules (`scripts/fixtures/layouts_fixture.py` writes their real key lists and
//! `extractor/tests/layouts.rs` checks these patterns against them). [`recognise`] scores a
//! file's names against every layout (how many of the file's names fit it) and, when the best
//! one is not one of our native layouts, returns a [`Mapping`] from our names to the file's:
//! - transformers `Dinov2Model` / `Dinov2WithRegistersModel` (hub `facebook/dinov2-*`, old
//!   names `attention.attention.{query,key,value}`, `attention.output.dense`, `mlp.weights_in`
//!   / `weights_out`, and the names of transformers >= 5, `attention.{q,k,v,o}_proj`,
//!   `mlp.{gate,up,down}_proj`; an optional `dinov2.` prefix) onto timm's ViT: query, key and
//!   value are concatenated (in that order) into the fused `attn.qkv`, gate and up into the
//!   packed SwiGLU `mlp.fc1`, `layer_scale{1,2}.lambda1` become `ls{1,2}.gamma`, `layernorm`
//!   becomes `norm`; `mask_token` and a `classifier.` are dropped. With registers, transformers
//!   adds `position_embeddings` to the class token and the patches before inserting the
//!   registers; timm's layout adds them to the patches only (`no_embed_class`), so the class
//!   token is mapped to `cls_token + position_embeddings[:, 0]` and `pos_embed` to the other
//!   rows: the same function, in timm's layout;
//! - torchvision DenseNet with the keys of torchvision < 0.3 (`denselayerN.norm.1.weight`),
//!   which torchvision itself rewrites at load to `denselayerN.norm1.weight`: the same rename.
//!
//! A `module.` prefix on every name (DataParallel) is removed for safetensors files too. Native
//! layouts (timm ViT = MAE's own `models_vit` names, torchvision DenseNet, torchvision / timm
//! ResNet, insightface arcface_torch IResNet) need no mapping; [`closest`] names the best
//! layout for the error when a file matches nothing ("closest known layout: ... (N of M names
//! match)").
//!
//! What it does not: guess renames outside these layouts, transpose or reshape tensors (only
//! concatenation along the first dimension, and the class-token fold above), or choose the
//! backbone from the file (the config names it).

use std::collections::BTreeMap;

/// One public layout: its name and the patterns of its tensor names (numbers as `#`).
#[derive(Debug, Clone, Copy)]
pub struct Layout {
    /// Human-readable name, as shown in errors.
    pub name: &'static str,
    /// Name patterns (see [`pattern`]).
    pub patterns: &'static [&'static str],
    /// Whether the names are those of one of our backbones (no mapping needed).
    pub native: bool,
}

const BN: &str = "weight|bias|running_mean|running_var|num_batches_tracked";

/// timm ViT (MAE fine-tuned `models_vit`, timm's MAE and DINOv2 with or without registers).
pub const TIMM_VIT: Layout = Layout {
    name: "timm ViT (MAE / DINOv2)",
    patterns: &[
        "cls_token",
        "reg_token",
        "pos_embed",
        "mask_token",
        "patch_embed.proj.{weight|bias}",
        "blocks.#.norm1.{weight|bias}",
        "blocks.#.attn.qkv.{weight|bias}",
        "blocks.#.attn.proj.{weight|bias}",
        "blocks.#.ls1.gamma",
        "blocks.#.norm2.{weight|bias}",
        "blocks.#.mlp.fc1.{weight|bias}",
        "blocks.#.mlp.fc2.{weight|bias}",
        "blocks.#.ls2.gamma",
        "norm.{weight|bias}",
        "fc_norm.{weight|bias}",
        "head.{weight|bias}",
    ],
    native: true,
};

/// transformers `Dinov2Model` (and `Dinov2WithRegistersModel`), old and >= 5 names.
pub const HF_DINOV2: Layout = Layout {
    name: "transformers Dinov2Model",
    patterns: &[
        "embeddings.cls_token",
        "embeddings.mask_token",
        "embeddings.register_tokens",
        "embeddings.position_embeddings",
        "embeddings.patch_embeddings.projection.{weight|bias}",
        "encoder.layer.#.norm1.{weight|bias}",
        "encoder.layer.#.norm2.{weight|bias}",
        "encoder.layer.#.attention.attention.{query|key|value}.{weight|bias}",
        "encoder.layer.#.attention.output.dense.{weight|bias}",
        "encoder.layer.#.attention.{q_proj|k_proj|v_proj|o_proj}.{weight|bias}",
        "encoder.layer.#.layer_scale1.lambda1",
        "encoder.layer.#.layer_scale2.lambda1",
        "encoder.layer.#.mlp.{fc1|fc2|weights_in|weights_out}.{weight|bias}",
        "encoder.layer.#.mlp.{gate_proj|up_proj|down_proj}.{weight|bias}",
        "layernorm.{weight|bias}",
        "classifier.{weight|bias}",
    ],
    native: false,
};

/// torchvision DenseNet (timm's `densenet121.tv_in1k` has the same names).
pub const TV_DENSENET: Layout = Layout {
    name: "torchvision / timm DenseNet",
    patterns: &[
        "features.conv0.weight",
        "features.norm0.{BN}",
        "features.denseblock#.denselayer#.{norm1|norm2}.{BN}",
        "features.denseblock#.denselayer#.{conv1|conv2}.weight",
        "features.transition#.norm.{BN}",
        "features.transition#.conv.weight",
        "features.norm5.{BN}",
        "classifier.{weight|bias}",
    ],
    native: true,
};

/// torchvision DenseNet with the pre-0.3 keys (`norm.1`, `conv.2`).
pub const TV_DENSENET_OLD: Layout = Layout {
    name: "torchvision DenseNet, pre-0.3 keys (denselayerN.norm.1)",
    patterns: &[
        "features.conv0.weight",
        "features.norm0.{BN}",
        "features.denseblock#.denselayer#.norm.#.{BN}",
        "features.denseblock#.denselayer#.conv.#.weight",
        "features.transition#.norm.{BN}",
        "features.transition#.conv.weight",
        "features.norm5.{BN}",
        "classifier.{weight|bias}",
    ],
    native: false,
};

/// torchvision ResNet (timm's `resnet*.tv_in1k` and `resnet*.a1_in1k` have the same names).
pub const TV_RESNET: Layout = Layout {
    name: "torchvision / timm ResNet",
    patterns: &[
        "conv1.weight",
        "bn1.{BN}",
        "layer#.#.{conv1|conv2|conv3}.weight",
        "layer#.#.{bn1|bn2|bn3}.{BN}",
        "layer#.#.downsample.#.weight",
        "layer#.#.downsample.#.{BN}",
        "fc.{weight|bias}",
    ],
    native: true,
};

/// insightface arcface_torch IResNet (`backbone.pth`).
pub const ARCFACE_IRESNET: Layout = Layout {
    name: "insightface arcface_torch IResNet",
    patterns: &[
        "conv1.weight",
        "bn1.{BN}",
        "prelu.weight",
        "layer#.#.{bn1|bn2|bn3}.{BN}",
        "layer#.#.{conv1|conv2}.weight",
        "layer#.#.prelu.weight",
        "layer#.#.downsample.#.weight",
        "layer#.#.downsample.#.{BN}",
        "bn2.{BN}",
        "fc.{weight|bias}",
        "features.{BN}",
    ],
    native: true,
};

/// Every known layout, native ones first (they win ties).
pub const KNOWN: &[Layout] = &[
    TIMM_VIT,
    TV_DENSENET,
    TV_RESNET,
    ARCFACE_IRESNET,
    HF_DINOV2,
    TV_DENSENET_OLD,
];

/// `name` with every all-digit part replaced by `#` and digits after a word (`denseblock3`,
/// `layer4`, `transition1`) too: `features.denseblock3.denselayer12.conv1.weight` ->
/// `features.denseblock#.denselayer#.conv1.weight`. Words that end in a digit by name (`conv1`,
/// `bn2`, `fc1`, `norm5`, `ls1`, `layer_scale1`) keep it.
pub fn pattern(name: &str) -> String {
    name.split('.')
        .map(|part| {
            if !part.is_empty() && part.chars().all(|c| c.is_ascii_digit()) {
                return "#".to_string();
            }
            for word in ["denseblock", "denselayer", "transition", "layer"] {
                if let Some(rest) = part.strip_prefix(word) {
                    if !rest.is_empty() && rest.chars().all(|c| c.is_ascii_digit()) {
                        return format!("{word}#");
                    }
                }
            }
            part.to_string()
        })
        .collect::<Vec<_>>()
        .join(".")
}

/// Every concrete pattern of a layout: `{a|b}` alternatives and `{BN}` expanded.
pub fn expand(layout: &Layout) -> Vec<String> {
    let mut out = Vec::new();
    for p in layout.patterns {
        let mut acc = vec![String::new()];
        let p = p.replace("{BN}", &format!("{{{BN}}}"));
        let mut rest = p.as_str();
        while let Some(start) = rest.find('{') {
            let end = rest[start..].find('}').expect("a closing brace") + start;
            let (lit, alts) = (&rest[..start], &rest[start + 1..end]);
            acc = acc
                .iter()
                .flat_map(|a| alts.split('|').map(move |alt| format!("{a}{lit}{alt}")))
                .collect();
            rest = &rest[end + 1..];
        }
        out.extend(acc.into_iter().map(|a| a + rest));
    }
    out
}

/// How many of `names` fit each layout, best first: `(layout, fitting, total)`.
pub fn scores<'a>(
    names: impl IntoIterator<Item = &'a str>,
) -> Vec<(&'static Layout, usize, usize)> {
    let pats: Vec<String> = names.into_iter().map(pattern).collect();
    let mut out: Vec<(&'static Layout, usize, usize)> = KNOWN
        .iter()
        .map(|l| {
            let set: std::collections::HashSet<String> = expand(l).into_iter().collect();
            (
                l,
                pats.iter().filter(|p| set.contains(*p)).count(),
                pats.len(),
            )
        })
        .collect();
    // Stable: native layouts (listed first) win ties.
    out.sort_by_key(|s| std::cmp::Reverse(s.1));
    out
}

/// The layout most of `names` fit, with the count, for error messages.
pub fn closest<'a>(names: impl IntoIterator<Item = &'a str>) -> (&'static str, usize, usize) {
    let s = scores(names);
    (s[0].0.name, s[0].1, s[0].2)
}

/// Where one of our tensors comes from in the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// The file's tensor of this name.
    Rename(String),
    /// These file tensors concatenated along dimension 0, in order.
    Concat(Vec<String>),
    /// `token + pos[:, 0:1]` (a class token with its position embedding folded in).
    TokenPlusFirstRow {
        /// The token `[1, 1, D]`.
        token: String,
        /// The position embedding `[1, 1 + N, D]`.
        pos: String,
    },
    /// `pos[:, 1:]` (a position embedding without its class-token row).
    WithoutFirstRow(String),
}

impl Source {
    /// The file names it reads.
    pub fn inputs(&self) -> Vec<&str> {
        match self {
            Source::Rename(n) | Source::WithoutFirstRow(n) => vec![n],
            Source::Concat(v) => v.iter().map(String::as_str).collect(),
            Source::TokenPlusFirstRow { token, pos } => vec![token, pos],
        }
    }

    /// Shape of the result from the inputs' shapes, or why they do not fit together.
    pub fn shape(&self, shape_of: impl Fn(&str) -> Option<Vec<i64>>) -> Result<Vec<i64>, String> {
        let get = |n: &str| shape_of(n).ok_or_else(|| format!("{n} is not in the file"));
        match self {
            Source::Rename(n) => get(n),
            Source::Concat(v) => {
                let shapes = v.iter().map(|n| get(n)).collect::<Result<Vec<_>, _>>()?;
                let first = &shapes[0];
                if first.is_empty()
                    || shapes
                        .iter()
                        .any(|s| s.len() != first.len() || s[1..] != first[1..])
                {
                    return Err(format!(
                        "{} have shapes {:?}, which do not concatenate along dimension 0",
                        v.join(", "),
                        shapes
                    ));
                }
                let mut out = first.clone();
                out[0] = shapes.iter().map(|s| s[0]).sum();
                Ok(out)
            }
            Source::TokenPlusFirstRow { token, pos } => {
                let (t, p) = (get(token)?, get(pos)?);
                if t.len() != 3 || p.len() != 3 || t[1] != 1 || p[1] < 1 || t[2] != p[2] {
                    return Err(format!(
                        "{token} {t:?} and {pos} {p:?} are not a [1, 1, D] token and a [1, 1 + N, D] position embedding"
                    ));
                }
                Ok(t)
            }
            Source::WithoutFirstRow(n) => {
                let mut s = get(n)?;
                if s.len() != 3 || s[1] < 2 {
                    return Err(format!(
                        "{n} {s:?} is not a [1, 1 + N, D] position embedding"
                    ));
                }
                s[1] -= 1;
                Ok(s)
            }
        }
    }

    /// The tensor, from the file's tensors by name.
    pub fn build(&self, get: impl Fn(&str) -> Option<tch::Tensor>) -> Option<tch::Tensor> {
        match self {
            Source::Rename(n) => get(n),
            Source::Concat(v) => {
                let parts = v.iter().map(|n| get(n)).collect::<Option<Vec<_>>>()?;
                Some(tch::Tensor::cat(&parts, 0))
            }
            Source::TokenPlusFirstRow { token, pos } => {
                let (t, p) = (get(token)?, get(pos)?);
                Some(t.to_kind(tch::Kind::Float) + p.narrow(1, 0, 1).to_kind(tch::Kind::Float))
            }
            Source::WithoutFirstRow(n) => {
                let p = get(n)?;
                let rows = p.size()[1];
                Some(p.narrow(1, 1, rows - 1))
            }
        }
    }
}

/// A file's names mapped onto ours.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mapping {
    /// The layout recognised.
    pub layout: &'static str,
    /// Our name -> where it comes from. Names of the file not mapped are kept as they are.
    pub names: BTreeMap<String, Source>,
    /// File names the layout does not use (e.g. `embeddings.mask_token`).
    pub dropped: Vec<String>,
}

/// The mapping for `names` (the file's, after any `module.` prefix is removed), or `None` when
/// the best-fitting layout is native (or none fits better than the native ones).
pub fn recognise(names: &[String]) -> Option<Mapping> {
    let s = scores(names.iter().map(String::as_str));
    let (best, n, _) = s[0];
    if best.native || n == 0 {
        return None;
    }
    let mut map = match best.name {
        n if n == HF_DINOV2.name => map_hf_dinov2(names),
        n if n == TV_DENSENET_OLD.name => map_densenet_old(names),
        _ => return None,
    };
    map.layout = best.name;
    Some(map)
}

fn map_densenet_old(names: &[String]) -> Mapping {
    let mut out = BTreeMap::new();
    for name in names {
        let parts: Vec<&str> = name.split('.').collect();
        let mut ours: Vec<String> = Vec::new();
        let mut i = 0;
        while i < parts.len() {
            let after_layer = i > 0
                && parts[i - 1]
                    .strip_prefix("denselayer")
                    .is_some_and(|r| !r.is_empty() && r.chars().all(|c| c.is_ascii_digit()));
            if after_layer
                && matches!(parts[i], "norm" | "relu" | "conv")
                && matches!(parts.get(i + 1), Some(&"1") | Some(&"2"))
            {
                ours.push(format!("{}{}", parts[i], parts[i + 1]));
                i += 2;
            } else {
                ours.push(parts[i].to_string());
                i += 1;
            }
        }
        out.insert(ours.join("."), Source::Rename(name.clone()));
    }
    Mapping {
        layout: TV_DENSENET_OLD.name,
        names: out,
        dropped: Vec::new(),
    }
}

fn map_hf_dinov2(names: &[String]) -> Mapping {
    let prefix = if names.iter().any(|n| n.starts_with("dinov2.embeddings.")) {
        "dinov2."
    } else {
        ""
    };
    let has = |n: &str| names.iter().any(|x| x == n);
    let f = |n: &str| format!("{prefix}{n}");
    let mut out = BTreeMap::new();
    let mut dropped = Vec::new();
    let mut used = std::collections::HashSet::new();
    let registers = has(&f("embeddings.register_tokens"));
    let mut put = |ours: String, src: Source, used: &mut std::collections::HashSet<String>| {
        for i in src.inputs() {
            used.insert(i.to_string());
        }
        out.insert(ours, src);
    };
    let pos = f("embeddings.position_embeddings");
    let cls = f("embeddings.cls_token");
    if registers {
        put(
            "cls_token".into(),
            Source::TokenPlusFirstRow {
                token: cls,
                pos: pos.clone(),
            },
            &mut used,
        );
        put("pos_embed".into(), Source::WithoutFirstRow(pos), &mut used);
        put(
            "reg_token".into(),
            Source::Rename(f("embeddings.register_tokens")),
            &mut used,
        );
    } else {
        put("cls_token".into(), Source::Rename(cls), &mut used);
        put("pos_embed".into(), Source::Rename(pos), &mut used);
    }
    for wb in ["weight", "bias"] {
        put(
            format!("patch_embed.proj.{wb}"),
            Source::Rename(f(&format!("embeddings.patch_embeddings.projection.{wb}"))),
            &mut used,
        );
        put(
            format!("norm.{wb}"),
            Source::Rename(f(&format!("layernorm.{wb}"))),
            &mut used,
        );
    }
    let layers: std::collections::BTreeSet<usize> = names
        .iter()
        .filter_map(|n| n.strip_prefix(&f("encoder.layer.")))
        .filter_map(|r| r.split('.').next()?.parse().ok())
        .collect();
    for i in layers {
        let l = |n: &str| f(&format!("encoder.layer.{i}.{n}"));
        let b = |n: &str| format!("blocks.{i}.{n}");
        for wb in ["weight", "bias"] {
            for norm in ["norm1", "norm2"] {
                put(
                    b(&format!("{norm}.{wb}")),
                    Source::Rename(l(&format!("{norm}.{wb}"))),
                    &mut used,
                );
            }
            let old = l(&format!("attention.attention.query.{wb}"));
            let qkv = if has(&old) {
                ["query", "key", "value"].map(|p| l(&format!("attention.attention.{p}.{wb}")))
            } else {
                ["q_proj", "k_proj", "v_proj"].map(|p| l(&format!("attention.{p}.{wb}")))
            };
            put(
                b(&format!("attn.qkv.{wb}")),
                Source::Concat(qkv.to_vec()),
                &mut used,
            );
            let proj = if has(&l(&format!("attention.output.dense.{wb}"))) {
                l(&format!("attention.output.dense.{wb}"))
            } else {
                l(&format!("attention.o_proj.{wb}"))
            };
            put(
                b(&format!("attn.proj.{wb}")),
                Source::Rename(proj),
                &mut used,
            );
            let (fc1, fc2) = if has(&l(&format!("mlp.weights_in.{wb}"))) {
                (
                    Source::Rename(l(&format!("mlp.weights_in.{wb}"))),
                    Source::Rename(l(&format!("mlp.weights_out.{wb}"))),
                )
            } else if has(&l(&format!("mlp.gate_proj.{wb}"))) {
                (
                    Source::Concat(vec![
                        l(&format!("mlp.gate_proj.{wb}")),
                        l(&format!("mlp.up_proj.{wb}")),
                    ]),
                    Source::Rename(l(&format!("mlp.down_proj.{wb}"))),
                )
            } else {
                (
                    Source::Rename(l(&format!("mlp.fc1.{wb}"))),
                    Source::Rename(l(&format!("mlp.fc2.{wb}"))),
                )
            };
            put(b(&format!("mlp.fc1.{wb}")), fc1, &mut used);
            put(b(&format!("mlp.fc2.{wb}")), fc2, &mut used);
        }
        for (k, ls) in [(1, "ls1"), (2, "ls2")] {
            let n = l(&format!("layer_scale{k}.lambda1"));
            if has(&n) {
                put(b(&format!("{ls}.gamma")), Source::Rename(n), &mut used);
            }
        }
    }
    for n in names {
        if used.contains(n) {
            continue;
        }
        if *n == f("embeddings.mask_token") || n.starts_with("classifier.") {
            dropped.push(n.clone());
        } else {
            // Unknown to the layout: kept by name, so a mismatch lists it as unexpected.
            out.insert(n.clone(), Source::Rename(n.clone()));
        }
    }
    Mapping {
        layout: HF_DINOV2.name,
        names: out,
        dropped,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_replace_indices_but_keep_numbered_module_names() {
        assert_eq!(
            pattern("features.denseblock3.denselayer12.conv1.weight"),
            "features.denseblock#.denselayer#.conv1.weight"
        );
        assert_eq!(
            pattern("layer4.2.bn3.running_var"),
            "layer#.#.bn3.running_var"
        );
        assert_eq!(
            pattern("encoder.layer.11.layer_scale1.lambda1"),
            "encoder.layer.#.layer_scale1.lambda1"
        );
        assert!(expand(&TV_RESNET).contains(&"layer#.#.downsample.#.running_mean".to_string()));
    }

    #[test]
    fn old_densenet_keys_are_renamed_as_torchvision_does() {
        let names = vec![
            "features.denseblock1.denselayer1.norm.1.weight".to_string(),
            "features.denseblock1.denselayer1.conv.2.weight".to_string(),
            "features.transition1.norm.weight".to_string(),
            "features.transition1.conv.weight".to_string(),
            "features.norm0.weight".to_string(),
        ];
        let m = recognise(&names).expect("the old DenseNet layout");
        assert_eq!(m.layout, TV_DENSENET_OLD.name);
        assert_eq!(
            m.names.get("features.denseblock1.denselayer1.norm1.weight"),
            Some(&Source::Rename(
                "features.denseblock1.denselayer1.norm.1.weight".into()
            ))
        );
        assert!(m
            .names
            .contains_key("features.denseblock1.denselayer1.conv2.weight"));
        assert!(m.names.contains_key("features.transition1.norm.weight"));
    }
}
