//! Concrete tensors: a static shape and typed, row-major data.
//!
//! In: shapes and element vectors. Out: [`Value`] and [`Data`], with casts and conversions.
//!
//! `Value` is what the reference interpreter computes, what users feed into a graph, what
//! params hold, and what a graph constant stores.

mod store;

use std::fmt;

use crate::dtype::{DType, MAX_ELEMENTS, checked_numel};

pub use store::{Feeds, ParamStore};

/// Typed, row-major element storage.
#[derive(Clone, Debug, PartialEq)]
pub enum Data {
    /// `f32` elements.
    F32(Vec<f32>),
    /// `f64` elements.
    F64(Vec<f64>),
    /// `i32` elements.
    I32(Vec<i32>),
    /// `i64` elements.
    I64(Vec<i64>),
    /// Mask elements.
    Bool(Vec<bool>),
}

impl Data {
    /// The elements as little-endian bytes, row-major (a mask element is one byte, 0 or 1):
    /// the layout of checkpoints, artifact weights and the C side's buffers.
    pub fn to_le_bytes(&self) -> Vec<u8> {
        match self {
            Data::F32(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            Data::F64(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            Data::I32(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            Data::I64(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            Data::Bool(v) => v.iter().map(|&b| u8::from(b)).collect(),
        }
    }

    /// The dtype of the elements.
    pub fn dtype(&self) -> DType {
        match self {
            Data::F32(_) => DType::F32,
            Data::F64(_) => DType::F64,
            Data::I32(_) => DType::I32,
            Data::I64(_) => DType::I64,
            Data::Bool(_) => DType::Bool,
        }
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        match self {
            Data::F32(v) => v.len(),
            Data::F64(v) => v.len(),
            Data::I32(v) => v.len(),
            Data::I64(v) => v.len(),
            Data::Bool(v) => v.len(),
        }
    }

    /// True if there are no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Element `i` as an `f64` (masks as 0 or 1). Exact for every dtype but `i64` beyond 2^53.
    pub fn get_f64(&self, i: usize) -> f64 {
        match self {
            Data::F32(v) => f64::from(v[i]),
            Data::F64(v) => v[i],
            Data::I32(v) => f64::from(v[i]),
            Data::I64(v) => v[i] as f64,
            Data::Bool(v) => f64::from(u8::from(v[i])),
        }
    }

    /// Element `i` as an `i64` (floats truncate toward zero, masks are 0 or 1).
    pub fn get_i64(&self, i: usize) -> i64 {
        match self {
            Data::F32(v) => v[i] as i64,
            Data::F64(v) => v[i] as i64,
            Data::I32(v) => i64::from(v[i]),
            Data::I64(v) => v[i],
            Data::Bool(v) => i64::from(v[i]),
        }
    }

    /// Converts every element to `dtype`, with Rust's `as` semantics (floats to integers
    /// saturate and truncate toward zero; nonzero becomes `true`).
    pub fn cast(&self, dtype: DType) -> Data {
        let n = self.len();
        match dtype {
            DType::F32 => match self {
                Data::F32(v) => Data::F32(v.clone()),
                _ => Data::F32((0..n).map(|i| self.get_f64(i) as f32).collect()),
            },
            DType::F64 => Data::F64((0..n).map(|i| self.get_f64(i)).collect()),
            DType::I32 => match self {
                Data::I64(v) => Data::I32(v.iter().map(|&x| x as i32).collect()),
                _ => Data::I32((0..n).map(|i| self.get_f64(i) as i32).collect()),
            },
            DType::I64 => Data::I64((0..n).map(|i| self.get_i64(i)).collect()),
            DType::Bool => Data::Bool((0..n).map(|i| self.get_f64(i) != 0.0).collect()),
        }
    }

    /// `n` copies of `value` converted to `dtype`.
    pub fn filled(dtype: DType, n: usize, value: f64) -> Data {
        Data::F64(vec![value; n]).cast(dtype)
    }
}

/// A concrete tensor: static shape plus row-major data of one dtype.
#[derive(Clone, Debug, PartialEq)]
pub struct Value {
    shape: Vec<usize>,
    data: Data,
}

impl Value {
    /// A tensor of the given shape and data, or `None` if the element count does not match
    /// (or the shape's count overflows: `[1 << 32, 1 << 32]` does not hold 0 elements).
    pub fn new(shape: impl Into<Vec<usize>>, data: Data) -> Option<Value> {
        let shape = shape.into();
        (checked_numel(&shape) == Some(data.len())).then_some(Value { shape, data })
    }

    /// An `f32` tensor. Panics if `data.len()` is not the product of `shape`: a literal of the
    /// wrong size is a programming error at the call site, like a wrong slice index.
    #[track_caller]
    pub fn f32(shape: impl Into<Vec<usize>>, data: Vec<f32>) -> Value {
        Self::checked(shape.into(), Data::F32(data))
    }

    /// An `f64` tensor (see [`Value::f32`]).
    #[track_caller]
    pub fn f64(shape: impl Into<Vec<usize>>, data: Vec<f64>) -> Value {
        Self::checked(shape.into(), Data::F64(data))
    }

    /// An `i32` tensor (see [`Value::f32`]).
    #[track_caller]
    pub fn i32(shape: impl Into<Vec<usize>>, data: Vec<i32>) -> Value {
        Self::checked(shape.into(), Data::I32(data))
    }

    /// An `i64` tensor (see [`Value::f32`]).
    #[track_caller]
    pub fn i64(shape: impl Into<Vec<usize>>, data: Vec<i64>) -> Value {
        Self::checked(shape.into(), Data::I64(data))
    }

    /// A scalar of the given dtype.
    pub fn scalar(dtype: DType, value: f64) -> Value {
        Value { shape: Vec::new(), data: Data::filled(dtype, 1, value) }
    }

    /// A tensor of the given shape and dtype with every element equal to `value`.
    pub fn full(shape: impl Into<Vec<usize>>, dtype: DType, value: f64) -> Value {
        let shape = shape.into();
        let n = checked_numel(&shape).unwrap_or_else(|| panic!("Value::full: shape {shape:?} holds too many elements"));
        Value { shape, data: Data::filled(dtype, n, value) }
    }

    #[track_caller]
    fn checked(shape: Vec<usize>, data: Data) -> Value {
        let got = data.len();
        let Some(expected) = checked_numel(&shape) else {
            panic!("Value of shape {shape:?} would hold more than {MAX_ELEMENTS} elements, got {got}")
        };
        assert_eq!(expected, got, "Value of shape {shape:?} needs {expected} elements, got {got}");
        Value { shape, data }
    }

    /// The shape.
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// The dtype.
    pub fn dtype(&self) -> DType {
        self.data.dtype()
    }

    /// The data.
    pub fn data(&self) -> &Data {
        &self.data
    }

    /// Number of elements.
    pub fn numel(&self) -> usize {
        self.data.len()
    }

    /// Every element as `f64`, row-major.
    pub fn to_f64_vec(&self) -> Vec<f64> {
        (0..self.numel()).map(|i| self.data.get_f64(i)).collect()
    }

    /// Every element as `f32`, row-major.
    pub fn to_f32_vec(&self) -> Vec<f32> {
        (0..self.numel()).map(|i| self.data.get_f64(i) as f32).collect()
    }

    /// The single element of a one-element tensor as `f64`.
    pub fn item(&self) -> Option<f64> {
        (self.numel() == 1).then(|| self.data.get_f64(0))
    }

    /// The same elements converted to `dtype`.
    pub fn cast(&self, dtype: DType) -> Value {
        Value { shape: self.shape.clone(), data: self.data.cast(dtype) }
    }

    /// The same elements under another shape with the same element count.
    pub fn reshaped(&self, shape: impl Into<Vec<usize>>) -> Option<Value> {
        Value::new(shape, self.data.clone())
    }

    /// Splits into shape and data.
    pub fn into_parts(self) -> (Vec<usize>, Data) {
        (self.shape, self.data)
    }
}

/// Prints `f32[2, 3] [[1, 2, 3], [4, 5, 6]]`, eliding the middle of long dims.
impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{:?} ", self.dtype(), self.shape)?;
        self.fmt_block(f, 0, 0)
    }
}

impl Value {
    const EDGE: usize = 3;

    fn fmt_block(&self, f: &mut fmt::Formatter<'_>, axis: usize, offset: usize) -> fmt::Result {
        if axis == self.shape.len() {
            return self.fmt_element(f, offset);
        }
        let len = self.shape[axis];
        let stride: usize = self.shape[axis + 1..].iter().product();
        f.write_str("[")?;
        for i in 0..len {
            if len > 2 * Self::EDGE + 1 && i == Self::EDGE {
                f.write_str("..., ")?;
            }
            if len > 2 * Self::EDGE + 1 && (Self::EDGE..len - Self::EDGE).contains(&i) {
                continue;
            }
            self.fmt_block(f, axis + 1, offset + i * stride)?;
            if i + 1 < len {
                f.write_str(", ")?;
            }
        }
        f.write_str("]")
    }

    fn fmt_element(&self, f: &mut fmt::Formatter<'_>, i: usize) -> fmt::Result {
        match &self.data {
            Data::F32(v) => write!(f, "{:.6}", v[i]),
            Data::F64(v) => write!(f, "{:.6}", v[i]),
            Data::I32(v) => write!(f, "{}", v[i]),
            Data::I64(v) => write!(f, "{}", v[i]),
            Data::Bool(v) => write!(f, "{}", v[i]),
        }
    }
}
