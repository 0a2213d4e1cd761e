//! Initializers: the rules PyTorch documents, seeded and reproducible.

use kiln_compiler::gain;
use kiln_compiler::prelude::*;

fn values(init: Init, shape: &[usize], seed: u64) -> Vec<f64> {
    let g = Graph::new();
    g.param("w", shape.to_vec(), init).expect("a param");
    ParamStore::init(&g, seed).get("w").expect("initialised").to_f64_vec()
}

fn std(xs: &[f64]) -> f64 {
    let mean = xs.iter().sum::<f64>() / xs.len() as f64;
    (xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / xs.len() as f64).sqrt()
}

#[test]
fn kaiming_follows_its_fan_and_gain() {
    // [out 64, in 256]: fan_in 256, fan_out 64.
    let shape = [64, 256];
    let tanh = gain("tanh", 0.0);
    let uniform = values(Init::Kaiming { normal: false, fan: Fan::Out, gain: tanh }, &shape, 1);
    let bound = tanh * (3.0f64 / 64.0).sqrt();
    assert!(uniform.iter().all(|x| x.abs() <= bound + 1e-6));
    assert!(uniform.iter().any(|x| x.abs() > 0.95 * bound), "the bound is reached");
    let normal = values(Init::Kaiming { normal: true, fan: Fan::In, gain: gain("relu", 0.0) }, &shape, 2);
    let want = (2.0f64 / 256.0).sqrt();
    assert!((std(&normal) - want).abs() < 0.05 * want, "std {} vs {want}", std(&normal));
    // The shorthand is gain √2 over fan_in.
    let shorthand = values(Init::KaimingUniform, &shape, 3);
    let explicit = values(Init::Kaiming { normal: false, fan: Fan::In, gain: 2f64.sqrt() }, &shape, 3);
    assert!(shorthand.iter().zip(&explicit).all(|(a, b)| (a - b).abs() < 1e-6));
}

#[test]
fn gains_are_pytorchs() {
    assert_eq!(gain("linear", 0.0), 1.0);
    assert_eq!(gain("sigmoid", 0.0), 1.0);
    assert_eq!(gain("tanh", 0.0), 5.0 / 3.0);
    assert_eq!(gain("selu", 0.0), 0.75);
    assert!((gain("relu", 0.0) - 2f64.sqrt()).abs() < 1e-15);
    assert!((gain("leaky_relu", 0.01) - (2.0f64 / 1.0001).sqrt()).abs() < 1e-15);
}

#[test]
fn orthogonal_matrices_are_orthonormal_wide_or_tall() {
    for (rows, columns) in [(4, 9), (9, 4), (5, 5)] {
        let w = values(Init::Orthogonal { gain: 2.0 }, &[rows, columns], 7);
        // The smaller side's vectors are orthonormal (times the gain).
        let wide = rows <= columns;
        let (vectors, length) = if wide { (rows, columns) } else { (columns, rows) };
        let at = |v: usize, i: usize| if wide { w[v * columns + i] } else { w[i * columns + v] };
        for a in 0..vectors {
            for b in 0..vectors {
                let dot: f64 = (0..length).map(|i| at(a, i) * at(b, i)).sum();
                let want = if a == b { 4.0 } else { 0.0 };
                assert!((dot - want).abs() < 1e-4, "[{rows}, {columns}]: <{a}, {b}> = {dot}");
            }
        }
    }
}

#[test]
fn the_same_seed_gives_the_same_bits() {
    for init in [Init::Orthogonal { gain: 1.0 }, Init::KaimingNormal, Init::XavierUniform] {
        assert_eq!(values(init.clone(), &[6, 3], 5), values(init.clone(), &[6, 3], 5));
        assert_ne!(values(init.clone(), &[6, 3], 5), values(init, &[6, 3], 6));
    }
}
