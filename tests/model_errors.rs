//! `model!`'s compile errors, each with the span of the offending tokens; the expected
//! messages are the `.stderr` files beside the cases in `tests/ui/` (regenerate them with
//! `TRYBUILD=overwrite cargo test --test model_errors`).

#[test]
fn mistakes_in_a_model_are_compile_errors_at_the_offending_tokens() {
    let cases = trybuild::TestCases::new();
    cases.compile_fail("tests/ui/*.rs");
}
