//! `tls { verify_and_map: true }`: the client certificate names the user.
//!
//! nats-server 2.9 tries, in this order, and takes the first configured user (by name)
//! that matches:
//!
//! 1. each email address SAN, then each DNS name SAN, then each URI SAN, literally;
//! 2. the subject as a distinguished name, compared with every user name that reads as one
//!    (RFC 4514, attribute types case-insensitive, values exact): first RDN by RDN, then
//!    with the RDNs in any order. Only subjects made of the attributes C, ST, L, STREET,
//!    POSTALCODE, O, OU, CN, SERIALNUMBER and DC take part (an `emailAddress` in the subject
//!    rules this step out);
//! 3. the subject as Go's `pkix.Name` prints it (the known attributes above but DC, grouped
//!    by type in a fixed order, most specific first: `CN=dave,OU=Eng,O=Acme,L=SF,ST=CA,C=US`),
//!    first with the subject's DC attributes appended (`…,DC=org,DC=example`, in
//!    certificate order), then alone.
//!
//! natsu does the same, with its own parsing (x509-cert). What it compares is worked out
//! once per connection, after the handshake ([`CertNames`]); the lookup runs with each
//! check, so a reload sees the new users.

use x509_cert::der::asn1::ObjectIdentifier;
use x509_cert::der::{Decode, Tag, Tagged};
use x509_cert::ext::pkix::name::GeneralName;
use x509_cert::ext::pkix::SubjectAltName;

/// The names a client certificate can be mapped by.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CertNames {
    /// Email address SANs, tried first, in certificate order.
    pub emails: Vec<String>,
    /// DNS name SANs, tried next.
    pub dns: Vec<String>,
    /// URI SANs, tried last of the SANs, as written in the certificate.
    pub uris: Vec<String>,
    /// The subject as a DN, last RDN first (RFC 4514 order); None when it holds an attribute
    /// type outside the known set or a value that is not a string.
    dn: Option<Dn>,
    /// Go's `pkix.Name` rendering of the subject (step 3).
    rdn: String,
    /// The subject's DC components, `DC=x` joined with commas, in certificate order.
    dcs: String,
    /// Whether the subject has any attribute at all: a certificate with neither a subject,
    /// an email nor a URI names no one (as nats-server: its DNS names are not looked at).
    has_subject: bool,
}

/// One attribute of a certificate's subject: its type's short name when it is one of
/// [`TYPES`], its value when it is a string.
type Attr = (Option<&'static str>, Option<String>);

/// A distinguished name: RDNs, each a set of (type, value).
#[derive(Clone, Debug, Default, PartialEq)]
struct Dn(Vec<Vec<(String, String)>>);

/// Attribute types by OID, with the short names DNs are written with.
const TYPES: &[(&str, &str)] = &[
    ("2.5.4.3", "CN"),
    ("2.5.4.5", "SERIALNUMBER"),
    ("2.5.4.6", "C"),
    ("2.5.4.7", "L"),
    ("2.5.4.8", "ST"),
    ("2.5.4.9", "STREET"),
    ("2.5.4.10", "O"),
    ("2.5.4.11", "OU"),
    ("2.5.4.17", "POSTALCODE"),
    ("0.9.2342.19200300.100.1.25", "DC"),
];

/// The order Go's `pkix.Name` lists attribute types in before it prints them last first.
const GO_ORDER: &[&str] = &["C", "ST", "L", "STREET", "POSTALCODE", "O", "OU", "CN", "SERIALNUMBER"];

const SAN: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.29.17");

fn short_name(oid: &ObjectIdentifier) -> Option<&'static str> {
    let oid = oid.to_string();
    TYPES.iter().find(|(o, _)| *o == oid).map(|&(_, n)| n)
}

/// A directory string's text (the string types X.509 names use); None for anything else.
fn string_value(tag: Tag, bytes: &[u8]) -> Option<String> {
    match tag {
        Tag::Utf8String | Tag::PrintableString | Tag::Ia5String | Tag::NumericString | Tag::TeletexString => {
            String::from_utf8(bytes.to_vec()).ok()
        }
        Tag::BmpString if bytes.len() % 2 == 0 => {
            let units: Vec<u16> = bytes.chunks_exact(2).map(|c| u16::from_be_bytes([c[0], c[1]])).collect();
            String::from_utf16(&units).ok()
        }
        _ => None,
    }
}

impl CertNames {
    /// Read the names of a DER certificate (the leaf the client presented).
    pub fn from_der(der: &[u8]) -> Result<CertNames, String> {
        let cert = x509_cert::Certificate::from_der(der).map_err(|e| format!("client certificate: {e}"))?;
        let tbs = &cert.tbs_certificate;
        let mut names = CertNames::default();
        for ext in tbs.extensions.iter().flatten().filter(|e| e.extn_id == SAN) {
            let san = SubjectAltName::from_der(ext.extn_value.as_bytes()).map_err(|e| format!("client certificate SAN: {e}"))?;
            for name in san.0 {
                match name {
                    GeneralName::Rfc822Name(s) => names.emails.push(s.to_string()),
                    GeneralName::DnsName(s) => names.dns.push(s.to_string()),
                    GeneralName::UniformResourceIdentifier(s) => names.uris.push(s.to_string()),
                    _ => {}
                }
            }
        }
        // Every attribute, in certificate order (first RDN first).
        let rdns: Vec<Vec<Attr>> = tbs
            .subject
            .0
            .iter()
            .map(|rdn| rdn.0.iter().map(|atv| (short_name(&atv.oid), string_value(atv.value.tag(), atv.value.value()))).collect())
            .collect();
        names.read_subject(&rdns);
        Ok(names)
    }

    /// Work out the subject's forms from its attributes (type short name if known, value if
    /// a string), first RDN first.
    fn read_subject(&mut self, rdns: &[Vec<Attr>]) {
        self.has_subject = rdns.iter().any(|r| !r.is_empty());
        // Step 2: last RDN first, and within an RDN last attribute first.
        self.dn = rdns
            .iter()
            .rev()
            .filter(|r| !r.is_empty())
            .map(|r| r.iter().rev().map(|(t, v)| Some((t.as_ref()?.to_string(), v.clone()?))).collect::<Option<Vec<_>>>())
            .collect::<Option<Vec<_>>>()
            .map(Dn);
        // Step 3: values of each known type in certificate order; CN and SERIALNUMBER keep
        // their last value only, as Go's Name does.
        let values = |ty: &str| -> Vec<&str> {
            let all = rdns.iter().flatten().filter(|(t, _)| *t == Some(ty)).filter_map(|(_, v)| v.as_deref());
            match ty {
                "CN" | "SERIALNUMBER" => all.last().filter(|v| !v.is_empty()).into_iter().collect(),
                _ => all.collect(),
            }
        };
        let groups: Vec<String> = GO_ORDER
            .iter()
            .rev()
            .filter_map(|ty| {
                let v = values(ty);
                (!v.is_empty()).then(|| v.iter().map(|v| format!("{ty}={}", go_escape(v))).collect::<Vec<_>>().join("+"))
            })
            .collect();
        self.rdn = groups.join(",");
        self.dcs = values("DC").iter().map(|v| format!("DC={v}")).collect::<Vec<_>>().join(",");
    }

    /// The user this certificate names, looked up with `user_named` (a user by exact name)
    /// and, for DN matching, among `users` (every candidate user name).
    pub fn map<'a, U>(&self, users: impl Iterator<Item = (&'a str, U)> + Clone, user_named: impl Fn(&str) -> Option<U>) -> Option<U> {
        if self.emails.is_empty() && self.uris.is_empty() && !self.has_subject {
            return None;
        }
        for name in self.emails.iter().chain(&self.dns).chain(&self.uris) {
            if let Some(u) = user_named(name) {
                return Some(u);
            }
        }
        if let Some(dn) = &self.dn {
            let parsed: Vec<(Dn, U)> = users.filter_map(|(name, u)| Some((Dn::parse(name)?, u))).collect();
            let mut rest = Vec::with_capacity(parsed.len());
            for (their, u) in parsed {
                if their.equal(dn) {
                    return Some(u);
                }
                rest.push((their, u));
            }
            if let Some(u) = rest.into_iter().find_map(|(their, u)| their.rdns_match(dn).then_some(u)) {
                return Some(u);
            }
        }
        if !self.dcs.is_empty() {
            if let Some(u) = user_named(&format!("{},{}", self.rdn, self.dcs)) {
                return Some(u);
            }
        }
        user_named(&self.rdn)
    }

    /// The subject as step 3 compares it, for the logs.
    pub fn subject(&self) -> &str {
        &self.rdn
    }
}

/// Escape a value as Go's `pkix.RDNSequence.String` does: `,+"\<>;` always, a space at
/// either end, a `#` at the start.
fn go_escape(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for (i, c) in v.char_indices() {
        let escape = match c {
            ',' | '+' | '"' | '\\' | '<' | '>' | ';' => true,
            ' ' => i == 0 || i == v.len() - 1,
            '#' => i == 0,
            _ => false,
        };
        if escape {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

impl Dn {
    /// Read a user name as an RFC 4514 DN (`CN=dave,O=Acme\, Inc.,DC=example`): `\` escapes
    /// a special character or gives a byte as two hex digits; spaces around types and values
    /// are dropped unless escaped; `+` joins attributes of one RDN. None when the name is not
    /// a DN (most user names) or uses the `#` (BER) value form, which nats-server does not
    /// take either.
    fn parse(s: &str) -> Option<Dn> {
        let b = s.as_bytes();
        let mut rdns = Vec::new();
        let mut rdn = Vec::new();
        let mut ty: Option<String> = None;
        let mut buf: Vec<u8> = Vec::new();
        // Unescaped spaces at the end of `buf`, dropped when it ends.
        let mut trailing = 0;
        let take = |buf: &mut Vec<u8>, trailing: &mut usize| -> Option<String> {
            buf.truncate(buf.len() - *trailing);
            *trailing = 0;
            String::from_utf8(std::mem::take(buf)).ok()
        };
        let mut i = 0;
        while i < b.len() {
            let c = b[i];
            match c {
                b'\\' => {
                    let next = *b.get(i + 1)?;
                    if b" \"#+,;<=>\\".contains(&next) {
                        buf.push(next);
                        i += 2;
                    } else {
                        let hex = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
                        buf.push(u8::from_str_radix(hex, 16).ok()?);
                        i += 3;
                    }
                    trailing = 0;
                    continue;
                }
                b'=' if ty.is_none() => {
                    ty = Some(take(&mut buf, &mut trailing)?);
                    if b.get(i + 1) == Some(&b'#') {
                        return None;
                    }
                }
                b',' | b'+' => {
                    let t = ty.take().filter(|t| !t.is_empty())?;
                    rdn.push((t, take(&mut buf, &mut trailing)?));
                    if c == b',' {
                        rdns.push(std::mem::take(&mut rdn));
                    }
                }
                b' ' if buf.is_empty() => {}
                _ => {
                    trailing = if c == b' ' { trailing + 1 } else { 0 };
                    buf.push(c);
                }
            }
            i += 1;
        }
        if !buf.is_empty() || ty.is_some() {
            let t = ty.filter(|t| !t.is_empty())?;
            rdn.push((t, take(&mut buf, &mut trailing)?));
            rdns.push(rdn);
        } else if !rdn.is_empty() {
            // A trailing `+` with nothing after it.
            return None;
        }
        Some(Dn(rdns))
    }

    /// RFC 4517's distinguishedNameMatch: the same RDNs in the same order.
    fn equal(&self, other: &Dn) -> bool {
        self.0.len() == other.0.len() && self.0.iter().zip(&other.0).all(|(a, b)| rdn_equal(a, b))
    }

    /// The same RDNs in any order.
    fn rdns_match(&self, other: &Dn) -> bool {
        self.0.len() == other.0.len() && self.0.iter().all(|a| other.0.iter().any(|b| rdn_equal(a, b)))
    }
}

/// Two RDNs hold the same attributes (types case-insensitive, values exact), in any order.
fn rdn_equal(a: &[(String, String)], b: &[(String, String)]) -> bool {
    let has = |set: &[(String, String)], (t, v): &(String, String)| set.iter().any(|(t2, v2)| t2.eq_ignore_ascii_case(t) && v2 == v);
    a.len() == b.len() && a.iter().all(|x| has(b, x)) && b.iter().all(|x| has(a, x))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{CertificateParams, DistinguishedName, DnType, DnValue, KeyPair, SanType};

    fn cert(dn: &[(DnType, &str)], sans: Vec<SanType>) -> CertNames {
        let mut params = CertificateParams::default();
        let mut name = DistinguishedName::new();
        for (t, v) in dn {
            name.push(t.clone(), DnValue::Utf8String(v.to_string()));
        }
        params.distinguished_name = name;
        params.subject_alt_names = sans;
        let key = KeyPair::generate().unwrap();
        let der = params.self_signed(&key).unwrap().der().to_vec();
        CertNames::from_der(&der).unwrap()
    }

    /// Names from a subject given attribute by attribute, first RDN first (rcgen keeps one
    /// value per type, so repeated types and multi-valued RDNs are built here).
    fn subject(rdns: &[&[(&'static str, &str)]]) -> CertNames {
        let mut n = CertNames::default();
        let known = |t: &'static str| TYPES.iter().any(|(_, k)| *k == t).then_some(t);
        let rdns: Vec<Vec<Attr>> = rdns.iter().map(|r| r.iter().map(|(t, v)| (known(t), Some(v.to_string()))).collect()).collect();
        n.read_subject(&rdns);
        n
    }

    /// Map against a list of user names; the answer is the name.
    fn map<'a>(names: &CertNames, users: &[&'a str]) -> Option<&'a str> {
        names.map(users.iter().map(|u| (*u, *u)), |n| users.iter().copied().find(|u| *u == n))
    }

    #[test]
    fn sans_in_order_email_dns_uri() {
        let n = cert(
            &[(DnType::CommonName, "grace")],
            vec![
                SanType::URI("spiffe://example.org/grace".try_into().unwrap()),
                SanType::DnsName("grace.example.com".try_into().unwrap()),
                SanType::Rfc822Name("grace@example.com".try_into().unwrap()),
            ],
        );
        assert_eq!(n.emails, ["grace@example.com"]);
        assert_eq!(n.dns, ["grace.example.com"]);
        assert_eq!(n.uris, ["spiffe://example.org/grace"]);
        let all = ["spiffe://example.org/grace", "grace.example.com", "grace@example.com", "CN=grace"];
        assert_eq!(map(&n, &all), Some("grace@example.com"));
        assert_eq!(map(&n, &all[..2]), Some("grace.example.com"));
        assert_eq!(map(&n, &all[..1]), Some("spiffe://example.org/grace"));
        assert_eq!(map(&n, &["CN=grace"]), Some("CN=grace"));
        assert_eq!(map(&n, &["grace", "cn=Grace", "Grace@example.com"]), None);
    }

    #[test]
    fn subject_as_dn_in_order_and_reordered_and_as_go_prints_it() {
        let n = cert(
            &[
                (DnType::CountryName, "US"),
                (DnType::StateOrProvinceName, "CA"),
                (DnType::LocalityName, "SF"),
                (DnType::OrganizationName, "Acme, Inc."),
                (DnType::OrganizationalUnitName, "Eng"),
                (DnType::CommonName, "dave"),
            ],
            vec![],
        );
        assert_eq!(n.subject(), r"CN=dave,OU=Eng,O=Acme\, Inc.,L=SF,ST=CA,C=US");
        assert_eq!(map(&n, &[r"CN=dave,OU=Eng,O=Acme\, Inc.,L=SF,ST=CA,C=US"]).is_some(), true);
        // Types in any case, spaces around separators, hex escapes.
        assert!(map(&n, &[r"cn = dave , ou=Eng, o=Acme\2c Inc., l=SF,st=CA,c=US"]).is_some());
        // The RDNs in another order (the order openssl's -subj takes them in).
        assert!(map(&n, &[r"C=US,ST=CA,L=SF,O=Acme\, Inc.,OU=Eng,CN=dave"]).is_some());
        // Values are exact; every RDN must be there.
        assert_eq!(map(&n, &[r"CN=Dave,OU=Eng,O=Acme\, Inc.,L=SF,ST=CA,C=US", "CN=dave", "dave"]), None);
        // An exact match wins over a reordered one wherever it is listed.
        let users = [r"C=US,ST=CA,L=SF,O=Acme\, Inc.,OU=Eng,CN=dave", r"CN=dave,OU=Eng,O=Acme\, Inc.,L=SF,ST=CA,C=US"];
        assert_eq!(map(&n, &users), Some(users[1]));
    }

    #[test]
    fn domain_components() {
        let n = subject(&[&[("DC", "org")], &[("DC", "example")], &[("CN", "erin")]]);
        assert_eq!(n.subject(), "CN=erin");
        assert!(map(&n, &["CN=erin,DC=example,DC=org"]).is_some(), "as a DN");
        assert!(map(&n, &["DC=org,CN=erin,DC=example"]).is_some(), "reordered");
        // As Go prints it: DCs appended in certificate order, or left out.
        assert_eq!(map(&n, &["CN=erin,DC=org,DC=example"]), Some("CN=erin,DC=org,DC=example"));
        assert_eq!(map(&n, &["CN=erin"]), Some("CN=erin"));
    }

    #[test]
    fn unknown_attributes_leave_only_the_go_string() {
        let email = DnType::CustomDnType(vec![1, 2, 840, 113549, 1, 9, 1]);
        let n = cert(&[(DnType::CommonName, "frank"), (email, "frank@example.com")], vec![]);
        assert!(n.dn.is_none());
        assert_eq!(map(&n, &["CN=frank"]), Some("CN=frank"));
        assert_eq!(map(&n, &["emailAddress=frank@example.com,CN=frank"]), None);
    }

    #[test]
    fn multi_valued_rdns_repeated_types_and_go_escaping() {
        // openssl's -subj "/O=Acme/OU=Eng+OU=Ops/CN=a/CN= #x+y;z ": one RDN with two OUs.
        let n = subject(&[&[("O", "Acme")], &[("OU", "Eng"), ("OU", "Ops")], &[("CN", "a")], &[("CN", " #x+y;z ")]]);
        // Go keeps the last CN only, and prints the OUs as one RDN.
        assert_eq!(n.subject(), r"CN=\ #x\+y\;z\ ,OU=Eng+OU=Ops,O=Acme");
        // As a DN, every RDN counts, the multi-valued one in any order within.
        assert!(map(&n, &[r"CN=\ #x\+y\;z\ ,CN=a,OU=Ops+OU=Eng,O=Acme"]).is_some());
        assert_eq!(map(&n, &[r"CN=a,OU=Ops+OU=Eng,O=Acme"]), None);
        assert_eq!(go_escape("#a#"), r"\#a#");
    }

    #[test]
    fn names_that_are_not_dns() {
        for s in ["alice", "alice@example.com", "CN=#0403", "=x", r"CN=a\", r"CN=a\zz", "CN=a+"] {
            assert!(Dn::parse(s).map_or(true, |d| d.0.iter().any(|r| r.iter().any(|(t, _)| t.is_empty()))), "{s}");
        }
        assert_eq!(Dn::parse("").unwrap().0.len(), 0);
        let d = Dn::parse(r"CN=a\,b+UID=c,DC=x").unwrap();
        assert_eq!(d.0, vec![vec![("CN".to_string(), "a,b".to_string()), ("UID".to_string(), "c".to_string())], vec![("DC".to_string(), "x".to_string())]]);
    }

    #[test]
    fn nothing_to_map_by() {
        let n = cert(&[], vec![SanType::DnsName("only.example.com".try_into().unwrap())]);
        assert_eq!(map(&n, &["only.example.com", ""]), None, "nats-server ignores the DNS names of a certificate without subject");
        assert!(CertNames::from_der(b"not a certificate").is_err());
    }
}
