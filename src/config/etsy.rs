//! etsy statsd's `config.js`, read as it is: a small hand-written parser for the JavaScript
//! object literal such a file holds (unquoted or quoted keys, single, double or backtick quotes
//! with JavaScript's escapes, `//` and `/* */` comments, trailing commas, decimal numbers with
//! exponents, hex / octal / binary and legacy-octal integers, `true`, `false`, `null`,
//! `undefined`, the whole possibly wrapped in parentheses and closed by `;`), and the mapping of
//! every option etsy statsd 0.9.0 and statsd-kafka-backend document onto kstatsd's own
//! [`FileConfig`], so that the one validation pass of [`Config::build`] serves both formats.
//!
//! etsy loads the file with `eval`; kstatsd never evaluates it. Anything that would run code
//! (`process.env.X`, a function call, `"a" + "b"`, `60 * 1000`, a variable) is an error that
//! names the key and its line and column. Keys kstatsd has no use for are collected and logged
//! in one warning; a backend kstatsd does not have is an error. Runs on the main thread at
//! start-up and on reload (SIGHUP).

use super::{BinFile, Config, ConfigError, FileConfig, HistogramFile, Overrides, Period, Secret};
use crate::flush::config::Histograms;
use crate::sink::console::ConsoleSection;
use crate::sink::graphite::config::{GraphiteProtocol, GraphiteSection};
use crate::sink::kafka_rest::config::{KafkaContentType, KafkaFormat, KafkaRestSection};
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// The syntax of the `--config` file: kstatsd's TOML, or etsy statsd's `config.js` (chosen by
/// the `.js` extension unless `--config-format` says which).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigFormat {
    Toml,
    Etsy,
}

impl ConfigFormat {
    /// `toml` or `etsy` (the `--config-format` values).
    pub fn parse(s: &str) -> Result<ConfigFormat, String> {
        match s {
            "toml" => Ok(ConfigFormat::Toml),
            "etsy" => Ok(ConfigFormat::Etsy),
            other => Err(format!("`{other}` is not etsy or toml")),
        }
    }

    /// The format a file's name says: `.js` is etsy's, anything else TOML.
    pub fn of(path: &std::path::Path) -> ConfigFormat {
        match path.extension() {
            Some(e) if e.eq_ignore_ascii_case("js") => ConfigFormat::Etsy,
            _ => ConfigFormat::Toml,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The literal subset of JavaScript
// ---------------------------------------------------------------------------------------------

/// A place in the file, both counted from 1 (columns in characters).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pos {
    pub line: u32,
    pub col: u32,
}

impl fmt::Display for Pos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}, column {}", self.line, self.col)
    }
}

/// A parsed literal and where it starts.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub at: Pos,
    pub value: Js,
}

/// The values a config.js literal can hold.
#[derive(Debug, Clone, PartialEq)]
pub enum Js {
    Undefined,
    Null,
    Bool(bool),
    Num(f64),
    Str(String),
    Arr(Vec<Node>),
    /// Members in file order, duplicates kept (the last one wins, as in JavaScript).
    Obj(Vec<Member>),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Member {
    pub key: String,
    pub at: Pos,
    pub value: Node,
}

impl Js {
    fn kind(&self) -> &'static str {
        match self {
            Js::Undefined => "undefined",
            Js::Null => "null",
            Js::Bool(_) => "a boolean",
            Js::Num(_) => "a number",
            Js::Str(_) => "a string",
            Js::Arr(_) => "an array",
            Js::Obj(_) => "an object",
        }
    }
}

/// Parses the text of a config.js into its top-level object. Errors say where (line and
/// column) and, inside the object, which key.
pub fn parse(text: &str) -> Result<Node, ConfigError> {
    let mut p = Parser::new(text);
    p.skip()?;
    // etsy evaluates `config = <file>`: the object may sit in parentheses, and a `;` may end it.
    let mut parens = Vec::new();
    while p.peek() == Some('(') {
        parens.push(p.pos());
        p.bump();
        p.skip()?;
    }
    if p.peek() != Some('{') {
        return Err(p.error_here("expected the configuration object, `{ … }`"));
    }
    let root = p.value("")?;
    for open in parens.iter().rev() {
        p.skip()?;
        match p.peek() {
            Some(')') => p.bump(),
            _ => return Err(p.after_value("", root.at, &format!("`(` at {open} is not closed"))),
        }
    }
    p.skip()?;
    if p.peek() == Some(';') {
        p.bump();
        p.skip()?;
    }
    if p.peek().is_some() {
        return Err(p.after_value("", root.at, "nothing may follow the configuration object"));
    }
    Ok(root)
}

struct Parser {
    chars: Vec<char>,
    i: usize,
    line: u32,
    col: u32,
}

fn is_line_end(c: char) -> bool {
    matches!(c, '\n' | '\r' | '\u{2028}' | '\u{2029}')
}

fn is_id_start(c: char) -> bool {
    c == '$' || c == '_' || c.is_alphabetic()
}

fn is_id_char(c: char) -> bool {
    is_id_start(c) || c.is_alphanumeric() || c == '\u{200c}' || c == '\u{200d}'
}

impl Parser {
    fn new(text: &str) -> Parser {
        Parser { chars: text.chars().collect(), i: 0, line: 1, col: 1 }
    }

    fn peek(&self) -> Option<char> {
        self.chars.get(self.i).copied()
    }

    fn peek_at(&self, n: usize) -> Option<char> {
        self.chars.get(self.i + n).copied()
    }

    fn pos(&self) -> Pos {
        Pos { line: self.line, col: self.col }
    }

    fn bump(&mut self) {
        if let Some(c) = self.peek() {
            self.i += 1;
            // `\r\n` is one line end.
            if is_line_end(c) && !(c == '\r' && self.peek() == Some('\n')) {
                self.line += 1;
                self.col = 1;
            } else if !is_line_end(c) {
                self.col += 1;
            }
        }
    }

    fn error_at(&self, at: Pos, msg: &str) -> ConfigError {
        ConfigError(format!("{at}: {msg}"))
    }

    fn error_here(&self, msg: &str) -> ConfigError {
        match self.peek() {
            Some(c) => self.error_at(self.pos(), &format!("{msg}, found `{c}`")),
            None => self.error_at(self.pos(), &format!("{msg}, found the end of the file")),
        }
    }

    fn key_error(&self, at: Pos, key: &str, msg: &str) -> ConfigError {
        if key.is_empty() {
            self.error_at(at, msg)
        } else {
            self.error_at(at, &format!("`{key}`: {msg}"))
        }
    }

    /// The text from `at` to the end of the expression it starts (the next `,`, closing bracket
    /// or line end outside brackets and quotes), shortened, for messages.
    fn snippet_from(&self, start: usize) -> String {
        let mut depth = 0i32;
        let mut quote = None;
        let mut out = String::new();
        for &c in self.chars.iter().skip(start) {
            match quote {
                Some(q) if c == q => quote = None,
                Some(_) => {}
                None => match c {
                    '\'' | '"' | '`' => quote = Some(c),
                    '(' | '[' | '{' => depth += 1,
                    ')' | ']' | '}' if depth == 0 => break,
                    ')' | ']' | '}' => depth -= 1,
                    ',' if depth == 0 => break,
                    _ if is_line_end(c) && depth == 0 => break,
                    _ => {}
                },
            }
            out.push(c);
            if out.chars().count() >= 60 {
                out.push('…');
                break;
            }
        }
        out.trim().to_string()
    }

    /// The error for code where a value should be: it names the key and shows the expression.
    fn code_error(&self, at: Pos, start: usize, key: &str) -> ConfigError {
        let what = self.snippet_from(start);
        self.key_error(
            at,
            key,
            &format!(
                "`{what}` is code, not a value: kstatsd reads config.js without running it, so only \
                 literals (strings, numbers, true, false, arrays, objects) are accepted; write the \
                 value itself"
            ),
        )
    }

    /// After a value that started at `at`: what follows is not `,` or a closing bracket. An
    /// operator, a call or a member access makes the whole an expression; anything else is a
    /// syntax error.
    fn after_value(&self, key: &str, at: Pos, otherwise: &str) -> ConfigError {
        match self.peek() {
            Some(c) if "+-*/%(.[?&|^<>=!`".contains(c) => {
                let start = self.value_start(at);
                self.code_error(at, start, key)
            }
            _ => self.key_error(self.pos(), key, &format!("{otherwise}{}", self.found())),
        }
    }

    fn found(&self) -> String {
        match self.peek() {
            Some(c) => format!(", found `{c}`"),
            None => ", found the end of the file".into(),
        }
    }

    /// The char index of the value that starts at `at` (walks back from the current index).
    fn value_start(&self, at: Pos) -> usize {
        let (mut line, mut col) = (1u32, 1u32);
        for (i, &c) in self.chars.iter().enumerate() {
            if line == at.line && col == at.col {
                return i;
            }
            if is_line_end(c) && !(c == '\r' && self.chars.get(i + 1) == Some(&'\n')) {
                line += 1;
                col = 1;
            } else if !is_line_end(c) {
                col += 1;
            }
        }
        self.i
    }

    /// Skips whitespace and comments.
    fn skip(&mut self) -> Result<(), ConfigError> {
        loop {
            match self.peek() {
                Some(c) if c.is_whitespace() || c == '\u{feff}' => self.bump(),
                Some('/') if self.peek_at(1) == Some('/') => {
                    while self.peek().is_some_and(|c| !is_line_end(c)) {
                        self.bump();
                    }
                }
                Some('/') if self.peek_at(1) == Some('*') => {
                    let at = self.pos();
                    self.bump();
                    self.bump();
                    loop {
                        match self.peek() {
                            None => return Err(self.error_at(at, "this `/*` comment is never closed")),
                            Some('*') if self.peek_at(1) == Some('/') => {
                                self.bump();
                                self.bump();
                                break;
                            }
                            Some(_) => self.bump(),
                        }
                    }
                }
                _ => return Ok(()),
            }
        }
    }

    fn value(&mut self, key: &str) -> Result<Node, ConfigError> {
        let at = self.pos();
        let start = self.i;
        let value = match self.peek() {
            Some('{') => self.object(key)?,
            Some('[') => self.array(key)?,
            Some(q @ ('"' | '\'' | '`')) => Js::Str(self.string(q, key)?),
            Some(c) if c.is_ascii_digit() || c == '.' || c == '-' || c == '+' => self.number(key)?,
            Some(c) if is_id_start(c) || c == '\\' => {
                let word = self.identifier();
                match word.as_str() {
                    "true" => Js::Bool(true),
                    "false" => Js::Bool(false),
                    "null" => Js::Null,
                    "undefined" => Js::Undefined,
                    _ => return Err(self.code_error(at, start, key)),
                }
            }
            Some(c) if "(!~".contains(c) => return Err(self.code_error(at, start, key)),
            _ => return Err(self.key_error(at, key, &format!("expected a value{}", self.found()))),
        };
        Ok(Node { at, value })
    }

    fn identifier(&mut self) -> String {
        let mut s = String::new();
        while let Some(c) = self.peek() {
            if is_id_char(c) {
                s.push(c);
                self.bump();
            } else {
                break;
            }
        }
        s
    }

    fn object(&mut self, path: &str) -> Result<Js, ConfigError> {
        let open = self.pos();
        self.bump();
        let mut members = Vec::new();
        loop {
            self.skip()?;
            let at = self.pos();
            let start = self.i;
            let key = match self.peek() {
                Some('}') => {
                    self.bump();
                    return Ok(Js::Obj(members));
                }
                Some(q @ ('"' | '\'')) => self.string(q, path)?,
                Some(c) if is_id_start(c) => self.identifier(),
                Some(c)
                    if c.is_ascii_digit()
                        || (c == '.' && self.peek_at(1).is_some_and(|d| d.is_ascii_digit())) =>
                {
                    match self.number(path)? {
                        Js::Num(n) => js_number_text(n),
                        _ => unreachable!("number() returns numbers"),
                    }
                }
                Some('[') | Some('.') => return Err(self.code_error(at, start, path)),
                None => return Err(self.error_at(open, "this `{` is never closed")),
                Some(_) => return Err(self.key_error(at, path, &format!("expected a key{}", self.found()))),
            };
            let full = if path.is_empty() { key.clone() } else { format!("{path}.{key}") };
            self.skip()?;
            match self.peek() {
                Some(':') => self.bump(),
                // `{ port }` reads a variable, `{ f() {} }` defines a function.
                Some(',' | '}' | '(') => return Err(self.code_error(at, start, &full)),
                _ => return Err(self.key_error(self.pos(), &full, &format!("expected `:`{}", self.found()))),
            }
            self.skip()?;
            let value = self.value(&full)?;
            self.skip()?;
            let value_at = value.at;
            members.push(Member { key, at, value });
            match self.peek() {
                Some(',') => self.bump(),
                Some('}') => {}
                None => return Err(self.error_at(open, "this `{` is never closed")),
                _ => return Err(self.after_value(&full, value_at, "expected `,` or `}`")),
            }
        }
    }

    fn array(&mut self, path: &str) -> Result<Js, ConfigError> {
        let open = self.pos();
        self.bump();
        let mut items = Vec::new();
        loop {
            self.skip()?;
            let here = format!("{path}[{}]", items.len());
            match self.peek() {
                Some(']') => {
                    self.bump();
                    return Ok(Js::Arr(items));
                }
                Some(',') => return Err(self.key_error(self.pos(), &here, "an empty array element (`,,`)")),
                None => return Err(self.error_at(open, "this `[` is never closed")),
                _ => {}
            }
            let value = self.value(&here)?;
            self.skip()?;
            let value_at = value.at;
            items.push(value);
            match self.peek() {
                Some(',') => self.bump(),
                Some(']') => {}
                None => return Err(self.error_at(open, "this `[` is never closed")),
                _ => return Err(self.after_value(&here, value_at, "expected `,` or `]`")),
            }
        }
    }

    /// A quoted string with JavaScript's escapes; `q` is the quote. A template (backtick)
    /// string with `${…}` is code.
    fn string(&mut self, q: char, key: &str) -> Result<String, ConfigError> {
        let at = self.pos();
        let start = self.i;
        self.bump();
        let mut s = String::new();
        loop {
            let Some(c) = self.peek() else {
                return Err(self.key_error(at, key, "this string is never closed"));
            };
            if c == q {
                self.bump();
                return Ok(s);
            }
            if q == '`' && c == '$' && self.peek_at(1) == Some('{') {
                return Err(self.code_error(at, start, key));
            }
            if c == '\\' {
                let esc_at = self.pos();
                self.bump();
                self.escape(&mut s, esc_at, key)?;
                continue;
            }
            if is_line_end(c) && q != '`' && c != '\u{2028}' && c != '\u{2029}' {
                return Err(self.key_error(at, key, "this string is never closed on its line"));
            }
            if c == '\r' && q == '`' {
                // A template literal reads CR LF and CR as LF.
                self.bump();
                if self.peek() == Some('\n') {
                    self.bump();
                }
                s.push('\n');
                continue;
            }
            s.push(c);
            self.bump();
        }
    }

    fn escape(&mut self, s: &mut String, at: Pos, key: &str) -> Result<(), ConfigError> {
        let bad = |p: &Parser, what: &str| p.key_error(at, key, what);
        let Some(c) = self.peek() else { return Err(bad(self, "a `\\` at the end of the file")) };
        self.bump();
        match c {
            'n' => s.push('\n'),
            't' => s.push('\t'),
            'r' => s.push('\r'),
            'b' => s.push('\u{8}'),
            'f' => s.push('\u{c}'),
            'v' => s.push('\u{b}'),
            '0' if !self.peek().is_some_and(|d| d.is_ascii_digit()) => s.push('\0'),
            '0'..='9' => return Err(bad(self, "octal escapes (`\\1`) are not allowed; use `\\x..`")),
            'x' => {
                let v = self.hex_digits(2).ok_or_else(|| bad(self, "`\\x` needs two hex digits"))?;
                s.push(char::from_u32(v).expect("two hex digits are a char"));
            }
            'u' => {
                let v = if self.peek() == Some('{') {
                    self.bump();
                    let mut v: u32 = 0;
                    let mut n = 0;
                    while let Some(d) = self.peek().and_then(|c| c.to_digit(16)) {
                        v = v.saturating_mul(16).saturating_add(d);
                        n += 1;
                        self.bump();
                    }
                    if n == 0 || self.peek() != Some('}') {
                        return Err(bad(self, "`\\u{…}` needs hex digits and a `}`"));
                    }
                    self.bump();
                    v
                } else {
                    let hi = self.hex_digits(4).ok_or_else(|| bad(self, "`\\u` needs four hex digits"))?;
                    // A surrogate pair written as two escapes.
                    if (0xD800..0xDC00).contains(&hi)
                        && self.peek() == Some('\\')
                        && self.peek_at(1) == Some('u')
                    {
                        let save = (self.i, self.line, self.col);
                        self.bump();
                        self.bump();
                        match self.hex_digits(4) {
                            Some(lo) if (0xDC00..0xE000).contains(&lo) => {
                                0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00)
                            }
                            _ => {
                                (self.i, self.line, self.col) = save;
                                hi
                            }
                        }
                    } else {
                        hi
                    }
                };
                s.push(char::from_u32(v).ok_or_else(|| bad(self, "this `\\u` escape is not a character"))?);
            }
            // A line continuation: the backslash and the line end vanish.
            '\r' => {
                if self.peek() == Some('\n') {
                    self.bump();
                }
            }
            c if is_line_end(c) => {}
            other => s.push(other),
        }
        Ok(())
    }

    fn hex_digits(&mut self, n: usize) -> Option<u32> {
        let mut v = 0;
        for k in 0..n {
            v = v * 16 + self.peek_at(k)?.to_digit(16)?;
        }
        for _ in 0..n {
            self.bump();
        }
        Some(v)
    }

    /// A number with an optional unary sign: `10`, `-10`, `+1.5`, `.5`, `5.`, `1e3`, `2.5E-1`,
    /// `1_000`, `0x1F`, `0o17`, `0b101`, and legacy octal `0660` (etsy's `eval` is not strict).
    fn number(&mut self, key: &str) -> Result<Js, ConfigError> {
        let at = self.pos();
        let start = self.i;
        let mut sign = 1.0;
        while let Some(c @ ('-' | '+')) = self.peek() {
            if c == '-' {
                sign = -sign;
            }
            self.bump();
            self.skip()?;
            if self.peek() == Some(c) && self.chars[self.i - 1] == c {
                // `--x` / `++x` are operators.
                return Err(self.code_error(at, start, key));
            }
        }
        let num_at = self.pos();
        let not_a_number = |p: &Parser| p.key_error(num_at, key, &format!("expected a number{}", p.found()));
        match self.peek() {
            Some(c)
                if c.is_ascii_digit()
                    || (c == '.' && self.peek_at(1).is_some_and(|d| d.is_ascii_digit())) => {}
            Some(c) if is_id_start(c) || c == '(' => return Err(self.code_error(at, start, key)),
            _ => return Err(not_a_number(self)),
        }
        let radix = match (self.peek(), self.peek_at(1)) {
            (Some('0'), Some('x' | 'X')) => Some(16),
            (Some('0'), Some('o' | 'O')) => Some(8),
            (Some('0'), Some('b' | 'B')) => Some(2),
            _ => None,
        };
        let mut text = String::new();
        let value = if let Some(radix) = radix {
            self.bump();
            self.bump();
            self.digits(&mut text, radix, key)?;
            if text.is_empty() {
                return Err(not_a_number(self));
            }
            u128::from_str_radix(&text, radix).map(|v| v as f64).unwrap_or(f64::INFINITY)
        } else {
            self.digits(&mut text, 10, key)?;
            let legacy_octal =
                text.len() > 1 && text.starts_with('0') && text.bytes().all(|b| (b'0'..=b'7').contains(&b));
            if legacy_octal {
                u128::from_str_radix(&text, 8).map(|v| v as f64).unwrap_or(f64::INFINITY)
            } else {
                // `089` is decimal, and so may take a fraction and an exponent (`08.5`).
                if self.peek() == Some('.') {
                    text.push('.');
                    self.bump();
                    self.digits(&mut text, 10, key)?;
                }
                if self.peek().is_some_and(|c| c == 'e' || c == 'E') {
                    text.push('e');
                    self.bump();
                    if let Some(s @ ('+' | '-')) = self.peek() {
                        text.push(s);
                        self.bump();
                    }
                    let before = text.len();
                    self.digits(&mut text, 10, key)?;
                    if text.len() == before {
                        return Err(self.key_error(num_at, key, "an exponent needs digits (`1e3`)"));
                    }
                }
                let t = if text.starts_with('.') { format!("0{text}") } else { text.clone() };
                let t = if t.ends_with('.') { format!("{t}0") } else { t };
                let t = t.replace(".e", ".0e");
                t.parse::<f64>().map_err(|_| not_a_number(self))?
            }
        };
        if self.peek().is_some_and(|c| is_id_char(c) || c == '.') {
            // `10px`, `1.2.3`, `10n`: not a number literal kstatsd reads.
            return Err(self.key_error(
                num_at,
                key,
                &format!("`{}` is not a number", self.snippet_from(start)),
            ));
        }
        Ok(Js::Num(sign * value))
    }

    /// Digits of `radix` with `_` separators between them, appended to `out`.
    fn digits(&mut self, out: &mut String, radix: u32, key: &str) -> Result<(), ConfigError> {
        let mut last_digit = false;
        while let Some(c) = self.peek() {
            if c.is_digit(radix) {
                out.push(c);
                last_digit = true;
            } else if c == '_' && last_digit && self.peek_at(1).is_some_and(|d| d.is_digit(radix)) {
                last_digit = false;
            } else if c == '_' {
                return Err(self.key_error(self.pos(), key, "a `_` must sit between two digits"));
            } else {
                break;
            }
            self.bump();
        }
        Ok(())
    }
}

/// A number used as a key, as JavaScript spells it (`1` for 1.0).
fn js_number_text(n: f64) -> String {
    if n.fract() == 0.0 && n.abs() < 1e21 {
        format!("{}", n as i128)
    } else {
        format!("{n}")
    }
}

// ---------------------------------------------------------------------------------------------
// The mapping onto kstatsd's file structure
// ---------------------------------------------------------------------------------------------

/// A config.js translated: the equivalent kstatsd file, and what kstatsd does not use.
#[derive(Debug)]
pub struct Translation {
    pub file: FileConfig,
    /// Keys kstatsd ignores (with a short reason where one helps), in file order.
    pub ignored: Vec<String>,
    /// Which config.js key each kstatsd key came from, for validation errors.
    origins: Vec<Origin>,
}

/// A kstatsd key (as validation errors name it), the config.js key it came from, and where.
type Origin = (String, String, Pos);

/// A validation error about a kstatsd key, with the config.js key it came from.
fn explain(origins: &[Origin], e: ConfigError) -> ConfigError {
    let found = origins.iter().filter(|(toml, _, _)| e.0.contains(toml.as_str())).max_by_key(|o| o.0.len());
    match found {
        Some((toml, etsy, at)) => ConfigError(format!("{} (`{etsy}` at {at} gives {toml})", e.0)),
        None => e,
    }
}

impl Translation {
    /// The one start-up warning, `None` when every key is used.
    pub fn warning(&self) -> Option<String> {
        (!self.ignored.is_empty()).then(|| {
            format!(
                "config.js: {} key(s) kstatsd does not use, ignored: {}",
                self.ignored.len(),
                self.ignored.join("; ")
            )
        })
    }
}

/// Reads a config.js and validates it with the overrides, exactly as a TOML file would be; the
/// unused keys are logged in one warning.
pub fn load(text: &str, ov: &Overrides) -> Result<Config, ConfigError> {
    let t = translate(text)?;
    if let Some(w) = t.warning() {
        log::warn!("{w}");
    }
    Config::build(t.file, ov).map_err(|e| explain(&t.origins, e))
}

/// Parses and translates a config.js.
pub fn translate(text: &str) -> Result<Translation, ConfigError> {
    let root = parse(text)?;
    let Js::Obj(members) = &root.value else { unreachable!("parse() returns an object") };
    let mut m = Mapper {
        out: FileConfig::default(),
        ignored: Vec::new(),
        origins: Vec::new(),
        root: Obj::new(members, ""),
    };
    m.run()?;
    Ok(Translation { file: m.out, ignored: m.ignored, origins: m.origins })
}

/// One object's members by key (the last of duplicates wins), with which ones were used.
struct Obj<'a> {
    path: String,
    members: Vec<&'a Member>,
    used: Vec<bool>,
    duplicates: Vec<String>,
}

impl<'a> Obj<'a> {
    fn new(members: &'a [Member], path: &str) -> Obj<'a> {
        let mut kept: Vec<&Member> = Vec::new();
        let mut duplicates = Vec::new();
        for m in members {
            if let Some(i) = kept.iter().position(|k| k.key == m.key) {
                duplicates.push(format!(
                    "{} (given twice; the last one, at {}, is used)",
                    join(path, &m.key),
                    m.at
                ));
                kept.remove(i);
            }
            kept.push(m);
        }
        let used = vec![false; kept.len()];
        Obj { path: path.to_string(), members: kept, used, duplicates }
    }

    fn full(&self, key: &str) -> String {
        join(&self.path, key)
    }

    /// The value of `key`, marked used; `None` when absent or `undefined`.
    fn get(&mut self, key: &str) -> Option<&'a Node> {
        let i = self.members.iter().position(|m| m.key == key)?;
        self.used[i] = true;
        let node = &self.members[i].value;
        (node.value != Js::Undefined).then_some(node)
    }

    fn bool(&mut self, key: &str) -> Result<Option<bool>, ConfigError> {
        match self.get(key) {
            None => Ok(None),
            Some(Node { value: Js::Bool(b), .. }) => Ok(Some(*b)),
            Some(n) => Err(wrong(&self.full(key), n, "true or false")),
        }
    }

    fn num(&mut self, key: &str) -> Result<Option<(f64, Pos)>, ConfigError> {
        match self.get(key) {
            None => Ok(None),
            Some(Node { value: Js::Num(x), at }) => Ok(Some((*x, *at))),
            Some(n) => Err(wrong(&self.full(key), n, "a number")),
        }
    }

    fn str(&mut self, key: &str) -> Result<Option<(String, Pos)>, ConfigError> {
        match self.get(key) {
            None => Ok(None),
            Some(Node { value: Js::Str(s), at }) => Ok(Some((s.clone(), *at))),
            Some(n) => Err(wrong(&self.full(key), n, "a string")),
        }
    }

    /// A port: an integer from 1 to 65535, or a string of digits (Node accepts both).
    fn port(&mut self, key: &str) -> Result<Option<(u16, Pos)>, ConfigError> {
        let full = self.full(key);
        let Some(n) = self.get(key) else { return Ok(None) };
        let v = match &n.value {
            Js::Num(x) => *x,
            Js::Str(s) if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) => s.parse().unwrap_or(0.0),
            _ => return Err(wrong(&full, n, "a port number")),
        };
        // `port: 0` is falsy: etsy's `port || 8125` takes the default.
        if v == 0.0 {
            return Ok(None);
        }
        if v.fract() != 0.0 || !(1.0..=65535.0).contains(&v) {
            return Err(at_key(&full, n.at, &format!("{v} is not a port (1 to 65535)")));
        }
        Ok(Some((v as u16, n.at)))
    }

    /// The keys not used, for the warning (and duplicates).
    fn leftovers(&self, out: &mut Vec<String>) {
        out.extend(self.duplicates.iter().cloned());
        for (m, used) in self.members.iter().zip(&self.used) {
            if !used {
                out.push(self.full(&m.key));
            }
        }
    }

    /// Marks `key` used and records it as ignored with `why`, if it is present.
    fn ignore(&mut self, key: &str, why: &str, out: &mut Vec<String>) {
        if let Some(i) = self.members.iter().position(|m| m.key == key) {
            self.used[i] = true;
            let name = self.full(key);
            out.push(if why.is_empty() { name } else { format!("{name} ({why})") });
        }
    }
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

fn at_key(key: &str, at: Pos, msg: &str) -> ConfigError {
    ConfigError(format!("{at}: `{key}`: {msg}"))
}

fn wrong(key: &str, n: &Node, want: &str) -> ConfigError {
    at_key(key, n.at, &format!("expected {want}, found {}", n.value.kind()))
}

/// What a `backends` entry names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Backend {
    Graphite,
    Console,
    Kafka,
}

/// `./backends/graphite`, `./backends/console` (etsy's own, with or without `.js`), and any
/// path or package name ending in `kafka-backend` (statsd-kafka-backend).
fn backend_kind(name: &str) -> Option<Backend> {
    let trimmed = name.trim().trim_end_matches('/');
    let trimmed = trimmed.strip_suffix(".js").unwrap_or(trimmed);
    let mut parts = trimmed.rsplit('/');
    let last = parts.next().unwrap_or("");
    let parent = parts.next();
    match (parent, last) {
        (Some("backends"), "graphite") => Some(Backend::Graphite),
        (Some("backends"), "console") => Some(Backend::Console),
        (_, l) if l.ends_with("kafka-backend") => Some(Backend::Kafka),
        _ => None,
    }
}

/// The names one backend gives (etsy's `graphite.*`, statsd-kafka-backend's `kafka.*`).
#[derive(Debug, Clone, PartialEq)]
struct Names {
    legacy: bool,
    global_prefix: String,
    prefix_counter: String,
    prefix_timer: String,
    prefix_gauge: String,
    prefix_set: String,
    global_suffix: String,
}

impl Names {
    /// The string field a config.js key sets (`None` for `legacyNamespace`, a boolean).
    fn text(&mut self, etsy_key: &str) -> Option<&mut String> {
        match etsy_key {
            "globalPrefix" => Some(&mut self.global_prefix),
            "prefixCounter" => Some(&mut self.prefix_counter),
            "prefixTimer" => Some(&mut self.prefix_timer),
            "prefixGauge" => Some(&mut self.prefix_gauge),
            "prefixSet" => Some(&mut self.prefix_set),
            "globalSuffix" => Some(&mut self.global_suffix),
            _ => None,
        }
    }
}

/// (config.js key in `graphite.` / `kafka.`, kstatsd key in `[aggregate]`).
const NAME_KEYS: [(&str, &str); 7] = [
    ("legacyNamespace", "legacy_namespace"),
    ("globalPrefix", "global_prefix"),
    ("prefixCounter", "prefix_counter"),
    ("prefixTimer", "prefix_timer"),
    ("prefixGauge", "prefix_gauge"),
    ("prefixSet", "prefix_set"),
    ("globalSuffix", "global_suffix"),
];

struct Mapper<'a> {
    out: FileConfig,
    ignored: Vec<String>,
    origins: Vec<Origin>,
    root: Obj<'a>,
}

impl<'a> Mapper<'a> {
    fn origin(&mut self, toml: &str, etsy: &str, at: Pos) {
        self.origins.push((toml.to_string(), etsy.to_string(), at));
    }

    fn run(&mut self) -> Result<(), ConfigError> {
        self.listeners()?;
        self.management()?;
        self.flushing()?;
        self.idle()?;
        self.names()?;
        self.backends()?;
        self.documented_but_unused()?;
        let mut rest = Vec::new();
        self.root.leftovers(&mut rest);
        self.ignored.extend(rest);
        Ok(())
    }

    // --- the listener: port, address, address_ipv6, server, socket, socket_mod, servers ----

    fn listeners(&mut self) -> Result<(), ConfigError> {
        let mut udp = Vec::new();
        let mut tcp = Vec::new();
        let mut unix = Vec::new();
        let mut mode: Option<(String, String, Pos)> = None;
        match self.root.get("servers") {
            Some(Node { value: Js::Arr(items), .. }) => {
                for key in ["port", "address", "address_ipv6", "server", "socket", "socket_mod"] {
                    self.root.ignore(key, "unused: `servers` is given", &mut self.ignored);
                }
                for (i, item) in items.iter().enumerate() {
                    let path = format!("servers[{i}]");
                    let Js::Obj(members) = &item.value else {
                        return Err(wrong(&path, item, "an object"));
                    };
                    let mut entry = Obj::new(members, &path);
                    server_entry(&mut entry, &mut udp, &mut tcp, &mut unix, &mut mode)?;
                    entry.leftovers(&mut self.ignored);
                }
            }
            Some(n) => return Err(wrong("servers", n, "an array")),
            None => {
                let root = &mut self.root;
                server_entry(root, &mut udp, &mut tcp, &mut unix, &mut mode)?;
            }
        }
        self.out.server.udp = Some(udp);
        self.out.server.tcp = Some(tcp);
        self.out.server.unix_stream = Some(unix);
        if let Some((mode, key, at)) = mode {
            self.origin("server.unix_mode", &key, at);
            self.out.server.unix_mode = Some(mode);
        }
        Ok(())
    }

    // --- management: mgmt_port, mgmt_address -------------------------------------------------

    fn management(&mut self) -> Result<(), ConfigError> {
        let port = self.root.port("mgmt_port")?.map_or(8126, |p| p.0);
        // The management port takes mutating commands: without an `mgmt_address` it stays on
        // loopback (etsy bound every interface), the one place kstatsd departs from the file.
        let ip = match self.root.str("mgmt_address")? {
            None => std::net::IpAddr::from([127, 0, 0, 1]),
            address => listen_ip(address.as_ref(), false, "mgmt_address")?,
        };
        self.out.server.admin = Some(SocketAddr::new(ip, port).to_string());
        Ok(())
    }

    // --- flushing and statistics ---------------------------------------------------------------

    fn flushing(&mut self) -> Result<(), ConfigError> {
        // etsy: `Number(flushInterval || 10000)` milliseconds.
        if let Some((ms, at)) = self.root.num("flushInterval")? {
            if ms != 0.0 {
                let interval =
                    format!("{ms}ms").parse::<Period>().map_err(|e| at_key("flushInterval", at, &e))?;
                self.out.aggregate.flush_interval = Some(interval);
                self.origin("aggregate.flush_interval", "flushInterval", at);
            }
        }
        if let Some(n) = self.root.get("percentThreshold") {
            let list = match &n.value {
                Js::Num(x) => vec![*x],
                Js::Arr(items) => {
                    let mut v = Vec::new();
                    for (i, item) in items.iter().enumerate() {
                        match item.value {
                            Js::Num(x) => v.push(x),
                            _ => return Err(wrong(&format!("percentThreshold[{i}]"), item, "a number")),
                        }
                    }
                    v
                }
                _ => return Err(wrong("percentThreshold", n, "a number or an array of numbers")),
            };
            self.out.aggregate.percentiles = Some(list);
            self.origin("aggregate.percentiles", "percentThreshold", n.at);
        }
        if let Some(n) = self.root.get("histogram") {
            let Js::Arr(items) = &n.value else { return Err(wrong("histogram", n, "an array")) };
            let mut rules = Vec::new();
            for (i, item) in items.iter().enumerate() {
                let path = format!("histogram[{i}]");
                let Js::Obj(members) = &item.value else { return Err(wrong(&path, item, "an object")) };
                let mut rule = Obj::new(members, &path);
                let metric = match rule.str("metric")? {
                    Some((m, _)) => m,
                    None => return Err(at_key(&path, item.at, "needs `metric` (a string)")),
                };
                let bins_path = format!("{path}.bins");
                let bins = match rule.get("bins") {
                    Some(Node { value: Js::Arr(bins), at }) => {
                        if bins.is_empty() {
                            return Err(at_key(
                                &bins_path,
                                *at,
                                "an empty bins list (no histogram for the timers this rule matches \
                                 first) has no kstatsd equivalent; remove the rule or give bins",
                            ));
                        }
                        let mut out = Vec::new();
                        for (j, b) in bins.iter().enumerate() {
                            out.push(match &b.value {
                                Js::Num(x) => BinFile::Number(*x),
                                Js::Str(s) if s == "inf" => BinFile::Word(s.clone()),
                                _ => return Err(wrong(&format!("{bins_path}[{j}]"), b, "a number or 'inf'")),
                            });
                        }
                        out
                    }
                    Some(b) => return Err(wrong(&bins_path, b, "an array")),
                    None => return Err(at_key(&path, item.at, "needs `bins` (an array)")),
                };
                rule.leftovers(&mut self.ignored);
                rules.push(HistogramFile { metric, bins });
            }
            self.out.aggregate.histograms = Some(Histograms(rules));
            self.origin("histogram `", "histogram", n.at);
        }
        self.root.ignore("calculatedTimerMetrics", "kstatsd sends every timer statistic", &mut self.ignored);
        Ok(())
    }

    // --- idle series -----------------------------------------------------------------------------

    fn idle(&mut self) -> Result<(), ConfigError> {
        let idle = self.root.bool("deleteIdleStats")?;
        let a = &mut self.out.aggregate;
        a.delete_idle_stats = idle;
        a.delete_counters = self.root.bool("deleteCounters")?;
        a.delete_timers = self.root.bool("deleteTimers")?;
        a.delete_sets = self.root.bool("deleteSets")?;
        a.delete_gauges = self.root.bool("deleteGauges")?;
        let delete_gauges = a.delete_gauges.unwrap_or(idle.unwrap_or(false));
        // etsy counts a gauge's TTL down at every flush, the one of its own interval included,
        // and forgets it at 0: `gaugesMaxTTL: n` keeps an idle gauge for n - 1 flushes. It only
        // acts with deleteGauges; a value that is not an integer above 1 is 1.
        if let Some((ttl, at)) = self.root.num("gaugesMaxTTL")? {
            if delete_gauges && ttl.fract() == 0.0 && ttl > 1.0 {
                let kept = (ttl - 1.0).min(f64::from(u32::MAX)) as u32;
                self.out.aggregate.gauges_max_ttl = Some(kept);
                self.origin("aggregate.gauges_max_ttl", "gaugesMaxTTL", at);
            }
        }
        Ok(())
    }

    // --- names -----------------------------------------------------------------------------------

    fn names(&mut self) -> Result<(), ConfigError> {
        if let Some((p, at)) = self.root.str("prefixStats")? {
            self.out.aggregate.meta_prefix = Some(p);
            self.origin("aggregate.meta_prefix", "prefixStats", at);
        }
        self.out.aggregate.sanitize_keys = self.root.bool("keyNameSanitize")?;
        Ok(())
    }

    // --- backends: graphite, console, statsd-kafka-backend ---------------------------------------

    fn backends(&mut self) -> Result<(), ConfigError> {
        let mut kinds = Vec::new();
        match self.root.get("backends") {
            None => kinds.push(Backend::Graphite),
            Some(Node { value: Js::Arr(items), .. }) => {
                for (i, item) in items.iter().enumerate() {
                    let key = format!("backends[{i}]");
                    let Js::Str(name) = &item.value else { return Err(wrong(&key, item, "a string")) };
                    let kind = backend_kind(name).ok_or_else(|| {
                        at_key(
                            &key,
                            item.at,
                            &format!(
                                "`{name}` is not a backend kstatsd has: it has \"./backends/graphite\", \
                                 \"./backends/console\" and statsd-kafka-backend (a name or path ending \
                                 in kafka-backend)"
                            ),
                        )
                    })?;
                    if !kinds.contains(&kind) {
                        kinds.push(kind);
                    }
                }
            }
            Some(n) => return Err(wrong("backends", n, "an array of strings")),
        }
        let graphite = kinds.contains(&Backend::Graphite);
        let kafka = kinds.contains(&Backend::Kafka);

        // The names: kstatsd has one naming for every sink, so the two backends must agree.
        let graphite_names = self.section_names("graphite", graphite, true)?;
        let kafka_names = self.section_names("kafka", kafka, false)?;
        let names = match (graphite_names, kafka_names) {
            (Some(g), Some(k)) => {
                let (g_names, g_given) = g;
                let (k_names, k_given) = k;
                if let Some(diff) = names_conflict(&g_names, &k_names) {
                    return Err(ConfigError(format!(
                        "graphite.{diff} and kafka.{diff} name metrics differently, but kstatsd gives every \
                         sink the same names: make them agree (statsd-kafka-backend has no globalSuffix: \
                         graphite.globalSuffix must be empty with it)"
                    )));
                }
                Some((g_names, [g_given, k_given].concat()))
            }
            (Some(g), None) => Some(g),
            (None, Some(k)) => Some(k),
            (None, None) => None,
        };
        if let Some((n, given)) = names {
            let a = &mut self.out.aggregate;
            a.legacy_namespace = Some(n.legacy);
            a.global_prefix = Some(n.global_prefix);
            a.prefix_counter = Some(n.prefix_counter);
            a.prefix_timer = Some(n.prefix_timer);
            a.prefix_gauge = Some(n.prefix_gauge);
            a.prefix_set = Some(n.prefix_set);
            a.global_suffix = Some(n.global_suffix);
            for (toml, etsy, at) in given {
                self.origin(&toml, &etsy, at);
            }
        }

        // Graphite: without graphiteHost etsy's backend processes the metrics and discards them.
        let host = self.root.str("graphiteHost")?;
        let protocol = self.root.str("graphiteProtocol")?;
        let text_port = self.root.port("graphitePort")?;
        let pickle_port = self.root.port("graphitePicklePort")?;
        let explicit = self.root.members.iter().any(|m| m.key == "backends");
        match (graphite, host) {
            (true, Some((host, at))) if !host.is_empty() => {
                let pickle = match &protocol {
                    None => false,
                    Some((p, _)) if p == "text" => false,
                    Some((p, _)) if p == "pickle" => true,
                    Some((p, at)) => {
                        return Err(at_key(
                            "graphiteProtocol",
                            *at,
                            &format!("`{p}` is not 'text' or 'pickle'"),
                        ))
                    }
                };
                let (port, port_key) = if pickle {
                    (pickle_port.map_or(2004, |p| p.0), "graphitePicklePort")
                } else {
                    (text_port.map_or(2003, |p| p.0), "graphitePort")
                };
                self.origin("sinks.graphite.host", "graphiteHost", at);
                if let Some((_, at)) = if pickle { pickle_port } else { text_port } {
                    self.origin("sinks.graphite.port", port_key, at);
                }
                self.out.sinks.graphite = Some(GraphiteSection {
                    host: Some(host),
                    port: Some(port),
                    protocol: Some(if pickle {
                        GraphiteProtocol::Pickle
                    } else {
                        GraphiteProtocol::Plaintext
                    }),
                    ..GraphiteSection::default()
                });
            }
            (true, _) if explicit => {
                self.ignored.push(
                    "backends: ./backends/graphite without graphiteHost (etsy discards what it would send; \
                     so does kstatsd: no Graphite sink)"
                        .into(),
                );
            }
            (true, _) => {}
            (false, host) => {
                if host.is_some() || protocol.is_some() || text_port.is_some() || pickle_port.is_some() {
                    self.ignored.push(
                        "graphiteHost/graphitePort/graphiteProtocol/graphitePicklePort \
                                       (unused: the graphite backend is not loaded)"
                            .into(),
                    );
                }
            }
        }

        // The console.
        let console = kinds.contains(&Backend::Console);
        self.out.sinks.console =
            Some(ConsoleSection { format: Some(if console { "json" } else { "off" }.into()) });
        match self.root.get("console") {
            Some(Node { value: Js::Obj(members), .. }) => {
                let mut c = Obj::new(members, "console");
                c.ignore("prettyprint", "the console prints one JSON object per flush", &mut self.ignored);
                c.leftovers(&mut self.ignored);
            }
            Some(_) => self.ignored.push("console".into()),
            None => {}
        }

        // statsd-kafka-backend: POSTs to `restProxyUrl + "/" + kafkaTopic`.
        let url = self.root.str("restProxyUrl")?;
        let topic = self.root.str("kafkaTopic")?;
        if kafka {
            match url {
                Some((url, at)) => {
                    let (topic, topic_at) = topic.ok_or_else(|| {
                        at_key("restProxyUrl", at, "statsd-kafka-backend also needs `kafkaTopic`")
                    })?;
                    self.out.sinks.kafka_rest = Some(KafkaRestSection {
                        url: Some(Secret(proxy_base(&url))),
                        topic: Some(topic),
                        format: Some(KafkaFormat::Flat),
                        content_type: Some(KafkaContentType::JsonV1),
                        key: Some("none".into()),
                        ..KafkaRestSection::default()
                    });
                    self.origin("sinks.kafka_rest.url", "restProxyUrl", at);
                    self.origin("sinks.kafka_rest.topic", "kafkaTopic", topic_at);
                }
                None => self.ignored.push(
                    "backends: statsd-kafka-backend without restProxyUrl (it sends nothing; nor does kstatsd)"
                        .into(),
                ),
            }
        } else if url.is_some() || topic.is_some() {
            self.ignored.push("restProxyUrl/kafkaTopic (unused: statsd-kafka-backend is not loaded)".into());
        }
        Ok(())
    }

    /// The names the `graphite` or `kafka` section gives, with defaults, and which keys set them;
    /// `None` when that backend is not loaded (then the section is ignored).
    fn section_names(
        &mut self,
        section: &str,
        loaded: bool,
        has_suffix: bool,
    ) -> Result<Option<(Names, Vec<Origin>)>, ConfigError> {
        let node = self.root.get(section);
        if !loaded {
            if node.is_some() {
                let why = format!("unused: the {section} backend is not loaded");
                self.ignored.push(format!("{section} ({why})"));
            }
            return Ok(None);
        }
        let mut names = Names {
            legacy: true,
            global_prefix: "stats".into(),
            prefix_counter: "counters".into(),
            prefix_timer: "timers".into(),
            prefix_gauge: "gauges".into(),
            prefix_set: "sets".into(),
            global_suffix: String::new(),
        };
        let mut given = Vec::new();
        let members = match node {
            None => return Ok(Some((names, given))),
            Some(Node { value: Js::Obj(members), .. }) => members,
            Some(n) => return Err(wrong(section, n, "an object")),
        };
        let mut obj = Obj::new(members, section);
        for (etsy, toml) in NAME_KEYS {
            if etsy == "globalSuffix" && !has_suffix {
                continue;
            }
            let full = obj.full(etsy);
            let Some(node) = obj.get(etsy) else { continue };
            match (&node.value, names.text(etsy)) {
                (Js::Bool(b), None) => names.legacy = *b,
                (_, None) => return Err(wrong(&full, node, "true or false")),
                (Js::Str(s), Some(field)) => *field = s.clone(),
                (_, Some(_)) => return Err(wrong(&full, node, "a string")),
            }
            given.push((format!("aggregate.{toml}"), full, node.at));
        }
        obj.leftovers(&mut self.ignored);
        Ok(Some((names, given)))
    }

    // --- documented etsy keys with no kstatsd equivalent ---------------------------------------

    fn documented_but_unused(&mut self) -> Result<(), ConfigError> {
        if self.root.bool("dumpMessages")? == Some(true) {
            // Every incoming metric, on stderr.
            self.out.server.debug_dump = Some(String::new());
        }
        // Keys whose value is what kstatsd does anyway are used; other values are listed.
        let same = |m: &mut Obj, key: &str, value: Js| -> bool {
            let i = m.members.iter().position(|x| x.key == key);
            match i {
                Some(i) if m.members[i].value.value == value => {
                    m.used[i] = true;
                    true
                }
                _ => false,
            }
        };
        if !same(&mut self.root, "debug", Js::Bool(false)) {
            self.root.ignore("debug", "use --log debug", &mut self.ignored);
        }
        if !same(&mut self.root, "flush_counts", Js::Bool(true)) {
            self.root.ignore("flush_counts", "kstatsd always sends the counts", &mut self.ignored);
        }
        if !same(&mut self.root, "automaticConfigReload", Js::Bool(false)) {
            self.root.ignore(
                "automaticConfigReload",
                "kstatsd reloads its file on SIGHUP, it does not watch it",
                &mut self.ignored,
            );
        }
        if !same(&mut self.root, "healthStatus", Js::Str("up".into())) {
            self.root.ignore(
                "healthStatus",
                "kstatsd starts up; use the admin `health down`",
                &mut self.ignored,
            );
        }
        for (key, why) in [
            ("title", "the process title is not changed"),
            ("keyFlush", "no frequent-keys log"),
            ("log", "kstatsd logs to stderr"),
            ("repeater", "no repeater"),
            ("repeaterProtocol", "no repeater"),
        ] {
            self.root.ignore(key, why, &mut self.ignored);
        }
        Ok(())
    }
}

/// Whether two backends' names differ; the first differing config.js key. With both legacy,
/// only the suffix counts (the prefixes are not used).
fn names_conflict(g: &Names, k: &Names) -> Option<&'static str> {
    if g.legacy != k.legacy {
        return Some("legacyNamespace");
    }
    if g.global_suffix != k.global_suffix {
        return Some("globalSuffix");
    }
    if g.legacy {
        return None;
    }
    let pairs = [
        ("globalPrefix", &g.global_prefix, &k.global_prefix),
        ("prefixCounter", &g.prefix_counter, &k.prefix_counter),
        ("prefixTimer", &g.prefix_timer, &k.prefix_timer),
        ("prefixGauge", &g.prefix_gauge, &k.prefix_gauge),
        ("prefixSet", &g.prefix_set, &k.prefix_set),
    ];
    pairs.iter().find(|(_, a, b)| a != b).map(|(key, _, _)| *key)
}

/// One etsy server entry (a `servers` element, or the top level without `servers`): etsy's
/// udp server binds `address` (default 0.0.0.0, `::` with address_ipv6) and `port` (8125);
/// its tcp server listens on `socket` (a Unix socket file, chmod'ed to socket_mod) or on
/// `address` and `port`.
fn server_entry(
    e: &mut Obj,
    udp: &mut Vec<String>,
    tcp: &mut Vec<String>,
    unix: &mut Vec<String>,
    mode: &mut Option<(String, String, Pos)>,
) -> Result<(), ConfigError> {
    let server = e.str("server")?;
    let kind = match &server {
        None => "udp",
        Some((s, at)) => {
            let t = s.trim().trim_end_matches('/');
            let t = t.strip_suffix(".js").unwrap_or(t);
            match t.rsplit_once('/') {
                Some((dir, k @ ("udp" | "tcp"))) if dir.ends_with("servers") => k,
                _ => {
                    return Err(at_key(
                        &e.full("server"),
                        *at,
                        &format!("`{s}` is not a server kstatsd has (\"./servers/udp\", \"./servers/tcp\")"),
                    ))
                }
            }
        }
    };
    let port = e.port("port")?.map_or(8125, |p| p.0);
    let v6 = e.bool("address_ipv6")?.unwrap_or(false);
    let address = e.str("address")?;
    if kind == "udp" {
        let ip = listen_ip(address.as_ref(), v6, &e.full("address"))?;
        udp.push(SocketAddr::new(ip, port).to_string());
        return Ok(());
    }
    if let Some((path, _)) = e.str("socket")? {
        unix.push(path);
        let given = match e.get("socket_mod") {
            None => None,
            Some(Node { value: Js::Num(m), at }) if m.fract() == 0.0 && (0.0..=4095.0).contains(m) => {
                Some((format!("{:04o}", *m as u32), *at))
            }
            Some(Node { value: Js::Str(s), at }) => Some((s.clone(), *at)),
            Some(n) => return Err(wrong(&e.full("socket_mod"), n, "a file mode (0660 or \"660\")")),
        };
        if let Some((m, at)) = given {
            let key = e.full("socket_mod");
            if let Some((other, other_key, _)) = mode.as_ref() {
                if *other != m {
                    return Err(at_key(
                        &key,
                        at,
                        &format!(
                            "kstatsd gives every Unix socket one mode; {other_key} already says {other}"
                        ),
                    ));
                }
            }
            *mode = Some((m, key, at));
        }
        return Ok(());
    }
    e.get("socket_mod");
    // Node's net server listens on both IPv4 and IPv6 without an address; kstatsd on 0.0.0.0.
    let ip = listen_ip(address.as_ref(), v6, &e.full("address"))?;
    tcp.push(SocketAddr::new(ip, port).to_string());
    Ok(())
}

/// An address to bind: an IP, `localhost`, or (absent) every interface.
fn listen_ip(address: Option<&(String, Pos)>, v6: bool, key: &str) -> Result<IpAddr, ConfigError> {
    match address {
        None => Ok(if v6 { IpAddr::V6(Ipv6Addr::UNSPECIFIED) } else { IpAddr::V4(Ipv4Addr::UNSPECIFIED) }),
        Some((a, _)) if a.is_empty() => {
            Ok(if v6 { IpAddr::V6(Ipv6Addr::UNSPECIFIED) } else { IpAddr::V4(Ipv4Addr::UNSPECIFIED) })
        }
        Some((a, _)) if a.eq_ignore_ascii_case("localhost") => {
            Ok(if v6 { IpAddr::V6(Ipv6Addr::LOCALHOST) } else { IpAddr::V4(Ipv4Addr::LOCALHOST) })
        }
        Some((a, at)) => a.trim_start_matches('[').trim_end_matches(']').parse().map_err(|_| {
            at_key(key, *at, &format!("`{a}` is not an IP address (kstatsd binds addresses, not host names)"))
        }),
    }
}

/// statsd-kafka-backend POSTs to `restProxyUrl + "/" + kafkaTopic`, and its own example gives
/// `http://localhost:8082/topics`; kstatsd POSTs to `url + "/topics/" + topic`. So a URL ending
/// in `/topics` loses it (the same path as the backend), and a bare base URL is kept.
fn proxy_base(url: &str) -> String {
    let u = url.trim().trim_end_matches('/');
    u.strip_suffix("/topics").unwrap_or(u).to_string()
}

#[cfg(test)]
mod tests;
