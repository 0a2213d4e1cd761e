//! Checkpoints: round trips, resuming bit for bit, integrity, atomic writes, mismatches, and
//! files other safetensors readers load.

use std::path::PathBuf;

use kiln_compiler::Data;
use kiln_compiler::prelude::*;
use kiln_runtime::optim::Adam;
use kiln_runtime::{Checkpoint, IfDiverged, Objective, Settings, Trainer};

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
    // A plain safetensors reader finds the model's params by name, the optimizer's state apart.
    let bytes = std::fs::read(&path).expect("written");
    let file = safetensors::SafeTensors::deserialize(&bytes).expect("a safetensors file");
    let mut names: Vec<&str> = file.names().into_iter().filter(|n| !n.starts_with("optimizer.")).collect();
    names.sort();
    assert_eq!(names, ["hidden.bias", "hidden.weight", "out.bias", "out.weight"]);
    assert!(file.names().iter().any(|n| n.starts_with("optimizer.")), "the optimizer's state is stored as tensors");
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
    assert!(error.to_string().contains("match its checksum"), "{error}");

    // A write that cannot finish (the temporary file's name, longer than the target's, is
    // longer than a file name may be) leaves the old file.
    let long = dir.join("m".repeat(250));
    std::fs::write(&long, &good).expect("a file with a long name");
    t.step(&counter(0))?;
    let error = t.save(&long, serde_json::Value::Null).expect_err("cannot write");
    assert!(error.to_string().contains("cannot write it"), "{error}");
    assert_eq!(std::fs::read(&long).expect("still there"), good);
    assert_eq!(Checkpoint::load(&long)?.step, 0);
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

/// Every single-bit flip anywhere in a checkpoint file (header, metadata, checksum, tensor
/// bytes) is a load error or loads the very same checkpoint: nothing loads altered.
#[test]
fn every_single_bit_flip_is_an_error_or_the_same_checkpoint() -> Result<()> {
    let dir = scratch("bit-flips");
    let path = dir.join("model.safetensors");
    let g = Graph::new();
    let mut t = trainer(&g, 2)?;
    t.step(&counter(0))?;
    t.save(&path, serde_json::json!({ "width": 2, "note": "flip me" }))?;
    let good = std::fs::read(&path).expect("written");
    let original = Checkpoint::load(&path)?;
    let mut altered = Vec::new();
    for bit in 0..good.len() * 8 {
        let mut flipped = good.clone();
        flipped[bit / 8] ^= 1 << (bit % 8);
        if let Ok(loaded) = Checkpoint::from_bytes(&path, &flipped)
            && loaded != original
        {
            altered.push(bit);
        }
    }
    let first: Vec<_> = altered.iter().take(10).collect();
    assert!(
        altered.is_empty(),
        "{} of {} bit flips loaded as another checkpoint (bits {first:?}, ...)",
        altered.len(),
        good.len() * 8
    );
    Ok(())
}

/// Editing the step or the config in the metadata is a load error (the checksum covers them).
#[test]
fn an_edited_step_or_config_is_a_load_error() -> Result<()> {
    let dir = scratch("edited");
    let path = dir.join("model.safetensors");
    let g = Graph::new();
    let mut t = trainer(&g, 2)?;
    for s in 0..20 {
        t.step(&counter(s))?;
    }
    t.save(&path, serde_json::json!({ "width": 2 }))?;
    let good = std::fs::read(&path).expect("written");
    for (from, to) in [(r#"\"step\":20"#, r#"\"step\":80"#), (r#"\"width\":2"#, r#"\"width\":3"#)] {
        let at = good.windows(from.len()).position(|w| w == from.as_bytes()).expect("the metadata holds the field");
        let mut edited = good.clone();
        edited[at..at + to.len()].copy_from_slice(to.as_bytes());
        std::fs::write(&path, edited).expect("edit");
        let error = Checkpoint::load(&path).expect_err("edited");
        assert!(error.to_string().contains("match its checksum"), "{to}: {error}");
    }
    Ok(())
}

/// Optimizer state is stored as tensors in its own dtype: NaN, infinities, -0 and
/// subnormals come back bit for bit.
#[test]
fn optimizer_state_round_trips_bit_for_bit_nan_included() -> Result<()> {
    let dir = scratch("state-bits");
    let path = dir.join("model.safetensors");
    let g = Graph::new();
    let t = trainer(&g, 2)?;
    let mut params = t.params();
    let name = params.iter().map(|(n, _)| n.to_string()).find(|n| n.starts_with("optimizer.")).expect("Adam has state");
    let specials = [f32::NAN, -f32::NAN, f32::INFINITY, f32::NEG_INFINITY, -0.0, 1e-45, f32::from_bits(0x7fc0_1234)];
    let count = params.get(&name).expect("present").shape().iter().product::<usize>();
    let values: Vec<f32> = (0..count).map(|i| specials[i % specials.len()]).collect();
    let shape = params.get(&name).expect("present").shape().to_vec();
    params.set(&name, Value::f32(shape, values.clone()));
    Checkpoint { params, step: 3, config: serde_json::Value::Null }.save(&path)?;
    let loaded = Checkpoint::load(&path)?;
    let Data::F32(back) = loaded.params.get(&name).expect("loaded").data().clone() else { panic!("{name} is not f32") };
    let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    assert_eq!(bits(&back), bits(&values), "{name} changed in the round trip");
    Ok(())
}

/// A diverged checkpoint (a NaN param) does not replace a good one unless the caller asks; it
/// may be written where no good checkpoint is.
#[test]
fn a_diverged_checkpoint_does_not_replace_a_good_one_unless_asked() -> Result<()> {
    let dir = scratch("diverged");
    let path = dir.join("model.safetensors");
    let g = Graph::new();
    let mut t = trainer(&g, 2)?;
    t.save(&path, serde_json::Value::Null)?;
    let good = std::fs::read(&path).expect("written");
    let mut bad = ParamStore::new();
    bad.set("hidden.bias", Value::f32([2], vec![f32::NAN, 1.0]));
    t.set_params(&bad)?;
    let error = t.save(&path, serde_json::Value::Null).expect_err("a diverged checkpoint over a good one");
    assert!(error.to_string().contains("`hidden.bias` is not finite"), "{error}");
    assert_eq!(std::fs::read(&path).expect("still there"), good);
    t.save(&dir.join("diverged.safetensors"), serde_json::Value::Null)?;
    t.save_with(&path, serde_json::Value::Null, IfDiverged::Overwrite)?;
    let loaded = Checkpoint::load(&path)?;
    assert!(loaded.params.get("hidden.bias").expect("loaded").to_f64_vec()[0].is_nan());
    Ok(())
}

/// Two threads saving to one path many times: every save succeeds, and the file always loads
/// (whole, from one writer or the other).
#[test]
fn two_writers_saving_to_one_path_never_fail_and_the_file_always_loads() -> Result<()> {
    let dir = scratch("two-writers");
    let path = dir.join("model.safetensors");
    let g = Graph::new();
    let t = trainer(&g, 2)?;
    let saves: u64 = std::env::var("KILN_CONCURRENT_SAVES").ok().and_then(|n| n.parse().ok()).unwrap_or(200);
    let params = t.params();
    std::thread::scope(|scope| {
        let writers: Vec<_> = (0..2u64)
            .map(|writer| {
                let (path, params) = (&path, &params);
                scope.spawn(move || -> Result<()> {
                    for s in 0..saves {
                        let config = serde_json::json!({ "writer": writer });
                        Checkpoint { params: params.clone(), step: s, config }.save(path)?;
                        let loaded = Checkpoint::load(path)?;
                        assert_eq!(&loaded.params, params);
                    }
                    Ok(())
                })
            })
            .collect();
        writers.into_iter().try_for_each(|w| w.join().expect("a writer panicked"))
    })?;
    let leftovers: Vec<_> =
        std::fs::read_dir(&dir).expect("dir").filter_map(|e| e.ok()).map(|e| e.file_name()).collect();
    assert_eq!(leftovers.len(), 1, "temporary files left: {leftovers:?}");
    Ok(())
}
