//! The machine's loopback TCP bandwidth: one executor writes 256 KiB buffers as fast as it
//! can, another reads them. MB/s figures of a broker are read against this ceiling.

use std::time::{Duration, Instant};

use futures_lite::{AsyncReadExt, AsyncWriteExt};
use glommio::net::{TcpListener, TcpStream};
use glommio::{LocalExecutorBuilder, Placement};

/// Megabytes (10^6 bytes) per second through one loopback TCP connection.
pub fn measure(duration: Duration) -> Result<f64, String> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    drop(listener);
    let reader = LocalExecutorBuilder::new(Placement::Unbound)
        .io_memory(256 << 10)
        .spawn(move || async move {
            let l = TcpListener::bind(addr).map_err(|e| e.to_string())?;
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
    let writer = LocalExecutorBuilder::new(Placement::Unbound)
        .io_memory(256 << 10)
        .spawn(move || async move {
            let mut s = None;
            for _ in 0..100 {
                match TcpStream::connect(addr).await {
                    Ok(c) => {
                        s = Some(c);
                        break;
                    }
                    Err(_) => glommio::timer::sleep(Duration::from_millis(10)).await,
                }
            }
            let mut s = s.ok_or("cannot connect to the loopback listener")?;
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
    reader.join().map_err(|e| e.to_string())?
}
