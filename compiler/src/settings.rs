//! kiln's settings from the environment, read once per process.
//!
//! In: the process's `KILN_*` variables, read the first time [`Settings::current`] is called.
//! Out: [`Settings`], which the public entry points (`compile`, `codegen::Options::default`,
//! the runtime's `function` and `Trainer`) take once and pass down; nothing below them reads
//! the environment. A test sets a field of its own `Settings` instead of a variable.

use std::path::PathBuf;
use std::sync::OnceLock;

/// Which code generator compiles a program.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Tier {
    /// Cranelift, in memory: milliseconds to compile.
    Jit,
    /// The kernel IR printed as vector C and built by the system C compiler (see
    /// [`crate::native`]): seconds to compile (or milliseconds from the cache), the host's
    /// widest vectors. Without a C compiler the program stays on the JIT (said once).
    Native,
    /// The JIT first; the native tier compiles on a background thread after the first few
    /// calls and takes over between two calls, at the same call in every run (see the
    /// runtime's `Function::call`).
    #[default]
    Auto,
}

/// What `KILN_DUMP` (a comma-separated list) asks to print to stderr.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Dump {
    /// `graph`: the graph before the passes and after each one.
    pub graph: bool,
    /// `fusion`: every fusion decision with its reason.
    pub fusion: bool,
    /// `kernels`: the kernel program.
    pub kernels: bool,
    /// `clif`: the Cranelift IR of every kernel.
    pub clif: bool,
    /// `native`: the path of each native-tier library as it is built or loaded, and the switch
    /// of an auto-tier function to it.
    pub native: bool,
    /// `tier`: the switch of an auto-tier function to the native tier.
    pub tier: bool,
}

impl Dump {
    /// The levels named in `list` (`graph,fusion,kernels,clif,native,tier`, any mix); unknown
    /// names are ignored.
    pub fn parse(list: &str) -> Dump {
        let has = |name: &str| list.split(',').any(|level| level.trim() == name);
        Dump {
            graph: has("graph"),
            fusion: has("fusion"),
            kernels: has("kernels"),
            clif: has("clif"),
            native: has("native"),
            tier: has("tier"),
        }
    }
}

/// Every setting kiln takes from the environment, with its variable.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Settings {
    /// `KILN_DUMP`: what to print while compiling and running (default: nothing).
    pub dump: Dump,
    /// `KILN_GEMM_MIN_WORK`: matmuls of at least this many multiply-adds call the tuned GEMM
    /// (`0` always, a huge value never); `None` keeps the measured default,
    /// `codegen::gemm::GEMM_MIN_WORK`.
    pub gemm_min_work: Option<i64>,
    /// `KILN_TIER` (`jit`, `native` or `auto`): the tier of `function` and `Trainer` when none
    /// is asked for (default [`Tier::Auto`]).
    pub tier: Tier,
    /// `KILN_CACHE`: where the native tier keeps its built libraries (default: the user's
    /// cache folder, see `native::build::cache_dir`).
    pub cache: Option<PathBuf>,
    /// `KILN_THREADS`: threads of a compiled function (default: every core).
    pub threads: Option<usize>,
    /// `KILN_PROFILE` (set to anything): time every kernel (`Function::profile`).
    pub profile: bool,
    /// `CC`: the C compiler the native tier and the exported artifacts are built with
    /// (default `cc`).
    pub c_compiler: String,
}

impl Default for Settings {
    /// Every setting at its default, as if no variable were set.
    fn default() -> Settings {
        Settings {
            dump: Dump::default(),
            gemm_min_work: None,
            tier: Tier::Auto,
            cache: None,
            threads: None,
            profile: false,
            c_compiler: "cc".to_string(),
        }
    }
}

impl Settings {
    /// The settings of the process's environment now (see each field for its variable). A
    /// variable that is empty or does not parse leaves its field at the default.
    pub fn from_env() -> Settings {
        let variable = |name: &str| std::env::var(name).ok().filter(|value| !value.trim().is_empty());
        let defaults = Settings::default();
        Settings {
            dump: variable("KILN_DUMP").map_or(defaults.dump, |list| Dump::parse(&list)),
            gemm_min_work: variable("KILN_GEMM_MIN_WORK").and_then(|value| value.trim().parse().ok()),
            tier: match variable("KILN_TIER").as_deref().map(str::trim) {
                Some("jit") => Tier::Jit,
                Some("native") => Tier::Native,
                _ => defaults.tier,
            },
            cache: std::env::var_os("KILN_CACHE").filter(|dir| !dir.is_empty()).map(PathBuf::from),
            threads: variable("KILN_THREADS").and_then(|value| value.trim().parse().ok()),
            profile: std::env::var_os("KILN_PROFILE").is_some(),
            c_compiler: variable("CC").map_or(defaults.c_compiler, |command| command.trim().to_string()),
        }
    }

    /// The process's settings, read from the environment the first time this is called.
    pub fn current() -> &'static Settings {
        static CURRENT: OnceLock<Settings> = OnceLock::new();
        CURRENT.get_or_init(Settings::from_env)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dump_levels_are_read_from_a_comma_separated_list() {
        let dump = Dump::parse("graph, clif,unknown");
        assert_eq!(dump, Dump { graph: true, clif: true, ..Dump::default() });
        assert_eq!(Dump::parse(""), Dump::default());
    }
}
