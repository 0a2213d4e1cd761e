//! Freezing a pre-trained layer and training a new head on top of it.
//!
//! First an encoder (two ReLU layers) is pre-trained with a head on the notebook's task,
//! `y > sin(3x)`. Then a new model reuses that encoder, its weights loaded by name and frozen,
//! and trains only a new head on another task, `x² + y² < 1`. The example shows that the
//! frozen weights come out bit for bit unchanged, and that the compiled training step has no
//! backward pass for them: it runs fewer matmuls than the same step with the encoder trainable.
//!
//! Run: `cargo run --release --example freeze_pretrained`

use kiln::prelude::*;

model! {
    /// The part worth reusing.
    pub struct Encoder {
        layer1: Linear(2 => 32),
        layer2: Linear(32 => 32),
    }
    fn forward(&self, x: [B, 2]) -> [B, 32] {
        let h = relu(self.layer1(x));
        relu(self.layer2(h))
    }
}

model! {
    /// An encoder and a head: `encoder.layer1.weight`, ..., `head.bias`.
    pub struct Classifier {
        encoder: Encoder,
        head: Linear(32 => 2),
    }
    fn forward(&self, x: [B, 2]) -> [B, 2] {
        self.head(self.encoder(x))
    }
}

const BATCH: usize = 4096;

/// Labels of a batch drawn from the step counter: the notebook's target, or the unit disc.
fn labels<'g>(points: Tensor<'g>, disc: bool) -> Result<Tensor<'g>> {
    let (x, y) = (points.slice(1, 0, 1)?, points.slice(1, 1, 2)?);
    let inside = if disc { (x * x + y * y).lt(1.0)? } else { y.gt((x * 3.0).sin()?)? };
    inside.cast(DType::I64)?.reshape([BATCH])
}

fn accuracy<'g>(logits: Tensor<'g>, labels: Tensor<'g>) -> Result<Tensor<'g>> {
    let predicted_one = logits.slice(1, 1, 2)?.gt(logits.slice(1, 0, 1)?)?.cast(DType::I64)?.reshape([BATCH])?;
    layers::mean_all(predicted_one.eq(labels)?)
}

/// The training objective of `model` on a task, with a fresh batch per step.
fn objective<'g>(g: &'g Graph, model: &Classifier<'g>, disc: bool, seed: u64) -> Result<Objective<'g>> {
    let step = g.typed_input("step", Shape::scalar(), DType::I64)?;
    let points = g.random_normal([BATCH, 2], seed, step)?;
    let (logits, labels) = (model.forward(points)?, labels(points, disc)?);
    let loss = layers::cross_entropy(logits, labels)?;
    Ok(Objective { loss, inputs: vec![step], metrics: vec![("accuracy".into(), accuracy(logits, labels)?)] })
}

fn run(trainer: &mut Trainer, steps: u64) -> Result<f64> {
    let mut accuracy = 0.0;
    for step in 0..steps {
        accuracy = trainer.step(&[Value::i64([], vec![step as i64])])?.metrics[0].1;
    }
    Ok(accuracy)
}

fn matmuls(function: &Function) -> usize {
    function.listing().lines().filter(|line| line.contains(" matmul ")).count()
}

fn main() -> Result<()> {
    let adam = Adam::new();

    // 1. Pre-train encoder and head on the notebook's task.
    let g = Graph::new();
    let model = Classifier::new(&g)?;
    let mut pretraining = Trainer::new(&g, &objective(&g, &model, false, 1)?, &Settings::new(&adam, 0.01))?;
    let accuracy = run(&mut pretraining, 400)?;
    println!("pre-trained on y > sin(3x): batch accuracy {accuracy:.4}");
    let pretrained = pretraining.params();

    // 2. A new model for the disc: load the encoder by name, freeze it, train a new head.
    let g = Graph::new();
    let model = Classifier::new(&g)?;
    let frozen = g.set_trainable_prefix("encoder", false)?;
    println!("\n{model}\n({frozen} params frozen under `encoder`)");
    let mut fine_tuning = Trainer::new(&g, &objective(&g, &model, true, 2)?, &Settings::new(&adam, 0.01))?;
    let mut encoder = ParamStore::new();
    for (name, _) in model.encoder.named_parameters() {
        encoder.set(&name, pretrained.get(&name).expect("the pre-trained model has the encoder").clone());
    }
    fine_tuning.set_params(&encoder)?;
    let before = fine_tuning.params();
    let accuracy = run(&mut fine_tuning, 400)?;
    println!("new head on x² + y² < 1 over the frozen encoder: batch accuracy {accuracy:.4}");

    let after = fine_tuning.params();
    let same = |name: &String| after.get(name) == before.get(name);
    let unchanged = model.encoder.named_parameters().iter().all(|(name, _)| same(name));
    println!("encoder weights bit for bit as pre-trained: {unchanged}");
    let head_moved = layers::named_parameters(&model.head).iter().all(|(name, _)| !same(name));
    println!("head weights changed by training: {head_moved}");

    // 3. The same step with the encoder trainable, for comparison.
    let g = Graph::new();
    let model = Classifier::new(&g)?;
    let everything = Trainer::new(&g, &objective(&g, &model, true, 2)?, &Settings::new(&adam, 0.01))?;
    println!(
        "compiled step: {} matmuls with the encoder frozen, {} with it trainable (no weight or input \
         gradients for the frozen layers)",
        matmuls(fine_tuning.function()),
        matmuls(everything.function())
    );
    Ok(())
}
