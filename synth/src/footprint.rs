//! Floor footprints (an object's shape seen from above) and the distances placement and agent
//! sampling need.

/// A rectangle on the floor: centre, half extents along its local axes, rotation about z.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Footprint {
    pub centre: [f64; 2],
    pub half: [f64; 2],
    pub yaw: f64,
    /// A cylinder's footprint is its disc; `half` then holds the radius twice.
    pub round: bool,
}

impl Footprint {
    fn axes(&self) -> [[f64; 2]; 2] {
        let (s, c) = (libm::sin(self.yaw), libm::cos(self.yaw));
        [[c, s], [-s, c]]
    }

    /// The four corners (a disc's circumscribed square).
    pub fn corners(&self) -> [[f64; 2]; 4] {
        let [ax, ay] = self.axes();
        let p = |sx: f64, sy: f64| {
            [self.centre[0] + sx * self.half[0] * ax[0] + sy * self.half[1] * ay[0], self.centre[1] + sx * self.half[0] * ax[1] + sy * self.half[1] * ay[1]]
        };
        [p(-1.0, -1.0), p(1.0, -1.0), p(1.0, 1.0), p(-1.0, 1.0)]
    }

    /// Distance from a floor point to the footprint (0 inside).
    pub fn distance_to(&self, p: [f64; 2]) -> f64 {
        let d = [p[0] - self.centre[0], p[1] - self.centre[1]];
        if self.round {
            return (libm::sqrt(d[0] * d[0] + d[1] * d[1]) - self.half[0]).max(0.0);
        }
        let [ax, ay] = self.axes();
        let lx = (d[0] * ax[0] + d[1] * ax[1]).abs() - self.half[0];
        let ly = (d[0] * ay[0] + d[1] * ay[1]).abs() - self.half[1];
        libm::hypot(lx.max(0.0), ly.max(0.0))
    }

    /// A lower bound of the distance between two footprints (separating-axis gap over both
    /// rectangles' axes; discs count as their circumscribed squares), so `gap_to(o) >= g`
    /// guarantees a true gap of at least `g`.
    pub fn gap_to(&self, other: &Footprint) -> f64 {
        let mut best = f64::NEG_INFINITY;
        let (a, b) = (self.corners(), other.corners());
        for axis in self.axes().into_iter().chain(other.axes()) {
            let project = |pts: &[[f64; 2]; 4]| {
                pts.iter().map(|p| p[0] * axis[0] + p[1] * axis[1]).fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| (lo.min(v), hi.max(v)))
            };
            let (alo, ahi) = project(&a);
            let (blo, bhi) = project(&b);
            best = best.max(blo - ahi).max(alo - bhi);
        }
        best
    }

    /// Whether the footprint lies inside `[m, w − m] × [m, d − m]`.
    pub fn inside_room(&self, width: f64, depth: f64, margin: f64) -> bool {
        self.corners().iter().all(|c| c[0] >= margin && c[0] <= width - margin && c[1] >= margin && c[1] <= depth - margin)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distances() {
        let f = Footprint { centre: [1.0, 1.0], half: [0.5, 0.25], yaw: 0.0, round: false };
        assert!((f.distance_to([2.0, 1.0]) - 0.5).abs() < 1e-12);
        assert_eq!(f.distance_to([1.1, 1.1]), 0.0);
        let g = Footprint { centre: [3.0, 1.0], half: [0.5, 0.5], yaw: 0.3, round: false };
        let gap = f.gap_to(&g);
        assert!(gap > 0.0 && gap < 1.5);
        let disc = Footprint { centre: [0.0, 0.0], half: [0.3, 0.3], yaw: 0.0, round: true };
        assert!((disc.distance_to([1.0, 0.0]) - 0.7).abs() < 1e-12);
    }
}
