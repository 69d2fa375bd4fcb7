//! `natsu-gateway`: REST and WebSocket in front of NATS request/reply services.
//!
//! ```text
//! natsu-gateway -c gateway.conf          # run with a config file
//! natsu-gateway -t -c gateway.conf       # check the file and exit
//! natsu-gateway --listen 127.0.0.1:8080 --server nats://127.0.0.1:4222 --http_port 8081
//! ```
//!
//! Flags override the file; `--server` may be given several times (tried in that order).

use std::process::ExitCode;

use clap::{Arg, ArgAction, Command};
use natsu::config::cli::LogOptions;
use natsu::gateway::{config, Gateway};

fn command() -> Command {
    Command::new("natsu-gateway")
        .about("HTTP and WebSocket gateway to NATS request/reply services (nats-proxy's mapping)")
        .version(env!("CARGO_PKG_VERSION"))
        .arg(Arg::new("config").short('c').long("config").value_name("FILE").help("Configuration file"))
        .arg(Arg::new("test").short('t').action(ArgAction::SetTrue).help("Check the configuration file and exit"))
        .arg(Arg::new("listen").long("listen").value_name("ADDR").help("HTTP address, host:port (default 127.0.0.1:8080)"))
        .arg(Arg::new("server").long("server").value_name("URL").action(ArgAction::Append).help("NATS server, repeatable; the first that works is used"))
        .arg(Arg::new("http_port").long("http_port").value_name("PORT").value_parser(clap::value_parser!(u16).range(1..)).help("Port for /healthz and /metrics"))
        .arg(Arg::new("cores").long("cores").value_name("N").value_parser(clap::value_parser!(u16).range(1..=1024)).help("Executors (default: every core)"))
        .arg(Arg::new("debug").short('D').long("debug").action(ArgAction::SetTrue).help("Debug logging"))
}

fn main() -> ExitCode {
    let m = match command().try_get_matches() {
        Ok(m) => m,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { 1 } else { 0 });
        }
    };
    let mut cfg = match m.get_one::<String>("config") {
        Some(path) => match config::load(path.as_ref()) {
            Ok(c) => c,
            Err(e) => {
                eprintln!("natsu-gateway: {e}");
                return ExitCode::from(1);
            }
        },
        None if m.get_flag("test") => {
            eprintln!("natsu-gateway: -t needs a configuration file (-c FILE)");
            return ExitCode::from(1);
        }
        None => config::Config::default(),
    };
    if let Some(l) = m.get_one::<String>("listen") {
        match config::parse_listen(l) {
            Ok(a) => cfg.listen = a,
            Err(e) => {
                eprintln!("natsu-gateway: {e}");
                return ExitCode::from(1);
            }
        }
    }
    if let Some(servers) = m.get_many::<String>("server") {
        cfg.nats.servers = servers.cloned().collect();
    }
    if let Some(p) = m.get_one::<u16>("http_port") {
        cfg.http_port = Some(*p);
    }
    if let Some(n) = m.get_one::<u16>("cores") {
        cfg.cores = *n as usize;
    }
    if m.get_flag("test") {
        println!("natsu-gateway: configuration file {} test is successful", m.get_one::<String>("config").map_or("", |s| s));
        return ExitCode::SUCCESS;
    }
    let log = LogOptions { debug: m.get_flag("debug"), logtime: true, ..LogOptions::default() };
    if let Err(e) = natsu::logging::init(&log) {
        eprintln!("natsu-gateway: {e}");
        return ExitCode::from(1);
    }
    match Gateway::new(cfg).run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("natsu-gateway: {e}");
            ExitCode::from(1)
        }
    }
}
