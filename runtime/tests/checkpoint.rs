//! Checkpoints: round trips, resuming bit for bit, integrity, atomic writes, mismatches, and
//! files other safetensors readers load.

use std::path::PathBuf;

use kiln_compiler::prelude::*;
use kiln_runtime::optim::Adam;
use kiln_runtime::{Checkpoint, Objective, Settings, Trainer};

/// A fresh directory for one test's files.
fn scratch(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("kiln-checkpoint-{test}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("a scratch directory");
    dir
}

/// A small model trained with Adam on batches drawn in the graph.
fn trainer(g: &Graph, width: usize) -> Result<Trainer> {
    let step = g.typed_input("step", Shape::scalar(), DType::I64)?;
    let x = g.random_normal([64, 3], 11, step)?;
    let target = x.sum(&[1], true)?.sin()?;
    let hidden = layers::Linear::new(g, "hidden", 3, width)?;
    let out = layers::Linear::new(g, "out", width, 1)?;
    let loss = layers::mse(out.forward(layers::relu(hidden.forward(x)?)?)?, target)?;
    let adam = Adam::new();
    Trainer::new(g, &Objective { loss, inputs: vec![step], metrics: vec![] }, &Settings::new(&adam, 0.01))
}

fn counter(s: u64) -> Vec<Value> {
    vec![Value::i64([], vec![s as i64])]
}

#[test]
fn resuming_from_a_checkpoint_gives_the_same_bits() -> Result<()> {
    let dir = scratch("resume");
    let path = dir.join("model.safetensors");
    let g = Graph::new();
    let mut straight = trainer(&g, 8)?;
    for s in 0..20 {
        straight.step(&counter(s))?;
    }
    let g1 = Graph::new();
    let mut first = trainer(&g1, 8)?;
    for s in 0..12 {
        first.step(&counter(s))?;
    }
    first.save(&path, serde_json::json!({ "width": 8 }))?;
    let g2 = Graph::new();
    let mut resumed = trainer(&g2, 8)?;
    let config = resumed.load(&path)?;
    assert_eq!((config["width"].as_u64(), resumed.steps()), (Some(8), 12));
    for s in 12..20 {
        resumed.step(&counter(s))?;
    }
    let (a, b) = (straight.params(), resumed.params());
    for (name, value) in a.iter() {
        let (x, y) = (value.to_f64_vec(), b.get(name).expect("the same params").to_f64_vec());
        assert!(x.iter().zip(&y).all(|(p, q)| p.to_bits() == q.to_bits()), "{name} differs after resuming");
    }
    Ok(())
}

#[test]
fn a_checkpoint_round_trips_and_other_readers_see_the_model() -> Result<()> {
    let dir = scratch("round-trip");
    let path = dir.join("model.safetensors");
    let g = Graph::new();
    let mut t = trainer(&g, 4)?;
    t.step(&counter(0))?;
    t.save(&path, serde_json::json!({ "note": "after one step" }))?;
    let loaded = Checkpoint::load(&path)?;
    assert_eq!(loaded.params, t.params());
    assert_eq!((loaded.step, loaded.config["note"].as_str()), (1, Some("after one step")));
    // A plain safetensors reader finds the model's params by name, and only those.
    let bytes = std::fs::read(&path).expect("written");
    let file = safetensors::SafeTensors::deserialize(&bytes).expect("a safetensors file");
    let mut names: Vec<&str> = file.names().into_iter().collect();
    names.sort();
    assert_eq!(names, ["hidden.bias", "hidden.weight", "out.bias", "out.weight"]);
    assert_eq!(file.tensor("hidden.weight").expect("present").shape(), [4, 3]);
    let leftovers: Vec<_> =
        std::fs::read_dir(&dir).expect("dir").filter_map(|e| e.ok()).map(|e| e.file_name()).collect();
    assert_eq!(leftovers.len(), 1, "temporary files left: {leftovers:?}");
    Ok(())
}

#[test]
fn truncated_or_corrupted_files_are_errors_and_a_failed_write_keeps_the_old_file() -> Result<()> {
    let dir = scratch("integrity");
    let path = dir.join("model.safetensors");
    let g = Graph::new();
    let mut t = trainer(&g, 4)?;
    t.save(&path, serde_json::Value::Null)?;
    let good = std::fs::read(&path).expect("written");

    std::fs::write(&path, &good[..good.len() - 7]).expect("truncate");
    let error = Checkpoint::load(&path).expect_err("truncated");
    assert!(error.to_string().contains("not a whole safetensors file"), "{error}");

    let mut flipped = good.clone();
    let last = flipped.len() - 1;
    flipped[last] ^= 0x40;
    std::fs::write(&path, &flipped).expect("corrupt");
    let error = Checkpoint::load(&path).expect_err("corrupted");
    assert!(error.to_string().contains("does not match its checksum"), "{error}");

    // A write that cannot finish (its temporary file cannot be created) leaves the old file.
    std::fs::write(&path, &good).expect("restore");
    std::fs::create_dir_all(dir.join(".model.safetensors.partial")).expect("block the temporary file");
    t.step(&counter(0))?;
    let error = t.save(&path, serde_json::Value::Null).expect_err("cannot write");
    assert!(error.to_string().contains("cannot write it"), "{error}");
    assert_eq!(std::fs::read(&path).expect("still there"), good);
    assert_eq!(Checkpoint::load(&path)?.step, 0);
    Ok(())
}

#[test]
fn loading_into_another_model_lists_every_mismatch() -> Result<()> {
    let dir = scratch("mismatch");
    let path = dir.join("model.safetensors");
    let g = Graph::new();
    trainer(&g, 4)?.save(&path, serde_json::Value::Null)?;
    let other = Graph::new();
    let mut wider = trainer(&other, 5)?;
    let error = wider.load(&path).expect_err("shapes differ");
    let message = error.to_string();
    for expected in ["`hidden.weight` is f32 [4, 3], the model's is f32 [5, 3]", "`out.weight` is f32 [1, 4]"] {
        assert!(message.contains(expected), "missing `{expected}` in {message}");
    }
    assert_eq!(wider.steps(), 0, "a failed load changed the trainer");
    Ok(())
}
