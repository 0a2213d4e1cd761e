//! `model!`'s `Embedding(count => dim, sparse)` trained through the facade: the table's
//! gradient is row updates, and a step moves only the rows looked up.

use kiln::optim::SparseAdam;
use kiln::prelude::*;

model! {
    /// Mean of word embeddings, then a linear head.
    struct Bag {
        words: Embedding(20 => 4, sparse),
        head: Linear(4 => 2),
    }
    fn forward(&self, ids: i64[B, T]) -> [B, 2] {
        self.head(layers::mean(self.words(ids), &[1], false)?)
    }
}

#[test]
fn a_sparse_embedding_in_model_moves_only_the_rows_looked_up() -> Result<()> {
    let g = Graph::new();
    let bag = Bag::new(&g)?;
    assert!(g.sparse("words.weight").is_some(), "the table is marked sparse");
    assert!(g.sparse("head.weight").is_none());
    let ids = g.typed_input("ids", [3, 2], DType::I64)?;
    let labels = g.typed_input("labels", [3], DType::I64)?;
    let loss = layers::cross_entropy(bag.forward(ids)?, labels)?;
    let objective = Objective { loss, inputs: vec![ids, labels], metrics: vec![] };
    let (adam, sparse_adam) = (Adam::new(), SparseAdam::new());
    let settings = Settings { sparse: Some(&sparse_adam), diagnose: |_| false, ..Settings::new(&adam, 0.1) };
    let mut trainer = Trainer::new(&g, &objective, &settings)?;
    let before = trainer.params().get("words.weight").expect("the table").to_f32_vec();
    let looked_up = [3usize, 3, 7, 0, 19, 7];
    let id_values = Value::i64([3, 2], looked_up.iter().map(|&i| i as i64).collect());
    trainer.step(&[id_values, Value::i64([3], vec![0, 1, 1])])?;
    let after = trainer.params().get("words.weight").expect("the table").to_f32_vec();
    for row in 0..20 {
        let moved = before[row * 4..row * 4 + 4] != after[row * 4..row * 4 + 4];
        assert_eq!(moved, looked_up.contains(&row), "row {row}");
    }
    Ok(())
}
