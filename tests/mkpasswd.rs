//! natsu-mkpasswd: output format, hashes that verify, the cost honoured, `-p` from a pipe,
//! bad input refused, and hashes that the reference nats-server (and natsu, once it takes
//! `--user/--pass`) accept for the right password and refuse for a wrong one.

mod common;

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{Raw, Server};

/// The tool under test: `NATSU_MKPASSWD_BIN`, else the one cargo built with the tests.
fn bin() -> PathBuf {
    std::env::var_os("NATSU_MKPASSWD_BIN").map(PathBuf::from).unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_natsu-mkpasswd")))
}

/// Run the tool with `args` and `stdin`, killed after 60 s (cost 11 takes well under a second).
fn mkpasswd(args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = Command::new(bin())
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start natsu-mkpasswd");
    let mut input = child.stdin.take().expect("stdin piped");
    if let Some(s) = stdin {
        input.write_all(s.as_bytes()).expect("write stdin");
    }
    drop(input);
    let start = Instant::now();
    while child.try_wait().expect("wait").is_none() {
        if start.elapsed() > Duration::from_secs(60) {
            let _ = child.kill();
            panic!("natsu-mkpasswd {args:?} did not finish within 60s");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    child.wait_with_output().expect("output")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The hash from a `bcrypt hash: ...` line.
fn hash_of(out: &str) -> String {
    out.lines()
        .find_map(|l| l.strip_prefix("bcrypt hash: "))
        .unwrap_or_else(|| panic!("no bcrypt hash line in {out:?}"))
        .to_string()
}

#[test]
fn no_flags_prints_a_strong_password_and_its_hash_at_cost_11() {
    let o = mkpasswd(&[], None);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 2, "{out:?}");
    let pass = lines[0].strip_prefix("pass: ").unwrap_or_else(|| panic!("first line {:?}", lines[0]));
    assert_eq!(pass.len(), 22, "{pass:?}");
    let alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789!@$#%^&*()";
    assert!(pass.chars().all(|c| alphabet.contains(c)), "{pass:?}");
    let hash = hash_of(&out);
    assert!(hash.starts_with("$2a$11$"), "{hash}");
    assert_eq!(hash.len(), 60, "{hash}");
    assert!(bcrypt::verify(pass, &hash).unwrap());
    assert!(!bcrypt::verify("not it", &hash).unwrap());
    // Two runs, two passwords.
    let again = stdout(&mkpasswd(&["-c", "4"], None));
    assert_ne!(again.lines().next(), Some(lines[0]));
}

#[test]
fn cost_is_honoured_in_both_spellings() {
    for args in [&["-c", "5"][..], &["--cost", "5"], &["--cost=5"], &["-c=5"]] {
        let o = mkpasswd(args, None);
        assert!(o.status.success(), "{args:?}: {}", stderr(&o));
        let out = stdout(&o);
        let pass = out.lines().next().and_then(|l| l.strip_prefix("pass: ")).expect("pass line").to_string();
        let hash = hash_of(&out);
        assert!(hash.starts_with("$2a$05$"), "{args:?}: {hash}");
        assert!(bcrypt::verify(&pass, &hash).unwrap());
    }
}

#[test]
fn bad_costs_are_refused_clearly() {
    for cost in ["3", "32", "-1", "eleven", ""] {
        let o = mkpasswd(&["-c", cost], None);
        assert_eq!(o.status.code(), Some(1), "cost {cost:?}");
        assert!(o.stdout.is_empty(), "cost {cost:?}: {}", stdout(&o));
        let err = stderr(&o);
        assert!(err.contains("cost") && err.contains("4") && err.contains("31"), "cost {cost:?}: {err}");
    }
    let o = mkpasswd(&["-c"], None);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("COST"), "{}", stderr(&o));
}

#[test]
fn dash_p_reads_the_password_from_a_pipe() {
    let o = mkpasswd(&["-p", "-c", "4"], Some("s3cret pass\n"));
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    // Only the hash: the password is the caller's, not printed back.
    assert!(!out.contains("pass: ") && !out.contains("s3cret"), "{out:?}");
    let hash = hash_of(&out);
    assert!(hash.starts_with("$2a$04$"), "{hash}");
    assert!(bcrypt::verify("s3cret pass", &hash).unwrap());
    // Without a trailing newline, and with a CRLF.
    assert!(bcrypt::verify("x", &hash_of(&stdout(&mkpasswd(&["-p", "-c", "4"], Some("x"))))).unwrap());
    assert!(bcrypt::verify("y", &hash_of(&stdout(&mkpasswd(&["-p", "-c", "4"], Some("y\r\n"))))).unwrap());
}

#[test]
fn dash_p_refuses_an_empty_password() {
    for input in ["", "\n"] {
        let o = mkpasswd(&["-p", "-c", "4"], Some(input));
        assert_eq!(o.status.code(), Some(1), "{input:?}");
        assert!(o.stdout.is_empty());
        assert!(stderr(&o).contains("empty"), "{}", stderr(&o));
    }
}

#[test]
fn help_and_unknown_flags() {
    let o = mkpasswd(&["-h"], None);
    assert!(o.status.success());
    let help = stdout(&o);
    assert!(help.contains("Usage: natsu-mkpasswd") && help.contains("-p") && help.contains("--cost"), "{help}");
    let o = mkpasswd(&["--bogus"], None);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("--bogus"), "{}", stderr(&o));
}

/// CONNECT as `u` with `pass`, then PING: what the server answers (PONG or an -ERR).
fn login(port: u16, pass: &str) -> String {
    let mut r = Raw::connect(port);
    let json = serde_json::json!({"user": "u", "pass": pass, "verbose": false, "pedantic": false});
    r.send(&format!("CONNECT {json}\r\nPING\r\n"));
    r.read_line()
}

/// A password with symbols in it, hashed by the tool (the generated kind, at a low cost).
fn password_and_hash() -> (String, String) {
    let out = stdout(&mkpasswd(&["-c", "4"], None));
    let pass = out.lines().next().and_then(|l| l.strip_prefix("pass: ")).expect("pass line").to_string();
    (pass, hash_of(&out))
}

#[test]
fn the_reference_server_accepts_the_hash() {
    let (pass, hash) = password_and_hash();
    let srv = Server::reference_with(&["-p", "-1", "--user", "u", "--pass", &hash]);
    assert_eq!(login(srv.port, &pass), "PONG\r\n");
    assert_eq!(login(srv.port, "wrong"), "-ERR 'Authorization Violation'\r\n");
    // The hash itself is not a password.
    assert_eq!(login(srv.port, &hash), "-ERR 'Authorization Violation'\r\n");
    // nats-server 2.9 also knows the `$2b$` spelling of the same hash as bcrypt.
    let srv = Server::reference_with(&["-p", "-1", "--user", "u", "--pass", &hash.replacen("$2a$", "$2b$", 1)]);
    assert_eq!(login(srv.port, &pass), "PONG\r\n");
}

/// A natsu child, killed (by its own handle) when dropped.
struct Natsu {
    child: std::process::Child,
    port: u16,
}

impl Drop for Natsu {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// natsu with `args`, or why it would not start (an exit before its listening line).
fn try_natsu(args: &[&str]) -> Result<Natsu, String> {
    use std::io::BufRead;
    let mut cmd = Command::new(common::natsu_bin());
    cmd.args(["-a", "127.0.0.1", "-p", "-1"]).args(args);
    cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::piped());
    let mut child = cmd.spawn().map_err(|e| e.to_string())?;
    let err = child.stderr.take().expect("stderr piped");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut seen = String::new();
        let mut tx = Some(tx);
        for line in std::io::BufReader::new(err).lines().map_while(Result::ok) {
            let port = line
                .split_once("Listening for client connections on ")
                .and_then(|(_, a)| a.trim().rsplit(':').next()?.parse::<u16>().ok());
            match (port, tx.take()) {
                (Some(p), Some(t)) => {
                    let _ = t.send(Ok(p));
                }
                (None, t) => {
                    seen.push_str(&line);
                    seen.push('\n');
                    tx = t;
                }
                (Some(_), None) => {}
            }
        }
        if let Some(t) = tx {
            let _ = t.send(Err(seen));
        }
    });
    match rx.recv_timeout(Duration::from_secs(10)) {
        Ok(Ok(port)) => Ok(Natsu { child, port }),
        Ok(Err(text)) => {
            let _ = child.wait();
            Err(text)
        }
        Err(_) => {
            let _ = child.kill();
            let _ = child.wait();
            Err("no listening line within 10s".into())
        }
    }
}

#[test]
fn natsu_accepts_the_hash() {
    let (pass, hash) = password_and_hash();
    let srv = match try_natsu(&["--user", "u", "--pass", &hash]) {
        Ok(s) => s,
        Err(e) if e.contains("--user") || e.contains("--pass") => {
            eprintln!("SKIPPED natsu_accepts_the_hash: natsu does not take --user/--pass yet: {}", e.trim());
            return;
        }
        Err(e) => panic!("natsu did not start: {e}"),
    };
    assert_eq!(login(srv.port, &pass), "PONG\r\n");
    assert_eq!(login(srv.port, "wrong"), "-ERR 'Authorization Violation'\r\n");
    assert_eq!(login(srv.port, &hash), "-ERR 'Authorization Violation'\r\n");
}
