//! Export, runtime side (packaging; the plan and the printers are `kiln_compiler::export`).
//!
//! The C header of an artifact: every entry point, its contract and its error codes.
//!
//! In: an artifact. Out: the text of `<name>.h`.

use std::fmt::Write;

use kiln_compiler::export::c_source::{element_type, input_names, output_names, prototype};
use kiln_compiler::export::{ABI_VERSION, ArtifactPlan, Port};

use super::Target;

/// One line per port: its argument name, graph name, dtype, shape and elements per call.
fn port_lines(names: &[String], ports: &[Port], batch: &str, named: bool) -> String {
    let mut text = String::new();
    for (i, (argument, port)) in names.iter().zip(ports).enumerate() {
        let count = if port.batched { format!("{batch} * {}", port.row) } else { port.row.to_string() };
        // Inputs have graph names; outputs are known by their position.
        let graph_name = if named { format!("`{}`, ", port.name) } else { String::new() };
        let _ = writeln!(
            text,
            " *   {i}. `{argument}`: {graph_name}{} {} ({count} {} elements)",
            port.dtype,
            port.shape,
            element_type(port)
        );
    }
    text
}

/// The text of `<name>.h`.
pub(super) fn header(plan: &ArtifactPlan, target: &Target) -> String {
    let name = &plan.name;
    let upper = name.to_ascii_uppercase();
    let batch = &plan.batch_name;
    let max_batch = plan.max_batch;
    let example_scratch = plan.scratch_bytes(1);
    let version = env!("CARGO_PKG_VERSION");
    let (inputs, outputs) = (input_names(plan), output_names(plan));
    let input_lines = port_lines(&inputs, &plan.inputs, batch, true);
    let output_lines = port_lines(&outputs, &plan.outputs, batch, false);
    let mut sizes = String::new();
    for (what, ports) in [("INPUT", &plan.inputs), ("OUTPUT", &plan.outputs)] {
        for (i, port) in ports.iter().enumerate() {
            let _ = writeln!(sizes, "#define {upper}_{what}{i}_SIZE {}", port.row);
        }
    }
    let example_call = {
        let mut arguments: Vec<String> = inputs.iter().map(|a| format!("{a}, {a}_len")).collect();
        arguments.push("batch".into());
        arguments.extend(outputs.iter().map(|a| format!("{a}, {a}_len")));
        arguments.push("scratch, bytes".into());
        arguments.join(", ")
    };
    let prototype = prototype(plan);
    format!(
        r#"/* {name}.h: the C interface of the model `{name}`, exported by kiln {version}.
 *
 * Target: {triple} ({cpu:?} CPU). The batch `{batch}` is chosen at each call; rows are
 * contiguous, row-major. Inputs, in the order {name}_infer takes them:
{input_lines} * Outputs:
{output_lines} *
 * The code calls nothing (not even libc), allocates nothing and keeps no state: the caller
 * passes the scratch memory, and calls with distinct scratch may run on any threads at once.
 *
 *     size_t bytes = {name}_scratch_bytes(batch);
 *     void *scratch = malloc(bytes ? bytes : 1);
 *     int status = {name}_infer({example_call});   // 0: the outputs are written
 *
 * Link with lib{name}.a (or {name}.o); nothing else is needed.
 */
#ifndef {upper}_H
#define {upper}_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {{
#endif

/* The interface version these declarations describe; {name}_abi_version() returns it. */
#define {upper}_ABI_VERSION {ABI_VERSION}

/* Elements per batch row of each input and output (all its elements if it has no batch dim). */
{sizes}
/* Return codes of {name}_infer. */
#define {upper}_OK 0
/* An input or output pointer is NULL, or scratch is NULL while {name}_scratch_bytes(batch) > 0. */
#define {upper}_ERROR_NULL_POINTER 1
/* batch < 0. */
#define {upper}_ERROR_NEGATIVE_BATCH 2
/* batch > {name}_max_batch(): a size would overflow. */
#define {upper}_ERROR_BATCH_TOO_LARGE 3
/* An input's length (in elements) is below what the batch needs. */
#define {upper}_ERROR_INPUT_TOO_SHORT 4
/* An output's length (in elements) is below what the batch needs. */
#define {upper}_ERROR_OUTPUT_TOO_SHORT 5
/* scratch_len (in bytes) is below {name}_scratch_bytes(batch). */
#define {upper}_ERROR_SCRATCH_TOO_SHORT 6
/* A kernel met bad data: 10 + its status (11: an index out of range, such as a token id
 * outside an embedding table; 12: an integer division by zero). The outputs are then
 * unspecified. */
#define {upper}_ERROR_KERNEL 10

/* Runs the model on `batch` rows: reads each input, writes each output (which must overlap
 * neither the inputs nor each other), using the scratch memory (any alignment; 64 bytes is
 * best). Every length is the number of elements its pointer addresses (scratch_len: bytes).
 * Returns {upper}_OK (0) or one of the error codes above. What is checked: null pointers, the
 * batch's range, and every length against what the batch needs, so a short buffer is an
 * error code, never a write past its end. What cannot be checked: that a pointer really
 * addresses as many elements as its length says, and that buffers do not overlap; a wrong
 * length or an overlap is undefined behaviour. Data-dependent errors (an id out of range)
 * are reported as {upper}_ERROR_KERNEL + status. batch = 0 is valid and does nothing. */
{prototype};

/* The scratch bytes {name}_infer needs for `batch` rows ({example_scratch} for one row):
 * a linear function of the batch, 0 if the batch is invalid (negative or too large). */
size_t {name}_scratch_bytes(int64_t batch);

/* The number of inputs and outputs: {input_count} and {output_count}. */
int {name}_input_count(void);
int {name}_output_count(void);

/* Elements per batch row of input or output `index` (all its elements if it has no batch dim);
 * -1 for an index out of range. */
int64_t {name}_input_size(int index);
int64_t {name}_output_size(int index);

/* The largest batch {name}_infer accepts: {max_batch}. */
int64_t {name}_max_batch(void);

/* A NUL-terminated description: the name, the shapes, the kiln version and the target. */
const char *{name}_version(void);

/* {upper}_ABI_VERSION of the artifact that was linked (check it against this header's). */
int {name}_abi_version(void);

#ifdef __cplusplus
}}
#endif

#endif /* {upper}_H */
"#,
        triple = target.triple,
        cpu = target.cpu,
        input_count = plan.inputs.len(),
        output_count = plan.outputs.len(),
    )
}
