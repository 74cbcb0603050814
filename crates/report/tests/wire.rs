//! The wire format: golden bytes pin it, round trips preserve reports, and hostile or
//! mangled bytes are refused without panics or large allocations.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Tests fail loudly by design.

use hush_ldp::BudgetAccount;
use hush_report::{
    Catalog, CodecError, DeviceMemory, DeviceSecret, KeyClass, PrivatizeRequest, Privatized,
    RawMeasurements, Report, WIRE_VERSION, privatize,
};
use proptest::prelude::*;
use rand::SeedableRng;
use rand::rngs::ChaCha12Rng;

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

/// Reports made the way an agent makes them, from a fixed seed.
fn reports(n: u32, seed: u64) -> Vec<Report> {
    let catalog = Catalog::builtin();
    let mut rng = ChaCha12Rng::seed_from_u64(seed);
    (0..n)
        .map(|i| {
            let mut raw = RawMeasurements::new(1440);
            for _ in 0..(1000 + 37 * i) {
                raw.record_key(KeyClass::Letter);
            }
            raw.set_minutes(1440, 300, 100, 60);
            let request = PrivatizeRequest {
                catalog: &catalog,
                period: 20_400 + i,
                period_seconds: 86_400,
                epsilon: 2.0,
                epsilon_perm: 4.0,
                max_draws: 8,
                bucket: 680,
                agent_version: "0.1.0",
            };
            let mut budget = BudgetAccount::new(2.0).unwrap();
            let mut memory = DeviceMemory::new(DeviceSecret::from_bytes([i as u8; 32]));
            privatize(raw, &request, &mut memory, &mut budget, &mut rng).unwrap()
        })
        .collect()
}

/// Version 2 of one report (made as `hex(&reports(3, 7)[0].encode())`). If this
/// test fails, the wire format changed: that needs a new WIRE_VERSION, not a new
/// constant here (a new catalog changes its hash and version bytes only, and
/// the metric its seed happens to pick). Layout: version 02, catalog hash (16
/// bytes), catalog version 05, agent version (length 05, "0.1.0"), period (varint fb b04f = 20400),
/// period seconds (fc 80510100 = 86400), id (16 bytes, starting 00004fb0),
/// epsilon (f64 2.0), one metric (index, f64 epsilon_1, f64 epsilon_perm,
/// tagged value).
const GOLDEN_REPORT: &str = "0238a2e688976f3bd68cfa41d12cdae1bc0505302e312e30fbb04ffc8051010000004fb0cdbc8b0f4632842499a0dfa60000000000000040010100000000000000400000000000001040030000";

#[test]
fn golden_report_bytes() {
    let bytes = unhex(GOLDEN_REPORT);
    let r = Report::decode(&bytes).unwrap();
    assert_eq!(r.catalog_hash(), Catalog::builtin().hash());
    assert_eq!(r.catalog_version(), 5);
    assert_eq!(r.metrics()[0].epsilon_perm(), 4.0);
    assert_eq!(r.agent_version(), "0.1.0");
    assert_eq!(r.period(), 20_400);
    assert_eq!(r.period_seconds(), 86_400);
    assert_eq!(r.id().period(), 20_400);
    assert_eq!(r.epsilon(), 2.0);
    assert_eq!(r.metrics().len(), 1);
    assert_eq!(r.encode(), bytes, "re-encoding must give the same bytes");
    assert_eq!(bytes[0], WIRE_VERSION);
}

/// Version 2 of a batch of three reports (`hex(&Report::encode_batch(&reports(3, 7)))`).
const GOLDEN_BATCH: &str = "020338a2e688976f3bd68cfa41d12cdae1bc0505302e312e30fbb04ffc8051010000004fb0cdbc8b0f4632842499a0dfa6000000000000004001010000000000000040000000000000104003000038a2e688976f3bd68cfa41d12cdae1bc0505302e312e30fbb14ffc8051010000004fb1ab0deb2c8ade5abea069bb410000000000000040010800000000000000400000000000001040000238a2e688976f3bd68cfa41d12cdae1bc0505302e312e30fbb24ffc8051010000004fb2d2367f800c648da30520c3640000000000000040010200000000000000400000000000001040030000";

#[test]
fn golden_batch_bytes() {
    let bytes = unhex(GOLDEN_BATCH);
    let batch = Report::decode_batch(&bytes).unwrap();
    assert_eq!(batch.len(), 3);
    assert_eq!(
        batch.iter().map(|r| r.period()).collect::<Vec<_>>(),
        vec![20_400, 20_401, 20_402]
    );
    assert_eq!(Report::encode_batch(&batch), bytes);
}

#[test]
fn round_trips_preserve_reports() {
    let batch = reports(20, 11);
    for r in &batch {
        let bytes = r.encode();
        assert!(
            bytes.len() < 120,
            "a report is small: {} bytes",
            bytes.len()
        );
        assert_eq!(&Report::decode(&bytes).unwrap(), r);
    }
    assert_eq!(
        Report::decode_batch(&Report::encode_batch(&batch)).unwrap(),
        batch
    );
}

#[test]
fn hostile_envelopes_are_refused() {
    let good = reports(1, 5).remove(0).encode();
    assert_eq!(Report::decode(&[]), Err(CodecError::Empty));
    // Version 1 (one-layer reports, before epsilon_perm) is refused by name.
    assert_eq!(
        Report::decode(&[1, 0, 0]),
        Err(CodecError::Version { found: 1 })
    );
    let mut trailing = good.clone();
    trailing.push(0);
    assert_eq!(Report::decode(&trailing), Err(CodecError::Trailing(1)));
    assert!(matches!(
        Report::decode(&good[..good.len() - 1]),
        Err(CodecError::Malformed(_))
    ));
    // A length prefix claiming 2^63 bytes of agent version: refused, not allocated.
    let mut huge = vec![WIRE_VERSION];
    huge.extend_from_slice(&[0; 16]); // catalog hash
    huge.push(1); // catalog version
    huge.push(0xFF); // varint marker for a u64 length
    huge.extend_from_slice(&u64::MAX.to_le_bytes());
    assert!(matches!(
        Report::decode(&huge),
        Err(CodecError::Malformed(_))
    ));
    // The same for a batch claiming 2^60 reports.
    let mut many = vec![WIRE_VERSION, 0xFF];
    many.extend_from_slice(&(1u64 << 60).to_le_bytes());
    assert!(matches!(
        Report::decode_batch(&many),
        Err(CodecError::Malformed(_))
    ));
    assert!(matches!(
        Report::decode(&vec![WIRE_VERSION; 70_000]),
        Err(CodecError::TooLarge { .. })
    ));
    // An empty batch is not a batch.
    assert!(Report::decode_batch(&Report::encode_batch(&[])).is_err());
}

#[test]
fn epsilons_out_of_order_are_refused() {
    // A metric whose epsilon_1 exceeds its epsilon_perm cannot be two-layer.
    let good = reports(1, 5).remove(0);
    let bytes = good.encode();
    let eps_1 = 2.0f64.to_le_bytes();
    let eps_perm = 4.0f64.to_le_bytes();
    let at = bytes
        .windows(16)
        .position(|w| w[..8] == eps_1 && w[8..] == eps_perm)
        .expect("the metric's two epsilons, side by side");
    let mut swapped = bytes.clone();
    swapped[at..at + 8].copy_from_slice(&eps_perm);
    swapped[at + 8..at + 16].copy_from_slice(&eps_1);
    assert!(matches!(
        Report::decode(&swapped),
        Err(CodecError::Invalid(_))
    ));
}

#[test]
fn privatized_values_convert_both_ways() {
    let bits = Privatized::Bits {
        len: 70,
        words: vec![5, 1],
    };
    assert!(bits.as_frequency().is_some());
    let bad = Privatized::Bits {
        len: 70,
        words: vec![5, 1 << 10],
    };
    assert!(bad.as_frequency().is_none());
    assert!(
        Privatized::Grid {
            branch: 1,
            index: -3
        }
        .as_grid()
        .is_some()
    );
    assert!(Privatized::Value(3).as_grid().is_none());
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, .. ProptestConfig::default() })]

    /// Bit flips, truncations and insertions never panic; whatever decodes re-encodes.
    #[test]
    fn mangled_bytes_never_panic(flips in prop::collection::vec((0usize..200, 0u8..8), 1..6), cut in 0usize..200, junk in prop::collection::vec(any::<u8>(), 0..20)) {
        let mut bytes = reports(2, 9).iter().flat_map(|r| r.encode()).collect::<Vec<u8>>();
        bytes.truncate(bytes.len() / 2 + 1);
        for (pos, bit) in flips {
            let i = pos % bytes.len();
            bytes[i] ^= 1 << bit;
        }
        let cut = cut % (bytes.len() + 1);
        bytes.truncate(cut.max(1));
        bytes.extend(junk);
        if let Ok(r) = Report::decode(&bytes) {
            prop_assert_eq!(Report::decode(&r.encode()).unwrap(), r);
        }
        let _ = Report::decode_batch(&bytes);
    }

    #[test]
    fn random_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..400)) {
        let _ = Report::decode(&bytes);
        let _ = Report::decode_batch(&bytes);
    }
}
