//! A loop kernel's body as C statements, in scalar form or with one loop in vector lanes.
//!
//! In: a [`LoopKernel`], the loop whose consecutive iterations fill the lanes (the vector
//! level), and the program's buffers. Out: one C statement per body expression. An expression
//! that does not change along the vector level is a scalar (`t{id}`, printed by the export
//! printer's `expression`, except for kiln's own transcendentals and random draws); one that
//! does is a vector (`v{id}`) of `KILN_LANES` lanes, of type `vf` (`f32`), `vi` (`i32`, and
//! masks of all ones or zero for `bool`) or `vl` (`i64`). The lanes past `count` (the tail of
//! the loop) hold values that are never stored.
//!
//! [`plan`] decides whether a body has a vector form at all: `f64` values, float-to-integer
//! casts, integer division and gathers whose row changes along the lanes have none, and such a
//! kernel is printed in scalar form.

use std::fmt::Write;

use crate::error::Result;
use crate::export::c_source::{
    buffer, c_type, compare_symbol, expression, offset, power_by_squaring, report_index, size,
};
use crate::graph::{Binary, Compare, DType, Distribution, Unary};
use crate::kernel::{Expr, Index, LoopKernel, Program};

/// Which body expressions change along the vector level, or `None` if the body has no vector
/// form there.
pub(super) fn plan(kernel: &LoopKernel, level: usize) -> Option<Vec<bool>> {
    let moves = |index: &Index| index.strides.get(level).is_some_and(|s| s.as_fixed() != Some(0));
    let mut varies: Vec<bool> = Vec::with_capacity(kernel.body.len());
    for (expr, dtype) in &kernel.body {
        let operand = |e: &usize| varies[*e];
        let dependent = match expr {
            Expr::Load { index, .. } => moves(index),
            Expr::Const(_) | Expr::Size(_) => false,
            Expr::LoopIndex(l) => *l == level,
            Expr::Unary(_, x) | Expr::Pow(_, x) | Expr::Cast(x) => operand(x),
            Expr::Binary(_, a, b) | Expr::Compare(_, a, b) => operand(a) || operand(b),
            Expr::Select(m, a, b) => operand(m) || operand(a) || operand(b),
            Expr::Random { counter, index, .. } => operand(counter) || moves(index),
            Expr::Gather { row, index, .. } => operand(row) || moves(index),
            Expr::CheckIndex { value, .. } => operand(value),
        };
        if dependent && !has_vector_form(kernel, expr, *dtype, &varies) {
            return None;
        }
        varies.push(dependent);
    }
    Some(varies)
}

/// True if `expr` (which changes along the lanes) can be computed lane-wise.
fn has_vector_form(kernel: &LoopKernel, expr: &Expr, dtype: DType, varies: &[bool]) -> bool {
    let of = |e: &usize| kernel.body[*e].1;
    if dtype == DType::F64 {
        return false;
    }
    match expr {
        Expr::Load { .. } | Expr::LoopIndex(_) => true,
        Expr::Const(_) | Expr::Size(_) => true,
        Expr::Unary(op, _) => dtype == DType::F32 || (*op == Unary::Neg && dtype != DType::Bool),
        Expr::Pow(..) => dtype == DType::F32,
        Expr::Binary(op, _, _) => match dtype {
            DType::F32 => true,
            DType::I32 | DType::I64 => *op != Binary::Div,
            _ => false,
        },
        Expr::Compare(_, a, _) => of(a) != DType::F64,
        Expr::Select(..) => true,
        Expr::Cast(x) => !(of(x).is_float() && matches!(dtype, DType::I32 | DType::I64)) && of(x) != DType::F64,
        Expr::Random { counter, .. } => dtype == DType::F32 && !varies[*counter],
        Expr::Gather { row, .. } => dtype == DType::F32 && !varies[*row],
        Expr::CheckIndex { .. } => true,
    }
}

/// The C vector type of `dtype`'s lanes.
pub(super) fn vector_type(dtype: DType) -> &'static str {
    match dtype {
        DType::I64 => "vl",
        DType::I32 | DType::Bool => "vi",
        _ => "vf",
    }
}

/// Prints body expressions; `vector` is the level in the lanes and what varies along it.
pub(super) struct Body<'a> {
    pub program: &'a Program,
    pub kernel: &'a LoopKernel,
    pub vector: Option<(usize, Vec<bool>)>,
    /// For a matmul's epilogue run on a register tile: the product's buffer and the vector
    /// holding the product at the current element (loads of it read the register instead).
    pub product: Option<(usize, String)>,
}

impl Body<'_> {
    /// True if expression `id` is a vector.
    pub fn varies(&self, id: usize) -> bool {
        self.vector.as_ref().is_some_and(|(_, varies)| varies[id])
    }

    /// Expression `id` as a vector (splatting a scalar).
    pub fn lanes(&self, id: usize) -> String {
        if self.varies(id) {
            return format!("v{id}");
        }
        match self.kernel.body[id].1 {
            DType::F32 => format!("kiln_splat(t{id})"),
            DType::I32 => format!("kiln_splati(t{id})"),
            DType::I64 => format!("kiln_splatl(t{id})"),
            DType::Bool => format!("kiln_mask(t{id})"),
            DType::F64 => unreachable!("bug in kiln: f64 values have no vector form"),
        }
    }

    /// The stride of `index` along the vector level, as a C expression.
    fn stride(&self, index: &Index) -> String {
        let level = self.vector.as_ref().map_or(0, |(level, _)| *level);
        index.strides.get(level).map_or("0".into(), size)
    }

    /// Prints every expression of the body.
    pub fn print(&self, out: &mut String, pad: &str) -> Result<()> {
        for (id, (expr, dtype)) in self.kernel.body.iter().enumerate() {
            if self.varies(id) {
                self.vector_expression(out, id, expr, *dtype, pad);
            } else {
                self.scalar_expression(out, id, expr, *dtype, pad)?;
            }
        }
        Ok(())
    }

    fn scalar_expression(&self, out: &mut String, id: usize, expr: &Expr, dtype: DType, pad: &str) -> Result<()> {
        let kiln_function = |op: &Unary| match op {
            Unary::Exp => Some("kiln_expf1"),
            Unary::Log => Some("kiln_logf1"),
            Unary::Sin => Some("kiln_sinf1"),
            Unary::Cos => Some("kiln_cosf1"),
            Unary::Tanh => Some("kiln_tanhf1"),
            _ => None,
        };
        match expr {
            Expr::Unary(op, x) if dtype == DType::F32 && kiln_function(op).is_some() => {
                let function = kiln_function(op).unwrap_or_default();
                let _ = writeln!(out, "{pad}const float t{id} = {function}(t{x});");
            }
            Expr::Pow(p, x) if dtype == DType::F32 => {
                let value = power(*p, &format!("t{x}"), false);
                let _ = writeln!(out, "{pad}const float t{id} = {value};");
            }
            Expr::Random { seed, distribution, counter, index } => {
                let draw = random(*seed, *distribution, *counter, &format!("kiln_splatl({})", offset(index, &[])));
                let _ = writeln!(out, "{pad}const {} t{id} = ({}){draw}[0];", c_type(dtype), c_type(dtype));
            }
            _ => expression(out, self.program, self.kernel, id, expr, dtype, pad)?,
        }
        Ok(())
    }

    fn vector_expression(&self, out: &mut String, id: usize, expr: &Expr, dtype: DType, pad: &str) {
        let of = |e: &usize| self.kernel.body[*e].1;
        let l = |e: &usize| self.lanes(*e);
        let value = match expr {
            Expr::Load { buffer: b, .. } if self.product.as_ref().is_some_and(|(product, _)| product == b) => {
                self.product.as_ref().map(|(_, value)| value.clone()).unwrap_or_default()
            }
            Expr::Load { buffer: b, index } => {
                let function = match dtype {
                    DType::F32 => "kiln_load",
                    DType::I32 => "kiln_load_i32",
                    DType::I64 => "kiln_load_i64",
                    _ => "kiln_load_mask",
                };
                let (address, stride) = (offset(index, &[]), self.stride(index));
                format!("{function}({} + {address}, {stride}, count)", buffer(self.program, *b))
            }
            Expr::LoopIndex(level) => format!("kiln_splatl(i{level}) + kiln_lanes()"),
            Expr::Const(_) | Expr::Size(_) => unreachable!("bug in kiln: constants do not vary"),
            Expr::Unary(op, x) => match op {
                Unary::Neg => format!("-{}", l(x)),
                Unary::Abs => format!("kiln_absv({})", l(x)),
                Unary::Sqrt => format!("kiln_sqrtv({})", l(x)),
                Unary::Recip => format!("1.0f / {}", l(x)),
                Unary::Exp => format!("kiln_exp({})", l(x)),
                Unary::Log => format!("kiln_log({})", l(x)),
                Unary::Sin => format!("kiln_sin({})", l(x)),
                Unary::Cos => format!("kiln_cos({})", l(x)),
                Unary::Tanh => format!("kiln_tanh({})", l(x)),
            },
            Expr::Pow(p, x) => power(*p, &l(x), true),
            Expr::Binary(op, a, b) => {
                let suffix = match dtype {
                    DType::F32 => "v",
                    DType::I64 => "l",
                    _ => "i",
                };
                match op {
                    Binary::Add => format!("{} + {}", l(a), l(b)),
                    Binary::Sub => format!("{} - {}", l(a), l(b)),
                    Binary::Mul => format!("{} * {}", l(a), l(b)),
                    Binary::Div => format!("{} / {}", l(a), l(b)),
                    Binary::Max => format!("kiln_max{suffix}({}, {})", l(a), l(b)),
                    Binary::Min => format!("kiln_min{suffix}({}, {})", l(a), l(b)),
                }
            }
            Expr::Compare(op, a, b) => {
                if of(a) == DType::I64 {
                    format!("{}({}, {})", compare_i64(*op), l(a), l(b))
                } else {
                    format!("({} {} {})", l(a), compare_symbol(*op), l(b))
                }
            }
            Expr::Select(m, a, b) => {
                let function = match dtype {
                    DType::F32 => "kiln_select",
                    DType::I64 => "kiln_selectl",
                    _ => "kiln_selecti",
                };
                format!("{function}({}, {}, {})", l(m), l(a), l(b))
            }
            Expr::Cast(x) => cast(&l(x), of(x), dtype),
            Expr::Random { seed, distribution, counter, index } => {
                let lanes = format!("kiln_splatl({}) + kiln_lanes() * {}", offset(index, &[]), self.stride(index));
                random(*seed, *distribution, *counter, &lanes)
            }
            Expr::Gather { buffer: table, row, rows, row_stride, index, position, check } => {
                // The row is the same in every lane; a bad one reads nothing (the table may
                // have no rows at all).
                let _ = writeln!(
                    out,
                    "{pad}const int64_t row{id} = (int64_t)t{row};\n\
                     {pad}const int bad{id} = row{id} < 0 || row{id} >= {};\n\
                     {pad}if (bad{id}) {}",
                    size(rows),
                    report_index(&format!("row{id}"), &offset(position, &[]), *check)
                );
                format!(
                    "bad{id} ? kiln_splat(0.0f) : kiln_load({} + row{id} * {} + {}, {}, count)",
                    buffer(self.program, *table),
                    size(row_stride),
                    offset(index, &[]),
                    self.stride(index)
                )
            }
            Expr::CheckIndex { value, limit, position, check } => {
                // Every live lane is checked; the cold branch finds the first bad one and
                // reports it with its own position (as `report_index` does).
                let _ = writeln!(
                    out,
                    "{pad}const vi bad{id} = kiln_lt_l(v{value}, kiln_splatl(0)) | kiln_ge_l(v{value}, kiln_splatl({}));\n\
                     {pad}if (__builtin_expect(kiln_any_lane(bad{id}, count), 0)) \
                     kiln_report_lane(status, &bad{id}, &v{value}, count, {}, {}, {});",
                    size(limit),
                    offset(position, &[]),
                    self.stride(position),
                    check + 1
                );
                format!("v{value}")
            }
        };
        let _ = writeln!(out, "{pad}const {} v{id} = {value};", vector_type(dtype));
    }
}

/// The prelude's comparison of `int64_t` vectors for `op` (a `vi` mask).
fn compare_i64(op: Compare) -> &'static str {
    match op {
        Compare::Lt => "kiln_lt_l",
        Compare::Le => "kiln_le_l",
        Compare::Gt => "kiln_gt_l",
        Compare::Ge => "kiln_ge_l",
        Compare::Eq => "kiln_eq_l",
        Compare::Ne => "kiln_ne_l",
    }
}

/// A lane-wise conversion from `from` to `to` (float-to-integer casts are excluded by `plan`).
fn cast(x: &str, from: DType, to: DType) -> String {
    match (from, to) {
        (from, to) if from == to => x.to_string(),
        (DType::Bool, DType::F32) => format!("kiln_select({x}, kiln_splat(1.0f), kiln_splat(0.0f))"),
        (DType::Bool, DType::I32) => format!("-{x}"),
        (DType::Bool, DType::I64) => format!("__builtin_convertvector(-{x}, vl)"),
        (DType::F32, DType::Bool) => format!("({x} != 0.0f)"),
        (DType::I32, DType::Bool) => format!("({x} != 0)"),
        (DType::I64, DType::Bool) => format!("kiln_ne_l({x}, kiln_splatl(0))"),
        (_, to) => format!("__builtin_convertvector({x}, {})", vector_type(to)),
    }
}

/// kiln's random draw at the 64-bit flat indices `lanes` (a `vl`), as a `vf`.
fn random(seed: u64, distribution: Distribution, counter: usize, lanes: &str) -> String {
    let function = match distribution {
        Distribution::Uniform => "kiln_uniform",
        Distribution::Normal => "kiln_normal",
    };
    format!("{function}(kiln_draw_key({seed}ULL, (uint64_t)t{counter}), {lanes})")
}

/// `x^p` as the JIT computes it: square roots for ±1/2, products by squaring for small
/// integers, else `exp(p · log x)` with kiln's polynomials.
fn power(p: f64, x: &str, vector: bool) -> String {
    let (sqrt, exp, log) =
        if vector { ("kiln_sqrtv", "kiln_exp", "kiln_log") } else { ("sqrtf", "kiln_expf1", "kiln_logf1") };
    if p == 0.5 {
        return format!("{sqrt}({x})");
    }
    if p == -0.5 {
        return format!("1.0f / {sqrt}({x})");
    }
    if p.fract() == 0.0 && p.abs() <= 16.0 {
        let one = if vector { "kiln_splat(1.0f)" } else { "1.0f" };
        let result = power_by_squaring(x, p.abs() as u32, one);
        return if p < 0.0 { format!("1.0f / {result}") } else { result };
    }
    format!("{exp}({log}({x}) * {:e}f)", p as f32)
}
