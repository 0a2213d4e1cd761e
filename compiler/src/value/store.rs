//! Named values: what is fed to a graph's inputs and what its params hold.
//!
//! In: values by name (input names, dotted param names). Out: [`Feeds`] and a [`ParamStore`],
//! which the interpreter, compiled functions, checkpoints and exports read by name. A store's
//! first values, drawn from a graph's initializers, come from `ParamStore::init` in
//! `graph/init.rs` (values sit below the graph; the graph builds on them).

use std::collections::BTreeMap;

use super::Value;

/// Values for a graph's inputs, by input name.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Feeds(BTreeMap<String, Value>);

impl Feeds {
    /// No feeds.
    pub fn new() -> Feeds {
        Feeds::default()
    }

    /// Sets the value of the input `name`.
    pub fn insert(&mut self, name: &str, value: Value) {
        self.0.insert(name.to_string(), value);
    }

    /// These feeds plus `name = value`.
    pub fn with(mut self, name: &str, value: Value) -> Feeds {
        self.insert(name, value);
        self
    }

    /// The value fed for `name`.
    pub fn get(&self, name: &str) -> Option<&Value> {
        self.0.get(name)
    }
}

impl<const N: usize> From<[(&str, Value); N]> for Feeds {
    fn from(pairs: [(&str, Value); N]) -> Feeds {
        Feeds(pairs.into_iter().map(|(name, value)| (name.to_string(), value)).collect())
    }
}

/// The values of a graph's params, by param name (dotted paths like `layer1.weight`).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ParamStore(BTreeMap<String, Value>);

impl ParamStore {
    /// An empty store.
    pub fn new() -> ParamStore {
        ParamStore::default()
    }

    /// The value of param `name`.
    pub fn get(&self, name: &str) -> Option<&Value> {
        self.0.get(name)
    }

    /// Sets the value of param `name`.
    pub fn set(&mut self, name: &str, value: Value) {
        self.0.insert(name.to_string(), value);
    }

    /// Every `(name, value)`, sorted by name.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Value)> {
        self.0.iter().map(|(name, value)| (name.as_str(), value))
    }

    /// Number of params held.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True if no param is held.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}
