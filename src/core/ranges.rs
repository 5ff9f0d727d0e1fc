//! Sorted, merged sets of half-open byte ranges: the "shipped" part of a checkpoint.
//! Union is commutative and idempotent, which is what makes checkpoint merging safe.

use serde::{Deserialize, Serialize};

/// Invariant: sorted by start, non-empty ranges, no two overlapping or touching.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "Vec<(u64, u64)>", into = "Vec<(u64, u64)>")]
pub struct RangeSet(Vec<(u64, u64)>);

impl From<Vec<(u64, u64)>> for RangeSet {
    /// Normalises whatever was stored, so a hand-edited checkpoint cannot break the invariant.
    fn from(raw: Vec<(u64, u64)>) -> Self {
        let mut set = RangeSet::default();
        for (a, b) in raw {
            set.insert(a, b);
        }
        set
    }
}

impl From<RangeSet> for Vec<(u64, u64)> {
    fn from(set: RangeSet) -> Self {
        set.0
    }
}

impl RangeSet {
    pub fn insert(&mut self, start: u64, end: u64) {
        if start >= end {
            return;
        }
        // First range that could touch [start, end): its end >= start.
        let first = self.0.partition_point(|&(_, e)| e < start);
        let mut last = first;
        let (mut lo, mut hi) = (start, end);
        while last < self.0.len() && self.0[last].0 <= end {
            lo = lo.min(self.0[last].0);
            hi = hi.max(self.0[last].1);
            last += 1;
        }
        self.0.splice(first..last, [(lo, hi)]);
    }

    pub fn union(&mut self, other: &RangeSet) {
        for &(a, b) in &other.0 {
            self.insert(a, b);
        }
    }

    /// True when every byte of `[start, end)` is in the set (an empty range is covered).
    pub fn covers(&self, start: u64, end: u64) -> bool {
        if start >= end {
            return true;
        }
        let i = self.0.partition_point(|&(_, e)| e <= start);
        self.0.get(i).is_some_and(|&(a, b)| a <= start && end <= b)
    }

    /// The parts of `[start, end)` not in the set, in order.
    pub fn missing(&self, start: u64, end: u64) -> Vec<(u64, u64)> {
        let mut out = Vec::new();
        let mut at = start;
        let first = self.0.partition_point(|&(_, e)| e <= start);
        for &(a, b) in &self.0[first..] {
            if a >= end {
                break;
            }
            if a > at {
                out.push((at, a));
            }
            at = at.max(b);
        }
        if at < end {
            out.push((at, end));
        }
        out
    }

    pub fn ranges(&self) -> &[(u64, u64)] {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Whether two half-open ranges share at least one byte.
pub fn overlaps(a: (u64, u64), b: (u64, u64)) -> bool {
    a.0 < b.1 && b.0 < a.1
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn merges_touching_and_overlapping() {
        let mut s = RangeSet::default();
        s.insert(10, 20);
        s.insert(30, 40);
        s.insert(20, 30);
        assert_eq!(s.ranges(), &[(10, 40)]);
        s.insert(0, 5);
        s.insert(5, 5);
        s.insert(45, 50);
        assert_eq!(s.ranges(), &[(0, 5), (10, 40), (45, 50)]);
        s.insert(3, 47);
        assert_eq!(s.ranges(), &[(0, 50)]);
    }

    #[test]
    fn covers_is_exact() {
        let s = RangeSet::from(vec![(10, 20), (30, 40)]);
        assert!(s.covers(10, 20) && s.covers(12, 13) && s.covers(35, 35));
        assert!(!s.covers(9, 11) && !s.covers(19, 31) && !s.covers(40, 41));
    }

    fn model(ranges: &[(u64, u64)]) -> Vec<bool> {
        let mut bits = vec![false; 128];
        for &(a, b) in ranges {
            for bit in bits.iter_mut().take(b as usize).skip(a as usize) {
                *bit = true;
            }
        }
        bits
    }

    proptest! {
        #[test]
        fn matches_a_bitmap_model(raw in prop::collection::vec((0u64..120, 0u64..8), 0..20)) {
            let ranges: Vec<(u64, u64)> = raw.iter().map(|&(a, l)| (a, a + l)).collect();
            let set = RangeSet::from(ranges.clone());
            prop_assert_eq!(model(set.ranges()), model(&ranges));
            for w in set.ranges().windows(2) {
                prop_assert!(w[0].1 < w[1].0, "not merged: {:?}", set);
            }
            for a in 0..128u64 {
                prop_assert_eq!(set.covers(a, a + 1), model(&ranges)[a as usize]);
            }
        }

        #[test]
        fn missing_is_the_complement_within_the_window(
            raw in prop::collection::vec((0u64..120, 0u64..8), 0..20),
            from in 0u64..128, len in 0u64..128,
        ) {
            let set = RangeSet::from(raw.iter().map(|&(a, l)| (a, a + l)).collect::<Vec<_>>());
            let to = (from + len).min(128);
            let gaps = set.missing(from, to);
            let held = model(set.ranges());
            let got = model(&gaps);
            for a in 0..128usize {
                let want = (from as usize..to as usize).contains(&a) && !held[a];
                prop_assert_eq!(got[a], want, "byte {} of {:?} in {}..{}", a, set, from, to);
            }
            for w in gaps.windows(2) {
                prop_assert!(w[0].1 < w[1].0, "gaps not separate: {:?}", gaps);
            }
        }

        #[test]
        fn union_is_commutative(x in prop::collection::vec((0u64..100, 0u64..10), 0..10),
                                y in prop::collection::vec((0u64..100, 0u64..10), 0..10)) {
            let to = |v: &Vec<(u64, u64)>| RangeSet::from(v.iter().map(|&(a, l)| (a, a + l)).collect::<Vec<_>>());
            let (mut a, mut b) = (to(&x), to(&y));
            a.union(&to(&y));
            b.union(&to(&x));
            prop_assert_eq!(a, b);
        }
    }
}
