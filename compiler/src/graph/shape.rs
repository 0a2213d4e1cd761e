//! Dims and shapes: with the dtype (`crate::dtype`), the static facts every node carries.
//!
//! In: sizes and symbol names. Out: [`Dim`], [`Shape`] and the broadcasting rules.

use std::fmt;

use crate::dtype::checked_numel;

/// One dimension of a shape: a number known when the graph is built, or a named symbol
/// (such as the batch dim `B`) whose value is only known when the graph is run.
///
/// A symbolic dim stays symbolic through the whole pipeline: one graph serves every batch size.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Dim {
    /// A size known at build time.
    Static(usize),
    /// A size named by a symbol, bound when the graph runs.
    Sym(String),
}

impl Dim {
    /// A symbolic dim named `name`.
    pub fn sym(name: &str) -> Dim {
        Dim::Sym(name.to_string())
    }

    /// The static size, if this dim has one.
    pub fn as_static(&self) -> Option<usize> {
        match self {
            Dim::Static(n) => Some(*n),
            Dim::Sym(_) => None,
        }
    }

    /// The product of the dims if all are static.
    pub fn static_product(dims: &[Dim]) -> Option<usize> {
        dims.iter().map(Dim::as_static).product()
    }

    /// True if this dim is the static size 1 (the only size that broadcasts).
    pub fn is_one(&self) -> bool {
        *self == Dim::Static(1)
    }
}

impl From<usize> for Dim {
    fn from(n: usize) -> Dim {
        Dim::Static(n)
    }
}

impl From<&str> for Dim {
    fn from(name: &str) -> Dim {
        Dim::sym(name)
    }
}

impl From<&Dim> for Dim {
    fn from(dim: &Dim) -> Dim {
        dim.clone()
    }
}

impl fmt::Display for Dim {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Dim::Static(n) => write!(f, "{n}"),
            Dim::Sym(name) => f.write_str(name),
        }
    }
}

/// The shape of a tensor: a list of dims, outermost first. A scalar has no dims.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Default)]
pub struct Shape(pub Vec<Dim>);

impl Shape {
    /// The shape of a scalar.
    pub fn scalar() -> Shape {
        Shape(Vec::new())
    }

    /// Builds a shape from anything that turns into dims: `Shape::of([Dim::sym("B"), 20.into()])`.
    pub fn of<D: Into<Dim>>(dims: impl IntoIterator<Item = D>) -> Shape {
        Shape(dims.into_iter().map(Into::into).collect())
    }

    /// Number of dims.
    pub fn rank(&self) -> usize {
        self.0.len()
    }

    /// The dims, outermost first.
    pub fn dims(&self) -> &[Dim] {
        &self.0
    }

    /// The product of the dims if all are static.
    pub fn static_numel(&self) -> Option<usize> {
        Dim::static_product(&self.0)
    }

    /// The static sizes if every dim is static.
    pub fn as_static(&self) -> Option<Vec<usize>> {
        self.0.iter().map(Dim::as_static).collect()
    }

    /// The product of the static dims (symbols counted as 1), or `None` if it exceeds
    /// [`MAX_ELEMENTS`](crate::dtype::MAX_ELEMENTS): a shape whose static part alone is that big can never be allocated,
    /// and its element count would wrap around in `usize` or in a kernel's `i64` offsets.
    pub fn checked_static_numel(&self) -> Option<usize> {
        let statics: Vec<usize> = self.0.iter().filter_map(Dim::as_static).collect();
        checked_numel(&statics)
    }

    /// Splits the shape into its static product and its symbols (sorted), which is what two
    /// shapes must share for a reshape between them to be valid. Callers have checked that
    /// the static product does not overflow ([`Shape::checked_static_numel`]).
    pub(crate) fn size_signature(&self) -> (usize, Vec<&str>) {
        let mut product = 1usize;
        let mut symbols = Vec::new();
        for dim in &self.0 {
            match dim {
                Dim::Static(n) => product = product.saturating_mul(*n),
                Dim::Sym(name) => symbols.push(name.as_str()),
            }
        }
        symbols.sort_unstable();
        (product, symbols)
    }
}

impl fmt::Display for Shape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[")?;
        for (i, dim) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{dim}")?;
        }
        f.write_str("]")
    }
}

impl<D: Into<Dim>, const N: usize> From<[D; N]> for Shape {
    fn from(dims: [D; N]) -> Shape {
        Shape::of(dims)
    }
}

impl From<&[usize]> for Shape {
    fn from(dims: &[usize]) -> Shape {
        Shape::of(dims.iter().copied())
    }
}

impl From<Vec<usize>> for Shape {
    fn from(dims: Vec<usize>) -> Shape {
        Shape::of(dims)
    }
}

impl From<Vec<Dim>> for Shape {
    fn from(dims: Vec<Dim>) -> Shape {
        Shape(dims)
    }
}

impl From<&Shape> for Shape {
    fn from(shape: &Shape) -> Shape {
        shape.clone()
    }
}

/// The numpy broadcast of two shapes (aligned at the right; a static 1 stretches), or `None`
/// if some pair of dims differs and neither is 1.
pub fn broadcast_shapes(a: &Shape, b: &Shape) -> Option<Shape> {
    let rank = a.rank().max(b.rank());
    let mut dims = Vec::with_capacity(rank);
    for i in 0..rank {
        let da = dim_from_right(a, rank - 1 - i);
        let db = dim_from_right(b, rank - 1 - i);
        let dim = match (da, db) {
            (None, Some(d)) | (Some(d), None) => d.clone(),
            (Some(x), Some(y)) if x == y => x.clone(),
            (Some(x), Some(y)) if x.is_one() => y.clone(),
            (Some(x), Some(y)) if y.is_one() => x.clone(),
            _ => return None,
        };
        dims.push(dim);
    }
    Some(Shape(dims))
}

/// The dim `from_right` places from the right end of `shape` (0 is the last dim).
fn dim_from_right(shape: &Shape, from_right: usize) -> Option<&Dim> {
    shape.rank().checked_sub(from_right + 1).map(|i| &shape.0[i])
}

/// True if `from` can be broadcast to `to` (numpy rules, `to` being the larger shape).
pub fn broadcasts_to(from: &Shape, to: &Shape) -> bool {
    from.rank() <= to.rank() && broadcast_shapes(from, to).as_ref() == Some(to)
}
