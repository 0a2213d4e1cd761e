//! Strided slices over several axes at once (numpy's `x[0:4:2, 1:3]`), built from the
//! primitives `slice`, `reshape` and `concat`, so autodiff, the interpreter and every printer
//! see only ops they already know.
//!
//! In: a tensor and one `(start, end, step)` range per leading axis. Out: the tensor of every
//! `step`-th element of each range. A step over an axis is exact without a new op: the range
//! `start..start + count·step` reshaped to `[count, step]` keeps its first column; when that
//! range would run past the axis, the last element is sliced alone and joined on.

use super::{Dim, Shape, Tensor};
use crate::error::{Error, Location, Result};

impl<'g> Tensor<'g> {
    /// The range of [`Tensor::slice_nd`] that keeps an axis whole, numpy's `:`: the only range
    /// a symbolic axis (a batch `B`) accepts, so `x.slice_nd(&[Tensor::WHOLE_AXIS, (0, 4, 2)])`
    /// is `x[:, 0:4:2]` for any batch size.
    pub const WHOLE_AXIS: (usize, usize, usize) = (0, usize::MAX, 1);

    /// Every `step`-th element of `start..end` along each of the leading axes, one
    /// `(start, end, step)` per axis, as numpy's `x[start:end:step, ...]`; axes past the list
    /// are kept whole, and so is an axis given [`Tensor::WHOLE_AXIS`]. Each other axis must be
    /// static; a range must lie inside its axis (`start <= end <= size`, no clamping) and a step
    /// must be at least 1 (a reversed slice is not offered).
    ///
    /// ```
    /// # use kiln_compiler::graph::{Graph, Shape};
    /// let g = Graph::new();
    /// let x = g.input("x", [5, 4, 3]).unwrap();
    /// // Rows 0, 2 and 4, columns 1 and 2, every channel.
    /// let y = x.slice_nd(&[(0, 5, 2), (1, 3, 1)]).unwrap();
    /// assert_eq!(y.shape(), Shape::from([3, 2, 3]));
    /// ```
    #[track_caller]
    pub fn slice_nd(self, ranges: &[(usize, usize, usize)]) -> Result<Tensor<'g>> {
        let location = Location::caller();
        let shape = self.shape();
        if ranges.len() > shape.rank() {
            let detail = format!("{} ranges given for {shape}, which has {} axes", ranges.len(), shape.rank());
            return Err(Error::Axis { op: "slice_nd", detail, location });
        }
        let mut sliced = self;
        for (axis, &(start, end, step)) in ranges.iter().enumerate() {
            if (start, end, step) == Tensor::WHOLE_AXIS {
                continue;
            }
            let size = check_range(&shape, axis, (start, end, step), location)?;
            if (start, end, step) != (0, size, 1) {
                sliced = sliced.slice_with_step(axis, start, end, step)?;
            }
        }
        Ok(sliced)
    }

    /// Every `step`-th element of `start..end` along `axis`, once the range is known to fit.
    #[track_caller]
    fn slice_with_step(self, axis: usize, start: usize, end: usize, step: usize) -> Result<Tensor<'g>> {
        let count = (end - start).div_ceil(step);
        if step == 1 || count == 0 {
            return self.slice(axis, start, end);
        }
        if count == 1 {
            return self.slice(axis, start, start + 1);
        }
        let size = self.shape().0[axis].as_static().unwrap_or(0);
        if start + count * step <= size {
            return self.every_step(axis, start, count, step);
        }
        // The last kept element sits within `step` of the axis' end: take the others in whole
        // groups of `step` and join the last one on its own.
        let head = self.every_step(axis, start, count - 1, step)?;
        let last = start + (count - 1) * step;
        let tail = self.slice(axis, last, last + 1)?;
        Tensor::concat(&[head, tail], axis)
    }

    /// Elements `start, start + step, ...` (`count` of them) along `axis`, where
    /// `start + count·step` fits the axis: the range viewed as `[count, step]`, first column.
    #[track_caller]
    fn every_step(self, axis: usize, start: usize, count: usize, step: usize) -> Result<Tensor<'g>> {
        let range = self.slice(axis, start, start + count * step)?;
        let mut grouped = range.shape();
        grouped.0.splice(axis..=axis, [Dim::Static(count), Dim::Static(step)]);
        let first_column = range.reshape(grouped)?.slice(axis + 1, 0, 1)?;
        let mut out = range.shape();
        out.0[axis] = Dim::Static(count);
        first_column.reshape(out)
    }
}

/// The static size of `axis`, or an error naming the axis and the bounds when the range does
/// not fit it or the step is zero.
fn check_range(shape: &Shape, axis: usize, range: (usize, usize, usize), location: Location) -> Result<usize> {
    let (start, end, step) = range;
    let Some(size) = shape.0[axis].as_static() else {
        let detail =
            format!("axis {axis} of {shape} is symbolic; only static axes can be sliced (keep it with WHOLE_AXIS)");
        return Err(Error::Argument { op: "slice_nd", detail, location });
    };
    if step == 0 {
        let detail = format!("the step for axis {axis} is 0; a step must be at least 1");
        return Err(Error::Argument { op: "slice_nd", detail, location });
    }
    if start > end || end > size {
        let detail = format!("range {start}..{end} does not fit axis {axis} of {shape} (size {size})");
        return Err(Error::Argument { op: "slice_nd", detail, location });
    }
    Ok(size)
}
