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
    let (program, notes) = kernel::lower(&rooted.graph, &rooted.outputs[..1], &pairs, &[])?;
    println!("{}", program.listing());
    for note in &notes {
        println!("{} {}: {}", note.node, note.op, note.decision);
    }
    // Forward: 3 matmuls carrying their bias (and ReLU) as epilogues, then the loss in 3
    // kernels: the rows' maximum, exponentials and sums as one row group, the mean over rows,
    // its negation. Backward: the softmax cross-entropy gradient as one row group, 2
    // input-gradient matmuls carrying the ReLU masks, 3 weight-gradient matmuls, 3 bias
    // gradients (two as column-sum matmuls). Then one update kernel per param: 6.
    let matmuls = program.kernels.iter().filter(|k| matches!(k, kernel::Kernel::MatMul(_))).count();
    assert_eq!(matmuls, 10, "matmul kernels");
    let groups = program.kernels.iter().filter(|k| matches!(k, kernel::Kernel::Rows(_))).count();
    assert_eq!(groups, 2, "row groups");
    assert_eq!(program.kernels.len(), 21, "kernels in all");
    // Every SGD update is written in place, and temporaries share slots, two or more to a
    // slot (a row group keeps every buffer it touches alive across the whole group).
    assert!(program.updates.is_empty(), "updates left to copy: {:?}", program.updates);
    let temporaries = program.slots.iter().flatten().count();
    let slots = program.slots.iter().flatten().max().map_or(0, |s| s + 1);
    assert!(slots * 2 <= temporaries, "{temporaries} temporaries in {slots} slots");
    Ok(())
}

/// Every fusion decision carries its reason, and every node that gets a kernel of its own
/// says why, so `KILN_DUMP=fusion` answers "why was this not fused?".
#[test]
fn every_fusion_decision_has_a_reason() -> Result<()> {
    let g = Graph::new();
    let x = g.input("x", [Dim::sym("B"), 40.into()])?;
    let y = layers::softmax(x.exp()?, 1)?.sum(&[0], false)?;
    let rooted = passes::optimize(&g, &ids(&[y]));
    let (_, notes) = kernel::lower(&rooted.graph, &rooted.outputs, &[], &[])?;
    assert!(!notes.is_empty());
    for note in &notes {
        let reasoned =
            note.decision.starts_with("fused into") || note.decision.contains(": ") || note.decision == "leaf";
        assert!(reasoned, "{} {}: `{}` gives no reason", note.node, note.op, note.decision);
    }
    // The max and sum inside the softmax run over 40 elements: too many to unroll.
    let inner: Vec<&kernel::FusionNote> =
        notes.iter().filter(|n| (n.op == "reduce_max" || n.op == "sum") && !n.decision.contains("an output")).collect();
    assert_eq!(inner.len(), 2, "{notes:?}");
    assert!(inner.iter().all(|n| n.decision.contains("reduction over more than 8 elements")), "{inner:?}");
    Ok(())
}
