//! kiln's procedural macros: `model!`.
//!
//! In: a struct of layers and a `forward` over symbolic tensors with declared shapes (see
//! [`model!`]). Out: the struct (generic over the graph's lifetime), its constructors, a
//! `forward` that builds graph nodes and checks shapes, an interpreter run for debugging, and
//! the `Module` impl behind `named_parameters()` and the PyTorch-style summary. Mistakes the
//! macro can see (unknown layers, wrong arguments, widths that do not chain, a result that
//! contradicts the declared output) are compile errors pointing at the offending tokens.

mod forward;
mod syntax;

use proc_macro::TokenStream;
use proc_macro2::{Span, TokenStream as Tokens};
use quote::{quote, quote_spanned};
use syn::spanned::Spanned;
use syn::visit_mut::VisitMut;

use crate::forward::{Checker, Rewriter, declared, declared_tokens};
use crate::syntax::{LayerSpec, Model};

/// Declares a model: a struct of layers and its `forward`.
///
/// ```text
/// model! {
///     /// The reference notebook's MLP.
///     pub struct Mlp {
///         layer1: Linear(2 => 20),
///         layer2: Linear(20 => 20),
///         layer3: Linear(20 => 2),
///     }
///     fn forward(&self, x: [B, 2]) -> [B, 2] {
///         let h = relu(self.layer1(x));
///         let h = relu(self.layer2(h));
///         self.layer3(h)
///     }
/// }
/// ```
///
/// Layers: `Linear(in => out)`, `Embedding(count => dim)` (`Embedding(count => dim, sparse)` for
/// row-update gradients), `LayerNorm(dim)`, `Dropout(p)`,
/// `Sequential(layer, ...)`, the activations `ReLU`, `Sigmoid`, `Tanh`, `Softplus`, and any
/// other model, named by its type without arguments (`encoder: Encoder`). Params are named
/// PyTorch-style after the fields: `layer1.weight`, `encoder.layer1.bias`, `head.0.weight`.
///
/// Inputs are declared with their shapes, `x: [B, 2]` (f32) or `tokens: i64[B, T]`; a symbol
/// stands for any size, the same within one call. Inside `forward`, `self.layer(x)` applies a
/// layer and the library's functions (`relu`, `sigmoid`, `softplus`, `softmax`, `log_softmax`,
/// `tanh`, `exp`, `log`, `sqrt`, `sin`, `cos`, `cross_entropy`, `mse`,
/// `binary_cross_entropy_with_logits`, `mean_all`) are called without `?`; everything else is
/// ordinary Rust over `Tensor`s (whose methods return `Result`, so use `?` there).
///
/// Generated for `Mlp`: `Mlp::new(&graph)`, `Mlp::with_init(&graph, rule)` (the rule sees each
/// param's index, name, shape and default initializer and may choose another),
/// `Mlp::build(&scope)` (for nesting), `forward`, `inputs()` (declares the graph inputs the
/// signature describes), `run(&params, [values])` (the interpreter, in eval mode),
/// `named_parameters()`, `parameters()`, `train()` / `eval()` (the graph's mode: what dropout
/// does in the interpreter and in every function compiled from the graph, switched without a
/// rebuild), `export(&params, &options)` (for
/// models of one input: the forward half as a standalone artifact), and `Display` as a summary.
#[proc_macro]
pub fn model(input: TokenStream) -> TokenStream {
    let model = syn::parse_macro_input!(input as Model);
    match expand(model) {
        Ok(tokens) => tokens.into(),
        Err(error) => error.to_compile_error().into(),
    }
}

fn combine(errors: Vec<syn::Error>) -> syn::Result<()> {
    let mut errors = errors.into_iter();
    let Some(mut first) = errors.next() else { return Ok(()) };
    for error in errors {
        first.combine(error);
    }
    Err(first)
}

/// The expression building `layer` in the scope `scope` (a `&Scope`).
fn construct(layer: &LayerSpec, scope: Tokens) -> Tokens {
    let span = Span::call_site();
    match layer {
        LayerSpec::Linear { inputs, outputs } => {
            let (i, o) = (&inputs.expr, &outputs.expr);
            quote_spanned!(span=> ::kiln::layers::Linear::build(#scope, #i, #o)?)
        }
        LayerSpec::Embedding { count, dim, sparse } => {
            let (c, d) = (&count.expr, &dim.expr);
            quote_spanned!(span=> ::kiln::layers::Embedding::build_with(#scope, #c, #d, #sparse)?)
        }
        LayerSpec::LayerNorm { dim } => {
            let d = &dim.expr;
            quote_spanned!(span=> ::kiln::layers::LayerNorm::build(#scope, #d)?)
        }
        LayerSpec::Dropout { p } => quote_spanned!(span=> ::kiln::layers::Dropout::build(#scope, #p)),
        LayerSpec::Activation { name } => quote_spanned!(span=> ::kiln::layers::Activation::#name),
        LayerSpec::Sequential { layers } => {
            let parts = layers.iter().enumerate().map(|(i, inner)| {
                let name = i.to_string();
                let part = construct(inner, quote!(&__kiln_scope.child(#name)));
                quote!(::std::boxed::Box::new(#part) as ::std::boxed::Box<dyn ::kiln::layers::Layer<'g> + 'g>)
            });
            quote!({
                let __kiln_scope = #scope;
                ::kiln::layers::Sequential::new(::std::vec![#(#parts),*])
            })
        }
        LayerSpec::Model { path } => quote_spanned!(path.span()=> #path::build(#scope)?),
    }
}

/// The field type of `layer`.
fn field_type(layer: &LayerSpec) -> Tokens {
    match layer {
        LayerSpec::Linear { .. } => quote!(::kiln::layers::Linear<'g>),
        LayerSpec::Embedding { .. } => quote!(::kiln::layers::Embedding<'g>),
        LayerSpec::LayerNorm { .. } => quote!(::kiln::layers::LayerNorm<'g>),
        LayerSpec::Dropout { .. } => quote!(::kiln::layers::Dropout),
        LayerSpec::Activation { .. } => quote!(::kiln::layers::Activation),
        LayerSpec::Sequential { .. } => quote!(::kiln::layers::Sequential<'g>),
        LayerSpec::Model { path } => quote_spanned!(path.span()=> #path<'g>),
    }
}

fn expand(model: Model) -> syn::Result<Tokens> {
    let Model { attrs, vis, name, fields, forward } = model;
    let mut errors = Vec::new();
    let mut seen = Vec::new();
    for field in &fields {
        if seen.contains(&field.name) {
            errors.push(syn::Error::new(field.name.span(), format!("layer `{}` is declared twice", field.name)));
        }
        seen.push(field.name.clone());
    }

    let inputs = forward.inputs.iter().map(|i| (i.name.to_string(), declared(&i.dims)));
    let mut checker = Checker::new(&fields, inputs);
    let output = forward.output.as_ref().map(|(dims, _)| declared(dims));
    checker.check_body(&forward.body, output.as_deref());
    errors.extend(checker.errors);

    let mut body = forward.body.clone();
    let mut rewriter = Rewriter { model: &name, fields: &fields, errors: Vec::new() };
    rewriter.visit_block_mut(&mut body);
    errors.extend(rewriter.errors);
    combine(errors)?;

    let field_names: Vec<_> = fields.iter().map(|f| &f.name).collect();
    let field_strings: Vec<String> = field_names.iter().map(|n| n.to_string()).collect();
    let field_attrs: Vec<_> = fields.iter().map(|f| &f.attrs).collect();
    let field_types: Vec<Tokens> = fields.iter().map(|f| field_type(&f.layer)).collect();
    let constructions: Vec<Tokens> = fields
        .iter()
        .map(|f| {
            let local = f.name.to_string();
            construct(&f.layer, quote!(&scope.child(#local)))
        })
        .collect();

    let input_names: Vec<_> = forward.inputs.iter().map(|i| &i.name).collect();
    let input_strings: Vec<String> = input_names.iter().map(|n| n.to_string()).collect();
    let input_count = input_names.len();
    let input_dtypes: Vec<Tokens> = forward
        .inputs
        .iter()
        .map(|i| {
            let dtype = match i.dtype.as_ref().map(|d| d.to_string()).as_deref() {
                Some("f64") => quote!(F64),
                Some("i32") => quote!(I32),
                Some("i64") => quote!(I64),
                _ => quote!(F32),
            };
            quote!(::kiln::DType::#dtype)
        })
        .collect();
    let input_shapes: Vec<Tokens> = forward
        .inputs
        .iter()
        .map(|i| {
            let dims = i.dims.iter().map(|d| match d {
                syntax::DimSpec::Static(n) => quote!(::kiln::Dim::Static(#n)),
                syntax::DimSpec::Symbol(s) => {
                    let s = s.to_string();
                    quote!(::kiln::Dim::sym(#s))
                }
            });
            quote!(::std::vec![#(#dims),*])
        })
        .collect();
    let input_declared: Vec<Tokens> = forward.inputs.iter().map(|i| declared_tokens(&i.dims)).collect();
    let op = format!("{name}.forward");
    let output_check = forward.output.as_ref().map(|(dims, _)| {
        let dims = declared_tokens(dims);
        quote!(__kiln_check.check("the result", __kiln_output, #dims)?;)
    });
    let kind = name.to_string();
    let stmts = &body.stmts;

    let export = (input_count == 1).then(|| {
        quote! {
            impl<'g> #name<'g> {
                /// Compiles `forward` (in eval mode) ahead of time with the trained `params` into
                /// a standalone artifact: an object file, a static library with its C header, a
                /// command-line executable, Rust bindings (see `kiln::export`).
                #[track_caller]
                pub fn export(
                    &self,
                    params: &::kiln::ParamStore,
                    options: &::kiln::export::ExportOptions,
                ) -> ::kiln::Result<::kiln::export::Artifact> {
                    let graph = ::kiln::Graph::new();
                    let model = #name::build(&::kiln::layers::Scope::with_prefix(&graph, &self.__kiln_prefix))?;
                    model.eval();
                    let [input] = model.inputs(&graph)?;
                    let output = model.forward(input)?;
                    ::kiln::export::Model::new(&graph, input, output).export(params, options)
                }
            }
        }
    });

    let layer_impl = (input_count == 1).then(|| {
        quote! {
            impl<'g> ::kiln::layers::Layer<'g> for #name<'g> {
                fn apply(&self, x: ::kiln::Tensor<'g>) -> ::kiln::Result<::kiln::Tensor<'g>> {
                    self.forward(x)
                }
            }
        }
    });

    Ok(quote! {
        #(#attrs)*
        #vis struct #name<'g> {
            #( #(#field_attrs)* #vis #field_names: #field_types, )*
            __kiln_graph: &'g ::kiln::Graph,
            __kiln_prefix: ::std::string::String,
        }

        #[allow(clippy::too_many_arguments, clippy::needless_question_mark, unused_parens)]
        impl<'g> #name<'g> {
            /// Declares the model's params in `graph`, each with its layer's default initializer.
            #[track_caller]
            pub fn new(graph: &'g ::kiln::Graph) -> ::kiln::Result<Self> {
                Self::build(&::kiln::layers::Scope::root(graph))
            }

            /// Declares the model's params in `graph`; `rule` may choose the initializer of any of
            /// them (it returns `None` to keep the layer's default).
            #[track_caller]
            pub fn with_init(
                graph: &'g ::kiln::Graph,
                mut rule: impl FnMut(&::kiln::layers::ParamSpec<'_>) -> ::std::option::Option<::kiln::Init>,
            ) -> ::kiln::Result<Self> {
                let scope = ::kiln::layers::Scope::root(graph).with_init_rule(&mut rule);
                Self::build(&scope)
            }

            /// Declares the model's params in `scope` (for a model used as a layer of another).
            #[track_caller]
            pub fn build(scope: &::kiln::layers::Scope<'g, '_>) -> ::kiln::Result<Self> {
                ::std::result::Result::Ok(Self {
                    #( #field_names: #constructions, )*
                    __kiln_graph: scope.graph(),
                    __kiln_prefix: scope.prefix().to_string(),
                })
            }

            /// Declares the graph inputs `forward` takes, named and shaped as its signature says.
            #[track_caller]
            pub fn inputs(&self, graph: &'g ::kiln::Graph) -> ::kiln::Result<[::kiln::Tensor<'g>; #input_count]> {
                ::std::result::Result::Ok([
                    #( graph.typed_input(#input_strings, #input_shapes, #input_dtypes)?, )*
                ])
            }

            /// Applies the model, building graph nodes; checks every input's and the result's
            /// shape against the declaration.
            #[track_caller]
            pub fn forward(&self, #( #input_names: ::kiln::Tensor<'g> ),*) -> ::kiln::Result<::kiln::Tensor<'g>> {
                let mut __kiln_check = ::kiln::layers::ShapeCheck::new(#op, ::kiln::compiler::Location::caller());
                #( __kiln_check.check(::std::concat!("input `", #input_strings, "`"), #input_names, #input_declared)?; )*
                let __kiln_output: ::kiln::Tensor<'g> = { #(#stmts)* };
                #output_check
                ::std::result::Result::Ok(__kiln_output)
            }

            /// Runs `forward` on values through the reference interpreter, in eval mode, with the
            /// params in `params` (by name): the debugging twin of the compiled model.
            #[track_caller]
            pub fn run(
                &self,
                params: &::kiln::ParamStore,
                __kiln_values: [::kiln::Value; #input_count],
            ) -> ::kiln::Result<::kiln::Value> {
                let graph = ::kiln::Graph::new();
                let model = #name::build(&::kiln::layers::Scope::with_prefix(&graph, &self.__kiln_prefix))?;
                model.eval();
                let [#(#input_names),*] = &__kiln_values;
                #( let #input_names = graph.typed_input(
                    #input_strings,
                    ::kiln::Shape::of(#input_names.shape().iter().copied()),
                    #input_names.dtype(),
                )?; )*
                let output = model.forward(#(#input_names),*)?;
                let [#(#input_names),*] = __kiln_values;
                let feeds = ::kiln::Feeds::from([#( (#input_strings, #input_names) ),*]);
                let mut values = ::kiln::Interpreter::new(&graph).run(&feeds, params, &[output])?;
                ::std::result::Result::Ok(values.remove(0))
            }

            /// Every param with its full name, in declaration order.
            pub fn named_parameters(&self) -> ::std::vec::Vec<(::std::string::String, ::kiln::Tensor<'g>)> {
                ::kiln::layers::named_parameters(self)
            }

            /// Every param, in declaration order.
            pub fn parameters(&self) -> ::std::vec::Vec<::kiln::Tensor<'g>> {
                self.named_parameters().into_iter().map(|(_, t)| t).collect()
            }

            /// Training mode (the default): dropout layers drop. Like `eval`, it switches the
            /// whole graph, and the functions already compiled from it at their next call.
            pub fn train(&self) {
                self.__kiln_graph.set_mode(::kiln::Mode::Train);
            }

            /// Eval mode: dropout layers pass their input through, in the interpreter and in the
            /// functions already compiled from the graph, at their next call (no rebuild). A
            /// `Trainer`'s steps train and its `evaluate` evaluates whatever the mode.
            pub fn eval(&self) {
                self.__kiln_graph.set_mode(::kiln::Mode::Eval);
            }
        }

        impl<'g> ::kiln::layers::Module<'g> for #name<'g> {
            fn kind(&self) -> ::std::string::String {
                #kind.to_string()
            }

            fn children(&self) -> ::std::vec::Vec<(::std::string::String, &dyn ::kiln::layers::Module<'g>)> {
                ::std::vec![#( (#field_strings.to_string(), &self.#field_names as &dyn ::kiln::layers::Module<'g>) ),*]
            }
        }

        #layer_impl

        #export

        impl ::std::fmt::Display for #name<'_> {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.write_str(&::kiln::layers::summary(self))
            }
        }
    })
}
