//! Checkpoints: a model's params and the optimizer's state as safetensors tensors, the step and
//! a config as JSON metadata, one checksum over all of it, in one file written atomically.
//!
//! In: a [`Checkpoint`] (params, optimizer state, step, config). Out: a plain safetensors file
//! whose keys are param names (so other frameworks' readers load the model; the optimizer's
//! state is under `optimizer.…`, each tensor in its own dtype, bit for bit, NaN included) and
//! whose metadata holds, under `kiln`, a JSON object with the format, the step, the user's config
//! and a checksum. The checksum covers everything a load returns: every tensor's name, dtype,
//! shape and bytes, the step and the config, so a flipped bit or an edited field anywhere is a
//! load error, never a different checkpoint.
//!
//! A write goes to a temporary file beside the target whose name no other writer uses (process
//! id and a counter), is synced, then renamed over the target, so a crash leaves the previous
//! checkpoint whole and two writers never share a temporary file. A checkpoint holding a
//! non-finite number (a diverged run) does not replace a good one unless the caller says so.

use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use kiln_compiler::random::{FNV_OFFSET, fnv1a};
use kiln_compiler::{Data, Error, ParamStore, Result, Value};
use safetensors::tensor::{Dtype, TensorView};
use serde_json::{Value as Json, json};

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

/// What [`Checkpoint::save_with`] does when the checkpoint holds a non-finite number and the
/// target file is a good (loadable, finite) checkpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IfDiverged {
    /// Refuse, with an error naming the first non-finite tensor; the good file stays.
    KeepGood,
    /// Write it anyway (to inspect a diverged run, say).
    Overwrite,
}

/// The layout of the metadata and what the checksum covers; a file of another format is an
/// error, not a guess.
const FORMAT: u64 = 2;

fn error(path: &Path, detail: impl Into<String>) -> Error {
    Error::Checkpoint { path: path.display().to_string(), detail: detail.into() }
}

/// FNV-1a, 64 bits: enough to tell a damaged file from a whole one (not an adversary's forgery).
struct Checksum(u64);

impl Checksum {
    fn new() -> Checksum {
        Checksum(FNV_OFFSET)
    }

    fn add(&mut self, bytes: &[u8]) {
        self.0 = fnv1a(self.0, bytes);
    }

    /// Adds a length first, so that two fields can never run into each other.
    fn add_field(&mut self, bytes: &[u8]) {
        self.add(&(bytes.len() as u64).to_le_bytes());
        self.add(bytes);
    }

    fn add_tensor(&mut self, name: &str, dtype: Dtype, shape: &[usize], data: &[u8]) {
        self.add_field(name.as_bytes());
        self.add_field(format!("{dtype:?}").as_bytes());
        self.add(&(shape.len() as u64).to_le_bytes());
        for &dim in shape {
            self.add(&(dim as u64).to_le_bytes());
        }
        self.add_field(data);
    }

    /// Adds the fields of the metadata that a load returns.
    fn add_metadata(&mut self, format: u64, step: u64, config: &Json) {
        self.add(&format.to_le_bytes());
        self.add(&step.to_le_bytes());
        self.add_field(config.to_string().as_bytes());
    }

    fn hex(&self) -> String {
        format!("{:016x}", self.0)
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

/// The first param of `params` (in name order) holding a NaN or an infinity.
fn first_non_finite(params: &ParamStore) -> Option<String> {
    let mut names: Vec<&str> = params.iter().map(|(name, _)| name).collect();
    names.sort_unstable();
    names
        .into_iter()
        .find(|name| params.get(name).is_some_and(|v| v.to_f64_vec().iter().any(|x| !x.is_finite())))
        .map(str::to_string)
}

impl Checkpoint {
    /// Writes the checkpoint to `path`, atomically. A checkpoint holding a non-finite number
    /// does not replace a good checkpoint at `path` (see [`Checkpoint::save_with`]).
    pub fn save(&self, path: &Path) -> Result<()> {
        self.save_with(path, IfDiverged::KeepGood)
    }

    /// Writes the checkpoint to `path`, atomically; `if_diverged` says whether a checkpoint
    /// holding a NaN or an infinity may replace a good (loadable, finite) one.
    pub fn save_with(&self, path: &Path, if_diverged: IfDiverged) -> Result<()> {
        if if_diverged == IfDiverged::KeepGood
            && let Some(bad) = first_non_finite(&self.params)
            && Checkpoint::load(path).is_ok_and(|old| first_non_finite(&old.params).is_none())
        {
            let detail = format!(
                "not replacing the good checkpoint there: `{bad}` is not finite (a diverged run); \
                 save with IfDiverged::Overwrite to replace it anyway"
            );
            return Err(error(path, detail));
        }
        write_atomically(path, &self.encode(path)?)
    }

    /// The bytes of the file [`Checkpoint::save`] writes (what [`Checkpoint::from_bytes`] reads).
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        self.encode(Path::new("(in memory)"))
    }

    /// The file's bytes; `path` names the file in errors.
    fn encode(&self, path: &Path) -> Result<Vec<u8>> {
        let mut tensors: Vec<(&str, &Value)> = self.params.iter().collect();
        tensors.sort_by_key(|(name, _)| *name);
        let data: Vec<(&str, Vec<u8>, &Value)> =
            tensors.iter().map(|(n, v)| (*n, v.data().to_le_bytes(), *v)).collect();
        let mut checksum = Checksum::new();
        for (name, data, value) in &data {
            checksum.add_tensor(name, safetensors_dtype(value), value.shape(), data);
        }
        checksum.add_metadata(FORMAT, self.step, &self.config);
        let meta = json!({ "format": FORMAT, "step": self.step, "config": self.config, "checksum": checksum.hex() });
        let views = data
            .iter()
            .map(|(name, data, value)| {
                let view = TensorView::new(safetensors_dtype(value), value.shape().to_vec(), data)
                    .map_err(|e| error(path, format!("tensor `{name}`: {e}")))?;
                Ok((name.to_string(), view))
            })
            .collect::<Result<Vec<_>>>()?;
        let metadata = std::collections::HashMap::from([("kiln".to_string(), meta.to_string())]);
        safetensors::serialize(views, Some(metadata)).map_err(|e| error(path, e.to_string()))
    }

    /// Reads the checkpoint at `path`, checking its integrity.
    pub fn load(path: &Path) -> Result<Checkpoint> {
        let file = std::fs::read(path).map_err(|e| error(path, format!("cannot read it: {e}")))?;
        Checkpoint::from_bytes(path, &file)
    }

    /// Reads a checkpoint from the bytes of a file (`path` only names it in errors). Any byte
    /// string is either a whole checkpoint or an error.
    pub fn from_bytes(path: &Path, file: &[u8]) -> Result<Checkpoint> {
        let whole = |e: safetensors::SafeTensorError| error(path, format!("not a whole safetensors file: {e}"));
        let (_, header) = safetensors::SafeTensors::read_metadata(file).map_err(whole)?;
        let tensors = safetensors::SafeTensors::deserialize(file).map_err(whole)?;
        let meta = header
            .metadata()
            .as_ref()
            .and_then(|m| m.get("kiln"))
            .ok_or_else(|| error(path, "it has no kiln metadata"))?;
        let meta: Json =
            serde_json::from_str(meta).map_err(|e| error(path, format!("its kiln metadata is not JSON: {e}")))?;
        match meta["format"].as_u64() {
            Some(FORMAT) => {}
            Some(other) => return Err(error(path, format!("it has format {other}; this kiln reads format {FORMAT}"))),
            None => {
                let detail = format!(
                    "its kiln metadata has no format (an older kiln wrote it); this kiln reads format {FORMAT}"
                );
                return Err(error(path, detail));
            }
        }
        let step = meta["step"].as_u64().ok_or_else(|| error(path, "its step is missing"))?;
        let config = meta.get("config").ok_or_else(|| error(path, "its config is missing"))?;
        let mut names: Vec<&str> = tensors.names().into_iter().collect();
        names.sort_unstable();
        let mut params = ParamStore::new();
        let mut checksum = Checksum::new();
        for name in names {
            let view = tensors.tensor(name).map_err(|e| error(path, format!("tensor `{name}`: {e}")))?;
            checksum.add_tensor(name, view.dtype(), view.shape(), view.data());
            params.set(name, from_bytes(path, name, view.dtype(), view.shape().to_vec(), view.data())?);
        }
        checksum.add_metadata(FORMAT, step, config);
        if meta["checksum"].as_str() != Some(checksum.hex().as_str()) {
            return Err(error(path, "its contents do not match its checksum: the file is corrupted"));
        }
        Ok(Checkpoint { params, step, config: config.clone() })
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
    write_file_atomically(path, bytes).map_err(|e| error(path, format!("cannot write it: {e}")))
}

/// Writes `bytes` to a temporary file beside `path`, syncs it, and renames it over `path`, so
/// that `path` holds either its old content or the whole new file, never a part (the charts of
/// `plot` are written this way too).
///
/// The temporary name holds the process id and a per-process counter, and the file is created
/// only if it does not exist, so concurrent writers (threads or processes) never write into one
/// another's temporary file; the last rename wins, and every rename installs a whole file. On
/// failure the temporary file is removed.
pub(crate) fn write_file_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    static WRITES: AtomicU64 = AtomicU64::new(0);
    let file_name = path
        .file_name()
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidInput, "it is not a file name"))?;
    let unique = format!("{}-{}", std::process::id(), WRITES.fetch_add(1, Ordering::Relaxed));
    let temporary = path.with_file_name(format!(".{}.{unique}.partial", file_name.to_string_lossy()));
    let mut created = false;
    let written = (|| -> std::io::Result<()> {
        let mut file = std::fs::OpenOptions::new().write(true).create_new(true).open(&temporary)?;
        created = true;
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::rename(&temporary, path)?;
        // The rename is durable once the directory is synced (where the platform allows it).
        if let Some(directory) = path
            .parent()
            .and_then(|p| std::fs::File::open(if p.as_os_str().is_empty() { Path::new(".") } else { p }).ok())
        {
            let _ = directory.sync_all();
        }
        Ok(())
    })();
    if written.is_err() && created {
        let _ = std::fs::remove_file(&temporary);
    }
    written
}
