//! Fuzz the protocol parser: any bytes, in both roles, must parse without panicking, and
//! parsing them split at an arbitrary point must give the same operations as parsing them
//! whole (the parser is incremental).
#![no_main]

use libfuzzer_sys::fuzz_target;
use natsu::protocol::parser::{Parser, Role};

fn run(role: Role, data: &[u8], split: usize) -> (Vec<String>, Option<String>) {
    let mut p = Parser::new(role, 4096, 64 * 1024);
    p.set_headers(true);
    let mut ops = Vec::new();
    let mut buf: Vec<u8> = data[..split].to_vec();
    for part in [&data[split..], &[][..]] {
        loop {
            match p.parse(&buf) {
                Ok(Some((op, used))) => {
                    assert!(used > 0 && used <= buf.len());
                    ops.push(format!("{op:?}"));
                    buf.drain(..used);
                }
                Ok(None) => break,
                Err(e) => return (ops, Some(e.to_string())),
            }
        }
        buf.extend_from_slice(part);
    }
    (ops, None)
}

fuzz_target!(|data: &[u8]| {
    if data.is_empty() {
        return;
    }
    let split = data[0] as usize % data.len();
    let data = &data[1..];
    let split = split.min(data.len());
    for role in [Role::Server, Role::Client] {
        let whole = run(role, data, data.len());
        let parts = run(role, data, split);
        assert_eq!(whole, parts);
    }
});
