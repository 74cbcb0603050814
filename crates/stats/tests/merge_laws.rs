//! Property tests: aggregate merges are associative and commutative with the empty
//! aggregate as identity, so shards and days combine to the same numbers in any order.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Tests fail loudly by design.

use hush_stats::{BranchMoments, FrequencyAggregate, MeanAggregate, norm_sub};
use proptest::prelude::*;

fn frequency(domain: usize) -> impl Strategy<Value = FrequencyAggregate> {
    (0u64..1 << 40, prop::collection::vec(0u64..1 << 40, domain))
        .prop_map(|(n, c)| FrequencyAggregate::from_counts(n, c))
}

fn moments() -> impl Strategy<Value = BranchMoments> {
    (0u64..1 << 40, -(1i64 << 50)..1 << 50, 0u64..u64::MAX).prop_map(|(count, sum, sq)| {
        BranchMoments {
            count,
            sum: i128::from(sum),
            sum_squares: u128::from(sq),
        }
    })
}

fn mean() -> impl Strategy<Value = MeanAggregate> {
    (moments(), moments()).prop_map(|(a, b)| MeanAggregate::from_moments([a, b]))
}

proptest! {
    #[test]
    fn frequency_merge_is_associative_and_commutative(
        (a, b, c) in (1usize..40).prop_flat_map(|d| (frequency(d), frequency(d), frequency(d)))
    ) {
        let mut ab = a.clone();
        ab.merge(&b).unwrap();
        let mut ba = b.clone();
        ba.merge(&a).unwrap();
        prop_assert_eq!(&ab, &ba);
        let mut ab_c = ab.clone();
        ab_c.merge(&c).unwrap();
        let mut bc = b.clone();
        bc.merge(&c).unwrap();
        let mut a_bc = a.clone();
        a_bc.merge(&bc).unwrap();
        prop_assert_eq!(&ab_c, &a_bc);
        let mut with_empty = a.clone();
        with_empty.merge(&FrequencyAggregate::new(a.support_counts().len() as u32)).unwrap();
        prop_assert_eq!(&with_empty, &a);
    }

    #[test]
    fn frequency_merge_refuses_other_domains(a in frequency(3), b in frequency(4)) {
        let mut x = a.clone();
        prop_assert!(x.merge(&b).is_err());
        prop_assert_eq!(x, a);
    }

    #[test]
    fn mean_merge_is_associative_and_commutative(a in mean(), b in mean(), c in mean()) {
        let mut ab = a;
        ab.merge(&b);
        let mut ba = b;
        ba.merge(&a);
        prop_assert_eq!(ab, ba);
        let mut ab_c = ab;
        ab_c.merge(&c);
        let mut bc = b;
        bc.merge(&c);
        let mut a_bc = a;
        a_bc.merge(&bc);
        prop_assert_eq!(ab_c, a_bc);
        let mut with_empty = a;
        with_empty.merge(&MeanAggregate::new());
        prop_assert_eq!(with_empty, a);
    }

    #[test]
    fn norm_sub_returns_a_distribution(v in prop::collection::vec(-2.0f64..2.0, 1..64)) {
        let p = norm_sub(&v);
        prop_assert_eq!(p.len(), v.len());
        prop_assert!(p.iter().all(|&x| x >= 0.0));
        prop_assert!((p.iter().sum::<f64>() - 1.0).abs() < 1e-9);
        // Order is preserved: a larger estimate never gets a smaller share.
        for i in 0..v.len() {
            for j in 0..v.len() {
                if v[i] > v[j] {
                    prop_assert!(p[i] >= p[j]);
                }
            }
        }
    }
}
