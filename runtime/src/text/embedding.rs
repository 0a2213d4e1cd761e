//! Pre-trained vectors into an embedding table: the rows of a vocabulary's tokens are taken
//! from word vectors, the rest keep their values.
//!
//! In: a [`ParamStore`] holding the embedding param (`[vocab.len(), dim]`), a [`Vocab`] and
//! [`WordVectors`]. Out: the store with the param replaced, and a [`Coverage`] report. Whether
//! the table then trains (fine-tuning) or not (frozen) is the graph's trainable flag
//! (`graph.set_trainable(name, false)`), as for any param.

use kiln_compiler::{DType, Error, ParamStore, Result, Value};

use super::{Vocab, WordVectors};

/// Which of a vocabulary's tokens had a vector.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Coverage {
    /// Tokens whose row was loaded.
    pub found: usize,
    /// Tokens (not the specials) without a vector, by id; their rows kept their values.
    pub missing: Vec<String>,
}

impl std::fmt::Display for Coverage {
    /// `found 980 of 1000 tokens; missing: a, b, c, ... (20)`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "found {} of {} tokens", self.found, self.found + self.missing.len())?;
        if !self.missing.is_empty() {
            let shown: Vec<&str> = self.missing.iter().take(10).map(String::as_str).collect();
            let more = if self.missing.len() > 10 { ", ..." } else { "" };
            write!(f, "; missing: {}{more} ({})", shown.join(", "), self.missing.len())?;
        }
        Ok(())
    }
}

/// Sets the rows of param `param` in `store` (an `f32` table `[vocab.len(), dim]`, as an
/// `Embedding(vocab.len() => dim)` declares it) from `vectors`: each token of `vocab` with a
/// vector gets it; the padding row, if any, becomes zeros (it then adds nothing to a sum or
/// mean over a padded sequence); every other row keeps its value (its initializer's draw).
///
/// A store without the param, a table whose shape does not fit the vocabulary, or vectors of
/// another dimension are errors that say so, and leave the store as it was.
///
/// ```
/// use kiln_runtime::text::{Specials, Vocab, WordVectors, Format, load_embedding};
/// use kiln_compiler::prelude::*;
/// let g = Graph::new();
/// let vocab = Vocab::from_tokens(["cat", "dog", "emu"], Specials::BOTH)?;
/// let words = layers::Embedding::new(&g, "words", vocab.len(), 2)?;
/// let vectors = WordVectors::parse(b"cat 1 2\ndog 3 4\n", Format::Glove, "inline")?;
/// let mut params = ParamStore::init(&g, 0);
/// let coverage = load_embedding(&mut params, "words.weight", &vocab, &vectors)?;
/// assert_eq!(coverage.to_string(), "found 2 of 3 tokens; missing: emu (1)");
/// assert_eq!(params.get("words.weight").unwrap().to_f32_vec()[4..8], [1.0, 2.0, 3.0, 4.0]);
/// # Ok::<(), kiln_compiler::Error>(())
/// ```
pub fn load_embedding(store: &mut ParamStore, param: &str, vocab: &Vocab, vectors: &WordVectors) -> Result<Coverage> {
    let current = store.get(param).ok_or_else(|| Error::MissingParam { name: param.to_string() })?;
    let expected = [vocab.len(), vectors.dim()];
    let bad = |detail: String| Error::BadFeed {
        what: "param",
        name: param.to_string(),
        expected: format!(
            "an f32 table of shape {expected:?} (vocabulary of {}, vectors of dim {})",
            vocab.len(),
            vectors.dim()
        ),
        got: detail,
        location: None,
    };
    if current.dtype() != DType::F32 {
        return Err(bad(format!("dtype {}", current.dtype())));
    }
    match current.shape() {
        [rows, dim] if *rows == vocab.len() && *dim != vectors.dim() => {
            return Err(Error::Vectors {
                file: "(loading)".into(),
                detail: format!(
                    "dimension mismatch: the vectors have dim {}, but param `{param}` is {:?} (dim {dim})",
                    vectors.dim(),
                    current.shape()
                ),
            });
        }
        [rows, dim] if *rows == vocab.len() && *dim == vectors.dim() => {}
        shape => return Err(bad(format!("shape {shape:?}"))),
    }
    let mut table = current.to_f32_vec();
    let dim = vectors.dim();
    let mut coverage = Coverage { found: 0, missing: Vec::new() };
    for (id, token) in vocab.tokens().iter().enumerate() {
        let row = &mut table[id * dim..(id + 1) * dim];
        if Some(id) == vocab.padding() {
            row.fill(0.0);
        } else if vocab.is_special(id) {
            // The unknown row keeps its draw: it is trained (or frozen) like any other.
        } else if let Some(vector) = vectors.get(token) {
            row.copy_from_slice(vector);
            coverage.found += 1;
        } else {
            coverage.missing.push(token.clone());
        }
    }
    store.set(param, Value::f32(expected, table));
    Ok(coverage)
}

/// The rows of a trained embedding table (`[vocab.len(), dim]`, any float dtype) as word
/// vectors, one per token of `vocab` that is not a special, in id order.
pub fn vectors_of_table(vocab: &Vocab, table: &Value) -> Result<WordVectors> {
    let [rows, dim] = table.shape() else {
        let detail = format!("an embedding table must be [rows, dim], got shape {:?}", table.shape());
        return Err(Error::Vectors { file: "(table)".into(), detail });
    };
    if *rows != vocab.len() {
        let detail = format!("the table has {rows} rows, the vocabulary {} tokens", vocab.len());
        return Err(Error::Vectors { file: "(table)".into(), detail });
    }
    let values = table.to_f32_vec();
    let rows = vocab
        .tokens()
        .iter()
        .enumerate()
        .filter(|(id, _)| !vocab.is_special(*id))
        .map(|(id, token)| (token.clone(), values[id * dim..(id + 1) * dim].to_vec()))
        .collect();
    WordVectors::new(*dim, rows)
}
