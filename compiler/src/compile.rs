//! The whole compiler, from graph to native code: passes, lowering, code generation.
//!
//! In: a graph, its outputs and param updates, and `codegen::Options` (with the settings). Out: a
//! kernel program, or a compiled program.

use std::time::{Duration, Instant};

use crate::codegen::{self, CompiledProgram};
use crate::error::{Error, Location, Result};
use crate::graph::{Graph, NodeId, Op, Tensor};
use crate::kernel;
use crate::passes;
use crate::settings::{Dump, Settings};

/// A compiled program and how long each stage took.
#[derive(Debug)]
pub struct Compiled {
    /// The native program.
    pub program: CompiledProgram,
    /// Time spent in graph passes, lowering and code generation.
    pub time: Duration,
}

/// Compiles the computation of `outputs` and of the new values of params given by `updates`
/// (`(param, new value)` pairs) to native code.
///
/// `KILN_DUMP=graph,fusion,kernels,clif` prints the graph after each pass, every fusion
/// decision with its reason, the kernel program, and the Cranelift IR.
#[track_caller]
pub fn compile<'g>(graph: &'g Graph, outputs: &[Tensor<'g>], updates: &[(Tensor<'g>, Tensor<'g>)]) -> Result<Compiled> {
    compile_with(graph, outputs, updates, &codegen::Options::default())
}

/// [`compile`] with code generator options (see [`codegen::Options`]).
#[track_caller]
pub fn compile_with<'g>(
    graph: &'g Graph,
    outputs: &[Tensor<'g>],
    updates: &[(Tensor<'g>, Tensor<'g>)],
    options: &codegen::Options,
) -> Result<Compiled> {
    compile_reducing(graph, outputs, updates, &[], options)
}

/// [`compile_with`] for a data-parallel step: `reduced` (the gradients, say) are computed
/// into buffers of their own, appended to the outputs after `outputs`, and listed in
/// [`kernel::Program::reduced`], so that the runtime can sum them across processes after the
/// kernel that finishes each and before the first kernel that reads it (the optimizer's
/// update). Without processes to sum over, the program computes what [`compile_with`]'s does.
#[track_caller]
pub fn compile_reducing<'g>(
    graph: &'g Graph,
    outputs: &[Tensor<'g>],
    updates: &[(Tensor<'g>, Tensor<'g>)],
    reduced: &[Tensor<'g>],
    options: &codegen::Options,
) -> Result<Compiled> {
    let started = Instant::now();
    let program = lower_reducing(graph, outputs, updates, reduced, &options.settings.dump, Location::caller())?;
    let program = codegen::compile_with(program, options)?;
    Ok(Compiled { program, time: started.elapsed() })
}

/// The first half of [`compile`]: the graph passes and the lowering to the kernel program
/// (memory plan included), without code generation. Ahead-of-time export starts from here.
#[track_caller]
pub fn lower_to_kernels<'g>(
    graph: &'g Graph,
    outputs: &[Tensor<'g>],
    updates: &[(Tensor<'g>, Tensor<'g>)],
) -> Result<kernel::Program> {
    lower_reducing(graph, outputs, updates, &[], &Settings::current().dump, Location::caller())
}

/// [`lower_to_kernels`] for a data-parallel step (see [`compile_reducing`]); `dump` says what
/// to print (the graph after each pass, the fusion decisions, the kernels); `location` is the
/// caller's, for errors.
pub fn lower_reducing<'g>(
    graph: &'g Graph,
    outputs: &[Tensor<'g>],
    updates: &[(Tensor<'g>, Tensor<'g>)],
    reduced: &[Tensor<'g>],
    dump: &Dump,
    location: Location,
) -> Result<kernel::Program> {
    graph.check()?;
    let mut roots: Vec<NodeId> = Vec::with_capacity(outputs.len() + reduced.len() + updates.len());
    for tensor in outputs.iter().chain(reduced) {
        roots.push(own_id(graph, *tensor, location)?);
    }
    let mut params = Vec::with_capacity(updates.len());
    for (param, value) in updates {
        let param_id = own_id(graph, *param, location)?;
        let value_id = own_id(graph, *value, location)?;
        let (param_node, value_node) = (graph.node(param_id), graph.node(value_id));
        let Op::Param { name, .. } = &param_node.op else {
            let detail = format!("updates must target params, but {param_id} is a `{}` node", param_node.op.name());
            return Err(Error::Argument { op: "function", detail, location });
        };
        if params.contains(&param_id) {
            let detail = format!("param `{name}` is updated twice");
            return Err(Error::Argument { op: "function", detail, location });
        }
        if param_node.shape != value_node.shape || param_node.dtype != value_node.dtype {
            let detail = format!(
                "the update of `{name}` ({} {}) has a new value of {} {}",
                param_node.shape, param_node.dtype, value_node.shape, value_node.dtype
            );
            return Err(Error::Shape { op: "function", detail, location });
        }
        params.push(param_id);
        roots.push(value_id);
    }
    let optimized = passes::optimize_with(graph, &roots, dump);
    let (outputs, values) = optimized.outputs.split_at(outputs.len() + reduced.len());
    let reduced = &outputs[outputs.len() - reduced.len()..];
    // Params keep their position among the leaves, so their ids in the new graph are found by name.
    let updates: Vec<(NodeId, NodeId)> = params
        .iter()
        .zip(values)
        .map(|(param, &value)| (param_id_by_name(&optimized.graph, graph, *param), value))
        .collect();
    let (program, notes) = kernel::lower(&optimized.graph, outputs, &updates, reduced)?;
    if dump.fusion {
        eprintln!("== fusion decisions");
        for note in &notes {
            eprintln!("{} {}: {}", note.node, note.op, note.decision);
        }
    }
    if dump.kernels {
        eprintln!("== kernels\n{}", program.listing());
    }
    Ok(program)
}

fn own_id(graph: &Graph, tensor: Tensor<'_>, location: Location) -> Result<NodeId> {
    if !std::ptr::eq(graph, tensor.graph()) {
        return Err(Error::ForeignTensor { op: "function", location });
    }
    tensor.id()
}

fn param_id_by_name(optimized: &Graph, original: &Graph, param: NodeId) -> NodeId {
    let Op::Param { name, .. } = original.node(param).op else { unreachable!("bug in kiln: checked to be a param") };
    let found = optimized.params().into_iter().find(|(_, n, _)| *n == name);
    found.and_then(|(t, _, _)| t.id().ok()).expect("bug in kiln: passes dropped a param")
}
