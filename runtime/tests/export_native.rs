//! The native-tier artifact (the native tier's vector C as a static library, built with
//! `cc -O3 -march=native`) against the native tier through the runtime and the reference
//! interpreter.
//!
//! What is asserted, case by case, with the harness linked against `lib<name>.a`:
//! - the MLP at batches 1, 37 (a partial vector at the end) and 1000, softmax over 12 classes,
//!   a gather with a sum, integer arithmetic and a scatter-add into a param table: every output
//!   of the interpreter's length, within 1e-5 relative of the native tier run by the runtime
//!   and of the interpreter; integers and gathered rows bit for bit;
//! - an id outside the table returns status 11, as the other artifacts do;
//! - two native artifacts link into one program (their kernels and prelude are `static`) and
//!   each gives its own outputs;
//! - a vector width other than 4, 8 or 16 lanes is an error naming it.

use std::process::Command;

use kiln_compiler::codegen::Tier;
use kiln_compiler::prelude::*;
use kiln_runtime::export::{Artifact, ExportOptions, Model};
use kiln_runtime::function_on;
use support::{
    assert_close, compile, embedding_model, floats, harness, ids, integer_model, interpreted, mlp_logits as mlp,
    mlp_model, scatter_model, uniform, write_inputs,
};

mod support;

type Build = fn(&Graph) -> Result<(Vec<Tensor<'_>>, Vec<Tensor<'_>>)>;

/// Exports `build`'s model with params from seed 5.
fn export<'g>(g: &'g Graph, build: Build, name: &str) -> (Artifact, Vec<Tensor<'g>>, Vec<Tensor<'g>>, ParamStore) {
    let (ins, outs) = build(g).unwrap();
    let params = ParamStore::init(g, 5);
    let artifact = Model::with_ports(g, &ins, &outs).export(&params, &ExportOptions::new(name)).unwrap();
    (artifact, ins, outs, params)
}

/// Runs `build`'s native artifact on `inputs` and checks each output against the native tier
/// and the interpreter: bit for bit if `exact`, else within 1e-5 relative.
fn check(name: &str, build: Build, inputs: &[Value], exact: &[bool]) {
    let g = Graph::new();
    let (artifact, ins, outs, params) = export(&g, build, name);
    let dir = support::temp_dir("export-test-native", name);
    artifact.write_native_static_library(&dir).unwrap();
    std::fs::write(dir.join("test.c"), harness(&artifact, inputs[0].shape()[0])).unwrap();
    write_inputs(&dir, inputs);
    compile(&dir, &[], &["test.c", "-L.", &format!("-l{name}")]);
    let ran = Command::new(dir.join("test")).current_dir(&dir).output().unwrap();
    assert!(ran.status.success(), "{name}: {} {}", String::from_utf8_lossy(&ran.stdout), ran.status);
    let artifact_outputs: Vec<Vec<u8>> =
        (0..outs.len()).map(|j| std::fs::read(dir.join(format!("output{j}.bin"))).unwrap()).collect();
    let mut native = function_on(Tier::Native, &g, &ins, &outs, &[], &Default::default()).unwrap();
    native.set_params(&params).unwrap();
    let native: Vec<Vec<u8>> = native.call(inputs).unwrap().iter().map(|v| v.data().to_le_bytes()).collect();
    let interpreter = interpreted(&g, &ins, inputs, &params, &outs);
    let lengths = |outputs: &[Vec<u8>]| outputs.iter().map(Vec::len).collect::<Vec<_>>();
    assert_eq!(lengths(&artifact_outputs), lengths(&interpreter), "{name}: output bytes against the interpreter's");
    assert_eq!(lengths(&native), lengths(&interpreter), "{name}: native tier output bytes");
    for (j, exact) in exact.iter().enumerate() {
        if *exact {
            assert_eq!(artifact_outputs[j], native[j], "{name}: output {j} bit for bit with the native tier");
            assert_eq!(artifact_outputs[j], interpreter[j], "{name}: output {j} bit for bit with the interpreter");
        } else {
            let got = floats(&artifact_outputs[j]);
            assert_close(&got, &floats(&native[j]), 1e-5);
            assert_close(&got, &floats(&interpreter[j]), 1e-5);
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

fn softmax_model(g: &Graph) -> Result<(Vec<Tensor<'_>>, Vec<Tensor<'_>>)> {
    let x = g.input("x", [Dim::sym("B"), 2.into()])?;
    Ok((vec![x], vec![layers::softmax(mlp(g, x, 12)?, 1)?]))
}

#[test]
fn the_native_artifact_of_the_mlp_matches_the_native_tier_at_batches_1_37_and_1000() {
    for batch in [1, 37, 1000] {
        check(&format!("mlp{batch}"), mlp_model, &[Value::f32([batch, 2], uniform(2 * batch, 99, 3.0))], &[false]);
    }
}

#[test]
fn the_native_artifact_of_a_softmax_over_12_classes_matches_the_native_tier() {
    check("probabilities", softmax_model, &[Value::f32([500, 2], uniform(1000, 7, 3.0))], &[false]);
}

#[test]
fn the_native_artifact_of_a_gather_keeps_the_rows_bit_for_bit() {
    check("embedding", embedding_model, &[Value::i64([300, 5], ids(1500, 3, 10))], &[true, false]);
}

#[test]
fn the_native_artifact_of_integer_arithmetic_is_bit_for_bit() {
    let a: Vec<i64> = ids(800, 11, 2001).iter().map(|v| v - 1000).collect();
    let b: Vec<i32> = ids(800, 12, 200).iter().map(|&v| if v < 100 { v as i32 - 100 } else { v as i32 - 99 }).collect();
    check("integers", integer_model, &[Value::i64([200, 4], a), Value::i32([200, 4], b)], &[true, true]);
}

#[test]
fn the_native_artifact_of_a_scatter_add_matches_the_native_tier() {
    let ids_value = Value::i64([50, 4], ids(200, 21, 6));
    let rows = Value::f32([50, 4, 3], uniform(600, 22, 2.0));
    check("scatter", scatter_model, &[ids_value, rows], &[false]);
}

#[test]
fn the_native_artifact_reports_an_id_outside_the_table_as_status_11() {
    let g = Graph::new();
    let (artifact, ..) = export(&g, embedding_model, "bad_id");
    let dir = support::temp_dir("export-test-native", "bad-id");
    artifact.write_native_static_library(&dir).unwrap();
    std::fs::write(dir.join("test.c"), harness(&artifact, 2)).unwrap();
    write_inputs(&dir, &[Value::i64([2, 5], vec![0, 1, 2, 3, 4, 5, 6, 10, 8, 9])]);
    compile(&dir, &[], &["test.c", "-L.", "-lbad_id"]);
    let ran = Command::new(dir.join("test")).current_dir(&dir).output().unwrap();
    assert_eq!(String::from_utf8_lossy(&ran.stdout), "status 11\n");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn two_native_artifacts_link_into_one_program() {
    let dir = support::temp_dir("export-test-native", "two");
    let (g1, g2) = (Graph::new(), Graph::new());
    let (first, ..) = export(&g1, mlp_model, "first");
    let (second, ..) = export(&g2, softmax_model, "second");
    first.write_native_static_library(&dir).unwrap();
    second.write_native_static_library(&dir).unwrap();
    let program = r#"#include <stdio.h>
#include "first.h"
#include "second.h"
int main(void) {
    float x[2] = {0.5f, -1.0f}, logits[2], probabilities[12];
    static char scratch[1 << 16];
    int a = first_infer(x, 2, 1, logits, 2, scratch, first_scratch_bytes(1));
    int b = second_infer(x, 2, 1, probabilities, 12, scratch, second_scratch_bytes(1));
    float total = 0;
    for (int i = 0; i < 12; i++) total += probabilities[i];
    printf("%d %d %.4f\n", a, b, total);
    return 0;
}
"#;
    std::fs::write(dir.join("test.c"), program).unwrap();
    compile(&dir, &[], &["test.c", "-L.", "-lfirst", "-lsecond"]);
    let ran = Command::new(dir.join("test")).current_dir(&dir).output().unwrap();
    assert_eq!(String::from_utf8_lossy(&ran.stdout), "0 0 1.0000\n", "both entry points ran; the softmax sums to 1");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_vector_width_other_than_4_8_or_16_lanes_is_an_error_naming_it() {
    let g = Graph::new();
    let (artifact, ..) = export(&g, mlp_model, "lanes");
    let error = artifact.vector_c_source(5).unwrap_err().to_string();
    assert!(error.contains("not 5"), "{error}");
    for lanes in [4, 8, 16] {
        let source = artifact.vector_c_source(lanes).unwrap();
        assert!(source.contains(&format!("#define KILN_LANES {lanes}")), "{lanes} lanes");
    }
}
