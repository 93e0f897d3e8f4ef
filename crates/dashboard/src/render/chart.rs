//! Sparklines: small SVG line charts with their scale written on them.

use std::fmt::Write as _;

use super::esc;

/// What a sparkline's axes say.
#[derive(Debug, Clone, Copy)]
pub struct Scale<'a> {
    /// The value at the top of the chart; higher values are drawn there.
    pub max: u32,
    /// The unit of the values, for the text alternative: `%`, `°C`, `MiB`.
    pub unit: &'a str,
    /// The label at the top of the y axis: `100 %`, `80.0 GiB`.
    pub top: &'a str,
    /// Seconds from the first sample to the last: the x axis runs from
    /// that long ago to now.
    pub span_secs: u64,
}

/// Chart size and plot area, in SVG units.
const W: u32 = 220;
const H: u32 = 46;
const LEFT: u32 = 50;
const RIGHT: u32 = 216;
const TOP: u32 = 4;
const BOTTOM: u32 = 32;

/// `-15m`, `-40s`: how long ago the x axis starts.
fn since(secs: u64) -> String {
    match secs {
        0 => String::new(),
        s if s >= 3600 => format!("-{}h{:02}m", s / 3600, s % 3600 / 60),
        s if s >= 120 => format!("-{}m", (s + 30) / 60),
        s => format!("-{s}s"),
    }
}

/// An SVG sparkline of `values` (0 at the bottom, `scale.max` at the top),
/// with its y scale (0 and the top label) and time axis (how long ago,
/// and now) written on it, and a text alternative.
pub fn sparkline(values: &[Option<u32>], scale: &Scale<'_>, label: &str) -> String {
    let max = scale.max.max(1);
    let samples = values.len();
    let alt = match values.last() {
        Some(None) => format!(
            "{label}: unknown now (not supported); scale 0 to {top}; {samples} samples over {span}",
            top = scale.top,
            span = super::span(scale.span_secs),
        ),
        Some(Some(v)) => format!(
            "{label}: {v} {unit} now; scale 0 to {top}; {samples} samples over {span}",
            unit = scale.unit,
            top = scale.top,
            span = super::span(scale.span_secs),
        ),
        None => format!("{label}: no history yet"),
    };
    // One sample is drawn as a flat line across.
    let one;
    let values = match values {
        [v] => {
            one = [*v, *v];
            &one[..]
        }
        v => v,
    };
    let n = values.len().max(2) as u32 - 1;
    // One polyline per run of known values: an unknown reading leaves a
    // gap, never a dip to zero.
    let mut runs: Vec<String> = vec![String::new()];
    for (i, v) in values.iter().enumerate() {
        let Some(v) = v else {
            runs.push(String::new());
            continue;
        };
        let x = u64::from(LEFT) + i as u64 * u64::from(RIGHT - LEFT) / u64::from(n);
        let y =
            u64::from(BOTTOM) - u64::from((*v).min(max)) * u64::from(BOTTOM - TOP) / u64::from(max);
        if let Some(run) = runs.last_mut() {
            let _ = write!(run, "{x},{y} ");
        }
    }
    let line: String = runs
        .iter()
        .filter(|r| !r.is_empty())
        .map(|points| {
            format!(
                "<polyline class=\"line\" fill=\"none\" stroke=\"currentColor\" stroke-width=\"1.5\" points=\"{}\"/>",
                points.trim_end()
            )
        })
        .collect();
    format!(
        "<svg class=\"spark\" width=\"{W}\" height=\"{H}\" viewBox=\"0 0 {W} {H}\" role=\"img\" aria-label=\"{a}\">\
         <title>{a}</title>\
         <path class=\"axis\" d=\"M{LEFT} {TOP}V{BOTTOM}H{RIGHT}\" fill=\"none\"/>\
         <path class=\"grid\" d=\"M{LEFT} {TOP}H{RIGHT}\" fill=\"none\"/>\
         <text class=\"y\" x=\"{ly}\" y=\"{ty}\" text-anchor=\"end\">{top}</text>\
         <text class=\"y\" x=\"{ly}\" y=\"{BOTTOM}\" text-anchor=\"end\">0</text>\
         <text class=\"x\" x=\"{LEFT}\" y=\"{H}\" text-anchor=\"start\">{from}</text>\
         <text class=\"x\" x=\"{RIGHT}\" y=\"{H}\" text-anchor=\"end\">now</text>\
         {line}</svg>",
        a = esc(&alt),
        ly = LEFT - 3,
        ty = TOP + 7,
        top = esc(scale.top),
        from = since(scale.span_secs),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pct(span_secs: u64) -> Scale<'static> {
        Scale {
            max: 100,
            unit: "%",
            top: "100 %",
            span_secs,
        }
    }

    #[test]
    fn a_sparkline_has_its_scale_and_time_axis() {
        let svg = sparkline(
            &[Some(0), Some(50), Some(100), Some(200)],
            &pct(900),
            "util",
        );
        assert!(svg.contains("points=\"50,32 105,18 160,4 216,4\""), "{svg}");
        assert!(
            svg.contains(">100 %</text>") && svg.contains(">0</text>"),
            "{svg}"
        );
        assert!(
            svg.contains(">-15m</text>") && svg.contains(">now</text>"),
            "{svg}"
        );
        assert!(
            svg.contains("util: 200 % now; scale 0 to 100 %; 4 samples over 15m 00s"),
            "{svg}"
        );
        let empty = sparkline(&[], &pct(0), "util");
        assert!(empty.contains("no history yet") && !empty.contains("polyline"));
        let one = sparkline(&[Some(7)], &Scale { max: 0, ..pct(0) }, "x");
        assert!(one.contains("points=\"50,4 216,4\""), "{one}");
        assert!(one.contains("x: 7 % now"), "{one}");
        // Labels are text another party may have written (a GPU's memory
        // size comes from its node): escaped.
        let odd = sparkline(
            &[Some(1)],
            &Scale {
                top: "<b>",
                ..pct(40)
            },
            "m",
        );
        assert!(odd.contains("&lt;b&gt;") && !odd.contains("<b>"), "{odd}");
        assert!(odd.contains(">-40s</text>"));
        assert_eq!(since(7500), "-2h05m");
        // Large scales (a GPU's memory in MiB) do not overflow.
        let big = sparkline(
            &[Some(u32::MAX), Some(0)],
            &Scale {
                max: u32::MAX,
                ..pct(1)
            },
            "m",
        );
        assert!(big.contains("points=\"50,4 216,32\""), "{big}");
        // Unknown readings leave a gap: two lines, nothing drawn at zero.
        let gap = sparkline(&[Some(50), Some(50), None, Some(100), None], &pct(60), "t");
        assert!(gap.contains("points=\"50,18 91,18\""), "{gap}");
        assert!(gap.contains("points=\"174,4\""), "{gap}");
        assert_eq!(gap.matches("<polyline").count(), 2, "{gap}");
        assert!(gap.contains("t: unknown now"), "{gap}");
    }
}
