//! A tiny Python lexer that knows just enough to tell code from strings and comments, bracket
//! depth, and backslash continuations. The signature finder and the completion truncation both
//! need to know whether a `)`, a `:` or a line start is "real" code, and neither may be fooled by
//! a `)` inside a string or an unindented line inside a triple-quoted string.

/// Lexer state between bytes. Feed bytes in order with [`Lexer::step`].
#[derive(Debug, Clone, Default)]
pub(crate) struct Lexer {
    /// Inside a string literal: its quote byte and whether it is triple-quoted.
    string: Option<(u8, bool)>,
    in_comment: bool,
    /// Open brackets outside strings (clamped at 0 for unbalanced code).
    pub(crate) depth: u32,
    /// The previous byte was a backslash (escaping in strings, continuation in code).
    escaped: bool,
    /// The last newline was escaped by a backslash in code: the next line continues this one.
    continued: bool,
}

/// What the byte(s) just consumed were.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Lexeme {
    /// A byte of code (not in a string or comment).
    Code(u8),
    /// Part of a string literal or a comment, or a line break.
    Other,
}

impl Lexer {
    /// True when the next byte starts a new logical line: not inside a string, brackets or a
    /// backslash continuation. Only meaningful right after a `\n`.
    pub(crate) fn at_logical_line_start(&self) -> bool {
        self.string.is_none() && self.depth == 0 && !self.continued
    }

    /// Consumes the lexeme at `text[i]` and returns its length in bytes (1, or 3 for a triple
    /// quote) and what it was.
    pub(crate) fn step(&mut self, text: &[u8], i: usize) -> (usize, Lexeme) {
        let b = text[i];
        if b == b'\n' {
            self.in_comment = false;
            match self.string {
                // A backslash-newline continues a one-line string; otherwise the literal is
                // unterminated, and Python would stop there too, so the next line is fresh.
                Some((_, false)) if !self.escaped => self.string = None,
                _ => {}
            }
            self.continued = self.string.is_none() && self.escaped;
            self.escaped = false;
            return (1, Lexeme::Other);
        }
        if self.in_comment {
            return (1, Lexeme::Other);
        }
        // A `\r` between a backslash and its `\n` keeps the escape (CRLF files).
        if b == b'\r' {
            return (
                1,
                if self.string.is_some() {
                    Lexeme::Other
                } else {
                    Lexeme::Code(b)
                },
            );
        }
        if let Some((quote, triple)) = self.string {
            if self.escaped {
                self.escaped = false;
                return (1, Lexeme::Other);
            }
            if b == b'\\' {
                self.escaped = true;
                return (1, Lexeme::Other);
            }
            if b == quote {
                if !triple {
                    self.string = None;
                    return (1, Lexeme::Other);
                }
                if text[i..].starts_with(&[quote; 3]) {
                    self.string = None;
                    return (3, Lexeme::Other);
                }
            }
            return (1, Lexeme::Other);
        }
        self.escaped = b == b'\\';
        match b {
            b'#' => {
                self.in_comment = true;
                (1, Lexeme::Other)
            }
            b'"' | b'\'' => {
                if text[i..].starts_with(&[b; 3]) {
                    self.string = Some((b, true));
                    (3, Lexeme::Other)
                } else {
                    self.string = Some((b, false));
                    (1, Lexeme::Other)
                }
            }
            b'(' | b'[' | b'{' => {
                self.depth += 1;
                (1, Lexeme::Code(b))
            }
            b')' | b']' | b'}' => {
                self.depth = self.depth.saturating_sub(1);
                (1, Lexeme::Code(b))
            }
            _ => (1, Lexeme::Code(b)),
        }
    }
}

/// Whether `b` can be part of a Python identifier (ASCII, plus any non-ASCII byte, which can only
/// belong to an identifier or a string in valid code).
pub(crate) fn is_ident_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b >= 0x80
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line_starts(text: &str) -> Vec<bool> {
        let bytes = text.as_bytes();
        let mut lexer = Lexer::default();
        let mut starts = vec![true];
        let mut i = 0;
        while i < bytes.len() {
            let (len, _) = lexer.step(bytes, i);
            if bytes[i] == b'\n' {
                starts.push(lexer.at_logical_line_start());
            }
            i += len;
        }
        starts
    }

    #[test]
    fn continuation_lines_are_not_line_starts() {
        assert_eq!(line_starts("x = (1,\n2)\ny"), [true, false, true]);
        assert_eq!(
            line_starts("s = \"\"\"\nbody\n\"\"\"\nz"),
            [true, false, false, true]
        );
        assert_eq!(line_starts("x = 1 + \\\n2\ny"), [true, false, true]);
        assert_eq!(line_starts("x = 1 + \\\r\n2\r\ny"), [true, false, true]);
        assert_eq!(line_starts("s = 'a(b'\nc"), [true, true]);
        assert_eq!(line_starts("# (\nc"), [true, true]);
        assert_eq!(line_starts("s = 'unterminated\nc"), [true, true]);
        assert_eq!(line_starts("s = 'a\\\nb'\nc"), [true, false, true]);
        assert_eq!(line_starts("s = '\\\\'\nc"), [true, true]);
    }
}
