//! Fuzz target `decode`: arbitrary bytes into the collector's two decoders,
//! `Report::decode` and `Report::decode_batch`. Neither may panic, hang or
//! allocate past its limit (libFuzzer reports all three), and whatever decodes
//! must survive a round trip: re-encoding gives bytes that decode to the same
//! value and re-encode to themselves.
//!
//! The input need not be canonical (bincode may accept more than one spelling of
//! a value), so the round trip compares values, and bytes only from the second
//! encoding on.

#![no_main]

use hush_report::{MAX_REPORT_BYTES, Report};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(report) = Report::decode(data) {
        let bytes = report.encode();
        let again = Report::decode(&bytes).expect("a decoded report's encoding decodes");
        assert_eq!(again, report, "decode(encode(r)) == r");
        assert_eq!(again.encode(), bytes, "the encoding is canonical");
    }
    if let Ok(reports) = Report::decode_batch(data) {
        let bytes = Report::encode_batch(&reports);
        let again = Report::decode_batch(&bytes).expect("a decoded batch's encoding decodes");
        assert_eq!(again, reports, "decode_batch(encode_batch(b)) == b");
        assert_eq!(
            Report::encode_batch(&again),
            bytes,
            "the encoding is canonical"
        );
        // A batch may hold reports larger than one report's own limit; the rest
        // must decode on their own as well.
        for r in &reports {
            let one = r.encode();
            if one.len() <= MAX_REPORT_BYTES + 1 {
                let back = Report::decode(&one).expect("a batch member decodes alone");
                assert_eq!(&back, r);
            }
        }
    }
});
