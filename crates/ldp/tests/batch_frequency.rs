//! Exactness of the frequency oracles' batch kernels (unary encodings, packed
//! randomized response, GRR, OLH, Hadamard response and the `AnyFrequencyOracle`
//! enum): every kernel's outputs against the exact law its realized integer
//! thresholds imply, through both entry points (`perturb_batch` over many
//! inputs, `perturb_repeated` over one).
//!
//! The batch kernels draw different bits than the scalar `perturb` (bit-sliced
//! comparisons, short prefixes, bucket-table lookups), so nothing here compares
//! outputs seed for seed; each test compares a histogram or a per-lane count with
//! probabilities computed from the mechanisms' public accessors. Tolerances are
//! in `common`: every test rejects at a p-value below `ALPHA` = 1e-4 (a
//! chi-square p-value, or a Bonferroni-corrected z-bound for families of
//! binomial counts), and the seeds are fixed, so runs are deterministic.
//!
//! **Joint laws.** Per-lane marginals alone would not see lanes that share
//! random bits. The unary tests also check the law of the number of ones in a
//! report (a Bernoulli plus a binomial only if the lanes are independent), and
//! the packed randomized-response test the joint law of neighbouring lanes.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{N, assert_binomial, assert_fits, bonferroni_z};

use hush_ldp::batch::FrequencyBatch;
use hush_ldp::{
    AnyFrequencyOracle, FrequencyKind, FrequencyOracle, FrequencyOutput, Grr, HadamardResponse,
    LdpError, NoiseRng, Olh, OlhOutput, PackedBits, UnaryEncoding,
};
use rand::SeedableRng;
use statrs::distribution::{Binomial, Discrete};

// ----- unary encodings and randomized response on packed bits -----

/// Unpacks report `r` of a batch output into a `PackedBits`.
fn report(out: &[u64], per: usize, r: usize, d: u32) -> PackedBits {
    PackedBits::from_words(out[r * per..(r + 1) * per].to_vec(), d)
        .expect("bits past the domain stay zero")
}

/// Checks a unary batch: per-lane marginals (the value's lane at `p`, every other
/// lane at `q`, each a binomial z-test, Bonferroni over all lanes) and the law of
/// the number of ones per report, `Bernoulli(p) + Binomial(d - 1, q)`.
fn check_unary(label: &str, m: &UnaryEncoding, values: &[u32], out: &[u64]) {
    let d = m.domain();
    let per = m.slots_per_report();
    let (p, q) = (m.p_threshold().prob(), m.q_threshold().prob());
    let mut own = vec![(0u64, 0u64); d as usize];
    let mut other = vec![(0u64, 0u64); d as usize];
    let mut ones_hist = vec![0u64; d as usize + 1];
    for (r, &v) in values.iter().enumerate() {
        let bits = report(out, per, r, d);
        assert!(m.is_valid_output(&bits));
        ones_hist[bits.count_ones() as usize] += 1;
        own[v as usize].1 += 1;
        own[v as usize].0 += u64::from(bits.get(v));
        for (j, o) in other.iter_mut().enumerate() {
            if j as u32 != v {
                o.1 += 1;
            }
        }
        for j in bits.ones().filter(|&j| j != v) {
            other[j as usize].0 += 1;
        }
    }
    let z = bonferroni_z(2 * d as usize);
    for j in 0..d as usize {
        if own[j].1 > 0 {
            assert_binomial(&format!("{label} lane {j} (own)"), own[j].0, own[j].1, p, z);
        }
        if other[j].1 > 0 {
            assert_binomial(
                &format!("{label} lane {j} (other)"),
                other[j].0,
                other[j].1,
                q,
                z,
            );
        }
    }
    let rest = Binomial::new(q, u64::from(d - 1)).unwrap();
    let probs: Vec<f64> = (0..=u64::from(d))
        .map(|k| {
            let without = if k < u64::from(d) { rest.pmf(k) } else { 0.0 };
            let with = if k > 0 { rest.pmf(k - 1) } else { 0.0 };
            (1.0 - p) * without + p * with
        })
        .collect();
    assert_fits(&format!("{label} ones per report"), &ones_hist, &probs);
}

#[test]
fn unary_batches_match_p_and_q_lane_by_lane() {
    let mut rng = NoiseRng::seed_from_u64(0xba7c_0001);
    // 2, 8 and 16 pack 32, 8 and 4 reports per word (odd counts leave a
    // partial word and block); 100 splits reports across words and blocks at
    // every offset; 1024 is the aligned case.
    for (d, reports) in [
        (2u32, 50_003usize),
        (8, 30_001),
        (16, 100_000),
        (64, 20_000),
        (100, 20_000),
        (1024, 4_000),
    ] {
        for (name, m) in [
            (
                "OUE eps=1",
                UnaryEncoding::optimized(1.0, u64::from(d)).unwrap(),
            ),
            (
                "SUE eps=2",
                UnaryEncoding::symmetric(2.0, u64::from(d)).unwrap(),
            ),
        ] {
            let values: Vec<u32> = (0..reports).map(|i| (i * 7 % d as usize) as u32).collect();
            let mut out = vec![u64::MAX; reports * m.slots_per_report()];
            m.perturb_batch(&values, &mut out, &mut rng).unwrap();
            check_unary(&format!("{name} d={d} batch"), &m, &values, &out);
        }
    }
}

#[test]
fn unary_repeated_matches_p_and_q() {
    let mut rng = NoiseRng::seed_from_u64(0xba7c_0002);
    for (d, v) in [(16u32, 3u32), (130, 129)] {
        let m = UnaryEncoding::optimized(0.5, u64::from(d)).unwrap();
        let reports = 30_000;
        let mut out = vec![0u64; reports * m.slots_per_report()];
        m.perturb_repeated(v, &mut out, &mut rng).unwrap();
        check_unary(
            &format!("OUE d={d} repeated {v}"),
            &m,
            &vec![v; reports],
            &out,
        );
    }
}

#[test]
fn packed_randomized_response_keeps_with_the_realized_probability() {
    let mut rng = NoiseRng::seed_from_u64(0xba7c_0003);
    for eps in [0.5, 3.0] {
        let m = Grr::new(eps, 2).unwrap();
        let keep = m.keep_probability();
        // Not a multiple of 64 or of the 1024-bit block; a pattern with runs of both bits.
        let len = 1_000_003u32;
        let mut input = PackedBits::zeros(len);
        for i in (0..len).filter(|i| (i / 3) % 2 == 0 || i % 17 == 0) {
            input.set(i, true);
        }
        let mut out = PackedBits::zeros(len);
        m.perturb_packed(&input, &mut out, &mut rng).unwrap();
        assert!(PackedBits::from_words(out.words().to_vec(), len).is_some());

        let (mut kept, mut total) = ([0u64; 2], [0u64; 2]);
        // Joint law of lanes (2i, 2i + 1) whose inputs are both 1: four cells.
        let mut pairs = [0u64; 4];
        for i in 0..len {
            let x = usize::from(input.get(i));
            total[x] += 1;
            kept[x] += u64::from(out.get(i) == input.get(i));
            if i % 2 == 0 && i + 1 < len && input.get(i) && input.get(i + 1) {
                pairs[usize::from(out.get(i)) * 2 + usize::from(out.get(i + 1))] += 1;
            }
        }
        let z = bonferroni_z(2);
        assert_binomial(
            &format!("RR eps={eps} ones kept"),
            kept[1],
            total[1],
            keep,
            z,
        );
        assert_binomial(
            &format!("RR eps={eps} zeros kept"),
            kept[0],
            total[0],
            keep,
            z,
        );
        let probs = [
            (1.0 - keep) * (1.0 - keep),
            (1.0 - keep) * keep,
            keep * (1.0 - keep),
            keep * keep,
        ];
        assert_fits(&format!("RR eps={eps} neighbouring lanes"), &pairs, &probs);
    }
}

// ----- one value per report -----

#[test]
fn grr_batch_histogram_matches_keep_and_other_probabilities() {
    let mut rng = NoiseRng::seed_from_u64(0xba7c_0004);
    for (d, eps, v) in [
        (2u32, 0.5, 1u32),
        (16, 2.0, 0),
        (16, 0.5, 15),
        (1000, 4.0, 500),
    ] {
        let m = Grr::new(eps, u64::from(d)).unwrap();
        let mut probs = vec![m.other_probability(); d as usize];
        probs[v as usize] = m.keep_probability();
        let mut out = vec![0u32; N];
        m.perturb_batch(&vec![v; N], &mut out, &mut rng).unwrap();
        let mut counts = vec![0u64; d as usize];
        out.iter().for_each(|&y| counts[y as usize] += 1);
        assert_fits(&format!("GRR d={d} eps={eps} batch"), &counts, &probs);

        m.perturb_repeated(v, &mut out, &mut rng).unwrap();
        let mut counts = vec![0u64; d as usize];
        out.iter().for_each(|&y| counts[y as usize] += 1);
        assert_fits(&format!("GRR d={d} eps={eps} repeated"), &counts, &probs);
    }
}

#[test]
fn olh_batch_matches_keep_probability_and_uniform_seeds() {
    let mut rng = NoiseRng::seed_from_u64(0xba7c_0005);
    for (eps, d) in [(1.0, 1024u32), (3.0, 50)] {
        let m = Olh::new(eps, u64::from(d)).unwrap();
        let g = m.hash_range();
        let keep = m.keep_probability();
        let values: Vec<u32> = (0..N).map(|i| (i % d as usize) as u32).collect();
        let mut out = vec![OlhOutput { seed: 0, value: 0 }; N];
        m.perturb_batch(&values, &mut out, &mut rng).unwrap();
        // (reported - hash) mod g: 0 when kept, else uniform over the g - 1 others.
        let mut offsets = vec![0u64; g as usize];
        let mut seed_bytes = vec![0u64; 256];
        for (o, &v) in out.iter().zip(&values) {
            assert!(m.is_valid_output(o));
            let h = m.hash(o.seed, v);
            offsets[((o.value + g - h) % g) as usize] += 1;
            seed_bytes[(o.seed >> 56) as usize] += 1;
        }
        let mut probs = vec![(1.0 - keep) / f64::from(g - 1); g as usize];
        probs[0] = keep;
        assert_fits(&format!("OLH eps={eps} offsets"), &offsets, &probs);
        assert_fits(
            &format!("OLH eps={eps} seed top bytes"),
            &seed_bytes,
            &[1.0 / 256.0; 256],
        );
    }
}

#[test]
fn hadamard_batch_matches_set_probabilities() {
    let mut rng = NoiseRng::seed_from_u64(0xba7c_0006);
    for (eps, d, v) in [(1.0, 7u32, 0u32), (2.0, 100, 63), (0.5, 100, 99)] {
        let m = HadamardResponse::new(eps, u64::from(d)).unwrap();
        let k = m.order();
        let p = m.keep_probability();
        let probs: Vec<f64> = (0..k)
            .map(|y| {
                let half = f64::from(k) / 2.0;
                if HadamardResponse::in_set(v, y) {
                    p / half
                } else {
                    (1.0 - p) / half
                }
            })
            .collect();
        let mut out = vec![0u32; N];
        m.perturb_repeated(v, &mut out, &mut rng).unwrap();
        let mut counts = vec![0u64; k as usize];
        out.iter().for_each(|&y| counts[y as usize] += 1);
        assert_fits(&format!("HR eps={eps} d={d} v={v}"), &counts, &probs);
    }
}

#[test]
fn any_frequency_reports_are_the_concrete_kernels_reports() {
    let values: Vec<u32> = (0..2500).map(|i| i * 11 % 40).collect();
    for kind in FrequencyKind::ALL {
        let any = AnyFrequencyOracle::new(kind, 1.0, 40).unwrap();
        let per = any.slots_per_report();
        let mut slots = vec![u64::MAX; values.len() * per];
        any.perturb_batch(&values, &mut slots, &mut NoiseRng::seed_from_u64(5))
            .unwrap();
        let reports: Vec<FrequencyOutput> = slots
            .chunks(per)
            .map(|s| any.report_from_slots(s).expect("a report's shape"))
            .collect();
        assert!(reports.iter().all(|r| any.is_valid_output(r)), "{kind}");
        // The same seed through the concrete kernel gives the same reports. The
        // enum calls one-slot kernels 1024 reports at a time, each call with its
        // own buffered draw, so the concrete kernel is called the same way.
        let mut rng = NoiseRng::seed_from_u64(5);
        macro_rules! chunked {
            ($m:expr, $empty:expr, $wrap:expr) => {{
                let mut all = Vec::new();
                for chunk in values.chunks(1024) {
                    let mut out = vec![$empty; chunk.len()];
                    $m.perturb_batch(chunk, &mut out, &mut rng).unwrap();
                    all.extend(out.into_iter().map($wrap));
                }
                all
            }};
        }
        macro_rules! rows {
            ($m:expr) => {{
                let mut out = vec![0u64; values.len() * per];
                $m.perturb_batch(&values, &mut out, &mut rng).unwrap();
                out.chunks(per)
                    .map(|w| FrequencyOutput::Bits(PackedBits::from_words(w.to_vec(), 40).unwrap()))
                    .collect()
            }};
        }
        let olh = OlhOutput { seed: 0, value: 0 };
        let expected: Vec<FrequencyOutput> = match &any {
            AnyFrequencyOracle::Grr(m) => chunked!(m, 0u32, FrequencyOutput::Value),
            AnyFrequencyOracle::Hr(m) => chunked!(m, 0u32, FrequencyOutput::Value),
            AnyFrequencyOracle::LGrr(m) => chunked!(m, 0u32, FrequencyOutput::Value),
            AnyFrequencyOracle::Olh(m) => chunked!(m, olh, FrequencyOutput::Hashed),
            AnyFrequencyOracle::LLh(m) => chunked!(m, olh, FrequencyOutput::Hashed),
            AnyFrequencyOracle::Unary(m) => rows!(m),
            AnyFrequencyOracle::LUnary(m) => rows!(m),
            AnyFrequencyOracle::DBitFlip(m) => rows!(m),
        };
        assert_eq!(reports, expected, "{kind}");
        // A value outside the domain, even in the last chunk, is refused before
        // anything is drawn or written.
        let mut bad_values = values.clone();
        *bad_values.last_mut().unwrap() = 40;
        let mut untouched = vec![7u64; values.len() * per];
        assert_eq!(
            any.perturb_batch(&bad_values, &mut untouched, &mut NoiseRng::seed_from_u64(5)),
            Err(LdpError::ValueOutOfDomain {
                value: 40,
                domain: 40
            }),
            "{kind}"
        );
        assert!(untouched.iter().all(|&w| w == 7), "{kind}");
        // Wrong shapes are refused, not misread.
        for bad in [&slots[..per - 1], &[u64::MAX; 3]] {
            assert_eq!(
                any.report_from_slots(bad),
                Err(LdpError::MalformedReport {
                    expected: per,
                    actual: bad.len()
                }),
                "{kind}"
            );
        }
        // Repeated reports of one value have that value's law: the value is
        // supported more often than any other.
        let mut repeated = vec![0u64; 4000 * per];
        any.perturb_repeated(7, &mut repeated, &mut NoiseRng::seed_from_u64(6))
            .unwrap();
        let mut support = [0u32; 40];
        for s in repeated.chunks(per) {
            let report = any.report_from_slots(s).unwrap();
            any.for_each_supported(&report, |v| support[v as usize] += 1);
        }
        let top = (0..40).max_by_key(|&v| support[v]).unwrap();
        assert_eq!(top, 7, "{kind}: {support:?}");
    }
}

// ----- edges and errors -----

#[test]
fn empty_and_single_batches_work() {
    let mut rng = NoiseRng::seed_from_u64(0xba7c_000d);
    let oue = UnaryEncoding::optimized(1.0, 16).unwrap();
    oue.perturb_batch(&[], &mut [], &mut rng).unwrap();
    let mut one = [0u64; 1];
    oue.perturb_batch(&[5], &mut one, &mut rng).unwrap();
    assert_eq!(one[0] >> 16, 0, "bits past the domain stay zero");
}

#[test]
fn bad_batches_are_typed_errors() {
    let mut rng = NoiseRng::seed_from_u64(0xba7c_000e);
    let oue = UnaryEncoding::optimized(1.0, 100).unwrap();
    assert!(matches!(
        oue.perturb_batch(&[1, 2], &mut [0u64; 3], &mut rng),
        Err(LdpError::BufferLength {
            expected: 4,
            actual: 3,
            ..
        })
    ));
    assert!(matches!(
        oue.perturb_repeated(1, &mut [0u64; 3], &mut rng),
        Err(LdpError::BufferLength { .. })
    ));
    assert!(matches!(
        oue.perturb_batch(&[1, 100], &mut [0u64; 4], &mut rng),
        Err(LdpError::ValueOutOfDomain {
            value: 100,
            domain: 100
        })
    ));
    let grr = Grr::new(1.0, 3).unwrap();
    assert!(matches!(
        grr.perturb_batch(&[0, 3], &mut [0u32; 2], &mut rng),
        Err(LdpError::ValueOutOfDomain { value: 3, .. })
    ));
    let bits = PackedBits::zeros(10);
    assert_eq!(
        grr.perturb_packed(&bits, &mut PackedBits::zeros(10), &mut rng),
        Err(LdpError::NotBinary(3))
    );
    let rr = Grr::new(1.0, 2).unwrap();
    assert!(matches!(
        rr.perturb_packed(&bits, &mut PackedBits::zeros(11), &mut rng),
        Err(LdpError::BufferLength { .. })
    ));
}
