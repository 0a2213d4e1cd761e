//! Checkpoints: a model's params as safetensors, the optimizer's state, the step and a config
//! as serde JSON, in one file written atomically.
//!
//! The file is a plain safetensors file (keys are param names, so other frameworks' readers
//! load the model); its metadata holds, under `kiln`, a JSON object with the step, the user's
//! config, the optimizer state (params named `optimizer.…`, as numbers) and a checksum of the
//! tensor data. A write goes to a temporary file beside the target, is synced, then renamed over
//! it, so a crash leaves the previous checkpoint whole. A load checks the checksum, so a
//! truncated or corrupted file is an error, never a silent half-model.

use std::io::Write;
use std::path::Path;

use kiln_compiler::{Data, Error, ParamStore, Result, Value};
use safetensors::tensor::{Dtype, TensorView};
use serde_json::{Map, Value as Json, json};

use crate::optim::STATE_PREFIX;

/// What a checkpoint holds.
#[derive(Clone, Debug, PartialEq)]
pub struct Checkpoint {
    /// Every param, the optimizer's state (`optimizer.…`) included.
    pub params: ParamStore,
    /// Steps run when it was written.
    pub step: u64,
    /// Whatever the caller stored with it.
    pub config: Json,
}

fn error(path: &Path, detail: impl Into<String>) -> Error {
    Error::Checkpoint { path: path.display().to_string(), detail: detail.into() }
}

/// FNV-1a over `bytes`, continuing from `hash`.
fn fnv1a(mut hash: u64, bytes: &[u8]) -> u64 {
    for &byte in bytes {
        hash = (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3);
    }
    hash
}

const FNV_START: u64 = 0xcbf2_9ce4_8422_2325;

fn bytes(value: &Value) -> Vec<u8> {
    match value.data() {
        Data::F32(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
        Data::F64(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
        Data::I32(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
        Data::I64(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
        Data::Bool(v) => v.iter().map(|&b| u8::from(b)).collect(),
    }
}

fn safetensors_dtype(value: &Value) -> Dtype {
    match value.data() {
        Data::F32(_) => Dtype::F32,
        Data::F64(_) => Dtype::F64,
        Data::I32(_) => Dtype::I32,
        Data::I64(_) => Dtype::I64,
        Data::Bool(_) => Dtype::BOOL,
    }
}

fn from_bytes(path: &Path, name: &str, dtype: Dtype, shape: Vec<usize>, data: &[u8]) -> Result<Value> {
    fn chunks<const N: usize>(data: &[u8]) -> impl Iterator<Item = [u8; N]> + '_ {
        data.chunks_exact(N).map(|c| c.try_into().expect("exact chunks"))
    }
    let data = match dtype {
        Dtype::F32 => Data::F32(chunks::<4>(data).map(f32::from_le_bytes).collect()),
        Dtype::F64 => Data::F64(chunks::<8>(data).map(f64::from_le_bytes).collect()),
        Dtype::I32 => Data::I32(chunks::<4>(data).map(i32::from_le_bytes).collect()),
        Dtype::I64 => Data::I64(chunks::<8>(data).map(i64::from_le_bytes).collect()),
        Dtype::BOOL => Data::Bool(data.iter().map(|&b| b != 0).collect()),
        other => return Err(error(path, format!("tensor `{name}` has dtype {other:?}, which kiln does not use"))),
    };
    Value::new(shape, data).ok_or_else(|| error(path, format!("tensor `{name}`'s data does not fill its shape")))
}

impl Checkpoint {
    /// Writes the checkpoint to `path`, atomically.
    pub fn save(&self, path: &Path) -> Result<()> {
        let mut model: Vec<(&str, &Value)> = Vec::new();
        let mut state = Map::new();
        for (name, value) in self.params.iter() {
            if name.starts_with(STATE_PREFIX) {
                let numbers: Vec<Json> = value.to_f64_vec().into_iter().map(|v| json!(v as f32)).collect();
                state.insert(name.to_string(), json!({ "shape": value.shape(), "values": numbers }));
            } else {
                model.push((name, value));
            }
        }
        model.sort_by_key(|(name, _)| *name);
        let data: Vec<(String, Vec<u8>, &Value)> = model.iter().map(|(n, v)| (n.to_string(), bytes(v), *v)).collect();
        let checksum = data.iter().fold(FNV_START, |hash, (_, b, _)| fnv1a(hash, b));
        let meta = json!({ "step": self.step, "config": self.config, "optimizer": state, "checksum": format!("{checksum:016x}") });
        let views = data
            .iter()
            .map(|(name, b, value)| {
                let view = TensorView::new(safetensors_dtype(value), value.shape().to_vec(), b)
                    .map_err(|e| error(path, format!("tensor `{name}`: {e}")))?;
                Ok((name.clone(), view))
            })
            .collect::<Result<Vec<_>>>()?;
        let metadata = std::collections::HashMap::from([("kiln".to_string(), meta.to_string())]);
        let file = safetensors::serialize(views, Some(metadata)).map_err(|e| error(path, e.to_string()))?;
        write_atomically(path, &file)
    }

    /// Reads the checkpoint at `path`, checking its integrity.
    pub fn load(path: &Path) -> Result<Checkpoint> {
        let file = std::fs::read(path).map_err(|e| error(path, format!("cannot read it: {e}")))?;
        let (_, header) = safetensors::SafeTensors::read_metadata(&file)
            .map_err(|e| error(path, format!("not a whole safetensors file: {e}")))?;
        let tensors = safetensors::SafeTensors::deserialize(&file)
            .map_err(|e| error(path, format!("not a whole safetensors file: {e}")))?;
        let meta = header
            .metadata()
            .as_ref()
            .and_then(|m| m.get("kiln"))
            .ok_or_else(|| error(path, "it has no kiln metadata"))?;
        let meta: Json =
            serde_json::from_str(meta).map_err(|e| error(path, format!("its kiln metadata is not JSON: {e}")))?;
        let mut names: Vec<String> = tensors.names().into_iter().map(str::to_string).collect();
        names.sort();
        let mut params = ParamStore::new();
        let mut checksum = FNV_START;
        for name in &names {
            let view = tensors.tensor(name).map_err(|e| error(path, format!("tensor `{name}`: {e}")))?;
            checksum = fnv1a(checksum, view.data());
            params.set(name, from_bytes(path, name, view.dtype(), view.shape().to_vec(), view.data())?);
        }
        if meta["checksum"].as_str() != Some(format!("{checksum:016x}").as_str()) {
            return Err(error(path, "its tensor data does not match its checksum: the file is corrupted"));
        }
        if let Some(state) = meta["optimizer"].as_object() {
            for (name, entry) in state {
                let shape: Option<Vec<usize>> = entry["shape"]
                    .as_array()
                    .map(|s| s.iter().filter_map(|d| d.as_u64().map(|d| d as usize)).collect());
                let values: Option<Vec<f32>> =
                    entry["values"].as_array().map(|v| v.iter().filter_map(|x| x.as_f64().map(|x| x as f32)).collect());
                let value = shape.zip(values).and_then(|(shape, values)| Value::new(shape, Data::F32(values)));
                params.set(name, value.ok_or_else(|| error(path, format!("optimizer state `{name}` is malformed")))?);
            }
        }
        let step = meta["step"].as_u64().ok_or_else(|| error(path, "its step is missing"))?;
        Ok(Checkpoint { params, step, config: meta["config"].clone() })
    }

    /// Checks that this checkpoint has exactly the params of `expected` (names, shapes and
    /// dtypes), and lists every mismatch if not.
    pub fn check_against(&self, path: &Path, expected: &ParamStore) -> Result<()> {
        let mut problems = Vec::new();
        for (name, want) in expected.iter() {
            match self.params.get(name) {
                None => problems.push(format!("`{name}` is missing")),
                Some(got) if got.shape() != want.shape() || got.dtype() != want.dtype() => problems.push(format!(
                    "`{name}` is {} {:?}, the model's is {} {:?}",
                    got.dtype(),
                    got.shape(),
                    want.dtype(),
                    want.shape()
                )),
                Some(_) => {}
            }
        }
        for (name, _) in self.params.iter() {
            if expected.get(name).is_none() {
                problems.push(format!("`{name}` is not a param of the model"));
            }
        }
        if problems.is_empty() { Ok(()) } else { Err(error(path, format!("does not fit: {}", problems.join("; ")))) }
    }
}

/// Writes `bytes` to a temporary file beside `path`, syncs it, and renames it over `path`.
fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    let file_name = path.file_name().ok_or_else(|| error(path, "it is not a file name"))?;
    let temporary = path.with_file_name(format!(".{}.partial", file_name.to_string_lossy()));
    let written = (|| -> std::io::Result<()> {
        let mut file = std::fs::File::create(&temporary)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::rename(&temporary, path)
    })();
    written.map_err(|e| {
        let _ = std::fs::remove_file(&temporary);
        error(path, format!("cannot write it: {e}"))
    })
}
