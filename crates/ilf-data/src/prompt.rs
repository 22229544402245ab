//! The paper's 1-shot code-generation prompt (Chen et al. 2023, §3.1 of `docs/ilf-method.md`).
//!
//! ```text
//! """
//! {text}
//!
//! >>> Example: {example}
//! """
//!
//! {code_prefix}
//! ```
//! followed by one `\n`, where
//! - `example` is the first test with everything up to its last `"assert "` removed and every
//!   `==` replaced by `=` (Python: `test_list[0].split("assert ")[-1].replace("==", "=")`);
//! - `code_prefix` is the gold program up to and including the signature of the function the
//!   tests call, so gold imports and helpers before it are part of the prompt;
//! - every `\r\n` is normalised to `\n` (the annotation file's `prompt` field has it so).
//!
//! The authors find the signature with the regex `def {fn_name}\(.*\):`, which misses 60 MBPP
//! tasks (`def f (x):`, `def f(x) :`, names with a trailing space in the test) and skips them;
//! [`code_prefix`] parses the signature instead and works for all 974. For task 11:
//!
//! ```
//! # let task = ilf_data::mbpp::Task {
//! #     task_id: 11,
//! #     text: "Write a python function to remove first and last occurrence of a given character from the string.".into(),
//! #     code: "def remove_Occ(s,ch): \r\n    for i in range(len(s)): \r\n        pass".into(),
//! #     test_setup_code: String::new(),
//! #     test_list: vec!["assert remove_Occ(\"hello\",\"l\") == \"heo\"".into()],
//! #     challenge_test_list: vec![],
//! # };
//! assert_eq!(
//!     ilf_data::prompt::paper_prompt(&task),
//!     "\"\"\"\nWrite a python function to remove first and last occurrence of a given character \
//!      from the string.\n\n>>> Example: remove_Occ(\"hello\",\"l\") = \"heo\"\n\"\"\"\n\n\
//!      def remove_Occ(s,ch):\n"
//! );
//! ```

use crate::{
    error::DataError,
    lexer::{is_ident_byte, Lexeme, Lexer},
    mbpp::Task,
};

/// The paper's prompt for `task`. Every task that [`crate::mbpp::Mbpp::load`] accepts has one.
///
/// # Panics
/// If the gold code has no definition of the entry point, which `Mbpp::load` rules out; use
/// [`code_prefix`] to check a hand-made task first.
pub fn paper_prompt(task: &Task) -> String {
    let prefix = code_prefix(task).unwrap_or_else(|e| panic!("{e}"));
    format!(
        "\"\"\"\n{}\n\n>>> Example: {}\n\"\"\"\n\n{prefix}\n",
        task.text,
        example(task)
    )
    .replace("\r\n", "\n")
}

/// The first test as the prompt shows it: `remove_Occ("hello","l") = "heo"`.
pub fn example(task: &Task) -> String {
    after_assert(first_test(task)).replace("==", "=")
}

/// The name of the function the tests call. The authors take the text before the first `(` of
/// the first test; that name is used when the gold code defines it (after trimming spaces).
/// Otherwise (`assert (Diff(...))`, `assert int(lobb_num(...))`) the first called name that the
/// gold code defines is used, and failing that the authors' name.
pub fn entry_point(task: &Task) -> String {
    let call = after_assert(first_test(task));
    let authors = call.split('(').next().unwrap_or_default().trim();
    if find_signature(&task.code, authors).is_some() {
        return authors.to_string();
    }
    called_names(call)
        .find(|name| find_signature(&task.code, name).is_some())
        .unwrap_or(authors)
        .to_string()
}

/// The gold program up to and including the entry point's signature (with MBPP's own line
/// endings), or an error naming the task if the gold code does not define the entry point.
pub fn code_prefix(task: &Task) -> Result<&str, DataError> {
    let name = entry_point(task);
    match find_signature(&task.code, &name) {
        Some(end) => Ok(&task.code[..end]),
        None => Err(DataError::Task {
            task_id: task.task_id,
            message: format!(
                "the gold code has no `def {name}(...):` for the function the first test calls"
            ),
        }),
    }
}

fn first_test(task: &Task) -> &str {
    task.test_list
        .first()
        .map(String::as_str)
        .unwrap_or_default()
}

/// Python's `s.split("assert ")[-1]`.
fn after_assert(test: &str) -> &str {
    test.rsplit("assert ").next().unwrap_or(test)
}

/// Names directly followed by `(` in `call`, in order, skipping attribute calls (`x.f(`).
fn called_names(call: &str) -> impl Iterator<Item = &str> {
    let bytes = call.as_bytes();
    let mut i = 0;
    std::iter::from_fn(move || {
        while i < bytes.len() {
            if !is_ident_byte(bytes[i]) || (i > 0 && is_ident_byte(bytes[i - 1])) {
                i += 1;
                continue;
            }
            let start = i;
            while i < bytes.len() && is_ident_byte(bytes[i]) {
                i += 1;
            }
            let attribute = start > 0 && bytes[start - 1] == b'.';
            let mut j = i;
            while j < bytes.len() && bytes[j] == b' ' {
                j += 1;
            }
            if !attribute && bytes.get(j) == Some(&b'(') && !bytes[start].is_ascii_digit() {
                return Some(&call[start..i]);
            }
        }
        None
    })
}

/// The byte offset just after the `:` that ends the first `def name(...)` signature in `code`
/// (outside strings and comments), allowing spaces around the name and before `:`, parameters
/// over several lines, and a `-> annotation`.
pub fn find_signature(code: &str, name: &str) -> Option<usize> {
    if name.is_empty() || !name.bytes().all(is_ident_byte) {
        return None;
    }
    let bytes = code.as_bytes();
    let mut lexer = Lexer::default();
    let mut i = 0;
    while i < bytes.len() {
        let (len, lexeme) = lexer.step(bytes, i);
        if lexeme == Lexeme::Code(b'd') && (i == 0 || !is_ident_byte(bytes[i - 1])) {
            if let Some(open) = def_of(bytes, i, name) {
                if let Some(end) = signature_end(bytes, open) {
                    return Some(end);
                }
            }
        }
        i += len;
    }
    None
}

/// If `def <ws> name <ws> (` starts at `i`, the offset of the `(`.
fn def_of(bytes: &[u8], i: usize, name: &str) -> Option<usize> {
    let rest = bytes[i..].strip_prefix(b"def")?;
    let after_kw = skip_spaces(rest);
    if after_kw == 0 {
        return None;
    }
    let rest = rest[after_kw..].strip_prefix(name.as_bytes())?;
    let spaces = skip_spaces(rest);
    (rest.get(spaces) == Some(&b'(')).then(|| bytes.len() - rest.len() + spaces)
}

fn skip_spaces(bytes: &[u8]) -> usize {
    bytes
        .iter()
        .take_while(|&&b| b == b' ' || b == b'\t')
        .count()
}

/// From the `(` at `open`, the offset after the `:` that ends the signature.
fn signature_end(bytes: &[u8], open: usize) -> Option<usize> {
    let mut lexer = Lexer::default();
    let mut i = open;
    let mut closed = false;
    while i < bytes.len() {
        let (len, lexeme) = lexer.step(bytes, i);
        match lexeme {
            Lexeme::Code(b')') if lexer.depth == 0 => closed = true,
            Lexeme::Code(b':') if closed && lexer.depth == 0 => return Some(i + 1),
            _ => {}
        }
        i += len;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn task(code: &str, test: &str) -> Task {
        Task {
            task_id: 1,
            text: "Do it.".into(),
            code: code.into(),
            test_setup_code: String::new(),
            test_list: vec![test.into(), test.into(), test.into()],
            challenge_test_list: vec![],
        }
    }

    #[test]
    fn signature_variants() {
        let cases = [
            ("def f(x):\r\n  return x", "def f(x):"),
            ("def f (x): \r\n  return x", "def f (x):"),
            ("def f(x) :  \r\n  return x", "def f(x) :"),
            ("def f(x: int) -> int:\n  return x", "def f(x: int) -> int:"),
            (
                "def f(a,\n      b=(1, 2)):\n  return a",
                "def f(a,\n      b=(1, 2)):",
            ),
            ("def f(s=\"):\"):\n  return s", "def f(s=\"):\"):"),
            (
                "def g(x):\n  pass\ndef f(x):\n  return g(x)",
                "def g(x):\n  pass\ndef f(x):",
            ),
            ("# def f(x):\ndef f(y):\n  pass", "# def f(x):\ndef f(y):"),
            (
                "def ff(x):\n  pass\ndef f(x):\n  pass",
                "def ff(x):\n  pass\ndef f(x):",
            ),
            ("undef f(x)\ndef f(x):\n  pass", "undef f(x)\ndef f(x):"),
        ];
        for (code, prefix) in cases {
            assert_eq!(
                code_prefix(&task(code, "assert f(1) == 1")).unwrap(),
                prefix,
                "{code:?}"
            );
        }
    }

    #[test]
    fn entry_point_variants() {
        assert_eq!(
            entry_point(&task("def f(x):\n  pass", "assert f (1) == 1")),
            "f"
        );
        assert_eq!(
            entry_point(&task(
                "def Diff(a, b):\n  pass",
                "assert (Diff([1], [2])) == [1]"
            )),
            "Diff"
        );
        assert_eq!(
            entry_point(&task("def lobb(n):\n  pass", "assert int(lobb(5)) == 35")),
            "lobb"
        );
        assert_eq!(
            entry_point(&task("def g(n):\n  pass", "assert math.isclose(g(1), 2)")),
            "g"
        );
        let missing = task("def g(n):\n  pass", "assert h(1) == 2");
        assert_eq!(entry_point(&missing), "h");
        let err = code_prefix(&missing).unwrap_err().to_string();
        assert!(err.contains("task 1") && err.contains("def h("), "{err}");
    }

    #[test]
    fn example_replaces_every_double_equals() {
        let t = task("def f(x):\n  pass", "assert f(1==1) == True");
        assert_eq!(example(&t), "f(1=1) = True");
        assert_eq!(
            paper_prompt(&t),
            "\"\"\"\nDo it.\n\n>>> Example: f(1=1) = True\n\"\"\"\n\ndef f(x):\n"
        );
    }
}
