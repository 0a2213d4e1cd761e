//! The system C compiler and the cache of built kernel libraries.
//!
//! In: C source. Out: the path of a shared library built from it with `$CC` (or `cc`) and
//! [`flags`], kept in the cache folder (`KILN_CACHE`, else `$XDG_CACHE_HOME/kiln`, else
//! `$HOME/.cache/kiln`) under a hash of the source, the compiler's version, the flags and
//! kiln's version, so a program compiled before loads without running the compiler. The
//! source is kept beside the library, so a C compiler error names a file the user can read.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use crate::error::{Error, Result};
use crate::settings::Settings;

/// The flags of every build: the host's widest vectors, a shared library, no `errno` from
/// `sqrtf` (so it vectorises), and wrapping integer arithmetic (as kiln's integers wrap).
pub const FLAGS: &[&str] = &["-O3", "-march=native", "-shared", "-fPIC", "-std=gnu11", "-fno-math-errno", "-fwrapv"];

/// The flags of a build for `codegen::Options::fma`: [`FLAGS`], with `a * b + c` contracted
/// into one fused multiply-add when `fma` (as the JIT does on hosts with FMA), else each
/// product and sum rounded on its own (as the JIT without FMA and the kernel-IR evaluator).
pub fn flags(fma: bool) -> Vec<&'static str> {
    let mut flags = FLAGS.to_vec();
    flags.push(if fma { "-ffp-contract=fast" } else { "-ffp-contract=off" });
    flags
}

/// The C compiler found on this machine.
#[derive(Debug)]
pub struct CCompiler {
    /// The command (`$CC` or `cc`).
    pub command: String,
    /// The first line of its `--version`.
    pub version: String,
}

/// The C compiler, if one runs (probed once per process).
pub fn c_compiler() -> Option<&'static CCompiler> {
    static FOUND: OnceLock<Option<CCompiler>> = OnceLock::new();
    FOUND
        .get_or_init(|| {
            let command = Settings::current().c_compiler.clone();
            let output = Command::new(&command).arg("--version").output().ok()?;
            let text = String::from_utf8_lossy(&output.stdout);
            let version = text.lines().next().unwrap_or_default().to_string();
            output.status.success().then_some(CCompiler { command, version })
        })
        .as_ref()
}

/// The cache folder (see the module documentation): the settings' `cache` (`KILN_CACHE`) if
/// set.
pub fn cache_dir(settings: &Settings) -> PathBuf {
    if let Some(dir) = &settings.cache {
        return dir.clone();
    }
    if let Some(dir) = std::env::var_os("XDG_CACHE_HOME").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir).join("kiln");
    }
    match std::env::var_os("HOME").filter(|d| !d.is_empty()) {
        Some(home) => PathBuf::from(home).join(".cache").join("kiln"),
        None => std::env::temp_dir().join("kiln-cache"),
    }
}

/// Where the library built from `source` with `flags` lives.
pub fn library_path(compiler: &CCompiler, source: &str, flags: &[&str], settings: &Settings) -> PathBuf {
    let key = format!("{}\n{}\n{}\n{source}", env!("CARGO_PKG_VERSION"), compiler.version, flags.join(" "));
    // Two FNV-1a hashes (of the text and of its reverse) make a 128-bit key.
    let forward = crate::random::hash_name(&key);
    let backward = crate::random::hash_name(&key.chars().rev().collect::<String>());
    cache_dir(settings).join(format!("kiln-{forward:016x}{backward:016x}.so"))
}

/// Builds `source` with `flags` into the library at `library` (see [`library_path`]) unless
/// it exists.
pub fn build(compiler: &CCompiler, source: &str, flags: &[&str], library: &Path) -> Result<()> {
    if library.exists() {
        return Ok(());
    }
    let folder = library.parent().unwrap_or(Path::new("."));
    let toolchain = |detail: String| Error::Toolchain { tool: compiler.command.clone(), detail };
    std::fs::create_dir_all(folder)
        .map_err(|e| toolchain(format!("cannot create the cache folder {}: {e}", folder.display())))?;
    let source_path = library.with_extension("c");
    // Written under a temporary name, then renamed: another process may build the same program.
    let unique = format!("{}.{:?}", std::process::id(), std::thread::current().id()).replace(['(', ')'], "");
    let temporary_source = library.with_extension(format!("{unique}.c"));
    std::fs::write(&temporary_source, source)
        .map_err(|e| toolchain(format!("cannot write {}: {e}", temporary_source.display())))?;
    std::fs::rename(&temporary_source, &source_path)
        .map_err(|e| toolchain(format!("cannot write {}: {e}", source_path.display())))?;
    let temporary_library = library.with_extension(format!("{unique}.so"));
    let output = Command::new(&compiler.command)
        .args(flags)
        .arg("-o")
        .arg(&temporary_library)
        .arg(&source_path)
        .output()
        .map_err(|e| toolchain(format!("could not run: {e}")))?;
    if !output.status.success() {
        let _ = std::fs::remove_file(&temporary_library);
        let message = String::from_utf8_lossy(&output.stderr);
        return Err(toolchain(format!(
            "compiling the native tier's source {} failed ({}):\n{message}",
            source_path.display(),
            output.status
        )));
    }
    std::fs::rename(&temporary_library, library)
        .map_err(|e| toolchain(format!("cannot move the library to {}: {e}", library.display())))
}
