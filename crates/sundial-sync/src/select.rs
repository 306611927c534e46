//! Which sources agree: the intersection algorithm of RFC 5905 section
//! 11.2.1, Marzullo's algorithm as modified for NTP.
//!
//! Each source claims the true offset lies in [offset - rootdist,
//! offset + rootdist]. The algorithm looks for the smallest number of
//! falsetickers `f` (fewer than half) such that some interval is inside
//! all but `f` of the claims and at most `f` sources' offsets lie outside
//! it. Sources whose offset lies inside the intersection are truechimers.

/// One source as the selection sees it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Claim {
    pub(crate) offset: f64,
    pub(crate) root_distance: f64,
}

/// The interval found, or `None` when no majority agrees on one.
pub(crate) fn intersection(claims: &[Claim]) -> Option<(f64, f64)> {
    let n = claims.len();
    // Endpoints: -1 opens an interval, 0 is a midpoint, +1 closes one. On
    // equal values an opening sorts first so touching intervals intersect.
    let mut points: Vec<(f64, i8)> = Vec::with_capacity(3 * n);
    for c in claims {
        points.push((c.offset - c.root_distance, -1));
        points.push((c.offset, 0));
        points.push((c.offset + c.root_distance, 1));
    }
    points.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));

    let mut allow = 0;
    while 2 * allow < n {
        let need = n - allow;
        let mut found = 0;
        let mut chime = 0usize;
        let mut low = None;
        for &(value, kind) in &points {
            match kind {
                -1 => chime += 1,
                1 => chime = chime.saturating_sub(1),
                _ => {}
            }
            if chime >= need {
                low = Some(value);
                break;
            }
            if kind == 0 {
                found += 1;
            }
        }
        let mut chime = 0usize;
        let mut high = None;
        for &(value, kind) in points.iter().rev() {
            match kind {
                1 => chime += 1,
                -1 => chime = chime.saturating_sub(1),
                _ => {}
            }
            if chime >= need {
                high = Some(value);
                break;
            }
            if kind == 0 {
                found += 1;
            }
        }
        if let (Some(low), Some(high)) = (low, high)
            && found <= allow
            && low <= high
        {
            return Some((low, high));
        }
        allow += 1;
    }
    None
}

/// Whether a claim's offset lies inside the intersection.
pub(crate) fn is_truechimer(claim: &Claim, (low, high): (f64, f64)) -> bool {
    (low..=high).contains(&claim.offset)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claim(offset: f64, root_distance: f64) -> Claim {
        Claim {
            offset,
            root_distance,
        }
    }

    #[test]
    fn all_agree() {
        let c = [claim(0.0, 0.01), claim(0.002, 0.01), claim(-0.001, 0.01)];
        let (low, high) = intersection(&c).unwrap();
        assert!((low - -0.008).abs() < 1e-12 && (high - 0.009).abs() < 1e-12);
        assert!(c.iter().all(|c| is_truechimer(c, (low, high))));
    }

    #[test]
    fn one_falseticker_out_of_four() {
        let c = [
            claim(0.0, 0.01),
            claim(0.001, 0.01),
            claim(-0.001, 0.01),
            claim(1.0, 0.01),
        ];
        let i = intersection(&c).unwrap();
        let truechimers: Vec<bool> = c.iter().map(|c| is_truechimer(c, i)).collect();
        assert_eq!(truechimers, [true, true, true, false]);
    }

    #[test]
    fn no_majority() {
        // Two against two: nobody can be trusted.
        let c = [
            claim(0.0, 0.01),
            claim(0.001, 0.01),
            claim(1.0, 0.01),
            claim(1.001, 0.01),
        ];
        assert_eq!(intersection(&c), None);
        assert_eq!(intersection(&[]), None);
    }

    #[test]
    fn wide_claim_does_not_hide_the_narrow_ones() {
        let c = [claim(0.0, 0.01), claim(0.001, 0.01), claim(0.3, 0.5)];
        let i = intersection(&c).unwrap();
        assert!(is_truechimer(&c[0], i) && is_truechimer(&c[1], i));
        assert!(!is_truechimer(&c[2], i));
    }
}
