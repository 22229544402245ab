//! The loss curve as a self-contained SVG: a polyline over step, with axes, ticks and labels.

use crate::metrics::StepMetrics;
use std::fmt::Write;

const WIDTH: f64 = 640.0;
const HEIGHT: f64 = 360.0;
const LEFT: f64 = 64.0;
const RIGHT: f64 = 16.0;
const TOP: f64 = 32.0;
const BOTTOM: f64 = 48.0;
const TICKS: usize = 5;

/// Renders loss against optimizer step. An empty history gives axes and a note.
pub fn loss_svg(rows: &[StepMetrics], title: &str) -> String {
    let plot_w = WIDTH - LEFT - RIGHT;
    let plot_h = HEIGHT - TOP - BOTTOM;
    let max_step = rows.iter().map(|r| r.step).max().unwrap_or(1).max(1) as f64;
    let min_step = rows.iter().map(|r| r.step).min().unwrap_or(0) as f64;
    let (lo, hi) = rows
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), r| {
            (lo.min(r.loss), hi.max(r.loss))
        });
    let (lo, hi) = if rows.is_empty() {
        (0.0, 1.0)
    } else if hi - lo < 1e-12 {
        (lo - 0.5, hi + 0.5)
    } else {
        (
            lo.min(0.0).max(lo - (hi - lo) * 0.05),
            hi + (hi - lo) * 0.05,
        )
    };
    let span_steps = (max_step - min_step).max(1.0);
    let x = |step: f64| LEFT + (step - min_step) / span_steps * plot_w;
    let y = |loss: f64| TOP + (hi - loss) / (hi - lo) * plot_h;

    let mut svg = String::new();
    let _ = writeln!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(svg, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        svg,
        r#"<text x="{}" y="20" text-anchor="middle" font-size="14">{}</text>"#,
        WIDTH / 2.0,
        escape(title)
    );
    let (x0, y0, x1, y1) = (LEFT, TOP + plot_h, LEFT + plot_w, TOP);
    let _ = writeln!(
        svg,
        r#"<path d="M{x0},{y1} L{x0},{y0} L{x1},{y0}" fill="none" stroke="black"/>"#
    );
    for i in 0..=TICKS {
        let f = i as f64 / TICKS as f64;
        let loss = lo + (hi - lo) * f;
        let ty = y(loss);
        let _ = writeln!(
            svg,
            r#"<line x1="{}" y1="{ty:.1}" x2="{x0}" y2="{ty:.1}" stroke="black"/><text x="{}" y="{:.1}" text-anchor="end">{}</text>"#,
            x0 - 4.0,
            x0 - 6.0,
            ty + 4.0,
            format_tick(loss)
        );
        let step = min_step + span_steps * f;
        let tx = x(step);
        let _ = writeln!(
            svg,
            r#"<line x1="{tx:.1}" y1="{y0}" x2="{tx:.1}" y2="{}" stroke="black"/><text x="{tx:.1}" y="{}" text-anchor="middle">{}</text>"#,
            y0 + 4.0,
            y0 + 18.0,
            format_tick(step)
        );
    }
    let _ = writeln!(
        svg,
        r#"<text x="{}" y="{}" text-anchor="middle">optimizer step</text>"#,
        LEFT + plot_w / 2.0,
        HEIGHT - 8.0
    );
    let _ = writeln!(
        svg,
        r#"<text x="14" y="{}" text-anchor="middle" transform="rotate(-90 14 {})">loss</text>"#,
        TOP + plot_h / 2.0,
        TOP + plot_h / 2.0
    );
    if rows.is_empty() {
        let _ = writeln!(
            svg,
            r#"<text x="{}" y="{}" text-anchor="middle">no steps yet</text>"#,
            LEFT + plot_w / 2.0,
            TOP + plot_h / 2.0
        );
    } else {
        let points: Vec<String> = rows
            .iter()
            .map(|r| format!("{:.1},{:.1}", x(r.step as f64), y(r.loss)))
            .collect();
        let _ = writeln!(
            svg,
            r##"<polyline points="{}" fill="none" stroke="#1f77b4" stroke-width="2"/>"##,
            points.join(" ")
        );
        for p in &points {
            let (px, py) = p.split_once(',').expect("formatted as x,y");
            let _ = writeln!(
                svg,
                r##"<circle cx="{px}" cy="{py}" r="2.5" fill="#1f77b4"/>"##
            );
        }
    }
    svg.push_str("</svg>\n");
    svg
}

fn format_tick(v: f64) -> String {
    if v.abs() >= 100.0 || v == v.round() {
        format!("{v:.0}")
    } else {
        format!("{v:.2}")
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

    fn row(step: usize, loss: f64) -> StepMetrics {
        StepMetrics {
            step,
            epoch: 0.0,
            loss,
            lr: 0.0,
            grad_norm: 0.0,
            tokens: 0,
            tokens_per_s: 0.0,
        }
    }

    #[test]
    fn draws_one_point_per_step_with_the_first_left_and_highest_loss_on_top() {
        let svg = loss_svg(&[row(1, 2.0), row(2, 1.0), row(3, 0.5)], "a <b>");
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        assert!(svg.contains("a &lt;b&gt;"));
        assert_eq!(svg.matches("<circle").count(), 3);
        let points = svg
            .split("points=\"")
            .nth(1)
            .unwrap()
            .split('"')
            .next()
            .unwrap();
        let coords: Vec<(f64, f64)> = points
            .split(' ')
            .map(|p| {
                let (x, y) = p.split_once(',').unwrap();
                (x.parse().unwrap(), y.parse().unwrap())
            })
            .collect();
        assert_eq!(coords[0].0, LEFT);
        assert!(coords[0].1 < coords[1].1 && coords[1].1 < coords[2].1);
    }

    #[test]
    fn empty_and_flat_histories_still_render() {
        assert!(loss_svg(&[], "t").contains("no steps yet"));
        let svg = loss_svg(&[row(1, 1.0), row(2, 1.0)], "t");
        assert!(!svg.contains("NaN") && !svg.contains("inf"));
    }
}
