//! PyTorch checkpoints (`.pth`, `.pt`, `.bin` written by `torch.save`) read without Python and
//! without running anything they contain.
//!
//! What it does: [`read`] opens the zip container `torch.save` writes (PyTorch >= 1.6), parses
//! its `data.pkl` with candle's pickle reader (a stack machine that builds a tree of the
//! objects and never calls one), and refuses the file when that tree names any global outside
//! [`ALLOWED_GLOBALS`]: the tensor rebuild functions and storage types, `OrderedDict`, and a few
//! inert data classes training scripts put beside the weights (`argparse.Namespace`, numpy
//! scalars). A file naming anything else (`os.system` behind a `__reduce__`, a user class) could
//! run code when Python loads it, so the error names the globals and says how to re-save the
//! weights safely. The state dict is the top-level dict, or the dict under the first of
//! [`WRAPPER_KEYS`] (`state_dict`, `model`, `module`, `model_state_dict`) that holds tensors;
//! a `module.` prefix on every name (DataParallel) is removed. Tensors keep their dtype
//! (float16 / bfloat16 included) and strided views are rebuilt from their storage.
//!
//! The legacy (pre-1.6) format, five pickles and the raw storages one after the other, is read
//! too ([`read_legacy`]; facenet-pytorch's MTCNN weights are such files), with the same checks.
//!
//! What it does not: read TorchScript archives (errors say how to convert), map names between layouts (the builders' loaders do), or keep the file
//! open: [`read`] returns every tensor in memory.

use candle_core::pickle::{Object, Stack};
use candle_core::DType;
use std::collections::BTreeSet;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};
use tch::{Kind, Tensor};

/// Globals a checkpoint may name: `(module, name)`.
pub const ALLOWED_GLOBALS: &[(&str, &str)] = &[
    ("collections", "OrderedDict"),
    ("torch._utils", "_rebuild_tensor_v2"),
    ("torch._utils", "_rebuild_parameter"),
    ("torch._tensor", "_rebuild_from_type_v2"),
    ("torch.nn.parameter", "Parameter"),
    ("torch", "Tensor"),
    ("torch", "FloatStorage"),
    ("torch", "HalfStorage"),
    ("torch", "BFloat16Storage"),
    ("torch", "DoubleStorage"),
    ("torch", "LongStorage"),
    ("torch", "IntStorage"),
    ("torch", "ShortStorage"),
    ("torch", "CharStorage"),
    ("torch", "ByteStorage"),
    ("torch", "BoolStorage"),
    // inert data beside the weights in training checkpoints (never called by this reader)
    ("argparse", "Namespace"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy", "dtype"),
    ("_codecs", "encode"),
    ("builtins", "set"),
];

/// Keys under which training scripts keep the state dict, tried in this order.
pub const WRAPPER_KEYS: &[&str] = &["state_dict", "model", "module", "model_state_dict"];

/// Why a checkpoint cannot be read (`backbones::WeightsError` adds the file's path).
#[derive(Debug, thiserror::Error)]
pub enum PthError {
    /// The file cannot be opened or read.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// Not a readable `torch.save` archive, or no state dict in it: what is wrong and what to do.
    #[error("{0}")]
    Format(String),
    /// The pickle names globals outside [`ALLOWED_GLOBALS`] (`module.name` of each).
    #[error("the pickle names {0:?}")]
    Unsafe(Vec<String>),
}

/// Every tensor of the checkpoint's state dict, by name, in the file's dtypes.
pub fn read(path: &Path) -> Result<Vec<(String, Tensor)>, PthError> {
    let bad = PthError::Format;
    let mut head = [0u8; LEGACY_MAGIC.len()];
    let n = std::fs::File::open(path)?.read(&mut head)?;
    if head[..n] == LEGACY_MAGIC[..] {
        return read_legacy(&std::fs::read(path)?);
    }
    let file = std::fs::File::open(path)?;
    let mut zip = zip::ZipArchive::new(BufReader::new(file)).map_err(|e| {
        bad(format!(
            "not a zip archive as torch.save writes since PyTorch 1.6 ({e}); the file is \
             truncated, or of the legacy format: re-save it with a current PyTorch, or convert \
             it with safetensors.torch.save_file"
        ))
    })?;
    let pickle_name = (0..zip.len())
        .filter_map(|i| zip.name_for_index(i).map(str::to_string))
        .find(|n| n.ends_with("data.pkl"))
        .ok_or_else(|| {
            bad(
                "no data.pkl in the archive: not a torch.save file (a TorchScript model? use \
                 `--backbone torchscript`)"
                    .into(),
            )
        })?;
    let dir = PathBuf::from(pickle_name.trim_end_matches(".pkl"));
    let object = {
        let entry = zip
            .by_name(&pickle_name)
            .map_err(|e| bad(format!("{pickle_name}: {e}")))?;
        let mut stack = Stack::empty();
        stack
            .read_loop(&mut BufReader::new(entry))
            .and_then(|()| stack.finalize())
            .map_err(|e| bad(format!("{pickle_name} is not a complete pickle ({e})")))?
    };
    let mut refused = BTreeSet::new();
    disallowed_globals(&object, &mut refused);
    if !refused.is_empty() {
        return Err(PthError::Unsafe(refused.into_iter().collect()));
    }
    let entries = state_dict(object).map_err(bad)?;
    let mut out = Vec::with_capacity(entries.len());
    for (name, value) in entries {
        let Some(info) = value
            .into_tensor_info(name, &dir)
            .map_err(|e| bad(format!("{e}")))?
        else {
            continue; // a number or a string beside the tensors
        };
        let mut bytes = Vec::new();
        zip.by_name(&info.path)
            .map_err(|e| bad(format!("tensor {}: storage {}: {e}", info.name, info.path)))?
            .read_to_end(&mut bytes)
            .map_err(|e| bad(format!("tensor {}: storage {}: {e}", info.name, info.path)))?;
        let tensor = rebuild(&info, &bytes).map_err(bad)?;
        out.push((info.name, tensor));
    }
    if out.is_empty() {
        return Err(bad("the state dict holds no tensors".into()));
    }
    let prefix = "module.";
    if out.iter().all(|(n, _)| n.starts_with(prefix)) {
        for (n, _) in &mut out {
            n.drain(..prefix.len());
        }
    }
    Ok(out)
}

/// The first pickle of a legacy (pre-1.6) `torch.save` file: protocol 2, the magic number
/// 0x1950a86a20f9469cfc6c as a LONG1, STOP.
const LEGACY_MAGIC: [u8; 15] = [
    0x80, 0x02, 0x8a, 0x0a, 0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19, 0x2e,
];

/// A legacy `torch.save` file (PyTorch < 1.6; e.g. the MTCNN weights facenet-pytorch ships):
/// five pickles one after the other (magic number, protocol version, system info, the object,
/// the list of storage keys), then each storage in that order as its element count (int64,
/// little-endian) and its bytes. The object's tree is checked like a zip file's.
fn read_legacy(bytes: &[u8]) -> Result<Vec<(String, Tensor)>, PthError> {
    let bad = PthError::Format;
    let mut cursor = std::io::Cursor::new(&bytes[LEGACY_MAGIC.len()..]);
    let mut next_pickle = |what: &str| {
        let mut stack = Stack::empty();
        stack
            .read_loop(&mut cursor)
            .and_then(|()| stack.finalize())
            .map_err(|e| bad(format!("legacy torch.save file: the {what} pickle is incomplete ({e}); the file is truncated")))
    };
    let _protocol = next_pickle("protocol")?;
    let _sys_info = next_pickle("system info")?;
    let object = next_pickle("state dict")?;
    let keys = next_pickle("storage keys")?;
    let mut refused = BTreeSet::new();
    disallowed_globals(&object, &mut refused);
    disallowed_globals(&keys, &mut refused);
    if !refused.is_empty() {
        return Err(PthError::Unsafe(refused.into_iter().collect()));
    }
    let Object::List(keys) = keys else {
        return Err(bad(
            "legacy torch.save file: the storage keys are not a list".into(),
        ));
    };
    let entries = state_dict(object).map_err(bad)?;
    let dir = Path::new("legacy");
    let mut infos = Vec::with_capacity(entries.len());
    for (name, value) in entries {
        if let Some(info) = value
            .into_tensor_info(name, dir)
            .map_err(|e| bad(format!("{e}")))?
        {
            infos.push(info);
        }
    }
    // Each storage's bytes, by key, read in the order of the key list.
    let elem_of = |key: &str| {
        infos
            .iter()
            .find(|i| i.path.strip_prefix("legacy/") == Some(key))
            .map(|i| i.dtype.size_in_bytes())
    };
    let mut pos = LEGACY_MAGIC.len() + cursor.position() as usize;
    let mut storages: std::collections::HashMap<String, &[u8]> = Default::default();
    for key in keys {
        let Object::Unicode(key) = key else {
            return Err(bad(
                "legacy torch.save file: a storage key is not a string".into()
            ));
        };
        let elem = elem_of(&key).ok_or_else(|| {
            bad(format!(
                "legacy torch.save file: storage {key} belongs to no tensor"
            ))
        })?;
        let count = bytes
            .get(pos..pos + 8)
            .map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes")) as usize)
            .ok_or_else(|| {
                bad(format!(
                    "legacy torch.save file: storage {key} is cut off; the file is truncated"
                ))
            })?;
        pos += 8;
        let end = count
            .checked_mul(elem)
            .and_then(|n| n.checked_add(pos))
            .filter(|&end| end <= bytes.len())
            .ok_or_else(|| {
                bad(format!(
                    "legacy torch.save file: storage {key} is cut off; the file is truncated"
                ))
            })?;
        storages.insert(key, &bytes[pos..end]);
        pos = end;
    }
    let mut out = Vec::with_capacity(infos.len());
    for info in infos {
        let key = info.path.strip_prefix("legacy/").unwrap_or(&info.path);
        let data = storages.get(key).ok_or_else(|| {
            bad(format!(
                "tensor {}: storage {key} is not in the file",
                info.name
            ))
        })?;
        let tensor = rebuild(&info, data).map_err(bad)?;
        out.push((info.name, tensor));
    }
    if out.is_empty() {
        return Err(bad("the state dict holds no tensors".into()));
    }
    Ok(out)
}

/// Collects `module.name` of every global the tree names outside [`ALLOWED_GLOBALS`].
fn disallowed_globals(o: &Object, out: &mut BTreeSet<String>) {
    match o {
        Object::Class {
            module_name,
            class_name,
        } => {
            if !ALLOWED_GLOBALS.contains(&(module_name.as_str(), class_name.as_str())) {
                out.insert(format!("{module_name}.{class_name}"));
            }
        }
        Object::Tuple(v) | Object::List(v) => v.iter().for_each(|x| disallowed_globals(x, out)),
        Object::Dict(kv) => kv.iter().for_each(|(k, v)| {
            disallowed_globals(k, out);
            disallowed_globals(v, out);
        }),
        Object::Reduce { callable, args } | Object::Build { callable, args } => {
            disallowed_globals(callable, out);
            disallowed_globals(args, out);
        }
        Object::PersistentLoad(x) => disallowed_globals(x, out),
        Object::Int(_)
        | Object::Long(_)
        | Object::Float(_)
        | Object::Unicode(_)
        | Object::Bool(_)
        | Object::None
        | Object::Mark => {}
    }
}

/// True for a tensor's pickled form (a rebuild call).
fn is_tensor(o: &Object) -> bool {
    matches!(o, Object::Reduce { callable, .. } if matches!(&**callable,
        Object::Class { module_name, .. } if module_name.starts_with("torch")))
}

/// The `(name, value)` pairs of the state dict: the top-level dict when it holds tensors, else
/// the dict under the first wrapper key that does.
fn state_dict(top: Object) -> Result<Vec<(Object, Object)>, String> {
    let Object::Dict(entries) = top else {
        return Err(
            "the pickle's top object is not a dict of tensors (a whole pickled model? \
                    save model.state_dict() instead)"
                .into(),
        );
    };
    if entries.iter().any(|(_, v)| is_tensor(v)) {
        return Ok(entries);
    }
    let keys: Vec<String> = entries
        .iter()
        .filter_map(|(k, _)| match k {
            Object::Unicode(s) => Some(s.clone()),
            _ => None,
        })
        .collect();
    let mut entries = entries;
    for wrapper in WRAPPER_KEYS {
        if let Some(i) = entries.iter().position(|(k, v)| {
            matches!(k, Object::Unicode(s) if s == wrapper)
                && matches!(v, Object::Dict(d) if d.iter().any(|(_, t)| is_tensor(t)))
        }) {
            let (_, Object::Dict(inner)) = entries.swap_remove(i) else {
                unreachable!("checked to be a dict above")
            };
            return Ok(inner);
        }
    }
    Err(format!(
        "no tensors at the top level nor under {WRAPPER_KEYS:?}; the top-level keys are {keys:?}"
    ))
}

/// The tensor of `info` from its storage's bytes (little-endian, as torch.save writes).
fn rebuild(info: &candle_core::pickle::TensorInfo, bytes: &[u8]) -> Result<Tensor, String> {
    let kind = match info.dtype {
        DType::F32 => Kind::Float,
        DType::F16 => Kind::Half,
        DType::BF16 => Kind::BFloat16,
        DType::F64 => Kind::Double,
        DType::I64 => Kind::Int64,
        DType::U8 => Kind::Uint8,
        other => return Err(format!("tensor {}: unsupported dtype {other:?}", info.name)),
    };
    let elem = kind.elt_size_in_bytes();
    if !bytes.len().is_multiple_of(elem) || bytes.len() / elem < info.storage_size {
        return Err(format!(
            "tensor {}: storage {} has {} bytes, {} elements of {elem} bytes expected",
            info.name,
            info.path,
            bytes.len(),
            info.storage_size
        ));
    }
    let storage = Tensor::from_data_size(bytes, &[(bytes.len() / elem) as i64], kind);
    let layout = &info.layout;
    // candle's layout counts the storage offset in bytes
    let offset = (layout.start_offset() / elem) as i64;
    let size: Vec<i64> = layout.dims().iter().map(|&d| d as i64).collect();
    let stride: Vec<i64> = layout.stride().iter().map(|&s| s as i64).collect();
    let needed = size
        .iter()
        .zip(&stride)
        .map(|(&d, &s)| (d - 1).max(0) * s)
        .sum::<i64>()
        + offset
        + 1;
    if size.contains(&0) {
        return Ok(Tensor::empty(size.as_slice(), (kind, tch::Device::Cpu)));
    }
    if needed > storage.numel() as i64 {
        return Err(format!(
            "tensor {}: its view reaches element {needed} of a {}-element storage",
            info.name,
            storage.numel()
        ));
    }
    Ok(storage
        .as_strided(size.as_slice(), stride.as_slice(), Some(offset))
        .contiguous())
}
