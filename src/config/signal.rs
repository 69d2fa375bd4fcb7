//! `natsu --signal CMD[=PID]`: send a signal to a running natsu, as `nats-server --signal`.

/// Send the signal named by `cmd` (stop, quit, term, reopen, reload, ldm) to the natsu whose
/// pid is `pid` (a number or a pid file), or to the one natsu running when `pid` is None.
pub fn send(cmd: &str, pid: Option<&str>) -> Result<(), String> {
    Err(format!("--signal {cmd}{} is not implemented yet", pid.map(|p| format!("={p}")).unwrap_or_default()))
}
