//! A whole kernel program printed as one C file of vector code, one exported function per
//! kernel with the JIT's ABI.
//!
//! In: a [`Program`] (forward, backward, optimizer updates: any kernel kind). Out: C source
//! defining `void kiln_kernel{n}(char *const *buffers, const int64_t *sizes, int64_t start,
//! int64_t end, int64_t *status)` for every kernel `n`, and `kiln_set_gemm`, which takes the
//! process's tuned GEMM (`codegen::gemm::kiln_sgemm`), plus how each kernel's range is laid out.
//!
//! Each kernel's range means what it means for the JIT's kernel (see `codegen::CompiledKernel`),
//! so the runtime splits both tiers' kernels across threads the same way:
//! - a loop kernel runs iterations `start..end` of its outermost loop; its innermost loop runs
//!   `KILN_LANES` iterations at a time (the tail is one partial vector through the same code,
//!   so every element is computed by the same instructions whatever the split); a reduction
//!   over the innermost loop keeps one accumulator per lane and folds them in lane order;
//! - a matmul runs blocks of rows by columns (`MatMulKernel::chunks`; a static batch of
//!   products of few rows, the parts of a split contraction, one product per block): the tuned GEMM for
//!   big products (one call per block, as the JIT), else a tile of 4 rows by one vector of
//!   columns summing over `k` in order; its epilogue runs on each finished block; a narrow
//!   product (see `kernel::narrow_tile`) runs a tile that finishes its results in registers
//!   instead (see `narrow`);
//! - a scatter-add runs columns `start..end` of every row, adding the updates in order of
//!   position.

use std::fmt::Write;

use super::body::{Body, plan};
use super::narrow;
use crate::codegen::gemm;
use crate::error::{Error, Result};
use crate::export::c_source::{buffer, fill_with_identity, report_index, size};
use crate::graph::DType;
use crate::kernel::{
    CHUNK_COLUMNS, Kernel, LoopKernel, MatMulKernel, Program, Reduce, RowsKernel, ScatterKernel, Size,
};

/// How a printed kernel's range is laid out (as `codegen::CompiledKernel` describes it).
pub(super) struct RangeShape {
    pub name: String,
    pub chunks: Vec<(Size, i64)>,
    pub splittable: bool,
}

/// The source of `program` for vectors of `lanes` `f32`s, and each kernel's range layout.
/// Matmuls of at least `gemm_min_work` multiply-adds call the GEMM when `gemm` is set.
pub(super) fn print(program: &Program, lanes: usize, gemm: Option<i64>) -> Result<(String, Vec<RangeShape>)> {
    let mut out = format!("/* kiln native tier: {} kernels. */\n#define KILN_LANES {lanes}\n", program.kernels.len());
    // Lanes 0, 2, ... of `p[0..2·lanes-1]` from two loads, `p[0..lanes]` and `p[lanes-1..2·lanes-1]`
    // (so nothing past the last element read is touched): a load of stride 2.
    let even: Vec<String> = (0..lanes / 2).map(|l| (2 * l).to_string()).collect();
    let odd: Vec<String> = (0..lanes / 2).map(|l| (lanes + 2 * l + 1).to_string()).collect();
    let _ = writeln!(out, "#define KILN_EVEN_LANES {}, {}", even.join(", "), odd.join(", "));
    out.push_str(include_str!("prelude.h"));
    out.push_str(crate::export::c_source::SCALAR_HELPERS);
    out.push_str(&tiles());
    let narrow = |k: &MatMulKernel| {
        let tile = crate::kernel::narrow_tile(k, lanes, registers(lanes)).filter(|tile| narrow::fits(k, tile));
        tile.filter(|_| k.accumulate.is_none())
    };
    let mut shapes = Vec::with_capacity(program.kernels.len());
    for (number, kernel) in program.kernels.iter().enumerate() {
        let (name, chunks, splittable) = match kernel {
            Kernel::Loop(k) => (&k.name, vec![(k.loops[0].clone(), 1)], k.splittable()),
            Kernel::MatMul(k) => (&k.name, k.chunks(), true),
            Kernel::Scatter(k) => (&k.name, vec![(k.row_len.clone(), 1)], true),
            Kernel::Rows(k) => (&k.name, vec![(k.rows.clone(), 1)], true),
        };
        let _ = writeln!(
            out,
            "\n/* {name} */\nKILN_API void kiln_kernel{number}(char *const *buffers, const int64_t *sizes, int64_t start, \
             int64_t end, int64_t *status) {{\n    (void)sizes; (void)status; (void)start; (void)end;\n    \
             const unsigned kiln_saved_csr = kiln_flush_denormals();"
        );
        match kernel {
            Kernel::Loop(k) => loop_kernel(&mut out, program, k, ("start", "end"), None)?,
            Kernel::MatMul(k) => match narrow(k) {
                Some(tile) => {
                    let stored = crate::kernel::product_is_stored(program, number);
                    narrow::narrow_matmul(&mut out, program, k, &tile, lanes, stored)?
                }
                _ => matmul(&mut out, program, k, gemm)?,
            },
            Kernel::Scatter(k) => scatter(&mut out, program, k)?,
            Kernel::Rows(k) => rows(&mut out, program, k)?,
        }
        out.push_str("    kiln_restore_denormals(kiln_saved_csr);\n}\n");
        shapes.push(RangeShape { name: name.replace('%', ""), chunks, splittable });
    }
    Ok((out, shapes))
}

/// Vector registers of the host: 32 with AVX-512, 16 with AVX2 or SSE.
fn registers(lanes: usize) -> usize {
    if lanes >= 16 { 32 } else { 16 }
}

/// The level in the lanes: the innermost loop, if the body has a vector form there, except
/// that an elementwise kernel whose innermost loop is too short to fill a quarter of a vector
/// (two classes, four coordinates) puts rows in the lanes: the loop around it.
fn vector_level(kernel: &LoopKernel) -> Option<(usize, Vec<bool>)> {
    let innermost = kernel.loops.len().checked_sub(1)?;
    let short = kernel.loops[innermost].as_fixed().is_some_and(|extent| extent <= 4);
    if kernel.reduce.is_none()
        && innermost > 0
        && short
        && let Some(rows) = vector_plan(kernel, innermost - 1)
    {
        return Some(rows);
    }
    vector_plan(kernel, innermost)
}

/// The vector form of `kernel` with `level` in the lanes, if it has one.
fn vector_plan(kernel: &LoopKernel, level: usize) -> Option<(usize, Vec<bool>)> {
    let reduced_value = kernel.reduce.map(|_| kernel.body[kernel.stores[0].0].1);
    if reduced_value.is_some_and(|dtype| dtype != DType::F32) {
        return None;
    }
    let in_place = kernel.reduce.is_some() && kernel.kept_inside > 0;
    let varies = plan(kernel, level)?;
    // Every element a plain or in-place store writes must move with the lanes.
    if kernel.reduce.is_none() || in_place {
        let moves = kernel.stores.iter().all(|(_, _, index)| index.strides[level].as_fixed() != Some(0));
        if !moves {
            return None;
        }
    }
    Some((level, varies))
}

/// Prints a row group: for each block of rows of the range, every member over those rows.
fn rows(out: &mut String, program: &Program, group: &RowsKernel) -> Result<()> {
    let block = group.block;
    let _ = writeln!(
        out,
        "    for (int64_t kiln_first = start; kiln_first < end; kiln_first += {block}) {{\n    \
         const int64_t kiln_last = end - kiln_first < {block} ? end : kiln_first + {block};"
    );
    for member in &group.members {
        out.push_str("    {\n");
        loop_kernel(out, program, member, ("kiln_first", "kiln_last"), None)?;
        out.push_str("    }\n");
    }
    out.push_str("    }\n");
    Ok(())
}

/// Prints a loop kernel's nest: its outermost loop over `range`, and, for a matmul's
/// epilogue, its second loop over `columns` only.
fn loop_kernel(
    out: &mut String,
    program: &Program,
    kernel: &LoopKernel,
    range: (&str, &str),
    columns: Option<(&str, &str)>,
) -> Result<()> {
    let levels = kernel.loops.len();
    let body = Body { program, kernel, vector: vector_level(kernel), product: None };
    let vector = body.vector.as_ref().map(|(level, _)| *level);
    let (reduce, first) = match kernel.reduce {
        Some((op, first)) => (Some(op), first),
        None => (None, levels),
    };
    let in_place = reduce.is_some() && kernel.kept_inside > 0;
    let kept_from = levels - kernel.kept_inside;
    // An in-place reduction whose one kept loop is short (a bias gradient of two classes, an
    // embedding's 64 features summed over positions) keeps its results in registers across
    // the reduction loops instead of loading and storing them every iteration, which chained
    // every step through a store and a reload; each lane still combines in loop order.
    let kept_extent = kernel.loops.last().and_then(Size::as_fixed);
    let in_register = in_place
        && kernel.kept_inside == 1
        && vector == Some(levels - 1)
        && kept_extent.is_some_and(|e| (1..=KEPT_IN_REGISTERS).contains(&e));
    let kept_vectors = format!("(({}LL + KILN_LANES - 1) / KILN_LANES)", kept_extent.unwrap_or(0));
    let pad = |d: usize| "    ".repeat(d);
    let result_type = kernel.stores.first().map_or(DType::F32, |(v, _, _)| kernel.body[*v].1);
    let c_result = crate::export::c_source::c_type(result_type);
    let identity = |op: Reduce| match (op, result_type) {
        (Reduce::Sum, _) => "0",
        (Reduce::Max, DType::F32 | DType::F64) => "-INFINITY",
        (Reduce::Max, DType::I32) => "INT32_MIN",
        (Reduce::Max, _) => "INT64_MIN",
    };
    let combine = |op: Reduce, a: &str, b: &str, lanes: bool| match (op, result_type, lanes) {
        (Reduce::Sum, _, _) => format!("{a} + {b}"),
        (Reduce::Max, _, true) => format!("kiln_maxv({a}, {b})"),
        (Reduce::Max, DType::F32, false) => format!("kiln_maxf({a}, {b})"),
        (Reduce::Max, DType::F64, false) => format!("kiln_max({a}, {b})"),
        (Reduce::Max, _, false) => format!("({a} > {b} ? {a} : {b})"),
    };
    let mut d = 1;
    let _ = writeln!(out, "{}{{", pad(d));
    d += 1;
    for level in 0..levels {
        if level == first
            && let Some(op) = reduce
        {
            if in_register {
                let _ = writeln!(
                    out,
                    "{p}{{ vf kept[{kept_vectors}];\n{p}for (int64_t c = 0; c < {kept_vectors}; c++) kept[c] = kiln_splat({});",
                    identity(op),
                    p = pad(d)
                );
            } else if in_place {
                fill_with_identity(out, program, kernel, (first, kept_from), d, identity(op));
            } else if vector.is_some() {
                let _ = writeln!(out, "{}{{ vf accumulator = kiln_splat({});", pad(d), identity(op));
            } else {
                let _ = writeln!(out, "{}{{ {c_result} accumulator = {};", pad(d), identity(op));
            }
        }
        let (low, high) = match (level, columns) {
            (0, _) => (range.0.to_string(), range.1.to_string()),
            (1, Some((low, high))) => (low.to_string(), high.to_string()),
            _ => ("0".to_string(), size(&kernel.loops[level])),
        };
        if vector == Some(level) {
            let _ = writeln!(
                out,
                "{p}for (int64_t i{level} = {low}; i{level} < {high}; i{level} += KILN_LANES) {{\n{p}    \
                 const int64_t count = {high} - i{level} < KILN_LANES ? {high} - i{level} : KILN_LANES; (void)count;",
                p = pad(d)
            );
        } else {
            let _ = writeln!(out, "{}for (int64_t i{level} = {low}; i{level} < {high}; i{level}++) {{", pad(d));
        }
        d += 1;
    }
    if levels == 0 {
        let _ = writeln!(out, "{}const int64_t count = 1; (void)count;", pad(d));
    }
    body.print(out, &pad(d))?;
    let lanes = vector.is_some();
    match reduce {
        Some(op) if in_register => {
            let kept = format!("kept[i{} / KILN_LANES]", levels - 1);
            let combined = combine(op, &kept, &body.lanes(kernel.stores[0].0), true);
            let _ = writeln!(out, "{}{kept} = {combined};", pad(d));
        }
        Some(op) if in_place => {
            let (value, target, index) = &kernel.stores[0];
            let place = format!("{} + {}", buffer(program, *target), crate::export::c_source::offset(index, &[]));
            if lanes {
                let stride = size(&index.strides[vector.unwrap_or(levels - 1)]);
                let current = format!("kiln_load_each({place}, {stride}, count)");
                let combined = combine(op, &current, &body.lanes(*value), true);
                let _ = writeln!(out, "{}kiln_store_each({place}, {stride}, count, {combined});", pad(d));
            } else {
                let combined = combine(op, &format!("*({place})"), &format!("t{value}"), false);
                let _ = writeln!(out, "{}*({place}) = {combined};", pad(d));
            }
        }
        Some(op) => {
            let value = kernel.stores[0].0;
            if lanes {
                // Lanes past the tail add the identity, so each lane's sum is fixed by the shapes.
                let _ = writeln!(
                    out,
                    "{p}const vf live = kiln_select(kiln_lt_l(kiln_lanes(), kiln_splatl(count)), {}, kiln_splat({}));\n\
                     {p}accumulator = {};",
                    body.lanes(value),
                    identity(op),
                    combine(op, "accumulator", "live", true),
                    p = pad(d)
                );
            } else {
                let _ = writeln!(
                    out,
                    "{}accumulator = {};",
                    pad(d),
                    combine(op, "accumulator", &format!("t{value}"), false)
                );
            }
        }
        None => {
            for (value, target, index) in &kernel.stores {
                let place = format!("{} + {}", buffer(program, *target), crate::export::c_source::offset(index, &[]));
                if lanes {
                    let stride = size(&index.strides[vector.unwrap_or(levels - 1)]);
                    let function = match program.buffers[*target].dtype {
                        DType::F32 => "kiln_store",
                        DType::I32 => "kiln_store_i32",
                        DType::I64 => "kiln_store_i64",
                        _ => "kiln_store_mask",
                    };
                    let _ = writeln!(out, "{}{function}({place}, {stride}, count, {});", pad(d), body.lanes(*value));
                } else {
                    let _ = writeln!(out, "{}*({place}) = t{value};", pad(d));
                }
            }
        }
    }
    for level in (0..levels).rev() {
        d -= 1;
        let _ = writeln!(out, "{}}}", pad(d));
        if level == first && in_register {
            let (_, target, index) = &kernel.stores[0];
            let all: Vec<usize> = (first..levels).collect();
            let place = format!("{} + {}", buffer(program, *target), crate::export::c_source::offset(index, &all));
            let stride = size(&index.strides[levels - 1]);
            let _ = writeln!(
                out,
                "{p}for (int64_t c = 0; c < {kept_vectors}; c++) {{\n{p}    \
                 const int64_t left = {}LL - c * KILN_LANES;\n{p}    \
                 kiln_store({place} + c * KILN_LANES * {stride}, {stride}, left < KILN_LANES ? left : KILN_LANES, kept[c]);\n{p}}} }}",
                kept_extent.unwrap_or(0),
                p = pad(d)
            );
        }
        if level == first && reduce.is_some() && !in_place {
            let (_, target, index) = &kernel.stores[0];
            let reduced: Vec<usize> = (first..levels).collect();
            let place = format!("{}[{}]", buffer(program, *target), crate::export::c_source::offset(index, &reduced));
            if lanes {
                let op = reduce.unwrap_or(Reduce::Sum);
                let fold = combine(op, "folded", "accumulator[l]", false);
                let _ = writeln!(
                    out,
                    "{p}float folded = accumulator[0];\n{p}for (int l = 1; l < KILN_LANES; l++) folded = {fold};\n\
                     {p}{place} = folded; }}",
                    p = pad(d)
                );
            } else {
                let _ = writeln!(out, "{}{place} = accumulator; }}", pad(d));
            }
        }
    }
    let _ = writeln!(out, "    }}");
    Ok(())
}

/// The longest kept loop of an in-place reduction whose results stay in registers.
const KEPT_IN_REGISTERS: i64 = 64;

/// Rows per tile of the matmul (accumulators of one vector each).
const TILE_ROWS: i64 = 4;

fn matmul(out: &mut String, program: &Program, kernel: &MatMulKernel, gemm: Option<i64>) -> Result<()> {
    let (a, b, o) = (buffer(program, kernel.a.0), buffer(program, kernel.b.0), buffer(program, kernel.out));
    let [a0, a1, a2] = kernel.a.1.clone().map(|s| size(&s));
    let [b0, b1, b2] = kernel.b.1.clone().map(|s| size(&s));
    let (m, k, n) = (size(&kernel.m), size(&kernel.k), size(&kernel.n));
    let big = match gemm {
        // Only the GEMM computes `c·out + a·b`.
        Some(_) if kernel.accumulate.is_some() => "1".into(),
        Some(min_work) => format!("kiln_gemm && m * k * n >= {min_work}LL && k >= {}LL", gemm::GEMM_MIN_K),
        None if kernel.accumulate.is_some() => {
            return Err(Error::Bug(format!("{}: a folded momentum needs the GEMM", kernel.name)));
        }
        None => "0".into(),
    };
    let shared_b = kernel.batch.as_fixed() == Some(1) || kernel.b.1[0].as_fixed() == Some(0);
    let tile_rows = if shared_b { TILE_ROWS } else { 1 };
    let _ = writeln!(
        out,
        "    const int64_t m = {m}, k = {k}, n = {n}, rows = {batch} * m;\n    \
         const int64_t layout[12] = {{m, k, n, rows, {a0}, {a1}, {a2}, {b0}, {b1}, {b2}, {cr}, {acc}LL}};\n    \
         const int64_t column_chunks = (n + {cc} - 1) / {cc};\n    const int big = {big};\n    \
         for (int64_t chunk = start; chunk < end; chunk++) {{\n        \
         const int64_t first_row = chunk / column_chunks * {cr}, first_column = chunk % column_chunks * {cc};\n        \
         const int64_t last_row = first_row + {cr} < rows ? first_row + {cr} : rows;\n        \
         const int64_t last_column = first_column + {cc} < n ? first_column + {cc} : n;\n        \
         if (big) {{\n            \
         if (kiln_gemm(layout, {a}, {b}, {o}, chunk, chunk + 1)) status[0] = 3;\n        }} else {{\n            \
         int64_t row = first_row;\n            \
         for (; row + {tile_rows} <= last_row; row += {tile_rows}) kiln_tile{tile_rows}(layout, {a}, {b}, {o}, row, first_column, last_column);\n            \
         for (; row < last_row; row++) kiln_tile1(layout, {a}, {b}, {o}, row, first_column, last_column);\n        }}",
        batch = size(&kernel.batch),
        cc = CHUNK_COLUMNS,
        cr = kernel.chunk_rows(),
        acc = gemm::accumulate_word(kernel.accumulate),
    );
    if let Some(epilogue) = &kernel.epilogue {
        // The block is in cache: finish it (bias, activation, mask) before the next one.
        loop_kernel(out, program, epilogue, ("first_row", "last_row"), Some(("first_column", "last_column")))?;
    }
    out.push_str("    }\n");
    Ok(())
}

/// The register tiles of matmuls, `kiln_tile{rows}`: `rows` consecutive result rows (of one
/// batch's right operand) by columns `first..last`, one vector of columns at a time, each
/// element summed over `k` in order.
pub(super) fn tiles() -> String {
    let mut out = String::new();
    for rows in [1, TILE_ROWS] {
        let _ = write!(
            out,
            "static inline void kiln_tile{rows}(const int64_t *layout, const float *a, const float *b, float *out, \
             int64_t row, int64_t first, int64_t last) {{\n    \
             const int64_t m = layout[0], k = layout[1], n = layout[2];\n    \
             const int64_t batch = row / m;\n    const float *rows[{rows}];\n    \
             for (int r = 0; r < {rows}; r++) {{ const int64_t at = row + r; rows[r] = a + at / m * layout[4] + at % m * layout[5]; }}\n    \
             const float *right = b + batch * layout[7];\n    \
             for (int64_t j = first; j < last; j += KILN_LANES) {{\n        \
             const int64_t count = last - j < KILN_LANES ? last - j : KILN_LANES;\n        \
             vf sums[{rows}] = {{}};\n        \
             for (int64_t p = 0; p < k; p++) {{\n            \
             const vf column = kiln_load(right + p * layout[8] + j * layout[9], layout[9], count);\n            \
             for (int r = 0; r < {rows}; r++) sums[r] += rows[r][p * layout[6]] * column;\n        }}\n        \
             for (int r = 0; r < {rows}; r++) kiln_store(out + (row + r) * n + j, 1, count, sums[r]);\n    }}\n}}\n"
        );
    }
    out
}

fn scatter(out: &mut String, program: &Program, kernel: &ScatterKernel) -> Result<()> {
    let (indices, target) = (buffer(program, kernel.indices), buffer(program, kernel.out));
    let (positions, rows, row_len) = (size(&kernel.positions), size(&kernel.rows), size(&kernel.row_len));
    let _ = writeln!(
        out,
        "    const int64_t positions = {positions}, rows = {rows}, row_len = {row_len};\n    \
         for (int64_t row = 0; row < rows; row++)\n        \
         for (int64_t c = start; c < end; c++) {target}[row * row_len + c] = 0;\n    \
         for (int64_t p = 0; p < positions; p++) {{\n        \
         const int64_t row = (int64_t){indices}[p];\n        \
         if (row < 0 || row >= rows) {{ {} continue; }}\n        \
         float *const into = {target} + row * row_len;",
        report_index("row", "p", kernel.check)
    );
    match &kernel.producer {
        None => {
            let updates = buffer(program, kernel.updates);
            let _ = writeln!(
                out,
                "        for (int64_t c = start; c < end; c += KILN_LANES) {{\n            \
                 const int64_t count = end - c < KILN_LANES ? end - c : KILN_LANES;\n            \
                 kiln_store_each(into + c, 1, count, kiln_load_each(into + c, 1, count) + kiln_load({updates} + p * row_len + c, 1, count));\n        }}"
            );
        }
        Some(producer) => {
            // The position's indices along the indices' dims, then the columns in the lanes.
            let last = producer.loops.len() - 1;
            out.push_str("        int64_t rest = p; (void)rest;\n");
            for level in (0..last).rev() {
                if level == 0 {
                    let _ = writeln!(out, "        const int64_t i0 = rest;");
                } else {
                    let extent = size(&producer.loops[level]);
                    let _ = writeln!(out, "        const int64_t i{level} = rest % {extent}; rest /= {extent};");
                }
            }
            let vector = plan(producer, last).map(|varies| (last, varies));
            let lanes = vector.is_some();
            let body = Body { program, kernel: producer, vector, product: None };
            let value = producer.stores[0].0;
            if lanes {
                let _ = writeln!(
                    out,
                    "        for (int64_t i{last} = start; i{last} < end; i{last} += KILN_LANES) {{\n            \
                     const int64_t count = end - i{last} < KILN_LANES ? end - i{last} : KILN_LANES;"
                );
                body.print(out, "            ")?;
                let _ = writeln!(
                    out,
                    "            kiln_store_each(into + i{last}, 1, count, kiln_load_each(into + i{last}, 1, count) + {});\n        }}",
                    body.lanes(value)
                );
            } else {
                let _ = writeln!(out, "        for (int64_t i{last} = start; i{last} < end; i{last}++) {{");
                body.print(out, "            ")?;
                let _ = writeln!(out, "            into[i{last}] += t{value};\n        }}");
            }
        }
    }
    out.push_str("    }\n");
    Ok(())
}
