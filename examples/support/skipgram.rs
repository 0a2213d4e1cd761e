//! Skip-gram with negative sampling (word2vec's SGNS), its step compiled with kiln.
//!
//! The host does what word2vec does between updates: it drops frequent words at random
//! (subsampling with threshold `sample`), picks a reduced window for each word, emits
//! (center, context) pairs and draws `negative` noise words per pair from the unigram
//! distribution raised to 0.75. Pairs go to the compiled step in batches: it gathers the
//! center rows of the input table and the context and noise rows of the output table, computes
//! the logistic loss of every pair (summed, so each pair moves the rows as word2vec's per-pair
//! update would) and returns the gradients of the rows it gathered; SGD then moves only those
//! rows of both tables (kiln's sparse updates). The learning rate decays linearly as word2vec's.

use std::time::Instant;

use kiln::SparseParam;
use kiln::prelude::*;
use kiln::text::{Specials, Vocab, WordVectors, vectors_of_table};

use super::corpus::Rng;

/// word2vec's and gensim's defaults, with a batch of pairs per compiled call.
#[derive(Clone, Copy, Debug)]
pub struct Settings {
    pub dim: usize,
    pub window: usize,
    pub negative: usize,
    pub min_count: u64,
    pub sample: f64,
    pub epochs: usize,
    pub lr: f64,
    pub batch: usize,
    pub threads: usize,
    pub seed: u64,
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            dim: 100,
            window: 5,
            negative: 5,
            min_count: 5,
            sample: 1e-3,
            epochs: 1,
            lr: 0.025,
            batch: 4096,
            threads: 1,
            seed: 1,
        }
    }
}

/// What training produced and how long it took.
pub struct Trained {
    pub vocab: Vocab,
    pub vectors: WordVectors,
    /// Corpus words read (every epoch, out-of-vocabulary words included), as gensim's raw count.
    pub raw_words: u64,
    /// Words kept after the vocabulary's min count and subsampling, as gensim's effective count.
    pub effective_words: u64,
    pub pairs: u64,
    /// Wall time of the training loop (pairs, noise draws and compiled steps).
    pub seconds: f64,
    pub compile_ms: f64,
    /// The compiled step's kernel times, when `KILN_PROFILE` is set.
    pub profile: Option<String>,
}

/// The compiled SGNS step over tables of `vocab` rows: inputs centers `[B]`, targets
/// `[B, 1 + negative]` (each pair's context, then its noise words); outputs the summed loss and
/// the row gradients of both tables, which the returned [`SparseUpdates`] (plain SGD on rows)
/// applies to the rows touched. Both tables are sparse: no gradient the size of a table is
/// ever built, and a step's cost follows the pairs, not the vocabulary.
fn compile_step(vocab: usize, settings: &Settings) -> Result<(Function, SparseUpdates)> {
    let g = Graph::new();
    let dim = settings.dim;
    let bound = 0.5 / dim as f64;
    let input = g.param("input.weight", [vocab, dim], Init::Uniform { low: -bound, high: bound })?;
    let output = g.param("output.weight", [vocab, dim], Init::ZEROS)?;
    g.set_sparse("input.weight", SparseParam::default())?;
    g.set_sparse("output.weight", SparseParam::default())?;
    let centers = g.typed_input("centers", [Dim::sym("B")], DType::I64)?;
    // Per pair, the context then the noise words: one gather of the output table for all.
    let targets = g.typed_input("targets", [Dim::sym("B"), (settings.negative + 1).into()], DType::I64)?;
    let center_rows = input.gather(centers)?.reshape([Dim::sym("B"), 1.into(), dim.into()])?;
    let scores = (center_rows * output.gather(targets)?).sum(&[2], false)?;
    // −log σ(u·v) − Σ log σ(−u·n) = Σ softplus(−sign · score), sign +1 for the context.
    let mut signs = vec![1.0f32];
    signs.resize(settings.negative + 1, -1.0);
    let signs = g.constant(Value::f32([settings.negative + 1], signs));
    let loss = layers::softplus(-(scores * signs))?.sum_all()?;
    let (_, rows) = g.grad_rows(loss, &[], &[input, output])?;
    let sparse = SparseUpdates::new(&g, &rows, &Sgd::new())?;
    let mut outputs = vec![loss];
    outputs.extend(sparse.outputs(&rows));
    let mut step = function(&g, &[centers, targets], &outputs, &[])?;
    step.set_threads(settings.threads);
    // The input table starts as word2vec's (uniform ±0.5/dim), seeded; the output table at 0.
    step.set_params(&ParamStore::init(&g, settings.seed))?;
    Ok((step, sparse))
}

/// word2vec's noise table: ids repeated in proportion to count^0.75, drawn by one index.
fn noise_table(vocab: &Vocab) -> Vec<u32> {
    const SIZE: usize = 1 << 22;
    let weights: Vec<f64> = vocab.counts().iter().map(|&c| (c as f64).powf(0.75)).collect();
    let total: f64 = weights.iter().sum();
    let mut table = Vec::with_capacity(SIZE);
    let mut cumulative = 0.0;
    for (id, weight) in weights.iter().enumerate() {
        cumulative += weight / total;
        let end = ((cumulative * SIZE as f64).round() as usize).min(SIZE);
        table.resize(end.max(table.len()), id as u32);
    }
    table.resize(SIZE, (weights.len() - 1) as u32);
    table
}

/// gensim's keep probability of each id under subsampling threshold `sample`.
fn keep_probabilities(vocab: &Vocab, sample: f64) -> Vec<f64> {
    let total: u64 = vocab.counts().iter().sum();
    let threshold = sample * total as f64;
    vocab
        .counts()
        .iter()
        .map(|&count| {
            let count = count as f64;
            if sample <= 0.0 { 1.0 } else { ((count / threshold).sqrt() + 1.0) * threshold / count }
        })
        .collect()
}

/// Pairs waiting for the next compiled call.
struct Batch {
    centers: Vec<i64>,
    /// Per pair: the context, then the noise words.
    targets: Vec<i64>,
}

/// Trains SGNS vectors on `corpus` (one sentence per line, tokens separated by blanks).
pub fn train(corpus: &str, settings: &Settings) -> Result<Trained> {
    let vocab = Vocab::from_corpus(corpus, settings.min_count, Specials::NONE);
    let sentences: Vec<Vec<u32>> = corpus
        .lines()
        .map(|line| line.split_whitespace().filter_map(|w| vocab.id(w)).map(|id| id as u32).collect())
        .collect();
    let raw_per_epoch = corpus.split_whitespace().count() as u64;
    let kept_per_epoch: u64 = sentences.iter().map(|s| s.len() as u64).sum();
    let compiling = Instant::now();
    let (mut step, mut sparse) = compile_step(vocab.len(), settings)?;
    let compile_ms = compiling.elapsed().as_secs_f64() * 1e3;
    let noise_table = noise_table(&vocab);
    let keep = keep_probabilities(&vocab, settings.sample);

    let started = Instant::now();
    let mut rng = Rng(settings.seed);
    let negative = settings.negative;
    let mut batch = Batch {
        centers: Vec::with_capacity(settings.batch),
        targets: Vec::with_capacity(settings.batch * (negative + 1)),
    };
    let (mut effective, mut pairs, mut calls) = (0u64, 0u64, 0u64);
    let total_words = (kept_per_epoch * settings.epochs as u64).max(1) as f64;
    let mut done_words = 0u64;
    let mut run = |batch: &mut Batch, done_words: u64| -> Result<()> {
        let n = batch.centers.len();
        if n == 0 {
            return Ok(());
        }
        // word2vec's rate: linear from `lr` to `lr · 1e-4` over the words to train.
        let lr = settings.lr * (1.0 - done_words as f64 / total_words).max(1e-4);
        calls += 1;
        let out = step.call(&[
            Value::i64([n], std::mem::take(&mut batch.centers)),
            Value::i64([n, negative + 1], std::mem::take(&mut batch.targets)),
        ])?;
        sparse.apply_to_function(&mut step, &out[1..], lr, calls)?;
        Ok(())
    };
    let mut kept = Vec::new();
    for _ in 0..settings.epochs {
        for sentence in &sentences {
            kept.clear();
            kept.extend(sentence.iter().copied().filter(|&id| keep[id as usize] >= rng.uniform()));
            effective += kept.len() as u64;
            for (i, &center) in kept.iter().enumerate() {
                let reach = 1 + rng.below(settings.window);
                let (low, high) = (i.saturating_sub(reach), (i + reach + 1).min(kept.len()));
                for (j, &context) in kept.iter().enumerate().take(high).skip(low) {
                    if j == i {
                        continue;
                    }
                    batch.centers.push(center as i64);
                    batch.targets.push(context as i64);
                    for _ in 0..negative {
                        // A noise word equal to the context is drawn again, as word2vec skips it.
                        let mut id = noise_table[rng.below(noise_table.len())];
                        while id == context && vocab.len() > 1 {
                            id = noise_table[rng.below(noise_table.len())];
                        }
                        batch.targets.push(id as i64);
                    }
                    pairs += 1;
                    if batch.centers.len() == settings.batch {
                        run(&mut batch, done_words)?;
                    }
                }
            }
            done_words += sentence.len() as u64;
        }
    }
    run(&mut batch, done_words)?;
    let seconds = started.elapsed().as_secs_f64();
    let profile = step.profile();
    let params = step.params();
    let table = params.get("input.weight").ok_or_else(|| Error::MissingParam { name: "input.weight".into() })?;
    let vectors = vectors_of_table(&vocab, table)?;
    Ok(Trained {
        vocab,
        vectors,
        raw_words: raw_per_epoch * settings.epochs as u64,
        effective_words: effective,
        pairs,
        seconds,
        compile_ms,
        profile,
    })
}
