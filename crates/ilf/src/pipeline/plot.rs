//! Hand-written SVG: a bar chart with confidence-interval whiskers, self-contained (no fonts or
//! scripts to fetch), so the report opens anywhere.

/// One bar: a label, a value in [0, 1] (or none: drawn as "n/a"), and its interval.
pub struct Bar {
    pub label: String,
    pub value: Option<f64>,
    pub ci: Option<(f64, f64)>,
}

const WIDTH: f64 = 720.0;
const HEIGHT: f64 = 360.0;
const LEFT: f64 = 56.0;
const RIGHT: f64 = 16.0;
const TOP: f64 = 36.0;
const BOTTOM: f64 = 64.0;

/// A vertical bar chart of percentages with whiskers for the intervals; the y axis runs from 0 to
/// the next 10% above the highest whisker.
pub fn bar_chart(title: &str, y_label: &str, bars: &[Bar]) -> String {
    let top_value = bars
        .iter()
        .flat_map(|b| [b.value, b.ci.map(|c| c.1)])
        .flatten()
        .fold(0.0f64, f64::max);
    let y_max = ((top_value * 10.0).ceil() / 10.0).clamp(0.1, 1.0);
    let plot_h = HEIGHT - TOP - BOTTOM;
    let plot_w = WIDTH - LEFT - RIGHT;
    let y = |v: f64| TOP + plot_h * (1.0 - (v / y_max).clamp(0.0, 1.0));
    let mut s = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {WIDTH} {HEIGHT}\" \
         width=\"{WIDTH}\" height=\"{HEIGHT}\" font-family=\"sans-serif\" font-size=\"12\">\n\
         <title>{}</title>\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n\
         <text x=\"{}\" y=\"20\" text-anchor=\"middle\" font-size=\"14\" font-weight=\"bold\">{}</text>\n",
        escape(title),
        WIDTH / 2.0,
        escape(title)
    );
    let ticks = 5;
    for i in 0..=ticks {
        let v = y_max * i as f64 / ticks as f64;
        let yy = y(v);
        s += &format!(
            "<line x1=\"{LEFT}\" x2=\"{}\" y1=\"{yy:.1}\" y2=\"{yy:.1}\" stroke=\"#ddd\"/>\n\
             <text x=\"{}\" y=\"{:.1}\" text-anchor=\"end\">{:.0}%</text>\n",
            WIDTH - RIGHT,
            LEFT - 6.0,
            yy + 4.0,
            v * 100.0
        );
    }
    s += &format!(
        "<text transform=\"translate(14 {:.1}) rotate(-90)\" text-anchor=\"middle\">{}</text>\n",
        TOP + plot_h / 2.0,
        escape(y_label)
    );
    let slot = plot_w / bars.len().max(1) as f64;
    let bar_w = (slot * 0.6).min(80.0);
    for (i, bar) in bars.iter().enumerate() {
        let cx = LEFT + slot * (i as f64 + 0.5);
        match bar.value {
            Some(v) => {
                let top = y(v);
                s += &format!(
                    "<rect x=\"{:.1}\" y=\"{top:.1}\" width=\"{bar_w:.1}\" height=\"{:.1}\" \
                     fill=\"{}\"><title>{}: {:.1}%</title></rect>\n\
                     <text x=\"{cx:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{:.1}%</text>\n",
                    cx - bar_w / 2.0,
                    (TOP + plot_h - top).max(0.0),
                    if i == 0 { "#9e9e9e" } else { "#3f6fb5" },
                    escape(&bar.label),
                    v * 100.0,
                    // Above the bar and its whisker.
                    bar.ci.map_or(top, |(_, hi)| top.min(y(hi))) - 6.0,
                    v * 100.0
                );
                if let Some((lo, hi)) = bar.ci {
                    let (ylo, yhi) = (y(lo), y(hi));
                    s += &format!(
                        "<g stroke=\"black\"><line x1=\"{cx:.1}\" x2=\"{cx:.1}\" y1=\"{ylo:.1}\" y2=\"{yhi:.1}\"/>\
                         <line x1=\"{:.1}\" x2=\"{:.1}\" y1=\"{ylo:.1}\" y2=\"{ylo:.1}\"/>\
                         <line x1=\"{:.1}\" x2=\"{:.1}\" y1=\"{yhi:.1}\" y2=\"{yhi:.1}\"/></g>\n",
                        cx - 6.0,
                        cx + 6.0,
                        cx - 6.0,
                        cx + 6.0
                    );
                }
            }
            None => {
                s += &format!(
                    "<text x=\"{cx:.1}\" y=\"{:.1}\" text-anchor=\"middle\" fill=\"#888\">n/a</text>\n",
                    TOP + plot_h - 6.0
                );
            }
        }
        s += &format!(
            "<text x=\"{cx:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>\n",
            TOP + plot_h + 18.0,
            escape(&bar.label)
        );
    }
    s += &format!(
        "<line x1=\"{LEFT}\" x2=\"{}\" y1=\"{:.1}\" y2=\"{:.1}\" stroke=\"black\"/>\n</svg>\n",
        WIDTH - RIGHT,
        TOP + plot_h,
        TOP + plot_h
    );
    s
}

/// Text escaped for XML and HTML.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bars_whiskers_and_labels_are_drawn_and_escaped() {
        let svg = bar_chart(
            "pass@1 <test>",
            "pass@1",
            &[
                Bar {
                    label: "zero-shot".into(),
                    value: Some(0.25),
                    ci: Some((0.2, 0.31)),
                },
                Bar {
                    label: "a&b".into(),
                    value: None,
                    ci: None,
                },
            ],
        );
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        assert_eq!(svg.matches("<rect x=").count(), 1);
        assert!(svg.contains("25.0%"));
        assert!(svg.contains("n/a"));
        assert!(svg.contains("a&amp;b") && !svg.contains("a&b"));
        assert!(svg.contains("pass@1 &lt;test&gt;"));
        // The axis tops out at 40%, the next 10% above the whisker at 31%.
        assert!(svg.contains(">40%<"), "{svg}");
    }
}
