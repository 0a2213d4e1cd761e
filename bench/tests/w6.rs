//! W6 word-tags against the reference interpreter: the compiled step and the interpreter's, each
//! followed by the same sparse rule, give the same losses and params over a few steps; rows not
//! looked up keep their bits; and no kernel of the step runs over the table's rows.

use kiln::prelude::*;
use kiln_bench::w6;

#[test]
fn w6_word_tags_with_sparse_adam_against_the_interpreter() -> Result<()> {
    const STEPS: usize = 3;
    let (g, h) = (Graph::new(), Graph::new());
    let mut compiled = w6::word_tags(&g, 100_000)?;
    let mut reference = w6::word_tags(&h, 100_000)?;
    let mut f = compiled.step.compile(&g)?;
    let listing = f.listing();
    assert!(
        !listing.contains("scatter_add") && !listing.contains("< 100000"),
        "a kernel runs over the table:\n{listing}"
    );
    let mut store = f.params();
    let initial = store.get("embedding.weight").expect("the table").to_f32_vec();
    let interpreter = Interpreter::new(&h);
    let close = |a: f64, b: f64, tolerance: f64| (a - b).abs() <= tolerance * b.abs().max(1.0);
    let mut touched = vec![false; 100_000];
    for s in 0..STEPS {
        let values = reference.step.feed.values(s);
        let ids = &values[0];
        (0..ids.numel()).for_each(|i| touched[ids.data().get_i64(i) as usize] = true);
        let loss = compiled.run(&mut f, s)?;
        let mut feeds = Feeds::new();
        for (input, value) in reference.step.inputs.iter().zip(&values) {
            feeds.insert(&input.name().expect("inputs are named"), value.clone());
        }
        let mut wanted = reference.step.outputs.clone();
        wanted.extend(reference.step.updates.iter().map(|(_, value)| *value));
        let out = interpreter.run(&feeds, &store, &wanted)?;
        let want = out[0].item().expect("a scalar loss");
        assert!(close(loss, want, 1e-5), "step {s}: compiled loss {loss}, interpreter {want}");
        let outputs = reference.step.outputs.len();
        for ((param, _), value) in reference.step.updates.iter().zip(&out[outputs..]) {
            store.set(&param.name().expect("params are named"), value.clone());
        }
        reference.sparse.apply_to_store(&mut store, &out[1..outputs], w6::LR, s as u64 + 1)?;
    }
    let params = f.params();
    assert_eq!(params.len(), store.len(), "the same params");
    for (name, value) in store.iter() {
        let got = params.get(name).expect("the same params");
        // `zip` stops at the shorter side: the shapes first, so a short param cannot pass.
        assert_eq!(got.shape(), value.shape(), "{name}: shape");
        let got = got.to_f64_vec();
        for (k, (a, b)) in got.iter().zip(value.to_f64_vec()).enumerate() {
            assert!(close(*a, b, 1e-4), "{name}[{k}] after {STEPS} steps: compiled {a}, interpreter {b}");
        }
    }
    let table = params.get("embedding.weight").expect("the table").to_f32_vec();
    let untouched = (0..100_000).filter(|&row| !touched[row]).collect::<Vec<_>>();
    assert!(untouched.len() > 90_000, "most rows are never looked up in {STEPS} steps");
    for row in untouched {
        let (now, before) = (&table[row * 64..row * 64 + 64], &initial[row * 64..row * 64 + 64]);
        assert!(now.iter().zip(before).all(|(a, b)| a.to_bits() == b.to_bits()), "row {row} moved");
    }
    Ok(())
}
