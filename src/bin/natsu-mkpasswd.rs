//! `natsu-mkpasswd`: make a password and its bcrypt hash for natsu's (and nats-server's)
//! `--pass`, `password:` and `token:` settings, as nats-server's `mkpasswd` tool does.
//!
//! ```text
//! $ natsu-mkpasswd
//! pass: 3bXw#k9QeP!m2ZrT@8vLcN
//! bcrypt hash: $2a$11$...
//! $ echo 's3cret' | natsu-mkpasswd -p
//! bcrypt hash: $2a$11$...
//! ```
//!
//! The hash is written with the `$2a$` prefix, as Go's bcrypt writes it: nats-server 2.9
//! knows a bcrypt password by a `$2a$`/`$2b$`/... prefix, but older releases knew it
//! only by `$2a$` and compared anything else as plain text.

use std::io::{BufRead, IsTerminal, Write};
use std::process::ExitCode;

use clap::{Arg, ArgAction, Command};
use ring::rand::{SecureRandom, SystemRandom};

/// bcrypt's cost range (the bcrypt crate keeps its bounds private).
const MIN_COST: u32 = 4;
const MAX_COST: u32 = 31;
/// Length of a generated password: 22 characters of a 72-character alphabet is about 135
/// bits, as nats-server's tool makes them.
const PASSWORD_LEN: usize = 22;
/// nats-server's tool's default cost.
const DEFAULT_COST: u32 = 11;
/// The alphabet nats-server's tool draws from: letters, digits and symbols that need no
/// quoting in a config file string.
const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789!@$#%^&*()";

fn command() -> Command {
    Command::new("natsu-mkpasswd")
        .about("Make a password and its bcrypt hash for natsu and nats-server")
        .override_usage("natsu-mkpasswd [-p] [-c COST]")
        .disable_help_flag(true)
        .arg(
            Arg::new("password")
                .short('p')
                .long("password")
                .action(ArgAction::SetTrue)
                .help("Hash a password read from the terminal without echo (asked twice), or one line of standard input when it is not a terminal"),
        )
        .arg(
            Arg::new("cost")
                .short('c')
                .long("cost")
                .value_name("COST")
                .num_args(1)
                .allow_negative_numbers(true)
                .help("The bcrypt cost, from 4 to 31 (default: 11)"),
        )
        .arg(Arg::new("help").short('h').long("help").action(ArgAction::SetTrue).help("Show this message"))
}

/// A random password: unbiased draws from [`ALPHABET`] (bytes at or past the largest
/// multiple of its length are thrown back).
fn gen_password() -> Result<String, String> {
    let rng = SystemRandom::new();
    let limit = (256 / ALPHABET.len() * ALPHABET.len()) as u8;
    let mut out = String::with_capacity(PASSWORD_LEN);
    let mut buf = [0u8; 64];
    while out.len() < PASSWORD_LEN {
        rng.fill(&mut buf).map_err(|_| "no random bytes from the system".to_string())?;
        for &b in buf.iter().filter(|&&b| b < limit) {
            if out.len() == PASSWORD_LEN {
                break;
            }
            out.push(ALPHABET[usize::from(b) % ALPHABET.len()] as char);
        }
    }
    Ok(out)
}

/// Read one line from the terminal with echo off, the prompt and the newline on the
/// terminal. A hand-written termios toggle rather than a crate: the current rpassword needs a
/// newer Rust than natsu's minimum, and this is the only place that needs it.
fn prompt_no_echo(prompt: &str) -> std::io::Result<String> {
    let tty = std::fs::OpenOptions::new().read(true).write(true).open("/dev/tty")?;
    let fd = std::os::fd::AsRawFd::as_raw_fd(&tty);
    (&tty).write_all(prompt.as_bytes())?;
    // SAFETY: termios is plain data that tcgetattr fills in; fd is an open terminal.
    let saved = unsafe {
        let mut t: libc::termios = std::mem::zeroed();
        if libc::tcgetattr(fd, &mut t) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        t
    };
    let mut quiet = saved;
    quiet.c_lflag &= !(libc::ECHO | libc::ECHONL);
    quiet.c_lflag |= libc::ICANON;
    // SAFETY: quiet is a valid termios copied from the terminal's own.
    if unsafe { libc::tcsetattr(fd, libc::TCSANOW, &quiet) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let mut line = String::new();
    let read = std::io::BufReader::new(&tty).read_line(&mut line);
    // SAFETY: restores the settings read above on the same descriptor.
    unsafe { libc::tcsetattr(fd, libc::TCSANOW, &saved) };
    (&tty).write_all(b"\n")?;
    read?;
    Ok(line.trim_end_matches(['\n', '\r']).to_string())
}

/// The password for `-p`: from the terminal without echo, asked twice as the original asks;
/// from a pipe, the first line (a script has nobody to confirm it).
fn read_password() -> Result<String, String> {
    let password = if std::io::stdin().is_terminal() {
        let first = prompt_no_echo("Enter Password: ").map_err(|e| format!("cannot read the password: {e}"))?;
        let second = prompt_no_echo("Reenter Password: ").map_err(|e| format!("cannot read the password: {e}"))?;
        if first != second {
            return Err("Error, passwords do not match".into());
        }
        first
    } else {
        let mut line = String::new();
        std::io::stdin().lock().read_line(&mut line).map_err(|e| format!("cannot read the password: {e}"))?;
        line.trim_end_matches(['\n', '\r']).to_string()
    };
    if password.is_empty() {
        return Err("Error, the password is empty".into());
    }
    Ok(password)
}

fn run() -> Result<(), String> {
    let m = command().try_get_matches().map_err(|e| e.to_string().trim_end().to_string())?;
    if m.get_flag("help") {
        print!("{}", command().render_help());
        return Ok(());
    }
    let cost = match m.get_one::<String>("cost") {
        None => DEFAULT_COST,
        Some(c) => match c.parse::<u32>() {
            Ok(n) if (MIN_COST..=MAX_COST).contains(&n) => n,
            _ => return Err(format!("invalid cost {c:?}: the bcrypt cost is a number from {} to {}", MIN_COST, MAX_COST)),
        },
    };
    let mut out = std::io::stdout().lock();
    let password = if m.get_flag("password") {
        read_password()?
    } else {
        let p = gen_password()?;
        // Shown before hashing, as the original does: a high cost takes a while.
        writeln!(out, "pass: {p}").and_then(|()| out.flush()).map_err(|e| e.to_string())?;
        p
    };
    let hash = bcrypt::hash_with_result(&password, cost).map_err(|e| format!("Error producing bcrypt hash: {e}"))?;
    writeln!(out, "bcrypt hash: {}", hash.format_for_version(bcrypt::Version::TwoA)).map_err(|e| e.to_string())
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("natsu-mkpasswd: {e}");
            ExitCode::from(1)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_passwords_use_the_alphabet() {
        let a = gen_password().unwrap();
        let b = gen_password().unwrap();
        assert_eq!(a.len(), PASSWORD_LEN);
        assert!(a.bytes().all(|c| ALPHABET.contains(&c)), "{a}");
        assert_ne!(a, b);
    }
}
