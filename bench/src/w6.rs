//! W6 word-tags: a multi-tag predictor over word ids, its embedding table updated sparsely.
//!
//! In: the vocabulary size (100,000 for W6, 1,000,000 for `w6-1m`). Out: a [`SparseStep`],
//! the compiled call's inputs, outputs and head updates plus the table's sparse updates
//! (SparseAdam), and the values to feed at each step. The definition (WORKLOADS.md): ids
//! log-uniform over the vocabulary, 16 per sample, batch 256, 50 tags (tag `t` is on when one of
//! the sample's ids `w < 5000` has `w % 50 == t`), features the mean of the 16 embeddings,
//! `Linear(64, 128)`, ReLU, `Linear(128, 50)`, mean binary cross-entropy with logits, SparseAdam
//! for the table and Adam for the head at lr 1e-3, 32 fixed batches cycled.

use kiln::compiler::random;
use kiln::optim::{Adam, Optimizer, Schedule, SparseAdam, SparseUpdates};
use kiln::prelude::*;

use crate::{Feed, Step, mlp};

/// Width of an embedding.
pub const WIDTH: usize = 64;
/// Ids per sample.
pub const LENGTH: usize = 16;
/// Samples per batch.
pub const BATCH: usize = 256;
/// Tags per sample.
pub const TAGS: usize = 50;
/// Fixed batches, cycled.
pub const BATCHES: usize = 32;
/// The learning rate of both rules.
pub const LR: f64 = 1e-3;

/// A training call whose table is updated sparsely: after each call of the compiled `step`,
/// `sparse` applies the row updates returned after the loss.
pub struct SparseStep<'g> {
    /// The compiled call: outputs are the loss, then the row gradients of `sparse`.
    pub step: Step<'g>,
    /// The table's rule and state.
    pub sparse: SparseUpdates,
}

impl SparseStep<'_> {
    /// Runs step `s` (0-based) on `function` (compiled from `self.step`): the call, then the
    /// sparse updates. Returns the loss.
    pub fn run(&mut self, function: &mut Function, s: usize) -> Result<f64> {
        let out = function.call(self.step.feed.at(s))?;
        self.sparse.apply_to_function(function, &out[1..], LR, s as u64 + 1)?;
        Ok(out[0].item().unwrap_or(f64::NAN))
    }
}

/// The 32 batches of W6 over `vocabulary` words: ids `[BATCH, LENGTH]` and tags
/// `[BATCH, TAGS]`, reproducible (drawn with kiln's counter-based generator).
pub fn batches(vocabulary: usize) -> Vec<[Value; 2]> {
    let key = random::draw_key(6, 0);
    let log = (vocabulary as f64).ln();
    (0..BATCHES)
        .map(|b| {
            let mut ids = Vec::with_capacity(BATCH * LENGTH);
            let mut tags = vec![0.0f32; BATCH * TAGS];
            for sample in 0..BATCH {
                for position in 0..LENGTH {
                    let index = ((b * BATCH + sample) * LENGTH + position) as u64;
                    let u = random::uniform(key, index);
                    let id = ((u * log).exp().floor() as i64 - 1).clamp(0, vocabulary as i64 - 1);
                    if id < 5000 {
                        tags[sample * TAGS + id as usize % TAGS] = 1.0;
                    }
                    ids.push(id);
                }
            }
            [Value::i64([BATCH, LENGTH], ids), Value::f32([BATCH, TAGS], tags)]
        })
        .collect()
}

/// W6 with a table of `vocabulary` rows: the graph, the head's Adam updates and the table's
/// SparseAdam.
pub fn word_tags(g: &Graph, vocabulary: usize) -> Result<SparseStep<'_>> {
    let ids = g.typed_input("ids", [BATCH, LENGTH], DType::I64)?;
    let tags = g.input("tags", [BATCH, TAGS])?;
    let table = layers::Embedding::new(g, "embedding", vocabulary, WIDTH)?.sparse()?;
    let features = layers::mean(table.forward(ids)?, &[1], false)?;
    let loss = layers::binary_cross_entropy_with_logits(mlp(g, features, &[WIDTH, 128, TAGS])?, tags)?;
    let head: Vec<Tensor<'_>> = g
        .params()
        .into_iter()
        .filter(|(_, name, trainable)| *trainable && name.starts_with("layer"))
        .map(|p| p.0)
        .collect();
    let (grads, rows) = g.grad_rows(loss, &head, &[table.weight])?;
    let schedule = Schedule::inputs(g)?;
    let updates = Adam::new().updates(g, &head, &grads, &schedule)?;
    let sparse = SparseUpdates::new(g, &rows, &SparseAdam::new())?;
    let mut outputs = vec![loss];
    outputs.extend(sparse.outputs(&rows));
    let batches = batches(vocabulary).into_iter().map(Vec::from).collect();
    let feed = Feed::new(batches, |s| Schedule::values(LR, s as u64 + 1).to_vec());
    let step = Step { inputs: vec![ids, tags, schedule.lr, schedule.step], outputs, updates, feed };
    Ok(SparseStep { step, sparse })
}
