//! The line diff of a refinement against the failing program, computed on the server.

use maud::{html, Markup};
use serde::Serialize;
use similar::{ChangeTag, TextDiff};

/// One line of a diff: `tag` is `equal`, `insert` or `delete`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DiffLine {
    pub tag: &'static str,
    pub text: String,
}

/// The line diff from `old` to `new`. Line endings are normalised first so a program pasted with
/// `\r\n` does not show every line as changed.
pub fn diff_lines(old: &str, new: &str) -> Vec<DiffLine> {
    let old = old.replace("\r\n", "\n");
    let new = new.replace("\r\n", "\n");
    TextDiff::from_lines(&old, &new)
        .iter_all_changes()
        .map(|change| DiffLine {
            tag: match change.tag() {
                ChangeTag::Equal => "equal",
                ChangeTag::Insert => "insert",
                ChangeTag::Delete => "delete",
            },
            text: change.value().trim_end_matches('\n').to_string(),
        })
        .collect()
}

/// The diff as HTML (every line escaped by maud).
pub fn diff_html(old: &str, new: &str) -> Markup {
    html! {
        pre.diff {
            @for line in diff_lines(old, new) {
                @let sign = match line.tag { "insert" => "+", "delete" => "-", _ => " " };
                span class=(format!("diff-{}", line.tag)) { (sign) " " (line.text) "\n" }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn diff_marks_changed_lines_and_escapes_them() {
        let lines = diff_lines("a\r\nb\n", "a\nc\n");
        assert_eq!(
            lines,
            vec![
                DiffLine {
                    tag: "equal",
                    text: "a".into()
                },
                DiffLine {
                    tag: "delete",
                    text: "b".into()
                },
                DiffLine {
                    tag: "insert",
                    text: "c".into()
                },
            ]
        );
        let html = diff_html("x\n", "</pre><script>alert(1)</script>\n").into_string();
        assert!(!html.contains("<script>"), "{html}");
        assert!(html.contains("&lt;/pre&gt;&lt;script&gt;"), "{html}");
    }
}
