//! The C header of an artifact: every entry point, its contract and its error codes.

use kiln_compiler::export::{ABI_VERSION, ArtifactPlan};

use super::Target;

/// The text of `<name>.h`.
pub(super) fn header(plan: &ArtifactPlan, target: &Target) -> String {
    let name = &plan.name;
    let upper = name.to_ascii_uppercase();
    let (input, output, batch) = (&plan.input_shape, &plan.output_shape, &plan.batch_name);
    let (input_row, output_row, max_batch) = (plan.input_row, plan.output_row, plan.max_batch);
    let example_scratch = plan.scratch_bytes(1);
    let version = env!("CARGO_PKG_VERSION");
    format!(
        r#"/* {name}.h: the C interface of the model `{name}`, exported by kiln {version}.
 *
 * Target: {triple} ({cpu:?} CPU). Input {input} f32, output {output} f32, where the batch
 * `{batch}` is chosen at each call. Rows are contiguous, row-major.
 *
 * The code calls nothing (not even libc), allocates nothing and keeps no state: the caller
 * passes the scratch memory, and calls with distinct scratch may run on any threads at once.
 *
 *     size_t bytes = {name}_scratch_bytes(batch);
 *     void *scratch = malloc(bytes ? bytes : 1);
 *     int status = {name}_infer(input, batch, output, scratch);   // 0: output is written
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

/* f32 values per input row and per output row. */
#define {upper}_INPUT_SIZE {input_row}
#define {upper}_OUTPUT_SIZE {output_row}

/* Return codes of {name}_infer. */
#define {upper}_OK 0
/* input or output is NULL, or scratch is NULL while {name}_scratch_bytes(batch) > 0. */
#define {upper}_ERROR_NULL_POINTER 1
/* batch < 0. */
#define {upper}_ERROR_NEGATIVE_BATCH 2
/* batch > {name}_max_batch(): a size would overflow. */
#define {upper}_ERROR_BATCH_TOO_LARGE 3
/* A kernel met bad data: 10 + its status (11: an index out of range, 12: an integer division
 * by zero). The output is then unspecified. */
#define {upper}_ERROR_KERNEL 10

/* Runs the model on `batch` rows: reads batch * {input_row} floats from `input`, writes
 * batch * {output_row} floats to `output` (which must not overlap `input`), using
 * {name}_scratch_bytes(batch) bytes at `scratch` (any alignment; 64 bytes is best).
 * Returns {upper}_OK (0) or one of the error codes above, never crashes on a bad argument.
 * batch = 0 is valid and does nothing. */
int {name}_infer(const float *input, int64_t batch, float *output, void *scratch);

/* The scratch bytes {name}_infer needs for `batch` rows ({example_scratch} for one row):
 * a linear function of the batch, 0 if the batch is invalid (negative or too large). */
size_t {name}_scratch_bytes(int64_t batch);

/* f32 values per input row: {input_row}. */
int64_t {name}_input_size(void);

/* f32 values per output row: {output_row}. */
int64_t {name}_output_size(void);

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
    )
}
