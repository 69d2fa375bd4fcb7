//! The `natsu` binary as a user runs it: flags, log lines, pid file, signals.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{natsu_bin, TempDir};

/// Start natsu with `args`, wait for "Server is ready", and return it with the lines logged.
fn start(args: &[&str]) -> (std::process::Child, Vec<String>) {
    let mut child = Command::new(natsu_bin())
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start natsu");
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut lines = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while let Ok(line) = rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
        let ready = line.contains("Server is ready");
        lines.push(line);
        if ready {
            return (child, lines);
        }
    }
    let _ = child.kill();
    panic!("natsu did not get ready: {lines:?}");
}

#[test]
fn logs_like_nats_server_and_stops_promptly_on_sigterm_and_sigint() {
    for sig in [libc::SIGTERM, libc::SIGINT] {
        let dir = TempDir::new("pid");
        let pid_file = dir.0.join("natsu.pid");
        let (mut child, lines) = start(&["-a", "127.0.0.1", "-p", "-1", "-P", pid_file.to_str().unwrap(), "--cores", "2"]);
        let text = lines.join("\n");
        for want in ["[INF] Starting natsu version", "Listening for client connections on 127.0.0.1:", "[INF] Server is ready"] {
            assert!(text.contains(want), "missing {want:?} in {text}");
        }
        assert!(lines[0].starts_with(&format!("[{}] ", child.id())), "pid prefix: {}", lines[0]);
        let written = std::fs::read_to_string(&pid_file).expect("pid file");
        assert_eq!(written.trim(), child.id().to_string());

        // SAFETY: signalling the child we started, by its PID.
        unsafe { libc::kill(child.id() as i32, sig) };
        let deadline = Instant::now() + Duration::from_secs(1);
        let status = loop {
            if let Some(s) = child.try_wait().unwrap() {
                break s;
            }
            assert!(Instant::now() < deadline, "natsu still running 1s after signal {sig}");
            std::thread::sleep(Duration::from_millis(10));
        };
        assert!(status.success(), "exit status {status}");
        assert!(!pid_file.exists(), "pid file left behind");
    }
}

#[test]
fn logtime_off_drops_the_timestamp() {
    let (mut child, lines) = start(&["-a", "127.0.0.1", "-p", "-1", "-T=false"]);
    let _ = child.kill();
    let _ = child.wait();
    let want = format!("[{}] [INF] Server is ready", child.id());
    assert!(lines.iter().any(|l| l == &want), "{lines:?}");
}

#[test]
fn bad_flags_are_clear_errors() {
    for args in [&["--bogus"][..], &["-routes", "nats://127.0.0.1:6222"], &["-p", "notaport"], &["--cores", "0"]] {
        let out = Command::new(natsu_bin()).args(args).stdin(Stdio::null()).output().unwrap();
        assert!(!out.status.success(), "{args:?} was accepted");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.starts_with("natsu: "), "{args:?}: {err}");
    }
}

#[test]
fn port_in_use_is_reported_and_exits_non_zero() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    // Without SO_REUSEPORT on the holder, natsu's bind must fail.
    let out = Command::new(natsu_bin()).args(["-a", "127.0.0.1", "-p", &port]).stdin(Stdio::null()).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("Error listening on port"), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn a_second_natsu_cannot_share_a_port() {
    // natsu's own listeners use SO_REUSEPORT (one per core); a second natsu must still be
    // refused, as a second nats-server is.
    let first = common::Server::start();
    let port = first.port.to_string();
    let out = Command::new(natsu_bin()).args(["-a", "127.0.0.1", "-p", &port]).stdin(Stdio::null()).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("Error listening on port"), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn help_and_version() {
    let out = Command::new(natsu_bin()).arg("-h").output().unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("--cores"));
    let out = Command::new(natsu_bin()).arg("--version").output().unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("natsu: v"));
}
