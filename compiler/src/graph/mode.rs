//! Train and eval mode: one graph, two behaviours, chosen at each run.
//!
//! In: a graph whose layers behave differently while training (dropout). Out: the two scalar
//! inputs those layers read, [`TRAINING_INPUT`] and [`MODE_STEP_INPUT`], and the graph's
//! current [`Mode`], shared with everything that runs the graph: the interpreter and every
//! function compiled from it feed the mode inputs themselves when the caller does not, so
//! `model.eval()` switches what already compiled functions compute at their next call, as
//! PyTorch's does, without building or compiling anything again.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use super::{DType, Graph, Shape, Tensor};
use crate::error::Result;

/// The name of the bool scalar input that is true while the model trains, false in eval mode.
pub const TRAINING_INPUT: &str = "mode.training";

/// The name of the `i64` scalar input counting the draws of the layers that draw random numbers
/// while training (dropout's masks): a new value draws new masks, the same value the same ones.
/// A `Trainer` feeds its step (from 1); a compiled function its call number (from 1).
pub const MODE_STEP_INPUT: &str = "mode.step";

/// Whether a model trains or evaluates.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Mode {
    /// Training (the default, as in PyTorch): dropout drops.
    #[default]
    Train,
    /// Evaluation: dropout passes its input through.
    Eval,
}

/// A graph's mode, shared by the graph and every function compiled from it (cheap to clone;
/// every clone sees every switch).
#[derive(Clone, Debug, Default)]
pub struct SharedMode(Arc<AtomicBool>);

impl SharedMode {
    /// The mode now.
    pub fn get(&self) -> Mode {
        if self.0.load(Ordering::Relaxed) { Mode::Eval } else { Mode::Train }
    }

    /// Switches to `mode`.
    pub fn set(&self, mode: Mode) {
        self.0.store(mode == Mode::Eval, Ordering::Relaxed);
    }
}

/// The inputs a graph's mode is fed through.
#[derive(Clone, Copy, Debug)]
pub struct ModeInputs<'g> {
    /// [`TRAINING_INPUT`]: bool scalar.
    pub training: Tensor<'g>,
    /// [`MODE_STEP_INPUT`]: `i64` scalar.
    pub step: Tensor<'g>,
}

impl Graph {
    /// The graph's mode: what its layers do when a run does not say (see [`Graph::set_mode`]).
    pub fn mode(&self) -> Mode {
        self.mode.get()
    }

    /// Switches the graph to `mode`: the interpreter's next runs and the next calls of every
    /// function compiled from this graph run in it (a `Trainer`'s steps always train and its
    /// `evaluate` always evaluates, whatever the graph's mode).
    pub fn set_mode(&self, mode: Mode) {
        self.mode.set(mode);
    }

    /// The handle of the graph's mode that compiled functions keep, to follow its switches.
    pub fn shared_mode(&self) -> SharedMode {
        self.mode.clone()
    }

    /// The mode inputs, declared by the first call (every later call returns the same two).
    #[track_caller]
    pub fn mode_inputs(&self) -> Result<ModeInputs<'_>> {
        let input = |name: &str, dtype: DType| match self.leaf(name) {
            Ok(tensor) => Ok(tensor),
            Err(_) => self.typed_input(name, Shape::scalar(), dtype),
        };
        Ok(ModeInputs { training: input(TRAINING_INPUT, DType::Bool)?, step: input(MODE_STEP_INPUT, DType::I64)? })
    }

    /// True if the graph has the mode inputs (a layer that behaves differently while training).
    pub fn has_mode_inputs(&self) -> bool {
        self.leaf(TRAINING_INPUT).is_ok() || self.leaf(MODE_STEP_INPUT).is_ok()
    }
}
