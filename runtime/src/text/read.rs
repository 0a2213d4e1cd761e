//! Readers for the common word-vector files: GloVe text, word2vec text and binary, fastText
//! `.vec`.
//!
//! In: a file's bytes and its [`Format`]. Out: [`WordVectors`], or an [`Error::Vectors`]
//! naming the line (text formats) or the byte offset (binary) of the first problem. Parsing
//! completes before anything is returned, so a malformed file never yields part of its vectors.

use std::path::Path;

use kiln_compiler::{Error, Result};

use super::WordVectors;

/// The layout of a word-vector file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// GloVe's text: no header, one line per vector (`token v1 v2 ...`); the first line sets
    /// the dimension.
    Glove,
    /// word2vec's text: a header line `count dim`, then `count` lines `token v1 ... vdim`.
    Word2VecText,
    /// word2vec's binary: the header line `count dim`, then per vector the token, a space and
    /// `dim` little-endian `f32`s, optionally followed by a newline.
    Word2VecBinary,
    /// fastText's `.vec`: the word2vec text layout (its `.bin` models are not word vectors).
    FastText,
}

impl WordVectors {
    /// Reads the vectors in `path`, laid out as `format`.
    pub fn read(path: &Path, format: Format) -> Result<WordVectors> {
        let file = path.display().to_string();
        let bytes = std::fs::read(path).map_err(|e| Error::Vectors { file: file.clone(), detail: e.to_string() })?;
        Self::parse(&bytes, format, &file)
    }

    /// Parses vectors from `bytes` laid out as `format`; `file` names them in errors.
    ///
    /// Values must be finite and every row must have the dimension (of the header, or of the
    /// first GloVe row); a token may appear once. Text lines may end in `\r\n` and carry
    /// trailing blanks; values are separated by blanks.
    pub fn parse(bytes: &[u8], format: Format, file: &str) -> Result<WordVectors> {
        let fail = |detail: String| Error::Vectors { file: file.to_string(), detail };
        match format {
            Format::Glove => parse_text(bytes, false).map_err(fail),
            Format::Word2VecText | Format::FastText => parse_text(bytes, true).map_err(fail),
            Format::Word2VecBinary => parse_binary(bytes).map_err(fail),
        }
    }
}

type Parsed = std::result::Result<WordVectors, String>;

/// At most 40 characters of `text`, for quoting a bad line in a message.
fn quote(text: &str) -> String {
    let mut short: String = text.chars().take(40).collect();
    if short.len() < text.len() {
        short.push_str("...");
    }
    format!("{short:?}")
}

/// `count dim` with `dim` at least 1.
fn parse_header(line: &str) -> Option<(usize, usize)> {
    let mut fields = line.split_whitespace();
    let count = fields.next()?.parse().ok()?;
    let dim = fields.next()?.parse().ok()?;
    (fields.next().is_none() && dim > 0).then_some((count, dim))
}

fn parse_text(bytes: &[u8], has_header: bool) -> Parsed {
    let mut lines = bytes.split(|&b| b == b'\n').enumerate().map(|(i, line)| (i + 1, line)).peekable();
    let mut expected: Option<(usize, usize)> = None;
    let mut vectors: Option<WordVectors> = None;
    let mut row = Vec::new();
    while let Some((number, raw)) = lines.next() {
        // The piece after the final newline is empty; any other empty line is an error.
        if raw.is_empty() && lines.peek().is_none() {
            break;
        }
        let line = std::str::from_utf8(raw)
            .map_err(|e| format!("line {number}: not UTF-8 (byte {} of the line)", e.valid_up_to() + 1))?;
        let line = line.trim_end();
        if has_header && number == 1 {
            let header = parse_header(line).ok_or_else(|| {
                format!("line 1: expected a header `count dim` (dim at least 1), got {}", quote(line))
            })?;
            expected = Some(header);
            vectors = Some(WordVectors::empty(header.1));
            continue;
        }
        let mut fields = line.split_whitespace();
        let Some(token) = fields.next() else { return Err(format!("line {number}: empty line")) };
        row.clear();
        for (position, field) in fields.enumerate() {
            let value: f32 = field.parse().map_err(|_| {
                format!(
                    "line {number}: value {} of token {} is not a number: {}",
                    position + 1,
                    quote(token),
                    quote(field)
                )
            })?;
            if !value.is_finite() {
                return Err(format!("line {number}: value {} of token {} is not finite", position + 1, quote(token)));
            }
            row.push(value);
        }
        let vectors = vectors.get_or_insert_with(|| WordVectors::empty(row.len()));
        if row.is_empty() || row.len() != vectors.dim() {
            let dim =
                if row.is_empty() && vectors.dim() == 0 { "at least 1".to_string() } else { vectors.dim().to_string() };
            return Err(format!("line {number}: token {} has {} values, expected {dim}", quote(token), row.len()));
        }
        if let Some((count, _)) = expected
            && vectors.len() == count
        {
            return Err(format!("line {number}: more vectors than the header's count of {count}"));
        }
        vectors.push(token.to_string(), &row).map_err(|detail| format!("line {number}: {detail}"))?;
    }
    let vectors = vectors.ok_or_else(|| "the file is empty".to_string())?;
    if let Some((count, _)) = expected
        && vectors.len() != count
    {
        return Err(format!("the header promises {count} vectors, but the file ends after {}", vectors.len()));
    }
    Ok(vectors)
}

fn parse_binary(bytes: &[u8]) -> Parsed {
    let header_end = bytes.iter().position(|&b| b == b'\n').unwrap_or(bytes.len());
    let header = std::str::from_utf8(&bytes[..header_end]).ok().and_then(parse_header);
    let Some((count, dim)) = header else {
        let shown = String::from_utf8_lossy(&bytes[..header_end.min(40)]).into_owned();
        return Err(format!(
            "byte offset 0: expected a header line `count dim` (dim at least 1), got {}",
            quote(&shown)
        ));
    };
    let row_bytes = dim.checked_mul(4).ok_or_else(|| format!("byte offset 0: dim {dim} is too large"))?;
    let mut vectors = WordVectors::empty(dim);
    let mut row = Vec::with_capacity(dim.min(bytes.len() / 4));
    let mut at = header_end + 1;
    for index in 1..=count {
        // Vectors may be separated by newlines (word2vec's C tool writes one after each).
        while at < bytes.len() && bytes[at] == b'\n' {
            at += 1;
        }
        let start = at;
        let Some(length) = bytes.get(start..).and_then(|rest| rest.iter().position(|&b| b == b' ')) else {
            return Err(format!(
                "byte offset {start}: the file ends before vector {index}'s token (the header promises {count})"
            ));
        };
        let token = std::str::from_utf8(&bytes[start..start + length])
            .map_err(|_| format!("byte offset {start}: vector {index}'s token is not UTF-8"))?;
        if token.is_empty() || token.contains('\n') {
            return Err(format!(
                "byte offset {start}: vector {index}'s token {} is empty or spans lines",
                quote(token)
            ));
        }
        at = start + length + 1;
        let Some(data) = bytes.get(at..).and_then(|rest| rest.get(..row_bytes)) else {
            let left = bytes.len().saturating_sub(at);
            return Err(format!(
                "byte offset {at}: the file ends inside vector {index} ({}): {row_bytes} bytes needed, {left} left",
                quote(token)
            ));
        };
        row.clear();
        for (position, chunk) in data.chunks_exact(4).enumerate() {
            let value = f32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
            if !value.is_finite() {
                let offset = at + 4 * position;
                return Err(format!(
                    "byte offset {offset}: value {} of token {} is not finite",
                    position + 1,
                    quote(token)
                ));
            }
            row.push(value);
        }
        vectors.push(token.to_string(), &row).map_err(|detail| format!("byte offset {start}: {detail}"))?;
        at += row_bytes;
    }
    if let Some(extra) = bytes.get(at..).and_then(|rest| rest.iter().position(|b| !b.is_ascii_whitespace())) {
        return Err(format!("byte offset {}: data after the header's {count} vectors", at + extra));
    }
    Ok(vectors)
}
