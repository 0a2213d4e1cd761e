//! Parameter groups and weight decay, learning-rate factors, gradient clipping and freezing.

use kiln_compiler::prelude::*;
use kiln_runtime::optim::{
    Adam, Optimizer, ParamGroup, Schedule, Sgd, WeightDecayGroups, clip_by_global_norm, clip_by_value, group_updates,
    split_for_weight_decay,
};
use kiln_runtime::{Objective, Settings, Trainer, function};

fn values(f: &kiln_runtime::Function, name: &str) -> Vec<f64> {
    f.params().get(name).unwrap_or_else(|| panic!("no param {name}")).to_f64_vec()
}

/// A model with every kind of param the weight-decay rule tells apart.
fn model(g: &Graph) -> Result<Tensor<'_>> {
    let x = g.input("x", [Dim::sym("B"), 4.into()])?;
    let ids = g.typed_input("ids", [Dim::sym("B")], DType::I64)?;
    let embedding = g.param("embedding.weight", [10, 4], Init::Normal { mean: 0.0, std: 1.0 })?;
    let norm = layers::LayerNorm::new(g, "norm", 4)?;
    let layer = layers::Linear::new(g, "layer", 4, 3)?;
    let h = norm.forward(x + embedding.gather(ids)?)?;
    layers::mean_all(layer.forward(h)?)
}

/// AdamW with zero gradients moves nothing but the decay: the decayed params shrink by exactly
/// `1 - lr·wd`, all others stay bit for bit.
#[test]
fn weight_decay_lands_exactly_where_intended() -> Result<()> {
    let g = Graph::new();
    let loss = model(&g)? * 0.0;
    let params: Vec<Tensor> = g.params().iter().map(|(t, _, _)| *t).collect();
    let (decayed, plain) = split_for_weight_decay(&params, &["embedding"]);
    let names = |ts: &[Tensor]| ts.iter().map(|t| t.name().expect("named")).collect::<Vec<_>>();
    assert_eq!(names(&decayed), ["layer.weight"]);
    assert_eq!(names(&plain), ["embedding.weight", "norm.weight", "norm.bias", "layer.bias"]);
    let grads = g.grad(loss, &params)?;
    let schedule = Schedule::inputs(&g)?;
    let groups = vec![
        ParamGroup { params: decayed, optimizer: Box::new(Adam::adamw(0.1)), lr_scale: 1.0 },
        ParamGroup { params: plain, optimizer: Box::new(Adam::adamw(0.0)), lr_scale: 1.0 },
    ];
    let updates = group_updates(&g, &groups, &params, &grads, &schedule)?;
    let x = g.leaf("x")?;
    let ids = g.leaf("ids")?;
    let mut f = function(&g, &[x, ids, schedule.lr, schedule.step], &[loss], &updates)?;
    let before = f.params();
    let [lr, t] = Schedule::values(0.5, 1);
    f.call(&[Value::f32([2, 4], vec![0.5; 8]), Value::i64([2], vec![1, 7]), lr, t])?;
    for (name, value) in before.iter() {
        let (old, new) = (value.to_f64_vec(), values(&f, name));
        if name == "layer.weight" {
            for (o, n) in old.iter().zip(&new) {
                let want = ((*o as f32) * (1.0 - 0.5f32 * 0.1)) as f64;
                assert!((n - want).abs() <= 1e-7 * want.abs().max(1.0), "{name}: {n}, want {want}");
            }
        } else if !name.starts_with("optimizer.") {
            assert_eq!(old, new, "{name} changed without decay");
        }
    }
    Ok(())
}

/// The same rule as one optimizer, through the `Trainer`: only `layer.weight` decays.
#[test]
fn weight_decay_groups_decay_only_weights_through_the_trainer() -> Result<()> {
    let g = Graph::new();
    let loss = model(&g)? * 0.0;
    let groups = WeightDecayGroups::new(Adam::adamw(0.1), Adam::new(), &["embedding"]);
    let decays: Vec<(String, bool)> = g.params().iter().map(|(t, name, _)| (name.clone(), groups.decays(*t))).collect();
    assert_eq!(decays.iter().filter(|(_, d)| *d).map(|(n, _)| n.as_str()).collect::<Vec<_>>(), ["layer.weight"]);
    let objective = Objective { loss, inputs: vec![g.leaf("x")?, g.leaf("ids")?], metrics: vec![] };
    let mut trainer = Trainer::new(&g, &objective, &Settings::new(&groups, 0.5))?;
    let before = trainer.params();
    trainer.step(&[Value::f32([2, 4], vec![0.5; 8]), Value::i64([2], vec![1, 7])])?;
    let after = trainer.params();
    for (name, value) in before.iter().filter(|(name, _)| !name.starts_with("optimizer.")) {
        let (old, new) = (value.to_f64_vec(), after.get(name).expect("kept").to_f64_vec());
        if name == "layer.weight" {
            for (o, n) in old.iter().zip(&new) {
                let want = ((*o as f32) * (1.0 - 0.5f32 * 0.1)) as f64;
                assert!((n - want).abs() <= 1e-7 * want.abs().max(1.0), "{name}: {n}, want {want}");
            }
        } else {
            assert_eq!(old, new, "{name} changed without decay");
        }
    }
    Ok(())
}

#[test]
fn groups_scale_the_learning_rate_and_refuse_missing_or_doubled_params() -> Result<()> {
    let g = Graph::new();
    let a = g.param("a", [1], Init::ZEROS)?;
    let b = g.param("b", [1], Init::ZEROS)?;
    let loss = (a + b).sum_all()? * -1.0; // gradient -1 for both
    let params = [a, b];
    let grads = g.grad(loss, &params)?;
    let schedule = Schedule::inputs(&g)?;
    fn group(params: Vec<Tensor<'_>>, lr_scale: f64) -> ParamGroup<'_> {
        ParamGroup { params, optimizer: Box::new(Sgd::new()), lr_scale }
    }
    let updates = group_updates(&g, &[group(vec![a], 1.0), group(vec![b], 2.0)], &params, &grads, &schedule)?;
    let mut f = function(&g, &[schedule.lr, schedule.step], &[loss], &updates)?;
    f.call(&Schedule::values(0.25, 1))?;
    assert_eq!((values(&f, "a"), values(&f, "b")), (vec![0.25], vec![0.5]));

    let missing = group_updates(&g, &[group(vec![a], 1.0)], &params, &grads, &schedule).expect_err("b has no group");
    assert!(missing.to_string().contains("param `b` is in no group"), "{missing}");
    let doubled = group_updates(&g, &[group(vec![a, b], 1.0), group(vec![b], 1.0)], &params, &grads, &schedule)
        .expect_err("b twice");
    assert!(doubled.to_string().contains("param `b` is in two groups"), "{doubled}");
    Ok(())
}

#[test]
fn clipping_by_global_norm_and_by_value() -> Result<()> {
    let g = Graph::new();
    let p = g.input("p", [2])?;
    let q = g.input("q", [1])?;
    let (clipped, norm) = clip_by_global_norm(&[p, q], 1.0)?;
    let by_value = clip_by_value(&[p], 3.5)?;
    let feeds = Feeds::from([("p", Value::f32([2], vec![3.0, -4.0])), ("q", Value::f32([1], vec![12.0]))]);
    let out = Interpreter::new(&g).run(&feeds, &ParamStore::new(), &[norm, clipped[0], clipped[1], by_value[0]])?;
    assert!((out[0].item().expect("norm") - 13.0).abs() < 1e-5);
    let scale = 1.0 / (13.0 + 1e-6);
    for (got, want) in out[1].to_f64_vec().iter().chain(&out[2].to_f64_vec()).zip([3.0, -4.0, 12.0]) {
        assert!((got - want * scale).abs() < 1e-6, "{got} vs {}", want * scale);
    }
    assert_eq!(out[3].to_f64_vec(), vec![3.0, -3.5]);
    // Below the limit, nothing changes.
    let (small, _) = clip_by_global_norm(&[p], 100.0)?;
    let out = Interpreter::new(&g).run(&feeds, &ParamStore::new(), &[small[0]])?;
    assert!(out[0].to_f64_vec().iter().zip([3.0, -4.0]).all(|(a, b)| (a - b).abs() < 1e-5));
    Ok(())
}

/// The notebook's MLP with `layer1` frozen: its params stay bit for bit, and the compiled step
/// has no backward computation for them (fewer matmuls: no weight gradient, no bias
/// gradient, no input gradient of layer 2). Unfreezing and compiling again trains it.
#[test]
fn a_frozen_layer_is_untouched_and_costs_no_backward_kernels() -> Result<()> {
    let g = Graph::new();
    let x = g.input("x", [Dim::sym("B"), 2.into()])?;
    let labels = g.typed_input("labels", [Dim::sym("B")], DType::I64)?;
    let mut h = x;
    for (i, (inputs, outputs)) in [(2, 20), (20, 20), (20, 2)].into_iter().enumerate() {
        h = layers::Linear::new(&g, &format!("layer{}", i + 1), inputs, outputs)?.forward(h)?;
        if i < 2 {
            h = layers::relu(h)?;
        }
    }
    let loss = layers::cross_entropy(h, labels)?;
    let step = || -> Result<kiln_runtime::Function> {
        let trainable: Vec<Tensor> = g.params().into_iter().filter(|(_, _, t)| *t).map(|(t, _, _)| t).collect();
        let grads = g.grad(loss, &trainable)?;
        let schedule = Schedule::inputs(&g)?;
        let updates = Sgd::momentum(0.9).updates(&g, &trainable, &grads, &schedule)?;
        function(&g, &[x, labels, schedule.lr, schedule.step], &[loss], &updates)
    };
    let matmuls = |f: &kiln_runtime::Function| f.listing().lines().filter(|l| l.contains(" matmul ")).count();
    let feeds = || {
        let x = Value::f32([8, 2], (0..16).map(|i| (i as f32 * 0.37).sin()).collect());
        let labels = Value::i64([8], (0..8).map(|i| i % 2).collect());
        let [lr, t] = Schedule::values(0.1, 1);
        vec![x, labels, lr, t]
    };

    let full = step()?;
    assert_eq!(g.set_trainable_prefix("layer1", false)?, 2);
    let mut frozen = step()?;
    assert_eq!(matmuls(&frozen), matmuls(&full) - 3, "frozen:\n{}\nfull:\n{}", frozen.listing(), full.listing());
    let before = frozen.params();
    for _ in 0..3 {
        frozen.call(&feeds())?;
    }
    for name in ["layer1.weight", "layer1.bias"] {
        assert_eq!(before.get(name).expect("p").to_f64_vec(), values(&frozen, name), "{name} moved");
    }
    assert_ne!(before.get("layer2.weight").expect("p").to_f64_vec(), values(&frozen, "layer2.weight"));

    // `layer10` would not match `layer1`: prefixes end at a dot. And unknown names are errors.
    let error = g.set_trainable_prefix("layer", false).expect_err("no param is named layer.…");
    assert!(error.to_string().contains("no param named `layer`"), "{error}");
    g.set_trainable_prefix("layer1", true)?;
    let mut unfrozen = step()?;
    unfrozen.call(&feeds())?;
    assert_eq!(matmuls(&unfrozen), matmuls(&full));
    Ok(())
}
