//! The kernel listings of the W1–W5 step programs as text snapshots: a change to lowering or
//! fusion shows up here as a reviewed diff of `tests/snapshots/*.txt`.
//!
//! In: each workload's compiled step. Out: its `Function::listing()`, compared as text with
//! the stored snapshot. With `KILN_UPDATE_SNAPSHOTS=1` the snapshots are rewritten instead
//! (then review `git diff` and commit them).

use std::path::PathBuf;

use kiln::prelude::*;
use kiln_bench::Step;

/// Compares `step`'s kernel listing with `snapshots/<name>.txt`, or rewrites the snapshot when
/// `KILN_UPDATE_SNAPSHOTS` is set. A mismatch panics with a line diff.
fn check_listing(name: &str, g: &Graph, step: &Step) -> Result<()> {
    let listing = step.compile(g)?.listing();
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/snapshots").join(format!("{name}.txt"));
    if std::env::var_os("KILN_UPDATE_SNAPSHOTS").is_some() {
        std::fs::write(&path, &listing).unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
        return Ok(());
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!("cannot read {}: {e} (run with KILN_UPDATE_SNAPSHOTS=1 to create it)", path.display())
    });
    if listing != expected {
        panic!(
            "the kernel listing of {name} differs from {} (- expected, + now); if the change is \
             intended, rerun with KILN_UPDATE_SNAPSHOTS=1 and review the diff:\n{}",
            path.display(),
            line_diff(&expected, &listing)
        );
    }
    Ok(())
}

/// A line diff (longest common subsequence): kept lines with two spaces, removed with `- `,
/// added with `+ `. Listings are a few hundred lines, so the quadratic table is small.
fn line_diff(expected: &str, actual: &str) -> String {
    let (a, b): (Vec<&str>, Vec<&str>) = (expected.lines().collect(), actual.lines().collect());
    let mut common = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for i in (0..a.len()).rev() {
        for j in (0..b.len()).rev() {
            common[i][j] = if a[i] == b[j] { common[i + 1][j + 1] + 1 } else { common[i + 1][j].max(common[i][j + 1]) };
        }
    }
    let (mut i, mut j, mut out) = (0, 0, String::new());
    while i < a.len() || j < b.len() {
        if i < a.len() && j < b.len() && a[i] == b[j] {
            out.push_str(&format!("  {}\n", a[i]));
            (i, j) = (i + 1, j + 1);
        } else if i < a.len() && (j == b.len() || common[i + 1][j] >= common[i][j + 1]) {
            out.push_str(&format!("- {}\n", a[i]));
            i += 1;
        } else {
            out.push_str(&format!("+ {}\n", b[j]));
            j += 1;
        }
    }
    out
}

#[test]
fn w1_listing_matches_its_snapshot() -> Result<()> {
    let g = Graph::new();
    check_listing("w1", &g, &kiln_bench::seed_mlp(&g, 10_000, false)?)
}

#[test]
fn w2_listing_matches_its_snapshot() -> Result<()> {
    let g = Graph::new();
    check_listing("w2", &g, &kiln_bench::seed_mlp(&g, 10_000, true)?)
}

#[test]
fn w3_listing_matches_its_snapshot() -> Result<()> {
    let g = Graph::new();
    check_listing("w3", &g, &kiln_bench::mlp_infer(&g, 10_000)?)
}

#[test]
fn w4_listing_matches_its_snapshot() -> Result<()> {
    let g = Graph::new();
    check_listing("w4", &g, &kiln_bench::wide_mlp(&g)?)
}

#[test]
fn w5_listing_matches_its_snapshot() -> Result<()> {
    let g = Graph::new();
    check_listing("w5", &g, &kiln_bench::char_title(&g)?)
}

#[test]
fn line_diff_marks_removed_and_added_lines() {
    let diff = line_diff("a\nb\nc\n", "a\nx\nc\n");
    assert_eq!(diff, "  a\n- b\n+ x\n  c\n");
}
