//! Text: vocabularies and word vectors.
//!
//! In: token lists and word-vector files. Out: vocabularies, vectors and embedding params loaded
//! from them.
//!
//! A [`Vocab`] maps tokens to the ids an embedding table is indexed by. [`WordVectors`] are
//! read from GloVe, word2vec (text and binary) and fastText `.vec` files ([`Format`]), written
//! in the word2vec formats, searched for nearest neighbours, and loaded into an embedding
//! param with [`load_embedding`], which reports the tokens it found and those it did not.

mod embedding;
mod read;
mod vectors;
mod vocab;

pub use embedding::{Coverage, load_embedding, vectors_of_table};
pub use read::Format;
pub use vectors::WordVectors;
pub use vocab::{Specials, Vocab};
