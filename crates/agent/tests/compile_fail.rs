//! Compile-fail tests: the outbox and the uploader accept nothing but `Report`.

#[test]
fn outbox_and_uploader_take_only_reports() {
    let t = trybuild::TestCases::new();
    t.compile_fail("tests/compile_fail/*.rs");
}
