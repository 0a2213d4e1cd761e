//! Narrow matrix products printed as register tiles that finish their results in registers.
//!
//! In: a [`MatMulKernel`] whose [`NarrowTile`] `kernel::narrow_tile` chose, and whether its
//! product must be stored (`kernel::product_is_stored`). Out: the body of its C function,
//! with the range of every matmul (`MatMulKernel::chunks`: blocks of rows, or one product of a
//! static batch per block; a narrow result is one block of columns wide).
//!
//! A tile keeps every column of its rows in accumulators, adds one broadcast product per step
//! of `k`, then runs the epilogue (bias, activation, mask) on the accumulators and stores
//! each result once; a product read by nothing but its epilogue is never stored. With columns
//! in the lanes, the right operand is packed once per call into whole vectors when it is
//! small; with rows in the lanes, each step loads a column of the left operand. Rows past the
//! last full tile run one row (or one vector of rows) at a time through the same
//! instructions, so every element is summed over `k` in order by one lane whatever the tile,
//! the block or the thread.

use std::fmt::Write;

use super::body::{Body, plan};
use crate::error::Result;
use crate::export::c_source::{buffer, offset, size};
use crate::graph::DType;
use crate::kernel::{Lanes, LoopKernel, MatMulKernel, NarrowTile, Program};

/// Packed right operands up to this many floats live on the stack.
const MOST_PACKED: i64 = 8192;

/// True if `kernel`'s epilogue (if any) has a vector form with `tile`'s dim in the lanes.
pub(super) fn fits(kernel: &MatMulKernel, tile: &NarrowTile) -> bool {
    kernel.epilogue.as_ref().is_none_or(|epilogue| plan(epilogue, level(tile)).is_some())
}

/// The epilogue's loop in the lanes: its columns (1) or its rows (0).
fn level(tile: &NarrowTile) -> usize {
    match tile.lanes {
        Lanes::Columns { .. } => 1,
        Lanes::Rows { .. } => 0,
    }
}

/// Prints the body of `kernel`'s function as `tile`, storing the product if `stored`.
pub(super) fn narrow_matmul(
    out: &mut String,
    program: &Program,
    kernel: &MatMulKernel,
    tile: &NarrowTile,
    lanes: usize,
    stored: bool,
) -> Result<()> {
    let [a0, a1, a2] = kernel.a.1.clone().map(|s| size(&s));
    let [b0, b1, b2] = kernel.b.1.clone().map(|s| size(&s));
    let n = tile.n;
    let _ = writeln!(
        out,
        "    const float *const a_all = {}, *const b_all = {};\n    float *const product_all = {};\n    \
         const int64_t m = {}, k = {}, stride_am = {a1}, stride_ak = {a2}, stride_bk = {b1}, stride_bn = {b2};\n    \
         (void)stride_ak; (void)stride_bn; (void)product_all;",
        buffer(program, kernel.a.0),
        buffer(program, kernel.b.0),
        buffer(program, kernel.out),
        size(&kernel.m),
        size(&kernel.k),
    );
    let tiles = Tiles { program, kernel, tile, lanes, stored, n };
    if kernel.batch.as_fixed() == Some(1) {
        out.push_str("    const float *const a = a_all, *const b = b_all;\n    float *const product = product_all;\n");
        let packed = tiles.pack(out);
        let _ = writeln!(
            out,
            "    for (int64_t chunk = start; chunk < end; chunk++) {{\n        \
             const int64_t first_row = chunk * {cr}, last_row = first_row + {cr} < m ? first_row + {cr} : m;\n        \
             int64_t row = first_row;",
            cr = kernel.chunk_rows()
        );
        tiles.rows(out, packed)
    } else {
        // One product of the batch (all its rows) per block of the range (`chunk_rows` is `m`;
        // a narrow result is one block of columns).
        let _ = writeln!(
            out,
            "    for (int64_t part = start; part < end; part++) {{\n        \
             const float *const a = a_all + part * {a0}, *const b = b_all + part * {b0};\n        \
             float *const product = product_all + part * m * {n};\n        \
             const int64_t last_row = m;\n        int64_t row = 0;"
        );
        tiles.rows(out, false)
    }
}

struct Tiles<'a> {
    program: &'a Program,
    kernel: &'a MatMulKernel,
    tile: &'a NarrowTile,
    lanes: usize,
    stored: bool,
    n: usize,
}

impl Tiles<'_> {
    /// The tiles covering rows `row..last_row` of one block, and the end of the block's loop.
    fn rows(&self, out: &mut String, packed: bool) -> Result<()> {
        let (kernel, tile, lanes) = (self.kernel, self.tile, self.lanes);
        // A result of a few static rows is one block: its last rows run as one smaller tile, so
        // a long `k` streams once per tile, not once per leftover row.
        let static_rows = kernel.m.as_fixed().filter(|&m| m <= kernel.chunk_rows()).map(|m| m as usize);
        match tile.lanes {
            Lanes::Columns { rows, vectors } => {
                let _ = writeln!(out, "        for (; row + {rows} <= last_row; row += {rows}) {{");
                self.columns_in_lanes(out, rows, vectors, packed)?;
                match static_rows.map(|m| m % rows) {
                    Some(0) => {}
                    Some(left) => {
                        out.push_str("        }\n        if (row < last_row) {\n");
                        self.columns_in_lanes(out, left, vectors, packed)?;
                    }
                    None => {
                        out.push_str("        }\n        for (; row < last_row; row++) {\n");
                        self.columns_in_lanes(out, 1, vectors, packed)?;
                    }
                }
                out.push_str("        }\n");
            }
            Lanes::Rows { vectors } => {
                let _ = writeln!(
                    out,
                    "        for (; row + {} <= last_row; row += {}) {{",
                    vectors * lanes,
                    vectors * lanes
                );
                self.rows_in_lanes(out, vectors, true)?;
                match static_rows.map(|m| m % (vectors * lanes)) {
                    Some(0) => {}
                    Some(left) => {
                        out.push_str("        }\n        if (row < last_row) {\n");
                        self.rows_in_lanes(out, left.div_ceil(lanes), false)?;
                    }
                    None => {
                        let _ = writeln!(out, "        }}\n        for (; row < last_row; row += {lanes}) {{");
                        self.rows_in_lanes(out, 1, false)?;
                    }
                }
                out.push_str("        }\n");
            }
        }
        out.push_str("    }\n");
        Ok(())
    }

    /// Columns in the lanes with a static, short `k`: copies the right operand once into
    /// whole vectors (`packed[p][vector]`, zero past `n`), so the tile loads aligned vectors
    /// whatever `b`'s strides. Returns whether it did.
    fn pack(&self, out: &mut String) -> bool {
        let Lanes::Columns { vectors, .. } = self.tile.lanes else {
            return false;
        };
        let Some(k) = self.kernel.k.as_fixed().filter(|&k| k * (vectors * self.lanes) as i64 <= MOST_PACKED) else {
            return false;
        };
        let _ = writeln!(
            out,
            "    vf packed[{}][{vectors}];\n    \
             for (int64_t p = 0; p < k; p++)\n        \
             for (int64_t c = 0; c < {vectors}; c++) {{\n            \
             const int64_t left = {n} - c * KILN_LANES;\n            \
             packed[p][c] = kiln_load(b + p * stride_bk + c * KILN_LANES * stride_bn, stride_bn, left < KILN_LANES ? left : KILN_LANES);\n        }}",
            k.max(1),
            n = self.n
        );
        true
    }

    /// One tile of `rows` rows by every column, the row loop's `row` its first.
    fn columns_in_lanes(&self, out: &mut String, rows: usize, vectors: usize, packed: bool) -> Result<()> {
        let pad = "            ";
        for r in 0..rows {
            let accumulators: Vec<String> = (0..vectors).map(|c| format!("acc{r}_{c} = {{}}")).collect();
            let _ = writeln!(
                out,
                "{pad}const float *const row{r} = a + (row + {r}) * stride_am;\n{pad}vf {};",
                accumulators.join(", ")
            );
        }
        let _ = writeln!(out, "{pad}for (int64_t p = 0; p < k; p++) {{");
        for c in 0..vectors {
            let value = if packed {
                format!("packed[p][{c}]")
            } else {
                format!("kiln_load(b + p * stride_bk + {} * stride_bn, stride_bn, {})", c * self.lanes, self.count(c))
            };
            let _ = writeln!(out, "{pad}    const vf column{c} = {value};");
        }
        for r in 0..rows {
            let _ = write!(out, "{pad}    {{ const vf x = kiln_splat(row{r}[p * stride_ak]);");
            for c in 0..vectors {
                let _ = write!(out, " acc{r}_{c} += x * column{c};");
            }
            out.push_str(" }\n");
        }
        let _ = writeln!(out, "{pad}}}");
        for r in 0..rows {
            for c in 0..vectors {
                let place =
                    format!("const int64_t i0 = row + {r}, i1 = {}, count = {};", c * self.lanes, self.count(c));
                self.finish(out, &place, &format!("acc{r}_{c}"), "1")?;
            }
        }
        Ok(())
    }

    /// One tile of `vectors` vectors of rows by every column, the row loop's `row` its first;
    /// `full` if every vector is whole, else one vector of the rows left.
    fn rows_in_lanes(&self, out: &mut String, vectors: usize, full: bool) -> Result<()> {
        let pad = "            ";
        let lanes = self.lanes;
        for v in 0..vectors {
            let count = if full {
                lanes.to_string()
            } else {
                let left = format!("last_row - row - {}", v * lanes);
                format!("{left} < 0 ? 0 : {left} < {lanes} ? {left} : {lanes}")
            };
            let accumulators: Vec<String> = (0..self.n).map(|j| format!("acc{v}_{j} = {{}}")).collect();
            let _ = writeln!(
                out,
                "{pad}const int64_t count{v} = {count};\n{pad}const float *const rows{v} = a + (row + {}) * stride_am;\n{pad}vf {};",
                v * lanes,
                accumulators.join(", ")
            );
        }
        let _ = writeln!(out, "{pad}for (int64_t p = 0; p < k; p++) {{");
        for v in 0..vectors {
            let _ = writeln!(out, "{pad}    const vf x{v} = kiln_load(rows{v} + p * stride_ak, stride_am, count{v});");
        }
        for j in 0..self.n {
            let _ = write!(out, "{pad}    {{ const vf w = kiln_splat(b[p * stride_bk + {j} * stride_bn]);");
            for v in 0..vectors {
                let _ = write!(out, " acc{v}_{j} += x{v} * w;");
            }
            out.push_str(" }\n");
        }
        let _ = writeln!(out, "{pad}}}");
        for v in 0..vectors {
            for j in 0..self.n {
                let place = format!("const int64_t i0 = row + {}, i1 = {j}, count = count{v};", v * lanes);
                self.finish(out, &place, &format!("acc{v}_{j}"), &self.n.to_string())?;
            }
        }
        Ok(())
    }

    /// Live columns of column vector `c`.
    fn count(&self, c: usize) -> usize {
        (self.n - c * self.lanes).min(self.lanes)
    }

    /// Stores accumulator `value` (the product at element `i0, i1` and the lanes after it,
    /// `stride` apart in the product) and runs the epilogue on it.
    fn finish(&self, out: &mut String, place: &str, value: &str, stride: &str) -> Result<()> {
        let pad = "            ";
        let _ = writeln!(out, "{pad}{{ {place} (void)count;");
        if self.stored {
            let _ = writeln!(out, "{pad}    kiln_store(product + i0 * {} + i1, {stride}, count, {value});", self.n);
        }
        if let Some(epilogue) = &self.kernel.epilogue {
            self.epilogue(out, epilogue, value)?;
        }
        let _ = writeln!(out, "{pad}}}");
        Ok(())
    }

    fn epilogue(&self, out: &mut String, epilogue: &LoopKernel, value: &str) -> Result<()> {
        let pad = "                ";
        let level = level(self.tile);
        let varies = plan(epilogue, level)
            .ok_or_else(|| crate::error::Error::Bug(format!("epilogue of {} has no vector form", self.kernel.name)))?;
        let body = Body {
            program: self.program,
            kernel: epilogue,
            vector: Some((level, varies)),
            product: Some((self.kernel.out, value.to_string())),
        };
        body.print(out, pad)?;
        for (stored, target, index) in &epilogue.stores {
            let function = match self.program.buffers[*target].dtype {
                DType::F32 => "kiln_store",
                DType::I32 => "kiln_store_i32",
                DType::I64 => "kiln_store_i64",
                _ => "kiln_store_mask",
            };
            let (place, stride) = (offset(index, &[]), size(&index.strides[level]));
            let _ = writeln!(
                out,
                "{pad}{function}({} + {place}, {stride}, count, {});",
                buffer(self.program, *target),
                body.lanes(*stored)
            );
        }
        Ok(())
    }
}
