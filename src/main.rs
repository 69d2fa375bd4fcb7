//! The `natsu` broker binary: flags as nats-server's, logs as nats-server's.

use std::process::ExitCode;

use natsu::config::cli::{self, Invocation};
use natsu::server;

/// Block SIGINT and SIGTERM in every thread (the executors inherit the mask) so the main
/// thread can wait for them with sigwait and stop the process promptly.
fn block_stop_signals() -> libc::sigset_t {
    // SAFETY: sigset_t is plain data; the calls only read and write the set we pass.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        set
    }
}

fn main() -> ExitCode {
    // First of all, so a stop signal that arrives during start-up is still handled cleanly.
    let signals = block_stop_signals();
    let (opts, log, warnings) = match cli::parse(std::env::args_os()) {
        Ok(Invocation::Run(opts, log, warnings)) => (*opts, log, warnings),
        Ok(Invocation::Signal(cmd, pid)) => {
            return match natsu::config::signal::send(&cmd, pid.as_deref()) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("natsu: {e}");
                    ExitCode::from(1)
                }
            };
        }
        Ok(Invocation::Print(text)) => {
            println!("{text}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("natsu: {e}");
            return ExitCode::from(1);
        }
    };
    if let Err(e) = natsu::logging::init(&log) {
        eprintln!("natsu: {e}");
        return ExitCode::from(1);
    }
    for w in &warnings {
        tracing::warn!("{w}");
    }
    tracing::info!("Starting natsu version {}", env!("CARGO_PKG_VERSION"));
    tracing::info!("  Compatible with nats-server {}", natsu::protocol::info::COMPAT_VERSION);
    tracing::info!("  Cores:    {}", opts.cores);
    let pid_file = opts.pid_file.clone();
    let running = match server::start(opts) {
        Ok(r) => r,
        Err(e) => {
            tracing::error!("{e}");
            return ExitCode::from(1);
        }
    };
    tracing::info!("  ID:       {}", running.server_id);
    if let Some(p) = &pid_file {
        if let Err(e) = std::fs::write(p, std::process::id().to_string()) {
            tracing::error!("Could not write pidfile: {e}");
            return ExitCode::from(1);
        }
    }
    tracing::info!("Listening for client connections on {}", running.addr);
    tracing::info!("Server is ready");
    let mut sig: libc::c_int = 0;
    // SAFETY: `signals` is an initialised set and `sig` a valid out pointer.
    unsafe { libc::sigwait(&signals, &mut sig) };
    tracing::info!("Trapped {} signal", if sig == libc::SIGINT { "\"interrupt\"" } else { "\"terminated\"" });
    tracing::info!("Server Exiting..");
    if let Some(p) = &pid_file {
        let _ = std::fs::remove_file(p);
    }
    // The executors serve until the process ends; nothing is buffered that exit would lose
    // beyond what nats-server also drops on a signal.
    drop(running);
    ExitCode::SUCCESS
}
