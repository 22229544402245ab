//! Where a sampled completion ends.
//!
//! A completion is the text a model generates after the prompt, which ends right after the
//! signature `def f(...):\n`, so the completion starts inside the function body. Models keep
//! writing after the function: tests, prints, `if __name__ == "__main__":` blocks. The program we
//! execute keeps the function and any helpers it needs, and drops the rest.
//!
//! # The rule
//!
//! Look at each *logical* line start (not inside brackets, a string or after a backslash
//! continuation, so an unindented line inside a triple-quoted string is never a cut point):
//!
//! - an indented line (space, tab or form feed first) is kept: it is a body;
//! - a blank line is kept;
//! - a top-level `def`, `async def`, `class`, decorator (`@...`), `import` or `from` line is kept,
//!   so helper functions written after the main one survive (the authors' truncation cut them,
//!   giving NameErrors);
//! - a top-level comment is kept only if the next non-blank, non-comment line is kept;
//! - any other top-level line (`print(...)`, `assert`, `if __name__`, a call, an assignment, a
//!   stray string) ends the completion: the cut is at its start, or at the start of the comments
//!   right before it (a `# Test` header goes with the tests).
//!
//! Trailing blank lines are then removed. Tab-indented bodies are left as they are (the authors
//! re-indented the first line with 4 spaces, which made TabErrors); `\r\n` is fine. Cutting at an
//! end-of-text marker such as `<|endoftext|>` is the caller's job (it depends on the tokenizer).
//!
//! ```
//! use ilf_data::truncate::truncate_completion;
//! let completion = "    return helper(x)\n\n# helper\ndef helper(x):\n    return x\n\n# Test\nprint(f(2))\n";
//! assert_eq!(
//!     truncate_completion(completion),
//!     "    return helper(x)\n\n# helper\ndef helper(x):\n    return x"
//! );
//! assert_eq!(truncate_completion("\treturn 1\nif __name__ == '__main__':\n\tf()"), "\treturn 1");
//! ```
//!
//! # Streaming
//!
//! [`stop_index`] answers the same question on a prefix of the generation, for stopping early:
//! `Some(offset)` once the cut is certain (a line that is cut has been seen far enough to know it
//! is not one of the kept forms), `None` while more text could still be kept. Once it returns
//! `Some(i)` for a prefix, it returns `Some(i)` for every longer text. [`truncate_completion`] is
//! `&text[..stop_index(text).unwrap_or(text.len())]` without trailing blank lines, except that it
//! treats the end of the text as final: an unfinished last line is judged as it stands, and
//! top-level comments with nothing kept after them are dropped.

use crate::lexer::{is_ident_byte, Lexer};

/// The completion up to where the program ends (see the module doc), without trailing blank
/// lines.
pub fn truncate_completion(completion: &str) -> &str {
    let end = scan(completion, true).unwrap_or(completion.len());
    trim_trailing_blank_lines(&completion[..end])
}

/// The byte offset where the completion ends, if the text generated so far already decides it.
pub fn stop_index(text: &str) -> Option<usize> {
    scan(text, false)
}

/// How a line at a logical line start is treated.
#[derive(Debug, PartialEq, Eq)]
enum Kind {
    Blank,
    Indented,
    Comment,
    Keep,
    Cut,
    /// A partial line that could still become a kept line.
    Undecided,
}

/// The cut offset; `eof` says the text is complete (its last line is finished, and nothing
/// follows trailing comments).
fn scan(text: &str, eof: bool) -> Option<usize> {
    let bytes = text.as_bytes();
    let mut lexer = Lexer::default();
    // Start of the run of top-level comments whose fate depends on what follows them.
    let mut pending_comment: Option<usize> = None;
    let mut start = 0;
    while start < bytes.len() {
        let newline = bytes[start..]
            .iter()
            .position(|&b| b == b'\n')
            .map(|p| start + p);
        let end = newline.unwrap_or(bytes.len());
        if lexer.at_logical_line_start() {
            let line = bytes[start..end]
                .strip_suffix(b"\r")
                .unwrap_or(&bytes[start..end]);
            match classify(line, newline.is_some() || eof) {
                Kind::Blank => {}
                Kind::Indented | Kind::Keep => pending_comment = None,
                Kind::Comment => {
                    pending_comment.get_or_insert(start);
                }
                Kind::Cut => return Some(pending_comment.unwrap_or(start)),
                Kind::Undecided => return None,
            }
        }
        let stop = newline.map_or(bytes.len(), |n| n + 1);
        let mut i = start;
        while i < stop {
            i += lexer.step(bytes, i).0;
        }
        start = i;
    }
    if eof {
        pending_comment
    } else {
        None
    }
}

/// Classifies a line (without its line break) that starts a logical line. `complete` says the
/// line is finished; a partial line is only called `Cut` once its start rules out the kept forms.
fn classify(line: &[u8], complete: bool) -> Kind {
    let Some(&first) = line.first() else {
        return Kind::Blank;
    };
    if line.iter().all(|b| b.is_ascii_whitespace()) {
        return Kind::Blank;
    }
    match first {
        b' ' | b'\t' | b'\x0c' => Kind::Indented,
        b'#' => Kind::Comment,
        b'@' => Kind::Keep,
        _ if is_ident_byte(first) => classify_statement(line, complete),
        _ => Kind::Cut,
    }
}

/// A top-level line that starts with a name: kept iff it is `def`, `class`, `import`, `from` or
/// `async def`, each followed by whitespace.
fn classify_statement(line: &[u8], complete: bool) -> Kind {
    let word = |at: usize| -> (&[u8], bool) {
        let len = line[at..].iter().take_while(|&&b| is_ident_byte(b)).count();
        // A word is finished when something follows it on the line (or the line is finished).
        let finished = complete || at + len < line.len();
        (&line[at..at + len], finished)
    };
    let followed_by_space = |at: usize| line.get(at).is_some_and(|b| *b == b' ' || *b == b'\t');
    let (first, finished) = word(0);
    const KEPT: [&[u8]; 5] = [b"def", b"class", b"import", b"from", b"async"];
    if !finished {
        let could_be_kept = KEPT.iter().any(|kw| kw.starts_with(first));
        return if could_be_kept {
            Kind::Undecided
        } else {
            Kind::Cut
        };
    }
    if !KEPT.contains(&first) || !followed_by_space(first.len()) {
        // `def` at the very end of an unfinished line may still get its space.
        return if !complete && KEPT.contains(&first) && first.len() == line.len() {
            Kind::Undecided
        } else {
            Kind::Cut
        };
    }
    if first != b"async" {
        return Kind::Keep;
    }
    let at = first.len()
        + line[first.len()..]
            .iter()
            .take_while(|&&b| b == b' ' || b == b'\t')
            .count();
    let (second, finished) = word(at);
    if !finished {
        return if b"def".starts_with(second) {
            Kind::Undecided
        } else {
            Kind::Cut
        };
    }
    if second == b"def" && followed_by_space(at + 3) {
        Kind::Keep
    } else if !complete && second == b"def" && at + 3 == line.len() {
        Kind::Undecided
    } else {
        Kind::Cut
    }
}

/// Removes trailing lines that hold only whitespace, and the line break before them.
fn trim_trailing_blank_lines(text: &str) -> &str {
    let mut end = text.len();
    loop {
        let head = &text[..end];
        let last_line = head.rfind('\n').map_or(0, |i| i + 1);
        if !head[last_line..].trim().is_empty() {
            return head;
        }
        if last_line == 0 {
            return "";
        }
        end = last_line - 1;
        if text[..end].ends_with('\r') {
            end -= 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Checks the truncation and that streaming agrees on every prefix.
    fn check(completion: &str, expected: &str) {
        assert_eq!(
            truncate_completion(completion),
            expected,
            "completion: {completion:?}"
        );
        let full = stop_index(completion);
        for (i, _) in completion.char_indices().chain([(completion.len(), ' ')]) {
            if let Some(stop) = stop_index(&completion[..i]) {
                assert_eq!(
                    Some(stop),
                    full,
                    "prefix {:?} stops early",
                    &completion[..i]
                );
                assert!(stop <= i);
            }
        }
        if let Some(stop) = full {
            assert!(expected.len() <= stop && completion[..stop].starts_with(expected));
        }
    }

    #[test]
    fn keeps_helpers_after_the_main_function() {
        check(
            "    return g(x) + 1\n\ndef g(x):\n    return x * 2\n\nprint(f(3))\n",
            "    return g(x) + 1\n\ndef g(x):\n    return x * 2",
        );
        check(
            "    return G(x).v\n\nclass G:\n    def __init__(self, x):\n        self.v = x\nassert f(1) == 1",
            "    return G(x).v\n\nclass G:\n    def __init__(self, x):\n        self.v = x",
        );
        check(
            "    return g(x)\nasync def g(x):\n    return x\nasync for x in y:\n    pass\n",
            "    return g(x)\nasync def g(x):\n    return x",
        );
    }

    #[test]
    fn keeps_decorators_and_imports() {
        check(
            "    return fib(n)\n\n@functools.lru_cache(\n    maxsize=None)\ndef fib(n):\n    return n\nimport math\nfrom re import sub\nx = 1\n",
            "    return fib(n)\n\n@functools.lru_cache(\n    maxsize=None)\ndef fib(n):\n    return n\nimport math\nfrom re import sub",
        );
    }

    #[test]
    fn comments_go_with_what_follows() {
        check(
            "    return h(x)\n\n# helper\n\ndef h(x):\n    return x\n\n# Test\n# more\nprint(f(1))\n",
            "    return h(x)\n\n# helper\n\ndef h(x):\n    return x",
        );
        check(
            "    x = 1\n# a note\n    return x\n",
            "    x = 1\n# a note\n    return x",
        );
        check("    return 1\n\n# trailing comment\n", "    return 1");
    }

    #[test]
    fn cuts_at_top_level_code() {
        check(
            "    return x\nif __name__ == '__main__':\n    f(1)\n",
            "    return x",
        );
        check("    return x\nprint(f(2))", "    return x");
        check("    return x\n\n\nf(2)\n", "    return x");
        check("    return x\n\"\"\"docs\"\"\"\n", "    return x");
        check("    return x\n'''\nstray\n'''\n", "    return x");
        check("    return x\n_cache = {}\n", "    return x");
        check("    return x\n(f(1))\n", "    return x");
        check("    return x\ndefault = 3\n", "    return x");
        check("    return x\ndef(\n", "    return x");
        check("    return x\nclassify(3)\n", "    return x");
    }

    #[test]
    fn strings_and_brackets_are_not_cut_points() {
        check(
            "    s = \"\"\"\nprint(1)\n\"\"\"\n    t = [1,\n2]\n    return s\nprint(s)\n",
            "    s = \"\"\"\nprint(1)\n\"\"\"\n    t = [1,\n2]\n    return s",
        );
        check("    return 1 + \\\n2\nprint(3)\n", "    return 1 + \\\n2");
    }

    #[test]
    fn tabs_crlf_and_eof() {
        check(
            "\tif x:\n\t\treturn 1\n\treturn 2\nprint(f(1))",
            "\tif x:\n\t\treturn 1\n\treturn 2",
        );
        check(
            "    return x\r\n\r\ndef g():\r\n    pass\r\n\r\nprint(1)\r\n",
            "    return x\r\n\r\ndef g():\r\n    pass",
        );
        check("    return x", "    return x");
        check("    return x\n\n   \n", "    return x");
        check("", "");
        check("print(1)\n", "");
    }

    #[test]
    fn streaming_waits_for_evidence() {
        assert_eq!(stop_index("    return x\nde"), None);
        assert_eq!(stop_index("    return x\ndef"), None);
        assert_eq!(stop_index("    return x\ndefa"), Some(13));
        assert_eq!(stop_index("    return x\nasync d"), None);
        assert_eq!(stop_index("    return x\nasync w"), Some(13));
        assert_eq!(stop_index("    return x\n# Test\n"), None);
        assert_eq!(stop_index("    return x\n# Test\nprint(f(1))"), Some(13));
        assert_eq!(stop_index("    return x\n\"\"\"\n"), Some(13));
        // At the end of the text, an unfinished `def` line is judged as it stands.
        assert_eq!(truncate_completion("    return x\ndef"), "    return x");
    }
}
