//! The portable C source of an export, compiled with `cc -O2`, against the JIT.
//!
//! Tolerance: the MLP (matmuls summed in order of `k`, bias, ReLU) within 1e-6 relative (with
//! no FMA contraction, which x86-64's baseline lacks, it is bit for bit, and the test says
//! how many rows were); softmax of it (exp, max and sum reductions, a division) within 1e-5
//! relative, since libm's `expf` is not kiln's polynomial and the C loop sums sequentially.

use std::process::Command;

use kiln_compiler::Data;
use kiln_compiler::codegen::Options;
use kiln_compiler::prelude::*;
use kiln_runtime::export::{ExportOptions, Model, c_compiler};
use kiln_runtime::function_with;

fn mlp<'g>(g: &'g Graph, x: Tensor<'g>) -> Result<Tensor<'g>> {
    let mut h = x;
    for (layer, (inputs, outputs)) in [(2, 20), (20, 20), (20, 2)].into_iter().enumerate() {
        h = layers::Linear::new(g, &format!("layer{}", layer + 1), inputs, outputs)?.forward(h)?;
        if layer < 2 {
            h = layers::relu(h)?;
        }
    }
    Ok(h)
}

const C_TEST: &str = r#"#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "NAME.h"
int main(void) {
    enum { ROWS = 1000 };
    static float input[ROWS * 2], output[ROWS * 2];
    FILE *in = fopen("inputs.bin", "rb");
    if (fread(input, sizeof(float), ROWS * 2, in) != ROWS * 2) return 3;
    size_t bytes = NAME_scratch_bytes(ROWS);
    void *scratch = malloc(bytes);
    int status = NAME_infer(input, ROWS * 2, ROWS, output, ROWS * 2, scratch, bytes);
    if (status) return 10 + status;
    printf("%d %d %d %d %d %d\n", NAME_infer(NULL, 2, 1, output, 2, scratch, bytes),
           NAME_infer(input, 2, -1, output, 2, scratch, bytes),
           NAME_infer(input, 2, NAME_max_batch() + 1, output, 2, scratch, bytes),
           NAME_infer(input, 1, 1, output, 2, scratch, bytes), NAME_infer(input, 2, 1, output, 1, scratch, bytes),
           NAME_infer(input, 2, 1, output, 2, scratch, NAME_scratch_bytes(1) - 1));
    for (int i = 0; i < ROWS * 2; i++) {
        unsigned bits;
        memcpy(&bits, &output[i], sizeof bits);
        printf("%u\n", bits);
    }
    return 0;
}
"#;

fn inputs() -> Vec<f32> {
    let mut state: u64 = 99;
    (0..2000)
        .map(|_| {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((state >> 11) as f64 / 9007199254740992.0 * 6.0 - 3.0) as f32
        })
        .collect()
}

/// Exports `build`'s model as C, runs it on 1000 rows and returns (C outputs, JIT outputs).
fn run_c(name: &str, build: fn(&Graph) -> Result<(Tensor<'_>, Tensor<'_>)>) -> (Vec<f32>, Vec<f32>) {
    let g = Graph::new();
    let (x, y) = build(&g).unwrap();
    let params = ParamStore::init(&g, 5);
    let artifact = Model::new(&g, x, y).export(&params, &ExportOptions::new(name)).unwrap();
    let dir = std::env::temp_dir().join(format!("kiln-export-test-c-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    artifact.write_c_source(&dir).unwrap();
    std::fs::write(dir.join("test.c"), C_TEST.replace("NAME", name)).unwrap();
    let bytes: Vec<u8> = inputs().iter().flat_map(|v| v.to_le_bytes()).collect();
    std::fs::write(dir.join("inputs.bin"), bytes).unwrap();
    let cc = c_compiler();
    let source = format!("{name}.c");
    let args = ["-O2", "-std=c11", "-Wall", "-Werror", "-o", "test", "test.c", &source, "-lm"];
    let built = Command::new(&cc).current_dir(&dir).args(args).output();
    let built = built.unwrap_or_else(|e| panic!("cannot run `{cc}` ({e}): this test needs a C compiler on PATH"));
    assert!(built.status.success(), "{cc}: {}", String::from_utf8_lossy(&built.stderr));
    let ran = Command::new(dir.join("test")).current_dir(&dir).output().unwrap();
    assert!(ran.status.success(), "{}", ran.status);
    let stdout = String::from_utf8_lossy(&ran.stdout);
    let mut lines = stdout.lines();
    assert_eq!(lines.next(), Some("1 2 3 4 5 6"), "error codes");
    let printed: Vec<f32> = lines.map(|l| f32::from_bits(l.parse().unwrap())).collect();
    let options = Options { gemm: false, fma: artifact.target().fma().unwrap() };
    let mut f = function_with(&g, &[x], &[y], &[], &options).unwrap();
    f.set_params(&params).unwrap();
    let out = f.call(&[Value::f32([1000, 2], inputs())]).unwrap();
    let Data::F32(expected) = out[0].data() else { panic!("f32 output") };
    let _ = std::fs::remove_dir_all(&dir);
    (printed, expected.clone())
}

fn assert_close(got: &[f32], want: &[f32], tolerance: f32) -> usize {
    assert_eq!(got.len(), want.len());
    for (g, w) in got.iter().zip(want) {
        assert!((g - w).abs() <= tolerance * w.abs().max(1.0), "{g} against the JIT's {w}");
    }
    got.iter().zip(want).filter(|(g, w)| g.to_bits() == w.to_bits()).count()
}

#[test]
fn the_c_source_of_the_mlp_matches_the_jit() {
    let (got, want) = run_c("mlp", |g| {
        let x = g.input("x", [Dim::sym("B"), 2.into()])?;
        Ok((x, mlp(g, x)?))
    });
    let exact = assert_close(&got, &want, 1e-6);
    println!("C source, MLP: {exact} of {} outputs bit for bit equal to the JIT's", got.len());
}

#[test]
fn the_c_source_of_a_softmax_with_reductions_matches_the_jit() {
    let (got, want) = run_c("probabilities", |g| {
        let x = g.input("x", [Dim::sym("B"), 2.into()])?;
        Ok((x, layers::softmax(mlp(g, x)?, 1)?))
    });
    let exact = assert_close(&got, &want, 1e-5);
    println!("C source, softmax: {exact} of {} outputs bit for bit equal to the JIT's", got.len());
}
