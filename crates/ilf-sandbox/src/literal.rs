//! Python literals on the trusted side: a parser, Python's `==`, and `repr`.
//!
//! Expected values (the right-hand side of `assert CALL == LITERAL`) and the values a job reports
//! back are both parsed here, so a job never needs to see what it is compared against.
//!
//! Equality follows what CPython's `==` gives for these built-in types:
//! - numbers form one tower: `True == 1 == 1.0 == complex(1, 0)`; an `int` and a `float` compare
//!   exactly (`2**53 + 1 != float(2**53)`), never through a rounded conversion; `nan` equals nothing;
//!   `-0.0 == 0.0`;
//! - `list` never equals `tuple`, `str` never equals `bytes`, `set` equals `frozenset` with the
//!   same elements;
//! - `dict`, `set` and `frozenset` compare without regard to order, keys matched by the same
//!   numeric tower (`{1: 'a'} == {1.0: 'a'}`).
//!
//! What the job reports is built from the base type's own methods, so an `int` subclass whose
//! `__eq__` always returns `True` arrives as its integer value and gains nothing.

use std::collections::HashMap;
use std::fmt::{self, Write as _};

/// Deepest nesting the parser accepts (the job's serializer stops earlier, at 64).
const MAX_DEPTH: usize = 200;

/// A value of one of the types a test may compare.
#[derive(Debug, Clone)]
pub enum Value {
    None,
    Bool(bool),
    Int(BigInt),
    Float(f64),
    Complex(f64, f64),
    Str(String),
    Bytes(Vec<u8>),
    List(Vec<Value>),
    Tuple(Vec<Value>),
    Dict(Vec<(Value, Value)>),
    Set(Vec<Value>),
    FrozenSet(Vec<Value>),
}

/// An integer of any size, as sign and decimal digits (no leading zeros; zero is not negative).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct BigInt {
    negative: bool,
    digits: String,
}

impl BigInt {
    fn from_digits(negative: bool, digits: &str) -> BigInt {
        let trimmed = digits.trim_start_matches('0');
        if trimmed.is_empty() {
            BigInt {
                negative: false,
                digits: "0".into(),
            }
        } else {
            BigInt {
                negative,
                digits: trimmed.into(),
            }
        }
    }

    fn from_i64(v: i64) -> BigInt {
        BigInt::from_digits(v < 0, &v.unsigned_abs().to_string())
    }

    fn negate(self) -> BigInt {
        let negative = !self.negative && self.digits != "0";
        BigInt {
            negative,
            digits: self.digits,
        }
    }

    fn is_zero(&self) -> bool {
        self.digits == "0"
    }

    /// The integer a float equals exactly, if it is finite and integral.
    fn from_integral_float(f: f64) -> Option<BigInt> {
        if !f.is_finite() || f.fract() != 0.0 {
            return None;
        }
        // `{:.0}` prints the exact decimal expansion of an integral f64.
        let text = format!("{:.0}", f.abs());
        Some(BigInt::from_digits(f < 0.0, &text))
    }

    /// Parses digits in `radix` (2, 8, 10 or 16), underscores already removed.
    fn parse_radix(digits: &str, radix: u32) -> Option<BigInt> {
        if radix == 10 {
            return digits
                .bytes()
                .all(|b| b.is_ascii_digit())
                .then(|| BigInt::from_digits(false, digits));
        }
        // Little-endian base-1e9 limbs: multiply by radix and add each digit.
        let mut limbs: Vec<u64> = vec![0];
        for c in digits.chars() {
            let d = c.to_digit(radix)? as u64;
            let mut carry = d;
            for limb in limbs.iter_mut() {
                let v = *limb * radix as u64 + carry;
                *limb = v % 1_000_000_000;
                carry = v / 1_000_000_000;
            }
            while carry > 0 {
                limbs.push(carry % 1_000_000_000);
                carry /= 1_000_000_000;
            }
        }
        let mut text = limbs.last().copied().unwrap_or(0).to_string();
        for limb in limbs.iter().rev().skip(1) {
            let _ = write!(text, "{limb:09}");
        }
        Some(BigInt::from_digits(false, &text))
    }
}

impl fmt::Display for BigInt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.negative {
            f.write_char('-')?;
        }
        f.write_str(&self.digits)
    }
}

/// A parse failure, with the byte offset in the text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a Python literal at byte {offset}: {message}")]
pub struct LiteralError {
    pub offset: usize,
    pub message: String,
}

/// Parses a Python literal: `None`, `True`, `False`, numbers (with `_`, `0x`/`0o`/`0b`, exponents,
/// imaginary `j`, a sign, `a+bj`), strings and bytes (all prefixes but f-strings, implicit
/// concatenation, every escape but `\N{...}`), lists, tuples, dicts, sets, and the forms the job's
/// serializer writes: `set([...])`, `frozenset([...])`, `complex(re, im)`, `float('nan')`.
pub fn parse(text: &str) -> Result<Value, LiteralError> {
    let mut p = Parser {
        s: text.as_bytes(),
        text,
        pos: 0,
    };
    let v = p.expr(0)?;
    p.ws();
    if p.pos != p.s.len() {
        return Err(p.err("unexpected text after the value"));
    }
    Ok(v)
}

struct Parser<'a> {
    s: &'a [u8],
    text: &'a str,
    pos: usize,
}

impl<'a> Parser<'a> {
    fn err(&self, message: &str) -> LiteralError {
        LiteralError {
            offset: self.pos,
            message: message.into(),
        }
    }

    fn ws(&mut self) {
        while self.pos < self.s.len() {
            match self.s[self.pos] {
                b' ' | b'\t' | b'\n' | b'\r' | b'\x0c' => self.pos += 1,
                b'\\' if self.s.get(self.pos + 1) == Some(&b'\n') => self.pos += 2,
                _ => break,
            }
        }
    }

    fn peek(&mut self) -> Option<u8> {
        self.ws();
        self.s.get(self.pos).copied()
    }

    fn eat(&mut self, b: u8) -> bool {
        if self.peek() == Some(b) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn expect(&mut self, b: u8) -> Result<(), LiteralError> {
        if self.eat(b) {
            Ok(())
        } else {
            Err(self.err(&format!("expected `{}`", b as char)))
        }
    }

    fn ident(&mut self) -> Option<&'a str> {
        self.ws();
        let start = self.pos;
        while self.pos < self.s.len()
            && (self.s[self.pos].is_ascii_alphanumeric() || self.s[self.pos] == b'_')
        {
            self.pos += 1;
        }
        (self.pos > start).then(|| &self.text[start..self.pos])
    }

    /// A value, with an optional `+`/`-` chain of numbers (only for `a+bj` complex literals).
    fn expr(&mut self, depth: usize) -> Result<Value, LiteralError> {
        if depth > MAX_DEPTH {
            return Err(self.err("nested too deeply"));
        }
        let mut v = self.unary(depth)?;
        loop {
            let sign = match self.peek() {
                Some(b'+') => 1.0,
                Some(b'-') => -1.0,
                _ => return Ok(v),
            };
            self.pos += 1;
            let rhs = self.unary(depth)?;
            v = match (as_complex(&v), as_complex(&rhs)) {
                (Some((a, b)), Some((c, d)))
                    if matches!(rhs, Value::Complex(..)) || matches!(v, Value::Complex(..)) =>
                {
                    Value::Complex(a + sign * c, b + sign * d)
                }
                _ => return Err(self.err("only `real + imaginary` sums are literals")),
            };
        }
    }

    fn unary(&mut self, depth: usize) -> Result<Value, LiteralError> {
        match self.peek() {
            Some(b'-') => {
                self.pos += 1;
                negate(self.unary(depth + 1)?)
                    .ok_or_else(|| self.err("`-` applies to numbers only"))
            }
            Some(b'+') => {
                self.pos += 1;
                let v = self.unary(depth + 1)?;
                as_complex(&v)
                    .map(|_| v)
                    .ok_or_else(|| self.err("`+` applies to numbers only"))
            }
            _ => self.atom(depth),
        }
    }

    fn atom(&mut self, depth: usize) -> Result<Value, LiteralError> {
        let Some(c) = self.peek() else {
            return Err(self.err("expected a value"));
        };
        match c {
            b'(' => {
                self.pos += 1;
                if self.eat(b')') {
                    return Ok(Value::Tuple(Vec::new()));
                }
                let first = self.expr(depth + 1)?;
                if self.eat(b')') {
                    return Ok(first);
                }
                self.expect(b',')?;
                let mut items = vec![first];
                self.sequence(depth, b')', &mut items)?;
                Ok(Value::Tuple(items))
            }
            b'[' => {
                self.pos += 1;
                let mut items = Vec::new();
                self.sequence(depth, b']', &mut items)?;
                Ok(Value::List(items))
            }
            b'{' => {
                self.pos += 1;
                if self.eat(b'}') {
                    return Ok(Value::Dict(Vec::new()));
                }
                let first = self.expr(depth + 1)?;
                if self.eat(b':') {
                    let mut pairs = vec![(first, self.expr(depth + 1)?)];
                    while self.eat(b',') {
                        if self.eat(b'}') {
                            return self.checked_dict(pairs);
                        }
                        let k = self.expr(depth + 1)?;
                        self.expect(b':')?;
                        pairs.push((k, self.expr(depth + 1)?));
                    }
                    self.expect(b'}')?;
                    return self.checked_dict(pairs);
                }
                let mut items = vec![first];
                if self.eat(b',') {
                    self.sequence(depth, b'}', &mut items)?;
                } else {
                    self.expect(b'}')?;
                }
                self.checked_set(items, false)
            }
            b'0'..=b'9' | b'.' => self.number(),
            b'\'' | b'"' => self.strings(),
            _ => {
                let start = self.pos;
                let word = self.ident().ok_or_else(|| self.err("expected a value"))?;
                if matches!(self.s.get(self.pos), Some(b'\'') | Some(b'"')) {
                    self.pos = start;
                    return self.strings();
                }
                match word {
                    "None" => Ok(Value::None),
                    "True" => Ok(Value::Bool(true)),
                    "False" => Ok(Value::Bool(false)),
                    "set" | "frozenset" => {
                        self.expect(b'(')?;
                        let items = if self.eat(b')') {
                            Vec::new()
                        } else {
                            let arg = self.expr(depth + 1)?;
                            self.expect(b')')?;
                            match arg {
                                Value::List(v)
                                | Value::Tuple(v)
                                | Value::Set(v)
                                | Value::FrozenSet(v) => v,
                                _ => {
                                    return Err(
                                        self.err("set() takes a list, tuple or set literal here")
                                    )
                                }
                            }
                        };
                        self.checked_set(items, word == "frozenset")
                    }
                    "complex" => {
                        self.expect(b'(')?;
                        let re = self.expr(depth + 1)?;
                        self.expect(b',')?;
                        let im = self.expr(depth + 1)?;
                        self.expect(b')')?;
                        match (as_complex(&re), as_complex(&im)) {
                            (Some((a, 0.0)), Some((b, 0.0))) => Ok(Value::Complex(a, b)),
                            _ => Err(self.err("complex() takes two real numbers here")),
                        }
                    }
                    "float" => {
                        self.expect(b'(')?;
                        let Value::Str(arg) = self.strings()? else {
                            unreachable!("strings() returns Str or Bytes")
                        };
                        self.expect(b')')?;
                        match arg.trim().to_ascii_lowercase().as_str() {
                            "nan" | "+nan" | "-nan" => Ok(Value::Float(f64::NAN)),
                            "inf" | "+inf" | "infinity" => Ok(Value::Float(f64::INFINITY)),
                            "-inf" | "-infinity" => Ok(Value::Float(f64::NEG_INFINITY)),
                            _ => Err(self.err("float() takes 'nan' or 'inf' here")),
                        }
                    }
                    _ => {
                        self.pos = start;
                        Err(self.err(&format!("`{word}` is not a literal")))
                    }
                }
            }
        }
    }

    fn sequence(
        &mut self,
        depth: usize,
        close: u8,
        items: &mut Vec<Value>,
    ) -> Result<(), LiteralError> {
        loop {
            if self.eat(close) {
                return Ok(());
            }
            items.push(self.expr(depth + 1)?);
            if !self.eat(b',') {
                return self.expect(close);
            }
        }
    }

    fn checked_dict(&self, pairs: Vec<(Value, Value)>) -> Result<Value, LiteralError> {
        // Later duplicates replace earlier ones, as in Python.
        let mut index: HashMap<Key, usize> = HashMap::new();
        let mut out: Vec<(Value, Value)> = Vec::with_capacity(pairs.len());
        for (k, v) in pairs {
            let key = Key::of(&k).ok_or_else(|| self.err("unhashable dict key"))?;
            match index.get(&key) {
                Some(&i) => out[i].1 = v,
                None => {
                    index.insert(key, out.len());
                    out.push((k, v));
                }
            }
        }
        Ok(Value::Dict(out))
    }

    fn checked_set(&self, items: Vec<Value>, frozen: bool) -> Result<Value, LiteralError> {
        let mut seen = std::collections::HashSet::new();
        let mut out = Vec::with_capacity(items.len());
        for v in items {
            let key = Key::of(&v).ok_or_else(|| self.err("unhashable set element"))?;
            if seen.insert(key) {
                out.push(v);
            }
        }
        Ok(if frozen {
            Value::FrozenSet(out)
        } else {
            Value::Set(out)
        })
    }

    fn number(&mut self) -> Result<Value, LiteralError> {
        let start = self.pos;
        let s = self.s;
        let lower = |i: usize| s.get(i).map(|b| b.to_ascii_lowercase());
        if s[start] == b'0' && matches!(lower(start + 1), Some(b'x') | Some(b'o') | Some(b'b')) {
            let radix = match lower(start + 1) {
                Some(b'x') => 16,
                Some(b'o') => 8,
                _ => 2,
            };
            self.pos += 2;
            let digits_start = self.pos;
            while self.pos < s.len() && (s[self.pos].is_ascii_alphanumeric() || s[self.pos] == b'_')
            {
                self.pos += 1;
            }
            let digits: String = self.text[digits_start..self.pos]
                .chars()
                .filter(|&c| c != '_')
                .collect();
            return BigInt::parse_radix(&digits, radix)
                .map(Value::Int)
                .ok_or_else(|| self.err("bad digits"));
        }
        let mut is_float = false;
        while self.pos < s.len() {
            let b = s[self.pos];
            if b.is_ascii_digit() || b == b'_' {
                self.pos += 1;
            } else if b == b'.' {
                is_float = true;
                self.pos += 1;
            } else if (b == b'e' || b == b'E') && self.pos > start {
                is_float = true;
                self.pos += 1;
                if matches!(s.get(self.pos), Some(b'+') | Some(b'-')) {
                    self.pos += 1;
                }
            } else {
                break;
            }
        }
        let body: String = self.text[start..self.pos]
            .chars()
            .filter(|&c| c != '_')
            .collect();
        let imaginary = matches!(lower(self.pos), Some(b'j'));
        if imaginary {
            self.pos += 1;
        }
        if is_float || imaginary {
            let f: f64 = body.parse().map_err(|_| self.err("bad number"))?;
            Ok(if imaginary {
                Value::Complex(0.0, f)
            } else {
                Value::Float(f)
            })
        } else {
            if body.len() > 1 && body.starts_with('0') && body.bytes().any(|b| b != b'0') {
                return Err(self.err("leading zeros in a decimal integer"));
            }
            Ok(Value::Int(BigInt::from_digits(false, &body)))
        }
    }

    /// One or more adjacent string literals, concatenated.
    fn strings(&mut self) -> Result<Value, LiteralError> {
        let mut text = String::new();
        let mut bytes: Vec<u8> = Vec::new();
        let mut kind: Option<bool> = None; // Some(true) = bytes
        loop {
            self.ws();
            let start = self.pos;
            let mut raw = false;
            let mut is_bytes = false;
            while let Some(&c) = self.s.get(self.pos) {
                match c.to_ascii_lowercase() {
                    b'r' => raw = true,
                    b'b' => is_bytes = true,
                    b'u' => {}
                    b'f' => return Err(self.err("f-strings are not literals")),
                    _ => break,
                }
                self.pos += 1;
            }
            let Some(&quote) = self.s.get(self.pos).filter(|&&q| q == b'\'' || q == b'"') else {
                self.pos = start;
                break;
            };
            if kind.is_some_and(|k| k != is_bytes) {
                return Err(self.err("cannot mix bytes and str literals"));
            }
            kind = Some(is_bytes);
            let triple = self.s.get(self.pos..self.pos + 3) == Some(&[quote, quote, quote][..]);
            self.pos += if triple { 3 } else { 1 };
            let body_start = self.pos;
            loop {
                let Some(&c) = self.s.get(self.pos) else {
                    return Err(self.err("unterminated string"));
                };
                if c == b'\\' {
                    self.pos += 2;
                    continue;
                }
                if c == quote
                    && (!triple
                        || self.s.get(self.pos..self.pos + 3) == Some(&[quote, quote, quote][..]))
                {
                    break;
                }
                if c == b'\n' && !triple {
                    return Err(self.err("newline in a string"));
                }
                self.pos += 1;
            }
            let body = &self.text[body_start..self.pos.min(self.text.len())];
            self.pos += if triple { 3 } else { 1 };
            if raw {
                text.push_str(body);
                bytes.extend_from_slice(body.as_bytes());
            } else {
                self.unescape(body, is_bytes, &mut text, &mut bytes, body_start)?;
            }
        }
        match kind {
            Some(true) => Ok(Value::Bytes(bytes)),
            Some(false) => Ok(Value::Str(text)),
            None => Err(self.err("expected a string")),
        }
    }

    fn unescape(
        &self,
        body: &str,
        is_bytes: bool,
        text: &mut String,
        bytes: &mut Vec<u8>,
        at: usize,
    ) -> Result<(), LiteralError> {
        let err = |m: &str| LiteralError {
            offset: at,
            message: m.into(),
        };
        let mut chars = body.chars().peekable();
        let push = |c: char, text: &mut String, bytes: &mut Vec<u8>| -> Result<(), LiteralError> {
            if is_bytes {
                if (c as u32) > 0xff {
                    return Err(err("non-ASCII character in bytes"));
                }
                bytes.push(c as u32 as u8);
            } else {
                text.push(c);
            }
            Ok(())
        };
        while let Some(c) = chars.next() {
            if c != '\\' {
                if is_bytes && !c.is_ascii() {
                    return Err(err("non-ASCII character in bytes"));
                }
                push(c, text, bytes)?;
                continue;
            }
            let Some(e) = chars.next() else {
                return Err(err("trailing backslash"));
            };
            let mut hex = |n: usize| -> Result<u32, LiteralError> {
                let s: String = (0..n).filter_map(|_| chars.next()).collect();
                if s.len() != n {
                    return Err(err("truncated escape"));
                }
                u32::from_str_radix(&s, 16).map_err(|_| err("bad hex escape"))
            };
            let decoded = match e {
                '\n' => continue,
                '\\' => '\\',
                '\'' => '\'',
                '"' => '"',
                'a' => '\x07',
                'b' => '\x08',
                'f' => '\x0c',
                'n' => '\n',
                'r' => '\r',
                't' => '\t',
                'v' => '\x0b',
                'x' => {
                    let v = hex(2)?;
                    if is_bytes {
                        bytes.push(v as u8);
                        continue;
                    }
                    char::from_u32(v).ok_or_else(|| err("bad escape"))?
                }
                'u' if !is_bytes => char::from_u32(hex(4)?).unwrap_or('\u{fffd}'),
                'U' if !is_bytes => char::from_u32(hex(8)?).ok_or_else(|| err("bad \\U escape"))?,
                '0'..='7' => {
                    let mut v = e.to_digit(8).unwrap_or(0);
                    for _ in 0..2 {
                        match chars.peek().and_then(|c| c.to_digit(8)) {
                            Some(d) => {
                                v = v * 8 + d;
                                chars.next();
                            }
                            None => break,
                        }
                    }
                    if is_bytes {
                        bytes.push((v & 0xff) as u8);
                        continue;
                    }
                    char::from_u32(v).ok_or_else(|| err("bad octal escape"))?
                }
                'N' => return Err(err("\\N{...} escapes are not supported")),
                other => {
                    // Python keeps unknown escapes as written.
                    push('\\', text, bytes)?;
                    other
                }
            };
            push(decoded, text, bytes)?;
        }
        Ok(())
    }
}

fn negate(v: Value) -> Option<Value> {
    match v {
        Value::Int(i) => Some(Value::Int(i.negate())),
        Value::Bool(b) => Some(Value::Int(BigInt::from_i64(-(b as i64)))),
        Value::Float(f) => Some(Value::Float(-f)),
        Value::Complex(a, b) => Some(Value::Complex(-a, -b)),
        _ => None,
    }
}

/// A number as `(real, imag)` floats, for building complex literals only.
fn as_complex(v: &Value) -> Option<(f64, f64)> {
    match v {
        Value::Bool(b) => Some((*b as u8 as f64, 0.0)),
        Value::Int(i) => Some((i.to_string().parse().ok()?, 0.0)),
        Value::Float(f) => Some((*f, 0.0)),
        Value::Complex(a, b) => Some((*a, *b)),
        _ => None,
    }
}

/// A hashable value reduced so that Python-equal values get equal keys.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Key {
    None,
    /// Every number equal to an integer (bools, integral floats, complex with zero imaginary part).
    Int(bool, String),
    /// Non-integral finite floats and infinities, by bit pattern.
    Float(u64),
    Complex(Box<Key>, Box<Key>),
    /// `nan` equals nothing, not even itself: each gets a key no other value has.
    Nan(usize),
    Str(String),
    Bytes(Vec<u8>),
    Tuple(Vec<Key>),
    FrozenSet(Vec<Key>),
}

impl Key {
    fn of(v: &Value) -> Option<Key> {
        Some(match v {
            Value::None => Key::None,
            Value::Bool(b) => Key::Int(false, if *b { "1" } else { "0" }.into()),
            Value::Int(i) => Key::Int(i.negative, i.digits.clone()),
            Value::Float(f) => Key::float(*f, v),
            Value::Complex(re, im) => {
                if *im == 0.0 {
                    Key::float(*re, v)
                } else {
                    Key::Complex(Box::new(Key::float(*re, v)), Box::new(Key::float(*im, v)))
                }
            }
            Value::Str(s) => Key::Str(s.clone()),
            Value::Bytes(b) => Key::Bytes(b.clone()),
            Value::Tuple(items) => Key::Tuple(items.iter().map(Key::of).collect::<Option<_>>()?),
            Value::FrozenSet(items) => {
                let mut keys: Vec<Key> = items.iter().map(Key::of).collect::<Option<_>>()?;
                keys.sort();
                Key::FrozenSet(keys)
            }
            Value::List(_) | Value::Dict(_) | Value::Set(_) => return None,
        })
    }

    fn float(f: f64, owner: &Value) -> Key {
        if f.is_nan() {
            return Key::Nan(owner as *const Value as usize);
        }
        match BigInt::from_integral_float(f) {
            Some(i) => Key::Int(i.negative, i.digits),
            None => Key::Float(f.to_bits()),
        }
    }
}

impl PartialEq for Value {
    /// Python's `==` for these types (see the module documentation).
    fn eq(&self, other: &Value) -> bool {
        use Value::*;
        match (self, other) {
            (List(a), List(b)) | (Tuple(a), Tuple(b)) => {
                a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x == y)
            }
            (Dict(a), Dict(b)) => {
                if a.len() != b.len() {
                    return false;
                }
                let index: HashMap<Key, &Value> = b
                    .iter()
                    .filter_map(|(k, v)| Key::of(k).map(|k| (k, v)))
                    .collect();
                a.iter().all(|(k, v)| {
                    Key::of(k)
                        .and_then(|k| index.get(&k))
                        .is_some_and(|w| v == *w)
                })
            }
            (Set(a) | FrozenSet(a), Set(b) | FrozenSet(b)) => {
                if a.len() != b.len() {
                    return false;
                }
                let keys: std::collections::HashSet<Key> = b.iter().filter_map(Key::of).collect();
                a.iter()
                    .all(|v| Key::of(v).is_some_and(|k| keys.contains(&k)))
            }
            (None, None) => true,
            (Str(a), Str(b)) => a == b,
            (Bytes(a), Bytes(b)) => a == b,
            (
                Bool(_) | Int(_) | Float(_) | Complex(..),
                Bool(_) | Int(_) | Float(_) | Complex(..),
            ) => match (Key::of(self), Key::of(other)) {
                (Some(a), Some(b)) => a == b,
                _ => false,
            },
            _ => false,
        }
    }
}

impl Value {
    /// Python's truthiness.
    pub fn truthy(&self) -> bool {
        match self {
            Value::None => false,
            Value::Bool(b) => *b,
            Value::Int(i) => !i.is_zero(),
            Value::Float(f) => *f != 0.0,
            Value::Complex(a, b) => *a != 0.0 || *b != 0.0,
            Value::Str(s) => !s.is_empty(),
            Value::Bytes(b) => !b.is_empty(),
            Value::List(v) | Value::Tuple(v) | Value::Set(v) | Value::FrozenSet(v) => !v.is_empty(),
            Value::Dict(v) => !v.is_empty(),
        }
    }

    /// Python's `repr`, cut to about `limit` characters.
    pub fn repr(&self, limit: usize) -> String {
        let mut out = String::new();
        self.write_repr(&mut out, limit);
        if out.len() > limit {
            let mut cut = limit;
            while !out.is_char_boundary(cut) {
                cut -= 1;
            }
            out.truncate(cut);
            out.push_str("...");
        }
        out
    }

    fn write_repr(&self, out: &mut String, limit: usize) {
        if out.len() > limit {
            return;
        }
        let seq = |out: &mut String, items: &[Value], open: &str, close: &str| {
            out.push_str(open);
            for (i, v) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                v.write_repr(out, limit);
                if out.len() > limit {
                    return;
                }
            }
            out.push_str(close);
        };
        match self {
            Value::None => out.push_str("None"),
            Value::Bool(b) => out.push_str(if *b { "True" } else { "False" }),
            Value::Int(i) => {
                let _ = write!(out, "{i}");
            }
            Value::Float(f) => out.push_str(&float_repr(*f)),
            Value::Complex(a, b) => {
                // complex's repr drops the `.0` that float's keeps: `(1+2j)`, `1.5j`.
                let part = |f: f64| {
                    let r = float_repr(f);
                    r.strip_suffix(".0").map(str::to_string).unwrap_or(r)
                };
                let im = part(*b);
                if *a == 0.0 && a.is_sign_positive() {
                    let _ = write!(out, "{im}j");
                } else {
                    let sign = if im.starts_with('-') { "" } else { "+" };
                    let _ = write!(out, "({}{sign}{im}j)", part(*a));
                }
            }
            Value::Str(s) => str_repr(s, out),
            Value::Bytes(b) => bytes_repr(b, out),
            Value::List(v) => seq(out, v, "[", "]"),
            Value::Tuple(v) if v.len() == 1 => seq(out, v, "(", ",)"),
            Value::Tuple(v) => seq(out, v, "(", ")"),
            Value::Set(v) if v.is_empty() => out.push_str("set()"),
            Value::Set(v) => seq(out, v, "{", "}"),
            Value::FrozenSet(v) if v.is_empty() => out.push_str("frozenset()"),
            Value::FrozenSet(v) => seq(out, v, "frozenset({", "})"),
            Value::Dict(pairs) => {
                out.push('{');
                for (i, (k, v)) in pairs.iter().enumerate() {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    k.write_repr(out, limit);
                    out.push_str(": ");
                    v.write_repr(out, limit);
                    if out.len() > limit {
                        return;
                    }
                }
                out.push('}');
            }
        }
    }
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.repr(usize::MAX / 2))
    }
}

/// CPython's `float.__repr__`: shortest round-trip digits, fixed notation for exponents in -4..16.
fn float_repr(f: f64) -> String {
    if f.is_nan() {
        return "nan".into();
    }
    if f.is_infinite() {
        return if f > 0.0 { "inf".into() } else { "-inf".into() };
    }
    if f == 0.0 {
        return if f.is_sign_negative() {
            "-0.0".into()
        } else {
            "0.0".into()
        };
    }
    let sci = format!("{:e}", f.abs());
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let digits: String = mantissa.chars().filter(|c| *c != '.').collect();
    let sign = if f < 0.0 { "-" } else { "" };
    if (-4..16).contains(&exp) {
        let point = exp + 1;
        let body = if point <= 0 {
            format!("0.{}{}", "0".repeat((-point) as usize), digits)
        } else if point as usize >= digits.len() {
            format!("{}{}.0", digits, "0".repeat(point as usize - digits.len()))
        } else {
            format!(
                "{}.{}",
                &digits[..point as usize],
                &digits[point as usize..]
            )
        };
        format!("{sign}{body}")
    } else {
        let frac = if digits.len() > 1 {
            format!("{}.{}", &digits[..1], &digits[1..])
        } else {
            digits.clone()
        };
        let esign = if exp < 0 { '-' } else { '+' };
        format!("{sign}{frac}e{esign}{:02}", exp.abs())
    }
}

fn str_repr(s: &str, out: &mut String) {
    let quote = if s.contains('\'') && !s.contains('"') {
        '"'
    } else {
        '\''
    };
    out.push(quote);
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c == quote => {
                out.push('\\');
                out.push(c);
            }
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c if c.is_control() => {
                let v = c as u32;
                let _ = if v <= 0xff {
                    write!(out, "\\x{v:02x}")
                } else if v <= 0xffff {
                    write!(out, "\\u{v:04x}")
                } else {
                    write!(out, "\\U{v:08x}")
                };
            }
            c => out.push(c),
        }
    }
    out.push(quote);
}

fn bytes_repr(b: &[u8], out: &mut String) {
    let quote = if b.contains(&b'\'') && !b.contains(&b'"') {
        '"'
    } else {
        '\''
    };
    out.push('b');
    out.push(quote);
    for &c in b {
        match c {
            b'\\' => out.push_str("\\\\"),
            b'\n' => out.push_str("\\n"),
            b'\r' => out.push_str("\\r"),
            b'\t' => out.push_str("\\t"),
            c if c as char == quote => {
                out.push('\\');
                out.push(c as char);
            }
            0x20..=0x7e => out.push(c as char),
            c => {
                let _ = write!(out, "\\x{c:02x}");
            }
        }
    }
    out.push(quote);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Value {
        parse(s).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn numeric_tower_matches_python() {
        assert_eq!(p("1"), p("1.0"));
        assert_eq!(p("True"), p("1"));
        assert_eq!(p("1"), p("complex(1.0, 0.0)"));
        assert_eq!(p("-0.0"), p("0"));
        assert_ne!(p("9007199254740993"), p("9007199254740992.0"));
        assert_eq!(p("9007199254740992"), p("9007199254740992.0"));
        assert_ne!(p("float('nan')"), p("float('nan')"));
        assert_ne!(p("0.1"), p("0.10000000000000002"));
        assert_eq!(p("1e3"), p("1000"));
        assert_eq!(p("0x_ff"), p("255"));
        assert_eq!(p("0b101"), p("5"));
        assert_eq!(p("0o777777777777777777777777"), p("4722366482869645213695"));
        assert_eq!(p("(1+2j)"), p("complex(1, 2)"));
        assert_ne!(p("1"), p("'1'"));
    }

    #[test]
    fn containers_compare_like_python() {
        assert_ne!(p("[1, 2]"), p("(1, 2)"));
        assert_eq!(p("(1, [2, (3,)])"), p("(1.0, [2, (3,)])"));
        assert_eq!(p("{1: 'a', 2: 'b'}"), p("{2.0: 'b', True: 'a'}"));
        assert_ne!(p("{1: 'a'}"), p("{1: 'b'}"));
        assert_eq!(p("{1, 2, 3}"), p("set([3, 2, 1])"));
        assert_eq!(p("frozenset([1, 2])"), p("{2, 1}"));
        assert_ne!(p("{1, 2}"), p("{1, 2, 3}"));
        assert_eq!(p("{(1, 2), (3, 4)}"), p("{(3, 4), (1.0, 2)}"));
        assert_eq!(p("set()"), p("set([])"));
        assert_ne!(p("set()"), p("{}"));
        assert_eq!(p("{1: 1, 1.0: 2}"), p("{1: 2}"));
        assert_ne!(p("'a'"), p("b'a'"));
    }

    #[test]
    fn strings_and_escapes() {
        assert_eq!(p(r#"'a\'b' "c""#), Value::Str("a'bc".into()));
        assert_eq!(p(r"'\x41\u00e9\n\101'"), Value::Str("Aé\nA".into()));
        assert_eq!(p(r"r'\d+'"), Value::Str("\\d+".into()));
        assert_eq!(p(r"b'\xff\x00'"), Value::Bytes(vec![255, 0]));
        assert_eq!(p("'''x\ny'''"), Value::Str("x\ny".into()));
        assert_eq!(p(r"'\q'"), Value::Str("\\q".into()));
        assert!(parse("'a' b'b'").is_err());
        assert!(parse("f'x'").is_err());
    }

    #[test]
    fn rejects_non_literals() {
        for bad in [
            "f(1)",
            "x",
            "1 + 2",
            "[1, 2",
            "{[1]: 2}",
            "{[1], 2}",
            "1 2",
            "sys.maxsize",
            "",
            "'abc",
        ] {
            assert!(parse(bad).is_err(), "{bad} parsed");
        }
        let deep = "[".repeat(1000) + &"]".repeat(1000);
        assert!(parse(&deep).is_err());
    }

    #[test]
    fn repr_matches_python() {
        for (text, want) in [
            ("0.1", "0.1"),
            ("1e16", "1e+16"),
            ("1e-05", "1e-05"),
            ("123456789012345.6", "123456789012345.6"),
            ("0.0001", "0.0001"),
            ("-2.5e-7", "-2.5e-07"),
            ("3.0", "3.0"),
            ("(1,)", "(1,)"),
            ("set()", "set()"),
            ("frozenset([1])", "frozenset({1})"),
            ("{'a': [1, 2.5], 'b': None}", "{'a': [1, 2.5], 'b': None}"),
            ("\"it's\"", "\"it's\""),
            ("'tab\\there'", "'tab\\there'"),
            ("b'\\x00a'", "b'\\x00a'"),
            ("(1+2j)", "(1+2j)"),
            ("2j", "2j"),
            ("-12345678901234567890123", "-12345678901234567890123"),
        ] {
            assert_eq!(p(text).repr(1000), want, "{text}");
        }
        assert_eq!(p("[1, 2, 3, 4, 5, 6]").repr(5), "[1, 2...");
    }

    #[test]
    fn truthiness() {
        assert!(!p("0.0").truthy());
        assert!(!p("''").truthy());
        assert!(!p("set()").truthy());
        assert!(p("[0]").truthy());
        assert!(!p("None").truthy());
        assert!(p("-1").truthy());
    }
}
