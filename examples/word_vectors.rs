//! Word vectors pre-trained without labels: skip-gram with negative sampling, compiled with kiln.
//!
//! The corpus is generated (see `support/corpus.rs`): a made-up language whose sentences each
//! keep mostly to one of ten topics. Skip-gram learns from co-occurrence alone; the example
//! writes the vectors in word2vec's text format, prints the nearest neighbours of a few words
//! and the planted-structure score: over every topic word, the fraction of its 10 nearest
//! neighbours that belong to its topic (random vectors score under 0.1, perfect ones 1).
//! words/s counts corpus words read per second of training (gensim's raw words/s).
//!
//! Run: `cargo run --release --example word_vectors [-- FLAGS]`
//!   --words N           corpus size in words (default 1000000)
//!   --corpus PATH       train on this corpus file instead of the generated one
//!   --write-corpus PATH write the generated corpus there and stop (for gensim's anchor:
//!                       `python word2vec_gensim.py PATH --workers 1 --out gensim.txt`)
//!   --score PATH        score a word2vec text file (gensim's, say) and stop
//!   --out PATH          where to write the vectors (default: word_vectors.txt in the temp dir)
//!   --dim, --window, --negative, --epochs, --batch, --threads, --min-count (gensim's defaults)

mod support;

use std::path::PathBuf;

use kiln::prelude::*;
use support::corpus::{Language, TOPICS};
use support::skipgram::{Settings, train};

struct Flags {
    words: usize,
    corpus: Option<PathBuf>,
    write_corpus: Option<PathBuf>,
    score: Option<PathBuf>,
    out: PathBuf,
    settings: Settings,
}

fn flags() -> Result<Flags> {
    let mut flags = Flags {
        words: 1_000_000,
        corpus: None,
        write_corpus: None,
        score: None,
        out: std::env::temp_dir().join("word_vectors.txt"),
        settings: Settings::default(),
    };
    let mut args = std::env::args().skip(1);
    let bad = |detail: String| Error::Argument { op: "word_vectors", detail, location: kiln::Location::caller() };
    while let Some(flag) = args.next() {
        let value = args.next().ok_or_else(|| bad(format!("{flag} needs a value")))?;
        let number = || value.parse::<usize>().map_err(|_| bad(format!("{flag} needs a number, got {value:?}")));
        let s = &mut flags.settings;
        match flag.as_str() {
            "--words" => flags.words = number()?,
            "--corpus" => flags.corpus = Some(value.into()),
            "--write-corpus" => flags.write_corpus = Some(value.into()),
            "--score" => flags.score = Some(value.into()),
            "--out" => flags.out = value.into(),
            "--dim" => s.dim = number()?,
            "--window" => s.window = number()?,
            "--negative" => s.negative = number()?,
            "--epochs" => s.epochs = number()?,
            "--batch" => s.batch = number()?,
            "--threads" => s.threads = number()?,
            "--min-count" => s.min_count = number()? as u64,
            _ => return Err(bad(format!("unknown flag {flag}"))),
        }
    }
    Ok(flags)
}

fn read(path: &PathBuf) -> Result<String> {
    std::fs::read_to_string(path).map_err(|e| Error::Argument {
        op: "word_vectors",
        detail: format!("{}: {e}", path.display()),
        location: kiln::Location::caller(),
    })
}

/// The nearest neighbours of the most frequent word of a few topics.
fn show_neighbours(language: &Language, vectors: &WordVectors) {
    println!("nearest neighbours (cosine):");
    for topic in 0..TOPICS.min(4) {
        let word = &language.topics[topic][0];
        let Some(neighbours) = vectors.nearest(word, 5) else { continue };
        let shown: Vec<String> = neighbours.iter().map(|(n, s)| format!("{} {s:.2}", language.label(n))).collect();
        println!("  {:<20} {}", language.label(word), shown.join(", "));
    }
}

fn main() -> Result<()> {
    let flags = flags()?;
    let language = Language::new();
    if let Some(path) = &flags.score {
        let vectors = WordVectors::read(path, Format::Word2VecText)?;
        show_neighbours(&language, &vectors);
        println!("planted-structure score: {:.4}", language.score(&vectors));
        return Ok(());
    }
    let corpus = match &flags.corpus {
        Some(path) => read(path)?,
        None => language.corpus(flags.words, 2026),
    };
    if let Some(path) = &flags.write_corpus {
        std::fs::write(path, &corpus).map_err(|e| Error::Argument {
            op: "word_vectors",
            detail: format!("{}: {e}", path.display()),
            location: kiln::Location::caller(),
        })?;
        println!("wrote {} ({} sentences)", path.display(), corpus.lines().count());
        return Ok(());
    }
    let s = &flags.settings;
    println!(
        "skip-gram, negative sampling: dim {}, window {}, {} noise words, min count {}, {} epoch(s), {} pairs per step, {} thread(s)",
        s.dim, s.window, s.negative, s.min_count, s.epochs, s.batch, s.threads
    );
    let trained = train(&corpus, s)?;
    println!(
        "vocabulary {} words; {} corpus words, {} after subsampling, {} pairs; step compiled in {:.0} ms; trained in {:.2} s",
        trained.vocab.len(),
        trained.raw_words,
        trained.effective_words,
        trained.pairs,
        trained.compile_ms,
        trained.seconds
    );
    if let Some(profile) = &trained.profile {
        print!("{profile}");
    }
    trained.vectors.write_word2vec_text(&flags.out)?;
    println!("vectors written to {} (word2vec text format)", flags.out.display());
    show_neighbours(&language, &trained.vectors);
    let words_per_second = trained.raw_words as f64 / trained.seconds.max(f64::MIN_POSITIVE);
    println!("words/s: {words_per_second:.0}; planted-structure score: {:.4}", language.score(&trained.vectors));
    Ok(())
}
