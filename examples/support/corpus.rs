//! A corpus with planted structure, generated deterministically, and the score that says
//! whether word vectors found it.
//!
//! The language has `TOPICS` topics of `TOPIC_WORDS` made-up words each, plus `COMMON_WORDS`
//! words every sentence uses ("the", "of" of this language). A sentence picks a topic; most of
//! its words are that topic's (Zipf-distributed), the rest common words and a few words of other
//! topics (noise). So a topic's words co-occur, and good vectors put each word near the words
//! of its topic. The [planted-structure score](Language::score) measures exactly that.

use std::collections::HashMap;

use kiln::text::WordVectors;

pub const TOPICS: usize = 10;
pub const TOPIC_WORDS: usize = 100;
pub const COMMON_WORDS: usize = 60;
/// Nearest neighbours the score looks at.
pub const NEIGHBOURS: usize = 10;
pub const TOPIC_NAMES: [&str; TOPICS] =
    ["sea", "farm", "city", "music", "space", "war", "food", "school", "forest", "medicine"];

/// SplitMix64: a small, fast generator whose stream depends only on its seed.
pub struct Rng(pub u64);

impl Rng {
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (`0 < n < 2^32`).
    pub fn below(&mut self, n: usize) -> usize {
        (((self.next_u64() >> 32) * n as u64) >> 32) as usize
    }

    /// Uniform in `[0, 1)`.
    pub fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Draws indices `0..n` with probability ∝ `1 / (i + 1)` (Zipf's law).
struct Zipf(Vec<f64>);

impl Zipf {
    fn new(n: usize) -> Zipf {
        let mut total = 0.0;
        let cumulative = (0..n)
            .map(|i| {
                total += 1.0 / (i + 1) as f64;
                total
            })
            .collect::<Vec<f64>>();
        Zipf(cumulative.iter().map(|c| c / total).collect())
    }

    fn draw(&self, rng: &mut Rng) -> usize {
        let u = rng.uniform();
        self.0.partition_point(|&c| c <= u).min(self.0.len() - 1)
    }
}

/// The made-up language: its words, and which topic each topic word belongs to.
pub struct Language {
    pub topics: Vec<Vec<String>>,
    pub common: Vec<String>,
    topic_of: HashMap<String, usize>,
    topic_zipf: Zipf,
    common_zipf: Zipf,
}

impl Language {
    /// The language (the same words every time).
    pub fn new() -> Language {
        const CONSONANTS: &[u8] = b"bdfgklmnprstvz";
        const VOWELS: &[u8] = b"aeiou";
        let mut rng = Rng(0x5EED);
        let mut taken = std::collections::HashSet::new();
        let mut word = |syllables: usize, rng: &mut Rng| loop {
            let mut text = String::new();
            for _ in 0..syllables {
                text.push(CONSONANTS[rng.below(CONSONANTS.len())] as char);
                text.push(VOWELS[rng.below(VOWELS.len())] as char);
            }
            if taken.insert(text.clone()) {
                return text;
            }
        };
        let common = (0..COMMON_WORDS).map(|_| word(2, &mut rng)).collect();
        let topics: Vec<Vec<String>> =
            (0..TOPICS).map(|_| (0..TOPIC_WORDS).map(|_| word(3, &mut rng)).collect()).collect();
        let topic_of =
            topics.iter().enumerate().flat_map(|(t, words)| words.iter().map(move |w| (w.clone(), t))).collect();
        Language { topics, common, topic_of, topic_zipf: Zipf::new(TOPIC_WORDS), common_zipf: Zipf::new(COMMON_WORDS) }
    }

    /// The topic of a topic word (`None` for common or unknown words).
    pub fn topic_of(&self, word: &str) -> Option<usize> {
        self.topic_of.get(word).copied()
    }

    /// A word of `topic`, frequent ones more often.
    pub fn topic_word(&self, topic: usize, rng: &mut Rng) -> &str {
        &self.topics[topic][self.topic_zipf.draw(rng)]
    }

    /// A common word, frequent ones more often.
    pub fn common_word(&self, rng: &mut Rng) -> &str {
        &self.common[self.common_zipf.draw(rng)]
    }

    /// A corpus of about `words` words: one sentence of 6 to 16 words per line. Each word is
    /// common with probability 0.35, of another topic with 0.2, of the sentence's topic otherwise.
    pub fn corpus(&self, words: usize, seed: u64) -> String {
        let mut rng = Rng(seed);
        let mut text = String::with_capacity(words * 8);
        let mut written = 0;
        while written < words {
            let topic = rng.below(TOPICS);
            let length = 6 + rng.below(11);
            for i in 0..length {
                let roll = rng.uniform();
                let word = if roll < 0.35 {
                    self.common_word(&mut rng)
                } else if roll < 0.55 {
                    let other = rng.below(TOPICS);
                    self.topic_word(other, &mut rng)
                } else {
                    self.topic_word(topic, &mut rng)
                };
                if i > 0 {
                    text.push(' ');
                }
                text.push_str(word);
            }
            text.push('\n');
            written += length;
        }
        text
    }

    /// The planted-structure score of `vectors`: over every topic word that has a vector, the
    /// fraction of its `NEIGHBOURS` nearest neighbours (cosine similarity, among all vectors)
    /// that are words of the same topic, averaged. A random table scores about the share of a
    /// topic in the vocabulary (under 0.1); vectors that recovered every topic score 1.
    pub fn score(&self, vectors: &WordVectors) -> f64 {
        let (mut total, mut words) = (0.0, 0);
        for token in vectors.tokens() {
            let Some(topic) = self.topic_of(token) else { continue };
            let neighbours = vectors.nearest(token, NEIGHBOURS).unwrap_or_default();
            let same = neighbours.iter().filter(|(n, _)| self.topic_of(n) == Some(topic)).count();
            total += same as f64 / NEIGHBOURS as f64;
            words += 1;
        }
        if words == 0 { 0.0 } else { total / words as f64 }
    }

    /// `word (topic)`, or `word (common)`.
    pub fn label(&self, word: &str) -> String {
        match self.topic_of(word) {
            Some(topic) => format!("{word} ({})", TOPIC_NAMES[topic]),
            None => format!("{word} (common)"),
        }
    }
}
