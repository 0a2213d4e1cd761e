//! Snapshots of the two text forms of a graph: `Graph::listing` and `Graph::to_dot`.

use kiln_compiler::prelude::*;

/// A small model: a symbolic batch input, a linear layer, a frozen param, a named node and a
/// constant from an operator.
fn small_graph(g: &Graph) -> Result<()> {
    let x = g.input("x", [Dim::sym("B"), 3.into()])?;
    let layer = layers::Linear::new(g, "fc", 3, 2)?;
    let scale = g.param_with("scale", [2], Init::ONES, false)?;
    let h = layer.forward(x)?.named("h");
    let y = h.mul(scale)?.tanh()?.sum(&[1], true)?;
    let _ = (y * 0.5).named("out");
    Ok(())
}

#[track_caller]
fn assert_text(actual: &str, expected: &str) {
    assert_eq!(actual, expected, "\nactual:\n{actual}");
}

#[test]
fn listing_of_a_small_graph() -> Result<()> {
    let g = Graph::new();
    small_graph(&g)?;
    let expected = r#"%0 = input "x" : [B, 3] f32
%1 = param "fc.weight" : [2, 3] f32 init=uniform(-0.57735, 0.57735)
%2 = param "fc.bias" : [2] f32 init=uniform(-0.57735, 0.57735)
%3 = param "scale" : [2] f32 init=constant(1) frozen
%4 = permute(%1) perm=[1, 0] : [3, 2] f32
%5 = matmul(%0, %4) : [B, 2] f32
%6 = add(%5, %2) : [B, 2] f32  # h
%7 = mul(%6, %3) : [B, 2] f32
%8 = tanh(%7) : [B, 2] f32
%9 = sum(%8) axes=[1] keepdims : [B, 1] f32
%10 = fill 0.5 : [] f32
%11 = mul(%9, %10) : [B, 1] f32  # out
"#;
    assert_text(&g.listing(), expected);
    Ok(())
}

#[test]
fn dot_of_a_small_graph() -> Result<()> {
    let g = Graph::new();
    small_graph(&g)?;
    let expected = r#"digraph kiln {
  rankdir=TB;
  node [fontname="monospace"];
  n0 [label="%0 input \"x\"\n[B, 3] f32", shape=box];
  n1 [label="%1 param \"fc.weight\"\n[2, 3] f32", shape=box, style=filled, fillcolor=lightblue];
  n2 [label="%2 param \"fc.bias\"\n[2] f32", shape=box, style=filled, fillcolor=lightblue];
  n3 [label="%3 param \"scale\"\n[2] f32", shape=box, style=filled, fillcolor=lightgrey];
  n4 [label="%4 permute perm=[1, 0]\n[3, 2] f32", shape=ellipse];
  n1 -> n4;
  n5 [label="%5 matmul\n[B, 2] f32", shape=ellipse];
  n0 -> n5;
  n4 -> n5;
  n6 [label="%6 add\n[B, 2] f32\nh", shape=ellipse];
  n5 -> n6;
  n2 -> n6;
  n7 [label="%7 mul\n[B, 2] f32", shape=ellipse];
  n6 -> n7;
  n3 -> n7;
  n8 [label="%8 tanh\n[B, 2] f32", shape=ellipse];
  n7 -> n8;
  n9 [label="%9 sum axes=[1] keepdims\n[B, 1] f32", shape=ellipse];
  n8 -> n9;
  n10 [label="%10 fill 0.5\n[] f32", shape=plaintext];
  n11 [label="%11 mul\n[B, 1] f32\nout", shape=ellipse];
  n9 -> n11;
  n10 -> n11;
}
"#;
    assert_text(&g.to_dot(), expected);
    Ok(())
}

#[test]
fn listing_follows_trainable_flags_and_keeps_leaf_names() -> Result<()> {
    let g = Graph::new();
    small_graph(&g)?;
    g.set_trainable("scale", true)?;
    g.set_trainable("fc.bias", false)?;
    // Leaves keep their own names.
    let x = g.leaf("x")?.named("renamed");
    assert_eq!(x.name().as_deref(), Some("x"));
    let listing = g.listing();
    let lines: Vec<&str> = listing.lines().collect();
    assert_eq!(lines.len(), 12);
    assert_eq!(lines[0], r#"%0 = input "x" : [B, 3] f32"#);
    assert_eq!(lines[2], r#"%2 = param "fc.bias" : [2] f32 init=uniform(-0.57735, 0.57735) frozen"#);
    assert_eq!(lines[3], r#"%3 = param "scale" : [2] f32 init=constant(1)"#);
    let dot = g.to_dot();
    assert!(
        dot.contains(r#"  n2 [label="%2 param \"fc.bias\"\n[2] f32", shape=box, style=filled, fillcolor=lightgrey];"#)
    );
    assert!(
        dot.contains(r#"  n3 [label="%3 param \"scale\"\n[2] f32", shape=box, style=filled, fillcolor=lightblue];"#)
    );
    Ok(())
}

#[test]
fn listing_shows_every_kind_of_attribute() -> Result<()> {
    let g = Graph::new();
    let b = Dim::sym("B");
    let step = g.typed_input("step", Shape::scalar(), DType::I64)?;
    let labels = g.typed_input("labels", [b.clone()], DType::I32)?;
    let table = g.param("table", [4, 2], Init::Values(Value::f32([4, 2], vec![0.0; 8])))?;
    let noise = g.random_normal([b.clone(), 2.into()], 7, step)?;
    let rows = table.gather(labels)?;
    let hot = labels.one_hot(4)?;
    let joined = Tensor::concat(&[rows, noise, hot], 1)?;
    let cubed = joined.slice(1, 2, 5)?.powf(3.0)?;
    let peak = cubed.max(&[1], false)?;
    let positive = peak.gt(g.zeros([b.clone()]))?;
    let count = positive.cast(DType::I32)?.sum_all()?;
    let n = g.dim_size(&[b, 2.into()], DType::I32)?;
    let offsets = g.constant(Value::i32([2], vec![1, 2]));
    let _ = count.sub(n)?.add(offsets)?.named("result");
    let expected = r#"%0 = input "step" : [] i64
%1 = input "labels" : [B] i32
%2 = param "table" : [4, 2] f32 init=values[4, 2]
%3 = random_normal(%0) seed=7 : [B, 2] f32
%4 = gather(%2, %1) : [B, 2] f32
%5 = one_hot(%1) depth=4 : [B, 4] f32
%6 = concat(%4, %3, %5) axis=1 : [B, 8] f32
%7 = slice(%6) axis=1 range=2..5 : [B, 3] f32
%8 = pow(%7) exponent=3 : [B, 3] f32
%9 = reduce_max(%8) axes=[1] : [B] f32
%10 = fill 0 : [B] f32
%11 = gt(%9, %10) : [B] bool
%12 = cast(%11) to=i32 : [B] i32
%13 = sum(%12) axes=[0] : [] i32
%14 = dim_size B*2 : [] i32
%15 = constant [2] : [2] i32
%16 = sub(%13, %14) : [] i32
%17 = add(%16, %15) : [2] i32  # result
"#;
    assert_text(&g.listing(), expected);
    Ok(())
}

#[test]
fn init_rules_print_with_six_significant_digits() -> Result<()> {
    let g = Graph::new();
    g.param("a", [2, 3], Init::Normal { mean: 0.0, std: 0.1 })?;
    g.param("b", [2, 3], Init::Uniform { low: -1.0 / 3.0, high: 2.0 / 3.0 })?;
    g.param("c", [2, 3], Init::Linspace { start: -1.0, end: 12345.678 })?;
    g.param("d", [2, 3], Init::KaimingUniform)?;
    g.param("e", [2, 3], Init::KaimingNormal)?;
    g.param("f", [2, 3], Init::XavierNormal)?;
    g.param("g", [3], Init::Constant(1e-7))?;
    let expected = r#"%0 = param "a" : [2, 3] f32 init=normal(0, 0.1)
%1 = param "b" : [2, 3] f32 init=uniform(-0.333333, 0.666667)
%2 = param "c" : [2, 3] f32 init=linspace(-1, 12345.7)
%3 = param "d" : [2, 3] f32 init=kaiming_uniform
%4 = param "e" : [2, 3] f32 init=kaiming_normal
%5 = param "f" : [2, 3] f32 init=xavier_normal
%6 = param "g" : [3] f32 init=constant(0.0000001)
"#;
    assert_text(&g.listing(), expected);
    Ok(())
}

#[test]
fn an_empty_graph() {
    let g = Graph::new();
    assert_eq!(g.listing(), "");
    assert_eq!(g.to_dot(), "digraph kiln {\n  rankdir=TB;\n  node [fontname=\"monospace\"];\n}\n");
}

#[test]
fn dot_escapes_quotes_and_backslashes_in_names() -> Result<()> {
    // The listing shows a leaf's name as a Rust string literal; the DOT label must show the
    // same text, so its quotes and backslashes are escaped once more for DOT.
    let g = Graph::new();
    let x = g.input(r#"say "hi""#, [1])?;
    let _ = x.exp()?.named(r#"a "quoted" name"#);
    assert_text(&g.listing(), "%0 = input \"say \\\"hi\\\"\" : [1] f32\n%1 = exp(%0) : [1] f32  # a \"quoted\" name\n");
    let expected = r#"digraph kiln {
  rankdir=TB;
  node [fontname="monospace"];
  n0 [label="%0 input \"say \\\"hi\\\"\"\n[1] f32", shape=box];
  n1 [label="%1 exp\n[1] f32\na \"quoted\" name", shape=ellipse];
  n0 -> n1;
}
"#;
    assert_text(&g.to_dot(), expected);
    Ok(())
}
