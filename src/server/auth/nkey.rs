//! NKey users: the server sends a random `nonce` in INFO, the client signs it with its
//! seed (ed25519) and sends its public key (`nkey`) and the signature (`sig`) in CONNECT.
//! The seed never leaves the client; a nonce is never reused, so a recorded CONNECT cannot
//! be replayed on another connection.

use base64::alphabet;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::DecodePaddingMode;
use base64::Engine;

/// Random bytes in a nonce, as nats-server 2.9 (`nonceRawLen`): its INFO carries them as 15
/// characters of unpadded URL-safe base64.
const NONCE_RAW_LEN: usize = 11;

/// Go's `base64.RawURLEncoding`: URL alphabet, no padding; like Go's decoder it does not
/// insist that the unused low bits of the last character are zero.
pub(super) const RAW_URL: GeneralPurpose = GeneralPurpose::new(
    &alphabet::URL_SAFE,
    GeneralPurposeConfig::new()
        .with_encode_padding(false)
        .with_decode_padding_mode(DecodePaddingMode::RequireNone)
        .with_decode_allow_trailing_bits(true),
);

/// Go's `base64.StdEncoding`: standard alphabet, padding required.
const STD: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new()
        .with_decode_padding_mode(DecodePaddingMode::RequireCanonical)
        .with_decode_allow_trailing_bits(true),
);

/// A fresh nonce for one connection's INFO; None only if the system has no randomness to
/// give (the connection then cannot log in with an nkey, and is told so by a refusal).
///
/// ```
/// let n = natsu::server::auth::new_nonce().expect("randomness");
/// assert_eq!(n.len(), 15);
/// assert_ne!(n, natsu::server::auth::new_nonce().unwrap());
/// ```
pub fn new_nonce() -> Option<String> {
    use ring::rand::SecureRandom;
    let mut raw = [0u8; NONCE_RAW_LEN];
    ring::rand::SystemRandom::new().fill(&mut raw).ok()?;
    Some(RAW_URL.encode(raw))
}

/// Decode a CONNECT `sig` as nats-server does: unpadded URL-safe base64, else padded
/// standard base64 (what some older clients send). Padded URL-safe and unpadded standard
/// base64 are refused there too.
fn decode_sig(sig: &str) -> Option<Vec<u8>> {
    RAW_URL.decode(sig).or_else(|_| STD.decode(sig)).ok()
}

/// Whether `sig` is `nkey`'s signature of `nonce` (the nonce's text, as sent in INFO).
/// Anything malformed (a key that is not a public key, a signature of the wrong length or
/// encoding) is simply not a valid signature.
pub fn verify(nkey: &str, nonce: &str, sig: &str) -> bool {
    let Some(sig) = decode_sig(sig) else { return false };
    let Ok(key) = nkeys::KeyPair::from_public_key(nkey) else { return false };
    key.verify(nonce.as_bytes(), &sig).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nonce_shape() {
        let n = new_nonce().unwrap();
        assert_eq!(n.len(), 15, "nats-server 2.9's nonceLen");
        assert!(n.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'), "{n}");
        assert_eq!(RAW_URL.decode(&n).unwrap().len(), NONCE_RAW_LEN);
    }

    #[test]
    fn signatures_in_every_encoding_the_reference_takes() {
        let user = nkeys::KeyPair::new_user();
        let other = nkeys::KeyPair::new_user();
        let nonce = new_nonce().unwrap();
        let raw = user.sign(nonce.as_bytes()).unwrap();
        let pk = user.public_key();
        let url_nopad = RAW_URL.encode(&raw);
        assert!(verify(&pk, &nonce, &url_nopad));
        assert!(verify(&pk, &nonce, &STD.encode(&raw)));
        // A 64-byte signature leaves 4 unused bits in its last character: Go ignores them.
        let mut sloppy = url_nopad.clone().into_bytes();
        let last = sloppy.last_mut().unwrap();
        let i = alphabet::URL_SAFE.as_str().find(*last as char).unwrap();
        *last = alphabet::URL_SAFE.as_str().as_bytes()[i | 1];
        assert!(verify(&pk, &nonce, std::str::from_utf8(&sloppy).unwrap()));
        // Refused: padded URL-safe (nats-server 2.9 takes it only when it also reads as
        // standard base64), unpadded standard, another key's signature, another nonce, a
        // seed or an unknown string as the key, an empty or garbage signature.
        let padded_url = base64::engine::general_purpose::URL_SAFE.encode(&raw);
        if padded_url.contains(['-', '_']) {
            assert!(!verify(&pk, &nonce, &padded_url));
        }
        let std_nopad = base64::engine::general_purpose::STANDARD_NO_PAD.encode(&raw);
        if std_nopad.contains(['+', '/']) {
            assert!(!verify(&pk, &nonce, &std_nopad));
        }
        assert!(!verify(&pk, &nonce, &RAW_URL.encode(other.sign(nonce.as_bytes()).unwrap())));
        assert!(!verify(&pk, "another-nonce!!", &url_nopad));
        assert!(!verify(&user.seed().unwrap(), &nonce, &url_nopad));
        assert!(!verify("UNOTAKEY", &nonce, &url_nopad));
        assert!(!verify(&pk, &nonce, ""));
        assert!(!verify(&pk, &nonce, "!!!"));
        assert!(!verify(&pk, &nonce, &RAW_URL.encode(&raw[..63])));
    }
}
