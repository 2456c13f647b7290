//! The chart of a run (`ordo bench --plot`), drawn with plotters' SVG
//! backend: committed tx/s, then p50, p99 and p99.9 latency, then aborts
//! per second, each over time, on axes scaled to the data. Time 0 is the
//! start of the measured window; the warm-up before it is shaded.

use plotters::coord::Shift;
use plotters::prelude::*;

use super::{BenchReport, Second};

const WIDTH: u32 = 900;
const HEIGHT: u32 = 900;
const WARMUP_SHADE: RGBColor = RGBColor(232, 232, 232);
const THROUGHPUT: RGBColor = RGBColor(31, 119, 180);
const P50: RGBColor = RGBColor(44, 160, 44);
const P99: RGBColor = RGBColor(255, 127, 14);
const P999: RGBColor = RGBColor(214, 39, 40);
const ABORTS: RGBColor = RGBColor(148, 103, 189);

/// A line: its legend, its colour and its `(seconds, value)` points.
type Series<'a> = (&'a str, RGBColor, Vec<(f64, f64)>);

/// One point a second: where it sits on the time axis and how long the
/// second was (the last of the warm-up or of the run may be partial).
struct Point<'a> {
    x: f64,
    seconds: f64,
    second: &'a Second,
}

/// The chart for `report`, as an SVG document.
pub fn timeline_svg(report: &BenchReport) -> anyhow::Result<String> {
    let points = points(report);
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, HEIGHT)).into_drawing_area();
        root.fill(&WHITE)?;
        let title = format!(
            "ordo bench {}: {} tx/s, p50 {:.2} ms, p99 {:.2} ms, p99.9 {:.2} ms ({} connections, {} in flight)",
            report.workload,
            format_value(report.throughput_tps.round()),
            report.p50_ms,
            report.p99_ms,
            report.p999_ms,
            report.connections,
            report.inflight
        );
        let body = root.titled(&title, ("sans-serif", 17))?;
        let panels = body.split_evenly((3, 1));
        let x_range = -report.warmup_s..report.duration_s.max(1.0);

        let throughput: Vec<(f64, f64)> = points
            .iter()
            .map(|p| (p.x, p.second.committed as f64 / p.seconds))
            .collect();
        panel(
            &panels[0],
            "committed transactions per second",
            x_range.clone(),
            report.warmup_s,
            &format_count,
            &[("committed tx/s", THROUGHPUT, throughput)],
        )?;

        let latency = |quantile: fn(&Second) -> f64| -> Vec<(f64, f64)> {
            points.iter().map(|p| (p.x, quantile(p.second))).collect()
        };
        panel(
            &panels[1],
            "latency of answered requests, per second",
            x_range.clone(),
            report.warmup_s,
            &|value, _| format!("{} ms", trim(value)),
            &[
                ("p50", P50, latency(|s| s.p50_ms)),
                ("p99", P99, latency(|s| s.p99_ms)),
                ("p99.9", P999, latency(|s| s.p999_ms)),
            ],
        )?;

        let aborts: Vec<(f64, f64)> = points
            .iter()
            .map(|p| (p.x, p.second.aborted as f64 / p.seconds))
            .collect();
        panel(
            &panels[2],
            "aborted transactions per second",
            x_range,
            report.warmup_s,
            &|value, axis_max| format!("{}/s", format_count(value, axis_max)),
            &[("aborts/s", ABORTS, aborts)],
        )?;
        root.present()?;
    }
    Ok(svg)
}

/// The warm-up's seconds then the measured ones, on one time axis.
fn points(report: &BenchReport) -> Vec<Point<'_>> {
    let place = |start: f64, end: f64, second: &'_ Second| {
        let from = start + second.t as f64;
        let seconds = (end - from).clamp(1e-3, 1.0);
        (from + seconds / 2.0, seconds)
    };
    let warmup = report.warmup_timeline.iter().map(|second| {
        let (x, seconds) = place(-report.warmup_s, 0.0, second);
        Point { x, seconds, second }
    });
    let measured = report.timeline.iter().map(|second| {
        let (x, seconds) = place(0.0, report.duration_s, second);
        Point { x, seconds, second }
    });
    warmup.chain(measured).collect()
}

/// One panel: the warm-up shaded, a line per series, a y axis from 0 to
/// over the highest value shown, with room for the legend. The warm-up's
/// first seconds are often far slower (connections opening, caches
/// filling): its values over twice the measured window's peak are drawn
/// at the axis's top, and the caption says so, so that they do not
/// flatten the measured window.
fn panel(
    area: &DrawingArea<SVGBackend<'_>, Shift>,
    caption: &str,
    x_range: std::ops::Range<f64>,
    warmup_s: f64,
    y_label: &dyn Fn(f64, f64) -> String,
    series: &[Series],
) -> anyhow::Result<()> {
    let peak = |measured_only: bool| {
        series
            .iter()
            .flat_map(|(_, _, values)| values.iter())
            .filter(|&&(x, _)| !measured_only || x >= 0.0)
            .map(|&(_, y)| y)
            .fold(0.0f64, f64::max)
    };
    // The warm-up counts up to twice the measured window's peak.
    let measured_peak = peak(true);
    let peak = if measured_peak > 0.0 {
        peak(false).min(2.0 * measured_peak).max(measured_peak)
    } else {
        peak(false)
    };
    // The legend takes the top right corner: a line per entry.
    let entries = series.len() + usize::from(warmup_s > 0.0);
    let headroom = 1.1 + 0.08 * entries as f64;
    let y_max = if peak > 0.0 { peak * headroom } else { 1.0 };
    let clipped = series
        .iter()
        .any(|(_, _, values)| values.iter().any(|&(_, y)| y > y_max));
    let caption = if clipped {
        format!("{caption} (warm-up values above the axis drawn at its top)")
    } else {
        caption.to_string()
    };
    let mut chart = ChartBuilder::on(area)
        .caption(caption, ("sans-serif", 14))
        .margin(8)
        .margin_right(24)
        .x_label_area_size(34)
        .y_label_area_size(76)
        .build_cartesian_2d(x_range, 0.0..y_max)?;
    chart
        .configure_mesh()
        .light_line_style(RGBColor(245, 245, 245))
        .x_desc("seconds since the measured window began")
        .x_label_formatter(&|x| trim(*x))
        .y_label_formatter(&|y| y_label(*y, y_max))
        .x_labels(12)
        .y_labels(10)
        .draw()?;
    if warmup_s > 0.0 {
        chart
            .draw_series(std::iter::once(Rectangle::new(
                [(-warmup_s, 0.0), (0.0, y_max)],
                WARMUP_SHADE.filled(),
            )))?
            .label("warm-up (not measured)")
            .legend(|(x, y)| Rectangle::new([(x, y - 5), (x + 18, y + 5)], WARMUP_SHADE.filled()));
    }
    for (name, color, values) in series {
        let color = *color;
        chart
            .draw_series(LineSeries::new(
                values.iter().map(|&(x, y)| (x, y.min(y_max))),
                color.stroke_width(2),
            ))?
            .label(*name)
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2))
            });
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.85))
        .border_style(RGBColor(180, 180, 180))
        .label_font(("sans-serif", 12))
        .draw()?;
    Ok(())
}

/// A count with a `k` or `M` suffix from ten thousand on: `12.5k`, `530k`.
fn format_value(value: f64) -> String {
    format_count(value, value)
}

/// A tick label of an axis reaching `axis_max`: every label of one axis
/// has the same suffix (`5k`, `10k`, not `5000`, `10k`).
fn format_count(value: f64, axis_max: f64) -> String {
    let (value, suffix) = if value == 0.0 {
        (value, "")
    } else if axis_max.abs() >= 10_000_000.0 {
        (value / 1_000_000.0, "M")
    } else if axis_max.abs() >= 10_000.0 {
        (value / 1000.0, "k")
    } else {
        (value, "")
    };
    format!("{}{suffix}", trim(value))
}

/// At most two decimals, without trailing zeros: `2`, `2.5`, `0.25`.
fn trim(value: f64) -> String {
    let text = format!("{value:.2}");
    let text = text.trim_end_matches('0').trim_end_matches('.');
    if text == "-0" {
        "0".to_string()
    } else {
        text.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tick_labels_keep_their_fractions() {
        assert_eq!(format_value(12.5), "12.5");
        assert_eq!(format_value(50.0), "50");
        assert_eq!(format_value(0.0), "0");
        assert_eq!(format_value(125_000.0), "125k");
        assert_eq!(format_value(12_500.0), "12.5k");
        assert_eq!(format_value(25_000_000.0), "25M");
        assert_eq!(format_count(5_000.0, 12_000.0), "5k");
        assert_eq!(format_count(0.0, 12_000.0), "0");
        assert_eq!(trim(2.25), "2.25");
        assert_eq!(trim(-0.0001), "0");
    }

    fn second(t: u64, committed: u64, aborted: u64, p50: f64) -> Second {
        Second {
            t,
            committed,
            aborted,
            p50_ms: p50,
            p99_ms: p50 * 1.8,
            p999_ms: p50 * 2.5,
        }
    }

    /// A report shaped like a real fast run: 480k to 530k tx/s, p50 2 to
    /// 4 ms, p99.9 up to 10 ms, a few hundred aborts a second.
    fn report() -> BenchReport {
        BenchReport {
            workload: "transfer".into(),
            duration_s: 10.0,
            warmup_s: 2.5,
            connections: 4,
            inflight: 1024,
            rate: None,
            throughput_tps: 500_000.0,
            answered_tps: 500_300.0,
            committed: 5_000_000,
            aborted: 3_000,
            p50_ms: 3.0,
            p99_ms: 5.4,
            p999_ms: 7.5,
            max_ms: 12.0,
            mean_ms: 3.1,
            longest_gap_ms: 4.0,
            aborts_by_reason: Default::default(),
            errors: Default::default(),
            timeline: (0..10)
                .map(|t| second(t, 480_000 + 5_000 * t, 200 + 20 * t, 2.0 + 0.2 * t as f64))
                .collect(),
            warmup_timeline: vec![second(0, 300_000, 0, 3.0), second(1, 310_000, 0, 3.0), {
                // Half a second of warm-up: 150k in it is 300k/s.
                second(2, 150_000, 0, 3.0)
            }],
            checks: Vec::new(),
        }
    }

    /// The text of every `<text>` element.
    fn labels(svg: &str) -> Vec<String> {
        svg.split("<text")
            .skip(1)
            .filter_map(|element| {
                let start = element.find('>')? + 1;
                let end = element.find("</text>")?;
                Some(element[start..end].trim().to_string())
            })
            .collect()
    }

    /// The highest tick label ending with `suffix`, as a number.
    fn top(labels: &[String], suffix: &str) -> f64 {
        labels
            .iter()
            .filter_map(|label| label.strip_suffix(suffix)?.parse::<f64>().ok())
            .fold(f64::NAN, f64::max)
    }

    #[test]
    fn the_axes_follow_the_data() {
        let report = report();
        let svg = timeline_svg(&report).unwrap();
        assert!(svg.starts_with("<svg"), "not an SVG: {svg:.80}");
        let labels = labels(&svg);
        for expected in [
            "committed tx/s",
            "p50",
            "p99",
            "p99.9",
            "aborts/s",
            "warm-up (not measured)",
        ] {
            assert!(
                labels.iter().any(|l| l == expected),
                "no {expected:?} in {labels:?}"
            );
        }
        // Throughput peaks at 525k: its axis reaches past it, not to 1,000k.
        let throughput = top(&labels, "k");
        assert!(
            (500.0..=700.0).contains(&throughput),
            "tx/s axis to {throughput}k"
        );
        // p99.9 peaks at 9.5 ms: the latency axis is not 0-100 ms.
        let latency = top(&labels, " ms");
        assert!(
            (8.0..=14.0).contains(&latency),
            "latency axis to {latency} ms"
        );
        // Aborts peak at 380/s.
        let aborts = top(&labels, "/s");
        assert!(
            (300.0..=480.0).contains(&aborts),
            "aborts axis to {aborts}/s"
        );
        // The time axis starts in the warm-up.
        let seconds: Vec<f64> = labels.iter().filter_map(|l| l.parse().ok()).collect();
        assert!(seconds.iter().any(|&s| s < 0.0), "{seconds:?}");
        assert!(seconds.iter().any(|&s| s >= 9.0), "{seconds:?}");
    }

    #[test]
    fn a_slow_warm_up_does_not_flatten_the_measured_window() {
        let mut report = report();
        report.warmup_timeline[0].p999_ms = 500.0;
        let svg = timeline_svg(&report).unwrap();
        let labels = labels(&svg);
        // Up to twice the measured peak (9.5 ms), and room for the legend.
        let latency = top(&labels, " ms");
        assert!(
            (8.0..=28.0).contains(&latency),
            "latency axis to {latency} ms"
        );
        assert!(
            labels
                .iter()
                .any(|l| l.contains("warm-up values above the axis drawn at its top")),
            "{labels:?}"
        );
    }

    #[test]
    fn a_partial_last_second_is_a_rate_over_its_length() {
        let report = report();
        let points = points(&report);
        let last_warmup = &points[2];
        assert!((last_warmup.seconds - 0.5).abs() < 1e-9);
        assert!((last_warmup.x - -0.25).abs() < 1e-9);
        assert_eq!(points[3].x, 0.5);
    }

    #[test]
    fn an_empty_run_still_draws() {
        let mut report = report();
        report.timeline.clear();
        report.warmup_timeline.clear();
        report.warmup_s = 0.0;
        let svg = timeline_svg(&report).unwrap();
        assert!(svg.contains("</svg>"));
    }
}
