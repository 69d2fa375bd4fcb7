//! The client port: one listening socket per process, shared by every executor.
//!
//! Why not one SO_REUSEPORT socket per core, accepted through io_uring: an accept pending in
//! io_uring holds a reference to the listening socket, and when the process dies (SIGKILL
//! included) the kernel drops those references only as it tears the rings down, a few
//! milliseconds after the process is gone. Meanwhile the socket still completes handshakes
//! into its backlog and then resets them, and with SO_REUSEPORT the next process on the port
//! shares the group with it. Measured: after `kill -9` and an immediate restart, a client's
//! first connection reached the dead socket and was reset, and then connections were refused
//! until the new process listened (nats-server: none).
//!
//! So each executor accepts with a plain blocking `accept4` on one of its blocking threads
//! (glommio's `spawn_blocking`): no io_uring request ever holds the socket, a dying process
//! closes it at once, and without SO_REUSEPORT a second process cannot bind the port while
//! this one holds it. The kernel hands each new connection to one blocked acceptor, so the
//! executors take turns. Stopping (lame duck, shutdown) shuts the socket down from the
//! control thread, which refuses new connections at once and wakes every acceptor.

use std::net::{SocketAddr, TcpListener, ToSocketAddrs};
use std::os::unix::io::{AsRawFd, FromRawFd, RawFd};
use std::sync::Arc;
use std::time::Duration;

use super::StartError;

/// Backlog of completed handshakes not yet accepted (nats-server leaves Go's default, the
/// kernel's somaxconn).
const BACKLOG: i32 = 1024;

/// Bind the client port. `host` may be a name, an IPv4 or a bracketed IPv6 address.
pub fn bind(host: &str, port: u16) -> Result<(Arc<TcpListener>, SocketAddr), StartError> {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    let addr = (bare, port)
        .to_socket_addrs()
        .ok()
        .and_then(|mut a| a.next())
        .ok_or_else(|| StartError::Resolve(host.to_string()))?;
    let domain = if addr.is_ipv6() { socket2::Domain::IPV6 } else { socket2::Domain::IPV4 };
    let listen = || -> std::io::Result<TcpListener> {
        let s = socket2::Socket::new(domain, socket2::Type::STREAM, Some(socket2::Protocol::TCP))?;
        // SO_REUSEADDR only lets us bind past connections in TIME_WAIT, as Go does; it never
        // shares a port with a listening socket.
        s.set_reuse_address(true)?;
        s.bind(&addr.into())?;
        s.listen(BACKLOG)?;
        Ok(s.into())
    };
    let l = listen().map_err(|e| StartError::Bind(addr, e))?;
    let addr = l.local_addr().map_err(|e| StartError::Bind(addr, e))?;
    Ok((Arc::new(l), addr))
}

/// Stop accepting at once: connections that arrive from now on are refused, and every
/// executor blocked in `accept` wakes up (with an error it reads as "stopped").
pub fn shut(fd: RawFd) {
    // SAFETY: `fd` is the listening socket, kept open by the executors' `Arc` until their
    // accept loops end; shutdown does not close it, so the number cannot be reused meanwhile.
    unsafe {
        libc::shutdown(fd, libc::SHUT_RDWR);
    }
}

/// Accept connections for this executor until the listener is shut or `running` says stop;
/// hand each to `serve`.
pub async fn accept_loop(listener: Arc<TcpListener>, running: impl Fn() -> bool, mut serve: impl FnMut(glommio::net::TcpStream)) {
    let fd = listener.as_raw_fd();
    while running() {
        // The blocking thread holds only the number; `listener` outlives the call because the
        // loop awaits it.
        let accepted = glommio::executor()
            .spawn_blocking(move || {
                // SAFETY: a plain accept4 on a listening socket we own; the new descriptor is
                // returned to the caller, who takes ownership.
                let n = unsafe { libc::accept4(fd, std::ptr::null_mut(), std::ptr::null_mut(), libc::SOCK_CLOEXEC) };
                if n < 0 {
                    Err(std::io::Error::last_os_error())
                } else {
                    Ok(n)
                }
            })
            .await;
        match accepted {
            Ok(conn) => {
                // SAFETY: `conn` is a connected socket nobody else owns.
                serve(unsafe { glommio::net::TcpStream::from_raw_fd(conn) });
            }
            Err(_) if !running() => break,
            Err(e) if matches!(e.raw_os_error(), Some(libc::ECONNABORTED | libc::EINTR)) => {}
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
                // Shut down by someone else than the control plane: nothing more will come.
                tracing::debug!("listener shut down: {e}");
                break;
            }
            Err(e) => {
                // Out of file descriptors and the like: say so and retry shortly.
                tracing::error!("Error accepting client connection: {e}");
                glommio::timer::sleep(Duration::from_millis(50)).await;
            }
        }
    }
    drop(listener);
}
