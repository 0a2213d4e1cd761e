//! Weight decay by parameter group, as practitioners do it: decay for weight matrices, none
//! for biases, none for 1-D params (norm layers' scales and shifts), and none for the names in
//! a skip list (the embedding, here).
//!
//! A bag-of-embeddings classifier learns how many of three tokens come from the upper half
//! of the vocabulary. The example prints every param with its group, trains with AdamW
//! (decay 0.1) on the decayed group and Adam on the rest, and shows what decay did: each
//! param's norm after training next to a run without any decay.
//!
//! Run: `cargo run --release --example weight_decay_groups`

use kiln::prelude::*;

model! {
    /// Counts tokens of the upper half: embedding, norm, hidden layer, 4 classes.
    struct Classifier {
        embed: Embedding(32 => 16),
        norm: LayerNorm(16),
        hidden: Linear(16 => 32),
        out: Linear(32 => 4),
    }
    fn forward(&self, tokens: i64[B, T]) -> [B, 4] {
        let h = self.norm(self.embed(tokens));
        let pooled = h.sum(&[1], false)?;
        let h = relu(self.hidden(pooled));
        self.out(h)
    }
}

const BATCH: usize = 256;
const TOKENS: usize = 3;
const STEPS: u64 = 300;

/// A batch of token rows and their labels (the count of tokens ≥ 16), from a small LCG.
fn batch(step: u64) -> [Value; 2] {
    let mut state = step.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    let mut next = || {
        state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        ((state >> 33) % 32) as i64
    };
    let tokens: Vec<i64> = (0..BATCH * TOKENS).map(|_| next()).collect();
    let labels = tokens.chunks(TOKENS).map(|row| row.iter().filter(|&&t| t >= 16).count() as i64).collect();
    [Value::i64([BATCH, TOKENS], tokens), Value::i64([BATCH], labels)]
}

/// Trains the classifier with `optimizer`; returns the final loss and every param's L2 norm.
fn train(
    optimizer: &dyn Optimizer,
    show_groups: Option<&WeightDecayGroups>,
) -> kiln::Result<(f64, Vec<(String, f64)>)> {
    let g = Graph::new();
    let model = Classifier::new(&g)?;
    let [tokens] = model.inputs(&g)?;
    let labels = g.typed_input("labels", [Dim::sym("B")], DType::I64)?;
    let loss = layers::cross_entropy(model.forward(tokens)?, labels)?;
    if let Some(groups) = show_groups {
        println!("{model}\n");
        println!("{:<16} {:>9}  group", "param", "shape");
        for (name, param) in model.named_parameters() {
            let group = if groups.decays(param) { "decay 0.1" } else { "no decay" };
            let why = if groups.decays(param) {
                ""
            } else if name.ends_with(".bias") {
                "  (a bias)"
            } else if groups.skip.iter().any(|s| name.contains(s.as_str())) {
                "  (skip list)"
            } else {
                "  (1-D)"
            };
            println!("{name:<16} {:>9}  {group}{why}", param.shape().to_string());
        }
    }
    let objective = Objective { loss, inputs: vec![tokens, labels], metrics: vec![] };
    let mut trainer = Trainer::new(&g, &objective, &Settings::new(optimizer, 0.01))?;
    let mut last = 0.0;
    for step in 0..STEPS {
        last = trainer.step(&batch(step))?.loss;
    }
    let params = trainer.params();
    let norms = model
        .named_parameters()
        .into_iter()
        .map(|(name, _)| {
            let norm = params.get(&name).map_or(0.0, |v| v.to_f64_vec().iter().map(|x| x * x).sum::<f64>().sqrt());
            (name, norm)
        })
        .collect();
    Ok((last, norms))
}

fn main() -> kiln::Result<()> {
    let groups = WeightDecayGroups::new(Adam::adamw(0.1), Adam::new(), &["embed"]);
    let (decayed_loss, decayed) = train(&groups, Some(&groups))?;
    let (plain_loss, plain) = train(&Adam::new(), None)?;
    println!("\nafter {STEPS} steps: loss {decayed_loss:.4} with the groups, {plain_loss:.4} without any decay");
    println!("{:<16} {:>12} {:>12}", "param", "norm, groups", "norm, plain");
    for ((name, with), (_, without)) in decayed.iter().zip(&plain) {
        println!("{name:<16} {with:>12.4} {without:>12.4}  ({:+.1}%)", 100.0 * (with / without - 1.0));
    }
    println!("the decayed weight matrices end smaller; the other params change only through the changed training");
    Ok(())
}
