//! Each pass alone, as listings before and after, and the whole pipeline on a training graph
//! checked against the interpreter.

use kiln_compiler::passes::{self, Rooted};
use kiln_compiler::prelude::*;
use kiln_compiler::{NodeId, Op, random};

fn ids(tensors: &[Tensor]) -> Vec<NodeId> {
    tensors.iter().map(|t| t.id().expect("built")).collect()
}

fn assert_listing(rooted: &Rooted, expected: &str) {
    assert_eq!(rooted.listing(), expected, "\nactual listing:\n{}", rooted.listing());
}

/// Feeds of standard-normal values for the named inputs of the given shapes.
fn random_feeds(inputs: &[(&str, Vec<usize>)], seed: u64) -> Feeds {
    let mut feeds = Feeds::new();
    for (i, (name, shape)) in inputs.iter().enumerate() {
        let key = random::draw_key(seed, i as u64);
        let n: usize = shape.iter().product();
        let values = (0..n as u64).map(|k| random::normal(key, k) as f32).collect();
        feeds.insert(name, Value::f32(shape.clone(), values));
    }
    feeds
}

/// The rewritten graph gives the original's values for the same feeds and params.
fn assert_same_values(g: &Graph, outputs: &[Tensor], rooted: &Rooted, feeds: &Feeds) {
    let params = ParamStore::init(g, 3);
    let before = Interpreter::new(g).run(feeds, &params, outputs).expect("runs before");
    let after_outputs: Vec<Tensor> = rooted.outputs.iter().map(|&id| rooted.graph.tensor(id).expect("node")).collect();
    let after = Interpreter::new(&rooted.graph).run(feeds, &params, &after_outputs).expect("runs after");
    for (b, a) in before.iter().zip(&after) {
        assert_eq!(b.shape(), a.shape());
        for (x, y) in b.to_f64_vec().iter().zip(a.to_f64_vec()) {
            assert!((x - y).abs() <= 1e-6 * (1.0 + x.abs()), "{x} vs {y}");
        }
    }
}

#[test]
fn simplify_removes_identities() -> Result<()> {
    let g = Graph::new();
    let x = g.input("x", [Dim::sym("B"), 3.into()])?;
    let a = (x + 0.0) * 1.0;
    let b = a.div(g.ones([3]))?; // the result keeps x's shape, so this goes too
    let c = -(-b);
    let d = c.t()?.t()?;
    let out = d.powf(1.0)?;
    let simplified = passes::simplify(&g, &ids(&[out]));
    let rooted = passes::eliminate_dead_code(&simplified.graph, &simplified.outputs);
    assert_listing(&rooted, "%0 = input \"x\" : [B, 3] f32\noutputs: %0\n");
    Ok(())
}

#[test]
fn simplify_keeps_an_identity_that_broadcasts() -> Result<()> {
    let g = Graph::new();
    let x = g.input("x", [3])?;
    let out = x.add(g.zeros([2, 3]))?; // x + 0, but the result is [2, 3]: it must stay
    let rooted = passes::simplify(&g, &ids(&[out]));
    assert_listing(
        &rooted,
        "%0 = input \"x\" : [3] f32\n%1 = fill 0 : [2, 3] f32\n%2 = add(%0, %1) : [2, 3] f32\noutputs: %2\n",
    );
    Ok(())
}

#[test]
fn a_sum_of_a_broadcast_becomes_a_scaled_value() -> Result<()> {
    let g = Graph::new();
    let x = g.input("x", [Dim::sym("B"), 1.into()])?;
    let wide = x.broadcast_to(Shape::of([Dim::sym("B"), 4.into()]))?;
    let out = wide.sum(&[1], false)?;
    let rooted = passes::optimize(&g, &ids(&[out]));
    assert_listing(
        &rooted,
        "%0 = input \"x\" : [B, 1] f32\n%1 = fill 4 : [] f32\n%2 = mul(%0, %1) : [B, 1] f32\n\
         %3 = reshape(%2) : [B] f32\noutputs: %3\n",
    );
    assert_same_values(&g, &[out], &rooted, &random_feeds(&[("x", vec![5, 1])], 1));
    Ok(())
}

#[test]
fn a_sum_over_a_symbolic_broadcast_counts_at_run_time() -> Result<()> {
    let g = Graph::new();
    let x = g.input("x", [3])?;
    let batch = g.input("batch", [Dim::sym("B"), 3.into()])?;
    let wide = x.broadcast_to(batch.shape())?;
    let out = wide.sum(&[0], false)?.add(batch.sum(&[0], false)?)?;
    let rooted = passes::optimize(&g, &ids(&[out]));
    assert!(rooted.listing().contains("dim_size B"), "{}", rooted.listing());
    assert_same_values(&g, &[out], &rooted, &random_feeds(&[("x", vec![3]), ("batch", vec![7, 3])], 2));
    Ok(())
}

#[test]
fn permutes_compose() -> Result<()> {
    let g = Graph::new();
    let x = g.input("x", [2, 3, 4])?;
    let out = x.permute(&[1, 2, 0])?.permute(&[2, 0, 1])?.permute(&[0, 2, 1])?;
    let rooted = passes::optimize(&g, &ids(&[out]));
    assert_listing(
        &rooted,
        "%0 = input \"x\" : [2, 3, 4] f32\n%1 = permute(%0) perm=[0, 2, 1] : [2, 4, 3] f32\noutputs: %1\n",
    );
    assert_same_values(&g, &[out], &rooted, &random_feeds(&[("x", vec![2, 3, 4])], 3));
    Ok(())
}

#[test]
fn constants_fold_and_random_ops_do_not() -> Result<()> {
    let g = Graph::new();
    let x = g.input("x", [3])?;
    let step = g.typed_input("step", Shape::scalar(), DType::I64)?;
    let c = g.constant(Value::f32([3], vec![1.0, 2.0, 3.0])).exp()?.add(g.ones([3]))?;
    let noise = g.random_uniform([3], 1, step)?;
    let out = x.mul(c)?.add(noise)?;
    let folded = passes::fold_constants(&g, &ids(&[out]));
    let rooted = passes::eliminate_dead_code(&folded.graph, &folded.outputs);
    assert_listing(
        &rooted,
        "%0 = input \"x\" : [3] f32\n%1 = input \"step\" : [] i64\n%2 = constant [3] : [3] f32\n\
         %3 = random_uniform(%1) seed=1 : [3] f32\n%4 = mul(%0, %2) : [3] f32\n%5 = add(%4, %3) : [3] f32\n\
         outputs: %5\n",
    );
    let Op::Constant(value) = rooted.graph.node(NodeId(2)).op else { unreachable!("checked by the listing") };
    let expected: Vec<f32> = [1f32, 2.0, 3.0].iter().map(|v| v.exp() + 1.0).collect();
    assert_eq!(value.to_f32_vec(), expected);
    Ok(())
}

/// Folding computes in the node's dtype: an `f64` graph's folded constant is the double
/// `0.1 + 1e-5`, an `f32` graph's the `f32` sum of the `f32` roundings, as before.
#[test]
fn folded_constants_keep_the_precision_of_their_dtype() -> Result<()> {
    for (dtype, expected) in [(DType::F64, 0.1 + 1e-5), (DType::F32, f64::from(0.1f32 + 1e-5f32))] {
        let g = Graph::new();
        let x = g.input_of("x", [3], dtype)?;
        let out = x.mul(g.scalar_of(0.1, dtype).add(1e-5)?)?;
        let folded = passes::fold_constants(&g, &ids(&[out]));
        let rooted = passes::eliminate_dead_code(&folded.graph, &folded.outputs);
        let node = rooted.graph.node(NodeId(1));
        let Op::Constant(value) = node.op else { panic!("{dtype}: not folded:\n{}", rooted.listing()) };
        assert_eq!((value.dtype(), value.item()), (dtype, Some(expected)), "{dtype}");
    }
    Ok(())
}

#[test]
fn common_subexpressions_merge_and_dead_code_goes() -> Result<()> {
    let g = Graph::new();
    let x = g.input("x", [4])?;
    let unused = g.input("unused", [4])?;
    let a = x.exp()?.mul(2.0)?;
    let b = x.exp()?.mul(2.0)?;
    let _dead = unused.sin()?;
    let out = a.add(b)?;
    let merged = passes::eliminate_common_subexpressions(&g, &ids(&[out]));
    let rooted = passes::eliminate_dead_code(&merged.graph, &merged.outputs);
    assert_listing(
        &rooted,
        "%0 = input \"x\" : [4] f32\n%1 = input \"unused\" : [4] f32\n%2 = exp(%0) : [4] f32\n\
         %3 = fill 2 : [] f32\n%4 = mul(%2, %3) : [4] f32\n%5 = add(%4, %4) : [4] f32\noutputs: %5\n",
    );
    Ok(())
}

#[test]
fn the_pipeline_shrinks_an_mlp_training_step_and_keeps_its_values() -> Result<()> {
    let g = Graph::new();
    let x = g.input("x", [Dim::sym("B"), 2.into()])?;
    let labels = g.typed_input("labels", [Dim::sym("B")], DType::I64)?;
    let l1 = layers::Linear::new(&g, "layer1", 2, 20)?;
    let l2 = layers::Linear::new(&g, "layer2", 20, 2)?;
    let loss = layers::cross_entropy(l2.forward(layers::relu(l1.forward(x)?)?)?, labels)?;
    let params: Vec<Tensor> = g.params().iter().map(|(t, _, _)| *t).collect();
    let grads = g.grad(loss, &params)?;
    let updates: Vec<Tensor> = params.iter().zip(&grads).map(|(p, d)| p.sub(d.mul(0.1)?)).collect::<Result<_>>()?;
    let mut outputs = vec![loss];
    outputs.extend(&updates);
    let rooted = passes::optimize(&g, &ids(&outputs));
    assert!(rooted.graph.len() < g.len(), "{} nodes before, {} after", g.len(), rooted.graph.len());
    let inputs: Vec<String> = rooted.graph.inputs().into_iter().map(|(_, name)| name).collect();
    assert_eq!(inputs, ["x", "labels"]);
    assert_eq!(rooted.graph.params().len(), 4);

    let mut feeds = random_feeds(&[("x", vec![64, 2])], 4);
    feeds.insert("labels", Value::i64([64], (0..64).map(|i| i % 2).collect()));
    assert_same_values(&g, &outputs, &rooted, &feeds);
    Ok(())
}
