//! What the export tests share: the notebook's MLP built from layers (2 → 20 → 20 → classes,
//! ReLU between), the models the C-side export tests export, a fresh temporary folder per
//! test, the C harness that runs an artifact on inputs read from files, and value helpers. Each test file uses part of it.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

use kiln_compiler::export::c_source::{element_type, input_names, output_names};
use kiln_compiler::prelude::*;
use kiln_runtime::export::{Artifact, c_compiler};

/// The notebook's MLP over `x` (`[B, 2]`) with `classes` outputs: `layer1` ... `layer3`.
pub fn mlp_logits<'g>(g: &'g Graph, x: Tensor<'g>, classes: usize) -> Result<Tensor<'g>> {
    let mut h = x;
    for (layer, (inputs, outputs)) in [(2, 20), (20, 20), (20, classes)].into_iter().enumerate() {
        h = layers::Linear::new(g, &format!("layer{}", layer + 1), inputs, outputs)?.forward(h)?;
        if layer < 2 {
            h = layers::relu(h)?;
        }
    }
    Ok(h)
}

/// The notebook's MLP (2 classes) and its input `x` (`[B, 2]`).
pub fn mlp(g: &Graph) -> Result<(Tensor<'_>, Tensor<'_>)> {
    let x = g.input("x", [Dim::sym("B"), 2.into()])?;
    Ok((x, mlp_logits(g, x, 2)?))
}

/// A fresh folder `kiln-{suite}-{test}-{process}` under the system's temporary folder.
pub fn temp_dir(suite: &str, test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("kiln-{suite}-{test}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("creating a temporary directory");
    dir
}

/// A C program that reads `input<i>.bin`, runs `<name>_infer` at `batch` and writes
/// `output<j>.bin`; it prints the status and exits with 1 if the status is not 0.
pub fn harness(artifact: &Artifact, batch: usize) -> String {
    let plan = artifact.plan();
    let name = &plan.name;
    let mut text = format!(
        "#include <stdio.h>\n#include <stdlib.h>\n#include \"{name}.h\"\n\
         static void *load(const char *path, size_t *bytes) {{\n    FILE *f = fopen(path, \"rb\");\n    \
         if (!f) exit(3);\n    fseek(f, 0, SEEK_END); *bytes = (size_t)ftell(f); fseek(f, 0, SEEK_SET);\n    \
         void *data = malloc(*bytes ? *bytes : 1);\n    if (fread(data, 1, *bytes, f) != *bytes) exit(4);\n    \
         fclose(f);\n    return data;\n}}\nint main(void) {{\n    const int64_t batch = {batch};\n"
    );
    let mut arguments = Vec::new();
    for (i, (argument, port)) in input_names(plan).iter().zip(&plan.inputs).enumerate() {
        let ty = element_type(port);
        text.push_str(&format!(
            "    size_t {argument}_bytes;\n    {ty} *{argument} = load(\"input{i}.bin\", &{argument}_bytes);\n"
        ));
        arguments.push(format!("{argument}, {argument}_bytes / sizeof({ty})"));
    }
    arguments.push("batch".into());
    for (argument, port) in output_names(plan).iter().zip(&plan.outputs) {
        let ty = element_type(port);
        let count = if port.batched { format!("{} * batch", port.row) } else { port.row.to_string() };
        text.push_str(&format!(
            "    size_t {argument}_len = {count};\n    {ty} *{argument} = malloc(sizeof({ty}) * ({argument}_len ? \
             {argument}_len : 1));\n"
        ));
        arguments.push(format!("{argument}, {argument}_len"));
    }
    arguments.push("scratch, scratch_len".into());
    text.push_str(&format!(
        "    size_t scratch_len = {name}_scratch_bytes(batch);\n    void *scratch = malloc(scratch_len ? scratch_len : 1);\n    \
         int status = {name}_infer({});\n    printf(\"status %d\\n\", status);\n    if (status) return 1;\n",
        arguments.join(", ")
    ));
    for (j, argument) in output_names(plan).iter().enumerate() {
        text.push_str(&format!(
            "    FILE *out{j} = fopen(\"output{j}.bin\", \"wb\");\n    fwrite({argument}, 1, sizeof(*{argument}) * \
             {argument}_len, out{j});\n    fclose(out{j});\n    free({argument});\n"
        ));
    }
    for argument in input_names(plan) {
        text.push_str(&format!("    free({argument});\n"));
    }
    text.push_str("    free(scratch);\n    return 0;\n}\n");
    text
}

pub fn floats(bytes: &[u8]) -> Vec<f32> {
    bytes.chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect()
}

pub fn assert_close(got: &[f32], want: &[f32], tolerance: f32) {
    assert_eq!(got.len(), want.len());
    for (g, w) in got.iter().zip(want) {
        assert!((g - w).abs() <= tolerance * w.abs().max(1.0), "{g} against the JIT's {w}");
    }
}

pub fn uniform(count: usize, seed: u64, scale: f64) -> Vec<f32> {
    let mut state = seed;
    (0..count)
        .map(|_| {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((state >> 11) as f64 / 9007199254740992.0 * 2.0 * scale - scale) as f32
        })
        .collect()
}

pub fn ids(count: usize, seed: u64, below: i64) -> Vec<i64> {
    uniform(count, seed, 1.0).iter().map(|u| ((f64::from(*u) + 1.0) / 2.0 * below as f64) as i64 % below).collect()
}

/// Compiles `sources` (with `flags`) into `dir/test`, failing with the compiler's message.
pub fn compile(dir: &Path, flags: &[&str], sources: &[&str]) {
    let cc = c_compiler();
    let mut args = vec!["-O2", "-std=c11", "-ffp-contract=off", "-Wall", "-Werror", "-o", "test"];
    args.extend(flags);
    args.extend(sources);
    args.push("-lm");
    let built = Command::new(&cc).current_dir(dir).args(&args).output();
    let built = built.unwrap_or_else(|e| panic!("cannot run `{cc}` ({e}): this test needs a C compiler on PATH"));
    assert!(built.status.success(), "{cc} {}: {}", args.join(" "), String::from_utf8_lossy(&built.stderr));
}

/// Writes `inputs` as `input<i>.bin` in `dir` (what [`harness`] reads).
pub fn write_inputs(dir: &Path, inputs: &[Value]) {
    for (i, value) in inputs.iter().enumerate() {
        std::fs::write(dir.join(format!("input{i}.bin")), value.data().to_le_bytes()).unwrap();
    }
}

/// The reference interpreter's values of `outputs` fed `inputs` (positionally, by the inputs'
/// names), as little-endian bytes.
pub fn interpreted(
    g: &Graph,
    inputs: &[Tensor],
    values: &[Value],
    params: &ParamStore,
    outputs: &[Tensor],
) -> Vec<Vec<u8>> {
    let mut feeds = Feeds::new();
    for (input, value) in inputs.iter().zip(values) {
        feeds.insert(&input.name().expect("inputs are named"), value.clone());
    }
    let results = Interpreter::new(g).run(&feeds, params, outputs).unwrap();
    results.iter().map(|value| value.data().to_le_bytes()).collect()
}

pub fn mlp_model(g: &Graph) -> Result<(Vec<Tensor<'_>>, Vec<Tensor<'_>>)> {
    let x = g.input("x", [Dim::sym("B"), 2.into()])?;
    Ok((vec![x], vec![mlp_logits(g, x, 2)?]))
}

pub fn embedding_model(g: &Graph) -> Result<(Vec<Tensor<'_>>, Vec<Tensor<'_>>)> {
    let ids = g.typed_input("ids", [Dim::sym("B"), 5.into()], DType::I64)?;
    let rows = layers::Embedding::new(g, "table", 10, 3)?.forward(ids)?;
    // Each gathered row scaled (a load and a multiply, exact), and the sum over positions.
    let scaled = rows * 2.0;
    Ok((vec![ids], vec![scaled, scaled.sum(&[1], false)?]))
}

pub fn integer_model(g: &Graph) -> Result<(Vec<Tensor<'_>>, Vec<Tensor<'_>>)> {
    let a = g.typed_input("a", [Dim::sym("B"), 4.into()], DType::I64)?;
    let b = g.typed_input("b", [Dim::sym("B"), 4.into()], DType::I32)?;
    let wide = b.cast(DType::I64)?;
    // Products, differences, a division that truncates toward zero, an elementwise maximum.
    let mixed = ((a * wide - a) / wide).maximum(a - wide)?;
    let narrow = (b * b - b).cast(DType::F32)? * 0.5;
    Ok((vec![a, b], vec![mixed, narrow]))
}

pub fn scatter_model(g: &Graph) -> Result<(Vec<Tensor<'_>>, Vec<Tensor<'_>>)> {
    let ids = g.typed_input("ids", [Dim::sym("B"), 4.into()], DType::I64)?;
    let rows = g.input("rows", [Dim::sym("B"), 4.into(), 3.into()])?;
    let table = g.param("table", [6, 3], Init::Normal { mean: 0.0, std: 1.0 })?;
    // The fed rows added into the table at their ids (the adjoint of a gather); with 200 ids
    // over 6 rows, every row sums many updates, in order of position.
    Ok((vec![ids, rows], vec![table.scatter_add(ids, rows)?]))
}
