//! Choosing the rendition ladder from the probe: the rungs' sizes (even, aspect ratio kept) and
//! their bitrates.

/// The tallest rung of a ladder.
pub const MAX_HEIGHT: u32 = 1080;

/// One rung of the ladder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rung {
    pub width: u32,
    pub height: u32,
    /// Target video bitrate, kbit/s.
    pub video_kbps: u32,
}

impl Rung {
    /// The peak rate the encoder may reach (`-maxrate`), kbit/s.
    pub fn maxrate_kbps(&self) -> u32 {
        self.video_kbps.saturating_mul(11).div_ceil(10)
    }

    /// The rate-control buffer (`-bufsize`), kbit.
    pub fn bufsize_kbps(&self) -> u32 {
        self.video_kbps.saturating_mul(2)
    }

    /// Peak video bitrate, bits per second (`Rendition::bandwidth`).
    pub fn bandwidth(&self) -> u64 {
        u64::from(self.maxrate_kbps()) * 1000
    }
}

/// `n` rounded down to an even number, at least 2.
pub(super) fn even(n: u32) -> u32 {
    (n & !1).max(2)
}

/// The even width that keeps a `source_w`×`source_h` frame's aspect ratio at `height`.
pub fn width_for(source_w: u32, source_h: u32, height: u32) -> u32 {
    if source_h == 0 {
        return even(height);
    }
    let exact = f64::from(source_w) * f64::from(height) / f64::from(source_h);
    ((exact / 2.0).round() as u32 * 2).max(2)
}

/// The target video bitrate of a `width`×`height` rung, kbit/s: the usual rates for 1080, 720
/// and 360 lines, otherwise in proportion to the pixels of 720p, never below 300.
pub fn video_kbps(width: u32, height: u32) -> u32 {
    match height {
        1080 => 5000,
        720 => 2800,
        360 => 800,
        _ => {
            let pixels = f64::from(width) * f64::from(height);
            let kbps = 2800.0 * pixels / (1280.0 * 720.0);
            ((kbps / 10.0).round() as u32 * 10).max(300)
        }
    }
}

/// The ladder for a source shown at `width`×`height`: the top rung at min(1080, height) lines,
/// then 720 and 360 lines when below it. Heights and widths are even.
pub fn ladder(width: u32, height: u32) -> Vec<Rung> {
    let top = even(height.min(MAX_HEIGHT));
    let mut heights = vec![top];
    heights.extend([720, 360].into_iter().filter(|h| *h < top));
    heights
        .into_iter()
        .map(|h| {
            let w = width_for(width, height, h);
            Rung { width: w, height: h, video_kbps: video_kbps(w, h) }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dims(l: &[Rung]) -> Vec<(u32, u32)> {
        l.iter().map(|r| (r.width, r.height)).collect()
    }

    #[test]
    fn ladders_of_common_sources() {
        assert_eq!(dims(&ladder(1920, 1080)), [(1920, 1080), (1280, 720), (640, 360)]);
        assert_eq!(dims(&ladder(3840, 2160)), [(1920, 1080), (1280, 720), (640, 360)]);
        assert_eq!(dims(&ladder(1280, 720)), [(1280, 720), (640, 360)]);
        assert_eq!(dims(&ladder(854, 480)), [(854, 480), (640, 360)]);
        assert_eq!(dims(&ladder(426, 240)), [(426, 240)]);
        assert_eq!(dims(&ladder(640, 360)), [(640, 360)]);
        let kbps: Vec<u32> = ladder(1920, 1080).iter().map(|r| r.video_kbps).collect();
        assert_eq!(kbps, [5000, 2800, 800]);
        let top = ladder(1920, 1080)[0];
        assert_eq!((top.maxrate_kbps(), top.bufsize_kbps(), top.bandwidth()), (5500, 10000, 5_500_000));
        // Other heights: in proportion to 720p's pixels, never below 300k.
        assert_eq!(ladder(854, 480)[0].video_kbps, 1250);
        assert_eq!(ladder(426, 240)[0].video_kbps, 310);
        assert_eq!(ladder(320, 180)[0].video_kbps, 300);
    }

    #[test]
    fn ladders_of_odd_shapes() {
        // 4:3, portrait, odd sizes, cinema scope, a tiny clip.
        assert_eq!(dims(&ladder(640, 480)), [(640, 480), (480, 360)]);
        assert_eq!(dims(&ladder(1080, 1920)), [(608, 1080), (406, 720), (202, 360)]);
        assert_eq!(dims(&ladder(1279, 721)), [(1278, 720), (638, 360)]);
        assert_eq!(dims(&ladder(1998, 1080)), [(1998, 1080), (1332, 720), (666, 360)]);
        assert_eq!(dims(&ladder(2048, 858)), [(2048, 858), (1718, 720), (860, 360)]);
        assert_eq!(dims(&ladder(175, 143)), [(174, 142)]);
        for rung in [ladder(1279, 721), ladder(333, 999), ladder(3, 3)].concat() {
            assert!(rung.width % 2 == 0 && rung.height % 2 == 0 && rung.width >= 2 && rung.height >= 2, "{rung:?}");
        }
    }
}
