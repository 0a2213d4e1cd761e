//! Text models exported: integer ids in, two outputs (category and tag logits), the C ABI
//! with several ports, and the text executable against the JIT on titles of every kind
//! (uppercase, empty, CRLF, invalid UTF-8, characters that lowercase to two, NUL bytes,
//! lines far longer than the model's length, more lines than one batch). Needs `cc`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use kiln_compiler::Data;
use kiln_compiler::codegen::Options;
use kiln_compiler::prelude::*;
use kiln_runtime::export::{Artifact, CharacterTable, ExportOptions, Model, TextClassifier, c_compiler};
use kiln_runtime::function_with;

mod support;

const LEN: usize = 8;
const CATEGORIES: [&str; 3] = ["alpha", "beta", "gamma"];
const TAGS: [&str; 4] = ["red", "green", "blue", "with space"];

/// The training encoder's policy: lowercase, letters 1–26, space 27, anything else 28.
fn char_ids(c: char) -> Vec<i64> {
    c.to_lowercase()
        .map(|c| match c {
            'a'..='z' => c as i64 - 'a' as i64 + 1,
            ' ' => 27,
            _ => 28,
        })
        .collect()
}

/// Ids `[B, 8]` → embedding → mean over positions → category logits `[B, 3]` and tag logits `[B, 4]`.
fn text_model(g: &Graph) -> Result<(Tensor<'_>, Tensor<'_>, Tensor<'_>)> {
    let ids = g.typed_input("ids", [Dim::sym("B"), LEN.into()], DType::I64)?;
    let embedded = layers::Embedding::new(g, "chars", 29, 6)?.forward(ids)?;
    let pooled = embedded.sum(&[1], false)? * 0.5;
    let hidden = layers::relu(layers::Linear::new(g, "hidden", 6, 12)?.forward(pooled)?)?;
    let category = layers::Linear::new(g, "category", 12, 3)?.forward(hidden)?;
    let tags = layers::Linear::new(g, "tags", 12, 4)?.forward(hidden)?;
    Ok((ids, category, tags))
}

fn classifier() -> TextClassifier {
    TextClassifier {
        characters: CharacterTable::from_encoder(0, 28, char_ids),
        categories: CATEGORIES.iter().map(|c| c.to_string()).collect(),
        tags: TAGS.iter().map(|t| t.to_string()).collect(),
    }
}

fn temp_dir(test: &str) -> PathBuf {
    support::temp_dir("export-text", test)
}

fn export(params: &ParamStore) -> Artifact {
    let g = Graph::new();
    let (ids, category, tags) = text_model(&g).unwrap();
    Model::with_ports(&g, &[ids], &[category, tags]).export(params, &ExportOptions::new("titles")).unwrap()
}

/// The JIT's category and tag logits for `rows` rows of ids.
fn jit(params: &ParamStore, ids: &[i64], fma: bool) -> (Vec<f32>, Vec<f32>) {
    let g = Graph::new();
    let (input, category, tags) = text_model(&g).unwrap();
    let mut f =
        function_with(&g, &[input], &[category, tags], &[], &Options { gemm: false, fma, ..Options::default() })
            .unwrap();
    f.set_params(params).unwrap();
    let out = f.call(&[Value::i64([ids.len() / LEN, LEN], ids.to_vec())]).unwrap();
    let floats = |v: &Value| match v.data() {
        Data::F32(values) => values.clone(),
        other => panic!("not f32: {other:?}"),
    };
    (floats(&out[0]), floats(&out[1]))
}

fn run_with_bytes(program: &Path, stdin: &[u8]) -> Output {
    use std::io::Write;
    let mut child = Command::new(program)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", program.display()));
    let mut stdin_pipe = child.stdin.take().unwrap();
    let input = stdin.to_vec();
    let writer = std::thread::spawn(move || stdin_pipe.write_all(&input));
    let output = child.wait_with_output().unwrap();
    writer.join().unwrap().unwrap();
    output
}

/// The lines the executable reads from `input`: split at `\n`, a last piece only if not empty,
/// one trailing `\r` dropped.
fn lines(input: &[u8]) -> Vec<&[u8]> {
    let mut pieces: Vec<&[u8]> = input.split(|&b| b == b'\n').collect();
    if pieces.last().is_some_and(|last| last.is_empty()) {
        pieces.pop();
    }
    pieces.into_iter().map(|line| line.strip_suffix(b"\r").unwrap_or(line)).collect()
}

/// What the executable must print for `category` and `tags` logits.
fn expected_lines(category: &[f32], tags: &[f32]) -> Vec<String> {
    category
        .chunks(3)
        .zip(tags.chunks(4))
        .map(|(c, t)| {
            let best = (0..3).fold(0, |best, j| if c[j] > c[best] { j } else { best });
            let on: Vec<&str> = (0..4).filter(|&j| t[j] > 0.0).map(|j| TAGS[j]).collect();
            format!("{}\t{}", CATEGORIES[best], on.join(","))
        })
        .collect()
}

#[test]
fn the_text_executable_matches_the_jit_on_titles_of_every_kind() {
    let g = Graph::new();
    text_model(&g).unwrap();
    let params = ParamStore::init(&g, 3);
    let artifact = export(&params);
    assert_eq!(artifact.plan().summary(), "i64 [B, 8] -> [B, 3], [B, 4]");
    let dir = temp_dir("titles");
    let program = artifact.link_text_executable(&dir, &classifier()).unwrap();

    let mut input: Vec<u8> = Vec::new();
    for title in [
        "hello world",
        "HELLO WORLD",
        "",
        "crlf line\r",
        "\r",
        "İstanbul",
        "\u{212A}elvin",
        "naïve café ünïcödé",
        "日本語のタイトル",
        "emoji 🎬🎬",
    ] {
        input.extend(title.as_bytes());
        input.push(b'\n');
    }
    for raw in [
        &b"\xff\xfe ab"[..],
        b"ab\xe2\x82",
        b"\xc0\xaf overlong",
        b"\xed\xa0\x80 surrogate",
        b"\xf4\x90\x80\x80 too big",
        b"a\x00b nul",
        b"\xe2\x82\xac euro",
        b"\xf0\x9f\x8e",
    ] {
        input.extend(raw);
        input.push(b'\n');
    }
    // Lines far longer than 8 characters: only the first 8 count, whatever follows.
    input.extend(b"abcdefgh");
    input.extend(std::iter::repeat_n(b'z', 200_000));
    input.push(b'\n');
    input.extend(b"abcdefgh");
    input.extend(std::iter::repeat_n(0xffu8, 100_000));
    input.push(b'\n');
    // Enough lines to fill more than one batch of 256, then a last line without `\n`.
    let mut state = 17u64;
    for _ in 0..300 {
        state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        let length = (state >> 60) as usize;
        input.extend((0..length).map(|i| b"ab cdXyz"[(state >> (i * 3 % 48)) as usize % 8]));
        input.push(b'\n');
    }
    input.extend(b"no newline");

    let table = classifier().characters;
    let lines = lines(&input);
    let ids: Vec<i64> = lines.iter().flat_map(|line| table.encode_line(line, LEN)).collect();
    assert_eq!(table.encode_line("İ".as_bytes(), 3), vec![9, 28, 0], "İ lowercases to i and a combining dot");
    assert_eq!(table.encode_line(b"ABCDEFGHIJ", LEN), (1..=8).collect::<Vec<i64>>());
    let (category, tags) = jit(&params, &ids, artifact.target().fma().unwrap());
    let expected = expected_lines(&category, &tags);

    let output = run_with_bytes(&program, &input);
    assert!(output.status.success(), "{}: {}", output.status, String::from_utf8_lossy(&output.stderr));
    let stdout = String::from_utf8(output.stdout).expect("the output is UTF-8");
    let printed: Vec<&str> = stdout.lines().collect();
    assert_eq!(printed.len(), lines.len(), "one output line per title");
    for (i, (got, want)) in printed.iter().zip(&expected).enumerate() {
        assert_eq!(got, want, "title {i}: {:?}", String::from_utf8_lossy(lines[i]));
    }
    let distinct: std::collections::BTreeSet<&&str> = printed.iter().collect();
    assert!(distinct.len() > 1, "the test model should not print one line for every title: {distinct:?}");

    // No input, no output; --help and bad options.
    let empty = run_with_bytes(&program, b"");
    assert!(empty.status.success() && empty.stdout.is_empty());
    let help = Command::new(&program).arg("--help").output().unwrap();
    assert!(String::from_utf8_lossy(&help.stdout).contains("cut to its first 8"));
    assert_eq!(Command::new(&program).arg("--bogus").output().unwrap().status.code(), Some(2));
    let _ = std::fs::remove_dir_all(&dir);
}

const C_TEST: &str = r#"#include <stdio.h>
#include <stdlib.h>
#include "titles.h"
int main(void) {
    int64_t ids[2 * 8] = {1, 2, 3, 0, 0, 0, 0, 0, 8, 5, 12, 12, 15, 27, 28, 0};
    float category[2 * 3], tags[2 * 4];
    size_t bytes = titles_scratch_bytes(2);
    void *scratch = malloc(bytes);
    int ok = titles_infer(ids, 16, 2, category, 6, tags, 8, scratch, bytes);
    printf("ok=%d short_ids=%d short_category=%d short_tags=%d null_tags=%d short_scratch=%d\n", ok,
           titles_infer(ids, 15, 2, category, 6, tags, 8, scratch, bytes),
           titles_infer(ids, 16, 2, category, 5, tags, 8, scratch, bytes),
           titles_infer(ids, 16, 2, category, 6, tags, 7, scratch, bytes),
           titles_infer(ids, 16, 2, category, 6, NULL, 8, scratch, bytes),
           titles_infer(ids, 16, 2, category, 6, tags, 8, scratch, bytes - 1));
    ids[3] = 29; /* outside the table of 29 rows */
    printf("bad_id=%d counts=%d,%d sizes=%lld,%lld,%lld\n", titles_infer(ids, 16, 2, category, 6, tags, 8, scratch, bytes),
           titles_input_count(), titles_output_count(), (long long)titles_input_size(0),
           (long long)titles_output_size(0), (long long)titles_output_size(1));
    return 0;
}
"#;

#[test]
fn an_artifact_with_integer_ids_and_two_outputs_checks_every_length() {
    let g = Graph::new();
    text_model(&g).unwrap();
    let params = ParamStore::init(&g, 5);
    let artifact = export(&params);
    assert!(artifact.header().contains(
        "int titles_infer(const int64_t *input, size_t input_len, int64_t batch, float *output0, size_t \
         output0_len, float *output1, size_t output1_len, void *scratch, size_t scratch_len);"
    ));
    let dir = temp_dir("ports");
    artifact.write_static_library(&dir).unwrap();
    std::fs::write(dir.join("test.c"), C_TEST).unwrap();
    let cc = c_compiler();
    let built = Command::new(&cc)
        .current_dir(&dir)
        .args(["-O2", "-Wall", "-Werror", "-o", "test", "test.c", "-L.", "-ltitles"])
        .output()
        .unwrap_or_else(|e| panic!("cannot run `{cc}` ({e}): this test needs a C compiler"));
    assert!(built.status.success(), "{}", String::from_utf8_lossy(&built.stderr));
    let ran = Command::new(dir.join("test")).output().unwrap();
    let stdout = String::from_utf8_lossy(&ran.stdout);
    assert!(stdout.contains("ok=0 short_ids=4 short_category=5 short_tags=5 null_tags=1 short_scratch=6"), "{stdout}");
    assert!(stdout.contains("bad_id=11 counts=1,2 sizes=8,3,4"), "{stdout}");
    // The text executable refuses an artifact that is not ids in, logits out.
    let g = Graph::new();
    let x = g.input("x", [Dim::sym("B"), 2.into()]).unwrap();
    let float_model = Model::new(&g, x, x * 2.0).export(&ParamStore::new(), &ExportOptions::new("f")).unwrap();
    let error = float_model.link_text_executable(&dir, &classifier()).unwrap_err();
    assert!(error.to_string().contains("must hold i32 or i64 ids"), "{error}");
    let error = artifact.link_executable(&dir).unwrap_err();
    assert!(error.to_string().contains("link_text_executable"), "{error}");

    // The Rust bindings: one slice of ids in, a tuple of two Vecs out, the JIT's bits.
    artifact.write_rust_bindings(&dir).unwrap();
    let ids: Vec<i64> = (0..24).map(|i| (i * 7) % 29).collect();
    let main = format!(
        "mod titles;\nfn main() {{\n    let ids: Vec<i64> = vec!{ids:?};\n    \
         let (category, tags) = titles::infer(&ids, 3).unwrap();\n    \
         for v in category.iter().chain(&tags) {{ println!(\"{{}}\", v.to_bits()); }}\n    \
         assert_eq!(titles::infer(&ids, 2), Err(titles::Error::InputLength {{ input: 0, expected: 16, got: 24 }}));\n    \
         assert_eq!((titles::INPUT_SIZES, titles::OUTPUT_SIZES), ([8], [3, 4]));\n}}\n"
    );
    std::fs::write(dir.join("main.rs"), main).unwrap();
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let build = Command::new(&rustc).current_dir(&dir).args(["--edition", "2021", "-O", "-L", ".", "main.rs"]).output();
    let build = build.unwrap_or_else(|e| panic!("cannot run `{rustc}` ({e}): this test needs it"));
    assert!(build.status.success(), "rustc: {}", String::from_utf8_lossy(&build.stderr));
    let ran = Command::new(dir.join("main")).output().unwrap();
    assert!(ran.status.success(), "{}", String::from_utf8_lossy(&ran.stderr));
    let printed: Vec<u32> = String::from_utf8_lossy(&ran.stdout).lines().map(|l| l.parse().unwrap()).collect();
    let (category, tags) = jit(&params, &ids, artifact.target().fma().unwrap());
    let expected: Vec<u32> = category.iter().chain(&tags).map(|v| v.to_bits()).collect();
    assert_eq!(printed, expected);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Random bytes and mutated titles through the text executable: it always exits 0 with one
/// line per input line, each the JIT's prediction. `KILN_FUZZ_CASES` cases (100 by default).
#[test]
fn the_text_executable_survives_random_and_mutated_input() {
    let g = Graph::new();
    text_model(&g).unwrap();
    let params = ParamStore::init(&g, 9);
    let artifact = export(&params);
    let dir = temp_dir("fuzz");
    let program = artifact.link_text_executable(&dir, &classifier()).unwrap();
    let table = classifier().characters;
    let cases = std::env::var("KILN_FUZZ_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(100usize);
    let mut state = 41u64;
    let mut next = move || {
        state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        state >> 11
    };
    let seed = "Evening News\nİstanbul café\r\n\nPaw Patrol 🎬\n".as_bytes().to_vec();
    for case in 0..cases {
        let input: Vec<u8> = if case % 2 == 0 {
            (0..next() % 300).map(|_| next() as u8).collect()
        } else {
            let mut bytes = seed.clone();
            for _ in 0..1 + next() % 8 {
                let at = (next() as usize) % (bytes.len() + 1);
                if next() % 2 == 0 && at < bytes.len() {
                    bytes.remove(at);
                } else {
                    bytes.insert(at, next() as u8);
                }
            }
            bytes
        };
        let output = run_with_bytes(&program, &input);
        assert_eq!(
            output.status.code(),
            Some(0),
            "case {case}: {input:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let lines = lines(&input);
        let ids: Vec<i64> = lines.iter().flat_map(|line| table.encode_line(line, LEN)).collect();
        let expected = if ids.is_empty() {
            Vec::new()
        } else {
            let (category, tags) = jit(&params, &ids, artifact.target().fma().unwrap());
            expected_lines(&category, &tags)
        };
        let stdout = String::from_utf8(output.stdout).expect("UTF-8 output");
        assert_eq!(stdout.lines().collect::<Vec<_>>(), expected, "case {case}: {input:?}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
