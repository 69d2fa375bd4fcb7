//! The machine's loopback TCP figures that a broker's are read against: the bandwidth (one
//! executor writes 256 KiB buffers as fast as it can, another reads them), the ceiling for
//! MB/s, directly and through a relay that passes the bytes on (a broker's two hops); and the round trip of 16 bytes between two threads on one CPU and on two, the
//! floor under request/reply latency (on a VM, waking a thread on another CPU is costly).

use std::time::{Duration, Instant};

use futures_lite::{AsyncReadExt, AsyncWriteExt};
use glommio::net::{TcpListener, TcpStream};
use glommio::{LocalExecutorBuilder, Placement};

/// A loopback listener bound here, on a port the kernel picks, handed to an executor whole
/// (by its descriptor) so that nothing can take the port in between; and its address.
fn listener() -> Result<(std::os::fd::OwnedFd, std::net::SocketAddr), String> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    let addr = l.local_addr().map_err(|e| e.to_string())?;
    Ok((l.into(), addr))
}

/// The glommio listener over a descriptor from [`listener`], on the calling executor.
fn adopt(fd: std::os::fd::OwnedFd) -> TcpListener {
    use std::os::fd::{FromRawFd, IntoRawFd};
    // SAFETY: a bound, listening TCP socket whose ownership passes to the glommio listener.
    unsafe { TcpListener::from_raw_fd(fd.into_raw_fd()) }
}

/// Connect to a listener from [`listener`] (listening already: no retry needed).
async fn connect(addr: std::net::SocketAddr) -> Result<TcpStream, String> {
    TcpStream::connect(addr).await.map_err(|e| format!("cannot connect to the loopback listener {addr}: {e}"))
}

/// Megabytes (10^6 bytes) per second through one loopback TCP connection (`relay` false),
/// or through two with a third executor passing the bytes from one to the other unread
/// (`relay` true): the path every byte of a broker's pub/sub takes (publisher → broker →
/// subscriber, two reads and two writes) with nothing done to it on the way, the transport
/// ceiling for a broker on this machine.
pub fn measure(duration: Duration, relay: bool) -> Result<f64, String> {
    let ((out_fd, out_addr), (in_fd, in_addr)) = (listener()?, listener()?);
    let reader = LocalExecutorBuilder::new(Placement::Unbound)
        .io_memory(256 << 10)
        .spawn(move || async move {
            let l = adopt(out_fd);
            let mut s = l.accept().await.map_err(|e| e.to_string())?;
            let mut buf = vec![0u8; 256 << 10];
            let mut total = 0u64;
            let mut first: Option<Instant> = None;
            loop {
                let n = s.read(&mut buf).await.map_err(|e| e.to_string())?;
                if n == 0 {
                    break;
                }
                first.get_or_insert_with(Instant::now);
                total += n as u64;
            }
            let secs = first.map_or(1.0, |f| f.elapsed().as_secs_f64());
            Ok::<f64, String>(total as f64 / secs / 1e6)
        })
        .map_err(|e| e.to_string())?;
    let relayer = relay
        .then(|| {
            LocalExecutorBuilder::new(Placement::Unbound).io_memory(256 << 10).spawn(move || async move {
                let l = adopt(in_fd);
                let mut down = connect(out_addr).await?;
                let mut up = l.accept().await.map_err(|e| e.to_string())?;
                let mut buf = vec![0u8; 256 << 10];
                loop {
                    let n = up.read(&mut buf).await.map_err(|e| e.to_string())?;
                    if n == 0 {
                        break;
                    }
                    down.write_all(&buf[..n]).await.map_err(|e| e.to_string())?;
                }
                down.close().await.map_err(|e| e.to_string())?;
                Ok::<(), String>(())
            })
        })
        .transpose()
        .map_err(|e| e.to_string())?;
    let writer = LocalExecutorBuilder::new(Placement::Unbound)
        .io_memory(256 << 10)
        .spawn(move || async move {
            let mut s = connect(if relay { in_addr } else { out_addr }).await?;
            let buf = vec![7u8; 256 << 10];
            let start = Instant::now();
            while start.elapsed() < duration {
                s.write_all(&buf).await.map_err(|e| e.to_string())?;
            }
            s.close().await.map_err(|e| e.to_string())?;
            Ok::<(), String>(())
        })
        .map_err(|e| e.to_string())?;
    writer.join().map_err(|e| e.to_string())??;
    if let Some(r) = relayer {
        r.join().map_err(|e| e.to_string())??;
    }
    reader.join().map_err(|e| e.to_string())?
}

/// The CPUs this process may run on.
fn allowed_cpus() -> Vec<usize> {
    // SAFETY: a zeroed cpu_set_t is a valid empty set, filled in by the kernel.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: the pointer and size describe `set`.
    if unsafe { libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) } != 0 {
        return Vec::new();
    }
    // SAFETY: CPU_ISSET reads inside the set for any index below CPU_SETSIZE.
    (0..libc::CPU_SETSIZE as usize).filter(|&c| unsafe { libc::CPU_ISSET(c, &set) }).collect()
}

/// Pin the calling thread to one CPU.
fn pin(cpu: usize) -> Result<(), String> {
    // SAFETY: a zeroed cpu_set_t is an empty set; `cpu` is below CPU_SETSIZE (an allowed CPU).
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    unsafe { libc::CPU_SET(cpu, &mut set) };
    // SAFETY: the pointer and size describe `set`.
    if unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) } == 0 {
        Ok(())
    } else {
        Err(format!("cannot pin a thread to CPU {cpu}: {}", std::io::Error::last_os_error()))
    }
}

/// Round trips of 16 bytes over one loopback TCP connection between two threads, blocking
/// sockets, both threads on the first CPU this process may use (`two_cpus` false) or one on
/// each of the first two: the floor under any broker's request/reply latency here, where
/// every hop is a thread's wake-up. The median and the 99th percentile in µs; None when
/// two CPUs are asked for and there is one.
pub fn round_trip(two_cpus: bool, rounds: usize) -> Result<Option<(f64, f64)>, String> {
    use std::io::{Read, Write};
    let cpus = allowed_cpus();
    let (a, b) = match (cpus.first(), cpus.get(1)) {
        (Some(&a), _) if !two_cpus => (a, a),
        (Some(&a), Some(&b)) => (a, b),
        _ => return Ok(None),
    };
    let listener = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    let echo = std::thread::spawn(move || -> Result<(), String> {
        pin(b)?;
        let (mut s, _) = listener.accept().map_err(|e| e.to_string())?;
        s.set_nodelay(true).map_err(|e| e.to_string())?;
        let mut buf = [0u8; 16];
        while s.read_exact(&mut buf).is_ok() {
            s.write_all(&buf).map_err(|e| e.to_string())?;
        }
        Ok(())
    });
    let caller = std::thread::spawn(move || -> Result<Vec<f64>, String> {
        // Connected first, so that the echo thread's accept returns whatever happens next.
        let mut s = std::net::TcpStream::connect(addr).map_err(|e| e.to_string())?;
        pin(a)?;
        s.set_nodelay(true).map_err(|e| e.to_string())?;
        let mut buf = [0u8; 16];
        let mut lat = Vec::with_capacity(rounds);
        for _ in 0..rounds {
            let t = Instant::now();
            s.write_all(&buf).map_err(|e| e.to_string())?;
            s.read_exact(&mut buf).map_err(|e| e.to_string())?;
            lat.push(t.elapsed().as_secs_f64() * 1e6);
        }
        Ok(lat)
    });
    let lat = caller.join().map_err(|_| "the round-trip thread panicked")?;
    // The echo thread ends when the caller's socket closes (or could not connect).
    echo.join().map_err(|_| "the echo thread panicked")??;
    let mut lat = lat?;
    lat.sort_by(f64::total_cmp);
    Ok(Some((lat[lat.len() / 2], lat[lat.len() * 99 / 100])))
}
