//! The text form of a program (`KILN_DUMP=kernels`).
//!
//! In: a program. Out: its text listing.

use std::fmt::{self, Write};

use super::{Expr, Index, Kernel, Program, Role, Size};
use crate::graph::DType;

impl Size {
    fn write(&self, out: &mut String, symbols: &[String]) {
        let mut parts: Vec<String> = Vec::new();
        if self.factor != 1 || self.symbols.is_empty() {
            parts.push(self.factor.to_string());
        }
        parts.extend(self.symbols.iter().map(|&s| symbols[s].clone()));
        out.push_str(&parts.join("*"));
    }
}

impl Program {
    fn size(&self, size: &Size) -> String {
        let mut out = String::new();
        size.write(&mut out, &self.symbols);
        out
    }

    fn index(&self, index: &Index) -> String {
        let mut terms: Vec<String> = index.base.iter().map(|s| self.size(s)).collect();
        for (level, stride) in index.strides.iter().enumerate() {
            match stride.as_fixed() {
                Some(0) => {}
                Some(1) => terms.push(format!("i{level}")),
                _ => terms.push(format!("i{level}*{}", self.size(stride))),
            }
        }
        if terms.is_empty() { "0".to_string() } else { terms.join(" + ") }
    }

    /// The listing of buffers and kernels.
    pub fn listing(&self) -> String {
        let mut out = String::new();
        for (i, buffer) in self.buffers.iter().enumerate() {
            let role = match &buffer.role {
                Role::Input(name) => format!("input {name:?}"),
                Role::Param(name) => format!("param {name:?}"),
                Role::Constant(_) => "constant".to_string(),
                Role::Temporary => match self.slots.get(i).copied().flatten() {
                    Some(slot) => format!("temporary in slot {slot}"),
                    None => "temporary".to_string(),
                },
                Role::Alias(target) => format!("alias of b{target}"),
            };
            let _ = writeln!(out, "b{i}: {} {} {role}", buffer.shape, buffer.dtype);
        }
        for kernel in &self.kernels {
            out.push_str(&self.kernel_listing(kernel));
        }
        let outputs: Vec<String> = self.outputs.iter().map(|b| format!("b{b}")).collect();
        let _ = writeln!(out, "outputs: {}", outputs.join(", "));
        for (param, value) in &self.updates {
            let _ = writeln!(out, "update: b{param} <- b{value}");
        }
        out
    }

    fn kernel_listing(&self, kernel: &Kernel) -> String {
        let mut out = String::new();
        match kernel {
            Kernel::Loop(k) => {
                let loops: Vec<String> =
                    k.loops.iter().enumerate().map(|(l, s)| format!("i{l} < {}", self.size(s))).collect();
                let reduce = match k.reduce {
                    Some((op, from)) if k.kept_inside > 0 => {
                        let to = k.loops.len() - k.kept_inside;
                        format!(" reduce {op:?} over i{from}..i{to}, accumulated in place")
                    }
                    Some((op, from)) => format!(" reduce {op:?} over i{from}.."),
                    None => String::new(),
                };
                let _ = writeln!(out, "kernel {} [{}]{reduce}", k.name, loops.join(", "));
                for (id, (expr, dtype)) in k.body.iter().enumerate() {
                    let _ = writeln!(out, "  v{id}: {dtype} = {}", self.expr(expr, *dtype));
                }
                for (value, buffer, index) in &k.stores {
                    let _ = writeln!(out, "  b{buffer}[{}] = v{value}", self.index(index));
                }
            }
            Kernel::MatMul(k) => {
                let strides = |s: &[Size; 3]| s.iter().map(|x| self.size(x)).collect::<Vec<_>>().join(", ");
                let _ = writeln!(
                    out,
                    "kernel {} matmul batch={} m={} k={} n={}: b{} = {}b{} (strides {}) x b{} (strides {})",
                    k.name,
                    self.size(&k.batch),
                    self.size(&k.m),
                    self.size(&k.k),
                    self.size(&k.n),
                    k.out,
                    k.accumulate.map(|c| format!("{c}·b{} + ", k.out)).unwrap_or_default(),
                    k.a.0,
                    strides(&k.a.1),
                    k.b.0,
                    strides(&k.b.1)
                );
                if let Some(epilogue) = &k.epilogue {
                    let _ = writeln!(out, "  epilogue on each block of b{}:", k.out);
                    for line in self.kernel_listing(&Kernel::Loop(epilogue.clone())).lines() {
                        let _ = writeln!(out, "  {line}");
                    }
                }
            }
            Kernel::Scatter(k) => {
                let source =
                    if k.producer.is_some() { "computed rows".to_string() } else { format!("rows of b{}", k.updates) };
                let _ = writeln!(
                    out,
                    "kernel {} scatter_add: b{}[{} rows of {}] += {source} at b{} ({} positions)",
                    k.name,
                    k.out,
                    self.size(&k.rows),
                    self.size(&k.row_len),
                    k.indices,
                    self.size(&k.positions)
                );
                if let Some(producer) = &k.producer {
                    let _ = writeln!(out, "  updates computed by:");
                    for line in self.kernel_listing(&Kernel::Loop((**producer).clone())).lines() {
                        let _ = writeln!(out, "  {line}");
                    }
                }
            }
            Kernel::Rows(k) => {
                let _ = writeln!(
                    out,
                    "kernel {} rows [i0 < {}] in blocks of {} rows, {} kernels each:",
                    k.name,
                    self.size(&k.rows),
                    k.block,
                    k.members.len()
                );
                for member in &k.members {
                    for line in self.kernel_listing(&Kernel::Loop(member.clone())).lines() {
                        let _ = writeln!(out, "  {line}");
                    }
                }
            }
        }
        out
    }

    fn expr(&self, expr: &Expr, dtype: DType) -> String {
        match expr {
            Expr::Load { buffer, index } => format!("load b{buffer}[{}]", self.index(index)),
            // The number the kernel computes with: an `f32` constant as its `f32` rounding.
            Expr::Const(v) if dtype == DType::F32 => format!("{}", f64::from(*v as f32)),
            Expr::Const(v) => format!("{v}"),
            Expr::Size(s) => format!("size {}", self.size(s)),
            Expr::LoopIndex(l) => format!("i{l}"),
            Expr::Unary(op, x) => format!("{op:?}(v{x})").to_lowercase(),
            Expr::Pow(p, x) => format!("pow(v{x}, {p})"),
            Expr::Binary(op, a, b) => format!("{op:?}(v{a}, v{b})").to_lowercase(),
            Expr::Compare(op, a, b) => format!("{op:?}(v{a}, v{b})").to_lowercase(),
            Expr::Select(m, a, b) => format!("select(v{m}, v{a}, v{b})"),
            Expr::Cast(x) => format!("cast(v{x})"),
            Expr::Random { seed, distribution, counter, index } => {
                format!("random_{distribution:?}(seed={seed}, counter=v{counter}, at {})", self.index(index))
                    .to_lowercase()
            }
            Expr::CheckIndex { value, limit, .. } => format!("check_index(v{value} in 0..{})", self.size(limit)),
            Expr::Gather { buffer, row, rows, row_stride, index, .. } => format!(
                "gather b{buffer}[v{row} (of {}) * {} + {}]",
                self.size(rows),
                self.size(row_stride),
                self.index(index)
            ),
        }
    }
}

impl fmt::Display for Program {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.listing())
    }
}
