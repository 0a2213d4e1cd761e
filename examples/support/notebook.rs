//! The reference notebook's model and task, shared by the examples that train it
//! (`gradient_scales`, `custom_optimizer`, `export_classifier`) and by the `model!` tests.
//!
//! In: a graph. Out: the notebook's MLP (2 → 20 → 20 → 2 with ReLU), its labels (`y > sin(3x)`
//! for a point `(x, y)`), the accuracy of its logits, and the training objective on a batch of
//! normal points drawn inside the graph from the step counter.

use kiln::prelude::*;

/// The seed of the training points (the step counter picks the batch).
pub const DATA_SEED: u64 = 2024;

model! {
    /// The notebook's MLP: `layer1.weight` ... `layer3.bias`, PyTorch's default initialisation.
    pub struct Mlp {
        layer1: Linear(2 => 20),
        layer2: Linear(20 => 20),
        layer3: Linear(20 => 2),
    }
    fn forward(&self, x: [B, 2]) -> [B, 2] {
        let h = relu(self.layer1(x));
        let h = relu(self.layer2(h));
        self.layer3(h)
    }
}

/// The notebook's `classify_target`: 1 where `y > sin(3x)`, as i64 labels of shape `[n]`.
pub fn classify_target<'g>(points: Tensor<'g>, n: impl Into<Dim>) -> Result<Tensor<'g>> {
    let (x, y) = (points.slice(1, 0, 1)?, points.slice(1, 1, 2)?);
    y.gt((x * 3.0).sin()?)?.cast(DType::I64)?.reshape([n.into()])
}

/// The fraction of rows whose larger logit is the label's.
pub fn accuracy<'g>(logits: Tensor<'g>, labels: Tensor<'g>, n: usize) -> Result<Tensor<'g>> {
    let predicted_one = logits.slice(1, 1, 2)?.gt(logits.slice(1, 0, 1)?)?.cast(DType::I64)?.reshape([n])?;
    layers::mean_all(predicted_one.eq(labels)?)
}

/// What to train: the loss on a batch of `batch` normal points drawn inside the graph from the
/// step counter (the notebook draws `randn` at every step), and the accuracy on that batch.
pub fn objective<'g>(g: &'g Graph, model: &Mlp<'g>, batch: usize) -> Result<Objective<'g>> {
    let step = g.typed_input("step", Shape::scalar(), DType::I64)?;
    let points = g.random_normal([batch, 2], DATA_SEED, step)?;
    let labels = classify_target(points, batch)?;
    let logits = model.forward(points)?;
    let loss = layers::cross_entropy(logits, labels)?;
    let metrics = vec![("accuracy".into(), accuracy(logits, labels, batch)?)];
    Ok(Objective { loss, inputs: vec![step], metrics })
}
