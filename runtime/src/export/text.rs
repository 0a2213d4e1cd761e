//! Export, runtime side (packaging; the plan and the printers are `kiln_compiler::export`).
//!
//! The text executable: a generated C `main` that reads UTF-8 lines, turns each into the
//! token ids a text model was trained on, and prints the model's category and tags per line.
//!
//! In: an artifact whose one input is integer ids `[B, L]` (i32 or i64) and whose outputs are
//! category logits `[B, C]` and, optionally, tag logits `[B, T]` (f32), and a
//! [`TextClassifier`]: the character table (each character's ids, computed from the training
//! encoder, baked into the executable), the padding and unknown ids, and the names of the
//! categories and tags. Out: the C source of `main`, linked with the object like the numeric
//! executable.
//!
//! Behaviour of `<name> [FILE]` (stdin without FILE), defined for every input:
//! - one output line per input line: the category name (the largest logit, the first on a
//!   tie), a tab, then the tags whose logit is above 0 (probability above 1/2) joined by
//!   commas (nothing after the tab when none is);
//! - a line ends at `\n`; a `\r` right before it is part of the line end; a last line without
//!   `\n` counts if it is not empty; an empty line is an empty title (all padding) and still
//!   gets its output line, so outputs stay aligned with inputs;
//! - bytes are decoded as UTF-8; each invalid or truncated sequence is one U+FFFD, as Rust's
//!   `String::from_utf8_lossy` does; every character is looked up in the table, and one that
//!   is not there gets the unknown id (the training encoder's policy, recorded in the table);
//! - the ids stop at `L`: a longer line is truncated as in training (the rest of it is read
//!   and ignored, so a line of any length needs no more memory); shorter rows are padded;
//! - lines are run in batches of 256; exit 0, 1 on an I/O or model error, 2 on a usage error.

use std::fmt::Write;

use kiln_compiler::{DType, Error, Result};

use super::Artifact;

/// Ids per character, as the training encoder maps them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CharacterTable {
    /// Characters whose ids are not `[unknown]`, sorted by code point, with their ids.
    entries: Vec<(char, Vec<i64>)>,
    /// The id of a character outside the vocabulary.
    pub unknown: i64,
    /// The id that fills a row after the title's last character.
    pub padding: i64,
}

impl CharacterTable {
    /// Records `encode` (a character's ids: usually one, none to drop it, several when
    /// lowercasing expands it) for every Unicode scalar value; the characters it maps to
    /// `[unknown]` are left out of the table and get `unknown` at run time.
    pub fn from_encoder(padding: i64, unknown: i64, encode: impl Fn(char) -> Vec<i64>) -> CharacterTable {
        let entries = (0..=char::MAX as u32)
            .filter_map(char::from_u32)
            .filter_map(|c| {
                let ids = encode(c);
                (ids != [unknown]).then_some((c, ids))
            })
            .collect();
        CharacterTable { entries, unknown, padding }
    }

    /// The ids of `c`.
    pub fn ids(&self, c: char) -> Vec<i64> {
        match self.entries.binary_search_by_key(&c, |(k, _)| *k) {
            Ok(at) => self.entries[at].1.clone(),
            Err(_) => vec![self.unknown],
        }
    }

    /// The row of `length` ids the executable feeds for `line` (decoded as the executable
    /// decodes it: invalid UTF-8 as U+FFFD): each character's ids, cut at `length`, padded.
    pub fn encode_line(&self, line: &[u8], length: usize) -> Vec<i64> {
        let mut row: Vec<i64> = String::from_utf8_lossy(line).chars().flat_map(|c| self.ids(c)).take(length).collect();
        row.resize(length, self.padding);
        row
    }
}

/// What the text executable needs besides the artifact.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TextClassifier {
    /// The characters' ids.
    pub characters: CharacterTable,
    /// The names of the first output's columns; the largest logit's name is printed.
    pub categories: Vec<String>,
    /// The names of the second output's columns (empty if the artifact has one output); each
    /// tag whose logit is above 0 is printed.
    pub tags: Vec<String>,
}

fn refuse<T>(detail: String) -> Result<T> {
    Err(Error::Export { detail: format!("the text executable: {detail}") })
}

/// A C string literal of `text`, every byte outside printable ASCII escaped.
fn c_string(text: &str) -> String {
    let mut literal = String::from("\"");
    for byte in text.bytes() {
        match byte {
            b'"' | b'\\' => {
                literal.push('\\');
                literal.push(byte as char);
            }
            0x20..=0x7e => literal.push(byte as char),
            _ => {
                let _ = write!(literal, "\\{byte:03o}");
            }
        }
    }
    literal.push('"');
    literal
}

/// Checks that `artifact` fits `classifier`; returns the ids per row (`L`) and the input's C type.
fn check(artifact: &Artifact, classifier: &TextClassifier) -> Result<(i64, &'static str)> {
    let plan = artifact.plan();
    let [input] = plan.inputs.as_slice() else {
        return refuse(format!("the artifact must have one input (the ids), it has {}", plan.inputs.len()));
    };
    let input_type = match input.dtype {
        DType::I64 => "int64_t",
        DType::I32 => "int32_t",
        other => return refuse(format!("the input `{}` must hold i32 or i64 ids, it is {other}", input.name)),
    };
    if !input.batched {
        return refuse(format!("the input `{}` must be [batch, length], it is {}", input.name, input.shape));
    }
    let wanted = if classifier.tags.is_empty() { 1 } else { 2 };
    if plan.outputs.len() != wanted {
        return refuse(format!(
            "{} category and {} tag names need {wanted} output(s), the artifact has {}",
            classifier.categories.len(),
            classifier.tags.len(),
            plan.outputs.len()
        ));
    }
    for (output, names) in plan.outputs.iter().zip([&classifier.categories, &classifier.tags]) {
        if output.dtype != DType::F32 || !output.batched || output.row != names.len() as i64 || names.is_empty() {
            return refuse(format!(
                "`{}` ({} {}) must be f32 [batch, {}] to name its columns",
                output.name,
                output.dtype,
                output.shape,
                names.len()
            ));
        }
    }
    let id_range =
        if input.dtype == DType::I32 { i64::from(i32::MIN)..=i64::from(i32::MAX) } else { i64::MIN..=i64::MAX };
    let table = &classifier.characters;
    let all_ids = table.entries.iter().flat_map(|(_, ids)| ids).chain([&table.unknown, &table.padding]);
    if let Some(id) = all_ids.into_iter().find(|id| !id_range.contains(id)) {
        return refuse(format!("the id {id} does not fit the input's {input_type}"));
    }
    Ok((input.row, input_type))
}

/// The C source of the text executable's `main` for `artifact`.
pub(super) fn main_source(artifact: &Artifact, classifier: &TextClassifier) -> Result<String> {
    let (length, input_type) = check(artifact, classifier)?;
    let name = artifact.name();
    let table = &classifier.characters;
    let mut tables = String::new();
    let count = table.entries.len();
    let _ = write!(tables, "static const uint32_t codes[{}] = {{", count.max(1));
    for (i, (c, _)) in table.entries.iter().enumerate() {
        tables.push_str(if i % 12 == 0 { "\n    " } else { " " });
        let _ = write!(tables, "{},", *c as u32);
    }
    tables.push_str(if count == 0 { "0};\n" } else { "\n};\n" });
    let _ = write!(tables, "static const uint32_t starts[{}] = {{", count + 1);
    let mut start = 0;
    for (i, (_, ids)) in table.entries.iter().enumerate() {
        tables.push_str(if i % 12 == 0 { "\n    " } else { " " });
        let _ = write!(tables, "{start},");
        start += ids.len();
    }
    let _ = writeln!(tables, " {start}\n}};");
    let _ = write!(tables, "static const {input_type} ids[{}] = {{", start.max(1));
    for (i, id) in table.entries.iter().flat_map(|(_, ids)| ids).enumerate() {
        tables.push_str(if i % 16 == 0 { "\n    " } else { " " });
        let _ = write!(tables, "{id},");
    }
    tables.push_str(if start == 0 { "0};\n" } else { "\n};\n" });
    let names = |list: &[String]| list.iter().map(|n| c_string(n)).collect::<Vec<_>>().join(", ");
    let _ = writeln!(tables, "static const char *const categories[] = {{{}}};", names(&classifier.categories));
    let _ = writeln!(
        tables,
        "static const char *const tags[] = {{{}}};",
        if classifier.tags.is_empty() { "0".to_string() } else { names(&classifier.tags) }
    );
    let infer_outputs = if classifier.tags.is_empty() {
        "category, (size_t)rows * CATEGORIES"
    } else {
        "category, (size_t)rows * CATEGORIES, tag, (size_t)rows * TAGS"
    };
    Ok(TEXT_MAIN
        .replace("@INPUT_HELPERS@", super::executable::INPUT_HELPERS)
        .replace("@TABLES@", &tables)
        .replace("@COUNT@", &count.to_string())
        .replace("@LENGTH@", &length.to_string())
        .replace("@ID@", input_type)
        .replace("@UNKNOWN@", &table.unknown.to_string())
        .replace("@PADDING@", &table.padding.to_string())
        .replace("@CATEGORIES@", &classifier.categories.len().to_string())
        .replace("@TAGS@", &classifier.tags.len().to_string())
        .replace("@OUTPUTS@", infer_outputs)
        .replace("@UPPER@", &name.to_ascii_uppercase())
        .replace("@NAME@", name))
}

const TEXT_MAIN: &str = r#"/* @NAME@_main.c: the text front end of the model `@NAME@`, generated by kiln. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "@NAME@.h"

@INPUT_HELPERS@
enum { LENGTH = @LENGTH@, CATEGORIES = @CATEGORIES@, TAGS = @TAGS@, COUNT = @COUNT@, BATCH = 256 };
typedef @ID@ id_t_;
static const id_t_ unknown = @UNKNOWN@, padding = @PADDING@;

/* Each character whose ids are not [unknown]: its code point (sorted), where its ids start. */
@TABLES@
static void usage(FILE *to, const char *program) {
    fprintf(to,
            "usage: %s [FILE]\n"
            "Reads UTF-8 text, one title per line, from FILE or stdin, and prints one line per\n"
            "title: the category, a tab, then the predicted tags separated by commas.\n"
            "A title longer than %d characters is cut to its first %d, as in training.\n"
            "Model: %s\n",
            program, LENGTH, LENGTH, @NAME@_version());
}

/* The row being filled: its ids so far. */
static id_t_ *row;
static int filled;

static void push(id_t_ id) {
    if (filled < LENGTH) row[filled++] = id;
}

/* Appends the ids of code point `c` (binary search in the table, else the unknown id). */
static void character(uint32_t c) {
    int low = 0, high = COUNT;
    while (low < high) {
        int middle = low + (high - low) / 2;
        if (codes[middle] < c) low = middle + 1; else high = middle;
    }
    if (low < COUNT && codes[low] == c) {
        for (uint32_t i = starts[low]; i < starts[low + 1]; i++) push(ids[i]);
    } else {
        push(unknown);
    }
}

/* A UTF-8 decoder fed one byte at a time; an invalid or truncated sequence is one U+FFFD
 * (the longest valid prefix is replaced, and the offending byte starts anew). */
static int need = 0;
static uint32_t code = 0;
static unsigned char lowest = 0x80, highest = 0xbf;

static void byte(unsigned char b) {
    if (need > 0) {
        if (b >= lowest && b <= highest) {
            code = (code << 6) | (b & 0x3f);
            lowest = 0x80, highest = 0xbf;
            if (--need == 0) character(code);
            return;
        }
        need = 0;
        character(0xfffd);
    }
    lowest = 0x80, highest = 0xbf;
    if (b < 0x80) { character(b); return; }
    if (b >= 0xc2 && b <= 0xdf) { need = 1; code = b & 0x1f; return; }
    if (b >= 0xe0 && b <= 0xef) {
        need = 2; code = b & 0x0f;
        if (b == 0xe0) lowest = 0xa0;
        if (b == 0xed) highest = 0x9f;
        return;
    }
    if (b >= 0xf0 && b <= 0xf4) {
        need = 3; code = b & 0x07;
        if (b == 0xf0) lowest = 0x90;
        if (b == 0xf4) highest = 0x8f;
        return;
    }
    character(0xfffd);
}

/* Ends the line: a pending sequence is one U+FFFD; the rest of the row is padding. */
static void end_line(void) {
    if (need > 0) { need = 0; character(0xfffd); }
    lowest = 0x80, highest = 0xbf;
    while (filled < LENGTH) row[filled++] = padding;
}

static id_t_ *input;
static float *category, *tag;
static void *scratch;
static size_t scratch_len;

/* Runs the model on the first `rows` rows of `input` and prints a line per row. */
static int run(const char *program, int rows) {
    int status = @NAME@_infer(input, (size_t)rows * LENGTH, rows, @OUTPUTS@, scratch, scratch_len);
    if (status != 0) {
        fprintf(stderr, "%s: @NAME@_infer failed with code %d\n", program, status);
        return 1;
    }
    for (int r = 0; r < rows; r++) {
        const float *c = category + (size_t)r * CATEGORIES;
        int best = 0;
        for (int j = 1; j < CATEGORIES; j++) if (c[j] > c[best]) best = j;
        fputs(categories[best], stdout);
        putchar('\t');
        int first = 1;
        for (int j = 0; j < TAGS; j++) {
            if (tag[(size_t)r * TAGS + j] > 0) {
                if (!first) putchar(',');
                fputs(tags[j], stdout);
                first = 0;
            }
        }
        putchar('\n');
    }
    return 0;
}

int main(int argc, char **argv) {
    const char *path = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            usage(stdout, argv[0]);
            return 0;
        } else if (argv[i][0] == '-' && argv[i][1] != '\0') {
            fprintf(stderr, "%s: unknown option (see --help)\n", argv[0]);
            return 2;
        } else if (!take_path(argv[0], &path, argv[i])) {
            return 2;
        }
    }
    FILE *in = open_input(argv[0], path);
    if (!in) return 1;
    scratch_len = @NAME@_scratch_bytes(BATCH);
    input = malloc(sizeof(id_t_) * BATCH * LENGTH);
    category = malloc(sizeof(float) * BATCH * CATEGORIES);
    tag = malloc(sizeof(float) * BATCH * (TAGS ? TAGS : 1));
    scratch = malloc(scratch_len ? scratch_len : 1);
    int code = 0;
    if (!input || !category || !tag || !scratch) { fprintf(stderr, "%s: out of memory\n", argv[0]); code = 1; goto done; }
    int rows = 0, started = 0, carriage = 0, c;
    row = input;
    filled = 0;
    while ((c = getc(in)) != EOF) {
        started = 1;
        if (carriage) {
            carriage = 0;
            if (c != '\n') byte('\r');
        }
        if (c == '\r') { carriage = 1; continue; }
        if (c != '\n') { byte((unsigned char)c); continue; }
        end_line();
        started = 0;
        if (++rows == BATCH) {
            if (run(argv[0], rows)) { code = 1; goto done; }
            rows = 0;
        }
        row = input + (size_t)rows * LENGTH;
        filled = 0;
    }
    if (ferror(in)) { fprintf(stderr, "%s: cannot read the input\n", argv[0]); code = 1; goto done; }
    if (started) {
        end_line();
        rows++;
    }
    if (rows > 0 && run(argv[0], rows)) code = 1;
    else if (fflush(stdout) != 0 || ferror(stdout)) { perror("stdout"); code = 1; }
done:
    if (in != stdin) fclose(in);
    free(input); free(category); free(tag); free(scratch);
    return code;
}
"#;
