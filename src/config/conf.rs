//! The nats-server configuration file format, lexed and parsed into a tree of [`Value`]s that
//! each know their file, line and column.
//!
//! What it reads (nats-server's documented syntax):
//!
//! - `#` and `//` comments to the end of the line;
//! - `key: value`, `key = value` and `key value`; keys bare, `"double"` or `'single'` quoted;
//! - maps `{ ... }`, arrays `[ ... ]`; entries and elements end at a new line, `,` or `;`;
//! - strings `"with \t \n \r \" \\ \xXX escapes"`, `'raw'`, unquoted (up to white space or
//!   one of `, ; ] }`), and `(` block strings `)` spanning lines;
//! - booleans `true false yes no on off` in any case; integers, with an optional size unit
//!   (`k` = 1000, `kb`/`ki`/`kib` = 1024, likewise `m`, `g`, `t`); floats; ISO-8601 dates
//!   (`2016-05-04T18:53:41Z`, kept as text);
//! - `include file.conf` (quoted or not), relative to the including file's directory; its
//!   keys join the map the include sits in;
//! - `$NAME`: the value of the key `NAME` defined earlier in an enclosing map, innermost
//!   first, else the environment variable `NAME` (whose text is read as a value).
//!
//! Errors read `file:line:col: reason` (1-based). The parser carries on after an error from
//! the next line, so one run reports every mistake it can; it never panics on any input.
//!
//! ```
//! use natsu::config::conf::{parse_str, Kind};
//! let (root, errors) = parse_str("port: 4333\nlimits { max: 1KB }\n", "x.conf", ".".as_ref(), &|_| None);
//! assert!(errors.is_empty());
//! assert!(matches!(root.get("port").unwrap().kind, Kind::Int(4333)));
//! ```

use std::fmt;
use std::path::{Path, PathBuf};
use std::rc::Rc;

/// Where a key or value starts: file, 1-based line and 1-based column (in characters).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pos {
    pub file: Rc<str>,
    pub line: u32,
    pub col: u32,
}

impl fmt::Display for Pos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.file, self.line, self.col)
    }
}

/// What a value is.
#[derive(Clone, Debug, PartialEq)]
pub enum Kind {
    Str(String),
    Int(i64),
    Float(f64),
    Bool(bool),
    /// An ISO-8601 date-time, kept as written.
    Date(String),
    Array(Vec<Value>),
    Map(Map),
}

/// One value of the tree, with where it was written.
#[derive(Clone, Debug, PartialEq)]
pub struct Value {
    pub kind: Kind,
    /// Where the value starts; for a `$VAR` reference, where the reference is.
    pub pos: Pos,
    /// The source text of a scalar (`2m`, `yes`), so a caller can tell `2m` the size from a
    /// duration someone meant; empty for maps and arrays.
    pub text: String,
}

impl Value {
    /// The type's name as error messages use it.
    pub fn type_name(&self) -> &'static str {
        match self.kind {
            Kind::Str(_) => "string",
            Kind::Int(_) => "integer",
            Kind::Float(_) => "float",
            Kind::Bool(_) => "boolean",
            Kind::Date(_) => "date",
            Kind::Array(_) => "array",
            Kind::Map(_) => "map",
        }
    }

    /// The value described for an error: `string "abc"`, `map`.
    pub fn describe(&self) -> String {
        match &self.kind {
            Kind::Str(s) => format!("string {s:?}"),
            Kind::Array(_) | Kind::Map(_) => self.type_name().to_string(),
            _ => format!("{} {}", self.type_name(), self.text),
        }
    }
}

/// A map's entries in the order written; a key written twice keeps both, and the later wins.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Map {
    pub entries: Vec<Entry>,
}

impl Map {
    /// The last value written for `key`.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.entries.iter().rev().find(|e| e.key == key).map(|e| &e.value)
    }
}

/// `key: value` in a map.
#[derive(Clone, Debug, PartialEq)]
pub struct Entry {
    pub key: String,
    /// Where the key starts.
    pub pos: Pos,
    pub value: Value,
    /// Some `$key` referred to this entry: it is a variable, not an unknown option.
    pub used_as_variable: bool,
}

/// Errors past this many are summed up in one line: a binary file fed by mistake would
/// otherwise print thousands.
const MAX_ERRORS: usize = 100;
/// Maps and arrays nested deeper than this are refused, so hostile input cannot overflow
/// the stack of this recursive parser.
const MAX_DEPTH: usize = 64;
/// Includes nested deeper than this are refused (a cycle is caught earlier).
const MAX_INCLUDE_DEPTH: usize = 16;

/// Parse a file, resolving `$VAR` from the process environment. Returns the tree (as much of
/// it as parsed) and every error, each `file:line:col: reason`.
pub fn parse_file(path: &Path) -> (Map, Vec<String>) {
    parse_file_with_env(path, &|k| std::env::var(k).ok())
}

/// [`parse_file`] with the environment given as a lookup function (tests use a table).
pub fn parse_file_with_env(path: &Path, env: &dyn Fn(&str) -> Option<String>) -> (Map, Vec<String>) {
    let mut p = Parser::new(env);
    let name: Rc<str> = Rc::from(path.display().to_string());
    match read_source(path) {
        Ok((text, bad_utf8)) => {
            if let Ok(canon) = std::fs::canonicalize(path) {
                p.includes.push(canon);
            }
            let mut s = Src::new(&text, name, dir_of(path));
            if let Some(at) = bad_utf8 {
                let pos = pos_of_byte(&text, at, &s.file);
                p.err(&pos, "the file is not valid UTF-8".into());
            }
            p.body(&mut s, None);
        }
        Err(e) => p.errors.push(format!("{name}: {e}")),
    }
    p.finish()
}

/// Parse text as if it were the file `name` in directory `dir` (which includes resolve
/// against).
pub fn parse_str(text: &str, name: &str, dir: &Path, env: &dyn Fn(&str) -> Option<String>) -> (Map, Vec<String>) {
    let mut p = Parser::new(env);
    let mut s = Src::new(text, Rc::from(name), dir.to_path_buf());
    p.body(&mut s, None);
    p.finish()
}

fn dir_of(path: &Path) -> PathBuf {
    match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// The file's text, and the byte offset of the first invalid UTF-8 if any (the rest is read
/// lossily so its other mistakes are still reported).
fn read_source(path: &Path) -> Result<(String, Option<usize>), String> {
    let bytes = std::fs::read(path).map_err(|e| e.to_string())?;
    match String::from_utf8(bytes) {
        Ok(s) => Ok((s, None)),
        Err(e) => {
            let at = e.utf8_error().valid_up_to();
            Ok((String::from_utf8_lossy(e.as_bytes()).into_owned(), Some(at)))
        }
    }
}

fn pos_of_byte(text: &str, at: usize, file: &Rc<str>) -> Pos {
    let before = text.get(..at).unwrap_or(text);
    let line = before.matches('\n').count() as u32 + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) as u32 + 1;
    Pos { file: file.clone(), line, col }
}

/// One source being read: a file, an included file, or an environment variable's text.
struct Src {
    chars: Vec<char>,
    i: usize,
    line: u32,
    col: u32,
    file: Rc<str>,
    /// Where includes in this source are looked for.
    dir: PathBuf,
}

impl Src {
    fn new(text: &str, file: Rc<str>, dir: PathBuf) -> Src {
        Src { chars: text.chars().collect(), i: 0, line: 1, col: 1, file, dir }
    }

    fn peek(&self) -> Option<char> {
        self.chars.get(self.i).copied()
    }

    fn peek_at(&self, n: usize) -> Option<char> {
        self.chars.get(self.i + n).copied()
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.i += 1;
        if c == '\n' {
            self.line += 1;
            self.col = 1;
        } else {
            self.col += 1;
        }
        Some(c)
    }

    fn pos(&self) -> Pos {
        Pos { file: self.file.clone(), line: self.line, col: self.col }
    }

    fn at_comment(&self) -> bool {
        self.peek() == Some('#') || (self.peek() == Some('/') && self.peek_at(1) == Some('/'))
    }

    /// Spaces and tabs (and the `\r` of CRLF files), not new lines.
    fn skip_blank(&mut self) {
        while matches!(self.peek(), Some(' ' | '\t' | '\r')) {
            self.bump();
        }
    }

    /// A comment up to (not including) its new line.
    fn skip_comment(&mut self) {
        while !matches!(self.peek(), None | Some('\n')) {
            self.bump();
        }
    }

    /// Blanks, new lines and comments.
    fn skip_space(&mut self) {
        loop {
            self.skip_blank();
            if self.at_comment() {
                self.skip_comment();
            } else if self.peek() == Some('\n') {
                self.bump();
            } else {
                return;
            }
        }
    }

    /// After an error: skip to the next line, but stop before a `}` or `]` that closes the
    /// block the error is in, so one mistake does not unbalance the rest of the file.
    fn recover(&mut self) {
        let mut depth = 0usize;
        while let Some(c) = self.peek() {
            match c {
                '\n' => {
                    self.bump();
                    return;
                }
                '{' | '[' => depth += 1,
                '}' | ']' if depth == 0 => return,
                '}' | ']' => depth -= 1,
                '"' | '\'' => {
                    self.bump();
                    while !matches!(self.peek(), None | Some('\n')) && self.peek() != Some(c) {
                        if c == '"' && self.peek() == Some('\\') {
                            self.bump();
                            if self.peek() == Some('\n') {
                                break;
                            }
                        }
                        self.bump();
                    }
                    if self.peek() == Some(c) {
                        self.bump();
                    }
                    continue;
                }
                _ => {}
            }
            self.bump();
        }
    }
}

/// Why a value could not be read: `Clean` means the error is recorded and the input is just
/// past the bad token (carry on as after any value); `Skip` means the input is in an unknown
/// state and the caller must recover to the next line.
enum Bad {
    Clean,
    Skip,
}

struct Parser<'e> {
    errors: Vec<String>,
    /// Maps being built, outermost first: `$VAR` looks from the last one back.
    ctx: Vec<Map>,
    /// Keys whose values are being read, to name a self-reference as a cycle.
    defining: Vec<String>,
    /// Canonical paths of the files being read, outermost first, for include cycles.
    includes: Vec<PathBuf>,
    /// Environment variables being expanded, for `A=$B`, `B=$A` cycles.
    env_chain: Vec<String>,
    /// Where the file refers to the outermost environment variable being expanded.
    env_ref: Option<Pos>,
    env: &'e dyn Fn(&str) -> Option<String>,
    depth: usize,
    /// Set when a reference cycle was found while reading an environment variable, so its
    /// error is kept instead of falling back to the raw text.
    cycle: bool,
    dropped: usize,
}

impl<'e> Parser<'e> {
    fn new(env: &'e dyn Fn(&str) -> Option<String>) -> Parser<'e> {
        Parser {
            errors: Vec::new(),
            ctx: vec![Map::default()],
            defining: Vec::new(),
            includes: Vec::new(),
            env_chain: Vec::new(),
            env_ref: None,
            env,
            depth: 0,
            cycle: false,
            dropped: 0,
        }
    }

    fn finish(mut self) -> (Map, Vec<String>) {
        if self.dropped > 0 {
            self.errors.push(format!("... and {} more errors", self.dropped));
        }
        (self.ctx.pop().unwrap_or_default(), self.errors)
    }

    fn err(&mut self, pos: &Pos, msg: String) {
        if self.errors.len() < MAX_ERRORS {
            self.errors.push(format!("{pos}: {msg}"));
        } else {
            self.dropped += 1;
        }
    }

    /// Entries into the innermost map until `closer` (or the end of the source). Returns
    /// whether the closer was found.
    fn body(&mut self, s: &mut Src, closer: Option<char>) -> bool {
        loop {
            s.skip_space();
            match s.peek() {
                None => return closer.is_none(),
                Some(c) if Some(c) == closer => {
                    s.bump();
                    return true;
                }
                // Stray separators between entries are harmless, as in nats-server.
                Some(',' | ';') => {
                    s.bump();
                }
                Some(c @ ('}' | ']')) => {
                    let what = if closer.is_some() { "in a map" } else { "at the top level" };
                    self.err(&s.pos(), format!("unexpected '{c}' {what}"));
                    s.bump();
                }
                Some(_) => self.entry(s),
            }
        }
    }

    fn entry(&mut self, s: &mut Src) {
        let mut kpos = s.pos();
        let (key, quoted) = match self.key(s) {
            Some(k) => k,
            None => return s.recover(),
        };
        if quoted {
            // nats-server places a quoted key at its text, after the quote.
            kpos.col += 1;
        }
        s.skip_blank();
        let mut separated = false;
        if matches!(s.peek(), Some(':' | '=')) {
            s.bump();
            separated = true;
            s.skip_blank();
        }
        if key == "include" && !quoted && !separated {
            if let Err(Bad::Skip) = self.include(s, &kpos) {
                return s.recover();
            }
            return self.end_of_entry(s, "include");
        }
        self.defining.push(key.clone());
        let v = self.value(s, &key);
        self.defining.pop();
        match v {
            Ok(value) => {
                if let Some(m) = self.ctx.last_mut() {
                    m.entries.push(Entry { key: key.clone(), pos: kpos, value, used_as_variable: false });
                }
                self.end_of_entry(s, &key);
            }
            Err(Bad::Clean) => self.end_of_entry(s, &key),
            Err(Bad::Skip) => s.recover(),
        }
    }

    /// After a value: a new line, `,`, `;`, a comment, the map's `}` or the end of input.
    fn end_of_entry(&mut self, s: &mut Src, key: &str) {
        s.skip_blank();
        match s.peek() {
            None | Some('\n' | '}' | ']') => {}
            Some(',' | ';') => {
                s.bump();
            }
            Some(_) if s.at_comment() => {}
            Some(c) => {
                self.err(&s.pos(), format!("expected a new line, ',' or ';' after the value of {key:?}, got {c:?}"));
                s.recover();
            }
        }
    }

    /// A key: bare, or quoted (then it may hold any character).
    fn key(&mut self, s: &mut Src) -> Option<(String, bool)> {
        let pos = s.pos();
        match s.peek() {
            Some('"') => return self.double_quoted(s).ok().map(|k| (k, true)),
            Some('\'') => return self.single_quoted(s).ok().map(|k| (k, true)),
            _ => {}
        }
        let mut k = String::new();
        while let Some(c) = s.peek() {
            if c.is_whitespace() || matches!(c, ':' | '=' | '{' | '[' | '}' | ']' | ',' | ';' | '#') {
                break;
            }
            k.push(c);
            s.bump();
        }
        if k.is_empty() {
            let c = s.peek().unwrap_or(' ');
            self.err(&pos, format!("expected a key, got {c:?}"));
            return None;
        }
        Some((k, false))
    }

    fn value(&mut self, s: &mut Src, key: &str) -> Result<Value, Bad> {
        let pos = s.pos();
        if matches!(s.peek(), None | Some('\n' | ',' | ';' | '}' | ']')) || s.at_comment() {
            self.err(&pos, format!("expected a value for {key:?}"));
            return Err(Bad::Clean);
        }
        let scalar = |kind, text: String| Ok(Value { kind, pos: pos.clone(), text });
        match s.peek() {
            Some('{') => {
                if self.depth >= MAX_DEPTH {
                    self.err(&pos, format!("maps and arrays nested more than {MAX_DEPTH} deep"));
                    return Err(Bad::Skip);
                }
                s.bump();
                self.depth += 1;
                self.ctx.push(Map::default());
                let closed = self.body(s, Some('}'));
                let m = self.ctx.pop().unwrap_or_default();
                self.depth -= 1;
                if !closed {
                    self.err(&pos, "this '{' is not closed before the end of the file".into());
                }
                Ok(Value { kind: Kind::Map(m), pos, text: String::new() })
            }
            Some('[') => {
                if self.depth >= MAX_DEPTH {
                    self.err(&pos, format!("maps and arrays nested more than {MAX_DEPTH} deep"));
                    return Err(Bad::Skip);
                }
                self.depth += 1;
                let a = self.array(s, key);
                self.depth -= 1;
                a
            }
            Some('"') => {
                let t = self.double_quoted(s)?;
                scalar(Kind::Str(t.clone()), t)
            }
            Some('\'') => {
                let t = self.single_quoted(s)?;
                scalar(Kind::Str(t.clone()), t)
            }
            Some('(') => {
                let t = self.block(s)?;
                scalar(Kind::Str(t.clone()), t)
            }
            Some('$') => {
                s.bump();
                let name = unquoted(s);
                if name.is_empty() {
                    self.err(&pos, "'$' with no variable name".into());
                    return Err(Bad::Clean);
                }
                self.lookup(&name, &pos).map_err(|_| Bad::Clean)
            }
            _ => {
                let t = unquoted(s);
                match classify(&t) {
                    Ok(kind) => scalar(kind, t),
                    Err(e) => {
                        self.err(&pos, e);
                        Err(Bad::Clean)
                    }
                }
            }
        }
    }

    fn array(&mut self, s: &mut Src, key: &str) -> Result<Value, Bad> {
        let pos = s.pos();
        s.bump();
        let mut items = Vec::new();
        loop {
            s.skip_space();
            match s.peek() {
                None => {
                    self.err(&pos, "this '[' is not closed before the end of the file".into());
                    break;
                }
                Some(']') => {
                    s.bump();
                    break;
                }
                Some('}') => {
                    // Leave the '}' to the map around us: it is more likely the ']' was
                    // forgotten than that the map ends early.
                    self.err(&s.pos(), "expected ']' to close the array, got '}'".into());
                    break;
                }
                Some(c @ (',' | ';')) => {
                    self.err(&s.pos(), format!("unexpected {c:?} in an array: no value before it"));
                    s.bump();
                }
                Some(_) => {
                    match self.value(s, key) {
                        Ok(v) => items.push(v),
                        Err(Bad::Clean) => {}
                        Err(Bad::Skip) => {
                            s.recover();
                            continue;
                        }
                    }
                    s.skip_blank();
                    match s.peek() {
                        Some(',') => {
                            s.bump();
                        }
                        None | Some('\n' | ']' | '}') => {}
                        Some(_) if s.at_comment() => {}
                        Some(c) => {
                            self.err(&s.pos(), format!("expected ',' or ']' after an array element, got {c:?}"));
                            s.recover();
                        }
                    }
                }
            }
        }
        Ok(Value { kind: Kind::Array(items), pos, text: String::new() })
    }

    /// `"..."`: escapes \t \n \r \" \\ \xXX, as nats-server; no new lines.
    fn double_quoted(&mut self, s: &mut Src) -> Result<String, Bad> {
        let start = s.pos();
        s.bump();
        let mut out = String::new();
        let mut bad_escape = false;
        loop {
            match s.peek() {
                None | Some('\n') => {
                    self.err(&start, "string not closed before the end of the line".into());
                    return Err(Bad::Skip);
                }
                Some('"') => {
                    s.bump();
                    return if bad_escape { Err(Bad::Clean) } else { Ok(out) };
                }
                Some('\\') => {
                    let epos = s.pos();
                    s.bump();
                    match s.peek() {
                        Some('t') => out.push('\t'),
                        Some('n') => out.push('\n'),
                        Some('r') => out.push('\r'),
                        Some('"') => out.push('"'),
                        Some('\\') => out.push('\\'),
                        Some('x') => {
                            let hex: String = [s.peek_at(1), s.peek_at(2)].iter().flatten().collect();
                            match u8::from_str_radix(&hex, 16) {
                                Ok(b) if hex.len() == 2 => {
                                    out.push(char::from(b));
                                    s.bump();
                                    s.bump();
                                }
                                _ => {
                                    self.err(&epos, "\\x must be followed by two hex digits".into());
                                    bad_escape = true;
                                }
                            }
                        }
                        None | Some('\n') => continue,
                        Some(c) => {
                            self.err(&epos, format!("invalid escape character {c:?}: only \\xXX, \\t, \\n, \\r, \\\" and \\\\ are allowed"));
                            bad_escape = true;
                        }
                    }
                    s.bump();
                }
                Some(c) => {
                    out.push(c);
                    s.bump();
                }
            }
        }
    }

    /// `'...'`: taken as written.
    fn single_quoted(&mut self, s: &mut Src) -> Result<String, Bad> {
        let start = s.pos();
        s.bump();
        let mut out = String::new();
        loop {
            match s.bump() {
                None | Some('\n') => {
                    self.err(&start, "string not closed before the end of the line".into());
                    return Err(Bad::Skip);
                }
                Some('\'') => return Ok(out),
                Some(c) => out.push(c),
            }
        }
    }

    /// `(` at the end of a line, text lines, then a line holding only `)`.
    fn block(&mut self, s: &mut Src) -> Result<String, Bad> {
        let start = s.pos();
        s.bump();
        s.skip_blank();
        if s.at_comment() {
            s.skip_comment();
        }
        if s.peek() != Some('\n') {
            self.err(&s.pos(), "a block string's '(' must end its line".into());
            return Err(Bad::Skip);
        }
        s.bump();
        let mut lines: Vec<String> = Vec::new();
        loop {
            if s.peek().is_none() {
                self.err(&start, "block string not closed by a line holding only ')'".into());
                return Err(Bad::Clean);
            }
            let mut line = String::new();
            while let Some(c) = s.peek() {
                if c == '\n' {
                    break;
                }
                line.push(c);
                s.bump();
            }
            if line.trim() == ")" {
                return Ok(lines.join("\n"));
            }
            s.bump();
            lines.push(line);
        }
    }

    fn include(&mut self, s: &mut Src, kpos: &Pos) -> Result<(), Bad> {
        let name = match s.peek() {
            Some('"') => self.double_quoted(s)?,
            Some('\'') => self.single_quoted(s)?,
            None | Some('\n') => {
                self.err(kpos, "include needs a file name".into());
                return Err(Bad::Clean);
            }
            _ => unquoted(s),
        };
        let path = s.dir.join(&name);
        let shown = path.display().to_string();
        let canon = match std::fs::canonicalize(&path) {
            Ok(c) => c,
            Err(e) => {
                self.err(kpos, format!("error parsing include file {shown:?}: {e}"));
                return Err(Bad::Clean);
            }
        };
        if self.includes.contains(&canon) {
            let chain: Vec<String> = self.includes.iter().chain([&canon]).map(|p| p.display().to_string()).collect();
            self.err(kpos, format!("include cycle: {}", chain.join(" -> ")));
            return Err(Bad::Clean);
        }
        if self.includes.len() > MAX_INCLUDE_DEPTH {
            self.err(kpos, format!("includes nested more than {MAX_INCLUDE_DEPTH} deep"));
            return Err(Bad::Clean);
        }
        let (text, bad_utf8) = match read_source(&path) {
            Ok(t) => t,
            Err(e) => {
                self.err(kpos, format!("error parsing include file {shown:?}: {e}"));
                return Err(Bad::Clean);
            }
        };
        let mut sub = Src::new(&text, Rc::from(shown), dir_of(&path));
        if let Some(at) = bad_utf8 {
            let pos = pos_of_byte(&text, at, &sub.file);
            self.err(&pos, "the file is not valid UTF-8".into());
        }
        self.includes.push(canon);
        self.body(&mut sub, None);
        self.includes.pop();
        Ok(())
    }

    /// `$name`: an earlier key of an enclosing map (innermost first), else the environment.
    fn lookup(&mut self, name: &str, pos: &Pos) -> Result<Value, ()> {
        for m in self.ctx.iter_mut().rev() {
            if let Some(e) = m.entries.iter_mut().rev().find(|e| e.key == name) {
                e.used_as_variable = true;
                let mut v = e.value.clone();
                v.pos = pos.clone();
                return Ok(v);
            }
        }
        if self.env_chain.iter().any(|d| d == name) {
            let chain: Vec<String> = self.env_chain.iter().chain([&name.to_string()]).map(|n| format!("${n}")).collect();
            // Named where the file refers to the first variable, not inside a variable's text.
            let at = self.env_ref.clone().unwrap_or_else(|| pos.clone());
            self.err(&at, format!("variable reference cycle: {}", chain.join(" -> ")));
            self.cycle = true;
            return Err(());
        }
        let Some(text) = (self.env)(name) else {
            if self.defining.iter().any(|d| d == name) {
                self.err(pos, format!("variable reference for '{name}' refers to the key being defined (a reference cycle)"));
            } else {
                self.err(pos, format!("variable reference for '{name}' can not be found"));
            }
            return Err(());
        };
        if self.env_chain.is_empty() {
            self.env_ref = Some(pos.clone());
        }
        self.env_chain.push(name.to_string());
        let v = self.env_value(name, &text, pos);
        self.env_chain.pop();
        if self.env_chain.is_empty() {
            self.env_ref = None;
        }
        v
    }

    /// An environment variable's text read as a value (`2000` is a number, `1MB` a size).
    /// Text that is not one value is taken as a plain string: nats-server refuses it, but a
    /// password with a space in it is a likelier meaning than a mistake.
    fn env_value(&mut self, name: &str, text: &str, pos: &Pos) -> Result<Value, ()> {
        let mut sub = Src::new(text, Rc::from(format!("${name}")), PathBuf::from("."));
        let mark = self.errors.len();
        let was_cycle = std::mem::replace(&mut self.cycle, false);
        sub.skip_blank();
        let got = if sub.peek().is_none() { Err(Bad::Clean) } else { self.value(&mut sub, name) };
        sub.skip_blank();
        let cycle = self.cycle;
        self.cycle |= was_cycle;
        match got {
            Ok(mut v) if sub.peek().is_none() && self.errors.len() == mark => {
                v.pos = pos.clone();
                Ok(v)
            }
            _ if cycle => Err(()),
            _ => {
                self.errors.truncate(mark);
                Ok(Value { kind: Kind::Str(text.to_string()), pos: pos.clone(), text: text.to_string() })
            }
        }
    }
}

/// An unquoted token: up to white space or one of `, ; ] }`.
fn unquoted(s: &mut Src) -> String {
    let mut t = String::new();
    while let Some(c) = s.peek() {
        if c.is_whitespace() || matches!(c, ',' | ';' | ']' | '}') {
            break;
        }
        t.push(c);
        s.bump();
    }
    t
}

/// What an unquoted token is: boolean, integer (maybe with a size unit), float, date or
/// string.
fn classify(t: &str) -> Result<Kind, String> {
    if let Some(b) = parse_bool_word(t) {
        return Ok(Kind::Bool(b));
    }
    let (neg, body) = match t.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, t),
    };
    let digits = body.find(|c: char| !c.is_ascii_digit()).unwrap_or(body.len());
    if digits > 0 {
        let rest = &body[digits..];
        if rest.is_empty() {
            let n: i64 = t.parse().map_err(|_| format!("integer {t} is out of range"))?;
            return Ok(Kind::Int(n));
        }
        if is_size_unit(rest) {
            let n = super::parse_size(body).ok().and_then(|n| i64::try_from(n).ok()).ok_or_else(|| format!("size {t} is out of range"))?;
            return Ok(Kind::Int(if neg { -n } else { n }));
        }
        if let Some(frac) = rest.strip_prefix('.') {
            if !frac.is_empty() && frac.bytes().all(|b| b.is_ascii_digit()) {
                let f: f64 = t.parse().map_err(|_| format!("invalid number {t}"))?;
                return Ok(Kind::Float(f));
            }
        }
        if !neg && is_date(t) {
            return Ok(Kind::Date(t.to_string()));
        }
    }
    Ok(Kind::Str(t.to_string()))
}

/// true/false, yes/no, on/off in any case.
pub fn parse_bool_word(t: &str) -> Option<bool> {
    match t.to_ascii_lowercase().as_str() {
        "true" | "yes" | "on" => Some(true),
        "false" | "no" | "off" => Some(false),
        _ => None,
    }
}

fn is_size_unit(u: &str) -> bool {
    let u = u.to_ascii_lowercase();
    let Some(first) = u.chars().next() else { return false };
    matches!(first, 'k' | 'm' | 'g' | 't') && matches!(&u[1..], "" | "b" | "i" | "ib")
}

/// `YYYY-MM-DDTHH:MM:SSZ`.
fn is_date(t: &str) -> bool {
    let b = t.as_bytes();
    let digit = |r: std::ops::Range<usize>| r.into_iter().all(|i| b.get(i).is_some_and(u8::is_ascii_digit));
    b.len() == 20
        && digit(0..4)
        && b[4] == b'-'
        && digit(5..7)
        && b[7] == b'-'
        && digit(8..10)
        && b[10] == b'T'
        && digit(11..13)
        && b[13] == b':'
        && digit(14..16)
        && b[16] == b':'
        && digit(17..19)
        && b[19] == b'Z'
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(k: &str) -> Option<String> {
        match k {
            "ENV_PORT" => Some("4555".into()),
            "ENV_SIZE" => Some("2MB".into()),
            "ENV_WORDS" => Some("two words".into()),
            "ENV_MAP" => Some("{ a: 1 }".into()),
            "ENV_REF" => Some("$ENV_PORT".into()),
            "ENV_LOOP" => Some("$ENV_LOOP".into()),
            "ENV_A" => Some("$ENV_B".into()),
            "ENV_B" => Some("$ENV_A".into()),
            "FROM_ENV_ONLY" => Some("env".into()),
            _ => None,
        }
    }

    fn parse(text: &str) -> (Map, Vec<String>) {
        parse_str(text, "t.conf", Path::new("."), &env)
    }

    fn ok(text: &str) -> Map {
        let (m, errs) = parse(text);
        assert!(errs.is_empty(), "{text:?}: {errs:?}");
        m
    }

    fn kind<'m>(m: &'m Map, key: &str) -> &'m Kind {
        &m.get(key).unwrap_or_else(|| panic!("no {key} in {m:?}")).kind
    }

    fn str_(s: &str) -> Kind {
        Kind::Str(s.into())
    }

    /// A scratch directory removed on drop.
    struct Tmp(PathBuf);
    impl Tmp {
        fn new(tag: &str) -> Tmp {
            static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
            let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let p = std::env::temp_dir().join(format!("natsu-conf-{tag}-{}-{n}", std::process::id()));
            std::fs::create_dir_all(&p).unwrap();
            Tmp(p)
        }
        fn write(&self, name: &str, text: &str) -> PathBuf {
            let p = self.0.join(name);
            if let Some(d) = p.parent() {
                std::fs::create_dir_all(d).unwrap();
            }
            std::fs::write(&p, text).unwrap();
            p
        }
    }
    impl Drop for Tmp {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    #[test]
    fn separators_and_comments() {
        for text in [
            "port: 4333",
            "port = 4333",
            "port 4333",
            "port:4333",
            "  port  :  4333  ",
            "port: 4333;",
            "port: 4333,",
            "port: 4333;;",
            "port: 4333 # comment",
            "port: 4333 // comment",
            "# first\n// second\nport: 4333\n# last",
            "\"port\": 4333",
            "'port': 4333",
            "port: 4333\r\n",
        ] {
            assert_eq!(kind(&ok(text), "port"), &Kind::Int(4333), "{text:?}");
        }
        let m = ok("a: 1, b: 2; c: 3\nd 4");
        assert_eq!(m.entries.iter().map(|e| e.key.as_str()).collect::<Vec<_>>(), ["a", "b", "c", "d"]);
    }

    #[test]
    fn scalars() {
        let table: &[(&str, Kind)] = &[
            ("true", Kind::Bool(true)),
            ("FALSE", Kind::Bool(false)),
            ("Yes", Kind::Bool(true)),
            ("no", Kind::Bool(false)),
            ("ON", Kind::Bool(true)),
            ("off", Kind::Bool(false)),
            ("42", Kind::Int(42)),
            ("-1", Kind::Int(-1)),
            ("01", Kind::Int(1)),
            ("1k", Kind::Int(1000)),
            ("1K", Kind::Int(1000)),
            ("1kb", Kind::Int(1024)),
            ("2KiB", Kind::Int(2048)),
            ("1ki", Kind::Int(1024)),
            ("1m", Kind::Int(1_000_000)),
            ("1MB", Kind::Int(1 << 20)),
            ("1Mb", Kind::Int(1 << 20)),
            ("3mib", Kind::Int(3 << 20)),
            ("1g", Kind::Int(1_000_000_000)),
            ("1GB", Kind::Int(1 << 30)),
            ("1t", Kind::Int(1_000_000_000_000)),
            ("1tib", Kind::Int(1 << 40)),
            ("-2k", Kind::Int(-2000)),
            ("1.5", Kind::Float(1.5)),
            ("-0.25", Kind::Float(-0.25)),
            ("2016-05-04T18:53:41Z", Kind::Date("2016-05-04T18:53:41Z".into())),
            ("\"quoted # not a comment\"", str_("quoted # not a comment")),
            ("'single \\n raw'", str_("single \\n raw")),
            ("\"esc \\t\\n\\r\\\"\\\\ \\x41\"", str_("esc \t\n\r\"\\ A")),
            ("\"\"", str_("")),
            ("''", str_("")),
            ("unquoted", str_("unquoted")),
            ("nats://host:4222", str_("nats://host:4222")),
            ("127.0.0.1", str_("127.0.0.1")),
            ("0.0.0.0:4222", str_("0.0.0.0:4222")),
            ("1.2.3", str_("1.2.3")),
            ("1b", str_("1b")),
            ("1x", str_("1x")),
            ("0x10", str_("0x10")),
            ("1e3", str_("1e3")),
            ("2s", str_("2s")),
            ("1m30s", str_("1m30s")),
            ("a{b", str_("a{b")),
            ("abc\"def", str_("abc\"def")),
            ("truex", str_("truex")),
            ("-", str_("-")),
        ];
        for (text, want) in table {
            let m = ok(&format!("v: {text}\n"));
            assert_eq!(kind(&m, "v"), want, "{text}");
        }
        // The source text is kept, so `2m` can be told from 2000000.
        assert_eq!(ok("v: 2m").get("v").unwrap().text, "2m");
    }

    #[test]
    fn block_string() {
        let m = ok("text: (\n  line one\n  line two\n)\nafter: 1\n");
        assert_eq!(kind(&m, "text"), &str_("  line one\n  line two"));
        assert_eq!(kind(&m, "after"), &Kind::Int(1));
    }

    #[test]
    fn maps_and_arrays() {
        let m = ok(
            "authorization {\n  user: a\n  password = 'b'\n  users = [\n    {user: c, password: d}\n    {user: e; password: f}\n  ]\n}\nroutes: [ nats://a:1, nats://b:2, ]\nempty: []\nnone: {}\nnested: [[1, 2], [3]]\nkv: { a: 1, b: { c: [true] } }\n",
        );
        let Kind::Map(auth) = kind(&m, "authorization") else { panic!() };
        assert_eq!(kind(auth, "user"), &str_("a"));
        let Kind::Array(users) = kind(auth, "users") else { panic!() };
        assert_eq!(users.len(), 2);
        let Kind::Array(routes) = kind(&m, "routes") else { panic!() };
        assert_eq!(routes.len(), 2);
        assert_eq!(kind(&m, "empty"), &Kind::Array(vec![]));
        assert_eq!(kind(&m, "none"), &Kind::Map(Map::default()));
        let Kind::Array(nested) = kind(&m, "nested") else { panic!() };
        assert!(matches!(&nested[0].kind, Kind::Array(a) if a.len() == 2));
        // Newlines separate array elements as well as commas do.
        let Kind::Array(a) = kind(&ok("a: [\n 1\n 2 # two\n // three\n 3\n]"), "a").clone() else { panic!() };
        assert_eq!(a.iter().map(|v| v.kind.clone()).collect::<Vec<_>>(), [Kind::Int(1), Kind::Int(2), Kind::Int(3)]);
        // Map values may follow the key directly with a colon.
        assert!(matches!(kind(&ok("a:{b: 1}"), "a"), Kind::Map(_)));
    }

    #[test]
    fn positions_are_one_based() {
        let m = ok("# comment\nport: 4333\nauth {\n    user: \"bob\"\n}\n");
        let e = &m.entries[0];
        assert_eq!((e.pos.line, e.pos.col), (2, 1));
        assert_eq!((e.value.pos.line, e.value.pos.col), (2, 7));
        let Kind::Map(a) = kind(&m, "auth") else { panic!() };
        assert_eq!((a.entries[0].pos.line, a.entries[0].pos.col), (4, 5));
        assert_eq!((a.entries[0].value.pos.line, a.entries[0].value.pos.col), (4, 11));
        assert_eq!(&*a.entries[0].pos.file, "t.conf");
        assert_eq!(a.entries[0].pos.to_string(), "t.conf:4:5");
    }

    #[test]
    fn later_keys_win() {
        assert_eq!(kind(&ok("port: 1\nport: 2"), "port"), &Kind::Int(2));
    }

    #[test]
    fn variables_from_blocks_and_environment() {
        let m = ok("X = 10\nport: $X\n");
        assert_eq!(kind(&m, "port"), &Kind::Int(10));
        assert!(m.entries[0].used_as_variable && !m.entries[1].used_as_variable);
        // Innermost block first, then outer blocks, then the environment.
        let m = ok("U = outer\nFROM_ENV_ONLY = file\na {\n  U = inner\n  x: $U\n  b { y: $U }\n}\nc { z: $U, w: $FROM_ENV_ONLY }\n");
        let Kind::Map(a) = kind(&m, "a") else { panic!() };
        assert_eq!(kind(a, "x"), &str_("inner"));
        let Kind::Map(b) = kind(a, "b") else { panic!() };
        assert_eq!(kind(b, "y"), &str_("inner"));
        let Kind::Map(c) = kind(&m, "c") else { panic!() };
        assert_eq!(kind(c, "z"), &str_("outer"));
        assert_eq!(kind(c, "w"), &str_("file"));
        // Environment values are read as values.
        let m = ok("p: $ENV_PORT\ns: $ENV_SIZE\nw: $ENV_WORDS\nm: $ENV_MAP\nr: $ENV_REF\n");
        assert_eq!(kind(&m, "p"), &Kind::Int(4555));
        assert_eq!(kind(&m, "s"), &Kind::Int(2 << 20));
        assert_eq!(kind(&m, "w"), &str_("two words"));
        assert!(matches!(kind(&m, "m"), Kind::Map(_)));
        assert_eq!(kind(&m, "r"), &Kind::Int(4555));
        // A reference takes the position of where it is written.
        let v = m.get("p").unwrap();
        assert_eq!((v.pos.line, v.pos.col, &*v.pos.file), (1, 4, "t.conf"));
        // In arrays too; a variable is not expanded inside quotes (as nats-server).
        let m = ok("A = 1\nl: [$A, \"$A\"]\n");
        let Kind::Array(l) = kind(&m, "l") else { panic!() };
        assert_eq!((l[0].kind.clone(), l[1].kind.clone()), (Kind::Int(1), str_("$A")));
        // The environment fills a key that refers to itself.
        assert_eq!(kind(&ok("ENV_PORT: $ENV_PORT"), "ENV_PORT"), &Kind::Int(4555));
    }

    #[test]
    fn errors_have_positions() {
        let table: &[(&str, &str)] = &[
            ("port: $NOPE\n", "t.conf:1:7: variable reference for 'NOPE' can not be found"),
            ("port: $X\nX = 1\n", "t.conf:1:7: variable reference for 'X' can not be found"),
            ("X = $X\n", "t.conf:1:5: variable reference for 'X' refers to the key being defined (a reference cycle)"),
            ("A { B = $A }\n", "t.conf:1:9: variable reference for 'A' refers to the key being defined (a reference cycle)"),
            ("p: $ENV_LOOP\n", "t.conf:1:4: variable reference cycle: $ENV_LOOP -> $ENV_LOOP"),
            ("p: $ENV_A\n", "t.conf:1:4: variable reference cycle: $ENV_A -> $ENV_B -> $ENV_A"),
            ("p: $\n", "t.conf:1:4: '$' with no variable name"),
            ("port:\n", "t.conf:1:6: expected a value for \"port\""),
            ("port\n", "t.conf:1:5: expected a value for \"port\""),
            ("port: 4333 extra\n", "t.conf:1:12: expected a new line, ',' or ';' after the value of \"port\", got 'e'"),
            ("max: 1 MB\n", "t.conf:1:8: expected a new line, ',' or ';' after the value of \"max\", got 'M'"),
            ("a { b: 1 c: 2 }\n", "t.conf:1:10: expected a new line, ',' or ';' after the value of \"b\", got 'c'"),
            ("a: [1 2]\n", "t.conf:1:7: expected ',' or ']' after an array element, got '2'"),
            ("a: [1,,2]\n", "t.conf:1:7: unexpected ',' in an array: no value before it"),
            ("s: \"abc\n", "t.conf:1:4: string not closed before the end of the line"),
            ("s: 'abc\n", "t.conf:1:4: string not closed before the end of the line"),
            ("s: \"a\\qb\"\n", "t.conf:1:6: invalid escape character 'q': only \\xXX, \\t, \\n, \\r, \\\" and \\\\ are allowed"),
            ("s: \"a\\x4\"\n", "t.conf:1:6: \\x must be followed by two hex digits"),
            ("a {\n  b: 1\n", "t.conf:1:3: this '{' is not closed before the end of the file"),
            ("a: [1,\n", "t.conf:1:4: this '[' is not closed before the end of the file"),
            ("a { b: [1 }\n", "t.conf:1:11: expected ']' to close the array, got '}'"),
            ("}\n", "t.conf:1:1: unexpected '}' at the top level"),
            ("a { ] }\n", "t.conf:1:5: unexpected ']' in a map"),
            (": 1\n", "t.conf:1:1: expected a key, got ':'"),
            ("n: 99999999999999999999\n", "t.conf:1:4: integer 99999999999999999999 is out of range"),
            ("n: 99999999999TB\n", "t.conf:1:4: size 99999999999TB is out of range"),
            ("t: (abc)\n", "t.conf:1:5: a block string's '(' must end its line"),
            ("t: (\nabc\n", "t.conf:1:4: block string not closed by a line holding only ')'"),
            ("include\n", "t.conf:1:1: include needs a file name"),
        ];
        for (text, want) in table {
            let (_, errs) = parse(text);
            assert_eq!(errs.first().map(String::as_str), Some(*want), "{text:?}: {errs:?}");
        }
    }

    #[test]
    fn every_error_is_reported_and_parsing_goes_on() {
        let text = "port: \"abc\nmax: 1 MB\nok1: 1\na {\n  b: [1 2]\n  c: $NOPE\n  d: 2\n}\nok2: 'x'\ne: \"\\q\"\n";
        let (m, errs) = parse(text);
        assert_eq!(errs.len(), 5, "{errs:#?}");
        for (e, line) in errs.iter().zip(["t.conf:1:", "t.conf:2:", "t.conf:5:", "t.conf:6:", "t.conf:10:"]) {
            assert!(e.starts_with(line), "{e} vs {line}");
        }
        // The good keys around the bad ones are all there.
        assert_eq!(kind(&m, "ok1"), &Kind::Int(1));
        assert_eq!(kind(&m, "ok2"), &str_("x"));
        let Kind::Map(a) = kind(&m, "a") else { panic!() };
        assert_eq!(kind(a, "d"), &Kind::Int(2));
    }

    #[test]
    fn includes_resolve_from_the_including_file() {
        let t = Tmp::new("inc");
        t.write("sub/inner.conf", "max_payload: 2KB\nINNER = 7\n");
        t.write("sub/mid.conf", "include inner.conf\nmid: $INNER\n");
        let main = t.write("main.conf", "include sub/mid.conf\ninclude 'sub/inner.conf'\ninclude \"sub/inner.conf\"\nauth {\n  include sub/inner.conf\n}\nport: $INNER\n");
        let (m, errs) = parse_file_with_env(&main, &env);
        assert!(errs.is_empty(), "{errs:?}");
        assert_eq!(kind(&m, "max_payload"), &Kind::Int(2048));
        assert_eq!(kind(&m, "mid"), &Kind::Int(7));
        assert_eq!(kind(&m, "port"), &Kind::Int(7));
        let Kind::Map(auth) = kind(&m, "auth") else { panic!() };
        assert_eq!(kind(auth, "max_payload"), &Kind::Int(2048));
        // Positions name the included file.
        let e = &m.entries[0];
        assert!(e.pos.file.ends_with("inner.conf") && e.pos.line == 1, "{:?}", e.pos);
        // An included file's errors carry its name.
        t.write("bad.conf", "\nx: [1 2]\n");
        let main = t.write("main2.conf", "include bad.conf\ninclude missing.conf\n");
        let (_, errs) = parse_file_with_env(&main, &env);
        assert_eq!(errs.len(), 2, "{errs:?}");
        assert!(errs[0].contains("bad.conf:2:7: expected ','"), "{errs:?}");
        assert!(errs[1].contains("main2.conf:2:1: error parsing include file") && errs[1].contains("missing.conf"), "{errs:?}");
    }

    #[test]
    fn include_cycles_are_refused() {
        let t = Tmp::new("cycle");
        let a = t.write("a.conf", "x: 1\ninclude b.conf\n");
        t.write("b.conf", "include a.conf\n");
        let (m, errs) = parse_file_with_env(&a, &env);
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert!(errs[0].contains("b.conf:1:1: include cycle:") && errs[0].ends_with("a.conf"), "{errs:?}");
        assert_eq!(kind(&m, "x"), &Kind::Int(1));
        let selfish = t.write("self.conf", "include self.conf\n");
        let (_, errs) = parse_file_with_env(&selfish, &env);
        assert!(errs.len() == 1 && errs[0].contains("include cycle"), "{errs:?}");
    }

    #[test]
    fn missing_and_non_utf8_files() {
        let t = Tmp::new("io");
        let (_, errs) = parse_file(&t.0.join("nope.conf"));
        assert!(errs.len() == 1 && errs[0].contains("nope.conf: No such file"), "{errs:?}");
        let p = t.0.join("latin1.conf");
        std::fs::write(&p, b"a: 1\nname: caf\xe9\nb: 2\n").unwrap();
        let (m, errs) = parse_file(&p);
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert!(errs[0].ends_with("latin1.conf:2:10: the file is not valid UTF-8"), "{errs:?}");
        assert_eq!(kind(&m, "b"), &Kind::Int(2));
    }

    #[test]
    fn deep_nesting_is_refused_not_a_stack_overflow() {
        let text = format!("a: {}{}", "[".repeat(10_000), "]".repeat(10_000));
        let (_, errs) = parse(&text);
        assert!(errs.iter().any(|e| e.contains("nested more than")), "{errs:?}");
        let text = format!("a: {}", "{b: ".repeat(10_000));
        let (_, errs) = parse(&text);
        assert!(!errs.is_empty());
    }

    #[test]
    fn errors_are_capped() {
        let text = "x y z\n".repeat(1000);
        let (_, errs) = parse(&text);
        assert_eq!(errs.len(), MAX_ERRORS + 1);
        assert!(errs[MAX_ERRORS].starts_with("... and "));
    }

    /// A big sample, cut at every character and fed as random bytes: never a panic.
    #[test]
    fn never_panics() {
        let sample = "# sample\nlisten: 0.0.0.0:4222\nhttp: \"localhost:8222\"\nX = 10\nport: $X\nauthorization {\n  user: 'a', password = \"b\\t\\x41\"\n  users: [ {user: c, password: d, permissions: {publish: [\"a.>\"], subscribe: {allow: \"b\", deny: [\"c\"]}}} ]\n  timeout: 1.5\n}\nmax_payload: 1MB\ndate: 2016-05-04T18:53:41Z\ntext: (\n block\n)\nlist: [1, 2.5, yes, off, -3k, $X, $ENV_PORT, $ENV_LOOP]\ncluster { routes = [ nats://a:1\n nats://b:2 ] }\n// end\n";
        let chars: Vec<char> = sample.chars().collect();
        for n in 0..=chars.len() {
            let prefix: String = chars[..n].iter().collect();
            let _ = parse(&prefix);
            let suffix: String = chars[n..].iter().collect();
            let _ = parse(&suffix);
        }
        // A small xorshift generator: reproducible without a dependency.
        let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let alphabet: Vec<char> = "{}[]()\"'$:=;,#/\\\n\t x0123456789.-kmbTZtrueyesinclude\u{e9}\u{0}".chars().collect();
        for _ in 0..3000 {
            let len = (next() % 80) as usize;
            let text: String = (0..len).map(|_| alphabet[(next() % alphabet.len() as u64) as usize]).collect();
            let _ = parse(&text);
            let bytes: Vec<u8> = (0..len).map(|_| next() as u8).collect();
            let _ = parse(&String::from_utf8_lossy(&bytes));
        }
        // Every prefix of every sample file users copy from.
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("configs");
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|x| x == "conf") {
                let text: Vec<char> = std::fs::read_to_string(&path).unwrap().chars().collect();
                let (_, errs) = parse(&text.iter().collect::<String>());
                assert!(errs.is_empty(), "{}: {errs:?}", path.display());
                for n in 0..text.len() {
                    let _ = parse(&text[..n].iter().collect::<String>());
                }
            }
        }
        // Mutations of the sample: one character replaced.
        for i in 0..chars.len() {
            let mut c = chars.clone();
            c[i] = alphabet[(next() % alphabet.len() as u64) as usize];
            let _ = parse(&c.into_iter().collect::<String>());
        }
    }
}
