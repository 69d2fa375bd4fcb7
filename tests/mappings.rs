//! Subject mappings (`mappings`, or `maps`, at the top level for the global account `$G`
//! and in an account's block for that account), differential: the same config file on
//! natsu (two cores) and on the reference nats-server 2.9, the same raw-protocol
//! conversation, the same expected bytes.
//!
//! What the reference does, and these tests expect of both:
//!
//! - A message a client publishes is renamed before delivery: a literal source to its
//!   destination, `$N` and `{{wildcard(N)}}` to the N-th `*` of the source, a trailing `>`
//!   to the rest. Subscribers of the destination get `MSG <mapped subject>`; subscribers of
//!   the source get nothing; a subject the source does not match is left alone, and a
//!   destination is not mapped again. HPUB is mapped as PUB is, headers kept. The reply
//!   subject is carried as published, never mapped.
//! - `{{partition(n,i,...)}}` is the FNV-1a 32-bit hash of the named tokens, concatenated
//!   without a separator, mod n (computed here too). `splitFromLeft(i,p)` and
//!   `splitFromRight(i,p)` cut a token in two at position p counted from its start or its
//!   end (not at all when p reaches the end), `sliceFromLeft(i,n)` and `sliceFromRight(i,n)`
//!   cut it into n-byte pieces, the short one last or first, and `split(i,d)` cuts at each
//!   `d`, dropping empty pieces.
//! - Weighted destinations pick one at random for each message; weights under 100 leave
//!   the rest on the original subject. A destination with a `cluster` applies only on a
//!   server of that cluster, and there the others are not used (the rest keeps the source);
//!   on any other server (or one with no cluster) the non-cluster destinations apply.
//! - Mappings are per account: the top-level ones are `$G`'s alone, an account's are its
//!   own. Publish permissions are checked against the mapped subject only: a user allowed
//!   to publish `dst` alone publishes `src` (mapped to `dst`) and it is delivered; a user
//!   allowed `src` alone gets `-ERR 'Permissions Violation for Publish to "dst"'` and the
//!   connection stays open.
//! - A bad mapping stops the start with `FILE:LINE:COL: reason` in nats-server's words.
//!   Where nats-server's reason is a Go panic message (weights adding up to more than 100),
//!   only the refusal and the line are compared.
//!
//! Ordering comes from PING/PONG round trips; no sleeps.

mod common;

use std::collections::BTreeMap;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{natsu_and_reference, natsu_bin, Raw, Server, TempDir};

fn port(s: &Server) -> u16 {
    s.url().rsplit(':').next().unwrap().parse::<u16>().unwrap()
}

const ANON: &str = r#"{"verbose":false,"headers":true,"no_responders":true}"#;

fn login(port: u16, user: &str) -> Raw {
    Raw::connect_with(port, &format!(r#"{{"verbose":false,"user":"{user}","pass":"{user}","headers":true}}"#))
}

/// Every message received before a PONG (see `common::messages`).
fn msgs(r: &mut Raw) -> Vec<String> {
    common::messages(r, true)
}

/// How many messages arrived on each subject (before a PONG).
fn count_by_subject(r: &mut Raw) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for m in msgs(r) {
        let subject = m.split(' ').nth(1).unwrap_or_default().to_string();
        *counts.entry(subject).or_insert(0) += 1;
    }
    counts
}

/// FNV-1a, 32 bits: what `{{partition(n,...)}}` hashes the tokens with.
fn fnv1a32(data: &[u8]) -> u32 {
    data.iter().fold(0x811c_9dc5u32, |h, &b| (h ^ b as u32).wrapping_mul(0x0100_0193))
}

const TOP_LEVEL: &str = r#"
mappings = {
  "foo": "bar"
  "orders.*.*": "orders.$2.$1"
  "a.*.>": "b.{{wildcard(1)}}.>"
}
"#;

#[test]
fn top_level_mappings_rename_in_the_default_account_and_keep_the_reply() {
    let (_dir, servers) = natsu_and_reference(TOP_LEVEL, &["--cores", "2"]);
    for (name, srv) in servers {
        let mut all = Raw::connect_with(port(&srv), ANON);
        let mut sources = Raw::connect_with(port(&srv), ANON);
        let mut p = Raw::connect_with(port(&srv), ANON);
        all.send("SUB > 1\r\n");
        all.flush();
        sources.send("SUB foo 1\r\nSUB orders.x.y 2\r\nSUB a.one.> 3\r\n");
        sources.flush();
        // The reply is the mapped source itself: it stays as published.
        p.send("PUB foo foo 2\r\nhi\r\n");
        p.send("HPUB foo 18 20\r\nNATS/1.0\r\nk: v\r\n\r\nhi\r\n");
        p.send("PUB orders.x.y _INBOX.r 1\r\n1\r\n");
        p.send("PUB a.one.two.three 1\r\n2\r\n");
        // Not matched by any source: unchanged.
        p.send("PUB a.one 1\r\n3\r\nPUB orders.1.2.3 1\r\n4\r\nPUB foo.bar 1\r\n5\r\n");
        // A destination is not mapped again.
        p.send("PUB bar 1\r\n6\r\nPUB b.one.two 1\r\n7\r\n");
        assert_eq!(p.flush(), "", "{name}: the publisher hears nothing back");
        assert_eq!(
            msgs(&mut all),
            [
                "MSG bar 1 foo|hi",
                "HMSG bar 1|NATS/1.0\r\nk: v\r\n\r\n|hi",
                "MSG orders.y.x 1 _INBOX.r|1",
                "MSG b.one.two.three 1|2",
                "MSG a.one 1|3",
                "MSG orders.1.2.3 1|4",
                "MSG foo.bar 1|5",
                "MSG bar 1|6",
                "MSG b.one.two 1|7",
            ],
            "{name}"
        );
        assert_eq!(msgs(&mut sources), Vec::<String>::new(), "{name}: subscribers of a mapped source get nothing");
    }
}

const FUNCTIONS: &str = r#"
mappings = {
  "part.*": "part.{{partition(3,1)}}.{{wildcard(1)}}"
  "pair.*.*": "pair.{{partition(5,1,2)}}.$1.$2"
  "sl.*": "sl.{{splitFromLeft(1,2)}}"
  "sr.*": "sr.{{splitFromRight(1,2)}}"
  "xl.*": "xl.{{sliceFromLeft(1,2)}}"
  "xr.*": "xr.{{sliceFromRight(1,2)}}"
  "sp.*": "sp.{{split(1,-)}}"
}
"#;

#[test]
fn partition_split_and_slice_functions_transform_tokens() {
    let tokens = ["abc", "x", "y", "orders", "42", "0", "user-17", "ZZZ", "a_long_token_with_underscores", "q"];
    let pairs = [("x", "y"), ("abc", "x"), ("a", "bc"), ("ab", "c"), ("1", "2"), ("node", "7")];
    let mut want: Vec<String> = Vec::new();
    let mut sent = String::new();
    for t in tokens {
        sent.push_str(&format!("PUB part.{t} 0\r\n\r\n"));
        want.push(format!("MSG part.{}.{t} 1|", fnv1a32(t.as_bytes()) % 3));
    }
    // The tokens are hashed one after the other, without a separator: ("a","bc") and
    // ("ab","c") land in the same partition.
    for (t1, t2) in pairs {
        sent.push_str(&format!("PUB pair.{t1}.{t2} 0\r\n\r\n"));
        want.push(format!("MSG pair.{}.{t1}.{t2} 1|", fnv1a32(format!("{t1}{t2}").as_bytes()) % 5));
    }
    let cuts = [
        ("sl.a-b-c-d", "sl.a-.b-c-d"),
        ("sl.abc", "sl.ab.c"),
        ("sl.ab", "sl.ab"),
        ("sr.a-b-c-d", "sr.a-b-c.-d"),
        ("sr.abc", "sr.a.bc"),
        ("sr.ab", "sr.ab"),
        ("xl.abcde", "xl.ab.cd.e"),
        ("xl.a", "xl.a"),
        ("xr.abcde", "xr.a.bc.de"),
        ("xr.abcdefg", "xr.a.bc.de.fg"),
        ("xr.ab", "xr.ab"),
        ("sp.a-b--c-", "sp.a.b.c"),
        ("sp.-a-", "sp.a"),
        ("sp.abc", "sp.abc"),
    ];
    for (from, to) in cuts {
        sent.push_str(&format!("PUB {from} 0\r\n\r\n"));
        want.push(format!("MSG {to} 1|"));
    }
    let (_dir, servers) = natsu_and_reference(FUNCTIONS, &["--cores", "2"]);
    for (name, srv) in servers {
        let mut all = Raw::connect_with(port(&srv), ANON);
        all.send("SUB > 1\r\n");
        all.flush();
        let mut p = Raw::connect_with(port(&srv), ANON);
        p.send(&sent);
        p.flush();
        assert_eq!(msgs(&mut all), want, "{name}");
    }
}

const WEIGHTED: &str = r#"
mappings = {
  "w": [ {destination: "w.a", weight: 50%}, {dest: "w.b", weight: "50%"} ]
  "lossy": [ {destination: "lossy.kept", weight: 30} ]
}
"#;

/// Publish `n` empty messages on `subject` and count what a `>` subscriber gets by subject.
fn spread(port: u16, subject: &str, n: usize) -> BTreeMap<String, usize> {
    let mut all = Raw::connect_with(port, ANON);
    all.send("SUB > 1\r\n");
    all.flush();
    let mut p = Raw::connect_with(port, ANON);
    p.send(&format!("PUB {subject} 0\r\n\r\n").repeat(n));
    p.flush();
    count_by_subject(&mut all)
}

fn get(counts: &BTreeMap<String, usize>, subject: &str) -> usize {
    counts.get(subject).copied().unwrap_or(0)
}

/// No exact split is expected, only that each side gets a share far from nothing (the
/// bounds are many standard deviations from the mean) and no message is lost or doubled.
#[test]
fn weighted_destinations_share_the_messages_and_the_rest_keeps_its_subject() {
    let (_dir, servers) = natsu_and_reference(WEIGHTED, &["--cores", "2"]);
    for (name, srv) in servers {
        let got = spread(port(&srv), "w", 400);
        assert_eq!(got.values().sum::<usize>(), 400, "{name}: {got:?}");
        assert!(get(&got, "w.a") >= 100 && get(&got, "w.b") >= 100 && get(&got, "w") == 0, "{name}: 50/50: {got:?}");
        let got = spread(port(&srv), "lossy", 400);
        assert_eq!(got.values().sum::<usize>(), 400, "{name}: {got:?}");
        assert!(get(&got, "lossy.kept") >= 50 && get(&got, "lossy") >= 200 && got.len() == 2, "{name}: 30% mapped, the rest on the source: {got:?}");
    }
}

const CLUSTER_SCOPED: &str = r#"
mappings = {
  "c": [ {destination: "c.here", weight: 100, cluster: "other"} ]
  "d": [ {destination: "d.here", weight: 100, cluster: "elsewhere"} ]
  "e": [ {destination: "e.here", weight: 50, cluster: "other"}, {destination: "e.there", weight: 50} ]
}
"#;

#[test]
fn cluster_scoped_destinations_apply_only_in_their_cluster() {
    let clustered = format!("cluster {{ name: other, listen: \"127.0.0.1:-1\" }}\n{CLUSTER_SCOPED}");
    for (conf, in_other) in [(CLUSTER_SCOPED.to_string(), false), (clustered, true)] {
        let (_dir, servers) = natsu_and_reference(&conf, &["--cores", "2"]);
        for (name, srv) in servers {
            let mut all = Raw::connect_with(port(&srv), ANON);
            all.send("SUB > 1\r\n");
            all.flush();
            let mut p = Raw::connect_with(port(&srv), ANON);
            p.send("PUB c 1\r\nc\r\nPUB d 1\r\nd\r\n");
            p.flush();
            let c = if in_other { "MSG c.here 1|c" } else { "MSG c 1|c" };
            assert_eq!(msgs(&mut all), [c, "MSG d 1|d"], "{name} (in cluster \"other\": {in_other})");
            // In the cluster, its own 50% and the source for the rest; elsewhere, the
            // non-cluster 50% and the source for the rest.
            let got = spread(port(&srv), "e", 200);
            let mapped = if in_other { "e.here" } else { "e.there" };
            assert_eq!(got.values().sum::<usize>(), 200, "{name}: {got:?}");
            assert!(get(&got, mapped) >= 50 && get(&got, "e") >= 50 && got.len() == 2, "{name} (in cluster \"other\": {in_other}): {got:?}");
        }
    }
}

const ACCOUNTS: &str = r#"
mappings = { "src": "dst.g" }
authorization { users: [{user: g, password: g}] }
accounts {
  A {
    users: [
      {user: a, password: a}
      {user: pd, password: pd, permissions: {publish: "dst"}}
      {user: ps, password: ps, permissions: {publish: "src"}}
      {user: pdeny, password: pdeny, permissions: {publish: {deny: "dst"}}}
    ]
    mappings: { "src": "dst", "r.*.*": "r.$2.$1" }
  }
  B { users: [{user: b, password: b}] }
  C { users: [{user: c, password: c}], maps: { "src": "dst.c" } }
}
"#;

#[test]
fn mappings_belong_to_their_account() {
    let (_dir, servers) = natsu_and_reference(ACCOUNTS, &["--cores", "2"]);
    for (name, srv) in servers {
        // g is in $G, which has the top-level mappings.
        let users = [("a", "dst", "r.2.1"), ("b", "src", "r.1.2"), ("c", "dst.c", "r.1.2"), ("g", "dst.g", "r.1.2")];
        let mut watchers: Vec<Raw> = users.iter().map(|(u, _, _)| login(port(&srv), u)).collect();
        for w in &mut watchers {
            w.send("SUB > 1\r\n");
            w.flush();
        }
        for (i, (user, src, r)) in users.iter().enumerate() {
            let mut p = login(port(&srv), user);
            p.send("PUB src 1\r\nx\r\nPUB r.1.2 1\r\ny\r\n");
            assert_eq!(p.flush(), "", "{name}: {user}");
            for (j, w) in watchers.iter_mut().enumerate() {
                let want = if i == j { vec![format!("MSG {src} 1|x"), format!("MSG {r} 1|y")] } else { vec![] };
                assert_eq!(msgs(w), want, "{name}: {} watching {user}'s publishes", users[j].0);
            }
        }
    }
}

#[test]
fn publish_permissions_are_checked_against_the_mapped_subject() {
    let (_dir, servers) = natsu_and_reference(ACCOUNTS, &["--cores", "2"]);
    let denied = |s: &str| vec![format!("-ERR 'Permissions Violation for Publish to \"{s}\"'")];
    for (name, srv) in servers {
        let mut a = login(port(&srv), "a");
        a.send("SUB > 1\r\n");
        a.flush();
        // Allowed `dst` alone: `src` is published as `dst`, and `dst` itself too.
        let mut pd = login(port(&srv), "pd");
        pd.send("PUB src _INBOX.pd 1\r\n1\r\nPUB dst 1\r\n2\r\n");
        assert_eq!(msgs(&mut pd), Vec::<String>::new(), "{name}: pd");
        assert_eq!(msgs(&mut a), ["MSG dst 1 _INBOX.pd|1", "MSG dst 1|2"], "{name}: pd's messages");
        // Allowed `src` alone: `src` is `dst` by the time it is checked.
        let mut ps = login(port(&srv), "ps");
        ps.send("PUB src 1\r\n3\r\n");
        assert_eq!(msgs(&mut ps), denied("dst"), "{name}: ps publishing src");
        ps.send("PUB dst 1\r\n4\r\n");
        assert_eq!(msgs(&mut ps), denied("dst"), "{name}: ps publishing dst");
        ps.send("PUB other 1\r\n5\r\n");
        assert_eq!(msgs(&mut ps), denied("other"), "{name}: ps publishing other");
        // Denied `dst`: publishing `src` is publishing `dst`.
        let mut pdeny = login(port(&srv), "pdeny");
        pdeny.send("PUB src 1\r\n6\r\n");
        assert_eq!(msgs(&mut pdeny), denied("dst"), "{name}: pdeny publishing src");
        pdeny.send("PUB elsewhere 1\r\n7\r\n");
        assert_eq!(msgs(&mut pdeny), Vec::<String>::new(), "{name}: pdeny publishing elsewhere");
        assert_eq!(msgs(&mut a), ["MSG elsewhere 1|7"], "{name}: nothing refused was delivered");
    }
}

/// Run `program` to completion (bounded by 10 s): exit success and stderr with stdout.
fn run(program: &std::path::Path, args: &[&str]) -> (bool, String) {
    let mut child = Command::new(program).args(args).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("run the server");
    let deadline = Instant::now() + Duration::from_secs(10);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{} {args:?} did not exit within 10s", program.display());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    (out.status.success(), String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout))
}

/// What a bad mapping gets from both servers.
enum Refused {
    /// `FILE:LINE:COL: reason`, the same from both.
    With(&'static str),
    /// A refusal on this line; nats-server's reason is a Go panic message natsu need not copy.
    OnLine(u32),
}

#[test]
fn bad_mappings_are_refused_with_the_reference_words() {
    let top = |m: &str| format!("port: -1\nmappings = {{\n  {m}\n}}\n");
    let cases = [
        (top(r#""x.*": "y""#), Refused::With("3:4: Error adding mapping for \"x.*\" to \"y\" : invalid mapping destination: not using all of the token wildcard(s) in y")),
        (top(r#""x.*": "y.$2""#), Refused::With("3:4: Error adding mapping for \"x.*\" to \"y.$2\" : invalid mapping destination: wildcard index out of range in $2: [2]")),
        (top(r#""x.*": "y.{{foo(1)}}""#), Refused::With("3:4: Error adding mapping for \"x.*\" to \"y.{{foo(1)}}\" : invalid mapping destination: unknown function in {{foo(1)}}")),
        (top(r#""x.>": "y""#), Refused::With("3:4: Error adding mapping for \"x.>\" to \"y\" : invalid subject")),
        (top(r#""w": [ {destination: "w.a", weight: "abc"} ]"#), Refused::With("3:31: Invalid weight \"abc\" for mapping destination")),
        (top(r#""w": [ {destination: "w.a", weight: 50, bogus: 1} ]"#), Refused::With("3:43: Unknown field \"bogus\" for mapping destination")),
        (top(r#""w": [ {destination: "w.a", weight: 60}, {destination: "w.b", weight: 50} ]"#), Refused::OnLine(3)),
        (
            "port: -1\naccounts {\n  A {\n    users: [{user: a, password: a}]\n    maps: {\n      \"x.*.*\": \"y.$1\"\n    }\n  }\n}\n".to_string(),
            Refused::With("6:8: Error adding mapping for \"x.*.*\" to \"y.$1\" : invalid mapping destination: not using all of the token wildcard(s) in y.$1"),
        ),
    ];
    let d = TempDir::new("mappings-bad");
    let mut wrong = Vec::new();
    for (n, (text, want)) in cases.iter().enumerate() {
        let p = d.0.join(format!("bad{n}.conf"));
        std::fs::write(&p, text).unwrap();
        let f = p.to_str().unwrap();
        let mut targets = vec![("nats-server", std::path::PathBuf::from("nats-server"))];
        if !common::reference() {
            targets.push(("natsu", natsu_bin()));
        }
        for (name, program) in targets {
            let (ok, out) = run(&program, &["-t", "-c", f]);
            let found = match want {
                Refused::With(w) => out.lines().any(|l| l == format!("{name}: {f}:{w}")),
                Refused::OnLine(l) => out.lines().any(|line| line.starts_with(&format!("{name}: {f}:{l}:"))),
            };
            if ok || !found {
                let want = match want {
                    Refused::With(w) => format!("the line {w:?}"),
                    Refused::OnLine(l) => format!("an error on line {l}"),
                };
                wrong.push(format!("{name} on {text:?}: want {want}, got ok={ok}:\n{out}"));
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n\n"));
}
