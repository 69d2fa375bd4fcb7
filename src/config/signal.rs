//! `natsu --signal CMD[=PID]`: send a signal to a running natsu, as `nats-server --signal`.
//!
//! The commands map onto signals as nats-server's do: stop → SIGKILL, quit → SIGINT,
//! term → SIGTERM, reopen → SIGUSR1 (reopen the log file), reload → SIGHUP (read the config
//! file again), ldm → SIGUSR2 (lame duck mode). The PID is a number or a pid file (`-P`);
//! without one, the single natsu process running is found through `/proc`.

use std::path::Path;

/// The process name [`send`] looks for when no pid is given.
const PROCESS_NAME: &str = "natsu";

/// Send the signal named by `cmd` (stop, quit, term, reopen, reload, ldm) to the natsu whose
/// pid is `pid` (a number or a pid file), or to the one natsu running when `pid` is None.
///
/// ```
/// use natsu::config::signal::send;
/// assert_eq!(send("dance", Some("1")), Err("unknown signal \"dance\"".to_string()));
/// ```
pub fn send(cmd: &str, pid: Option<&str>) -> Result<(), String> {
    let sig = signal_of(cmd)?;
    let pid = match pid {
        Some(p) => resolve_pid(p)?,
        None => only_running(PROCESS_NAME)?,
    };
    // SAFETY: kill takes plain integers; resolve_pid and only_running never give 0 or a
    // negative pid, which would signal a whole process group.
    if unsafe { libc::kill(pid, sig) } != 0 {
        let e = std::io::Error::last_os_error();
        return Err(match e.raw_os_error() {
            // nats-server's words.
            Some(libc::ESRCH) => "no such process".to_string(),
            _ => format!("sending {cmd} to {pid}: {e}"),
        });
    }
    Ok(())
}

fn signal_of(cmd: &str) -> Result<libc::c_int, String> {
    Ok(match cmd {
        "stop" => libc::SIGKILL,
        "quit" => libc::SIGINT,
        "term" => libc::SIGTERM,
        "reopen" => libc::SIGUSR1,
        "reload" => libc::SIGHUP,
        "ldm" => libc::SIGUSR2,
        _ => return Err(format!("unknown signal {cmd:?}")),
    })
}

/// A pid, or the path of a file holding one.
fn resolve_pid(p: &str) -> Result<libc::pid_t, String> {
    let valid = |n: i64| -> Option<libc::pid_t> { (n > 0 && n <= libc::pid_t::MAX as i64).then_some(n as libc::pid_t) };
    if let Ok(n) = p.trim().parse::<i64>() {
        return valid(n).ok_or_else(|| format!("invalid pid: {p}"));
    }
    if !p.contains('/') && !Path::new(p).exists() {
        return Err(format!("invalid pid: {p} (neither a number nor a pid file)"));
    }
    let text = std::fs::read_to_string(p).map_err(|e| format!("could not read pid file {p}: {e}"))?;
    let t = text.trim();
    t.parse::<i64>().ok().and_then(valid).ok_or_else(|| format!("invalid pid {t:?} in pid file {p}"))
}

/// The one process named `name`, other than this one; an error naming them all when there
/// are several, as nats-server's.
fn only_running(name: &str) -> Result<libc::pid_t, String> {
    let pids = find_pids(name)?;
    match pids.as_slice() {
        [] => Err(format!("no {name} processes running")),
        [one] => Ok(*one),
        many => Err(format!("multiple {name} processes running:\n{}", many.iter().map(|p| p.to_string()).collect::<Vec<_>>().join("\n"))),
    }
}

/// Processes whose name (`/proc/PID/comm`) is `name`, in pid order, without this process.
fn find_pids(name: &str) -> Result<Vec<libc::pid_t>, String> {
    let me = std::process::id() as libc::pid_t;
    let dir = std::fs::read_dir("/proc").map_err(|e| format!("unable to resolve pid, try providing one ({e})"))?;
    let mut pids: Vec<libc::pid_t> = dir
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().to_str().and_then(|s| s.parse::<libc::pid_t>().ok()))
        .filter(|&pid| pid != me)
        // A process may exit between the listing and the read: it is simply not counted.
        .filter(|pid| std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim_end() == name))
        .collect();
    pids.sort_unstable();
    Ok(pids)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::ExitStatusExt;
    use std::process::{Child, Command};
    use std::time::{Duration, Instant};

    /// A child killed (by its pid) if a test fails before it is reaped.
    struct Kid(Child);
    impl Drop for Kid {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }

    fn sleeper(program: &str) -> Kid {
        // A just-copied binary can be "text file busy" while another test thread's fork
        // still holds the copy's write handle: try again briefly.
        for _ in 0..50 {
            match Command::new(program).arg("30").spawn() {
                Ok(c) => return Kid(c),
                Err(e) if e.raw_os_error() == Some(libc::ETXTBSY) => std::thread::sleep(Duration::from_millis(20)),
                Err(e) => panic!("start {program}: {e}"),
            }
        }
        panic!("start {program}: text file busy");
    }

    /// The signal that ended the child, waiting at most 5 s.
    fn ended_by(kid: &mut Kid) -> Option<i32> {
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Some(status) = kid.0.try_wait().unwrap() {
                return status.signal();
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        None
    }

    #[test]
    fn commands_map_to_nats_server_signals() {
        for (cmd, sig) in [("stop", libc::SIGKILL), ("quit", libc::SIGINT), ("term", libc::SIGTERM), ("reopen", libc::SIGUSR1), ("reload", libc::SIGHUP), ("ldm", libc::SIGUSR2)] {
            assert_eq!(signal_of(cmd), Ok(sig), "{cmd}");
        }
        assert_eq!(signal_of("kill"), Err("unknown signal \"kill\"".into()));
    }

    #[test]
    fn signals_a_child_by_pid_and_by_pid_file() {
        for (cmd, sig) in [("term", libc::SIGTERM), ("quit", libc::SIGINT), ("stop", libc::SIGKILL), ("reload", libc::SIGHUP)] {
            let mut kid = sleeper("sleep");
            send(cmd, Some(&kid.0.id().to_string())).unwrap();
            assert_eq!(ended_by(&mut kid), Some(sig), "{cmd}");
        }
        let mut kid = sleeper("sleep");
        let file = std::env::temp_dir().join(format!("natsu-signal-{}.pid", std::process::id()));
        std::fs::write(&file, format!("{}\n", kid.0.id())).unwrap();
        let r = send("term", file.to_str());
        let _ = std::fs::remove_file(&file);
        r.unwrap();
        assert_eq!(ended_by(&mut kid), Some(libc::SIGTERM));
    }

    #[test]
    fn clear_errors() {
        assert_eq!(send("term", Some("abc")), Err("invalid pid: abc (neither a number nor a pid file)".into()));
        assert_eq!(send("term", Some("0")), Err("invalid pid: 0".into()));
        assert_eq!(send("term", Some("-1")), Err("invalid pid: -1".into()));
        // Above the kernel's pid_max, so never a live process.
        assert_eq!(send("term", Some("999999999")), Err("no such process".into()));
        let e = send("term", Some("/nonexistent/natsu.pid")).unwrap_err();
        assert!(e.starts_with("could not read pid file /nonexistent/natsu.pid"), "{e}");
        let file = std::env::temp_dir().join(format!("natsu-signal-bad-{}.pid", std::process::id()));
        std::fs::write(&file, "garbage").unwrap();
        let e = send("term", file.to_str()).unwrap_err();
        let _ = std::fs::remove_file(&file);
        assert!(e.starts_with("invalid pid \"garbage\" in pid file"), "{e}");
        assert_eq!(send("dance", None), Err("unknown signal \"dance\"".into()));
    }

    #[test]
    fn finds_processes_by_name() {
        // A copy of sleep under a name no one else runs, so the count is ours alone.
        let name = format!("zsl{}", std::process::id() % 1_000_000);
        let dir = std::env::temp_dir().join(format!("natsu-signal-find-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let prog = dir.join(&name);
        let sleep = ["/bin/sleep", "/usr/bin/sleep"].into_iter().find(|p| Path::new(p).exists()).expect("sleep");
        std::fs::copy(sleep, &prog).unwrap();
        assert_eq!(only_running(&name), Err(format!("no {name} processes running")));
        let mut one = sleeper(prog.to_str().unwrap());
        assert_eq!(only_running(&name), Ok(one.0.id() as libc::pid_t));
        let two = sleeper(prog.to_str().unwrap());
        let mut both = [one.0.id(), two.0.id()];
        both.sort_unstable();
        assert_eq!(only_running(&name), Err(format!("multiple {name} processes running:\n{}\n{}", both[0], both[1])));
        drop(two);
        let pid = only_running(&name).unwrap();
        // SAFETY: pid is our own child, found above.
        assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
        assert_eq!(ended_by(&mut one), Some(libc::SIGTERM));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
