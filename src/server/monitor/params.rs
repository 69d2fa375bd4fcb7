//! Query strings, read as nats-server reads them: the first value of a key wins, an empty
//! value is as good as none, and a bad number or boolean is a 400 whose text is Go's
//! `strconv` error (`Error decoding int for 'offset': strconv.Atoi: parsing "x": invalid syntax`).

/// The decoded `key=value` pairs of a query string.
#[derive(Debug, Default)]
pub struct Query(Vec<(String, String)>);

/// `%XX` and `+` decoding; a malformed escape is kept as it is (Go drops the whole pair; a
/// monitoring query gains nothing from being that strict).
fn decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = |c: u8| (c as char).to_digit(16);
                match (b.get(i + 1).copied().and_then(hex), b.get(i + 2).copied().and_then(hex)) {
                    (Some(h), Some(l)) => {
                        out.push((h * 16 + l) as u8);
                        i += 2;
                    }
                    _ => out.push(b'%'),
                }
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

impl Query {
    /// Parse the part of a request target after `?`.
    ///
    /// ```
    /// use natsu::server::monitor::params::Query;
    /// let q = Query::parse("subs=1&sort=bytes_to&limit=&x=%41+b&subs=0");
    /// assert_eq!(q.get("subs"), Some("1"));
    /// assert_eq!(q.get("limit"), None);
    /// assert_eq!(q.get("x"), Some("A b"));
    /// ```
    pub fn parse(raw: &str) -> Query {
        Query(
            raw.split('&')
                .filter(|p| !p.is_empty())
                .map(|p| match p.split_once('=') {
                    Some((k, v)) => (decode(k), decode(v)),
                    None => (decode(p), String::new()),
                })
                .collect(),
        )
    }

    /// The first value of `key`, if not empty.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str()).filter(|v| !v.is_empty())
    }

    /// An `int` parameter (Go's `strconv.Atoi`); absent is `default`.
    pub fn int(&self, key: &str, default: i64) -> Result<i64, String> {
        let Some(v) = self.get(key) else { return Ok(default) };
        let (neg, digits) = match v.as_bytes()[0] {
            b'-' => (true, &v[1..]),
            b'+' => (false, &v[1..]),
            _ => (false, v),
        };
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(format!("Error decoding int for '{key}': strconv.Atoi: parsing {}: invalid syntax", go_quote(v)));
        }
        let n: Option<i64> = digits.parse::<i64>().ok().map(|n| if neg { -n } else { n });
        // i64::MIN's magnitude does not fit an i64; Go accepts it.
        let n = n.or_else(|| (neg && digits.trim_start_matches('0') == "9223372036854775808").then_some(i64::MIN));
        n.ok_or_else(|| format!("Error decoding int for '{key}': strconv.Atoi: parsing {}: value out of range", go_quote(v)))
    }

    /// A `uint64` parameter (Go's `strconv.ParseUint`); absent is None.
    pub fn uint64(&self, key: &str) -> Result<Option<u64>, String> {
        let Some(v) = self.get(key) else { return Ok(None) };
        if !v.bytes().all(|b| b.is_ascii_digit()) {
            return Err(format!("Error decoding uint64 for '{key}': strconv.ParseUint: parsing {}: invalid syntax", go_quote(v)));
        }
        v.parse::<u64>().map(Some).map_err(|_| {
            format!("Error decoding uint64 for '{key}': strconv.ParseUint: parsing {}: value out of range", go_quote(v))
        })
    }

    /// A boolean parameter (Go's `strconv.ParseBool`); absent is false.
    pub fn boolean(&self, key: &str) -> Result<bool, String> {
        match self.get(key) {
            None => Ok(false),
            Some("1" | "t" | "T" | "TRUE" | "true" | "True") => Ok(true),
            Some("0" | "f" | "F" | "FALSE" | "false" | "False") => Ok(false),
            Some(v) => Err(format!("Error decoding boolean for '{key}': strconv.ParseBool: parsing {}: invalid syntax", go_quote(v))),
        }
    }
}

/// A string in double quotes with Go's escapes for the common cases (`strconv.Quote`).
fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => out.push_str(&format!("\\x{:02x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ints_as_go_reads_them() {
        let q = Query::parse("a=12&b=-5&c=%2B7&d=abc&e=99999999999999999999&f=1.5&g=-");
        assert_eq!(q.int("a", 0), Ok(12));
        assert_eq!(q.int("b", 0), Ok(-5));
        assert_eq!(q.int("c", 0), Ok(7));
        assert_eq!(q.int("missing", 1024), Ok(1024));
        assert_eq!(q.int("d", 0).unwrap_err(), "Error decoding int for 'd': strconv.Atoi: parsing \"abc\": invalid syntax");
        assert_eq!(
            q.int("e", 0).unwrap_err(),
            "Error decoding int for 'e': strconv.Atoi: parsing \"99999999999999999999\": value out of range"
        );
        assert!(q.int("f", 0).is_err());
        assert!(q.int("g", 0).is_err());
    }

    #[test]
    fn uints_and_bools() {
        let q = Query::parse("cid=4&bad=-1&s=detail&t=True");
        assert_eq!(q.uint64("cid"), Ok(Some(4)));
        assert_eq!(q.uint64("none"), Ok(None));
        assert_eq!(
            q.uint64("bad").unwrap_err(),
            "Error decoding uint64 for 'bad': strconv.ParseUint: parsing \"-1\": invalid syntax"
        );
        assert_eq!(q.boolean("t"), Ok(true));
        assert_eq!(
            q.boolean("s").unwrap_err(),
            "Error decoding boolean for 's': strconv.ParseBool: parsing \"detail\": invalid syntax"
        );
    }

    #[test]
    fn decoding_never_panics() {
        for raw in ["%", "%4", "%zz", "a=%", "a=%e2%82", "&&==&", "=%41", "a=b=c"] {
            let _ = Query::parse(raw);
        }
        assert_eq!(Query::parse("a=b=c").get("a"), Some("b=c"));
        assert_eq!(Query::parse("a=%4").get("a"), Some("%4"));
    }
}
