//! Compile-fail tests: raw measurements can be neither serialized nor cloned.

#[test]
fn raw_measurements_cannot_leave_the_process() {
    let t = trybuild::TestCases::new();
    t.compile_fail("tests/compile_fail/*.rs");
}
