//! The `natsu` broker binary: flags as nats-server's, logs as nats-server's, signals as
//! nats-server's (SIGINT/SIGTERM stop, SIGHUP reloads the config file, SIGUSR1 reopens the
//! log file, SIGUSR2 enters lame duck mode).

use std::ffi::OsString;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use natsu::config::cli::{self, Invocation};
use natsu::server;

/// The signals the main thread handles.
const HANDLED: [libc::c_int; 5] = [libc::SIGINT, libc::SIGTERM, libc::SIGHUP, libc::SIGUSR1, libc::SIGUSR2];

/// How long a stop waits for clients to be sent what is queued for them.
const STOP_WAIT: Duration = Duration::from_secs(5);

/// Block the handled signals in every thread (the executors inherit the mask) so the main
/// thread alone takes them, with sigwait.
fn block_signals() -> libc::sigset_t {
    // SAFETY: sigset_t is plain data; the calls only read and write the set we pass.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for s in HANDLED {
            libc::sigaddset(&mut set, s);
        }
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        set
    }
}

fn main() -> ExitCode {
    // First of all, so a signal that arrives during start-up is still handled cleanly.
    let signals = block_signals();
    let args: Vec<OsString> = std::env::args_os().collect();
    let (opts, log, warnings) = match cli::parse(args.clone()) {
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
            // Not println!: a reader that went away (`natsu --help_tls | head -1`) would make it panic.
            use std::io::Write;
            let _ = writeln!(std::io::stdout(), "{text}");
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
    tracing::info!("  Spin:     {:?}", opts.spin);
    if let Some(f) = &opts.config_file {
        tracing::info!("Using configuration file: {f}");
    }
    let pid_file = opts.pid_file.clone();
    let running = match server::start(opts) {
        Ok(r) => Arc::new(r),
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
    if running.options().tls.is_some() {
        tracing::info!("TLS required for client connections");
    }
    tracing::info!("Listening for client connections on {}", running.addr);
    tracing::info!("Server is ready");
    let code = serve_signals(&signals, &running, &args);
    if let Some(p) = &pid_file {
        let _ = std::fs::remove_file(p);
    }
    code
}

/// Act on signals until one stops the server.
fn serve_signals(signals: &libc::sigset_t, running: &Arc<server::Running>, args: &[OsString]) -> ExitCode {
    let mut in_lame_duck = false;
    loop {
        let mut sig: libc::c_int = 0;
        // SAFETY: `signals` is an initialised set and `sig` a valid out pointer.
        if unsafe { libc::sigwait(signals, &mut sig) } != 0 {
            continue;
        }
        match sig {
            libc::SIGHUP => reload(running, args),
            // reopen() logs the outcome itself, as nats-server words it.
            libc::SIGUSR1 => {
                let _ = natsu::logging::reopen();
            }
            libc::SIGUSR2 if !in_lame_duck => {
                in_lame_duck = true;
                let running = running.clone();
                // Lame duck mode takes minutes; the main thread keeps taking signals meanwhile
                // (a SIGINT still stops at once). When done, the server stops itself.
                std::thread::spawn(move || {
                    tracing::info!("Entering lame duck mode, stop accepting new clients");
                    running.lame_duck();
                    // SAFETY: kill on our own pid with a signal the main thread waits for.
                    unsafe { libc::kill(libc::getpid(), libc::SIGTERM) };
                });
            }
            libc::SIGUSR2 => {}
            _ => {
                let name = if sig == libc::SIGINT { "interrupt" } else { "terminated" };
                tracing::info!("Trapped \"{name}\" signal");
                tracing::info!("Initiating Shutdown...");
                if !running.stop(STOP_WAIT) {
                    tracing::warn!("Some clients were still being sent their data at shutdown");
                }
                tracing::info!("Server Exiting..");
                return ExitCode::SUCCESS;
            }
        }
    }
}

/// SIGHUP: read the config file again (the flags still override it) and apply it; a bad file
/// is refused with the reason and the running settings stay.
fn reload(running: &server::Running, args: &[OsString]) {
    if running.options().config_file.is_none() {
        tracing::error!("Failed to reload server configuration: can only reload config when a file is provided using -c or --config");
        return;
    }
    let result = match cli::parse(args.to_vec()) {
        Ok(Invocation::Run(opts, log, warnings)) => {
            for w in &warnings {
                tracing::warn!("{w}");
            }
            // The server's settings first (a bad TLS file refuses the reload), then logging.
            running.reload(*opts).and_then(|ignored| natsu::logging::reconfigure(&log).map(|()| ignored))
        }
        Ok(_) => Err("the command line no longer asks to run".to_string()),
        Err(e) => Err(e),
    };
    match result {
        Ok(ignored) => {
            for i in ignored {
                tracing::warn!("Reload ignores a change of {i}");
            }
            tracing::info!("Reloaded server configuration");
        }
        Err(e) => tracing::error!("Failed to reload server configuration: {e}"),
    }
}
