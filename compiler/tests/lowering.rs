//! Lowering graphs to kernel programs: fusion decisions and kernel counts.

use kiln_compiler::prelude::*;
use kiln_compiler::{NodeId, kernel, passes};

fn ids(tensors: &[Tensor]) -> Vec<NodeId> {
    tensors.iter().map(|t| t.id().expect("built")).collect()
}

#[test]
fn the_notebook_training_step_lowers_to_few_kernels() -> Result<()> {
    let g = Graph::new();
    let x = g.input("x", [Dim::sym("B"), 2.into()])?;
    let labels = g.typed_input("labels", [Dim::sym("B")], DType::I64)?;
    let l1 = layers::Linear::new(&g, "layer1", 2, 20)?;
    let l2 = layers::Linear::new(&g, "layer2", 20, 20)?;
    let l3 = layers::Linear::new(&g, "layer3", 20, 2)?;
    let h = layers::relu(l1.forward(x)?)?;
    let h = layers::relu(l2.forward(h)?)?;
    let loss = layers::cross_entropy(l3.forward(h)?, labels)?;
    let params: Vec<Tensor> = g.params().iter().map(|(t, _, _)| *t).collect();
    let grads = g.grad(loss, &params)?;
    let updates: Vec<Tensor> = params.iter().zip(&grads).map(|(p, d)| p.sub(d.mul(0.01)?)).collect::<Result<_>>()?;
    let mut roots = vec![loss];
    roots.extend(&updates);
    let rooted = passes::optimize(&g, &ids(&roots));
    let pairs: Vec<(NodeId, NodeId)> = ids(&params).into_iter().zip(rooted.outputs[1..].iter().copied()).collect();
    let (program, notes) = kernel::lower(&rooted.graph, &rooted.outputs[..1], &pairs)?;
    println!("{}", program.listing());
    for note in &notes {
        println!("{} {}: {}", note.node, note.op, note.decision);
    }
    assert!(program.kernels.len() < 40, "{} kernels", program.kernels.len());
    Ok(())
}
