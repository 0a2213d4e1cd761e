//! The syntax of `model!`: a struct of layers and a `forward` with declared shapes.
//!
//! In: the tokens of a `model!` call. Out: the parsed struct, layers and `forward`.
//!
//! ```text
//! model! {
//!     /// Docs and attributes go on the struct.
//!     pub struct Mlp {
//!         layer1: Linear(2 => 20),
//!         head: Sequential(Linear(20 => 20), ReLU, Linear(20 => 2)),
//!         encoder: Encoder,            // another model, written without arguments
//!     }
//!     fn forward(&self, x: [B, 2], tokens: i64[B, T]) -> [B, 2] { ... }
//! }
//! ```

use proc_macro2::Span;
use syn::parse::{Parse, ParseStream};
use syn::punctuated::Punctuated;
use syn::spanned::Spanned;
use syn::{Attribute, Block, Expr, Ident, LitInt, Path, Token, Visibility, braced, bracketed, parenthesized};

/// The built-in layers, as the error for an unknown one lists them.
pub const LAYERS: &str = "Linear(in => out), Embedding(count => dim[, sparse]), LayerNorm(dim), Dropout(p), \
    Sequential(layer, ...), ReLU, Sigmoid, Tanh, Softplus, or a model type written without arguments";

/// The activations usable as layers.
pub const ACTIVATIONS: [&str; 4] = ["ReLU", "Sigmoid", "Tanh", "Softplus"];

pub struct Model {
    pub attrs: Vec<Attribute>,
    pub vis: Visibility,
    pub name: Ident,
    pub fields: Vec<Field>,
    pub forward: Forward,
}

pub struct Field {
    pub attrs: Vec<Attribute>,
    pub name: Ident,
    pub layer: LayerSpec,
}

/// A size argument of a layer: any expression, and its value when it is a literal.
#[derive(Clone)]
pub struct Size {
    pub expr: Expr,
    pub value: Option<usize>,
}

#[derive(Clone)]
pub enum LayerSpec {
    Linear { inputs: Size, outputs: Size },
    Embedding { count: Size, dim: Size, sparse: bool },
    LayerNorm { dim: Size },
    Dropout { p: Expr },
    Sequential { layers: Vec<LayerSpec> },
    Activation { name: Ident },
    Model { path: Path },
}

impl LayerSpec {
    /// How the layer prints in messages: `Linear(2 => 20)`.
    pub fn describe(&self) -> String {
        let size = |s: &Size| {
            let expr = &s.expr;
            s.value.map_or_else(|| quote::quote!(#expr).to_string(), |v| v.to_string())
        };
        match self {
            LayerSpec::Linear { inputs, outputs } => format!("Linear({} => {})", size(inputs), size(outputs)),
            LayerSpec::Embedding { count, dim, sparse } => {
                let flag = if *sparse { ", sparse" } else { "" };
                format!("Embedding({} => {}{flag})", size(count), size(dim))
            }
            LayerSpec::LayerNorm { dim } => format!("LayerNorm({})", size(dim)),
            LayerSpec::Dropout { .. } => "Dropout".into(),
            LayerSpec::Sequential { .. } => "Sequential".into(),
            LayerSpec::Activation { name } => name.to_string(),
            LayerSpec::Model { path } => quote::quote!(#path).to_string().replace(' ', ""),
        }
    }
}

/// A dim of a declared shape.
#[derive(Clone)]
pub enum DimSpec {
    Static(usize),
    Symbol(Ident),
}

pub struct Input {
    pub name: Ident,
    pub dtype: Option<Ident>,
    pub dims: Vec<DimSpec>,
}

pub struct Forward {
    pub inputs: Vec<Input>,
    pub output: Option<(Vec<DimSpec>, Span)>,
    pub body: Block,
}

impl Parse for Model {
    fn parse(input: ParseStream) -> syn::Result<Model> {
        let attrs = input.call(Attribute::parse_outer)?;
        let vis: Visibility = input.parse()?;
        input.parse::<Token![struct]>()?;
        let name: Ident = input.parse()?;
        let content;
        braced!(content in input);
        let fields = Punctuated::<Field, Token![,]>::parse_terminated(&content)?.into_iter().collect();
        let forward = input.parse()?;
        if !input.is_empty() {
            return Err(input.error("`model!` holds one struct and its `fn forward`; nothing may follow"));
        }
        Ok(Model { attrs, vis, name, fields, forward })
    }
}

impl Parse for Field {
    fn parse(input: ParseStream) -> syn::Result<Field> {
        let attrs = input.call(Attribute::parse_outer)?;
        let name: Ident = input.parse()?;
        input.parse::<Token![:]>()?;
        let layer = input.parse()?;
        Ok(Field { attrs, name, layer })
    }
}

impl Parse for LayerSpec {
    fn parse(input: ParseStream) -> syn::Result<LayerSpec> {
        let path: Path = input.parse()?;
        let single = path.get_ident().map(Ident::to_string);
        if !input.peek(syn::token::Paren) {
            return Ok(match single {
                Some(name) if ACTIVATIONS.contains(&name.as_str()) => {
                    LayerSpec::Activation { name: path.get_ident().cloned().expect("a single ident") }
                }
                Some(name)
                    if ["Linear", "Embedding", "LayerNorm", "Dropout", "Sequential"].contains(&name.as_str()) =>
                {
                    return Err(syn::Error::new(
                        path.span(),
                        format!("`{name}` needs its arguments: {}", usage(&name)),
                    ));
                }
                _ => LayerSpec::Model { path },
            });
        }
        let content;
        let parens = parenthesized!(content in input);
        let kind = single.unwrap_or_default();
        let args_span = parens.span.join();
        let spec = match kind.as_str() {
            "Linear" => {
                let (inputs, outputs) = arrow(&content, "Linear", args_span)?;
                LayerSpec::Linear { inputs, outputs }
            }
            "Embedding" => {
                let (count, dim, sparse) = embedding_arguments(&content, args_span)?;
                LayerSpec::Embedding { count, dim, sparse }
            }
            "LayerNorm" => LayerSpec::LayerNorm { dim: one_size(&content, "LayerNorm", args_span)? },
            "Dropout" => {
                let p = one(&content, "Dropout", args_span)?;
                LayerSpec::Dropout { p }
            }
            "Sequential" => {
                let layers = Punctuated::<LayerSpec, Token![,]>::parse_terminated(&content)?;
                if layers.is_empty() {
                    return Err(syn::Error::new(args_span, "`Sequential` needs at least one layer"));
                }
                LayerSpec::Sequential { layers: layers.into_iter().collect() }
            }
            _ => {
                let message =
                    format!("unknown layer `{}`; expected {LAYERS}", quote::quote!(#path).to_string().replace(' ', ""));
                return Err(syn::Error::new(path.span(), message));
            }
        };
        Ok(spec)
    }
}

fn usage(kind: &str) -> &'static str {
    match kind {
        "Linear" => "`Linear(in => out)`, e.g. `Linear(2 => 20)`",
        "Embedding" => "`Embedding(count => dim)` or `Embedding(count => dim, sparse)`, e.g. `Embedding(1000 => 64)`",
        "LayerNorm" => "`LayerNorm(dim)`, e.g. `LayerNorm(64)`",
        "Dropout" => "`Dropout(p)`, e.g. `Dropout(0.1)`",
        _ => "`Sequential(layer, ...)`, e.g. `Sequential(Linear(2 => 20), ReLU)`",
    }
}

fn size(expr: Expr) -> Size {
    let value = match &expr {
        Expr::Lit(syn::ExprLit { lit: syn::Lit::Int(int), .. }) => int.base10_parse().ok(),
        _ => None,
    };
    Size { expr, value }
}

fn wrong_arguments(kind: &str, span: Span) -> syn::Error {
    syn::Error::new(span, format!("wrong arguments for `{kind}`: it takes {}", usage(kind)))
}

/// `a => b`.
fn arrow(content: ParseStream, kind: &str, span: Span) -> syn::Result<(Size, Size)> {
    let from: Expr = content.parse().map_err(|_| wrong_arguments(kind, span))?;
    if !content.peek(Token![=>]) {
        return Err(wrong_arguments(kind, span));
    }
    content.parse::<Token![=>]>()?;
    let to: Expr = content.parse().map_err(|_| wrong_arguments(kind, span))?;
    if !content.is_empty() {
        return Err(wrong_arguments(kind, content.span()));
    }
    Ok((size(from), size(to)))
}

/// `count => dim`, optionally followed by `, sparse` (row-update gradients).
fn embedding_arguments(content: ParseStream, span: Span) -> syn::Result<(Size, Size, bool)> {
    let from: Expr = content.parse().map_err(|_| wrong_arguments("Embedding", span))?;
    if !content.peek(Token![=>]) {
        return Err(wrong_arguments("Embedding", span));
    }
    content.parse::<Token![=>]>()?;
    let to: Expr = content.parse().map_err(|_| wrong_arguments("Embedding", span))?;
    let mut sparse = false;
    if content.peek(Token![,]) {
        content.parse::<Token![,]>()?;
        let flag: Ident = content.parse().map_err(|_| wrong_arguments("Embedding", content.span()))?;
        if flag != "sparse" {
            return Err(syn::Error::new(
                flag.span(),
                format!("unknown flag `{flag}` for `Embedding`; the only one is `sparse`"),
            ));
        }
        sparse = true;
    }
    if !content.is_empty() {
        return Err(wrong_arguments("Embedding", content.span()));
    }
    Ok((size(from), size(to), sparse))
}

fn one(content: ParseStream, kind: &str, span: Span) -> syn::Result<Expr> {
    let expr: Expr = content.parse().map_err(|_| wrong_arguments(kind, span))?;
    if !content.is_empty() {
        return Err(wrong_arguments(kind, content.span()));
    }
    Ok(expr)
}

fn one_size(content: ParseStream, kind: &str, span: Span) -> syn::Result<Size> {
    one(content, kind, span).map(size)
}

fn parse_dims(input: ParseStream) -> syn::Result<Vec<DimSpec>> {
    let content;
    bracketed!(content in input);
    let mut dims = Vec::new();
    while !content.is_empty() {
        if content.peek(LitInt) {
            let lit: LitInt = content.parse()?;
            dims.push(DimSpec::Static(lit.base10_parse()?));
        } else if content.peek(Ident) {
            dims.push(DimSpec::Symbol(content.parse()?));
        } else {
            return Err(content.error("a dim is a number (`20`) or a symbol (`B`)"));
        }
        if !content.is_empty() {
            content.parse::<Token![,]>()?;
        }
    }
    Ok(dims)
}

impl Parse for Forward {
    fn parse(input: ParseStream) -> syn::Result<Forward> {
        input.parse::<Token![fn]>()?;
        let name: Ident = input.parse()?;
        if name != "forward" {
            return Err(syn::Error::new(name.span(), "the model's function must be called `forward`"));
        }
        let content;
        parenthesized!(content in input);
        content.parse::<Token![&]>()?;
        content.parse::<Token![self]>()?;
        let mut inputs = Vec::new();
        while !content.is_empty() {
            content.parse::<Token![,]>()?;
            if content.is_empty() {
                break;
            }
            let name: Ident = content.parse()?;
            content.parse::<Token![:]>()?;
            let dtype = if content.peek(Ident) { Some(content.parse::<Ident>()?) } else { None };
            if let Some(dtype) = &dtype
                && !["f32", "f64", "i32", "i64"].contains(&dtype.to_string().as_str())
            {
                return Err(syn::Error::new(dtype.span(), "an input's dtype is f32 (the default), f64, i32 or i64"));
            }
            if !content.peek(syn::token::Bracket) {
                return Err(content.error("an input is declared with its shape: `x: [B, 2]` or `tokens: i64[B, T]`"));
            }
            let dims = parse_dims(&content)?;
            inputs.push(Input { name, dtype, dims });
        }
        let output = if input.peek(Token![->]) {
            input.parse::<Token![->]>()?;
            let span = input.span();
            Some((parse_dims(input)?, span))
        } else {
            None
        };
        let body = input.parse()?;
        Ok(Forward { inputs, output, body })
    }
}
