//! The body of `forward`: static shape checks, then the rewrite into fallible graph calls.
//!
//! In: the parsed `forward` and the struct's layers. Out: the tokens of the `forward` method, or a
//! compile error at the offending expression.
//!
//! Shapes are followed through `let` bindings wherever the macro can know them (declared
//! inputs, built-in layers with literal sizes, elementwise functions, broadcasting), so a
//! layer fed the wrong width or a result that contradicts the declared output is a compile
//! error at the offending expression. Where a shape is unknown (another model, a tensor
//! method the macro does not model), checking stops and the runtime check takes over.
//!
//! The rewrite turns `self.layer(x)` into `self.layer.forward(x)?` and the library's
//! functions (`relu(h)`, `softmax(h, 1)`, `cross_entropy(logits, y)`) into calls of
//! `kiln::layers` with `?`, so a forward reads like PyTorch and still reports every error.

use proc_macro2::Span;
use quote::{quote, quote_spanned};
use syn::spanned::Spanned;
use syn::visit_mut::{self, VisitMut};
use syn::{BinOp, Block, Expr, Ident, Pat, Stmt};

use crate::syntax::{DimSpec, Field, LayerSpec};

/// A dim the macro knows statically.
#[derive(Clone, PartialEq)]
pub enum Dim {
    Static(usize),
    Symbol(String),
    Unknown,
}

/// A shape, `None` when even the rank is unknown.
type Shape = Option<Vec<Dim>>;

fn show(dims: &[Dim]) -> String {
    let dims: Vec<String> = dims
        .iter()
        .map(|d| match d {
            Dim::Static(n) => n.to_string(),
            Dim::Symbol(s) => s.clone(),
            Dim::Unknown => "?".into(),
        })
        .collect();
    format!("[{}]", dims.join(", "))
}

pub fn declared(dims: &[DimSpec]) -> Vec<Dim> {
    dims.iter()
        .map(|d| match d {
            DimSpec::Static(n) => Dim::Static(*n),
            DimSpec::Symbol(s) => Dim::Symbol(s.to_string()),
        })
        .collect()
}

/// How a library function is called and what shape it gives.
#[derive(Clone, Copy)]
enum Call {
    /// `kiln::layers::name(args)?`, same shape as the first argument.
    Elementwise,
    /// `kiln::layers::name(args)?`, a scalar.
    Reduction,
    /// `(arg).name()?`, same shape.
    Method,
}

/// The functions usable unqualified inside `forward`: name, number of arguments, kind.
const FUNCTIONS: [(&str, usize, Call); 15] = [
    ("relu", 1, Call::Elementwise),
    ("sigmoid", 1, Call::Elementwise),
    ("softplus", 1, Call::Elementwise),
    ("softmax", 2, Call::Elementwise),
    ("log_softmax", 2, Call::Elementwise),
    ("tanh", 1, Call::Method),
    ("exp", 1, Call::Method),
    ("log", 1, Call::Method),
    ("sqrt", 1, Call::Method),
    ("sin", 1, Call::Method),
    ("cos", 1, Call::Method),
    ("cross_entropy", 2, Call::Reduction),
    ("mse", 2, Call::Reduction),
    ("binary_cross_entropy_with_logits", 2, Call::Reduction),
    ("mean_all", 1, Call::Reduction),
];

fn function(expr: &Expr) -> Option<(&'static str, usize, Call)> {
    let Expr::Call(call) = expr else { return None };
    let Expr::Path(path) = &*call.func else { return None };
    let name = path.path.get_ident()?.to_string();
    FUNCTIONS.iter().copied().find(|(n, _, _)| *n == name)
}

fn is_self(expr: &Expr) -> bool {
    matches!(expr, Expr::Path(p) if p.path.is_ident("self"))
}

/// The layer a `self.name(..)` call names.
fn layer_call<'f>(expr: &Expr, fields: &'f [Field]) -> Option<&'f Field> {
    let Expr::MethodCall(call) = expr else { return None };
    if !is_self(&call.receiver) {
        return None;
    }
    fields.iter().find(|f| f.name == call.method)
}

/// Follows shapes through `body` and reports every contradiction it finds.
pub struct Checker<'f> {
    fields: &'f [Field],
    bindings: Vec<(String, Shape)>,
    pub errors: Vec<syn::Error>,
}

impl<'f> Checker<'f> {
    pub fn new(fields: &'f [Field], inputs: impl IntoIterator<Item = (String, Vec<Dim>)>) -> Checker<'f> {
        let bindings = inputs.into_iter().map(|(name, dims)| (name, Some(dims))).collect();
        Checker { fields, bindings, errors: Vec::new() }
    }

    fn error(&mut self, tokens: impl quote::ToTokens, message: String) {
        self.errors.push(syn::Error::new_spanned(tokens, message));
    }

    /// Checks the statements of `body`, then its result against `output`.
    pub fn check_body(&mut self, body: &Block, output: Option<&[Dim]>) {
        let mut result: Shape = None;
        let mut result_expr: Option<&Expr> = None;
        for stmt in &body.stmts {
            match stmt {
                Stmt::Local(local) => {
                    let shape = local.init.as_ref().and_then(|init| self.infer(&init.expr));
                    if let Pat::Ident(ident) = &local.pat {
                        self.bindings.push((ident.ident.to_string(), shape));
                    }
                }
                Stmt::Expr(expr, None) => {
                    result = self.infer(expr);
                    result_expr = Some(expr);
                }
                Stmt::Expr(expr, Some(_)) => {
                    self.infer(expr);
                }
                _ => {}
            }
        }
        if let (Some(result), Some(output), Some(expr)) = (result, output, result_expr)
            && contradicts(&result, output)
        {
            let message = format!("`forward` returns {}, but is declared to return {}", show(&result), show(output));
            self.error(expr, message);
        }
    }

    fn infer(&mut self, expr: &Expr) -> Shape {
        match expr {
            Expr::Path(path) => {
                let name = path.path.get_ident()?.to_string();
                self.bindings.iter().rev().find(|(n, _)| *n == name).and_then(|(_, shape)| shape.clone())
            }
            Expr::Paren(inner) => self.infer(&inner.expr),
            Expr::Group(inner) => self.infer(&inner.expr),
            Expr::Try(inner) => self.infer(&inner.expr),
            Expr::Lit(_) => Some(Vec::new()),
            Expr::Unary(unary) => self.infer(&unary.expr),
            Expr::Binary(binary) if is_arithmetic(&binary.op) => {
                let (left, right) = (self.infer(&binary.left), self.infer(&binary.right));
                let (left, right) = (left?, right?);
                match broadcast(&left, &right) {
                    Some(shape) => Some(shape),
                    None => {
                        let message = format!("cannot broadcast {} with {}", show(&left), show(&right));
                        self.error(binary, message);
                        None
                    }
                }
            }
            Expr::MethodCall(call) if is_self(&call.receiver) => {
                let field = layer_call(expr, self.fields)?;
                let argument = call.args.first()?;
                let input = self.infer(argument);
                let (name, what) = (field.name.to_string(), format!("`{}`", quote!(#argument)));
                self.layer_output(&field.layer, &name, input, &what, argument)
            }
            Expr::MethodCall(call) => {
                let receiver = self.infer(&call.receiver);
                for argument in &call.args {
                    self.infer(argument);
                }
                let same = ["tanh", "exp", "log", "sqrt", "sin", "cos", "neg", "square", "recip", "abs"];
                if same.contains(&call.method.to_string().as_str()) { receiver } else { None }
            }
            Expr::Call(call) => {
                let shapes: Vec<Shape> = call.args.iter().map(|a| self.infer(a)).collect();
                match function(expr)? {
                    (_, _, Call::Reduction) => Some(Vec::new()),
                    _ => shapes.into_iter().next().flatten(),
                }
            }
            _ => None,
        }
    }

    /// The shape `layer` (called `name`) gives for `input` (described as `what`), reporting a
    /// width it cannot take at `argument`.
    fn layer_output(&mut self, layer: &LayerSpec, name: &str, input: Shape, what: &str, argument: &Expr) -> Shape {
        let mut dims = input?;
        let expect_last = |checker: &mut Self, dims: &[Dim], want: Option<usize>| {
            let (Some(want), Some(Dim::Static(last))) = (want, dims.last()) else { return };
            if *last != want {
                let message = format!(
                    "`{name}` is {}: its input's last dim must be {want}, but {what} has shape {}",
                    layer.describe(),
                    show(dims)
                );
                checker.error(argument, message);
            }
        };
        match layer {
            LayerSpec::Linear { inputs, outputs } => {
                expect_last(self, &dims, inputs.value);
                let last = outputs.value.map_or(Dim::Unknown, Dim::Static);
                *dims.last_mut()? = last;
                Some(dims)
            }
            LayerSpec::Embedding { dim, .. } => {
                dims.push(dim.value.map_or(Dim::Unknown, Dim::Static));
                Some(dims)
            }
            LayerSpec::LayerNorm { dim } => {
                expect_last(self, &dims, dim.value);
                Some(dims)
            }
            LayerSpec::Dropout { .. } | LayerSpec::Activation { .. } => Some(dims),
            LayerSpec::Sequential { layers } => {
                let mut shape = Some(dims);
                let mut what = what.to_string();
                for (i, inner) in layers.iter().enumerate() {
                    let part = format!("{name}.{i}");
                    shape = self.layer_output(inner, &part, shape, &what, argument);
                    what = format!("the output of `{part}`");
                }
                shape
            }
            LayerSpec::Model { .. } => None,
        }
    }
}

fn is_arithmetic(op: &BinOp) -> bool {
    matches!(op, BinOp::Add(_) | BinOp::Sub(_) | BinOp::Mul(_) | BinOp::Div(_))
}

/// Numpy broadcasting of two known shapes; `None` if two static dims clash.
fn broadcast(left: &[Dim], right: &[Dim]) -> Option<Vec<Dim>> {
    let rank = left.len().max(right.len());
    let at = |dims: &[Dim], i: usize| {
        if i + dims.len() >= rank { dims[i + dims.len() - rank].clone() } else { Dim::Static(1) }
    };
    let mut out = Vec::with_capacity(rank);
    for i in 0..rank {
        let (a, b) = (at(left, i), at(right, i));
        out.push(match (a, b) {
            (a, b) if a == b => a,
            (Dim::Static(1), b) => b,
            (a, Dim::Static(1)) => a,
            (Dim::Static(_), Dim::Static(_)) => return None,
            _ => Dim::Unknown,
        });
    }
    Some(out)
}

/// True if a known shape cannot be the declared one.
fn contradicts(found: &[Dim], declared: &[Dim]) -> bool {
    found.len() != declared.len()
        || found.iter().zip(declared).any(|(f, d)| match (f, d) {
            (Dim::Unknown, _) | (_, Dim::Unknown) => false,
            (f, d) => f != d,
        })
}

/// Rewrites layer calls and library functions into fallible graph calls.
pub struct Rewriter<'f> {
    pub model: &'f Ident,
    pub fields: &'f [Field],
    pub errors: Vec<syn::Error>,
}

impl Rewriter<'_> {
    fn is_rewritten(&self, expr: &Expr) -> bool {
        function(expr).is_some()
            || matches!(expr, Expr::MethodCall(call) if is_self(&call.receiver)
                && self.fields.iter().any(|f| f.name == call.method))
    }
}

impl VisitMut for Rewriter<'_> {
    fn visit_expr_mut(&mut self, expr: &mut Expr) {
        // `self.layer(x)?` written by hand: the rewrite adds the `?` itself.
        if let Expr::Try(inner) = expr
            && self.is_rewritten(&inner.expr)
        {
            *expr = (*inner.expr).clone();
        }
        visit_mut::visit_expr_mut(self, expr);
        let span = expr.span();
        if let Expr::MethodCall(call) = expr
            && is_self(&call.receiver)
        {
            let Some(field) = self.fields.iter().find(|f| f.name == call.method) else {
                let layers: Vec<String> = self.fields.iter().map(|f| format!("`{}`", f.name)).collect();
                let message =
                    format!("`{}` has no layer `{}`; its layers are {}", self.model, call.method, layers.join(", "));
                self.errors.push(syn::Error::new(call.method.span(), message));
                return;
            };
            let builtin = !matches!(field.layer, LayerSpec::Model { .. });
            if builtin && call.args.len() != 1 {
                let message = format!(
                    "`{}` is {}: it takes 1 argument, but {} {} given",
                    field.name,
                    field.layer.describe(),
                    call.args.len(),
                    if call.args.len() == 1 { "was" } else { "were" }
                );
                self.errors.push(syn::Error::new_spanned(&*call, message));
                return;
            }
            let (method, args) = (&call.method, &call.args);
            *expr = syn::parse_quote_spanned!(span=> self.#method.forward(#args)?);
        } else if let Some((name, arity, kind)) = function(expr)
            && let Expr::Call(call) = expr
        {
            if call.args.len() != arity {
                let plural = if arity == 1 { "argument" } else { "arguments" };
                let given = call.args.len();
                let verb = if given == 1 { "was" } else { "were" };
                let message = format!("`{name}` takes {arity} {plural}, but {given} {verb} given");
                self.errors.push(syn::Error::new_spanned(&*call, message));
                return;
            }
            let args = &call.args;
            let func = Ident::new(name, call.func.span());
            *expr = match kind {
                Call::Method => {
                    let arg = &args[0];
                    syn::parse_quote_spanned!(span=> (#arg).#func()?)
                }
                _ => syn::parse_quote_spanned!(span=> ::kiln::layers::#func(#args)?),
            };
        }
    }
}

/// The runtime form of a declared shape, for `ShapeCheck`.
pub fn declared_tokens(dims: &[DimSpec]) -> proc_macro2::TokenStream {
    let dims = dims.iter().map(|d| match d {
        DimSpec::Static(n) => quote!(::kiln::layers::DeclaredDim::Static(#n)),
        DimSpec::Symbol(s) => {
            let s = s.to_string();
            quote!(::kiln::layers::DeclaredDim::Symbol(#s))
        }
    });
    quote_spanned!(Span::call_site()=> &[#(#dims),*])
}
