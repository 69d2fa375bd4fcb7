//! Syslog destinations (`-s`, `-r`): connecting, and framing lines as Go's `log/syslog`
//! frames them for nats-server. Only the logging writer thread sends on these sockets.

use std::io::Write as _;
use std::net::{SocketAddr, TcpStream, ToSocketAddrs, UdpSocket};
use std::os::unix::net::{UnixDatagram, UnixStream};
use std::path::PathBuf;
use std::time::Duration;

use tracing::Level;

use super::{bsd_stamp, rfc3339_secs, Civil};

/// Where syslog datagrams or stream lines go.
#[derive(Clone, Debug, PartialEq)]
pub(super) enum SyslogTarget {
    /// `-s`: the first of these sockets that accepts a connection.
    Local(Vec<PathBuf>),
    Udp(String),
    Tcp(String),
    Unix(PathBuf),
}

enum Conn {
    Udp(UdpSocket),
    Tcp(TcpStream),
    UnixDgram(UnixDatagram),
    UnixStream(UnixStream),
}

impl Conn {
    fn send(&mut self, frame: &[u8]) -> std::io::Result<()> {
        match self {
            Conn::Udp(s) => s.send(frame).map(drop),
            Conn::UnixDgram(s) => s.send(frame).map(drop),
            Conn::Tcp(s) => s.write_all(frame),
            Conn::UnixStream(s) => s.write_all(frame),
        }
    }
}

/// A syslog connection and how its lines are framed, as Go's `log/syslog` frames them for
/// nats-server.
pub(super) struct Syslog {
    target: SyslogTarget,
    /// `None` after a failed reconnect; the next line tries again.
    conn: Option<Conn>,
    /// nats-server's local logger is `LOG_DAEMON`; its remote one passes `LOG_DEBUG` as the
    /// priority, so its facility is 0 (kern) and only the severity shows.
    facility: u8,
    /// Unix sockets get `<PRI>Jan _2 15:04:05 tag[pid]: msg`; UDP and TCP get
    /// `<PRI>2006-01-02T15:04:05Z host tag[pid]: msg`.
    local_format: bool,
    host: String,
    /// The program's name, as nats-server tags its lines with its executable's name.
    tag: String,
}

/// Parse a `-r` address as nats-server does: `udp://host:port`, `tcp://host:port` or
/// `unix:///path`. A missing port is syslog's 514.
pub(super) fn parse_remote(url: &str) -> Result<SyslogTarget, String> {
    let (scheme, rest) = url.split_once("://").ok_or_else(|| format!("error invalid network type: {url:?}"))?;
    let hostport = |rest: &str| -> Result<String, String> {
        let hp = rest.trim_end_matches('/');
        if hp.is_empty() {
            return Err(format!("remote syslog address {url:?} has no host"));
        }
        // `host:port`, `[v6]:port`, or a bare host (or `[v6]`) that gets the default port.
        let has_port = match hp.rfind(']') {
            Some(i) => hp[i..].contains(':'),
            None => hp.contains(':'),
        };
        Ok(if has_port { hp.to_string() } else { format!("{hp}:514") })
    };
    match scheme {
        "udp" => Ok(SyslogTarget::Udp(hostport(rest)?)),
        "tcp" => Ok(SyslogTarget::Tcp(hostport(rest)?)),
        "unix" if rest.starts_with('/') => Ok(SyslogTarget::Unix(PathBuf::from(rest))),
        "unix" => Err(format!("remote syslog address {url:?} needs an absolute path (unix:///path)")),
        other => Err(format!("error invalid network type: {other:?}")),
    }
}

fn connect(target: &SyslogTarget) -> std::io::Result<Conn> {
    // A unix socket path: datagram first (syslog daemons listen so), then stream (what Go's
    // "unix" network means, so nats-server's -r unix:// also works here).
    let unix = |p: &PathBuf| -> std::io::Result<Conn> {
        let d = UnixDatagram::unbound()?;
        match d.connect(p) {
            Ok(()) => Ok(Conn::UnixDgram(d)),
            Err(_) => UnixStream::connect(p).map(Conn::UnixStream),
        }
    };
    match target {
        SyslogTarget::Local(paths) => {
            if let Some(c) = paths.iter().find_map(|p| unix(p).ok()) {
                return Ok(c);
            }
            let tried: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
            // Go's words for it, and where natsu looked.
            Err(std::io::Error::new(std::io::ErrorKind::NotFound, format!("Unix syslog delivery error (no syslog socket at {})", tried.join(", "))))
        }
        SyslogTarget::Unix(p) => unix(p),
        SyslogTarget::Udp(hp) => {
            let mut last = std::io::Error::new(std::io::ErrorKind::NotFound, format!("no address for {hp}"));
            for a in hp.to_socket_addrs()? {
                let local: SocketAddr = if a.is_ipv4() { ([0, 0, 0, 0], 0).into() } else { (std::net::Ipv6Addr::UNSPECIFIED, 0).into() };
                match UdpSocket::bind(local).and_then(|s| s.connect(a).map(|()| s)) {
                    Ok(s) => return Ok(Conn::Udp(s)),
                    Err(e) => last = e,
                }
            }
            Err(last)
        }
        SyslogTarget::Tcp(hp) => {
            let mut last = std::io::Error::new(std::io::ErrorKind::NotFound, format!("no address for {hp}"));
            for a in hp.to_socket_addrs()? {
                match TcpStream::connect_timeout(&a, Duration::from_secs(5)) {
                    Ok(s) => {
                        // A stalled collector holds only the writer thread, but not for long: the queue
                        // behind it fills and lines are dropped meanwhile.
                        let _ = s.set_write_timeout(Some(Duration::from_secs(5)));
                        return Ok(Conn::Tcp(s));
                    }
                    Err(e) => last = e,
                }
            }
            Err(last)
        }
    }
}

/// The host name for network syslog lines.
fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its length; gethostname writes at most that much.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    if rc != 0 || end == 0 {
        return "localhost".into();
    }
    String::from_utf8_lossy(&buf[..end]).into_owned()
}

/// The executable's file name, as nats-server's syslog tag.
fn program_tag() -> String {
    std::env::args_os()
        .next()
        .and_then(|a| PathBuf::from(a).file_name().map(|f| f.to_string_lossy().into_owned()))
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "natsu".into())
}

/// Syslog severity for a level, as nats-server's syslog logger picks them: errors `Err`,
/// warnings `Warning`, notices `Notice`, debug `Debug`, and traces `Notice` too.
fn severity(level: Level) -> u8 {
    match level {
        Level::ERROR => 3,
        Level::WARN => 4,
        Level::INFO | Level::TRACE => 5,
        Level::DEBUG => 7,
    }
}

/// One syslog line (with its newline, as Go's writer adds it).
pub(super) fn syslog_frame(s: &Syslog, level: Level, now: Civil, pid: u32, body: &str) -> String {
    let pri = s.facility | severity(level);
    if s.local_format {
        format!("<{pri}>{} {}[{pid}]: {body}\n", bsd_stamp(now), s.tag)
    } else {
        format!("<{pri}>{} {} {}[{pid}]: {body}\n", rfc3339_secs(now), s.host, s.tag)
    }
}

impl Syslog {
    pub(super) fn open(target: SyslogTarget, facility: u8) -> Result<Syslog, String> {
        let conn = connect(&target).map_err(|e| format!("error connecting to syslog: {e}"))?;
        let local_format = matches!(target, SyslogTarget::Local(_) | SyslogTarget::Unix(_));
        Ok(Syslog { target, conn: Some(conn), facility, local_format, host: hostname(), tag: program_tag() })
    }

    /// Send a line; on a failure reconnect once and retry, as Go's writer does, then give up
    /// on this line.
    pub(super) fn send(&mut self, frame: &[u8]) {
        if let Some(c) = &mut self.conn {
            if c.send(frame).is_ok() {
                return;
            }
        }
        self.conn = connect(&self.target).ok();
        if let Some(c) = &mut self.conn {
            if c.send(frame).is_err() {
                self.conn = None;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn syslog_frames_are_nats_servers() {
        let c = Civil { year: 2026, month: 11, day: 23, hour: 14, min: 34, sec: 22, micros: 0, offset: 0 };
        let mut s = Syslog {
            target: SyslogTarget::Udp("127.0.0.1:514".into()),
            conn: None,
            facility: 0,
            local_format: false,
            host: "vm".into(),
            tag: "natsu".into(),
        };
        // As nats-server 2.9 sends them with -r udp://...
        assert_eq!(syslog_frame(&s, Level::INFO, c, 7, "Server is ready"), "<5>2026-11-23T14:34:22Z vm natsu[7]: Server is ready\n");
        assert_eq!(syslog_frame(&s, Level::DEBUG, c, 7, "x"), "<7>2026-11-23T14:34:22Z vm natsu[7]: x\n");
        assert_eq!(syslog_frame(&s, Level::ERROR, c, 7, "x"), "<3>2026-11-23T14:34:22Z vm natsu[7]: x\n");
        assert_eq!(syslog_frame(&s, Level::WARN, c, 7, "x"), "<4>2026-11-23T14:34:22Z vm natsu[7]: x\n");
        assert_eq!(syslog_frame(&s, Level::TRACE, c, 7, "x"), "<5>2026-11-23T14:34:22Z vm natsu[7]: x\n");
        // ... with -r unix://..., and with -s (LOG_DAEMON).
        s.local_format = true;
        assert_eq!(syslog_frame(&s, Level::INFO, c, 7, "x"), "<5>Nov 23 14:34:22 natsu[7]: x\n");
        s.facility = 3 << 3;
        assert_eq!(syslog_frame(&s, Level::INFO, c, 7, "x"), "<29>Nov 23 14:34:22 natsu[7]: x\n");
        assert_eq!(syslog_frame(&s, Level::ERROR, c, 7, "x"), "<27>Nov 23 14:34:22 natsu[7]: x\n");
    }

    #[test]
    fn remote_addresses() {
        assert_eq!(parse_remote("udp://127.0.0.1:5514"), Ok(SyslogTarget::Udp("127.0.0.1:5514".into())));
        assert_eq!(parse_remote("udp://localhost"), Ok(SyslogTarget::Udp("localhost:514".into())));
        assert_eq!(parse_remote("udp://[::1]"), Ok(SyslogTarget::Udp("[::1]:514".into())));
        assert_eq!(parse_remote("udp://[::1]:9"), Ok(SyslogTarget::Udp("[::1]:9".into())));
        assert_eq!(parse_remote("tcp://h:1/"), Ok(SyslogTarget::Tcp("h:1".into())));
        assert_eq!(parse_remote("unix:///dev/log"), Ok(SyslogTarget::Unix("/dev/log".into())));
        assert!(parse_remote("http://h:1").unwrap_err().contains("invalid network type"));
        assert!(parse_remote("localhost:514").is_err());
        assert!(parse_remote("udp://").is_err());
        assert!(parse_remote("unix://rel/path").is_err());
    }
}
