//! Scopes: where a layer declares its params.
//!
//! In: a graph, a dotted name prefix and optionally a rule choosing initializers. Out: params
//! named under the prefix (`encoder.layer1.weight`), counted in declaration order, and the
//! model-wide state every part of one model shares.

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use crate::error::Result;
use crate::graph::{Graph, Init, Tensor};

/// What an initializer rule sees of a param about to be declared.
#[derive(Clone, Copy, Debug)]
pub struct ParamSpec<'a> {
    /// Position among the params of the model being built, from 0, in declaration order
    /// (the order PyTorch's `model.parameters()` gives).
    pub index: usize,
    /// The param's full dotted name, e.g. `layer1.weight`.
    pub name: &'a str,
    /// Its shape.
    pub shape: &'a [usize],
    /// The layer's own initializer, used when the rule returns `None`.
    pub default: &'a Init,
}

/// A rule choosing initializers: `None` keeps the layer's default.
pub type InitRule<'a> = dyn FnMut(&ParamSpec<'_>) -> Option<Init> + 'a;

struct Shared<'s> {
    count: Cell<usize>,
    rule: RefCell<Option<&'s mut InitRule<'s>>>,
}

/// Where a module declares its params: a graph, a name prefix, and the model-wide state (param
/// count, initializer rule) shared by every part of one model.
pub struct Scope<'g, 's> {
    graph: &'g Graph,
    prefix: String,
    shared: Rc<Shared<'s>>,
}

impl<'g, 's> Scope<'g, 's> {
    /// The scope of a whole model, whose params are named from the root (`layer1.weight`).
    pub fn root(graph: &'g Graph) -> Scope<'g, 's> {
        Self::with_prefix(graph, "")
    }

    /// The scope of a model whose param names all start with `prefix` (`prefix.layer1.weight`).
    pub fn with_prefix(graph: &'g Graph, prefix: &str) -> Scope<'g, 's> {
        let shared = Shared { count: Cell::new(0), rule: RefCell::new(None) };
        Scope { graph, prefix: prefix.to_string(), shared: Rc::new(shared) }
    }

    /// This scope with `rule` choosing the initializer of every param declared through it.
    pub fn with_init_rule(self, rule: &'s mut InitRule<'s>) -> Scope<'g, 's> {
        *self.shared.rule.borrow_mut() = Some(rule);
        self
    }

    /// The graph params are declared in.
    pub fn graph(&self) -> &'g Graph {
        self.graph
    }

    /// The dotted prefix of this scope (empty at the root).
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The scope of part `name` of this one.
    pub fn child(&self, name: &str) -> Scope<'g, 's> {
        Scope { graph: self.graph, prefix: self.name(name), shared: Rc::clone(&self.shared) }
    }

    /// The full name of `local` in this scope.
    pub fn name(&self, local: &str) -> String {
        if self.prefix.is_empty() { local.to_string() } else { format!("{}.{local}", self.prefix) }
    }

    /// Declares the trainable param `local` of this scope, initialised by the model's rule if it
    /// picks one, by `default` otherwise.
    #[track_caller]
    pub fn param(&self, local: &str, shape: &[usize], default: Init) -> Result<Tensor<'g>> {
        let name = self.name(local);
        let index = self.shared.count.get();
        self.shared.count.set(index + 1);
        let chosen = match self.shared.rule.borrow_mut().as_mut() {
            Some(rule) => rule(&ParamSpec { index, name: &name, shape, default: &default }),
            None => None,
        };
        self.graph.param(&name, shape.to_vec(), chosen.unwrap_or(default))
    }
}
