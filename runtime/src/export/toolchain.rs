//! Export, runtime side (packaging; the plan and the printers are `kiln_compiler::export`).
//!
//! External tools that packaging runs (the system C compiler), with errors that say what to
//! install when one is missing.
//!
//! In: the settings (`CC`). Out: the C compiler to run, or an error saying what to install.

use std::path::Path;
use std::process::Command;

use kiln_compiler::settings::Settings;
use kiln_compiler::{Error, Result};

/// The C compiler packaging uses: `$CC` if set, else `cc` (`Settings::c_compiler`, read once
/// with the other settings).
pub fn c_compiler() -> String {
    Settings::current().c_compiler.clone()
}

/// Runs `tool args...` in `dir`; a tool that is missing or fails is an [`Error::Toolchain`]
/// with its error output.
pub(super) fn run(tool: &str, args: &[&str], dir: &Path) -> Result<()> {
    let output = Command::new(tool).args(args).current_dir(dir).output().map_err(|e| {
        let detail = if e.kind() == std::io::ErrorKind::NotFound {
            format!("not found on PATH; install a C compiler (gcc or clang) or set CC ({e})")
        } else {
            format!("could not run it: {e}")
        };
        Error::Toolchain { tool: tool.to_string(), detail }
    })?;
    if output.status.success() {
        return Ok(());
    }
    let detail = format!(
        "`{tool} {}` failed ({}): {}",
        args.join(" "),
        output.status,
        String::from_utf8_lossy(&output.stderr).trim()
    );
    Err(Error::Toolchain { tool: tool.to_string(), detail })
}
