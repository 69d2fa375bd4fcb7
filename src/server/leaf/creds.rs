//! A `.creds` file, as `nsc` writes it and nats-server's leaf remotes read it: a user JWT
//! and an NKey seed, each between `-----BEGIN …-----` and `------END …------` lines. The
//! leaf sends the JWT in its CONNECT and proves it holds the seed by signing the hub's
//! nonce.

use base64::Engine;

/// The user JWT and the seed of a creds file's text; None when either block is missing.
pub fn parse(text: &str) -> Option<(String, String)> {
    let mut blocks = Vec::new();
    let mut lines = text.lines().map(str::trim);
    while let Some(line) = lines.next() {
        // A block opens with at least three dashes and BEGIN; its first non-empty line is
        // the content.
        if line.starts_with("---") && line.contains("BEGIN") {
            if let Some(content) = lines.by_ref().find(|l| !l.is_empty()) {
                blocks.push(content.to_string());
            }
        }
    }
    let mut it = blocks.into_iter();
    let jwt = it.next()?;
    let seed = it.next()?;
    Some((jwt, seed))
}

/// Read `path` and sign `nonce`: the JWT and the signature (base64, URL-safe without
/// padding), or nats-server's words for what is wrong.
pub fn sign(path: &str, nonce: &str) -> Result<(String, String), String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{path}: {e}"))?;
    let (jwt, seed) = parse(&text).ok_or_else(|| "Credentials file malformed".to_string())?;
    let kp = nkeys::KeyPair::from_seed(&seed).map_err(|_| "Credentials file has malformed seed".to_string())?;
    let sig = kp.sign(nonce.as_bytes()).map_err(|e| e.to_string())?;
    Ok((jwt, base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sig)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_creds_file_gives_its_jwt_and_a_signature_its_key_verifies() {
        let kp = nkeys::KeyPair::new_user();
        let seed = kp.seed().unwrap();
        let text = format!(
            "-----BEGIN NATS USER JWT-----\neyJhbGciOi.x.y\n------END NATS USER JWT------\n\n************************* IMPORTANT *************************\n\
NKEY Seed printed below can be used to sign and prove identity.\n\n-----BEGIN USER NKEY SEED-----\n{seed}\n------END USER NKEY SEED------\n"
        );
        let dir = std::env::temp_dir().join(format!("natsu-creds-{}", std::process::id()));
        std::fs::write(&dir, text).unwrap();
        let (jwt, sig) = sign(dir.to_str().unwrap(), "nonce1").unwrap();
        std::fs::remove_file(&dir).ok();
        assert_eq!(jwt, "eyJhbGciOi.x.y");
        let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(sig).unwrap();
        assert!(kp.verify(b"nonce1", &raw).is_ok());
        assert!(parse("-----BEGIN NATS USER JWT-----\nabc\n------END NATS USER JWT------\n").is_none());
    }
}
