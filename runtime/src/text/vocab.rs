//! A vocabulary: tokens and their ids, with a stated policy for padding and unknown tokens.
//!
//! In: a corpus (lines of whitespace-separated tokens) with a minimum count, or a list of
//! tokens. Out: a [`Vocab`] that maps tokens to ids (`i64` rows of an embedding table) and back.

use std::collections::HashMap;

use kiln_compiler::{Error, Location, Result};

/// Which special tokens a vocabulary reserves, ahead of the words.
///
/// Padding, when present, has id 0 and the token [`Vocab::PADDING`]; unknown, when present,
/// has the next id and the token [`Vocab::UNKNOWN`]. A vocabulary for skip-gram training wants
/// neither (every row is a word); one for a model over padded sequences wants both.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Specials {
    /// Reserve id 0 for padding.
    pub padding: bool,
    /// Reserve an id for tokens not in the vocabulary.
    pub unknown: bool,
}

impl Specials {
    /// No special tokens: ids are words only.
    pub const NONE: Specials = Specials { padding: false, unknown: false };
    /// Padding (id 0) and unknown (id 1).
    pub const BOTH: Specials = Specials { padding: true, unknown: true };
}

/// Tokens and ids, with counts when built from a corpus.
///
/// Ids are dense, from 0: the specials first (see [`Specials`]), then the words. Built from a
/// corpus, words come by descending count, ties in order of first appearance (as word2vec and
/// gensim order them), and words seen fewer than `min_count` times are left out. Encoding a
/// token that is not in the vocabulary gives the unknown id when there is one, and drops the
/// token otherwise (as word2vec does with rare words).
///
/// ```
/// use kiln_runtime::text::{Specials, Vocab};
/// let vocab = Vocab::from_corpus("the cat sat\nthe dog sat\nthe end", 2, Specials::BOTH);
/// assert_eq!(vocab.tokens(), ["<pad>", "<unk>", "the", "sat"]);
/// assert_eq!(vocab.encode("the cat sat".split(' ')), [2, 1, 3]);
/// assert_eq!(vocab.encode_padded("the cat".split(' '), 4)?, [2, 1, 0, 0]);
/// # Ok::<(), kiln_compiler::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct Vocab {
    tokens: Vec<String>,
    counts: Vec<u64>,
    ids: HashMap<String, usize>,
    padding: Option<usize>,
    unknown: Option<usize>,
}

impl Vocab {
    /// The padding token's text.
    pub const PADDING: &'static str = "<pad>";
    /// The unknown token's text.
    pub const UNKNOWN: &'static str = "<unk>";

    /// The vocabulary of `corpus` (lines of tokens separated by whitespace): every token seen
    /// at least `min_count` times, most frequent first. Specials have count 0.
    pub fn from_corpus(corpus: &str, min_count: u64, specials: Specials) -> Vocab {
        Self::from_sentences(corpus.lines().map(|line| line.split_whitespace()), min_count, specials)
    }

    /// The vocabulary of already tokenised sentences, as [`Vocab::from_corpus`].
    pub fn from_sentences<'t, S, T>(sentences: S, min_count: u64, specials: Specials) -> Vocab
    where
        S: IntoIterator<Item = T>,
        T: IntoIterator<Item = &'t str>,
    {
        // Counts in order of first appearance, so the sort below breaks ties by it.
        let mut order: Vec<(&str, u64)> = Vec::new();
        let mut seen: HashMap<&str, usize> = HashMap::new();
        for sentence in sentences {
            for token in sentence {
                match seen.get(token) {
                    Some(&at) => order[at].1 += 1,
                    None => {
                        seen.insert(token, order.len());
                        order.push((token, 1));
                    }
                }
            }
        }
        order.retain(|&(_, count)| count >= min_count.max(1));
        order.sort_by_key(|&(_, count)| std::cmp::Reverse(count));
        let mut vocab = Vocab::empty(specials);
        for (token, count) in order {
            // A corpus word spelled like a special keeps the special's id (and adds its count).
            match vocab.ids.get(token) {
                Some(&id) => vocab.counts[id] += count,
                None => vocab.push(token, count),
            }
        }
        vocab
    }

    /// A vocabulary of `tokens` in the order given (after the specials), counts 0. A token given
    /// twice, or one spelled like a reserved special, is an error naming it.
    #[track_caller]
    pub fn from_tokens<I, T>(tokens: I, specials: Specials) -> Result<Vocab>
    where
        I: IntoIterator<Item = T>,
        T: AsRef<str>,
    {
        let location = Location::caller();
        let mut vocab = Vocab::empty(specials);
        for (position, token) in tokens.into_iter().enumerate() {
            let token = token.as_ref();
            if let Some(&id) = vocab.ids.get(token) {
                let detail = format!("token `{token}` (position {position}) is already in the vocabulary as id {id}");
                return Err(Error::Argument { op: "Vocab::from_tokens", detail, location });
            }
            vocab.push(token, 0);
        }
        Ok(vocab)
    }

    fn empty(specials: Specials) -> Vocab {
        let mut vocab =
            Vocab { tokens: Vec::new(), counts: Vec::new(), ids: HashMap::new(), padding: None, unknown: None };
        if specials.padding {
            vocab.padding = Some(vocab.tokens.len());
            vocab.push(Self::PADDING, 0);
        }
        if specials.unknown {
            vocab.unknown = Some(vocab.tokens.len());
            vocab.push(Self::UNKNOWN, 0);
        }
        vocab
    }

    fn push(&mut self, token: &str, count: u64) {
        self.ids.insert(token.to_string(), self.tokens.len());
        self.tokens.push(token.to_string());
        self.counts.push(count);
    }

    /// Number of ids (specials included): the rows of an embedding table over this vocabulary.
    pub fn len(&self) -> usize {
        self.tokens.len()
    }

    /// Whether the vocabulary has no id at all.
    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }

    /// Every token, by id.
    pub fn tokens(&self) -> &[String] {
        &self.tokens
    }

    /// The id of `token`, if it is in the vocabulary.
    pub fn id(&self, token: &str) -> Option<usize> {
        self.ids.get(token).copied()
    }

    /// The token of `id`.
    pub fn token(&self, id: usize) -> Option<&str> {
        self.tokens.get(id).map(String::as_str)
    }

    /// How often `id`'s token occurred in the corpus (0 for specials and listed tokens).
    pub fn count(&self, id: usize) -> u64 {
        self.counts.get(id).copied().unwrap_or(0)
    }

    /// Every id's count, by id.
    pub fn counts(&self) -> &[u64] {
        &self.counts
    }

    /// The padding id, when the vocabulary reserves one (always 0).
    pub fn padding(&self) -> Option<usize> {
        self.padding
    }

    /// The unknown id, when the vocabulary reserves one.
    pub fn unknown(&self) -> Option<usize> {
        self.unknown
    }

    /// Whether `id` is the padding or the unknown id.
    pub fn is_special(&self, id: usize) -> bool {
        Some(id) == self.padding || Some(id) == self.unknown
    }

    /// The ids of `tokens`: a token not in the vocabulary becomes the unknown id, or is dropped
    /// when there is none.
    pub fn encode<'t>(&self, tokens: impl IntoIterator<Item = &'t str>) -> Vec<i64> {
        tokens.into_iter().filter_map(|token| self.id(token).or(self.unknown)).map(|id| id as i64).collect()
    }

    /// [`Vocab::encode`] cut or padded to exactly `length` ids: longer sequences lose their
    /// end, shorter ones are filled with the padding id. An error if there is no padding id.
    #[track_caller]
    pub fn encode_padded<'t>(&self, tokens: impl IntoIterator<Item = &'t str>, length: usize) -> Result<Vec<i64>> {
        let Some(padding) = self.padding else {
            let detail = "the vocabulary has no padding id (build it with `Specials { padding: true, .. }`)".into();
            return Err(Error::Argument { op: "Vocab::encode_padded", detail, location: Location::caller() });
        };
        let mut ids = self.encode(tokens);
        ids.resize(length, padding as i64);
        Ok(ids)
    }
}
