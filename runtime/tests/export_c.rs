//! The portable C source of an export, compiled with `cc -O2 -ffp-contract=off`, against the
//! JIT; and the C side under AddressSanitizer and UndefinedBehaviorSanitizer.
//!
//! What is asserted, case by case:
//! - the MLP (matmuls summed in order of `k`, bias, ReLU): bit for bit when the target has no
//!   fused multiply-add (x86-64's baseline; the C is built without contraction), else within
//!   1e-6 relative;
//! - a softmax over 12 classes, which the printer emits as reduction loops (max and sum
//!   accumulated over the class axis, checked in the source): within 1e-5 relative, since
//!   libm's `expf` is not kiln's polynomial and the C loop sums sequentially;
//! - a gather (an embedding of i64 ids): the gathered rows bit for bit (they are loads), their
//!   sum within 1e-6; an id out of range returns status 11;
//! - integer paths (i64 and i32 arithmetic, integer division, maximum, casts): bit for bit;
//! - a scatter-add of fed rows into a param table (repeated ids summed in order): bit for bit
//!   against the JIT, with the zeroing and adding loop checked in the source; an id out of
//!   range returns status 11;
//! - every case's C outputs against the reference interpreter too: bits where the arithmetic
//!   is the same (gathered rows, integers), else within the JIT's tolerance;
//! - the sanitizer job: the C source, and the Cranelift object with the numeric and the text
//!   executables' `main`s, built with `-fsanitize=address,undefined` and run on good, short and
//!   malformed input with no sanitizer report. Skipped, with a printed note, only when the C
//!   compiler cannot link a sanitized program (no sanitizer runtime).

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use kiln_compiler::codegen::Options;
use kiln_compiler::prelude::*;
use kiln_runtime::export::{CharacterTable, ExportOptions, Model, TextClassifier, c_compiler};
use kiln_runtime::function_with;
use support::{
    assert_close, compile, embedding_model, floats, harness, ids, integer_model, interpreted, mlp_logits as mlp,
    mlp_model, scatter_model, uniform, write_inputs,
};

mod support;

type Build = fn(&Graph) -> Result<(Vec<Tensor<'_>>, Vec<Tensor<'_>>)>;

fn temp_dir(test: &str) -> PathBuf {
    support::temp_dir("export-test-c", test)
}

/// What one export run gives: the C source, the outputs' bytes from C, from the JIT and from
/// the reference interpreter.
struct Run {
    source: String,
    c: Vec<Vec<u8>>,
    jit: Vec<Vec<u8>>,
    interpreter: Vec<Vec<u8>>,
    fma: bool,
}

/// Exports `build`'s model, runs its C source on `inputs` and the JIT on the same.
fn run_c(name: &str, build: Build, inputs: &[Value], flags: &[&str]) -> Run {
    let g = Graph::new();
    let (ins, outs) = build(&g).unwrap();
    let params = ParamStore::init(&g, 5);
    let artifact = Model::with_ports(&g, &ins, &outs).export(&params, &ExportOptions::new(name)).unwrap();
    let dir = temp_dir(&format!("{name}-{}", if flags.is_empty() { "plain" } else { "sanitized" }));
    artifact.write_c_source(&dir).unwrap();
    let batch = inputs[0].shape()[0];
    std::fs::write(dir.join("test.c"), harness(&artifact, batch)).unwrap();
    write_inputs(&dir, inputs);
    compile(&dir, flags, &["test.c", &format!("{name}.c")]);
    let ran = Command::new(dir.join("test")).current_dir(&dir).output().unwrap();
    assert!(ran.status.success(), "{}: {}", ran.status, String::from_utf8_lossy(&ran.stderr));
    assert!(ran.stderr.is_empty(), "stderr: {}", String::from_utf8_lossy(&ran.stderr));
    let c: Vec<Vec<u8>> = (0..outs.len()).map(|j| std::fs::read(dir.join(format!("output{j}.bin"))).unwrap()).collect();
    let fma = artifact.target().fma().unwrap();
    let mut f = function_with(&g, &ins, &outs, &[], &Options { gemm: false, fma, ..Options::default() }).unwrap();
    f.set_params(&params).unwrap();
    let jit: Vec<Vec<u8>> = f.call(inputs).unwrap().iter().map(|value| value.data().to_le_bytes()).collect();
    let interpreter = interpreted(&g, &ins, inputs, &params, &outs);
    // Every output present and of the interpreter's length in all three, before any element
    // is compared (a short output would otherwise pass a zip).
    let lengths = |outputs: &[Vec<u8>]| outputs.iter().map(Vec::len).collect::<Vec<_>>();
    assert_eq!(lengths(&c), lengths(&interpreter), "{name}: C output bytes against the interpreter's");
    assert_eq!(lengths(&jit), lengths(&interpreter), "{name}: JIT output bytes against the interpreter's");
    let _ = std::fs::remove_dir_all(&dir);
    Run { source: artifact.c_source().unwrap(), c, jit, interpreter, fma }
}

#[test]
fn the_c_source_of_the_mlp_is_the_jit_bit_for_bit_without_fma() {
    let run = run_c("mlp", mlp_model, &[Value::f32([1000, 2], uniform(2000, 99, 3.0))], &[]);
    let (got, want) = (floats(&run.c[0]), floats(&run.jit[0]));
    if run.fma {
        // The target fuses multiply-adds and the C is built without contraction.
        assert_close(&got, &want, 1e-6);
    } else {
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&got), bits(&want), "2000 outputs bit for bit");
    }
    assert_close(&got, &floats(&run.interpreter[0]), 1e-5);
}

#[test]
fn the_c_source_of_a_softmax_over_12_classes_runs_its_reduction_loops() {
    let run = run_c(
        "probabilities",
        |g| {
            let x = g.input("x", [Dim::sym("B"), 2.into()])?;
            Ok((vec![x], vec![layers::softmax(mlp(g, x, 12)?, 1)?]))
        },
        &[Value::f32([500, 2], uniform(1000, 7, 3.0))],
        &[],
    );
    // The max and the sum over the 12 classes are loops accumulating in a local.
    assert!(run.source.matches("accumulator = kiln_maxf(accumulator").count() >= 1, "{}", run.source);
    assert!(run.source.matches("accumulator = accumulator + ").count() >= 1, "{}", run.source);
    assert!(run.source.contains("< (12LL); i1++"), "a loop over the 12 classes:\n{}", run.source);
    let (got, want) = (floats(&run.c[0]), floats(&run.jit[0]));
    assert_close(&got, &want, 1e-5);
    assert_close(&got, &floats(&run.interpreter[0]), 1e-5);
    for row in got.chunks(12) {
        assert!((row.iter().sum::<f32>() - 1.0).abs() < 1e-5);
    }
}

#[test]
fn the_c_source_of_a_gather_matches_the_jit() {
    let run = run_c("embedding", embedding_model, &[Value::i64([300, 5], ids(1500, 3, 10))], &[]);
    assert!(run.source.contains("row") && run.source.contains("status[0] = 1"), "a checked gather in the source");
    assert_eq!(run.c[0], run.jit[0], "the gathered rows bit for bit");
    assert_eq!(run.c[0], run.interpreter[0], "the gathered rows bit for bit, against the interpreter");
    assert_close(&floats(&run.c[1]), &floats(&run.jit[1]), 1e-6);
    assert_close(&floats(&run.c[1]), &floats(&run.interpreter[1]), 1e-6);
}

#[test]
fn the_c_source_reports_an_id_outside_the_table() {
    let g = Graph::new();
    let (ins, outs) = embedding_model(&g).unwrap();
    let params = ParamStore::init(&g, 5);
    let artifact = Model::with_ports(&g, &ins, &outs).export(&params, &ExportOptions::new("embedding")).unwrap();
    let dir = temp_dir("bad-id");
    artifact.write_c_source(&dir).unwrap();
    std::fs::write(dir.join("test.c"), harness(&artifact, 2)).unwrap();
    std::fs::write(
        dir.join("input0.bin"),
        Value::i64([2, 5], vec![0, 1, 2, 3, 4, 5, 6, 10, 8, 9]).data().to_le_bytes(),
    )
    .unwrap();
    compile(&dir, &[], &["test.c", "embedding.c"]);
    let ran = Command::new(dir.join("test")).current_dir(&dir).output().unwrap();
    assert_eq!(String::from_utf8_lossy(&ran.stdout), "status 11\n");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_c_source_of_integer_arithmetic_is_the_jit_bit_for_bit() {
    let a: Vec<i64> = ids(800, 11, 2001).iter().map(|v| v - 1000).collect();
    // Nonzero divisors, both signs.
    let b: Vec<i32> = ids(800, 12, 200).iter().map(|&v| if v < 100 { v as i32 - 100 } else { v as i32 - 99 }).collect();
    let run = run_c("integers", integer_model, &[Value::i64([200, 4], a), Value::i32([200, 4], b)], &[]);
    assert!(run.source.contains("int64_t") && run.source.contains("(uint64_t)"), "integer code in the source");
    assert_eq!(run.c[0], run.jit[0], "i64 outputs");
    assert_eq!(run.c[1], run.jit[1], "i32 products cast to f32");
    assert_eq!(run.c[0], run.interpreter[0], "i64 outputs against the interpreter");
    assert_eq!(run.c[1], run.interpreter[1], "i32 products cast to f32 against the interpreter");
}

#[test]
fn the_c_source_of_a_scatter_add_is_the_jit_bit_for_bit() {
    let ids_value = Value::i64([50, 4], ids(200, 21, 6));
    let rows = Value::f32([50, 4, 3], uniform(600, 22, 2.0));
    let run = run_c("scatter", scatter_model, &[ids_value, rows], &[]);
    assert!(
        run.source.contains("for (int64_t p = 0; p < positions; p++)") && run.source.contains("status[0] = 1"),
        "a checked scatter loop over the positions in the source:\n{}",
        run.source
    );
    assert_eq!(run.c[0], run.jit[0], "the table plus the scattered rows, bit for bit");
    // The interpreter accumulates its sums otherwise (not bit for bit), so within 1e-6.
    assert_close(&floats(&run.c[0]), &floats(&run.interpreter[0]), 1e-6);
}

#[test]
fn the_c_source_reports_a_scatter_id_outside_the_table() {
    let g = Graph::new();
    let (ins, outs) = scatter_model(&g).unwrap();
    let params = ParamStore::init(&g, 5);
    let artifact = Model::with_ports(&g, &ins, &outs).export(&params, &ExportOptions::new("scatter")).unwrap();
    let dir = temp_dir("bad-scatter-id");
    artifact.write_c_source(&dir).unwrap();
    std::fs::write(dir.join("test.c"), harness(&artifact, 1)).unwrap();
    std::fs::write(dir.join("input0.bin"), Value::i64([1, 4], vec![0, 6, 2, 3]).data().to_le_bytes()).unwrap();
    std::fs::write(dir.join("input1.bin"), Value::f32([1, 4, 3], vec![1.0; 12]).data().to_le_bytes()).unwrap();
    compile(&dir, &[], &["test.c", "scatter.c"]);
    let ran = Command::new(dir.join("test")).current_dir(&dir).output().unwrap();
    assert_eq!(String::from_utf8_lossy(&ran.stdout), "status 11\n");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Whether `cc` links and runs a program under AddressSanitizer and UBSan.
fn sanitizers_available(dir: &Path) -> bool {
    std::fs::write(dir.join("probe.c"), "int main(void) { return 0; }\n").unwrap();
    let cc = c_compiler();
    let built = Command::new(&cc)
        .current_dir(dir)
        .args(["-fsanitize=address,undefined", "-o", "probe", "probe.c"])
        .output()
        .is_ok_and(|o| o.status.success());
    built && Command::new(dir.join("probe")).output().is_ok_and(|o| o.status.success())
}

const SANITIZE: [&str; 3] = ["-fsanitize=address,undefined", "-fno-sanitize-recover=all", "-g"];

fn run_sanitized(program: &Path, args: &[&str], stdin: &[u8]) -> Output {
    use std::io::Write;
    let mut child = Command::new(program)
        .args(args)
        .env("ASAN_OPTIONS", "detect_leaks=1:abort_on_error=0:exitcode=99")
        .env("UBSAN_OPTIONS", "halt_on_error=1:exitcode=98:print_stacktrace=1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut pipe = child.stdin.take().unwrap();
    let input = stdin.to_vec();
    let writer = std::thread::spawn(move || pipe.write_all(&input));
    let output = child.wait_with_output().unwrap();
    let _ = writer.join();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        !stderr.contains("Sanitizer")
            && !stderr.contains("runtime error")
            && !matches!(output.status.code(), Some(98 | 99)),
        "{} {args:?}: {stderr}",
        program.display()
    );
    output
}

#[test]
fn the_c_side_runs_clean_under_address_and_undefined_behaviour_sanitizers() {
    let dir = temp_dir("sanitize");
    if !sanitizers_available(&dir) {
        println!(
            "note: `{}` cannot link -fsanitize=address,undefined here; the sanitizer job is skipped",
            c_compiler()
        );
        let _ = std::fs::remove_dir_all(&dir);
        return;
    }
    // The portable C of every kind of model above, sanitized.
    let run = run_c("mlp", mlp_model, &[Value::f32([300, 2], uniform(600, 1, 3.0))], &SANITIZE);
    assert_eq!(run.c[0].len(), run.jit[0].len());
    let run = run_c("embedding", embedding_model, &[Value::i64([40, 5], ids(200, 3, 10))], &SANITIZE);
    assert_eq!(run.c[0], run.jit[0]);
    let (a, b) = (Value::i64([3, 4], (0..12).collect()), Value::i32([3, 4], (1..13).collect()));
    let run = run_c("integers", integer_model, &[a, b], &SANITIZE);
    assert_eq!(run.c[0], run.jit[0]);
    let scatter_inputs = [Value::i64([5, 4], ids(20, 4, 6)), Value::f32([5, 4, 3], uniform(60, 5, 1.0))];
    let run = run_c("scatter", scatter_model, &scatter_inputs, &SANITIZE);
    assert_eq!(run.c[0], run.jit[0]);

    // The Cranelift object with the numeric executable's main, sanitized, on good, short and
    // malformed input (the object itself is not instrumented; its callers and buffers are).
    let g = Graph::new();
    let (ins, outs) = mlp_model(&g).unwrap();
    let params = ParamStore::init(&g, 2);
    let artifact = Model::with_ports(&g, &ins, &outs).export(&params, &ExportOptions::new("mlp")).unwrap();
    artifact.write_object(&dir).unwrap();
    artifact.write_header(&dir).unwrap();
    std::fs::write(dir.join("main.c"), artifact.executable_source().unwrap()).unwrap();
    compile(&dir, &SANITIZE, &["main.c", "mlp.o"]);
    let program = dir.join("test");
    let good = run_sanitized(&program, &["--raw"], b"0.5, 1\n-1 2\n\n# c\n3,4");
    assert_eq!(good.status.code(), Some(0));
    assert_eq!(String::from_utf8_lossy(&good.stdout).lines().count(), 3);
    for bad in [&b"1\x00, 2\n3, 4x\n"[..], b"nan, 1\n", b"1,,2\n", b"\xff\xfe\xfd", b"1 2 3 4 5 6 7 8 9\n", b","] {
        let output = run_sanitized(&program, &[], bad);
        assert_eq!(output.status.code(), Some(2), "{bad:?}");
    }
    let mut random = Vec::new();
    let mut state = 5u64;
    for _ in 0..4000 {
        state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        random.push(b"0123456789.,e- \n\x00\xffn"[(state >> 40) as usize % 19]);
    }
    let output = run_sanitized(&program, &["--raw"], &random);
    assert!(matches!(output.status.code(), Some(0 | 2)));

    // The text executable's main, sanitized, on invalid UTF-8, long and empty lines.
    let g = Graph::new();
    let ids_input = g.typed_input("ids", [Dim::sym("B"), 6.into()], DType::I64).unwrap();
    let embedded = layers::Embedding::new(&g, "chars", 4, 2).unwrap().forward(ids_input).unwrap();
    let logits = embedded.sum(&[1], false).unwrap();
    let params = ParamStore::init(&g, 1);
    let text = Model::new(&g, ids_input, logits).export(&params, &ExportOptions::new("titles")).unwrap();
    let classifier = TextClassifier {
        characters: CharacterTable::from_encoder(0, 3, |c| match c {
            'a' => vec![1],
            'b' => vec![2],
            'İ' => vec![1, 2],
            _ => vec![3],
        }),
        categories: vec!["first".into(), "second".into()],
        tags: vec![],
    };
    text.write_object(&dir).unwrap();
    text.write_header(&dir).unwrap();
    std::fs::write(dir.join("main.c"), text.text_executable_source(&classifier).unwrap()).unwrap();
    compile(&dir, &SANITIZE, &["main.c", "titles.o"]);
    let mut input = b"ab\n\n\xff\xe2\x82\nabababababab\r\n".to_vec();
    input.extend(std::iter::repeat_n(b'a', 100_000));
    input.extend("\nİİİİ\n".as_bytes());
    input.extend((0..600).flat_map(|i| if i % 2 == 0 { &b"b\n"[..] } else { &b"\n"[..] }));
    input.extend(b"\xf0\x9f");
    let output = run_sanitized(&program, &[], &input);
    assert_eq!(output.status.code(), Some(0));
    assert_eq!(String::from_utf8_lossy(&output.stdout).lines().count(), 607);
    let _ = std::fs::remove_dir_all(&dir);
}

/// An `f64` model with constants and masks: its C is the JIT bit for bit, and the constants are
/// the doubles written (`1e-5` is printed as `1e-5`, not an `f32` rounding of it).
fn f64_model(g: &Graph) -> Result<(Vec<Tensor<'_>>, Vec<Tensor<'_>>)> {
    let x = g.input_of("x", [Dim::sym("B"), 3.into()], DType::F64)?;
    let labels = g.input_of("labels", [Dim::sym("B")], DType::I64)?;
    let shifted = x + 1e-5;
    let scaled = x * 0.1;
    let picked = x.ne(0.0)?.select(labels.one_hot_of(3, DType::F64)?, -1.0)? * x.gt(0.0)?;
    Ok((vec![x, labels], vec![shifted, scaled, picked]))
}

#[test]
fn the_c_source_of_an_f64_model_keeps_its_constants_exact() {
    let x: Vec<f64> = vec![0.0, 1.0, -2.0, 0.5, 3.0, -0.25];
    let run = run_c("doubles", f64_model, &[Value::f64([2, 3], x.clone()), Value::i64([2], vec![2, 0])], &[]);
    assert!(run.source.contains("1e-5") && !run.source.contains("1e-5f"), "the literal 1e-5 as a double");
    let doubles = |bytes: &[u8]| -> Vec<f64> {
        bytes.chunks_exact(8).map(|c| f64::from_le_bytes(c.try_into().unwrap())).collect()
    };
    assert_eq!(doubles(&run.c[0]), x.iter().map(|v| v + 1e-5).collect::<Vec<f64>>());
    assert_eq!(doubles(&run.c[1]), x.iter().map(|v| v * 0.1).collect::<Vec<f64>>());
    assert_eq!(doubles(&run.c[2]), vec![-0.0, 0.0, 0.0, 1.0, 0.0, 0.0]);
    assert_eq!(run.c, run.jit, "the JIT's bits");
}
