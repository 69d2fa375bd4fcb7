//! Subject mappings (`mappings { }` in a config file, at the top for `$G` or in an account;
//! `mappings` in an account JWT): a message a client or leaf node publishes in the account
//! on a subject a mapping's source matches goes out on a destination subject instead, as
//! nats-server 2.9 maps it.
//!
//! A destination is a subject made of literal tokens and, when the source has wildcards,
//! references to them: `$N` or `{{wildcard(N)}}` (the N-th `*`), `{{partition(P,N,..)}}`
//! (FNV-1a of those tokens modulo P), `{{splitFromLeft(N,K)}}`, `{{splitFromRight(N,K)}}`,
//! `{{sliceFromLeft(N,K)}}`, `{{sliceFromRight(N,K)}}` and `{{split(N,D)}}`; a source's `>`
//! is carried to the destination's. A mapping may have several destinations with weights
//! (per cent, one picked at random per message); the weights left over keep the source
//! subject unless the source is itself one of the destinations, in which case the rest of
//! the messages are dropped. Destinations may be scoped to a cluster: they replace the
//! others on a server of that cluster.
//!
//! The reference's quirks are kept: a source without wildcards takes its destination as
//! written (no functions); a destination must use as many references as the source has
//! `*` (not each of them); a reference to wildcard 0 or below is the subject's first token.
//! One difference: `{{partition(0,..)}}` (a division by zero when a message arrives, in
//! nats-server) is refused with the config.

use std::borrow::Cow;

use crate::protocol::subject;
use crate::server::sublist::pattern_covers;

/// One destination of a mapping, as configured: the subject, its weight in per cent, and
/// the cluster it is scoped to (empty: any).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct MapDest {
    pub subject: String,
    pub weight: u8,
    pub cluster: String,
}

/// A mapping as configured: a source subject and its destinations.
#[derive(Clone, Debug, PartialEq)]
pub struct MapRule {
    pub src: String,
    pub dests: Vec<MapDest>,
}

/// Wrong destinations, in nats-server's words.
const BAD_DEST: &str = "invalid mapping destination";

fn dest_err(what: &str, token: &str) -> String {
    format!("{BAD_DEST}: {what} in {token}")
}

/// One token of a destination.
#[derive(Clone, Debug, PartialEq)]
enum Part {
    Literal(Box<str>),
    /// The source token at this position.
    Wildcard(usize),
    Partition { buckets: u32, from: Vec<usize> },
    SplitFromLeft(usize, i64),
    SplitFromRight(usize, i64),
    SliceFromLeft(usize, i64),
    SliceFromRight(usize, i64),
    Split(usize, Box<str>),
}

/// A source subject to a destination subject.
#[derive(Clone, Debug, PartialEq)]
pub struct Transform {
    dest: String,
    /// None: the destination as written (the source has no wildcards).
    parts: Option<Vec<Part>>,
    /// How many tokens the source has (its `>` takes the rest from there).
    src_tokens: usize,
    /// Where the source's `*` tokens are.
    stars: Vec<usize>,
}

/// Why a destination is not a subject pattern that takes the source's wildcards in order.
#[derive(Debug, PartialEq)]
pub enum Shape {
    /// It uses this mapping function.
    Function(String),
    /// It refers to the wildcards out of order, or to one twice.
    OutOfOrder,
}

/// Whether a subject is well formed as nats-server's `subjectInfo` sees it: no empty token,
/// nothing after `>`. With its count of `*` and whether it ends in `>`.
fn subject_info(s: &str) -> Option<(usize, bool)> {
    if s.is_empty() {
        return None;
    }
    let (mut stars, mut fwc) = (0, false);
    for t in s.split('.') {
        if t.is_empty() || fwc {
            return None;
        }
        match t {
            "*" => stars += 1,
            ">" => fwc = true,
            _ => {}
        }
    }
    Some((stars, fwc))
}

/// A mapping function token `{{name(args)}}`: its name and arguments as nats-server's
/// patterns read them (spaces allowed around the name and after the parentheses, the
/// arguments split at commas). None when the token is not of that shape.
fn function(token: &str) -> Option<(&str, Vec<&str>)> {
    let inner = token.strip_prefix("{{")?.strip_suffix("}}")?;
    let inner = inner.trim_start_matches(is_space).trim_end_matches(is_space);
    let open = inner.find('(')?;
    let name = inner[..open].trim_end_matches(is_space);
    let args = inner[open + 1..].strip_suffix(')')?;
    let args = args.split(',').enumerate().map(|(i, a)| if i == 0 { a } else { a.trim_start_matches(is_space) }).collect();
    Some((name, args))
}

/// Go's `\s`.
fn is_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\x0c' | '\r')
}

/// The function names nats-server knows; each word's first letter may be either case.
const FUNCTIONS: [&str; 7] = ["wildcard", "partition", "splitFromLeft", "splitFromRight", "sliceFromLeft", "sliceFromRight", "split"];

fn known_function(name: &str) -> Option<&'static str> {
    FUNCTIONS.into_iter().find(|f| {
        f.len() == name.len() && f.chars().zip(name.chars()).enumerate().all(|(i, (a, b))| if i == 0 || a.is_ascii_uppercase() { a.eq_ignore_ascii_case(&b) } else { a == b })
    })
}

/// nats-server's check of a destination subject (`ValidateMappingDestination`).
fn validate_destination(dest: &str) -> Result<(), String> {
    let mut fwc = false;
    for t in dest.split('.') {
        if t.is_empty() || fwc {
            return Err(dest_err("invalid subject", t));
        }
        if t.len() > 4 && t.starts_with("{{") && t.ends_with("}}") {
            if function(t).and_then(|(name, _)| known_function(name)).is_none() {
                return Err(dest_err("unknown function", t));
            }
            continue;
        }
        if t == ">" {
            fwc = true;
        } else if t.contains(is_space) {
            return Err(format!("{BAD_DEST}: invalid subject"));
        }
    }
    Ok(())
}

/// Go's `strconv.Atoi`: an optional sign and digits.
fn atoi(a: &str) -> Option<i64> {
    let digits = a.strip_prefix(['+', '-']).unwrap_or(a);
    (!digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit())).then(|| a.parse::<i64>().ok()).flatten()
}

/// A function's integer argument, as nats-server reads it (spaces around it allowed).
fn int_arg(arg: &str, token: &str) -> Result<i64, String> {
    atoi(arg.trim_matches(' ')).ok_or_else(|| dest_err("function argument is invalid or in the wrong format", token))
}

/// What a destination token is: a literal, or a reference (wildcard indexes, 1-based) with
/// its function.
enum Placeholder {
    Literal,
    Ref { indexes: Vec<i64>, make: Box<dyn Fn(&[usize]) -> Part> },
}

fn placeholder(token: &str) -> Result<Placeholder, String> {
    let not_enough = || dest_err("not enough arguments passed to the function", token);
    let too_many = || dest_err("too many arguments passed to the function", token);
    if token.len() > 1 && token.starts_with('$') {
        // Not a number: another `$` token, taken literally (as nats-server).
        return Ok(match atoi(&token[1..]) {
            Some(i) => Placeholder::Ref { indexes: vec![i], make: Box::new(|at| Part::Wildcard(at[0])) },
            None => Placeholder::Literal,
        });
    }
    if !(token.len() > 4 && token.starts_with("{{") && token.ends_with("}}")) {
        return Ok(Placeholder::Literal);
    }
    let Some((name, args)) = function(token) else { return Err(dest_err("unknown function", token)) };
    let Some(f) = known_function(name) else { return Err(dest_err("unknown function", token)) };
    let index_and_int = |args: &[&str]| -> Result<(i64, i64), String> {
        match args.len() {
            0 | 1 => Err(not_enough()),
            2 => Ok((int_arg(args[0], token)?, int_arg(args[1], token)?)),
            _ => Err(too_many()),
        }
    };
    let r = |indexes: Vec<i64>, make: Box<dyn Fn(&[usize]) -> Part>| Ok(Placeholder::Ref { indexes, make });
    match f {
        "wildcard" => match args.as_slice() {
            [""] => Err(not_enough()),
            [one] => r(vec![int_arg(one, token)?], Box::new(|at| Part::Wildcard(at[0]))),
            _ => Err(too_many()),
        },
        "partition" => {
            if args.len() < 2 {
                return Err(not_enough());
            }
            let buckets = int_arg(args[0], token)?;
            let indexes = args[1..].iter().map(|a| int_arg(a, token)).collect::<Result<Vec<_>, _>>()?;
            if buckets <= 0 || buckets > i64::from(i32::MAX) {
                return Err(dest_err("function argument is invalid or in the wrong format", token));
            }
            r(indexes, Box::new(move |at| Part::Partition { buckets: buckets as u32, from: at.to_vec() }))
        }
        "split" => match args.as_slice() {
            [_] | [] => Err(not_enough()),
            [index, delim] => {
                let index = int_arg(index, token)?;
                if delim.contains(' ') || delim.contains('.') {
                    return Err(dest_err("function argument is invalid or in the wrong format", token));
                }
                let delim: Box<str> = (*delim).into();
                r(vec![index], Box::new(move |at| Part::Split(at[0], delim.clone())))
            }
            _ => Err(too_many()),
        },
        _ => {
            let (index, n) = index_and_int(&args)?;
            let make: Box<dyn Fn(&[usize]) -> Part> = match f {
                "splitFromLeft" => Box::new(move |at| Part::SplitFromLeft(at[0], n)),
                "splitFromRight" => Box::new(move |at| Part::SplitFromRight(at[0], n)),
                "sliceFromLeft" => Box::new(move |at| Part::SliceFromLeft(at[0], n)),
                _ => Box::new(move |at| Part::SliceFromRight(at[0], n)),
            };
            r(vec![index], make)
        }
    }
}

impl Transform {
    /// The transform of `src` into `dest`, or nats-server's reason for refusing it.
    pub fn new(src: &str, dest: &str) -> Result<Transform, String> {
        let (Some((stars, fwc)), Some((dstars, dfwc))) = (subject_info(src), subject_info(dest)) else { return Err("invalid subject".into()) };
        if dstars > 0 || fwc != dfwc {
            return Err("invalid subject".into());
        }
        let src_tokens = src.split('.').count();
        // Where the source's N-th `*` is.
        let star_at: Vec<usize> = src.split('.').enumerate().filter(|(_, t)| *t == "*").map(|(i, _)| i).collect();
        if stars == 0 && !fwc {
            return Ok(Transform { dest: dest.into(), parts: None, src_tokens, stars: star_at });
        }
        let mut parts = Vec::new();
        let mut refs = 0;
        for t in dest.split('.') {
            match placeholder(t)? {
                Placeholder::Literal => parts.push(Part::Literal(t.into())),
                Placeholder::Ref { indexes, make } => {
                    refs += 1;
                    let mut at = Vec::with_capacity(indexes.len());
                    for i in indexes {
                        if i > stars as i64 {
                            return Err(dest_err("wildcard index out of range", &format!("{t}: [{i}]")));
                        }
                        // Index 0 or below: the first token, as nats-server's lookup.
                        at.push(if i >= 1 { star_at[i as usize - 1] } else { 0 });
                    }
                    parts.push(make(&at));
                }
            }
        }
        if refs < stars {
            return Err(dest_err("not using all of the token wildcard(s)", dest));
        }
        Ok(Transform { dest: dest.into(), parts: Some(parts), src_tokens, stars: star_at })
    }

    /// The destination with each wildcard reference written as `*`, when it uses no
    /// function and takes the source's wildcards each once, in order (the form of a
    /// subscription).
    pub fn as_pattern(&self) -> Result<String, Shape> {
        let Some(parts) = &self.parts else { return Ok(self.dest.clone()) };
        let (mut out, mut used) = (Vec::new(), Vec::new());
        for (p, t) in parts.iter().zip(self.dest.split('.')) {
            match p {
                Part::Literal(l) => out.push(&**l),
                Part::Wildcard(at) => {
                    used.push(*at);
                    out.push("*");
                }
                _ => return Err(Shape::Function(t.to_string())),
            }
        }
        if used != self.stars {
            return Err(Shape::OutOfOrder);
        }
        Ok(out.join("."))
    }

    /// The destination of `subject` (a subject the source matches).
    pub fn apply<'s>(&'s self, subject: &[u8]) -> Cow<'s, [u8]> {
        let Some(parts) = &self.parts else { return Cow::Borrowed(self.dest.as_bytes()) };
        let tokens: Vec<&[u8]> = subject::tokens(subject).collect();
        let tok = |i: usize| tokens.get(i).copied().unwrap_or(b"");
        let mut out: Vec<u8> = Vec::with_capacity(subject.len() + self.dest.len());
        let last = parts.len() - 1;
        for (i, p) in parts.iter().enumerate() {
            match p {
                Part::Literal(l) if &**l == ">" => break,
                Part::Literal(l) => out.extend_from_slice(l.as_bytes()),
                Part::Wildcard(at) => out.extend_from_slice(tok(*at)),
                Part::Partition { buckets, from } => {
                    let key: Vec<u8> = from.iter().flat_map(|at| tok(*at).iter().copied()).collect();
                    out.extend_from_slice((fnv1a(&key) % buckets).to_string().as_bytes());
                }
                Part::SplitFromLeft(at, n) => {
                    let t = tok(*at);
                    match usize::try_from(*n).ok().filter(|n| *n > 0 && *n < t.len()) {
                        Some(n) => out.extend_from_slice(&[&t[..n], b".", &t[n..]].concat()),
                        None => out.extend_from_slice(t),
                    }
                }
                Part::SplitFromRight(at, n) => {
                    let t = tok(*at);
                    match usize::try_from(*n).ok().filter(|n| *n > 0 && *n < t.len()) {
                        Some(n) => out.extend_from_slice(&[&t[..t.len() - n], b".", &t[t.len() - n..]].concat()),
                        None => out.extend_from_slice(t),
                    }
                }
                Part::SliceFromLeft(at, n) => {
                    let t = tok(*at);
                    match usize::try_from(*n).ok().filter(|n| *n > 0 && *n < t.len()) {
                        Some(n) => out.extend_from_slice(&t.chunks(n).collect::<Vec<_>>().join(&b'.')),
                        None => out.extend_from_slice(t),
                    }
                }
                Part::SliceFromRight(at, n) => {
                    let t = tok(*at);
                    match usize::try_from(*n).ok().filter(|n| *n > 0 && *n < t.len()) {
                        Some(n) => {
                            let first = t.len() % n;
                            let mut pieces: Vec<&[u8]> = Vec::new();
                            if first > 0 {
                                pieces.push(&t[..first]);
                            }
                            pieces.extend(t[first..].chunks(n));
                            out.extend_from_slice(&pieces.join(&b'.'));
                        }
                        None => out.extend_from_slice(t),
                    }
                }
                Part::Split(at, delim) => out.extend_from_slice(&split(tok(*at), delim.as_bytes())),
            }
            if i < last {
                out.push(b'.');
            }
        }
        if matches!(parts.last(), Some(Part::Literal(l)) if &**l == ">") {
            let rest = tokens.get(self.src_tokens.saturating_sub(1)..).unwrap_or(&[]);
            out.extend_from_slice(&rest.join(&b'.'));
        }
        Cow::Owned(out)
    }
}

/// `{{split(N,D)}}`: the token's pieces between delimiters, empty pieces left out, as
/// nats-server joins them. An empty delimiter splits between characters (Go's rule).
fn split(t: &[u8], delim: &[u8]) -> Vec<u8> {
    let pieces: Vec<&[u8]> = if delim.is_empty() {
        // Between UTF-8 characters (between bytes where the token is not UTF-8).
        let mut cuts: Vec<usize> = match std::str::from_utf8(t) {
            Ok(s) => s.char_indices().map(|(i, _)| i).collect(),
            Err(_) => (0..t.len()).collect(),
        };
        cuts.push(t.len());
        cuts.windows(2).map(|w| &t[w[0]..w[1]]).collect()
    } else {
        let mut v = Vec::new();
        let mut rest = t;
        while let Some(i) = memchr::memmem::find(rest, delim) {
            v.push(&rest[..i]);
            rest = &rest[i + delim.len()..];
        }
        v.push(rest);
        v
    };
    let mut out = Vec::with_capacity(t.len());
    for (j, p) in pieces.iter().enumerate() {
        out.extend_from_slice(p);
        if j + 1 < pieces.len() && !pieces[j + 1].is_empty() && !(j == 0 && p.is_empty()) {
            out.push(b'.');
        }
    }
    out
}

/// FNV-1a, 32 bits (the hash of `{{partition}}`).
fn fnv1a(key: &[u8]) -> u32 {
    key.iter().fold(0x811c_9dc5u32, |h, b| (h ^ u32::from(*b)).wrapping_mul(0x0100_0193))
}

/// One destination with its cumulative weight (picked when a roll of 0..100 is below it).
#[derive(Clone, Debug, PartialEq)]
struct Dest {
    tr: Transform,
    upto: u8,
}

/// A source and where its messages go.
#[derive(Clone, Debug, PartialEq)]
pub struct Mapping {
    src: String,
    dests: Vec<Dest>,
    /// Cluster-scoped destinations: they replace `dests` on a server of that cluster.
    clusters: Vec<(String, Vec<Dest>)>,
}

impl Mapping {
    /// The mapping of `rule`, or nats-server's reason for refusing it.
    pub fn new(rule: &MapRule) -> Result<Mapping, String> {
        let src = rule.src.as_str();
        if !subject::valid_subject(src.as_bytes()) {
            return Err("invalid subject".into());
        }
        let mut seen: Vec<&str> = Vec::new();
        let (mut total, mut plain, mut scoped) = (0u32, Vec::new(), Vec::<(String, Vec<Dest>)>::new());
        for d in &rule.dests {
            if seen.contains(&d.subject.as_str()) {
                return Err(format!("duplicate entry for {:?}", d.subject));
            }
            seen.push(&d.subject);
            if d.weight > 100 {
                return Err("individual weights need to be <= 100".into());
            }
            total += u32::from(d.weight);
            if total > 100 {
                return Err("total weight needs to be <= 100".into());
            }
            validate_destination(&d.subject)?;
            let dest = Dest { tr: Transform::new(src, &d.subject)?, upto: d.weight };
            if d.cluster.is_empty() {
                plain.push(dest);
            } else if let Some((_, v)) = scoped.iter_mut().find(|(c, _)| *c == d.cluster) {
                v.push(dest);
            } else {
                scoped.push((d.cluster.clone(), vec![dest]));
            }
        }
        let has_src = seen.contains(&src);
        let complete = |mut dests: Vec<Dest>| -> Result<Vec<Dest>, String> {
            let sum: u32 = dests.iter().map(|d| u32::from(d.upto)).sum();
            if sum != 100 && !has_src {
                // The rest keeps the source subject.
                let keep = src.split('.').scan(0, |n, t| Some(if t == "*" { *n += 1; format!("${n}") } else { t.to_string() })).collect::<Vec<_>>().join(".");
                let weight = if dests.is_empty() { 100 } else { (100 - sum) as u8 };
                dests.push(Dest { tr: Transform::new(src, &keep)?, upto: weight });
            }
            dests.sort_by_key(|d| d.upto);
            let mut acc = 0u8;
            for d in &mut dests {
                acc = acc.saturating_add(d.upto);
                d.upto = acc;
            }
            Ok(dests)
        };
        let dests = complete(plain)?;
        let clusters = scoped.into_iter().map(|(c, v)| Ok((c, complete(v)?))).collect::<Result<Vec<_>, String>>()?;
        Ok(Mapping { src: src.into(), dests, clusters })
    }

    /// The destinations as the monitoring endpoints show them: subject, cumulative weight,
    /// cluster.
    pub fn shown(&self) -> Vec<MapDest> {
        let plain = self.dests.iter().map(|d| (d, ""));
        let scoped = self.clusters.iter().flat_map(|(c, v)| v.iter().map(move |d| (d, c.as_str())));
        plain.chain(scoped).map(|(d, c)| MapDest { subject: d.tr.dest.clone(), weight: d.upto, cluster: c.into() }).collect()
    }

    pub fn src(&self) -> &str {
        &self.src
    }
}

/// An account's mappings, in the order configured; the first whose source matches a
/// subject maps it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Mappings {
    list: Vec<Mapping>,
    /// The server's cluster name (cluster-scoped destinations).
    cluster: String,
}

impl Mappings {
    /// The mappings of `rules` that nats-server takes (with the reasons of those it does
    /// not), for a server in `cluster`.
    pub fn new(rules: &[MapRule], cluster: &str) -> (Mappings, Vec<(String, String)>) {
        let mut list: Vec<Mapping> = Vec::new();
        let mut refused = Vec::new();
        for r in rules {
            match Mapping::new(r) {
                // A source written twice: the later one replaces the earlier in place.
                Ok(m) => match list.iter_mut().find(|x| x.src == m.src) {
                    Some(x) => *x = m,
                    None => list.push(m),
                },
                Err(why) => refused.push((r.src.clone(), why)),
            }
        }
        (Mappings { list, cluster: cluster.into() }, refused)
    }

    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    pub fn list(&self) -> &[Mapping] {
        &self.list
    }

    /// Where a message published on `subject` goes: None when no mapping matches, an empty
    /// subject when the matching mapping drops it. `roll` is a random number in 0..100.
    pub fn map(&self, subject: &[u8], roll: impl FnOnce() -> u8) -> Option<Cow<'_, [u8]>> {
        let m = self.list.iter().find(|m| m.src.as_bytes() == subject || pattern_covers(m.src.as_bytes(), subject))?;
        let dests = match m.clusters.iter().find(|(c, _)| !self.cluster.is_empty() && *c == self.cluster) {
            Some((_, v)) => v,
            None => &m.dests,
        };
        let d = match dests.as_slice() {
            [one] if one.upto == 100 => Some(one),
            _ => {
                let w = roll();
                dests.iter().find(|d| w < d.upto)
            }
        };
        Some(d.map_or(Cow::Borrowed(&b""[..]), |d| d.tr.apply(subject)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map1(src: &str, dest: &str, subject: &str) -> String {
        let t = Transform::new(src, dest).unwrap();
        String::from_utf8(t.apply(subject.as_bytes()).into_owned()).unwrap()
    }

    #[test]
    fn wildcards_and_functions() {
        assert_eq!(map1("foo", "bar", "foo"), "bar");
        assert_eq!(map1("foo", "bar.{{wildcard(1)}}", "foo"), "bar.{{wildcard(1)}}", "no wildcards: as written");
        assert_eq!(map1("a.*.*", "b.$2.$1", "a.x.y"), "b.y.x");
        assert_eq!(map1("a.*.>", "b.{{wildcard(1)}}.>", "a.x.y.z"), "b.x.y.z");
        assert_eq!(map1("a.>", "b.>", "a.x.y"), "b.x.y");
        assert_eq!(map1("a.*", "b.{{ Wildcard( 1 ) }}", "a.x"), "b.x");
        assert_eq!(map1("a.*", "b.{{partition(3,1)}}.$1", "a.x"), format!("b.{}.x", fnv1a(b"x") % 3));
        assert_eq!(map1("a.*.*", "p.{{partition(10,1,2)}}.$1.$2", "a.x.y"), format!("p.{}.x.y", fnv1a(b"xy") % 10));
        assert_eq!(map1("a.*", "b.{{splitFromLeft(1,2)}}", "a.abcdef"), "b.ab.cdef");
        assert_eq!(map1("a.*", "b.{{splitFromRight(1,2)}}", "a.abcdef"), "b.abcd.ef");
        assert_eq!(map1("a.*", "b.{{splitFromLeft(1,9)}}", "a.abc"), "b.abc");
        assert_eq!(map1("a.*", "b.{{sliceFromLeft(1,2)}}", "a.abcde"), "b.ab.cd.e");
        assert_eq!(map1("a.*", "b.{{sliceFromRight(1,2)}}", "a.abcde"), "b.a.bc.de");
        assert_eq!(map1("a.*", "b.{{sliceFromRight(1,2)}}", "a.abcd"), "b.ab.cd");
        assert_eq!(map1("a.*", "b.{{split(1,-)}}", "a.x-y--z-"), "b.x.y.z");
        assert_eq!(map1("a.*", "b.{{split(1,-)}}", "a.-x"), "b.x");
        assert_eq!(map1("a.*", "b.$0", "a.x"), "b.a", "index 0: the first token");
        assert_eq!(map1("a.*.*", "b.$1.$1", "a.x.y"), "b.x.x", "references counted, not each wildcard");
        assert_eq!(map1("a.*", "b.$x.$1", "a.q"), "b.$x.q", "$ and not a number: literal");
    }

    #[test]
    fn bad_destinations_in_the_references_words() {
        let bad = |src: &str, dest: &str| {
            let rule = MapRule { src: src.into(), dests: vec![MapDest { subject: dest.into(), weight: 100, cluster: String::new() }] };
            Mapping::new(&rule).unwrap_err()
        };
        assert_eq!(bad("a.*", "b"), "invalid mapping destination: not using all of the token wildcard(s) in b");
        assert_eq!(bad("a.*", "b.$2"), "invalid mapping destination: wildcard index out of range in $2: [2]");
        assert_eq!(bad("a.*", "b.{{foo(1)}}"), "invalid mapping destination: unknown function in {{foo(1)}}");
        assert_eq!(bad("a.*", "b.{{wildcard()}}"), "invalid mapping destination: not enough arguments passed to the function in {{wildcard()}}");
        assert_eq!(bad("a.*", "b.{{wildcard(1,2)}}"), "invalid mapping destination: too many arguments passed to the function in {{wildcard(1,2)}}");
        assert_eq!(bad("a.*", "b.{{partition(x,1)}}"), "invalid mapping destination: function argument is invalid or in the wrong format in {{partition(x,1)}}");
        assert_eq!(bad("a.*", "b.{{partition(0,1)}}"), "invalid mapping destination: function argument is invalid or in the wrong format in {{partition(0,1)}}");
        assert_eq!(bad("a.>", "b"), "invalid subject");
        assert_eq!(bad("a", "b.*"), "invalid subject");
        assert_eq!(bad("a", "b..c"), "invalid mapping destination: invalid subject in ");
    }

    #[test]
    fn weights_and_the_rest() {
        let rule = |dests: &[(&str, u8)]| MapRule { src: "w".into(), dests: dests.iter().map(|(s, w)| MapDest { subject: s.to_string(), weight: *w, cluster: String::new() }).collect() };
        let (m, bad) = Mappings::new(&[rule(&[("w.a", 50), ("w.b", 50)])], "");
        assert!(bad.is_empty());
        assert_eq!(&*m.map(b"w", || 0).unwrap(), b"w.a");
        assert_eq!(&*m.map(b"w", || 99).unwrap(), b"w.b");
        assert!(m.map(b"x", || 0).is_none());
        // 30% mapped, the rest keeps the subject.
        let (m, _) = Mappings::new(&[rule(&[("w.k", 30)])], "");
        assert_eq!(&*m.map(b"w", || 29).unwrap(), b"w.k");
        assert_eq!(&*m.map(b"w", || 30).unwrap(), b"w");
        // The source among the destinations: the rest is dropped.
        let (m, _) = Mappings::new(&[rule(&[("w.k", 30), ("w", 20)])], "");
        assert_eq!(&*m.map(b"w", || 60).unwrap(), b"");
        let (_, bad) = Mappings::new(&[rule(&[("w.a", 60), ("w.b", 50)])], "");
        assert_eq!(bad[0].1, "total weight needs to be <= 100");
        let (_, bad) = Mappings::new(&[rule(&[("w.a", 10), ("w.a", 10)])], "");
        assert_eq!(bad[0].1, "duplicate entry for \"w.a\"");
        // Cluster scoped.
        let scoped = MapRule { src: "c".into(), dests: vec![MapDest { subject: "c.here".into(), weight: 100, cluster: "east".into() }] };
        let (m, _) = Mappings::new(std::slice::from_ref(&scoped), "east");
        assert_eq!(&*m.map(b"c", || 0).unwrap(), b"c.here");
        let (m, _) = Mappings::new(&[scoped], "west");
        assert_eq!(&*m.map(b"c", || 0).unwrap(), b"c");
    }
}
