//! Word vectors in memory: tokens, one row of `dim` floats each, looked up by token; nearest
//! neighbours by cosine similarity; writers for the word2vec formats.
//!
//! In: rows (from a reader in `read.rs`, or from a trained embedding table). Out: lookups,
//! neighbours, and files other tools read (gensim's `KeyedVectors.load_word2vec_format`).

use std::collections::HashMap;
use std::path::Path;

use kiln_compiler::{Error, Result};

/// A set of word vectors: `len()` tokens, each with a row of `dim()` finite `f32` values.
///
/// ```
/// use kiln_runtime::text::WordVectors;
/// let vectors = WordVectors::new(2, vec![("cat".into(), vec![1.0, 0.0]), ("dog".into(), vec![0.9, 0.1])])?;
/// assert_eq!(vectors.get("dog"), Some(&[0.9, 0.1][..]));
/// assert_eq!(vectors.to_word2vec_text()?, "2 2\ncat 1 0\ndog 0.9 0.1\n");
/// # Ok::<(), kiln_compiler::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct WordVectors {
    dim: usize,
    tokens: Vec<String>,
    values: Vec<f32>,
    rows: HashMap<String, usize>,
}

impl WordVectors {
    /// Vectors from `(token, row)` pairs. Every row must have `dim` finite values, and tokens
    /// must be distinct; otherwise the error names the first offending token.
    pub fn new(dim: usize, rows: Vec<(String, Vec<f32>)>) -> Result<WordVectors> {
        let mut vectors = WordVectors::empty(dim);
        for (token, row) in rows {
            let problem = if row.len() != dim {
                Some(format!("token `{token}` has {} values, expected {dim}", row.len()))
            } else if row.iter().any(|v| !v.is_finite()) {
                Some(format!("token `{token}` has a value that is not finite"))
            } else {
                None
            };
            if let Some(detail) = problem {
                return Err(Error::Vectors { file: "(rows given)".into(), detail });
            }
            vectors.push(token, &row).map_err(|detail| Error::Vectors { file: "(rows given)".into(), detail })?;
        }
        Ok(vectors)
    }

    pub(super) fn empty(dim: usize) -> WordVectors {
        WordVectors { dim, tokens: Vec::new(), values: Vec::new(), rows: HashMap::new() }
    }

    /// Appends a row; a repeated token is refused (the message is the caller's to place).
    pub(super) fn push(&mut self, token: String, row: &[f32]) -> std::result::Result<(), String> {
        if let Some(&earlier) = self.rows.get(&token) {
            return Err(format!("token `{token}` is repeated (first as vector {})", earlier + 1));
        }
        self.rows.insert(token.clone(), self.tokens.len());
        self.tokens.push(token);
        self.values.extend_from_slice(row);
        Ok(())
    }

    /// Values per vector.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// Number of vectors.
    pub fn len(&self) -> usize {
        self.tokens.len()
    }

    /// Whether there is no vector.
    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }

    /// The tokens, in the file's order.
    pub fn tokens(&self) -> &[String] {
        &self.tokens
    }

    /// The vector of `token`.
    pub fn get(&self, token: &str) -> Option<&[f32]> {
        self.rows.get(token).map(|&row| self.row(row))
    }

    /// The `index`-th vector (in the file's order).
    pub fn row(&self, index: usize) -> &[f32] {
        &self.values[index * self.dim..(index + 1) * self.dim]
    }

    /// The `k` tokens most similar to `token` by cosine similarity, most similar first (ties by
    /// file order), without `token` itself; `None` if `token` has no vector.
    pub fn nearest(&self, token: &str, k: usize) -> Option<Vec<(String, f32)>> {
        let &query = self.rows.get(token)?;
        let norms: Vec<f32> = (0..self.len()).map(|i| self.row(i).iter().map(|v| v * v).sum::<f32>().sqrt()).collect();
        let target = self.row(query);
        let mut scored: Vec<(usize, f32)> = (0..self.len())
            .filter(|&i| i != query)
            .map(|i| {
                let dot: f32 = self.row(i).iter().zip(target).map(|(a, b)| a * b).sum();
                (i, dot / (norms[i] * norms[query]).max(f32::MIN_POSITIVE))
            })
            .collect();
        scored.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        Some(scored.into_iter().take(k).map(|(i, similarity)| (self.tokens[i].clone(), similarity)).collect())
    }

    fn check_writable(&self) -> Result<()> {
        match self.tokens.iter().find(|t| t.is_empty() || t.chars().any(char::is_whitespace)) {
            Some(token) => Err(Error::Vectors {
                file: "(writing)".into(),
                detail: format!(
                    "token {token:?} is empty or holds whitespace, which the word2vec formats cannot store"
                ),
            }),
            None => Ok(()),
        }
    }

    /// The word2vec text format: a header `count dim`, then one line per vector, the token and
    /// its values separated by single spaces. Each value is written in the shortest form that
    /// reads back to the same `f32`, so a round trip is exact.
    pub fn to_word2vec_text(&self) -> Result<String> {
        self.check_writable()?;
        let mut text = format!("{} {}\n", self.len(), self.dim);
        for (i, token) in self.tokens.iter().enumerate() {
            text.push_str(token);
            for value in self.row(i) {
                text.push(' ');
                text.push_str(&value.to_string());
            }
            text.push('\n');
        }
        Ok(text)
    }

    /// The word2vec binary format: the text header, then per vector the token, a space, `dim`
    /// little-endian `f32`s and a newline (as word2vec's C tool and gensim write it).
    pub fn to_word2vec_binary(&self) -> Result<Vec<u8>> {
        self.check_writable()?;
        let mut bytes = format!("{} {}\n", self.len(), self.dim).into_bytes();
        for (i, token) in self.tokens.iter().enumerate() {
            bytes.extend_from_slice(token.as_bytes());
            bytes.push(b' ');
            for value in self.row(i) {
                bytes.extend_from_slice(&value.to_le_bytes());
            }
            bytes.push(b'\n');
        }
        Ok(bytes)
    }

    /// Writes [`WordVectors::to_word2vec_text`] to `path`.
    pub fn write_word2vec_text(&self, path: &Path) -> Result<()> {
        write_file(path, self.to_word2vec_text()?.as_bytes())
    }

    /// Writes [`WordVectors::to_word2vec_binary`] to `path`.
    pub fn write_word2vec_binary(&self, path: &Path) -> Result<()> {
        write_file(path, &self.to_word2vec_binary()?)
    }
}

fn write_file(path: &Path, bytes: &[u8]) -> Result<()> {
    std::fs::write(path, bytes)
        .map_err(|e| Error::Vectors { file: path.display().to_string(), detail: format!("cannot write: {e}") })
}
