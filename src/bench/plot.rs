//! A self-contained SVG chart of a run: committed transactions per second
//! above, p50 and p99 latency below, both over the measured seconds.

use std::fmt::Write;

use super::BenchReport;

const WIDTH: f64 = 800.0;
const PANEL_HEIGHT: f64 = 220.0;
const MARGIN_LEFT: f64 = 80.0;
const MARGIN_RIGHT: f64 = 20.0;
const MARGIN_TOP: f64 = 40.0;
const GAP: f64 = 60.0;

/// The chart for `report`, as an SVG document.
pub fn timeline_svg(report: &BenchReport) -> String {
    let height = MARGIN_TOP + 2.0 * PANEL_HEIGHT + GAP + 40.0;
    let mut svg = String::new();
    let _ = writeln!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" viewBox="0 0 {WIDTH} {height}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(
        svg,
        r#"<rect width="100%" height="100%" fill="white"/><text x="{MARGIN_LEFT}" y="24" font-size="15">ordo bench {}: {:.0} tx/s, p50 {:.2} ms, p99 {:.2} ms ({} connections, {} in flight)</text>"#,
        escape(&report.workload),
        report.throughput_tps,
        report.p50_ms,
        report.p99_ms,
        report.connections,
        report.inflight
    );
    let seconds = report.timeline.len().max(1) as f64;
    let throughput: Vec<f64> = report
        .timeline
        .iter()
        .map(|second| second.committed as f64)
        .collect();
    panel(
        &mut svg,
        MARGIN_TOP,
        seconds,
        "committed tx/s",
        &[("#1f77b4", "committed tx/s", &throughput)],
    );
    let p50: Vec<f64> = report.timeline.iter().map(|second| second.p50_ms).collect();
    let p99: Vec<f64> = report.timeline.iter().map(|second| second.p99_ms).collect();
    panel(
        &mut svg,
        MARGIN_TOP + PANEL_HEIGHT + GAP,
        seconds,
        "latency ms",
        &[("#2ca02c", "p50", &p50), ("#d62728", "p99", &p99)],
    );
    let _ = writeln!(
        svg,
        r#"<text x="{}" y="{}" text-anchor="middle">seconds into the measured run</text>"#,
        MARGIN_LEFT + (WIDTH - MARGIN_LEFT - MARGIN_RIGHT) / 2.0,
        height - 8.0
    );
    svg.push_str("</svg>\n");
    svg
}

/// One chart: axes, a y scale from 0 to a round maximum, and a polyline
/// per series.
fn panel(svg: &mut String, top: f64, seconds: f64, label: &str, series: &[(&str, &str, &[f64])]) {
    let plot_width = WIDTH - MARGIN_LEFT - MARGIN_RIGHT;
    let peak = series
        .iter()
        .flat_map(|(_, _, values)| values.iter().copied())
        .fold(0.0f64, f64::max);
    let y_max = round_up(peak);
    let x = |t: f64| MARGIN_LEFT + plot_width * (t + 0.5) / seconds;
    let y = |value: f64| top + PANEL_HEIGHT * (1.0 - value / y_max);
    let bottom = top + PANEL_HEIGHT;
    let _ = writeln!(
        svg,
        r##"<line x1="{MARGIN_LEFT}" y1="{top}" x2="{MARGIN_LEFT}" y2="{bottom}" stroke="#333"/><line x1="{MARGIN_LEFT}" y1="{bottom}" x2="{}" y2="{bottom}" stroke="#333"/>"##,
        WIDTH - MARGIN_RIGHT
    );
    for step in 0..=4 {
        let value = y_max * step as f64 / 4.0;
        let _ = writeln!(
            svg,
            r##"<line x1="{MARGIN_LEFT}" y1="{0}" x2="{1}" y2="{0}" stroke="#ddd"/><text x="{2}" y="{3}" text-anchor="end">{4}</text>"##,
            y(value),
            WIDTH - MARGIN_RIGHT,
            MARGIN_LEFT - 6.0,
            y(value) + 4.0,
            format_value(value)
        );
    }
    let tick_every = (seconds / 10.0).ceil().max(1.0) as usize;
    for t in (0..seconds as usize).step_by(tick_every) {
        let _ = writeln!(
            svg,
            r#"<text x="{}" y="{}" text-anchor="middle">{t}</text>"#,
            x(t as f64),
            bottom + 16.0
        );
    }
    let _ = writeln!(
        svg,
        r#"<text x="16" y="{}" transform="rotate(-90 16 {0})" text-anchor="middle">{}</text>"#,
        top + PANEL_HEIGHT / 2.0,
        escape(label)
    );
    for (index, (color, name, values)) in series.iter().enumerate() {
        let points: Vec<String> = values
            .iter()
            .enumerate()
            .map(|(t, &value)| format!("{:.1},{:.1}", x(t as f64), y(value)))
            .collect();
        let _ = writeln!(
            svg,
            r#"<polyline fill="none" stroke="{color}" stroke-width="2" points="{}"/>"#,
            points.join(" ")
        );
        let legend_x = WIDTH - MARGIN_RIGHT - 140.0 + 70.0 * index as f64;
        let _ = writeln!(
            svg,
            r#"<rect x="{legend_x}" y="{}" width="12" height="3" fill="{color}"/><text x="{}" y="{}">{}</text>"#,
            top - 10.0,
            legend_x + 16.0,
            top - 6.0,
            escape(name)
        );
    }
}

/// The smallest of 1, 2 or 5 times a power of ten that is at least
/// `value` (and at least 1).
fn round_up(value: f64) -> f64 {
    let mut scale = 1.0;
    loop {
        for step in [1.0, 2.0, 5.0] {
            if step * scale >= value {
                return step * scale;
            }
        }
        scale *= 10.0;
    }
}

fn format_value(value: f64) -> String {
    let (value, suffix) = if value >= 10_000.0 {
        (value / 1000.0, "k")
    } else {
        (value, "")
    };
    if value.fract() == 0.0 {
        format!("{value:.0}{suffix}")
    } else {
        format!("{value:.1}{suffix}")
    }
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn axis_maxima_are_round() {
        assert_eq!(round_up(0.0), 1.0);
        assert_eq!(round_up(3.2), 5.0);
        assert_eq!(round_up(251_000.0), 500_000.0);
        assert_eq!(round_up(100.0), 100.0);
    }

    #[test]
    fn tick_labels_keep_their_fractions() {
        assert_eq!(format_value(12.5), "12.5");
        assert_eq!(format_value(50.0), "50");
        assert_eq!(format_value(0.0), "0");
        assert_eq!(format_value(125_000.0), "125k");
        assert_eq!(format_value(12_500.0), "12.5k");
    }
}
