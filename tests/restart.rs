//! A process owns its port alone, and gives it up whole: what supervisors and client
//! libraries that reconnect at once run into. Run against natsu and, with
//! `NATSU_TEST_TARGET=reference`, against nats-server.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{free_port, natsu_bin, reference};

/// Start the target on `port` without waiting for anything: the test itself watches the port.
fn spawn_on(port: u16) -> Child {
    let mut cmd = Command::new(if reference() { PathBuf::from("nats-server") } else { natsu_bin() });
    cmd.args(["-a", "127.0.0.1", "-p", &port.to_string()]);
    if !reference() {
        // More than one executor: the failure this guards against came from one listening
        // socket per executor.
        cmd.args(["--cores", "2"]);
    }
    cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::piped());
    cmd.spawn().expect("start server")
}

fn signal(child: &Child, sig: libc::c_int) {
    // SAFETY: kill on the pid of a child this test started and has not reaped.
    assert_eq!(unsafe { libc::kill(child.id() as libc::pid_t, sig) }, 0);
}

/// Poll until a TCP connection to the port succeeds (the port "accepts"), at most 10 s.
fn wait_accepting(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "port {port} not accepting within 10s");
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// One whole client handshake: INFO, CONNECT, PING, PONG. Err names what went wrong.
fn handshake(port: u16) -> Result<(), String> {
    let s = TcpStream::connect(("127.0.0.1", port)).map_err(|e| format!("connect: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(5))).map_err(|e| e.to_string())?;
    let mut r = BufReader::new(s.try_clone().map_err(|e| e.to_string())?);
    let mut line = String::new();
    r.read_line(&mut line).map_err(|e| format!("INFO: {e}"))?;
    if !line.starts_with("INFO ") {
        return Err(format!("INFO: got {line:?}"));
    }
    (&s).write_all(b"CONNECT {\"verbose\":false}\r\nPING\r\n").map_err(|e| format!("CONNECT: {e}"))?;
    line.clear();
    r.read_line(&mut line).map_err(|e| format!("PONG: {e}"))?;
    if line != "PONG\r\n" {
        return Err(format!("PONG: got {line:?}"));
    }
    Ok(())
}

/// `kill -9`, a new server on the same port at once, and 20 clients as soon as the port
/// accepts: every one of them gets a whole handshake, over 10 rounds. natsu used to lose
/// ~40% of them: the killed process's listening sockets lingered (held by io_uring) long
/// enough to take the first connection and reset it.
#[test]
fn a_server_killed_and_restarted_at_once_loses_no_client() {
    let port = free_port();
    let mut server = spawn_on(port);
    wait_accepting(port);
    let mut failures = Vec::new();
    for round in 0..10 {
        signal(&server, libc::SIGKILL);
        let _ = server.wait();
        server = spawn_on(port);
        wait_accepting(port);
        for i in 0..20 {
            if let Err(e) = handshake(port) {
                failures.push(format!("round {round} client {i}: {e}"));
            }
        }
    }
    signal(&server, libc::SIGKILL);
    let _ = server.wait();
    assert!(failures.is_empty(), "{} of 200 handshakes failed: {failures:#?}", failures.len());
}

/// A second server cannot start on a port a live one holds (nats-server refuses to start;
/// natsu must not join a reuse-port group and take half the clients).
#[test]
fn a_second_server_cannot_take_a_port_in_use() {
    let port = free_port();
    let mut first = spawn_on(port);
    wait_accepting(port);
    let mut second = spawn_on(port);
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(s) = second.try_wait().expect("try_wait") {
            break s;
        }
        if Instant::now() > deadline {
            signal(&second, libc::SIGKILL);
            let _ = second.wait();
            panic!("a second server kept running on a port in use");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    assert!(!status.success(), "the second server exited with success");
    let mut err = String::new();
    let _ = std::io::Read::read_to_string(&mut second.stderr.take().expect("stderr"), &mut err);
    assert!(err.contains("address already in use") || err.contains("Address already in use"), "{err}");
    // The first still serves.
    handshake(port).expect("the first server still serves");
    signal(&first, libc::SIGKILL);
    let _ = first.wait();
}

/// After a SIGINT stop, the port is free the moment the process is gone: a plain socket
/// (no SO_REUSEADDR) binds it at once.
#[test]
fn after_sigint_the_port_is_free_at_once() {
    for _ in 0..3 {
        let port = free_port();
        let mut server = spawn_on(port);
        wait_accepting(port);
        handshake(port).expect("serves");
        signal(&server, libc::SIGINT);
        let status = server.wait().expect("wait");
        assert!(status.success() || status.code().is_some(), "{status:?}");
        // socket2-free: std's bind sets SO_REUSEADDR on Unix, so bind by hand.
        // SAFETY: a fresh socket, bound and closed here.
        let rc = unsafe {
            let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0);
            assert!(fd >= 0);
            let addr = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: port.to_be(),
                sin_addr: libc::in_addr { s_addr: u32::from_be_bytes([127, 0, 0, 1]).to_be() },
                sin_zero: [0; 8],
            };
            let rc = libc::bind(fd, &addr as *const _ as *const libc::sockaddr, std::mem::size_of_val(&addr) as u32);
            let err = std::io::Error::last_os_error();
            libc::close(fd);
            (rc, err)
        };
        assert_eq!(rc.0, 0, "plain bind of port {port} after SIGINT: {}", rc.1);
    }
}

/// Lame duck mode (SIGUSR2) refuses new connections at once, as nats-server does: new
/// clients must go to the other servers. natsu used to accept for the whole grace period.
#[test]
fn lame_duck_refuses_new_connections_at_once() {
    let port = free_port();
    let mut server = spawn_on(port);
    wait_accepting(port);
    // A client that stays: the server waits for it through the grace period.
    let stay = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    handshake(port).expect("serves");
    signal(&server, libc::SIGUSR2);
    let sent = Instant::now();
    // Allow the signal to be taken (a thread wakes for it); after that, nothing is accepted.
    let deadline = sent + Duration::from_millis(500);
    loop {
        match TcpStream::connect(("127.0.0.1", port)) {
            Err(_) => break,
            Ok(_) => assert!(Instant::now() < deadline, "still accepting {:?} into lame duck mode", sent.elapsed()),
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    for _ in 0..20 {
        std::thread::sleep(Duration::from_millis(20));
        assert!(TcpStream::connect(("127.0.0.1", port)).is_err(), "accepted again {:?} into lame duck mode", sent.elapsed());
    }
    drop(stay);
    signal(&server, libc::SIGKILL);
    let _ = server.wait();
}
