//! Element types and element counts, the facts a tensor's data and a graph node share.
//!
//! In: nothing (the bottom of the crate). Out: [`DType`], [`MAX_ELEMENTS`] and
//! [`checked_numel`], used by the graph (`graph::shape`) and by concrete values (`value`).

use std::fmt;

/// The element type of a tensor.
///
/// `F32` is the default for everything a user builds. `F64` exists for the reference
/// interpreter and gradient checks; `I32`/`I64` hold indices and labels; `Bool` is what the
/// comparisons produce and what `select` consumes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DType {
    /// 32-bit IEEE float.
    F32,
    /// 64-bit IEEE float.
    F64,
    /// 32-bit signed integer.
    I32,
    /// 64-bit signed integer.
    I64,
    /// A mask: true or false.
    Bool,
}

impl DType {
    /// True for `F32` and `F64`.
    pub fn is_float(self) -> bool {
        matches!(self, DType::F32 | DType::F64)
    }

    /// True for `I32` and `I64`.
    pub fn is_int(self) -> bool {
        matches!(self, DType::I32 | DType::I64)
    }

    /// The lower-case name used in listings (`f32`, `i64`, ...).
    pub fn name(self) -> &'static str {
        match self {
            DType::F32 => "f32",
            DType::F64 => "f64",
            DType::I32 => "i32",
            DType::I64 => "i64",
            DType::Bool => "bool",
        }
    }
}

impl fmt::Display for DType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The most elements one tensor may hold: at 8 bytes per element (the widest dtype) its
/// bytes, rounded up to whole 16-byte words, still fit in an `isize` offset.
pub const MAX_ELEMENTS: usize = (isize::MAX as usize) / 16;

/// The product of `sizes`, or `None` if the product of its nonzero sizes exceeds
/// [`MAX_ELEMENTS`] (or would overflow). Every element count kiln computes goes through this,
/// so a shape never wraps to a small count (`[65536; 4]` is an error, not a tensor of 0
/// elements), and no loop nest over a shape, empty or not, counts past `i64`.
pub fn checked_numel(sizes: &[usize]) -> Option<usize> {
    let nonzero = sizes.iter().filter(|&&n| n != 0).try_fold(1usize, |acc, &n| acc.checked_mul(n))?;
    (nonzero <= MAX_ELEMENTS).then(|| if sizes.contains(&0) { 0 } else { nonzero })
}
