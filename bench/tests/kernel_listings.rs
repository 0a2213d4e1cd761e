//! The kernel programs of the workloads' steps as text snapshots: a change to fusion, the
//! memory plan or lowering shows up here as a reviewed diff.
//!
//! Each listing is compared with `tests/snapshots/<workload>.kernels`; run with
//! `KILN_UPDATE_SNAPSHOTS=1` to rewrite the files after a deliberate change.

use std::path::PathBuf;

use kiln::compiler::compile::lower_to_kernels;
use kiln::prelude::*;
use kiln_bench::Step;

fn check_listing(workload: &str, build: for<'g> fn(&'g Graph) -> Result<Step<'g>>) -> Result<()> {
    let g = Graph::new();
    let step = build(&g)?;
    let listing = lower_to_kernels(&g, &step.outputs, &step.updates)?.listing();
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/snapshots").join(format!("{workload}.kernels"));
    if std::env::var_os("KILN_UPDATE_SNAPSHOTS").is_some() {
        std::fs::create_dir_all(path.parent().expect("a folder")).expect("the snapshot folder can be created");
        std::fs::write(&path, &listing).expect("the snapshot can be written");
        return Ok(());
    }
    let expected = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (run with KILN_UPDATE_SNAPSHOTS=1 to write it)", path.display()));
    if listing != expected {
        let first = listing.lines().zip(expected.lines()).position(|(a, b)| a != b);
        panic!(
            "the kernels of {workload} changed (first differing line {first:?}); review and run with \
             KILN_UPDATE_SNAPSHOTS=1 to accept:\n{listing}"
        );
    }
    Ok(())
}

#[test]
fn w1_kernels() -> Result<()> {
    check_listing("w1", |g| kiln_bench::seed_mlp(g, 10_000, false))
}

#[test]
fn w2_kernels() -> Result<()> {
    check_listing("w2", |g| kiln_bench::seed_mlp(g, 10_000, true))
}

#[test]
fn w3_kernels() -> Result<()> {
    check_listing("w3", |g| kiln_bench::mlp_infer(g, 10_000))
}

#[test]
fn w4_kernels() -> Result<()> {
    check_listing("w4", kiln_bench::wide_mlp)
}

#[test]
fn w5_kernels() -> Result<()> {
    check_listing("w5", kiln_bench::char_title)
}
