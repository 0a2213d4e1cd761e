//! Exported artifacts against the JIT: the object file, the static library linked into a C
//! program with `cc`, the standalone executable fed good and malformed input, the Rust
//! bindings built with `rustc`. Needs a C compiler (`$CC` or `cc`) and `rustc` on PATH: a
//! missing one fails the test with a message saying so, it never passes silently.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use kiln_compiler::Data;
use kiln_compiler::codegen::Options;
use kiln_compiler::prelude::*;
use kiln_runtime::export::{Artifact, ExportOptions, Model, c_compiler};
use kiln_runtime::function_with;
use support::mlp;

mod support;

/// A fresh directory under the system's temporary directory.
fn temp_dir(test: &str) -> PathBuf {
    support::temp_dir("export-test", test)
}

/// `count · 2` normal values from a fixed seed (Box-Muller over a 64-bit LCG).
fn normal_inputs(count: usize, seed: u64) -> Vec<f32> {
    let mut state = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    let mut uniform = move || {
        state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        ((state >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    };
    (0..count * 2)
        .map(|_| ((-2.0 * uniform().ln()).sqrt() * (std::f64::consts::TAU * uniform()).cos()) as f32)
        .collect()
}

/// The JIT's outputs on `inputs`, compiled to compute the artifact's bits (no GEMM, the
/// target's FMA).
fn jit_outputs(artifact: &Artifact, params: &ParamStore, inputs: &[f32]) -> Vec<f32> {
    let g = Graph::new();
    let (x, y) = mlp(&g).unwrap();
    let options = Options { gemm: false, fma: artifact.target().fma().unwrap(), ..Options::default() };
    let mut f = function_with(&g, &[x], &[y], &[], &options).unwrap();
    f.set_params(params).unwrap();
    let out = f.call(&[Value::f32([inputs.len() / 2, 2], inputs.to_vec())]).unwrap();
    match out[0].data() {
        Data::F32(values) => values.clone(),
        other => panic!("the output is not f32: {other:?}"),
    }
}

fn export_mlp(name: &str) -> (Artifact, ParamStore) {
    let g = Graph::new();
    let (x, y) = mlp(&g).unwrap();
    let params = ParamStore::init(&g, 7);
    let artifact = Model::new(&g, x, y).export(&params, &ExportOptions::new(name)).unwrap();
    (artifact, params)
}

/// Runs `command`, failing the test with a clear message if the program is missing.
fn run(command: &mut Command) -> Output {
    let program = command.get_program().to_string_lossy().into_owned();
    command.output().unwrap_or_else(|e| panic!("cannot run `{program}` ({e}): these tests need it on PATH"))
}

fn check(output: &Output, what: &str) {
    assert!(
        output.status.success(),
        "{what} failed ({}):\n{}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

fn floats(bytes: &[u8]) -> Vec<f32> {
    bytes.chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect()
}

fn bits(values: &[f32]) -> Vec<u32> {
    values.iter().map(|v| v.to_bits()).collect()
}

const C_TEST: &str = r#"#include <stdio.h>
#include <stdlib.h>
#include "mlp.h"

int main(int argc, char **argv) {
    long rows = atol(argv[1]);
    size_t n = (size_t)rows * 2;
    float *input = malloc(n * sizeof(float)), *output = malloc(n * sizeof(float));
    FILE *in = fopen("inputs.bin", "rb");
    if (fread(input, sizeof(float), n, in) != n) return 3;
    fclose(in);
    size_t bytes = mlp_scratch_bytes(rows);
    void *scratch = malloc(bytes);
    if (mlp_infer(input, n, rows, output, n, scratch, bytes) != 0) return 4;
    FILE *out = fopen("batch.bin", "wb");
    fwrite(output, sizeof(float), n, out);
    fclose(out);
    /* Row by row, at batch 1, with scratch sized for one row. */
    size_t small_bytes = mlp_scratch_bytes(1);
    void *small = malloc(small_bytes);
    for (long r = 0; r < rows; r++)
        if (mlp_infer(input + 2 * r, 2, 1, output + 2 * r, 2, small, small_bytes) != 0) return 5;
    out = fopen("rows.bin", "wb");
    fwrite(output, sizeof(float), n, out);
    fclose(out);
    printf("null_input=%d null_output=%d null_scratch=%d negative=%d too_large=%d empty=%d\n",
           mlp_infer(NULL, 2, 1, output, 2, small, small_bytes), mlp_infer(input, 2, 1, NULL, 2, small, small_bytes),
           mlp_infer(input, 2, 1, output, 2, NULL, small_bytes), mlp_infer(input, 2, -1, output, 2, small, small_bytes),
           mlp_infer(input, 2, mlp_max_batch() + 1, output, 2, small, small_bytes),
           mlp_infer(input, 0, 0, output, 0, NULL, 0));
    /* Short buffers: an error code, and nothing written past the given lengths. */
    output[2] = 12345.0f;
    printf("short_input=%d short_output=%d short_scratch=%d huge_lengths=%d untouched=%d\n",
           mlp_infer(input, 3, 2, output, 4, scratch, bytes), mlp_infer(input, 4, 2, output, 3, scratch, bytes),
           mlp_infer(input, 2, 1, output, 2, small, small_bytes - 1),
           mlp_infer(input, (size_t)-1, 1, output, (size_t)-1, small, (size_t)-1), output[2] == 12345.0f);
    printf("sizes=%lld,%lld,%lld,%d,%d scratch_negative=%zu scratch_huge=%zu abi=%d version=%s\n",
           (long long)mlp_input_size(0), (long long)mlp_output_size(0), (long long)mlp_input_size(1),
           mlp_input_count(), mlp_output_count(), mlp_scratch_bytes(-1), mlp_scratch_bytes(INT64_MAX),
           mlp_abi_version(), mlp_version());
    return 0;
}
"#;

#[test]
fn the_static_library_links_into_a_c_program_and_matches_the_jit_bit_for_bit() {
    let (artifact, params) = export_mlp("mlp");
    let dir = temp_dir("static");
    let library = artifact.write_static_library(&dir).unwrap();
    assert_eq!(library, dir.join("libmlp.a"));
    assert!(dir.join("mlp.h").exists());
    let inputs = normal_inputs(1000, 42);
    let bytes: Vec<u8> = inputs.iter().flat_map(|v| v.to_le_bytes()).collect();
    std::fs::write(dir.join("inputs.bin"), bytes).unwrap();
    std::fs::write(dir.join("test.c"), C_TEST).unwrap();
    let cc = c_compiler();
    check(&run(Command::new(&cc).current_dir(&dir).args(["-O2", "-o", "test", "test.c", "-L.", "-lmlp"])), "cc");
    let output = run(Command::new(dir.join("test")).current_dir(&dir).arg("1000"));
    check(&output, "the C test program");
    let report = String::from_utf8_lossy(&output.stdout);
    assert!(report.contains("null_input=1 null_output=1 null_scratch=1 negative=2 too_large=3 empty=0"), "{report}");
    assert!(report.contains("short_input=4 short_output=5 short_scratch=6 huge_lengths=0 untouched=1"), "{report}");
    assert!(
        report.contains("sizes=2,2,-1,1,1 scratch_negative=0 scratch_huge=0 abi=2 version=mlp [B, 2] -> [B, 2]"),
        "{report}"
    );
    let expected = jit_outputs(&artifact, &params, &inputs);
    let batch = floats(&std::fs::read(dir.join("batch.bin")).unwrap());
    let rows = floats(&std::fs::read(dir.join("rows.bin")).unwrap());
    assert_eq!(bits(&batch), bits(&expected), "batch of 1000 against the JIT");
    assert_eq!(bits(&rows), bits(&expected), "1000 calls at batch 1 against the JIT");
    let _ = std::fs::remove_dir_all(&dir);
}

fn executable(dir: &Path) -> (PathBuf, Artifact, ParamStore) {
    let (artifact, params) = export_mlp("mlp");
    let path = artifact.link_executable(dir).unwrap();
    (path, artifact, params)
}

fn run_with_stdin(program: &Path, args: &[&str], stdin: &str) -> Output {
    run_with_bytes(program, args, stdin.as_bytes())
}

fn run_with_bytes(program: &Path, args: &[&str], stdin: &[u8]) -> Output {
    use std::io::Write;
    let mut child = Command::new(program)
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // The program may stop reading early (a usage error); a broken pipe is then expected.
    let _ = child.stdin.take().unwrap().write_all(stdin);
    child.wait_with_output().unwrap()
}

#[test]
fn the_executable_predicts_rows_and_rejects_malformed_ones() {
    let dir = temp_dir("executable");
    let (program, artifact, params) = executable(&dir);
    let size = std::fs::metadata(&program).unwrap().len();
    assert!(size <= 64 * 1024, "the stripped executable has {size} bytes");

    let help = run(Command::new(&program).arg("--help"));
    check(&help, "--help");
    assert!(String::from_utf8_lossy(&help.stdout).contains("usage:"));

    // CSV and blank-separated rows, a comment and a blank line; raw outputs are the JIT's bits.
    let inputs = normal_inputs(50, 3);
    let mut text = String::from("# x, y\n\n");
    for (i, row) in inputs.chunks(2).enumerate() {
        let separator = if i % 2 == 0 { ", " } else { " \t" };
        text.push_str(&format!("{:?}{separator}{:?}\n", row[0], row[1]));
    }
    let expected = jit_outputs(&artifact, &params, &inputs);
    let raw = run_with_stdin(&program, &["--raw"], &text);
    check(&raw, "--raw");
    let printed: Vec<f32> =
        String::from_utf8_lossy(&raw.stdout).split_whitespace().map(|v| v.parse().unwrap()).collect();
    assert_eq!(bits(&printed), bits(&expected));

    // From a file: the class, then the softmax probabilities.
    std::fs::write(dir.join("rows.csv"), &text).unwrap();
    let classes = run(Command::new(&program).arg(dir.join("rows.csv")));
    check(&classes, "classes");
    let stdout = String::from_utf8_lossy(&classes.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 50);
    for (line, out) in lines.iter().zip(expected.chunks(2)) {
        let fields: Vec<f64> = line.split(' ').map(|v| v.parse().unwrap()).collect();
        let class = if out[1] > out[0] { 1.0 } else { 0.0 };
        let p1 = 1.0 / (1.0 + (f64::from(out[0]) - f64::from(out[1])).exp());
        assert_eq!(fields[0], class, "{line}");
        assert!((fields[2] - p1).abs() < 1e-6 && (fields[1] + fields[2] - 1.0).abs() < 1e-5, "{line}");
    }

    // Malformed rows: the line number on stderr, exit code 2, nothing on stdout.
    for (input, message) in [
        ("0.5, 1\n1, 2, 3\n", "line 2: expected 2 numbers, got 3"),
        ("0.5, 1\n\n0.25\n", "line 3: expected 2 numbers, got 1"),
        ("1, x\n", "line 1: `x` is not a number"),
        ("1,,2\n", "line 1: an empty field"),
        ("1 2\n3 4abc\n", "line 2: `a` after a number"),
    ] {
        let output = run_with_stdin(&program, &[], input);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{input:?}: {stderr}");
        assert!(stderr.contains(message), "{input:?}: {stderr}");
        assert!(output.stdout.is_empty(), "{input:?} printed {:?}", String::from_utf8_lossy(&output.stdout));
    }
    let unknown = run(Command::new(&program).arg("--bogus"));
    assert_eq!(unknown.status.code(), Some(2));
    let empty = run_with_stdin(&program, &[], "");
    check(&empty, "empty input");
    assert!(empty.stdout.is_empty());
    let _ = std::fs::remove_dir_all(&dir);
}

/// The number of undefined symbols in an ELF64 little-endian object (what it would need from
/// other objects or libraries when linked).
fn undefined_symbols(elf: &[u8]) -> usize {
    let u16_at = |at: usize| u16::from_le_bytes([elf[at], elf[at + 1]]) as usize;
    let u32_at = |at: usize| u32::from_le_bytes(elf[at..at + 4].try_into().unwrap()) as usize;
    let u64_at = |at: usize| u64::from_le_bytes(elf[at..at + 8].try_into().unwrap()) as usize;
    let (sections, size, count) = (u64_at(0x28), u16_at(0x3a), u16_at(0x3c));
    let mut undefined = 0;
    for section in (0..count).map(|i| sections + i * size) {
        if u32_at(section + 4) != 2 {
            continue; // not SHT_SYMTAB
        }
        let (offset, bytes) = (u64_at(section + 0x18), u64_at(section + 0x20));
        for symbol in (offset..offset + bytes).step_by(24).skip(1) {
            if u32_at(symbol) != 0 && u16_at(symbol + 6) == 0 {
                undefined += 1;
            }
        }
    }
    undefined
}

#[test]
fn the_object_file_is_an_elf_relocatable_object_for_the_host() {
    let (artifact, _) = export_mlp("mlp");
    let dir = temp_dir("object");
    let path = artifact.write_object(&dir).unwrap();
    let bytes = std::fs::read(path).unwrap();
    assert_eq!(&bytes[..4], b"\x7fELF");
    assert_eq!(u16::from_le_bytes([bytes[16], bytes[17]]), 1, "ET_REL");
    let machine = u16::from_le_bytes([bytes[18], bytes[19]]);
    let expected = if cfg!(target_arch = "x86_64") { 62 } else { 183 };
    assert_eq!(machine, expected);
    assert_eq!(undefined_symbols(&bytes), 0, "the object needs nothing from libc or anywhere else");
    assert!(artifact.header().contains(
        "int mlp_infer(const float *input, size_t input_len, int64_t batch, float *output, size_t output_len, \
         void *scratch, size_t scratch_len);"
    ));
    assert_eq!((artifact.inputs()[0].row, artifact.outputs()[0].row), (2, 2));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_rust_bindings_build_with_rustc_and_match_the_jit() {
    let (artifact, params) = export_mlp("mlp");
    let dir = temp_dir("bindings");
    artifact.write_static_library(&dir).unwrap();
    artifact.write_rust_bindings(&dir).unwrap();
    let inputs = normal_inputs(10, 5);
    let main = format!(
        "mod mlp;\nfn main() {{\n    let input: Vec<f32> = vec!{inputs:?};\n    let out = mlp::infer(&input, 10).unwrap();\n    \
         for v in out {{ println!(\"{{}}\", v.to_bits()); }}\n    assert_eq!(mlp::infer(&input, 3), \
         Err(mlp::Error::InputLength {{ input: 0, expected: 6, got: 20 }}));\n    eprintln!(\"{{}}\", mlp::version());\n}}\n"
    );
    std::fs::write(dir.join("main.rs"), main).unwrap();
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let build = run(Command::new(&rustc).current_dir(&dir).args(["--edition", "2021", "-O", "-L", ".", "main.rs"]));
    check(&build, "rustc");
    let output = run(&mut Command::new(dir.join("main")));
    check(&output, "the Rust program");
    let printed: Vec<u32> = String::from_utf8_lossy(&output.stdout).lines().map(|l| l.parse().unwrap()).collect();
    assert_eq!(printed, bits(&jit_outputs(&artifact, &params, &inputs)));
    let _ = std::fs::remove_dir_all(&dir);
}

/// Asserts that `output` is a clean rejection: exit code 2, nothing on stdout, and stderr of
/// printable ASCII lines only (no raw bytes echoed), containing every one of `messages`.
fn assert_rejected(output: &Output, input: &[u8], messages: &[&str]) {
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{input:?}: {stderr}");
    assert!(output.stdout.is_empty(), "{input:?} printed {:?}", String::from_utf8_lossy(&output.stdout));
    assert!(output.stderr.iter().all(|&b| b == b'\n' || (0x20..0x7f).contains(&b)), "raw bytes on stderr: {stderr:?}");
    for message in messages {
        assert!(stderr.contains(message), "{input:?}: expected `{message}` in {stderr}");
    }
}

#[test]
fn the_executable_rejects_non_finite_values_unless_allowed() {
    let dir = temp_dir("nonfinite");
    let (program, _, _) = executable(&dir);
    for (input, excerpt) in [
        ("1, 2\nnan, 1\n", "line 2: `nan` is not a finite f32"),
        ("inf 1\n", "line 1: `inf` is not a finite f32"),
        ("1, -infinity\n", "line 1: `-infinity` is not a finite f32"),
        ("0.5, 1e40\n", "line 1: `1e40` is not a finite f32"),
        ("-3.5e38 0\n", "line 1: `-3.5e38` is not a finite f32"),
    ] {
        assert_rejected(&run_with_stdin(&program, &[], input), input.as_bytes(), &[excerpt]);
        // --allow-nonfinite runs them (the outputs are whatever the model makes of them).
        let allowed = run_with_stdin(&program, &["--raw", "--allow-nonfinite"], input);
        check(&allowed, input);
        assert_eq!(String::from_utf8_lossy(&allowed.stdout).lines().count(), input.lines().count(), "{input:?}");
    }
    // The largest finite f32 and subnormals are values like any other.
    let edge = run_with_stdin(&program, &["--raw"], "3.4028235e38, -3.4028235e38\n1e-40 -1e-45\n");
    check(&edge, "edge values");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_executable_reports_nul_bytes_and_reads_past_them() {
    let dir = temp_dir("nul");
    let (program, _, _) = executable(&dir);
    // A NUL byte on line 2 does not end the input: line 4's error is reported too.
    let input = b"1, 2\n3\x00, 4\n5, 6\n7, x\n";
    let output = run_with_bytes(&program, &[], input);
    assert_rejected(
        &output,
        input,
        &["line 2: a NUL byte at column 2", "line 4: `x` is not a number", "2 malformed lines"],
    );
    // Binary garbage is quoted as a short escaped excerpt, never echoed.
    let mut garbage = b"1, ".to_vec();
    garbage.extend((0..200u8).map(|b| b.wrapping_mul(37) | 0x80));
    garbage.push(b'\n');
    let output = run_with_bytes(&program, &[], &garbage);
    assert_rejected(&output, &garbage, &["line 1: `\\x80", "`... is not a number"]);
    let longest = String::from_utf8_lossy(&output.stderr).lines().map(str::len).max().unwrap_or(0);
    assert!(longest < 120, "a message of {longest} bytes: {}", String::from_utf8_lossy(&output.stderr));
    // Many malformed lines: the first ten in full, then a count.
    let many: String = (0..25).map(|i| format!("{i}\n")).collect();
    let output = run_with_stdin(&program, &[], &many);
    assert_rejected(
        &output,
        many.as_bytes(),
        &["line 10: expected 2 numbers", "... and 15 more", "25 malformed lines"],
    );
    assert!(!String::from_utf8_lossy(&output.stderr).contains("line 11:"));
    let _ = std::fs::remove_dir_all(&dir);
}

/// A 64-bit LCG for the fuzz cases.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        self.0 >> 11
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// Cases for the fuzz tests: `KILN_FUZZ_CASES` if set, else `default` (what CI runs).
fn fuzz_cases(default: usize) -> usize {
    std::env::var("KILN_FUZZ_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// Random bytes and mutations of valid input through the executable: every run exits with
/// 0 (and prints one line per row) or with 2 (with a message, nothing on stdout), never a
/// signal or another code.
#[test]
fn the_executable_row_parser_survives_random_and_mutated_input() {
    let dir = temp_dir("fuzz");
    let (program, _, _) = executable(&dir);
    let valid = b"0.5, 1\n-2 3e-3\n# comment\n\n1e3,\t-0\n".to_vec();
    let pieces: [&[u8]; 14] = [
        b"nan",
        b"inf",
        b"1e40",
        b"\x00",
        b",",
        b" ",
        b"\n",
        b"-",
        b"e",
        b"0x1p3",
        b"#",
        b"\r\n",
        b"\xff\xfe",
        b"1e-50",
    ];
    let cases = fuzz_cases(300);
    let mut rng = Lcg(2026);
    let (mut accepted, mut rejected) = (0, 0);
    for case in 0..cases {
        let input: Vec<u8> = if case % 3 == 0 {
            (0..rng.below(200)).map(|_| rng.next() as u8).collect()
        } else {
            let mut bytes = valid.clone();
            for _ in 0..1 + rng.below(6) {
                let at = rng.below(bytes.len() + 1);
                match rng.below(3) {
                    0 if at < bytes.len() => {
                        bytes.remove(at);
                    }
                    1 => {
                        let piece = pieces[rng.below(pieces.len())];
                        bytes.splice(at..at, piece.iter().copied());
                    }
                    _ => bytes.insert(at, rng.next() as u8),
                }
            }
            bytes
        };
        let output = run_with_bytes(&program, &["--raw"], &input);
        match output.status.code() {
            Some(0) => {
                accepted += 1;
                let rows = output.stdout.iter().filter(|&&b| b == b'\n').count();
                let expected = input
                    .split(|&b| b == b'\n')
                    .filter(|line| {
                        let text = String::from_utf8_lossy(line);
                        let text = text.trim_start_matches([' ', '\t', '\r']);
                        !text.is_empty() && !text.starts_with('#')
                    })
                    .count();
                assert_eq!(rows, expected, "case {case}: {input:?}");
            }
            Some(2) => {
                rejected += 1;
                assert_rejected(&output, &input, &["line "]);
            }
            other => panic!("case {case}: exit {other:?} ({}) on {input:?}", output.status),
        }
    }
    println!("{cases} fuzz cases: {accepted} accepted, {rejected} rejected");
    assert!(accepted > 0 && rejected > 0, "the cases should exercise both outcomes");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn bad_exports_are_errors() {
    let g = Graph::new();
    let (x, y) = mlp(&g).unwrap();
    let params = ParamStore::init(&g, 0);
    let error = Model::new(&g, x, y).export(&params, &ExportOptions::new("not a name")).unwrap_err();
    assert!(matches!(error, Error::Export { .. }), "{error}");
    let error = Model::new(&g, x, y).export(&ParamStore::new(), &ExportOptions::new("m")).unwrap_err();
    assert!(matches!(error, Error::MissingParam { .. }), "{error}");
    let fixed = g.input("fixed", [3, 2]).unwrap();
    let error = Model::new(&g, fixed, fixed * 2.0).export(&params, &ExportOptions::new("m")).unwrap_err();
    assert!(error.to_string().contains("symbolic batch"), "{error}");
}
