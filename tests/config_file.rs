//! The natsu binary with configuration files: `-t`, every error reported with its position,
//! unknown keys and keys natsu does not serve yet refused (side by side with nats-server
//! where it is installed), flags over the file, includes, variables and the environment as
//! a started server shows them, and `--signal` to a running natsu.

mod common;

use std::io::BufRead;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{channel, Receiver};
use std::time::{Duration, Instant};

use common::{natsu_bin, Raw, TempDir};

/// A natsu child killed (by its pid) on drop, with its log lines arriving on a channel.
struct Natsu {
    child: Child,
    lines: Receiver<String>,
    /// Every line read so far.
    seen: Vec<String>,
}

/// The child's stderr (piped), line by line, on a channel that ends when the child does.
fn stderr_lines(child: &mut Child) -> Receiver<String> {
    let stderr = child.stderr.take().expect("stderr piped");
    let (tx, lines) = channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    lines
}

impl Natsu {
    fn start(args: &[&str], env: &[(&str, &str)]) -> Natsu {
        let mut cmd = Command::new(natsu_bin());
        cmd.args(args).envs(env.iter().copied()).stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("start natsu");
        let lines = stderr_lines(&mut child);
        Natsu { child, lines, seen: Vec::new() }
    }

    /// The first log line containing `what`, already read or arriving within 10 s.
    fn wait_for(&mut self, what: &str) -> String {
        if let Some(line) = self.seen.iter().find(|l| l.contains(what)) {
            return line.clone();
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if line.contains(what) {
                        return line;
                    }
                }
                Err(_) => panic!("no log line with {what:?} within 10s; log so far:\n{}", self.seen.join("\n")),
            }
        }
    }

    /// The client port from the "Listening for client connections on" line.
    fn port(&mut self) -> u16 {
        let line = self.wait_for("Listening for client connections on ");
        line.rsplit(':').next().and_then(|p| p.trim().parse().ok()).unwrap_or_else(|| panic!("no port in {line:?}"))
    }

    /// The exit status, waiting at most 10 s.
    fn exit_within(&mut self) -> std::process::ExitStatus {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Some(s) = self.child.try_wait().unwrap() {
                return s;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("natsu did not exit within 10s");
    }
}

impl Drop for Natsu {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Run natsu to completion (bounded by 10 s): exit success, stdout, stderr.
fn run(args: &[&str]) -> (bool, String, String) {
    let mut child = Command::new(natsu_bin()).args(args).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("run natsu");
    let deadline = Instant::now() + Duration::from_secs(10);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("natsu {args:?} did not exit within 10s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
}

fn write(dir: &TempDir, name: &str, text: &str) -> String {
    let p = dir.0.join(name);
    std::fs::write(&p, text).unwrap();
    p.to_str().unwrap().to_string()
}

#[test]
fn test_flag_accepts_a_good_file() {
    let d = TempDir::new("cf-good");
    let f = write(&d, "good.conf", "port: 4333\nauthorization { user: a, password: b }\nmax_payload: 2MB\nallow_non_tls: true\n");
    let (ok, out, _) = run(&["-c", &f, "-t"]);
    assert!(ok);
    assert_eq!(out.trim(), format!("natsu: configuration file {f} is valid"));
}

#[test]
fn a_bad_file_is_refused_with_every_error() {
    let d = TempDir::new("cf-bad");
    let f = write(&d, "bad.conf", "port: \"abc\"\nmax_payload: 1 MB\ndebug: true\ntls { cert_file: x }\nauthorization { users: [ {password: p} ] }\n");
    assert_refused(&f, &[format!("{f}:1:7: \"port\" must be an integer"), format!("{f}:2:16: expected a new line"), format!("{f}:4:5: missing 'key_file'"), format!("{f}:5:26: User entry requires a user")]);
}

/// natsu refuses `file` alike when started (`-c`) and checked (`-t`): it exits non-zero
/// before listening and prints every one of these errors (each a prefix of its line), and
/// no other.
fn assert_refused(file: &str, want: &[String]) {
    for args in [&["-c", file][..], &["-c", file, "-t"]] {
        let (ok, out, err) = run(args);
        assert!(!ok, "{args:?} accepted: {out}{err}");
        for w in want {
            assert!(err.contains(w.as_str()), "{args:?}: no {w:?} in\n{err}");
        }
        assert_eq!(err.lines().filter(|l| !l.trim().is_empty()).count(), want.len(), "{err}");
        assert!(err.starts_with("natsu: ") && !err.contains("Listening for client connections"), "{err}");
    }
}

/// `nats-server -t -c FILE` when it is installed: exit success and everything it printed.
fn reference_check(file: &str) -> Option<(bool, String)> {
    let out = Command::new("nats-server").args(["-t", "-c", file]).stdin(Stdio::null()).output().ok()?;
    Some((out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)))
}

/// Unknown keys, at the top and in each block, stop the start with every one named by file,
/// line and column, as nats-server 2.9 names them; nats-server refuses the same keys.
#[test]
fn unknown_keys_are_refused_as_nats_server_refuses_them() {
    let d = TempDir::new("cf-unknown");
    let f = write(
        &d,
        "u.conf",
        "port: -1\nhost: 127.0.0.1\nno_such_option: 1\nauthorization {\n  colour: blue\n  users: [\n    {\n      user: a\n      password: b\n      shoe_size: 9\n      permissions: {\n        publish: x\n        flavour: y\n      }\n    }\n  ]\n}\n",
    );
    let want = [
        format!("{f}:3:1: unknown field \"no_such_option\""),
        format!("{f}:5:3: unknown field \"colour\""),
        format!("{f}:10:7: unknown field \"shoe_size\""),
        format!("{f}:13:9: Unknown field \"flavour\" parsing permissions"),
    ];
    assert_refused(&f, &want);
    // The same file, the same words from the reference.
    let Some((ok, text)) = reference_check(&f) else {
        eprintln!("nats-server not installed: skipping the reference check");
        return;
    };
    assert!(!ok, "nats-server accepts {f}: {text}");
    for w in &want {
        assert!(text.contains(w.as_str()), "nats-server: no {w:?} in\n{text}");
    }
    // And in tls, where nats-server stops at the first unknown key.
    let t = write(&d, "t.conf", "port: -1\ntls {\n  cert_file: c.pem\n  key_file: k.pem\n  bogus: 1\n}\n");
    let want = format!("{t}:5:3: error parsing tls config, unknown field [\"bogus\"]");
    assert_refused(&t, std::slice::from_ref(&want));
    let (ok, text) = reference_check(&t).unwrap();
    assert!(!ok && text.contains(&want), "nats-server: no {want:?} in\n{text}");
}

/// Keys nats-server 2.9 serves and natsu does not yet stop the start by name, each of them
/// at once; nats-server takes the same file (certificates aside), so the keys are right.
#[test]
fn keys_natsu_does_not_serve_yet_are_refused() {
    let d = TempDir::new("cf-notyet");
    let known = "port: -1\naccounts {\n  A: { users: [ { user: a, password: b } ], jetstream: enabled }\n}\nleafnodes {\n  min_version: \"2.8.0\"\n}\ncluster {\n  port: -1\n  permissions: { import: \"x\" }\n}\n";
    let f = write(&d, "n.conf", known);
    let want = [
        format!("{f}:3:45: \"jetstream\" is not supported by natsu yet"),
        format!("{f}:6:3: \"min_version\" is not supported by natsu yet"),
        format!("{f}:10:3: \"permissions\" is not supported by natsu yet"),
    ];
    assert_refused(&f, &want);
    match reference_check(&f) {
        Some((ok, text)) => assert!(ok && text.contains("is valid"), "nats-server refuses {f}: {text}"),
        None => eprintln!("nats-server not installed: skipping the reference check"),
    }
    // pinned_certs ignored would let in any certificate the CA signed: no start.
    let t = write(&d, "t.conf", "port: -1\ntls {\n  cert_file: c.pem\n  key_file: k.pem\n  pinned_certs: [\"0123\"]\n  cipher_suites: [\"TLS_AES_128_GCM_SHA256\"]\n}\n");
    assert_refused(&t, &[format!("{t}:5:3: \"pinned_certs\" is not supported by natsu yet"), format!("{t}:6:3: \"cipher_suites\" is not supported by natsu yet")]);
}

/// The cluster flags pass `-t` over a file; their mistakes stop natsu as they stop
/// nats-server, in its words.
#[test]
fn cluster_flags_are_taken_and_checked() {
    let d = TempDir::new("cf-cluster");
    let f = write(&d, "c.conf", "port: -1\n");
    let (ok, out, err) = run(&["-c", &f, "-t", "--cluster", "nats://ru:rp@127.0.0.1:-1", "--routes", "nats://127.0.0.1:6223,nats-route://u:p@127.0.0.1:6224", "--cluster_name", "c1", "--no_advertise", "--connect_retries", "3", "--cluster_advertise", "127.0.0.1:7222"]);
    assert!(ok && out.trim().ends_with("is valid"), "{out}{err}");
    for args in [&["-a", "127.0.0.1", "-p", "-1", "--routes", "nats://127.0.0.1:1"][..], &["-a", "127.0.0.1", "-p", "-1", "-cluster", "nats://u@127.0.0.1:-1"]] {
        let (ok, _, err) = run(args);
        assert!(!ok, "{args:?} accepted");
        let Ok(reference) = Command::new("nats-server").args(args).stdin(Stdio::null()).output() else {
            eprintln!("nats-server not installed: skipping the reference check");
            continue;
        };
        assert!(!reference.status.success(), "nats-server {args:?} started");
        let want = String::from_utf8_lossy(&reference.stderr).replace("nats-server: ", "natsu: ");
        assert_eq!(err.trim(), want.trim(), "{args:?}");
    }
}

#[test]
fn flags_override_the_file() {
    let d = TempDir::new("cf-override");
    // Port 1 would need privileges; the flag's random port wins.
    let f = write(&d, "o.conf", "port: 1\nhost: 127.0.0.1\nserver_name: from-file\nmax_payload: 1KB\n");
    let mut n = Natsu::start(&["-c", &f, "-p", "-1", "--max_payload", "4KB"], &[]);
    let port = n.port();
    assert_ne!(port, 1);
    let c = Raw::connect(port);
    assert!(c.info.contains("\"server_name\":\"from-file\""), "{}", c.info);
    assert!(c.info.contains("\"max_payload\":4096"), "{}", c.info);
    n.wait_for("Using configuration file");
}

#[test]
fn includes_variables_and_environment_reach_the_server() {
    let d = TempDir::new("cf-include");
    std::fs::create_dir_all(d.0.join("parts")).unwrap();
    write(&d, "parts/limits.conf", "# limits from the environment\nmax_payload: $NATSU_CF_TEST_PAYLOAD\n");
    write(&d, "parts/name.conf", "NAME = \"from-include\"\n");
    let f = write(&d, "main.conf", "include parts/limits.conf\ninclude 'parts/name.conf'\nlisten: \"127.0.0.1:-1\"\nserver_name: $NAME\n");
    let mut n = Natsu::start(&["-c", &f], &[("NATSU_CF_TEST_PAYLOAD", "64KB")]);
    let c = Raw::connect(n.port());
    assert!(c.info.contains("\"max_payload\":65536"), "{}", c.info);
    assert!(c.info.contains("\"server_name\":\"from-include\""), "{}", c.info);
    // Without the variable the file is refused, naming the reference.
    let (ok, _, err) = run(&["-c", &f, "-t"]);
    if std::env::var_os("NATSU_CF_TEST_PAYLOAD").is_none() {
        assert!(!ok);
        assert!(err.contains("limits.conf:2:14: variable reference for 'NATSU_CF_TEST_PAYLOAD' can not be found"), "{err}");
    }
}

#[test]
fn include_and_variable_cycles_are_refused() {
    let d = TempDir::new("cf-cycle");
    write(&d, "a.conf", "include b.conf\n");
    write(&d, "b.conf", "include a.conf\n");
    let (ok, _, err) = run(&["-c", &d.0.join("a.conf").to_string_lossy(), "-t"]);
    assert!(!ok && err.contains("include cycle"), "{err}");
    let f = write(&d, "v.conf", "A { B = $A }\n");
    let (ok, _, err) = run(&["-c", &f, "-t"]);
    assert!(!ok && err.contains(&format!("{f}:1:9:")) && err.contains("reference cycle"), "{err}");
}

#[test]
fn signal_by_pid_file_and_by_pid() {
    let d = TempDir::new("cf-signal");
    let pid_file = d.0.join("natsu.pid");
    let pid_path = pid_file.to_str().unwrap();
    for how in ["file", "pid"] {
        let mut n = Natsu::start(&["-a", "127.0.0.1", "-p", "-1", "-P", pid_path], &[]);
        n.port();
        n.wait_for("Server is ready");
        let target = if how == "file" { pid_path.to_string() } else { n.child.id().to_string() };
        let (ok, out, err) = run(&["--signal", &format!("quit={target}")]);
        assert!(ok, "{how}: {out}{err}");
        n.wait_for("Trapped \"interrupt\" signal");
        assert!(n.exit_within().success(), "{how}");
    }
    let (ok, _, err) = run(&["-sl", "quit=999999999"]);
    assert!(!ok);
    assert_eq!(err.trim(), "natsu: no such process");
    let (ok, _, err) = run(&["--signal", "dance=1"]);
    assert!(!ok);
    assert_eq!(err.trim(), "natsu: unknown signal \"dance\"");
}

#[test]
fn sample_configs_pass_the_test_flag() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("configs");
    for name in ["minimal.conf", "auth.conf", "tls.conf", "cluster/seed.conf", "cluster/node.conf", "cluster/node2.conf"] {
        let f = dir.join(name);
        let (ok, out, err) = run(&["-t", "-c", f.to_str().unwrap()]);
        assert!(ok, "{name}: {err}");
        assert!(out.trim().ends_with("is valid") && !out.contains("warning"), "{name}: {out}");
    }
}

/// What a config file gives, on natsu and on nats-server 2.9.
enum Want {
    /// Both take it.
    Valid,
    /// Both refuse it with this text (nats-server's words, which natsu copies), when
    /// checking (`-t`) or, for what nats-server only checks then, when starting.
    Refused(&'static str),
    /// nats-server takes it; natsu refuses it by name, not serving it yet.
    NotServed(&'static str),
    /// nats-server takes it; natsu refuses it on purpose (the README says why).
    Stricter(&'static str),
    /// nats-server takes it or refuses it with this text, depending on the order it happens
    /// to read a map's keys in; natsu refuses it.
    Either(&'static str),
}

/// `nats-server -c FILE` started on a random port: Ok once it is ready (then stopped), Err
/// with what it printed if it exits first. None when it is not installed.
fn reference_start(file: &str) -> Option<Result<(), String>> {
    let mut child = Command::new("nats-server").args(["-c", file, "-a", "127.0.0.1", "-p", "-1"]).stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().ok()?;
    let lines = stderr_lines(&mut child);
    let mut seen = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    let verdict = loop {
        match lines.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(line) if line.contains("Server is ready") => break Ok(()),
            Ok(line) => seen.push(line),
            // It exited (its stderr closed) before it was ready.
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break Err(seen.join("\n")),
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => panic!("nats-server -c {file}: neither ready nor gone within 10s:\n{}", seen.join("\n")),
        }
    };
    let _ = child.kill();
    let _ = child.wait();
    Some(verdict)
}

/// The accounts block, NKey users, `no_auth_user`, `system_account` and `verify_and_map`,
/// each file checked by `natsu -t` and by nats-server 2.9 (`-t`, then started, as some of
/// its checks run only then): the same files pass, the same fail with the same words; what
/// natsu refuses beyond that it refuses by name or on purpose. NKeys are made here.
#[test]
fn accounts_and_credentials_as_nats_server_reads_them() {
    let d = TempDir::new("cf-accounts");
    let (u1, u2) = (nkeys::KeyPair::new_user().public_key(), nkeys::KeyPair::new_user().public_key());
    let account_key = nkeys::KeyPair::new_account().public_key();
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let cert = write(&d, "cert.pem", &ck.cert.pem());
    let key = write(&d, "key.pem", &ck.key_pair.serialize_pem());
    let ab = "A { exports: [{stream: \"s.>\"}, {service: \"r.>\"}, {stream: \"p.>\", accounts: [C]}] }, C {}";
    let imp = |i: &str| format!("accounts {{ {ab}, B {{ users: [{{user: b, password: b}}], imports: [{i}] }} }}");
    let cases: Vec<(String, Want)> = vec![
        (
            format!(
                "accounts {{\n  A {{\n    users: [{{user: a, password: b, permissions: {{publish: \"x.>\"}}}}, {{nkey: {u1}}}]\n    exports: [{{stream: \"foo.>\"}}, {{service: \"req.*\", accounts: [B], response_type: stream}}]\n  }}\n  B {{\n    users: [{{user: b, password: c}}]\n    imports: [\n      {{stream: {{account: A, subject: \"foo.>\"}}, prefix: \"a\"}}\n      {{stream: {{account: A, subject: \"foo.x\"}}, to: \"y\"}}\n      {{service: {{account: A, subject: \"req.x\"}}, to: \"a.req\"}}\n    ]\n  }}\n}}\nauthorization {{ users: [{{nkey: {u2}}}, {{user: g, password: h}}] }}\nno_auth_user: b\nsystem_account: A\n"
            ),
            Want::Valid,
        ),
        ("accounts: [A, B]\nsystem: B\n".into(), Want::Valid),
        ("accounts = { A = { users = [{user = a, password = b}] } }\nno_auth_user = a\n".into(), Want::Valid),
        ("accounts { A { exports: [{service: x, response_type: Stream}, {service: y, response: CHUNKED}, {service: z, response_type: singleton}] } }".into(), Want::Valid),
        (imp("{stream: {account: A, subject: \"s.*\"}, to: \"t.*\"}, {stream: {account: A, subject: \"s.*.*\"}, to: \"u.$1.{{wildcard(2)}}\"}, {service: {account: A, subject: \"r.>\"}, to: \"x.>\"}"), Want::Valid),
        ("accounts { A { exports: [{stream: \"s.>\"}], imports: [{stream: {account: A, subject: \"s.x\"}, prefix: p}] } }".into(), Want::Valid),
        ("system_account: \"$G\"".into(), Want::Valid),
        (format!("tls {{ cert_file: \"{cert}\", key_file: \"{key}\", ca_file: \"{cert}\", verify_and_map: true }}\nauthorization {{ users: [{{user: \"CN=localhost\"}}] }}\n"), Want::Valid),
        // Refused by both, in nats-server's words.
        (imp("{stream: {account: Z, subject: x}}"), Want::Refused("\"Z\" account not defined for stream import")),
        (imp("{stream: {account: A, subject: \"r.x\"}}"), Want::Refused("Error adding stream import \"r.x\": stream import not authorized")),
        (imp("{service: {account: A, subject: \"s.x\"}}"), Want::Refused("Error adding service import \"s.x\": service import not authorized")),
        (imp("{stream: {account: A, subject: \"p.x\"}}"), Want::Refused("Error adding stream import \"p.x\": stream import not authorized")),
        (imp("{stream: {account: A, subject: \"s.x\"}, prefix: p, to: t}"), Want::Either("Stream import can not have a 'prefix' and a 'to' property")),
        (imp("{stream: {account: A, subject: \"s.x\"}, prefix: \"p.>\"}"), Want::Refused("Error adding stream import \"s.x\": stream import prefix can not contain wildcard tokens")),
        (imp("{stream: {account: A}}"), Want::Refused("Expect an account name and a subject")),
        (imp("{stream: {account: A, subject: \"s.*\"}, to: t}"), Want::Refused("Error adding stream import \"s.*\": failed to create mapping transform for stream import subject \"s.*\" to \"t\": invalid mapping destination: not using all of the token wildcard(s) in t")),
        (imp("{service: {account: A, subject: \"r.>\"}, to: \"x.*\"}"), Want::Refused("Error adding service import \"r.>\": failed to create mapping transform for service import subject \"x.*\" to \"r.>\": invalid subject")),
        (imp("{service: {account: A, subject: \"r.x\"}, to: \"a..b\"}"), Want::Refused("Error adding service import \"r.x\": sublist: invalid subject")),
        (imp("{stream: {account: A, subject: \"s.x\"}, bogus: 1}"), Want::Refused("unknown field \"bogus\"")),
        ("accounts { A { exports: [{stream: \">\"}], imports: [{stream: {account: B, subject: \">\"}}] }, B { exports: [{stream: \">\"}], imports: [{stream: {account: A, subject: \">\"}}] } }".into(), Want::Refused("import forms a cycle")),
        ("accounts { A { exports: [{service: \">\"}], imports: [{service: {account: B, subject: x}}] }, B { exports: [{service: \">\"}], imports: [{service: {account: A, subject: x}}] } }".into(), Want::Refused("Error adding service import \"x\": import forms a cycle")),
        ("accounts { A { exports: [{stream: x, accounts: [B]}] } }".into(), Want::Refused("\"B\" account not defined for stream export")),
        ("accounts { A { exports: [{service: x, response_type: bogus}] } }".into(), Want::Refused("Unknown response type: \"bogus\"")),
        ("accounts { A { exports: [{stream: x, response_type: stream}] } }".into(), Want::Refused("Detected response directive on non-service")),
        // nats-server reads a map's keys in a random order, which picks its words here: the
        // part natsu's words share with both is compared.
        ("accounts { A { exports: [{stream: x, service: y}] } }".into(), Want::Refused("but already saw a")),
        ("accounts { \"$G\" { } }".into(), Want::Refused("\"$G\" is a Reserved Account")),
        ("accounts [A, A]".into(), Want::Refused("Duplicate Account Entry: A")),
        ("accounts { A: 1 }".into(), Want::Refused("Expected map entries for accounts")),
        ("accounts { A { max_connections: 1 } }".into(), Want::Refused("unknown field \"max_connections\"")),
        ("accounts { A { users: [{user: a, password: b}] }, B { users: [{user: a, password: c}] } }".into(), Want::Refused("Duplicate user \"a\" detected")),
        (format!("accounts {{ A {{ users: [{{nkey: {u1}}}] }}, B {{ users: [{{nkey: {u1}}}] }} }}"), Want::Refused("Duplicate nkey")),
        // Random order again: "and accounts" or "and a users array".
        ("authorization { user: x, password: y }\naccounts { A { users: [{user: a, password: b}] } }".into(), Want::Refused("Can not have a single user/pass and ")),
        ("authorization { token: x }\naccounts { A { users: [{user: a, password: b}] } }".into(), Want::Refused("Can not have a token and ")),
        (format!("authorization {{ users: [{{nkey: {u1}, password: x}}] }}"), Want::Refused("Nkey users do not take usernames or passwords")),
        (format!("accounts {{ A {{ users: [{{nkey: {account_key}}}] }} }}"), Want::Refused("Not a valid public nkey for a user")),
        ("authorization { users: [{nkey: UABC}] }".into(), Want::Refused("Not a valid public nkey for a user")),
        // nats-server checks these only when it starts.
        ("no_auth_user: a\nauthorization { users: [{user: b, password: x}] }".into(), Want::Refused("no_auth_user: \"a\" not present as user in authorization block or account configuration")),
        (format!("no_auth_user: {u1}\nauthorization {{ users: [{{nkey: {u1}}}, {{user: b, password: x}}] }}"), Want::Refused("not present as user in authorization block or account configuration")),
        ("no_auth_user: a\n".into(), Want::Refused("no_auth_user: \"a\" present, but users are not defined")),
        ("system_account: X\naccounts { Y {} }".into(), Want::Refused("error resolving system account: account missing")),
        // Known to nats-server, not served by natsu yet.
        ("accounts { A { jetstream: enabled } }".into(), Want::NotServed("\"jetstream\" is not supported by natsu yet")),
        (format!("accounts {{ A {{ nkey: {account_key} }} }}"), Want::NotServed("\"nkey\" is not supported by natsu yet")),
        ("accounts { A { exports: [{service: x, latency: \"lat.x\"}] } }".into(), Want::NotServed("\"latency\" is not supported by natsu yet")),
        (imp("{service: {account: A, subject: \"r.x\"}, share: true}"), Want::NotServed("\"share\" is not supported by natsu yet")),
        (imp("{stream: {account: A, subject: \"s.*.*\"}, to: \"t.$2.$1\"}"), Want::NotServed("wildcards out of order or repeated (\"t.$2.$1\") in 'to' is not supported by natsu yet")),
        // nats-server takes these; natsu refuses them on purpose.
        ("accounts { A { exports: [{stream: \"p.>\", accounts: []}] }, B { imports: [{stream: {account: A, subject: \"p.x\"}}] } }".into(), Want::Stricter("an empty \"accounts\" list makes the export public in nats-server")),
        (imp("{service: {account: A, subject: \"r.x\"}, prefix: p}"), Want::Stricter("a service import takes no 'prefix'")),
        (imp("{prefix: p}"), Want::Stricter("an import needs a \"stream\" or a \"service\"")),
        ("accounts { A { exports: [{accounts: [A]}] } }".into(), Want::Stricter("an export needs a \"stream\" or a \"service\" subject")),
        (imp("{stream: {account: A, subject: \"s.x\"}, to: \"a..b\"}"), Want::Stricter("'to' \"a..b\" is not a valid subject")),
    ];
    let reference = Command::new("nats-server").arg("--version").output().is_ok();
    if !reference {
        eprintln!("nats-server not installed: checking natsu alone");
    }
    let mut wrong = Vec::new();
    for (n, (text, want)) in cases.iter().enumerate() {
        let f = write(&d, &format!("c{n}.conf"), text);
        let (ok, _, err) = run(&["-t", "-c", &f]);
        let natsu_text = match want {
            Want::Valid => None,
            Want::Refused(t) | Want::NotServed(t) | Want::Stricter(t) | Want::Either(t) => Some(*t),
        };
        match natsu_text {
            None if !ok => wrong.push(format!("natsu refuses {text:?}:\n{err}")),
            Some(t) if ok || !err.contains(t) => wrong.push(format!("natsu: {text:?}: want {t:?}, got ok={ok}:\n{err}")),
            _ => {}
        }
        if !reference {
            continue;
        }
        let (checked, out) = reference_check(&f).unwrap();
        let verdict = if checked { reference_start(&f).unwrap() } else { Err(out) };
        match (want, verdict) {
            (Want::Refused(t) | Want::Either(t), Err(out)) if !out.contains(t) => wrong.push(format!("nats-server: {text:?}: want {t:?}, got:\n{out}")),
            (Want::Refused(_) | Want::Either(_), Err(_)) | (Want::Either(_), Ok(())) => {}
            (Want::Refused(t), Ok(())) => wrong.push(format!("nats-server takes {text:?}, want {t:?}")),
            (_, Err(out)) => wrong.push(format!("nats-server refuses {text:?}:\n{out}")),
            (_, Ok(())) => {}
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n\n"));
}

/// A reload (SIGHUP) that changes the accounts, the system account or the account of a
/// user is refused with the reason, and the running settings stay; adding a user to an
/// account is not.
#[test]
fn a_reload_that_changes_accounts_is_refused() {
    let d = TempDir::new("cf-reload-accounts");
    let conf = |a_users: &str, b_users: &str, system: &str| {
        format!("listen: \"127.0.0.1:-1\"\naccounts {{\n  A {{ users: [{a_users}] }}\n  B {{ users: [{b_users}] }}\n}}\nsystem_account: {system}\n")
    };
    let f = write(&d, "r.conf", &conf("{user: a, password: a}", "{user: b, password: b}", "A"));
    let mut n = Natsu::start(&["-c", &f], &[]);
    let port = n.port();
    n.wait_for("Server is ready");
    let pid = n.child.id().to_string();
    let reload = |n: &mut Natsu, text: String, want: &str| {
        std::fs::write(&f, text).unwrap();
        let (ok, out, err) = run(&["--signal", &format!("reload={pid}")]);
        assert!(ok, "{out}{err}");
        let line = n.wait_for(want);
        // Each reload's outcome is a new line; forget the ones read.
        n.seen.clear();
        line
    };
    reload(&mut n, conf("{user: a, password: a}", "{user: b, password: b}", "B"), "Failed to reload server configuration: changing system_account needs a restart");
    reload(&mut n, conf("{user: a, password: a}", "{user: b, password: b}", "A") + "accounts { A {}, B {}, C {} }\n", "Failed to reload server configuration: changing accounts needs a restart");
    reload(&mut n, conf("", "{user: b, password: b}, {user: a, password: a}", "A"), "Failed to reload server configuration: moving user \"a\" from account \"A\" to \"B\" needs a restart");
    // The old settings stay: a still logs in (in A).
    let mut c = Raw::connect(port);
    c.send("CONNECT {\"user\":\"a\",\"pass\":\"a\",\"verbose\":false}\r\nPING\r\n");
    c.expect("PONG\r\n");
    reload(&mut n, conf("{user: a, password: a}, {user: a2, password: a2}", "{user: b, password: b}", "A"), "Reloaded server configuration");
}
