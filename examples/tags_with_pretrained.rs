//! Predicting several tags for a sequence of words, over frozen pre-trained word vectors, as in
//! the practitioners' notes ("PyTorch – Freezing Weights of Pre-Trained Layers").
//!
//! The word vectors come from `word_vectors` (skip-gram on the generated corpus): read from a
//! word2vec text file with `--vectors PATH`, or trained here first. Each example is a short
//! sequence of the corpus language mixing one to three topics; its tags are the topics it
//! speaks of. The model embeds the words with the pre-trained table, loaded into
//! `words.weight` and frozen (no gradient, no update, bit for bit as loaded), averages them over
//! the non-padding positions, and predicts every tag with its own logistic output.
//!
//! Evaluation on held-out sequences runs through `Trainer::evaluate`: the compiled evaluation
//! returns each tag's true positives, false positives and false negatives, from which the
//! example prints per-tag precision, recall and F1, and micro F1 last. For comparison, the same
//! model is trained over a frozen table of random vectors.
//!
//! Run: `cargo run --release --example tags_with_pretrained [-- --vectors PATH] [--words N]`

// Shared with `word_vectors`, which uses the parts this example does not (training figures, labels).
#[allow(dead_code)]
mod support;

use kiln::prelude::*;
use kiln::text::{Coverage, load_embedding};
use support::corpus::{Language, Rng, TOPIC_NAMES, TOPICS};
use support::skipgram::{Settings as SkipGram, train};

/// Words per sequence (longer ones are cut, shorter ones padded with id 0).
const LENGTH: usize = 24;
const HIDDEN: usize = 64;
const BATCH: usize = 128;
const STEPS: u64 = 300;

/// One example: words, and one target per tag (1 if the sequence speaks of that topic).
struct Examples {
    sentences: Vec<Vec<String>>,
    targets: Vec<f32>,
}

/// `count` sequences: 1–3 distinct topics, 2–5 words of each, 2–6 common words and, one time in
/// three, a stray word of a topic not among the tags; shuffled.
fn examples(language: &Language, count: usize, seed: u64) -> Examples {
    let mut rng = Rng(seed);
    let mut out = Examples { sentences: Vec::with_capacity(count), targets: Vec::with_capacity(count * TOPICS) };
    for _ in 0..count {
        let mut topics = Vec::new();
        for _ in 0..1 + rng.below(3) {
            let topic = rng.below(TOPICS);
            if !topics.contains(&topic) {
                topics.push(topic);
            }
        }
        let mut words: Vec<String> = Vec::new();
        for &topic in &topics {
            words.extend((0..2 + rng.below(4)).map(|_| language.topic_word(topic, &mut rng).to_string()));
        }
        words.extend((0..2 + rng.below(5)).map(|_| language.common_word(&mut rng).to_string()));
        if rng.below(3) == 0 {
            let stray = (0..TOPICS).filter(|t| !topics.contains(t)).nth(rng.below(TOPICS - topics.len()));
            if let Some(stray) = stray {
                words.push(language.topic_word(stray, &mut rng).to_string());
            }
        }
        for i in (1..words.len()).rev() {
            words.swap(i, rng.below(i + 1));
        }
        out.targets.extend((0..TOPICS).map(|t| if topics.contains(&t) { 1.0 } else { 0.0 }));
        out.sentences.push(words);
    }
    out
}

/// Ids and targets of `examples[range]`, as the model's inputs.
fn batch(vocab: &Vocab, examples: &Examples, picks: impl Iterator<Item = usize>) -> Result<[Value; 2]> {
    let (mut ids, mut targets, mut rows) = (Vec::new(), Vec::new(), 0);
    for pick in picks {
        ids.extend(vocab.encode_padded(examples.sentences[pick].iter().map(String::as_str), LENGTH)?);
        targets.extend_from_slice(&examples.targets[pick * TOPICS..(pick + 1) * TOPICS]);
        rows += 1;
    }
    Ok([Value::i64([rows, LENGTH], ids), Value::f32([rows, TOPICS], targets)])
}

/// The tagger: embedding (`words.weight`), mean over non-padding words, a ReLU layer, one
/// logit per tag. Returns the inputs (ids, targets) and the logits.
fn tagger<'g>(g: &'g Graph, vocab: &Vocab, dim: usize) -> Result<(Tensor<'g>, Tensor<'g>, Tensor<'g>)> {
    let words = layers::Embedding::new(g, "words", vocab.len(), dim)?;
    let hidden = layers::Linear::new(g, "hidden", dim, HIDDEN)?;
    let tags = layers::Linear::new(g, "tags", HIDDEN, TOPICS)?;
    let ids = g.typed_input("ids", [Dim::sym("B"), LENGTH.into()], DType::I64)?;
    let targets = g.input("targets", [Dim::sym("B"), TOPICS.into()])?;
    // Padding (id 0) weighs nothing in the mean.
    let present = (1.0 - ids.eq(0)?).reshape([Dim::sym("B"), LENGTH.into(), 1.into()])?;
    let count = present.sum(&[1], false)?.maximum(1.0)?;
    let mean = (words.forward(ids)? * present).sum(&[1], false)? / count;
    let logits = tags.forward(layers::relu(hidden.forward(mean)?)?)?;
    Ok((ids, targets, logits))
}

/// Per tag: true positives, false positives, false negatives (summed over the batch).
fn counts<'g>(logits: Tensor<'g>, targets: Tensor<'g>) -> Result<[Tensor<'g>; 3]> {
    let predicted = logits.gt(0.0)?;
    let true_positives = (predicted * targets).sum(&[0], false)?;
    let false_positives = (predicted * (1.0 - targets)).sum(&[0], false)?;
    let false_negatives = ((1.0 - predicted) * targets).sum(&[0], false)?;
    Ok([true_positives, false_positives, false_negatives])
}

/// What one training run gives: per-tag counts, micro F1, whether the table stayed as loaded.
struct Outcome {
    counts: [Vec<f64>; 3],
    micro_f1: f64,
    frozen_unchanged: bool,
}

fn f1(precision: f64, recall: f64) -> f64 {
    if precision + recall == 0.0 { 0.0 } else { 2.0 * precision * recall / (precision + recall) }
}

fn ratio(a: f64, b: f64) -> f64 {
    if b == 0.0 { 0.0 } else { a / b }
}

/// Trains the tagger over a frozen table: `vectors` loaded into it, or its random draw.
fn run(vocab: &Vocab, dim: usize, vectors: Option<&WordVectors>, data: [&Examples; 2]) -> Result<Outcome> {
    let [training, held_out] = data;
    let g = Graph::new();
    let (ids, targets, logits) = tagger(&g, vocab, dim)?;
    // The notes' freeze_layer: no gradient for the table, so the step neither computes nor applies one.
    g.set_trainable("words.weight", false)?;
    let loss = layers::binary_cross_entropy_with_logits(logits, targets)?;
    let objective = Objective { loss, inputs: vec![ids, targets], metrics: vec![] };
    let adam = Adam::new();
    let mut trainer = Trainer::new(&g, &objective, &Settings::new(&adam, 0.01))?;
    let mut store = ParamStore::init(&g, 3);
    if let Some(vectors) = vectors {
        let coverage: Coverage = load_embedding(&mut store, "words.weight", vocab, vectors)?;
        println!("loaded into words.weight: {coverage}");
    }
    let mut table = ParamStore::new();
    let loaded = store.get("words.weight").ok_or_else(|| Error::MissingParam { name: "words.weight".into() })?;
    table.set("words.weight", loaded.clone());
    trainer.set_params(&table)?;

    let mut rng = Rng(11);
    let examples = training.sentences.len();
    for step in 0..STEPS {
        let report = trainer.step(&batch(vocab, training, (0..BATCH).map(|_| rng.below(examples)))?)?;
        if (step + 1) % 100 == 0 {
            println!("  step {:>3}: loss {:.4}", step + 1, report.loss);
        }
    }

    // Evaluation: the forward half compiled with the per-tag counts as its outputs.
    let eval_graph = Graph::new();
    let (eval_ids, eval_targets, eval_logits) = tagger(&eval_graph, vocab, dim)?;
    let outputs = counts(eval_logits, eval_targets)?;
    let mut evaluation = function(&eval_graph, &[eval_ids, eval_targets], &outputs, &[])?;
    let values = trainer.evaluate(&mut evaluation, &batch(vocab, held_out, 0..held_out.sentences.len())?)?;
    let counts = [values[0].to_f64_vec(), values[1].to_f64_vec(), values[2].to_f64_vec()];
    let [tp, fp, fn_]: [f64; 3] = counts.clone().map(|c| c.iter().sum());
    let micro_f1 = f1(ratio(tp, tp + fp), ratio(tp, tp + fn_));
    let frozen_unchanged = trainer.params().get("words.weight") == Some(loaded);
    Ok(Outcome { counts, micro_f1, frozen_unchanged })
}

fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let (mut path, mut words) = (None, 300_000);
    let bad =
        |detail: String| Error::Argument { op: "tags_with_pretrained", detail, location: kiln::Location::caller() };
    while let Some(flag) = args.next() {
        let value = args.next().ok_or_else(|| bad(format!("{flag} needs a value")))?;
        match flag.as_str() {
            "--vectors" => path = Some(std::path::PathBuf::from(value)),
            "--words" => words = value.parse().map_err(|_| bad(format!("--words needs a number, got {value:?}")))?,
            _ => return Err(bad(format!("unknown flag {flag}"))),
        }
    }
    let language = Language::new();
    let vectors = match path {
        Some(path) => {
            println!("word vectors from {}", path.display());
            WordVectors::read(&path, Format::Word2VecText)?
        }
        None => {
            println!("no --vectors file: pre-training skip-gram on a generated corpus of {words} words first");
            train(&language.corpus(words, 2026), &SkipGram::default())?.vectors
        }
    };
    println!(
        "{} vectors of dim {}, planted-structure score {:.4}",
        vectors.len(),
        vectors.dim(),
        language.score(&vectors)
    );

    let training = examples(&language, 4000, 1);
    let held_out = examples(&language, 2000, 2);
    let vocab =
        Vocab::from_sentences(training.sentences.iter().map(|s| s.iter().map(String::as_str)), 1, Specials::BOTH);
    println!("tag vocabulary: {} ids (padding 0, unknown 1)\n", vocab.len());

    println!("over a frozen table of random vectors:");
    let random = run(&vocab, vectors.dim(), None, [&training, &held_out])?;
    println!("  held-out micro F1 {:.4}\n", random.micro_f1);

    println!("over the frozen pre-trained vectors:");
    let pretrained = run(&vocab, vectors.dim(), Some(&vectors), [&training, &held_out])?;
    println!("\n{:<10} {:>9} {:>9} {:>9}", "tag", "precision", "recall", "F1");
    let [tp, fp, fn_] = &pretrained.counts;
    for (tag, name) in TOPIC_NAMES.iter().enumerate() {
        let (precision, recall) = (ratio(tp[tag], tp[tag] + fp[tag]), ratio(tp[tag], tp[tag] + fn_[tag]));
        println!("{name:<10} {precision:>9.4} {recall:>9.4} {:>9.4}", f1(precision, recall));
    }
    println!("embedding table bit for bit as loaded: {}", pretrained.frozen_unchanged && random.frozen_unchanged);
    println!("micro F1: {:.4}", pretrained.micro_f1);
    Ok(())
}
