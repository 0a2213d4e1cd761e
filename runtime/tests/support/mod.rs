//! What the export tests share: the notebook's MLP built from layers (2 → 20 → 20 → classes,
//! ReLU between) and a fresh temporary folder per test. Each test file uses part of it.
#![allow(dead_code)]

use std::path::PathBuf;

use kiln_compiler::prelude::*;

/// The notebook's MLP over `x` (`[B, 2]`) with `classes` outputs: `layer1` ... `layer3`.
pub fn mlp_logits<'g>(g: &'g Graph, x: Tensor<'g>, classes: usize) -> Result<Tensor<'g>> {
    let mut h = x;
    for (layer, (inputs, outputs)) in [(2, 20), (20, 20), (20, classes)].into_iter().enumerate() {
        h = layers::Linear::new(g, &format!("layer{}", layer + 1), inputs, outputs)?.forward(h)?;
        if layer < 2 {
            h = layers::relu(h)?;
        }
    }
    Ok(h)
}

/// The notebook's MLP (2 classes) and its input `x` (`[B, 2]`).
pub fn mlp(g: &Graph) -> Result<(Tensor<'_>, Tensor<'_>)> {
    let x = g.input("x", [Dim::sym("B"), 2.into()])?;
    Ok((x, mlp_logits(g, x, 2)?))
}

/// A fresh folder `kiln-{suite}-{test}-{process}` under the system's temporary folder.
pub fn temp_dir(suite: &str, test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("kiln-{suite}-{test}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("creating a temporary directory");
    dir
}
