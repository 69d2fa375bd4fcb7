//! Subject mappings as a config file writes them (`mappings { }`, read into [`MapRule`]s),
//! and subject patterns as imports use them: whether two patterns can match one subject,
//! and an import's `to` checked against its subject as nats-server 2.9 checks the mapping
//! between them (its reasons, word for word).
//!
//! In `to`, each `*` stands for the subject's next `*` wildcard, `$N` and `{{wildcard(N)}}`
//! for its N-th; a subject's `>` must be matched by a `>` (see
//! [`Transform`](crate::server::mapping::Transform)). natsu's imports fill the wildcards in
//! order, so `to` comes back with every reference written as `*`; references out of order
//! or repeated, and the other mapping functions (`{{partition(..)}}`, …), are not served in
//! imports yet (subject mappings serve them).

use super::Loader;
use crate::config::conf::{Kind, Value};
use crate::protocol::subject::valid_subject;
use crate::server::mapping::{MapDest, MapRule, Mapping, Shape, Transform};

/// What an import's `to` is to the subject it maps.
#[derive(Debug, PartialEq)]
pub(super) enum Mapped {
    /// No mapping: the subject has no wildcards, or `to` is the subject.
    Same,
    /// `to` with its wildcard references written as `*`.
    To(String),
    /// nats-server refuses it; its reason.
    Invalid(String),
    /// nats-server takes it, natsu does not serve it yet; what it is.
    NotServed(String),
}

/// Whether a subject has a `*` or `>` token.
pub(super) fn has_wildcard(s: &str) -> bool {
    s.split('.').any(|t| t == "*" || t == ">")
}

/// Whether two subject patterns can match one subject.
pub(super) fn collide(a: &str, b: &str) -> bool {
    let (mut x, mut y) = (a.split('.'), b.split('.'));
    loop {
        match (x.next(), y.next()) {
            (None, None) => return true,
            (Some(">"), Some(_)) | (Some(_), Some(">")) => return true,
            (Some("*"), Some(_)) | (Some(_), Some("*")) => {}
            (Some(p), Some(q)) if p == q => {}
            _ => return false,
        }
    }
}

/// `to` for an import of `subject` (a valid subject), checked as nats-server checks an
/// import's mapping (its transform, in its words).
pub(super) fn map(subject: &str, to: &str) -> Mapped {
    if !has_wildcard(subject) || to == subject {
        return Mapped::Same;
    }
    // Each `*` of `to` is the next wildcard, as `$1`, `$2`, … (nats-server's own rewrite,
    // which its reasons quote).
    let mut n = 0;
    let dest: Vec<String> = to
        .split('.')
        .map(|t| match t {
            "*" => {
                n += 1;
                format!("${n}")
            }
            _ => t.to_string(),
        })
        .collect();
    match Transform::new(subject, &dest.join(".")) {
        Err(why) => Mapped::Invalid(why),
        Ok(t) => match t.as_pattern() {
            Ok(p) => Mapped::To(p),
            Err(Shape::Function(f)) => Mapped::NotServed(format!("the mapping function {f}")),
            Err(Shape::OutOfOrder) => Mapped::NotServed(format!("wildcards out of order or repeated ({to:?})")),
        },
    }
}

/// Where a `mappings` entry's destinations are read from.
impl Loader {
    /// `mappings { src: dest, src: [{destination: d, weight: 50%, cluster: c}, ...],
    /// src: {destination: d, weight: 100} }` (at the top, or in an account), checked as
    /// nats-server 2.9 checks it, in its words. A weighted entry that nats-server refuses
    /// with a Go panic's text (its own bug) is refused here with the reason.
    pub(super) fn mappings(&mut self, v: &Value) -> Vec<MapRule> {
        let Kind::Map(m) = &v.kind else {
            self.wrong_type("mappings", v, "a map");
            return Vec::new();
        };
        let mut rules = Vec::new();
        for e in m.entries.iter().filter(|e| !e.used_as_variable) {
            let src = &e.key;
            if !valid_subject(src.as_bytes()) {
                self.err(&e.pos, format_args!("Subject {src:?} is not a valid subject"));
                continue;
            }
            let (dests, single) = match &e.value.kind {
                Kind::Str(d) => (vec![MapDest { subject: d.clone(), weight: 100, cluster: String::new() }], Some(d)),
                Kind::Array(items) => {
                    let dests: Vec<Option<MapDest>> = items.iter().map(|item| self.map_dest(item)).collect();
                    if dests.iter().any(Option::is_none) {
                        continue;
                    }
                    (dests.into_iter().flatten().collect(), None)
                }
                Kind::Map(_) => match self.map_dest(&e.value) {
                    Some(d) => (vec![d], None),
                    None => continue,
                },
                _ => {
                    self.err(&e.pos, "Expected an entry for the mapping destination");
                    continue;
                }
            };
            let rule = MapRule { src: src.clone(), dests };
            // Where nats-server says it: at the key.
            if let Err(why) = Mapping::new(&rule) {
                match single {
                    Some(d) => self.err(&e.pos, format_args!("Error adding mapping for {src:?} to {d:?} : {why}")),
                    None => self.err(&e.pos, format_args!("Error adding mapping for {src:?} : {why}")),
                }
                continue;
            }
            rules.push(rule);
        }
        rules
    }

    /// `{destination: d, weight: 50%, cluster: c}` (`dest` for `destination`; the weight as
    /// an integer or `"N%"`, required).
    fn map_dest(&mut self, item: &Value) -> Option<MapDest> {
        let Kind::Map(m) = &item.kind else {
            self.err(&item.pos, "Expected an entry for the mapping destination");
            return None;
        };
        let mut d = MapDest::default();
        let mut weighted = false;
        for e in m.entries.iter().filter(|e| !e.used_as_variable) {
            let (k, v) = (e.key.to_ascii_lowercase(), &e.value);
            match k.as_str() {
                "dest" | "destination" => d.subject = self.string(&k, v)?,
                "cluster" => d.cluster = self.string(&k, v)?,
                "weight" => {
                    let w = match &v.kind {
                        Kind::Str(s) => match s.strip_suffix('%').unwrap_or(s).parse::<i64>() {
                            Ok(w) => w,
                            Err(_) => {
                                self.err(&e.pos, format_args!("Invalid weight {:?} for mapping destination", s.strip_suffix('%').unwrap_or(s)));
                                return None;
                            }
                        },
                        Kind::Int(w) => *w,
                        _ => {
                            self.err(&e.pos, format_args!("Unknown entry type for weight of {}", v.describe()));
                            return None;
                        }
                    };
                    if !(0..=100).contains(&w) {
                        self.err(&e.pos, format_args!("Invalid weight {w} for mapping destination"));
                        return None;
                    }
                    d.weight = w as u8;
                    weighted = true;
                }
                _ => {
                    self.err(&e.pos, format_args!("Unknown field {:?} for mapping destination", e.key));
                    return None;
                }
            }
        }
        if !weighted {
            self.err(&item.pos, format_args!("Missing weight for mapping destination {:?}", d.subject));
            return None;
        }
        Some(d)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn collisions() {
        for (a, b, want) in [("a.b", "a.b", true), ("a.*", "a.b", true), ("a.>", "a.b.c", true), ("*.b", "a.*", true), ("a", "a.b", false), ("a.>", "a", false), ("a.b", "a.c", false), (">", "x", true)] {
            assert_eq!(collide(a, b), want, "{a} {b}");
            assert_eq!(collide(b, a), want, "{b} {a}");
        }
    }

    /// nats-server 2.9's verdicts (its reasons as `nats-server -t` prints them).
    #[test]
    fn mappings() {
        let to = |s: &str| Mapped::To(s.into());
        let invalid = |s: &str| Mapped::Invalid(s.into());
        let table = [
            ("s.x", "t.*", Mapped::Same),
            ("s.*", "s.*", Mapped::Same),
            ("s.*", "t.*", to("t.*")),
            ("s.>", "t.>", to("t.>")),
            ("s.*.>", "t.$1.>", to("t.*.>")),
            ("s.*", "t.{{Wildcard( 1 )}}", to("t.*")),
            ("s.*.*", "t.$1.{{wildcard(2)}}", to("t.*.*")),
            ("s.*", "t", invalid("invalid mapping destination: not using all of the token wildcard(s) in t")),
            ("s.*.*", "t.*", invalid("invalid mapping destination: not using all of the token wildcard(s) in t.$1")),
            ("s.*.>", "t.>", invalid("invalid mapping destination: not using all of the token wildcard(s) in t.>")),
            ("s.*", "t.$x", invalid("invalid mapping destination: not using all of the token wildcard(s) in t.$x")),
            ("s.*.*", "t.*.*.*", invalid("invalid mapping destination: wildcard index out of range in $3: [3]")),
            ("s.>", "t.$1.>", invalid("invalid mapping destination: wildcard index out of range in $1: [1]")),
            ("s.>", "t", invalid("invalid subject")),
            ("s.*", "t.*.>", invalid("invalid subject")),
            ("s.*", "t..*", invalid("invalid subject")),
            ("s.*", "t.{{bogus(1)}}", invalid("invalid mapping destination: unknown function in {{bogus(1)}}")),
            ("s.*", "t.{{wildcard()}}", invalid("invalid mapping destination: not enough arguments passed to the function in {{wildcard()}}")),
            ("s.*", "t.{{wildcard(x)}}", invalid("invalid mapping destination: function argument is invalid or in the wrong format in {{wildcard(x)}}")),
            ("s.*", "t.{{wildcard(1,2)}}", invalid("invalid mapping destination: too many arguments passed to the function in {{wildcard(1,2)}}")),
            // nats-server takes these; natsu's imports fill wildcards in order only.
            ("s.*.*", "t.$2.$1", Mapped::NotServed("wildcards out of order or repeated (\"t.$2.$1\")".into())),
            ("s.*.*", "t.$1.$1", Mapped::NotServed("wildcards out of order or repeated (\"t.$1.$1\")".into())),
            ("s.*", "t.$0", Mapped::NotServed("wildcards out of order or repeated (\"t.$0\")".into())),
            ("s.*", "t.{{partition(2,1)}}", Mapped::NotServed("the mapping function {{partition(2,1)}}".into())),
        ];
        for (subject, to, want) in table {
            assert_eq!(map(subject, to), want, "{subject} -> {to}");
        }
    }
}
