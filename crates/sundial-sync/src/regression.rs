//! The frequency and offset estimate: a weighted least-squares line
//! through the recent samples of trusted sources, all in the
//! synchronizer's frame.
//!
//! The slope is the frequency error still uncorrected, the line's value at
//! `now` the offset still uncorrected. How many points the line may use is
//! chosen as chrony does: as many as possible while the residuals still
//! look like noise (a runs test); when the clock's frequency wanders, the
//! residuals of a too-long fit form long runs of one sign, and the oldest
//! points are dropped.

use std::collections::VecDeque;

/// Points kept at most. At a poll of 16 s and three sources this is 45
/// minutes of history, at 1024 s two days: enough to average a
/// millisecond of jitter, and the runs test cuts it short when the
/// frequency wanders.
const MAX_POINTS: usize = 512;

/// Fewer points than this are never dropped by the runs test: too few to
/// tell noise from a trend.
const MIN_POINTS_FOR_RUNS_TEST: usize = 8;

#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Point {
    pub(crate) time: f64,
    pub(crate) offset: f64,
    /// 1 / variance of the offset, in 1/s²: how much the fit trusts it.
    pub(crate) weight: f64,
    /// Where the sample came from and how its delay compared, so that its
    /// weight can be worked out again as its source's noise model learns
    /// (`None`: the weight is fixed).
    pub(crate) origin: Option<Origin>,
}

/// See `Point::origin`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Origin {
    pub(crate) source: crate::SourceId,
    /// The exchange's round trip: judged anew against the source's recent
    /// delays, so that a spike among the first samples, before there was
    /// anything to judge it by, is still found out.
    pub(crate) delay: f64,
    pub(crate) dispersion: f64,
}

/// A fitted line, anchored at the points' weighted mean time for
/// precision, with what the fit knows about its own uncertainty.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Line {
    mean_time: f64,
    mean_offset: f64,
    /// Seconds per second; zero when the points span no time.
    pub(crate) slope: f64,
    /// The sum of the weights.
    total_weight: f64,
    /// The weighted sum of squared time deviations from `mean_time`.
    sxx: f64,
    /// How much larger the residuals are than the weights promise (the
    /// reduced chi-square, at least 1): the weights are only a model.
    scale: f64,
    /// Points the line was fitted through.
    pub(crate) points: usize,
}

impl Line {
    pub(crate) fn at(&self, t: f64) -> f64 {
        self.mean_offset + self.slope * (t - self.mean_time)
    }

    /// The same line after the points moved into a new frame (see
    /// `History::reframe`).
    pub(crate) fn reframe(&mut self, offset: f64, frequency_ppm: f64, at: f64) {
        self.mean_offset = self.mean_offset - offset + frequency_ppm * 1e-6 * (at - self.mean_time);
        self.slope -= frequency_ppm * 1e-6;
    }

    /// The standard error of `at(t)`.
    pub(crate) fn error_at(&self, t: f64) -> f64 {
        let dt = t - self.mean_time;
        let slope_part = if self.sxx > 0.0 {
            dt * dt / self.sxx
        } else {
            0.0
        };
        (self.scale * (1.0 / self.total_weight + slope_part)).sqrt()
    }
}

#[derive(Clone, Debug, Default)]
pub(crate) struct History {
    points: VecDeque<Point>,
}

impl History {
    pub(crate) fn len(&self) -> usize {
        self.points.len()
    }

    /// The time spanned by the points.
    pub(crate) fn span(&self) -> f64 {
        match (self.points.front(), self.points.back()) {
            (Some(a), Some(b)) => b.time - a.time,
            _ => 0.0,
        }
    }

    pub(crate) fn push(&mut self, point: Point) {
        if self.points.len() >= MAX_POINTS {
            self.points.pop_front();
        }
        self.points.push_back(point);
    }

    pub(crate) fn clear(&mut self) {
        self.points.clear();
    }

    /// Sets each point's weight anew from its origin (points whose new
    /// weight is not a positive finite number keep the old one).
    pub(crate) fn reweigh(&mut self, weigh: &dyn Fn(&Origin) -> Option<f64>) {
        for p in &mut self.points {
            if let Some(w) = p.origin.as_ref().and_then(weigh) {
                if w.is_finite() && w > 0.0 {
                    p.weight = w;
                }
            }
        }
    }

    /// See `ClockFilter::reframe`.
    pub(crate) fn reframe(&mut self, offset: f64, frequency_ppm: f64, at: f64) {
        for p in &mut self.points {
            p.offset = p.offset - offset + frequency_ppm * 1e-6 * (at - p.time);
        }
    }

    /// Fits the line, first dropping the oldest quarter of the points as
    /// long as the residuals fail the runs test.
    pub(crate) fn fit(&mut self) -> Option<Line> {
        loop {
            let points = self.points.make_contiguous();
            let mut line = fit(points)?;
            let (chi2, random) = residuals(points, &line);
            let n = points.len();
            if n < MIN_POINTS_FOR_RUNS_TEST || random {
                if n > 2 {
                    let reduced = chi2 / (n - 2) as f64;
                    if reduced.is_finite() {
                        line.scale = reduced.max(1.0);
                    }
                }
                return Some(line);
            }
            self.points.drain(..n / 4);
        }
    }
}

/// Weighted least squares; `scale` is left at 1.
fn fit(points: &[Point]) -> Option<Line> {
    let origin = points.first()?.time;
    let (mut total_weight, mut wt, mut wy) = (0.0, 0.0, 0.0);
    for p in points {
        total_weight += p.weight;
        wt += p.weight * (p.time - origin);
        wy += p.weight * p.offset;
    }
    if !(total_weight.is_finite() && total_weight > 0.0) {
        return None;
    }
    // Relative to the first point, so large timestamps keep precision.
    let mean_time = origin + wt / total_weight;
    let mean_offset = wy / total_weight;
    let (mut sxx, mut sxy) = (0.0, 0.0);
    for p in points {
        let dt = p.time - mean_time;
        sxx += p.weight * dt * dt;
        sxy += p.weight * dt * (p.offset - mean_offset);
    }
    let slope = if sxx > 0.0 { sxy / sxx } else { 0.0 };
    let slope = if slope.is_finite() { slope } else { 0.0 };
    Some(Line {
        mean_time,
        mean_offset,
        slope,
        total_weight,
        sxx,
        scale: 1.0,
        points: points.len(),
    })
}

/// The weighted sum of squared residuals, and whether their signs pass
/// the Wald-Wolfowitz runs test: it fails when there are far fewer runs
/// than noise would give (more than three standard deviations).
fn residuals(points: &[Point], line: &Line) -> (f64, bool) {
    let (mut positive, mut negative, mut runs) = (0usize, 0usize, 0usize);
    let mut chi2 = 0.0;
    let mut last = None;
    for p in points {
        let residual = p.offset - line.at(p.time);
        chi2 += p.weight * residual * residual;
        let sign = residual >= 0.0;
        if sign {
            positive += 1;
        } else {
            negative += 1;
        }
        if last != Some(sign) {
            runs += 1;
        }
        last = Some(sign);
    }
    let n = (positive + negative) as f64;
    let (pos, neg) = (positive as f64, negative as f64);
    let expected = 2.0 * pos * neg / n + 1.0;
    let variance = (expected - 1.0) * (expected - 2.0) / (n - 1.0);
    let random = (runs as f64) >= expected - 3.0 * variance.max(0.0).sqrt();
    (chi2, random)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn history(points: impl IntoIterator<Item = (f64, f64)>) -> History {
        let mut h = History::default();
        for (time, offset) in points {
            h.push(Point {
                time,
                offset,
                weight: 1.0,
                origin: None,
            });
        }
        h
    }

    #[test]
    fn fits_a_line() {
        let mut h =
            history((0..10).map(|i| (f64::from(i) * 16.0, 1e-3 + 2e-6 * f64::from(i) * 16.0)));
        let line = h.fit().unwrap();
        assert!((line.slope - 2e-6).abs() < 1e-15);
        assert!((line.at(0.0) - 1e-3).abs() < 1e-15);
    }

    #[test]
    fn alternating_noise_keeps_all_points() {
        let mut h = history((0..32).map(|i| (f64::from(i), if i % 2 == 0 { 1e-4 } else { -1e-4 })));
        let _ = h.fit().unwrap();
        assert_eq!(h.len(), 32);
    }

    #[test]
    fn a_bend_drops_old_points() {
        // Flat, then rising: a straight line through both leaves long runs.
        let mut h = history((0..40).map(|i| {
            let t = f64::from(i);
            (t, if i < 20 { 0.0 } else { 1e-4 * (t - 20.0) })
        }));
        let line = h.fit().unwrap();
        assert!(h.len() < 40);
        assert!(line.slope > 0.5e-4);
    }

    #[test]
    fn one_point_has_no_slope() {
        let mut h = history([(5.0, 0.25)]);
        let line = h.fit().unwrap();
        assert_eq!(line.slope, 0.0);
        assert_eq!(line.at(100.0), 0.25);
        assert_eq!(History::default().fit(), None);
    }
}
