//! The primitive ops: the closed set every later stage (autodiff, interpreter, passes,
//! codegen) must handle. Composites (softmax, cross-entropy, layers) live in `layers` and are
//! built from these, so nothing below the graph ever needs to know them.
//!
//! In: nothing (the vocabulary of the graph). Out: [`Op`] and its parts, which every later stage
//! matches on.

use std::fmt;

use crate::graph::DType;
use crate::value::Value;

/// Elementwise ops of one operand.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Unary {
    /// `-x` (any numeric dtype).
    Neg,
    /// `e^x`.
    Exp,
    /// Natural logarithm.
    Log,
    /// Square root.
    Sqrt,
    /// Sine.
    Sin,
    /// Cosine.
    Cos,
    /// Hyperbolic tangent.
    Tanh,
    /// `|x|` (any numeric dtype).
    Abs,
    /// `1 / x`.
    Recip,
}

/// Elementwise ops of two operands, with numpy broadcasting.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Binary {
    /// `a + b`.
    Add,
    /// `a - b`.
    Sub,
    /// `a * b`.
    Mul,
    /// `a / b` (integer division truncates toward zero).
    Div,
    /// The larger of `a` and `b`.
    Max,
    /// The smaller of `a` and `b`.
    Min,
}

/// Elementwise comparisons, producing a `bool` mask.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Compare {
    /// `a < b`.
    Lt,
    /// `a <= b`.
    Le,
    /// `a > b`.
    Gt,
    /// `a >= b`.
    Ge,
    /// `a == b`.
    Eq,
    /// `a != b` (true where either is NaN, as in IEEE 754, numpy and Rust).
    Ne,
}

impl Compare {
    /// The comparison of two numbers, as Rust's operators compare them (so NaN compares false,
    /// except under `Ne`): the meaning the interpreter and the kernel evaluator share.
    pub fn apply<T: PartialOrd>(self, x: T, y: T) -> bool {
        match self {
            Compare::Lt => x < y,
            Compare::Le => x <= y,
            Compare::Gt => x > y,
            Compare::Ge => x >= y,
            Compare::Eq => x == y,
            Compare::Ne => x != y,
        }
    }
}

/// The distribution a [`Op::Random`] node draws from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Distribution {
    /// Uniform on `[0, 1)`.
    Uniform,
    /// Standard normal (Box–Muller over two uniforms).
    Normal,
}

/// How a param gets its first value. Fans follow PyTorch: for a weight of shape
/// `[out, in, k...]`, `fan_in = in·Πk` and `fan_out = out·Πk`; a 1-D param has
/// `fan_in = fan_out = len`.
#[derive(Clone, Debug, PartialEq)]
pub enum Init {
    /// All elements equal to the value.
    Constant(f64),
    /// Uniform on `[low, high)`.
    Uniform {
        /// Lower bound.
        low: f64,
        /// Upper bound (excluded).
        high: f64,
    },
    /// Normal with the given mean and standard deviation.
    Normal {
        /// Mean.
        mean: f64,
        /// Standard deviation.
        std: f64,
    },
    /// Uniform on `±sqrt(6 / fan_in)` (He et al., for ReLU nets).
    KaimingUniform,
    /// Normal with `std = sqrt(2 / fan_in)` (He et al., for ReLU nets).
    KaimingNormal,
    /// Uniform on `±sqrt(6 / (fan_in + fan_out))` (Glorot and Bengio).
    XavierUniform,
    /// Normal with `std = sqrt(2 / (fan_in + fan_out))` (Glorot and Bengio).
    XavierNormal,
    /// He et al. with a chosen fan and gain (PyTorch's `kaiming_uniform_` / `kaiming_normal_`
    /// with `mode` and `nonlinearity`): uniform on `±gain·sqrt(3 / fan)`, or normal with
    /// `std = gain / sqrt(fan)`. [`Init::KaimingUniform`] is `gain = √2` over `fan_in`.
    Kaiming {
        /// Normal instead of uniform.
        normal: bool,
        /// Which fan scales it.
        fan: Fan,
        /// The gain of the nonlinearity after the layer (see [`gain`]).
        gain: f64,
    },
    /// A (semi-)orthogonal matrix times `gain` (Saxe et al., PyTorch's `orthogonal_`): the
    /// param viewed as `[rows, Π other dims]` has orthonormal rows, or columns if it has fewer.
    Orthogonal {
        /// Scale of the result.
        gain: f64,
    },
    /// Evenly spaced from `start` to `end` (inclusive) in row-major order, as the reference
    /// notebook's deliberately poor initialization does.
    Linspace {
        /// The first element's value.
        start: f64,
        /// The last element's value.
        end: f64,
    },
    /// Exactly these values (pre-trained weights).
    Values(Value),
}

/// Which fan an initializer is scaled by.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fan {
    /// Inputs per output (keeps the forward pass's variance).
    In,
    /// Outputs per input (keeps the backward pass's variance).
    Out,
}

/// The gain PyTorch's `calculate_gain` recommends for a nonlinearity: `relu` √2, `tanh` 5/3,
/// `selu` 3/4, `leaky_relu` `sqrt(2 / (1 + slope²))`, and 1 for `linear`, `sigmoid` and
/// anything else.
pub fn gain(nonlinearity: &str, negative_slope: f64) -> f64 {
    match nonlinearity {
        "relu" => 2f64.sqrt(),
        "tanh" => 5.0 / 3.0,
        "selu" => 0.75,
        "leaky_relu" => (2.0 / (1.0 + negative_slope * negative_slope)).sqrt(),
        _ => 1.0,
    }
}

impl Init {
    /// All zeros.
    pub const ZEROS: Init = Init::Constant(0.0);
    /// All ones.
    pub const ONES: Init = Init::Constant(1.0);
}

impl fmt::Display for Init {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Init::Constant(v) => write!(f, "constant({})", short(*v)),
            Init::Uniform { low, high } => write!(f, "uniform({}, {})", short(*low), short(*high)),
            Init::Normal { mean, std } => write!(f, "normal({}, {})", short(*mean), short(*std)),
            Init::KaimingUniform => f.write_str("kaiming_uniform"),
            Init::KaimingNormal => f.write_str("kaiming_normal"),
            Init::XavierUniform => f.write_str("xavier_uniform"),
            Init::XavierNormal => f.write_str("xavier_normal"),
            Init::Kaiming { normal, fan, gain } => {
                let kind = if *normal { "normal" } else { "uniform" };
                write!(f, "kaiming_{kind}(fan_{}, gain {})", if *fan == Fan::In { "in" } else { "out" }, short(*gain))
            }
            Init::Orthogonal { gain } => write!(f, "orthogonal(gain {})", short(*gain)),
            Init::Linspace { start, end } => write!(f, "linspace({}, {})", short(*start), short(*end)),
            Init::Values(v) => write!(f, "values{:?}", v.shape()),
        }
    }
}

/// A number rounded to 6 significant digits for listings (`0.707107`, not `0.7071067811865475`).
fn short(value: f64) -> String {
    if value == 0.0 || !value.is_finite() {
        return format!("{value}");
    }
    let digits = 5 - value.abs().log10().floor() as i32;
    let scale = 10f64.powi(digits.max(0));
    format!("{}", (value * scale).round() / scale)
}

/// A node's operation. The node's shape and dtype (stored beside the op) complete its meaning:
/// `Reshape`, `BroadcastTo`, `Fill`, `Random` and `ScatterAdd` take their output shape from it.
#[derive(Clone, Debug, PartialEq)]
pub enum Op {
    /// A value fed by name each time the graph runs.
    Input {
        /// The leaf's name.
        name: String,
    },
    /// A named, learnable (or frozen) tensor that persists across runs.
    Param {
        /// The leaf's name.
        name: String,
        /// How the first value is drawn.
        init: Init,
        /// False for frozen params, which get no gradient.
        trainable: bool,
    },
    /// A tensor known when the graph is built.
    Constant(Value),
    /// Every element equal to the value (`zeros`, `ones`, of possibly symbolic shape, and the
    /// float scalars of `Graph::scalar_of` and of numbers combined with tensors). The value is
    /// kept in `f64` and rounded to the node's dtype only when computed.
    Fill(f64),
    /// A scalar: the product of the runtime sizes of these dims (e.g. the batch size `B`).
    DimSize(Vec<crate::graph::Dim>),
    /// Counter-based random numbers: element `i` is a pure function of `(seed, counter, i)`.
    /// Input: the counter, an integer scalar.
    Random {
        /// The stream's seed.
        seed: u64,
        /// Uniform or normal.
        distribution: Distribution,
    },
    /// Elementwise, one operand.
    Unary(Unary),
    /// `x^exponent` with a constant exponent.
    PowScalar(f64),
    /// Elementwise, two broadcast operands.
    Binary(Binary),
    /// Elementwise comparison of two broadcast operands.
    Compare(Compare),
    /// `mask ? a : b`, all three broadcast.
    Select,
    /// Element type conversion.
    Cast(DType),
    /// Same elements, the node's shape.
    Reshape,
    /// Dims reordered: output dim `i` is input dim `perm[i]`.
    Permute(Vec<usize>),
    /// Broadcast to the node's shape.
    BroadcastTo,
    /// Elements `start..end` of one axis.
    Slice {
        /// The axis.
        axis: usize,
        /// First element kept.
        start: usize,
        /// One past the last element kept.
        end: usize,
    },
    /// Operands joined along one axis.
    Concat {
        /// The axis.
        axis: usize,
    },
    /// Sum over the listed axes (sorted, unique).
    Sum {
        /// The reduced axes.
        axes: Vec<usize>,
        /// Whether reduced axes stay as size-1 dims.
        keepdims: bool,
    },
    /// Maximum over the listed axes (sorted, unique).
    ReduceMax {
        /// The reduced axes.
        axes: Vec<usize>,
        /// Whether reduced axes stay as size-1 dims.
        keepdims: bool,
    },
    /// `[..., m, k] x [..., k, n] -> [..., m, n]`, batch dims broadcast.
    MatMul,
    /// Rows of a table: `table[N, D...]`, `indices[I...]` -> `[I..., D...]`.
    Gather,
    /// The adjoint of `Gather`: `indices[I...]`, `updates[I..., D...]` -> `[N, D...]`, rows
    /// summed where indices repeat.
    ScatterAdd,
    /// `indices[I...]` -> `[I..., depth]`, 1 where the index matches, else 0.
    OneHot {
        /// Number of classes.
        depth: usize,
    },
}

impl Op {
    /// True if the op's value (of `dtype`) can be a data-dependent error: an index outside its
    /// table (gather, scatter-add, one-hot labels) or an integer division by zero. Every stage
    /// that must know asks here: the lowering (what a kernel may have to report) and, at the
    /// kernel level, `kernel::Expr::can_fail` for the expressions these ops lower to.
    pub fn can_fail(&self, dtype: DType) -> bool {
        matches!(self, Op::Gather | Op::OneHot { .. } | Op::ScatterAdd)
            || (matches!(self, Op::Binary(Binary::Div)) && dtype.is_int())
    }

    /// The primitive kind, without attributes.
    pub fn kind(&self) -> OpKind {
        match self {
            Op::Input { .. } => OpKind::Input,
            Op::Param { .. } => OpKind::Param,
            Op::Constant(_) => OpKind::Constant,
            Op::Fill(_) => OpKind::Fill,
            Op::DimSize(_) => OpKind::DimSize,
            Op::Random { distribution: Distribution::Uniform, .. } => OpKind::RandomUniform,
            Op::Random { distribution: Distribution::Normal, .. } => OpKind::RandomNormal,
            Op::Unary(u) => match u {
                Unary::Neg => OpKind::Neg,
                Unary::Exp => OpKind::Exp,
                Unary::Log => OpKind::Log,
                Unary::Sqrt => OpKind::Sqrt,
                Unary::Sin => OpKind::Sin,
                Unary::Cos => OpKind::Cos,
                Unary::Tanh => OpKind::Tanh,
                Unary::Abs => OpKind::Abs,
                Unary::Recip => OpKind::Recip,
            },
            Op::PowScalar(_) => OpKind::Pow,
            Op::Binary(b) => match b {
                Binary::Add => OpKind::Add,
                Binary::Sub => OpKind::Sub,
                Binary::Mul => OpKind::Mul,
                Binary::Div => OpKind::Div,
                Binary::Max => OpKind::Max,
                Binary::Min => OpKind::Min,
            },
            Op::Compare(c) => match c {
                Compare::Lt => OpKind::Lt,
                Compare::Le => OpKind::Le,
                Compare::Gt => OpKind::Gt,
                Compare::Ge => OpKind::Ge,
                Compare::Eq => OpKind::Eq,
                Compare::Ne => OpKind::Ne,
            },
            Op::Select => OpKind::Select,
            Op::Cast(_) => OpKind::Cast,
            Op::Reshape => OpKind::Reshape,
            Op::Permute(_) => OpKind::Permute,
            Op::BroadcastTo => OpKind::BroadcastTo,
            Op::Slice { .. } => OpKind::Slice,
            Op::Concat { .. } => OpKind::Concat,
            Op::Sum { .. } => OpKind::Sum,
            Op::ReduceMax { .. } => OpKind::ReduceMax,
            Op::MatMul => OpKind::MatMul,
            Op::Gather => OpKind::Gather,
            Op::ScatterAdd => OpKind::ScatterAdd,
            Op::OneHot { .. } => OpKind::OneHot,
        }
    }

    /// The op's name in listings and error messages (`add`, `matmul`, ...).
    pub fn name(&self) -> &'static str {
        self.kind().name()
    }

    /// The attributes shown after the inputs in a listing (`axes=[1] keepdims`), if any.
    pub fn attributes(&self) -> String {
        match self {
            Op::Input { name } | Op::Param { name, .. } => format!("{name:?}"),
            Op::Constant(value) if value.numel() == 1 => format!("{}", value.to_f64_vec()[0]),
            Op::Constant(value) => format!("{:?}", value.shape()),
            Op::Fill(v) => format!("{v}"),
            Op::DimSize(dims) => {
                let names: Vec<String> = dims.iter().map(ToString::to_string).collect();
                names.join("*")
            }
            Op::Random { seed, .. } => format!("seed={seed}"),
            Op::PowScalar(p) => format!("exponent={p}"),
            Op::Cast(dtype) => format!("to={dtype}"),
            Op::Permute(perm) => format!("perm={perm:?}"),
            Op::Slice { axis, start, end } => format!("axis={axis} range={start}..{end}"),
            Op::Concat { axis } => format!("axis={axis}"),
            Op::Sum { axes, keepdims } | Op::ReduceMax { axes, keepdims } => {
                format!("axes={axes:?}{}", if *keepdims { " keepdims" } else { "" })
            }
            Op::OneHot { depth } => format!("depth={depth}"),
            _ => String::new(),
        }
    }
}

macro_rules! op_kinds {
    ($($kind:ident => $name:literal,)*) => {
        /// Every primitive op, without attributes. `OpKind::ALL` lists them all, which is how
        /// the gradient-check table proves it has a case for each.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum OpKind {
            $(
                #[doc = concat!("`", $name, "`")]
                $kind,
            )*
        }

        impl OpKind {
            /// Every kind, in declaration order.
            pub const ALL: &'static [OpKind] = &[$(OpKind::$kind),*];

            /// The name in listings and error messages.
            pub fn name(self) -> &'static str {
                match self {
                    $(OpKind::$kind => $name,)*
                }
            }
        }
    };
}

op_kinds! {
    Input => "input",
    Param => "param",
    Constant => "constant",
    Fill => "fill",
    DimSize => "dim_size",
    RandomUniform => "random_uniform",
    RandomNormal => "random_normal",
    Neg => "neg",
    Exp => "exp",
    Log => "log",
    Sqrt => "sqrt",
    Sin => "sin",
    Cos => "cos",
    Tanh => "tanh",
    Abs => "abs",
    Recip => "recip",
    Pow => "pow",
    Add => "add",
    Sub => "sub",
    Mul => "mul",
    Div => "div",
    Max => "max",
    Min => "min",
    Lt => "lt",
    Le => "le",
    Gt => "gt",
    Ge => "ge",
    Eq => "eq",
    Select => "select",
    Cast => "cast",
    Reshape => "reshape",
    Permute => "permute",
    BroadcastTo => "broadcast_to",
    Slice => "slice",
    Concat => "concat",
    Sum => "sum",
    ReduceMax => "reduce_max",
    MatMul => "matmul",
    Gather => "gather",
    ScatterAdd => "scatter_add",
    OneHot => "one_hot",
    // Added after the others, so that each older kind keeps its place in `ALL` (the gradient
    // checks seed each kind's random trials by that place).
    Ne => "ne",
}

impl fmt::Display for OpKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}
