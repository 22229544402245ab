//! How each test (a Python `assert` statement) is split between the job and the trusted side.
//!
//! The job only ever evaluates the part of the test that needs the program; the trusted side
//! keeps the expected value and decides. Forms, in order of preference:
//!
//! | test | job computes | trusted side |
//! | --- | --- | --- |
//! | `assert E == LITERAL` | `E` | parses `LITERAL` here and compares ([`crate::literal`]) |
//! | `assert E == EXPR` | `E` | evaluates `EXPR` in a job that never sees the program (setup code only); compares |
//! | `assert not E` | `E` | requires a falsy value |
//! | `assert E` (anything else) | `E` | requires a truthy value |
//!
//! Residual risk, documented rather than hidden: when `EXPR` needs the program to evaluate
//! (it names something only the program defines), both sides are computed inside the job, so a
//! program that patches what `EXPR` calls could make them agree; and in `assert E` / `assert not E`
//! forms any library function inside `E` (say `math.isclose`) runs in the job and could be patched
//! to return `True`. None of MBPP's 2,922 asserts takes either path: 2,919 compare with a literal and
//! 3 (task 596) compare with `sys.getsizeof(...)`, which the trusted side evaluates.

use crate::literal::{self, Value};

/// What the trusted side does with one test.
#[derive(Debug, Clone)]
pub enum Check {
    /// `assert lhs == rhs`.
    Equals { lhs: String, rhs: Expected },
    /// `assert expr` (`negate = false`) or `assert not expr` (`negate = true`).
    Truth { expr: String, negate: bool },
}

/// The right-hand side of an equality test.
#[derive(Debug, Clone)]
pub enum Expected {
    Literal(Value),
    /// Python source for a trusted evaluation without the program.
    Expression(String),
}

/// Why a test could not be planned.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("test `{test}` is not an assert statement: {reason}")]
pub struct PlanError {
    pub test: String,
    pub reason: String,
}

/// Splits one `assert` statement.
pub fn plan(test: &str) -> Result<Check, PlanError> {
    let fail = |reason: &str| PlanError {
        test: test.to_string(),
        reason: reason.to_string(),
    };
    let body = test.trim();
    let body = body
        .strip_prefix("assert")
        .ok_or_else(|| fail("it does not start with `assert`"))?;
    if !body.starts_with(|c: char| c.is_whitespace() || c == '(') {
        return Err(fail("it does not start with `assert`"));
    }
    let scan = Scan::new(body).map_err(|e| fail(&e))?;
    // `assert cond, message`: the message never decides anything.
    let expr = match scan.top_level_commas.first() {
        Some(&i) => &body[..i],
        None => body,
    };
    let expr_scan = Scan::new(expr).map_err(|e| fail(&e))?;
    let expr = expr.trim();
    if expr.is_empty() {
        return Err(fail("it asserts nothing"));
    }
    if let [at] = expr_scan.top_level_eq[..] {
        let full = expr_scan.text;
        let lhs = full[..at].trim().to_string();
        let rhs = full[at + 2..].trim().to_string();
        if lhs.is_empty() || rhs.is_empty() {
            return Err(fail("one side of `==` is empty"));
        }
        let rhs = match literal::parse(&rhs) {
            Ok(v) => Expected::Literal(v),
            Err(_) => Expected::Expression(rhs),
        };
        return Ok(Check::Equals { lhs, rhs });
    }
    if let Some(rest) = expr.strip_prefix("not") {
        if rest.starts_with(|c: char| c.is_whitespace() || c == '(')
            && expr_scan.top_level_words_after_not == 0
        {
            return Ok(Check::Truth {
                expr: rest.trim().to_string(),
                negate: true,
            });
        }
    }
    Ok(Check::Truth {
        expr: expr.to_string(),
        negate: false,
    })
}

/// A lexical pass over Python source: where the top-level `==` and `,` are, skipping strings,
/// brackets and comments.
struct Scan<'a> {
    text: &'a str,
    top_level_eq: Vec<usize>,
    top_level_commas: Vec<usize>,
    /// Top-level `and`/`or`/`if` after a leading `not` (`not a or b` is not `not (a or b)`).
    top_level_words_after_not: usize,
}

impl<'a> Scan<'a> {
    fn new(text: &'a str) -> Result<Scan<'a>, String> {
        let s = text.as_bytes();
        let mut depth = 0usize;
        let mut i = 0;
        let mut eq = Vec::new();
        let mut commas = Vec::new();
        let mut words = 0;
        while i < s.len() {
            let c = s[i];
            match c {
                b'#' => {
                    while i < s.len() && s[i] != b'\n' {
                        i += 1;
                    }
                    continue;
                }
                b'\'' | b'"' => {
                    let triple = s.get(i..i + 3) == Some(&[c, c, c][..]);
                    i += if triple { 3 } else { 1 };
                    loop {
                        if i >= s.len() {
                            return Err("unterminated string".into());
                        }
                        if s[i] == b'\\' {
                            i += 2;
                            continue;
                        }
                        if s[i] == c && (!triple || s.get(i..i + 3) == Some(&[c, c, c][..])) {
                            i += if triple { 3 } else { 1 };
                            break;
                        }
                        i += 1;
                    }
                    continue;
                }
                b'(' | b'[' | b'{' => depth += 1,
                b')' | b']' | b'}' => depth = depth.checked_sub(1).ok_or("unbalanced brackets")?,
                b'=' if depth == 0 => {
                    let prev = if i > 0 { s[i - 1] } else { b' ' };
                    if s.get(i + 1) == Some(&b'=')
                        && !matches!(prev, b'=' | b'!' | b'<' | b'>')
                        && s.get(i + 2) != Some(&b'=')
                    {
                        eq.push(i);
                        i += 2;
                        continue;
                    }
                }
                b',' if depth == 0 => commas.push(i),
                c if depth == 0 && c.is_ascii_alphabetic() => {
                    let start = i;
                    while i < s.len() && (s[i].is_ascii_alphanumeric() || s[i] == b'_') {
                        i += 1;
                    }
                    let word = &text[start..i];
                    let boundary = start == 0
                        || !(s[start - 1].is_ascii_alphanumeric()
                            || s[start - 1] == b'_'
                            || s[start - 1] == b'.');
                    if boundary
                        && matches!(word, "and" | "or" | "if")
                        && start > 0
                        && text[..start].trim() != ""
                    {
                        words += 1;
                    }
                    continue;
                }
                _ => {}
            }
            i += 1;
        }
        if depth != 0 {
            return Err("unbalanced brackets".into());
        }
        Ok(Scan {
            text,
            top_level_eq: eq,
            top_level_commas: commas,
            top_level_words_after_not: words,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lhs_rhs(test: &str) -> (String, Expected) {
        match plan(test).unwrap() {
            Check::Equals { lhs, rhs } => (lhs, rhs),
            other => panic!("{test}: {other:?}"),
        }
    }

    #[test]
    fn literal_equality() {
        let (lhs, rhs) = lhs_rhs(r#"assert remove_Occ("hello","l") == "heo""#);
        assert_eq!(lhs, r#"remove_Occ("hello","l")"#);
        assert!(matches!(rhs, Expected::Literal(Value::Str(s)) if s == "heo"));
        let (lhs, rhs) = lhs_rhs("assert f('a == b', [1, 2]) == [(1, '=='), {2: 3}]");
        assert_eq!(lhs, "f('a == b', [1, 2])");
        assert!(matches!(rhs, Expected::Literal(Value::List(_))));
        let (lhs, _) = lhs_rhs("assert (Diff([10, 15],[25, 40])) == [10, 20, 30, 15]");
        assert_eq!(lhs, "(Diff([10, 15],[25, 40]))");
        let (_, rhs) = lhs_rhs("assert f(x) == 3, 'message == here'");
        assert!(matches!(rhs, Expected::Literal(Value::Int(_))));
    }

    #[test]
    fn non_literal_and_truth_forms() {
        let (_, rhs) = lhs_rhs("assert tuple_size((1, 2)) == sys.getsizeof((1, 2))");
        assert!(matches!(rhs, Expected::Expression(e) if e == "sys.getsizeof((1, 2))"));
        assert!(
            matches!(plan("assert not f(3)").unwrap(), Check::Truth { expr, negate: true } if expr == "f(3)")
        );
        assert!(matches!(
            plan("assert f(3)").unwrap(),
            Check::Truth { negate: false, .. }
        ));
        assert!(matches!(
            plan("assert not f(3) or g(2)").unwrap(),
            Check::Truth { negate: false, .. }
        ));
        assert!(matches!(
            plan("assert f(x) <= 3").unwrap(),
            Check::Truth { negate: false, .. }
        ));
        assert!(matches!(
            plan("assert math.isclose(f(x), 0.5, rel_tol=0.001)").unwrap(),
            Check::Truth { .. }
        ));
        assert!(matches!(
            plan("assert a == b == c").unwrap(),
            Check::Truth { .. }
        ));
    }

    #[test]
    fn rejects_what_is_not_an_assert() {
        assert!(plan("print(1)").is_err());
        assert!(plan("assertx == 1").is_err());
        assert!(plan("assert f(x) == (1, 2").is_err());
        assert!(plan("assert").is_err());
    }
}
