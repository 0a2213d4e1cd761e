//! The primitive ops as methods of [`Tensor`]: each checks its operands' shapes and dtypes,
//! then appends one node. Every method is `#[track_caller]`, so an error names the line of
//! the user's code that asked for the op.
//!
//! In: tensors of one graph. Out: new nodes of that graph, or an error naming the op, the shapes
//! and the caller's line.

use super::{Binary, Compare, DType, Dim, Distribution, Graph, NodeId, Op, Shape, Tensor, Unary};
use super::{MAX_ELEMENTS, broadcast_shapes, broadcasts_to};
use crate::error::{Error, Location, Result};

/// Something that can stand as the second operand of a binary op: a tensor of the same graph,
/// or a number (which becomes a scalar constant of the first operand's dtype).
pub trait Operand<'g> {
    /// The operand as a tensor of `like`'s graph.
    fn into_tensor(self, like: Tensor<'g>) -> Tensor<'g>;
}

impl<'g> Operand<'g> for Tensor<'g> {
    fn into_tensor(self, _like: Tensor<'g>) -> Tensor<'g> {
        self
    }
}

impl<'g> Operand<'g> for f64 {
    #[track_caller]
    fn into_tensor(self, like: Tensor<'g>) -> Tensor<'g> {
        number_like(self, like, Location::caller())
    }
}

impl<'g> Operand<'g> for f32 {
    #[track_caller]
    fn into_tensor(self, like: Tensor<'g>) -> Tensor<'g> {
        number_like(f64::from(self), like, Location::caller())
    }
}

impl<'g> Operand<'g> for i32 {
    #[track_caller]
    fn into_tensor(self, like: Tensor<'g>) -> Tensor<'g> {
        number_like(f64::from(self), like, Location::caller())
    }
}

/// A scalar constant of `like`'s dtype holding `value`; a failed tensor if `value` would be
/// truncated (a fraction combined with an integer tensor). A number meeting a mask is an `f32`
/// scalar (kiln's default float, as in JAX), so `mask * 2.0` and `1.0 - mask` are `f32`.
pub(crate) fn number_like<'g>(value: f64, like: Tensor<'g>, location: Location) -> Tensor<'g> {
    let dtype = match like.dtype() {
        DType::Bool => DType::F32,
        dtype => dtype,
    };
    if dtype.is_int() && value.fract() != 0.0 {
        let detail = format!("the number {value} is not an integer, but the tensor is {dtype}; cast the tensor first");
        return like.graph.fail(Error::DType { op: "number", detail, location });
    }
    like.graph.typed_scalar(value, dtype)
}

/// Generates the `#[track_caller]` method of each elementwise unary op.
macro_rules! unary_methods {
    ($($(#[$doc:meta])* $method:ident => $op:ident,)*) => {
        impl<'g> Tensor<'g> {
            $(
                $(#[$doc])*
                #[track_caller]
                pub fn $method(self) -> Result<Tensor<'g>> {
                    self.unary(Unary::$op, Location::caller())
                }
            )*
        }
    };
}

unary_methods! {
    /// Elementwise `e^x`.
    exp => Exp,
    /// Elementwise natural logarithm.
    log => Log,
    /// Elementwise square root.
    sqrt => Sqrt,
    /// Elementwise sine.
    sin => Sin,
    /// Elementwise cosine.
    cos => Cos,
    /// Elementwise hyperbolic tangent.
    tanh => Tanh,
    /// Elementwise `|x|`.
    abs => Abs,
    /// Elementwise `1 / x`.
    recip => Recip,
}

/// Generates the `#[track_caller]` method of each binary op and comparison.
macro_rules! binary_methods {
    ($($(#[$doc:meta])* $method:ident => $kind:ident :: $op:ident,)*) => {
        // `add`, `sub`, ... are the fallible forms of the operators, which Tensor implements too.
        #[allow(clippy::should_implement_trait)]
        impl<'g> Tensor<'g> {
            $(
                $(#[$doc])*
                #[track_caller]
                pub fn $method(self, other: impl Operand<'g>) -> Result<Tensor<'g>> {
                    let other = other.into_tensor(self);
                    self.binary_like(Op::$kind($kind::$op), other, Location::caller())
                }
            )*
        }
    };
}

binary_methods! {
    /// `self + other`, broadcast. A mask meeting a float tensor becomes that float (0 or 1),
    /// as in numpy; a number meeting a mask makes it `f32`.
    add => Binary::Add,
    /// `self - other`, broadcast (masks as in [`Tensor::add`]).
    sub => Binary::Sub,
    /// `self * other`, broadcast: `mask * x` keeps `x` where the mask holds and is 0 elsewhere
    /// (masks as in [`Tensor::add`]).
    mul => Binary::Mul,
    /// `self / other`, broadcast (masks as in [`Tensor::add`]).
    div => Binary::Div,
    /// Elementwise maximum of two tensors, broadcast (numpy's `maximum`). The reduction over
    /// axes is [`Tensor::max`], as numpy's `max`.
    maximum => Binary::Max,
    /// Elementwise minimum of two tensors, broadcast (numpy's `minimum`). The reduction over
    /// axes is [`Tensor::min`], as numpy's `min`.
    minimum => Binary::Min,
    /// Mask of `self < other`.
    lt => Compare::Lt,
    /// Mask of `self <= other`.
    le => Compare::Le,
    /// Mask of `self > other`.
    gt => Compare::Gt,
    /// Mask of `self >= other`.
    ge => Compare::Ge,
    /// Mask of `self == other`.
    eq => Compare::Eq,
    /// Mask of `self != other` (true where either is NaN, as in numpy; no gradient flows
    /// through it, as through every comparison).
    ne => Compare::Ne,
}

impl<'g> Tensor<'g> {
    /// The node id, shape and dtype, or the error that made this tensor fail.
    fn parts(&self) -> Result<(NodeId, Shape, DType)> {
        let id = self.id()?;
        let state = self.graph.state.borrow();
        let node = &state.nodes[id.0];
        Ok((id, node.shape.clone(), node.dtype))
    }

    fn check_same_graph(&self, other: &Tensor<'g>, op: &'static str, location: Location) -> Result<()> {
        if std::ptr::eq(self.graph, other.graph) { Ok(()) } else { Err(Error::ForeignTensor { op, location }) }
    }

    fn push(&self, op: Op, inputs: Vec<NodeId>, shape: Shape, dtype: DType) -> Tensor<'g> {
        self.graph.push(op, inputs, shape, dtype)
    }

    /// Elementwise negation (the fallible form of `-x`).
    #[track_caller]
    #[allow(clippy::should_implement_trait)]
    pub fn neg(self) -> Result<Tensor<'g>> {
        self.unary(Unary::Neg, Location::caller())
    }

    pub(crate) fn unary(self, unary: Unary, location: Location) -> Result<Tensor<'g>> {
        let (id, shape, dtype) = self.parts()?;
        let op = Op::Unary(unary);
        let accepts_ints = matches!(unary, Unary::Neg | Unary::Abs);
        if !(dtype.is_float() || accepts_ints && dtype.is_int()) {
            let detail = format!("`{}` needs a float operand, got {dtype}", op.name());
            return Err(Error::DType { op: op.name(), detail, location });
        }
        Ok(self.push(op, vec![id], shape, dtype))
    }

    /// Elementwise `x^exponent` for a constant exponent.
    #[track_caller]
    pub fn powf(self, exponent: f64) -> Result<Tensor<'g>> {
        let (id, shape, dtype) = self.parts()?;
        if !dtype.is_float() {
            let detail = format!("`pow` needs a float operand, got {dtype}");
            return Err(Error::DType { op: "pow", detail, location: Location::caller() });
        }
        Ok(self.push(Op::PowScalar(exponent), vec![id], shape, dtype))
    }

    /// Elementwise `x * x`.
    #[track_caller]
    pub fn square(self) -> Result<Tensor<'g>> {
        self.mul(self)
    }

    /// A binary op or comparison of `self` and `other`. A mask (bool) meeting a float operand
    /// is first converted to that float dtype (0 or 1), as numpy and JAX promote: `mask * x`
    /// zeroes `x` where the mask is false. Masks meet integers and other masks only in `eq`
    /// and `ne`.
    pub(crate) fn binary_like(self, op: Op, other: Tensor<'g>, location: Location) -> Result<Tensor<'g>> {
        let name = op.name();
        self.check_same_graph(&other, name, location)?;
        let (self_dtype, other_dtype) = (self.parts()?.2, other.parts()?.2);
        let (left, right) = match (self_dtype, other_dtype) {
            (DType::Bool, float) if float.is_float() => (self.cast(float)?, other),
            (float, DType::Bool) if float.is_float() => (self, other.cast(float)?),
            _ => (self, other),
        };
        let (a, a_shape, a_dtype) = left.parts()?;
        let (b, b_shape, b_dtype) = right.parts()?;
        if a_dtype != b_dtype {
            let detail = format!("operands have dtypes {a_dtype} and {b_dtype}; cast one first");
            return Err(Error::DType { op: name, detail, location });
        }
        let is_compare = matches!(op, Op::Compare(_));
        if a_dtype == DType::Bool && !matches!(op, Op::Compare(Compare::Eq | Compare::Ne)) {
            let detail = "two masks (bool) only support `eq` and `ne`; cast one to a number first".to_string();
            return Err(Error::DType { op: name, detail, location });
        }
        let Some(shape) = broadcast_shapes(&a_shape, &b_shape) else {
            let detail = format!("cannot broadcast {a_shape} with {b_shape}");
            return Err(Error::Shape { op: name, detail, location });
        };
        let dtype = if is_compare { DType::Bool } else { a_dtype };
        let shape = addressable(name, shape, location)?;
        Ok(self.push(op, vec![a, b], shape, dtype))
    }

    /// `self ? on_true : on_false` elementwise; all three broadcast. `on_false` may be a
    /// number, which takes `on_true`'s dtype.
    ///
    /// The mask is a bool mask, or a number tensor read as numpy reads one: nonzero (NaN
    /// included) is true. So a float 0/1 mask works as it is, and so does a mask that was
    /// multiplied or summed on the way.
    ///
    /// ```
    /// use kiln_compiler::prelude::*;
    /// let g = Graph::new();
    /// let x = g.constant(Value::f32([3], vec![-1.0, 2.0, -3.0]));
    /// let keep = g.constant(Value::f32([3], vec![1.0, 0.0, 1.0]));
    /// let picked = keep.select(x, 10.0)?;
    /// let out = Interpreter::new(&g).run(&Feeds::new(), &ParamStore::new(), &[picked])?;
    /// assert_eq!(out[0].to_f32_vec(), vec![-1.0, 10.0, -3.0]);
    /// # Ok::<(), kiln_compiler::Error>(())
    /// ```
    #[track_caller]
    pub fn select(self, on_true: Tensor<'g>, on_false: impl Operand<'g>) -> Result<Tensor<'g>> {
        let location = Location::caller();
        let on_false = on_false.into_tensor(on_true);
        self.check_same_graph(&on_true, "select", location)?;
        self.check_same_graph(&on_false, "select", location)?;
        let mask = match self.parts()?.2 {
            DType::Bool => self,
            _ => self.binary_like(Op::Compare(Compare::Ne), number_like(0.0, self, location), location)?,
        };
        let (mask, mask_shape, _) = mask.parts()?;
        let (a, a_shape, a_dtype) = on_true.parts()?;
        let (b, b_shape, b_dtype) = on_false.parts()?;
        if a_dtype != b_dtype {
            let detail = format!("the branches have dtypes {a_dtype} and {b_dtype}");
            return Err(Error::DType { op: "select", detail, location });
        }
        let shape = broadcast_shapes(&mask_shape, &a_shape).and_then(|s| broadcast_shapes(&s, &b_shape));
        let Some(shape) = shape else {
            let detail = format!("cannot broadcast mask {mask_shape} with {a_shape} and {b_shape}");
            return Err(Error::Shape { op: "select", detail, location });
        };
        let shape = addressable("select", shape, location)?;
        Ok(self.push(Op::Select, vec![mask, a, b], shape, a_dtype))
    }

    /// Converts the elements to `dtype` (floats to integers truncate toward zero; masks
    /// become 0 or 1; numbers become masks that are true where nonzero). A mask meeting a
    /// float in arithmetic converts by itself; `cast` is for the other cases, such as a
    /// mask counted as `i32` (a mask's mean, `layers::mean`, is already `f32`).
    #[track_caller]
    pub fn cast(self, dtype: DType) -> Result<Tensor<'g>> {
        let (id, shape, from) = self.parts()?;
        if from == dtype {
            return Ok(self);
        }
        Ok(self.push(Op::Cast(dtype), vec![id], shape, dtype))
    }

    /// The same elements under a new shape holding as many elements. Symbolic dims must
    /// appear in both shapes (`[B, 4, 5]` to `[B, 20]` is fine, `[B, 4]` to `[4, B]` is too).
    #[track_caller]
    pub fn reshape(self, shape: impl Into<Shape>) -> Result<Tensor<'g>> {
        let (id, from, dtype) = self.parts()?;
        let to = addressable("reshape", shape.into(), Location::caller())?;
        if from.size_signature() != to.size_signature() {
            let location = Location::caller();
            return Err(Error::ReshapeSize { from: from.to_string(), to: to.to_string(), location });
        }
        if from == to {
            return Ok(self);
        }
        Ok(self.push(Op::Reshape, vec![id], to, dtype))
    }

    /// Reorders the dims: output dim `i` is input dim `perm[i]` (PyTorch's `permute`, numpy's
    /// `transpose(axes)`; [`Tensor::transpose`] is the same op under numpy's name).
    #[track_caller]
    pub fn permute(self, perm: &[usize]) -> Result<Tensor<'g>> {
        self.permute_as("permute", perm, Location::caller())
    }

    fn permute_as(self, op: &'static str, perm: &[usize], location: Location) -> Result<Tensor<'g>> {
        let (id, shape, dtype) = self.parts()?;
        let mut seen = vec![false; shape.rank()];
        let valid = perm.len() == shape.rank()
            && perm.iter().all(|&p| p < seen.len() && !std::mem::replace(&mut seen[p], true));
        if !valid {
            let detail = format!("{perm:?} is not a permutation of the dims of {shape}");
            return Err(Error::Axis { op, detail, location });
        }
        let out = Shape(perm.iter().map(|&p| shape.0[p].clone()).collect());
        Ok(self.push(Op::Permute(perm.to_vec()), vec![id], out, dtype))
    }

    /// Reorders the dims as numpy's `transpose(axes)`: output dim `i` is input dim `perm[i]`
    /// (the same as [`Tensor::permute`]). To swap the last two dims (a matrix transpose), use
    /// [`Tensor::t`].
    ///
    /// ```
    /// # use kiln_compiler::graph::{Graph, Shape};
    /// let g = Graph::new();
    /// let x = g.input("x", [2, 3, 4]).unwrap();
    /// assert_eq!(x.transpose(&[2, 0, 1]).unwrap().shape(), Shape::from([4, 2, 3]));
    /// ```
    #[track_caller]
    pub fn transpose(self, perm: &[usize]) -> Result<Tensor<'g>> {
        self.permute_as("transpose", perm, Location::caller())
    }

    /// Swaps the last two dims: a matrix transpose, batched over leading dims (PyTorch's
    /// `x.mT`, and its `x.t()` for a matrix). Any other reordering is [`Tensor::transpose`].
    ///
    /// ```
    /// # use kiln_compiler::graph::{Graph, Shape};
    /// let g = Graph::new();
    /// let x = g.input("x", [5, 2, 3]).unwrap();
    /// assert_eq!(x.t().unwrap().shape(), Shape::from([5, 3, 2]));
    /// ```
    #[track_caller]
    pub fn t(self) -> Result<Tensor<'g>> {
        let location = Location::caller();
        let rank = self.parts()?.1.rank();
        if rank < 2 {
            let detail = format!("swapping the last two dims needs at least 2 dims, got {}", self.shape());
            return Err(Error::Axis { op: "t", detail, location });
        }
        let mut perm: Vec<usize> = (0..rank).collect();
        perm.swap(rank - 2, rank - 1);
        self.permute_as("t", &perm, location)
    }

    /// Broadcasts to `shape` by numpy rules.
    #[track_caller]
    pub fn broadcast_to(self, shape: impl Into<Shape>) -> Result<Tensor<'g>> {
        let (id, from, dtype) = self.parts()?;
        let to = addressable("broadcast_to", shape.into(), Location::caller())?;
        if !broadcasts_to(&from, &to) {
            let detail = format!("cannot broadcast {from} to {to}");
            return Err(Error::Shape { op: "broadcast_to", detail, location: Location::caller() });
        }
        if from == to {
            return Ok(self);
        }
        Ok(self.push(Op::BroadcastTo, vec![id], to, dtype))
    }

    /// Elements `start..end` along `axis` (which must have a static size).
    #[track_caller]
    pub fn slice(self, axis: usize, start: usize, end: usize) -> Result<Tensor<'g>> {
        let location = Location::caller();
        let (id, shape, dtype) = self.parts()?;
        let axis_dim = check_axis("slice", &shape, axis, location)?;
        let Some(size) = axis_dim.as_static() else {
            let detail = format!("axis {axis} of {shape} is symbolic; only static axes can be sliced");
            return Err(Error::Argument { op: "slice", detail, location });
        };
        if start > end || end > size {
            let detail = format!("range {start}..{end} does not fit axis {axis} of {shape}");
            return Err(Error::Argument { op: "slice", detail, location });
        }
        let mut out = shape.clone();
        out.0[axis] = Dim::Static(end - start);
        Ok(self.push(Op::Slice { axis, start, end }, vec![id], out, dtype))
    }

    /// Joins tensors along `axis`. All must agree on every other dim and on dtype, and the
    /// joined axis must be static in each.
    #[track_caller]
    pub fn concat(parts: &[Tensor<'g>], axis: usize) -> Result<Tensor<'g>> {
        let location = Location::caller();
        let Some(first) = parts.first() else {
            let detail = "needs at least one tensor".to_string();
            return Err(Error::Argument { op: "concat", detail, location });
        };
        let (_, first_shape, dtype) = first.parts()?;
        check_axis("concat", &first_shape, axis, location)?;
        let mut ids = Vec::with_capacity(parts.len());
        let mut total = 0;
        for part in parts {
            first.check_same_graph(part, "concat", location)?;
            let (id, shape, part_dtype) = part.parts()?;
            if part_dtype != dtype {
                let detail = format!("parts have dtypes {dtype} and {part_dtype}");
                return Err(Error::DType { op: "concat", detail, location });
            }
            let others_match = shape.rank() == first_shape.rank()
                && (0..shape.rank()).all(|i| i == axis || shape.0[i] == first_shape.0[i]);
            let Some(size) = shape.0.get(axis).and_then(Dim::as_static).filter(|_| others_match) else {
                let detail = format!("cannot join {first_shape} and {shape} along axis {axis}");
                return Err(Error::Shape { op: "concat", detail, location });
            };
            total += size;
            ids.push(id);
        }
        let mut out = first_shape;
        out.0[axis] = Dim::Static(total);
        let out = addressable("concat", out, location)?;
        Ok(first.push(Op::Concat { axis }, ids, out, dtype))
    }

    /// Sums over `axes`, keeping them as size-1 dims if `keepdims`. A mask sums to an `i64`
    /// count of its true elements (as numpy counts; JAX's `int32` would overflow on counts
    /// past 2³¹): `x.gt(0.0)?.sum_all()?` is how many elements are positive.
    #[track_caller]
    pub fn sum(self, axes: &[usize], keepdims: bool) -> Result<Tensor<'g>> {
        self.reduce(axes, keepdims, false, Location::caller())
    }

    /// Sums every element into a scalar (a mask's into an `i64` count, see [`Tensor::sum`]).
    #[track_caller]
    pub fn sum_all(self) -> Result<Tensor<'g>> {
        let axes: Vec<usize> = (0..self.rank()).collect();
        self.reduce(&axes, false, false, Location::caller())
    }

    /// Maximum over `axes`, keeping them as size-1 dims if `keepdims`: a reduction, as numpy's
    /// `max`. The elementwise maximum of two tensors is [`Tensor::maximum`], as numpy's.
    ///
    /// ```
    /// # use kiln_compiler::graph::{Graph, Shape};
    /// let g = Graph::new();
    /// let x = g.input("x", [4, 3]).unwrap();
    /// assert_eq!(x.max(&[1], false).unwrap().shape(), Shape::from([4])); // reduces
    /// assert_eq!(x.min(&[0], true).unwrap().shape(), Shape::from([1, 3])); // reduces
    /// assert_eq!(x.maximum(0.0).unwrap().shape(), Shape::from([4, 3])); // elementwise
    /// ```
    #[track_caller]
    pub fn max(self, axes: &[usize], keepdims: bool) -> Result<Tensor<'g>> {
        self.reduce(axes, keepdims, true, Location::caller())
    }

    /// Minimum over `axes`, keeping them as size-1 dims if `keepdims`: a reduction, as numpy's
    /// `min`, computed as `-max(-x)` (so floats only: an integer's negation can overflow). The
    /// elementwise minimum of two tensors is [`Tensor::minimum`], as numpy's.
    #[track_caller]
    pub fn min(self, axes: &[usize], keepdims: bool) -> Result<Tensor<'g>> {
        let location = Location::caller();
        let dtype = self.parts()?.2;
        if !dtype.is_float() {
            let detail = format!("the minimum over axes needs a float operand, got {dtype}; cast it first");
            return Err(Error::DType { op: "reduce_min", detail, location });
        }
        let negated = self.unary(Unary::Neg, location)?;
        negated.reduce_as("reduce_min", axes, keepdims, true, location)?.unary(Unary::Neg, location)
    }

    fn reduce(self, axes: &[usize], keepdims: bool, is_max: bool, location: Location) -> Result<Tensor<'g>> {
        let op_name = if is_max { "reduce_max" } else { "sum" };
        self.reduce_as(op_name, axes, keepdims, is_max, location)
    }

    /// A sum or max reduction whose errors name `op_name` (the op the user called).
    fn reduce_as(
        self,
        op_name: &'static str,
        axes: &[usize],
        keepdims: bool,
        is_max: bool,
        location: Location,
    ) -> Result<Tensor<'g>> {
        let (_, _, dtype) = self.parts()?;
        if dtype == DType::Bool && is_max {
            let detail = "cannot take the maximum of a mask; cast it to a number first".to_string();
            return Err(Error::DType { op: op_name, detail, location });
        }
        // A mask sums to a count, as in numpy: its elements become `i64` 0s and 1s first.
        let counted = if dtype == DType::Bool { self.cast(DType::I64)? } else { self };
        let (id, shape, dtype) = counted.parts()?;
        let mut axes = axes.to_vec();
        axes.sort_unstable();
        axes.dedup();
        for &axis in &axes {
            let dim = check_axis(op_name, &shape, axis, location)?;
            if is_max && dim.as_static() == Some(0) {
                let detail = format!("axis {axis} of {shape} is empty; its maximum is undefined");
                return Err(Error::Argument { op: op_name, detail, location });
            }
        }
        if axes.is_empty() {
            return Ok(counted);
        }
        let out = reduced_shape(&shape, &axes, keepdims);
        let op = if is_max { Op::ReduceMax { axes, keepdims } } else { Op::Sum { axes, keepdims } };
        Ok(self.push(op, vec![id], out, dtype))
    }

    /// Matrix product `[..., m, k] x [..., k, n] -> [..., m, n]`; leading (batch) dims broadcast.
    #[track_caller]
    pub fn matmul(self, other: Tensor<'g>) -> Result<Tensor<'g>> {
        let location = Location::caller();
        self.check_same_graph(&other, "matmul", location)?;
        let (a, a_shape, a_dtype) = self.parts()?;
        let (b, b_shape, b_dtype) = other.parts()?;
        if a_dtype != b_dtype || !a_dtype.is_float() {
            let detail = format!("operands must share a float dtype, got {a_dtype} and {b_dtype}");
            return Err(Error::DType { op: "matmul", detail, location });
        }
        let out = matmul_shape(&a_shape, &b_shape).ok_or_else(|| {
            let detail = format!("cannot multiply {a_shape} by {b_shape}");
            Error::Shape { op: "matmul", detail, location }
        })?;
        let out = addressable("matmul", out, location)?;
        Ok(self.push(Op::MatMul, vec![a, b], out, a_dtype))
    }

    /// Rows of this table (`[N, D...]`) picked by integer `indices` (`[I...]`), giving
    /// `[I..., D...]`: an embedding lookup.
    #[track_caller]
    pub fn gather(self, indices: Tensor<'g>) -> Result<Tensor<'g>> {
        let location = Location::caller();
        self.check_same_graph(&indices, "gather", location)?;
        let (table, table_shape, dtype) = self.parts()?;
        let (idx, idx_shape, idx_dtype) = indices.parts()?;
        if !idx_dtype.is_int() {
            let detail = format!("indices must be i32 or i64, got {idx_dtype}");
            return Err(Error::DType { op: "gather", detail, location });
        }
        if table_shape.rank() == 0 {
            let detail = "the table must have at least one dim, got a scalar".to_string();
            return Err(Error::Shape { op: "gather", detail, location });
        }
        if table_shape.0[0] == Dim::Static(0) {
            let detail = format!("the table {table_shape} has no rows, so no index can pick one");
            return Err(Error::Shape { op: "gather", detail, location });
        }
        let out = Shape(idx_shape.0.iter().chain(&table_shape.0[1..]).cloned().collect());
        let out = addressable("gather", out, location)?;
        Ok(self.push(Op::Gather, vec![table, idx], out, dtype))
    }

    /// This table (`[N, D...]`) plus the rows of `updates` (`[I..., D...]`) added at the integer
    /// `indices` (`[I...]`), rows summed where indices repeat: the adjoint of
    /// [`Tensor::gather`], and PyTorch's `table.index_add(0, indices, updates)`. The result has
    /// the table's shape and dtype; for a sum into zeros, start from a table of zeros
    /// (`g.fill([n, d], dtype, 0.0)`), which the simplifier then drops.
    ///
    /// ```
    /// # use kiln_compiler::graph::{DType, Graph, Shape};
    /// let g = Graph::new();
    /// let table = g.input("table", [10, 4]).unwrap();
    /// let ids = g.typed_input("ids", [3], DType::I32).unwrap();
    /// let rows = g.input("rows", [3, 4]).unwrap();
    /// assert_eq!(table.scatter_add(ids, rows).unwrap().shape(), Shape::from([10, 4]));
    /// ```
    #[track_caller]
    pub fn scatter_add(self, indices: Tensor<'g>, updates: Tensor<'g>) -> Result<Tensor<'g>> {
        let location = Location::caller();
        self.check_same_graph(&indices, "scatter_add", location)?;
        let (_, table_shape, table_dtype) = self.parts()?;
        let Some(rows) = table_shape.0.first().cloned() else {
            let detail = "the table must have at least one dim, got a scalar".to_string();
            return Err(Error::Shape { op: "scatter_add", detail, location });
        };
        if rows == Dim::Static(0) {
            let detail = format!("the table {table_shape} has no rows, so no index can add into one");
            return Err(Error::Shape { op: "scatter_add", detail, location });
        }
        let scattered = indices.scatter_rows(updates, rows, location)?;
        let (_, scattered_shape, dtype) = scattered.parts()?;
        if dtype != table_dtype {
            let detail = format!("the table is {table_dtype} but the updates are {dtype}");
            return Err(Error::DType { op: "scatter_add", detail, location });
        }
        if scattered_shape != table_shape {
            let detail = format!(
                "updates {} at indices {} give rows of {}, but the table is {table_shape}",
                updates.shape(),
                indices.shape(),
                Shape(scattered_shape.0[1..].to_vec())
            );
            return Err(Error::Shape { op: "scatter_add", detail, location });
        }
        self.binary_like(Op::Binary(Binary::Add), scattered, location)
    }

    /// The primitive behind [`Tensor::scatter_add`]: rows of `updates` (`[I..., D...]`) added
    /// into a zero table of `rows` rows at these integer indices (`self`, `[I...]`), giving
    /// `[rows, D...]`.
    pub(crate) fn scatter_rows(self, updates: Tensor<'g>, rows: Dim, location: Location) -> Result<Tensor<'g>> {
        self.check_same_graph(&updates, "scatter_add", location)?;
        let (idx, idx_shape, idx_dtype) = self.parts()?;
        let (upd, upd_shape, dtype) = updates.parts()?;
        if !idx_dtype.is_int() {
            let detail = format!("indices must be i32 or i64, got {idx_dtype}");
            return Err(Error::DType { op: "scatter_add", detail, location });
        }
        let prefix_ok = upd_shape.rank() >= idx_shape.rank() && upd_shape.0[..idx_shape.rank()] == idx_shape.0[..];
        if !prefix_ok {
            let detail = format!("updates {upd_shape} must start with the indices' shape {idx_shape}");
            return Err(Error::Shape { op: "scatter_add", detail, location });
        }
        let row_dims = upd_shape.0[idx_shape.rank()..].iter().cloned();
        let out = Shape(std::iter::once(rows).chain(row_dims).collect());
        let out = addressable("scatter_add", out, location)?;
        Ok(self.push(Op::ScatterAdd, vec![idx, upd], out, dtype))
    }

    /// `f32` one-hot rows: `[I...]` integer indices to `[I..., depth]` (see
    /// [`Tensor::one_hot_of`] for another dtype).
    #[track_caller]
    pub fn one_hot(self, depth: usize) -> Result<Tensor<'g>> {
        self.one_hot_in(depth, DType::F32, Location::caller())
    }

    /// One-hot rows of the given dtype: `[I...]` integer indices to `[I..., depth]`, 1 where
    /// the index matches the class, else 0 (`true`/`false` for `Bool`). An `f64` model takes
    /// `labels.one_hot_of(classes, DType::F64)` with no cast after it.
    ///
    /// ```
    /// use kiln_compiler::prelude::*;
    /// let g = Graph::new();
    /// let labels = g.constant(Value::i64([2], vec![2, 0]));
    /// let rows = labels.one_hot_of(3, DType::F64)?;
    /// assert_eq!(rows.dtype(), DType::F64);
    /// let out = Interpreter::new(&g).run(&Feeds::new(), &ParamStore::new(), &[rows])?;
    /// assert_eq!(out[0].to_f64_vec(), vec![0.0, 0.0, 1.0, 1.0, 0.0, 0.0]);
    /// # Ok::<(), kiln_compiler::Error>(())
    /// ```
    #[track_caller]
    pub fn one_hot_of(self, depth: usize, dtype: DType) -> Result<Tensor<'g>> {
        self.one_hot_in(depth, dtype, Location::caller())
    }

    fn one_hot_in(self, depth: usize, out_dtype: DType, location: Location) -> Result<Tensor<'g>> {
        let (id, shape, dtype) = self.parts()?;
        if !dtype.is_int() {
            let detail = format!("indices must be i32 or i64, got {dtype}");
            return Err(Error::DType { op: "one_hot", detail, location });
        }
        if depth == 0 {
            let detail = "depth must be at least 1".to_string();
            return Err(Error::Argument { op: "one_hot", detail, location });
        }
        let mut out = shape;
        out.0.push(Dim::Static(depth));
        let out = addressable("one_hot", out, location)?;
        Ok(self.push(Op::OneHot { depth }, vec![id], out, out_dtype))
    }
}

impl Graph {
    /// `f32` numbers uniform on `[0, 1)`: element `i` is a pure function of `(seed, counter, i)`,
    /// so a step counter fed each run gives fresh, reproducible draws.
    #[track_caller]
    pub fn random_uniform<'g>(&'g self, shape: impl Into<Shape>, seed: u64, counter: Tensor<'g>) -> Result<Tensor<'g>> {
        self.random(shape.into(), seed, counter, Distribution::Uniform, Location::caller())
    }

    /// `f32` standard normal numbers, counter-based like [`Graph::random_uniform`].
    #[track_caller]
    pub fn random_normal<'g>(&'g self, shape: impl Into<Shape>, seed: u64, counter: Tensor<'g>) -> Result<Tensor<'g>> {
        self.random(shape.into(), seed, counter, Distribution::Normal, Location::caller())
    }

    fn random<'g>(
        &'g self,
        shape: Shape,
        seed: u64,
        counter: Tensor<'g>,
        distribution: Distribution,
        location: Location,
    ) -> Result<Tensor<'g>> {
        let op = Op::Random { seed, distribution };
        let name = op.name();
        if !std::ptr::eq(self, counter.graph) {
            return Err(Error::ForeignTensor { op: name, location });
        }
        let (id, counter_shape, dtype) = counter.parts()?;
        if !dtype.is_int() || counter_shape.rank() != 0 {
            let detail = format!("the counter must be an integer scalar, got {dtype}{counter_shape}");
            return Err(Error::Argument { op: name, detail, location });
        }
        let shape = addressable(name, shape, location)?;
        Ok(self.push(op, vec![id], shape, DType::F32))
    }
}

/// `shape`, or a shape error naming `op` if its element count overflows: kiln refuses a shape
/// it could not allocate or index rather than let the count wrap to a small number.
pub(crate) fn addressable(op: &'static str, shape: Shape, location: Location) -> Result<Shape> {
    match shape.checked_static_numel() {
        Some(_) => Ok(shape),
        None => {
            let detail = format!("{shape} would hold more than {MAX_ELEMENTS} elements (its element count overflows)");
            Err(Error::Shape { op, detail, location })
        }
    }
}

/// The dim at `axis`, or an axis error naming the op and the shape.
fn check_axis<'s>(op: &'static str, shape: &'s Shape, axis: usize, location: Location) -> Result<&'s Dim> {
    shape.0.get(axis).ok_or_else(|| {
        let detail = format!("axis {axis} does not exist in {shape} (rank {})", shape.rank());
        Error::Axis { op, detail, location }
    })
}

/// The shape after reducing `axes` (sorted).
pub(crate) fn reduced_shape(shape: &Shape, axes: &[usize], keepdims: bool) -> Shape {
    let dims = shape.0.iter().enumerate().filter_map(|(i, dim)| match axes.contains(&i) {
        true if keepdims => Some(Dim::Static(1)),
        true => None,
        false => Some(dim.clone()),
    });
    Shape(dims.collect())
}

/// The shape of `a @ b`, or `None` if they do not fit.
pub(crate) fn matmul_shape(a: &Shape, b: &Shape) -> Option<Shape> {
    let (ra, rb) = (a.rank(), b.rank());
    if ra < 2 || rb < 2 || a.0[ra - 1] != b.0[rb - 2] {
        return None;
    }
    let batch = broadcast_shapes(&Shape(a.0[..ra - 2].to_vec()), &Shape(b.0[..rb - 2].to_vec()))?;
    let mut dims = batch.0;
    dims.push(a.0[ra - 2].clone());
    dims.push(b.0[rb - 1].clone());
    Some(Shape(dims))
}
