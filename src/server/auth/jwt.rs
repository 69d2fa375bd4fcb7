//! NATS JWTs, as operator mode uses them: an operator signs accounts, an account (or one of
//! its signing keys) signs users, and a server that trusts the operator lets a user in who
//! presents its JWT and signs the connection's nonce.
//!
//! A JWT is `header.claims.signature`, each part unpadded URL-safe base64: the header says
//! `{"typ":"JWT","alg":"ed25519-nkey"}`, the claims are JSON with the issuer's public key in
//! `iss`, and the signature is the issuer's ed25519 signature of `header.claims` (version 2,
//! what `nsc` and the NATS libraries make today). Version 1 JWTs (signed over the claims
//! alone) are refused. The claims' NATS part (`nats`) is typed per kind below; fields natsu
//! does not act on (JetStream limits, tags, descriptions) are read and ignored as the
//! reference ignores them when JetStream is off.
//!
//! [`decode`] checks the form and the signature only: what a server trusts (operator keys,
//! an account's signing keys, times, revocations) is its caller's business.
//!
//! ```
//! use natsu::server::auth::jwt::{self, Claims, UserNats};
//! let account = nkeys::KeyPair::new_account();
//! let user = nkeys::KeyPair::new_user();
//! let mut claims = Claims::new(&user.public_key(), UserNats::default());
//! claims.name = "alice".into();
//! let token = jwt::encode(&claims, &account).unwrap();
//! let back: Claims<UserNats> = jwt::decode(&token).unwrap();
//! assert_eq!((back.iss.as_str(), back.sub.as_str(), back.name.as_str()), (account.public_key().as_str(), user.public_key().as_str(), "alice"));
//! assert!(jwt::decode::<UserNats>(&token.replace('.', "x")).is_err());
//! ```

use std::collections::BTreeMap;

use base64::Engine;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::nkey::RAW_URL;

/// "No limit" in a JWT's limits.
pub const NO_LIMIT: i64 = -1;

/// The claims every JWT carries, and its kind's NATS part.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
pub struct Claims<N> {
    /// An identifier (the reference makes it a hash of the claims).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub jti: String,
    /// Issued at (Unix seconds).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub iat: i64,
    /// The issuer's public key.
    #[serde(default)]
    pub iss: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// The subject's public key (the operator, account or user the JWT is about).
    #[serde(default)]
    pub sub: String,
    /// Expires at (Unix seconds; 0: never).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub exp: i64,
    /// Not valid before (Unix seconds; 0: always valid).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub nbf: i64,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub aud: String,
    pub nats: N,
}

fn is_zero(v: &i64) -> bool {
    *v == 0
}

impl<N: Kind> Claims<N> {
    /// Claims about `subject`, issued now (the issuer is set by [`encode`]).
    pub fn new(subject: &str, nats: N) -> Claims<N> {
        Claims { iat: now(), sub: subject.to_string(), nats, ..Claims::default() }
    }

    /// Why the claims are not valid at `now` (Unix seconds), in the reference's words; None:
    /// they are.
    pub fn time_invalid(&self, now: i64) -> Option<&'static str> {
        if self.exp > 0 && now > self.exp {
            Some("claim is expired")
        } else if self.nbf > 0 && self.nbf > now {
            Some("claim is not yet valid")
        } else {
            None
        }
    }
}

/// The current time in Unix seconds.
pub fn now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64)
}

/// A kind of JWT: its `nats.type`, and the key prefix its issuer must have.
pub trait Kind: DeserializeOwned + Serialize + Default {
    const TYPE: &'static str;
    /// Whether `key` may issue this kind (an operator key for accounts, an account key for
    /// users; operators sign themselves).
    fn issuer_ok(key: &str) -> bool;
    /// The `type` and `version` fields, to set before signing.
    fn generic(&mut self) -> &mut Generic;
}

/// `impl Kind` for a NATS part with a `generic` field: its type name and the key prefix of
/// its issuers.
macro_rules! kind {
    ($t:ty, $name:literal, $issuer:literal) => {
        impl Kind for $t {
            const TYPE: &'static str = $name;
            fn issuer_ok(key: &str) -> bool {
                key.starts_with($issuer)
            }
            fn generic(&mut self) -> &mut Generic {
                &mut self.generic
            }
        }
    };
}

/// The fields every kind's NATS part has.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
pub struct Generic {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    #[serde(rename = "type", default)]
    pub kind: String,
    #[serde(default)]
    pub version: u32,
}

/// An operator's NATS part.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
pub struct OperatorNats {
    /// Other keys that may sign accounts for this operator.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub signing_keys: Vec<String>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub account_server_url: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub operator_service_urls: Vec<String>,
    /// The system account's public key.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub system_account: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub assert_server_version: String,
    /// Only the signing keys may sign accounts, not the operator's own key.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub strict_signing_key_usage: bool,
    #[serde(flatten)]
    pub generic: Generic,
}

kind!(OperatorNats, "operator", 'O');

/// An account's NATS part.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
pub struct AccountNats {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub imports: Vec<JwtImport>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exports: Vec<JwtExport>,
    #[serde(default)]
    pub limits: AccountLimits,
    /// Keys that may sign users for this account, bare or with a scope (the permissions
    /// and limits every user they sign gets).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub signing_keys: Vec<SigningKey>,
    /// Users (or `*`: all) whose JWTs issued at or before the time are no longer honoured.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub revocations: BTreeMap<String, i64>,
    #[serde(default)]
    pub default_permissions: Permissions,
    /// Subject mappings (`mappings { }` in a config file).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub mappings: BTreeMap<String, Vec<WeightedMapping>>,
    #[serde(flatten)]
    pub generic: Generic,
}

kind!(AccountNats, "account", 'O');

impl AccountNats {
    /// An account's part with no limits (what `nsc add account` writes).
    pub fn unlimited() -> AccountNats {
        AccountNats { limits: AccountLimits::unlimited(), ..AccountNats::default() }
    }
}

/// One mapping destination.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
pub struct WeightedMapping {
    pub subject: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weight: Option<u8>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub cluster: String,
}

/// An account's limits. A missing limit is 0 (as in the reference: an account JWT without
/// `conn` lets no client connect); -1 ([`NO_LIMIT`]) is none.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
pub struct AccountLimits {
    #[serde(default)]
    pub subs: i64,
    #[serde(default)]
    pub data: i64,
    #[serde(default)]
    pub payload: i64,
    #[serde(default)]
    pub imports: i64,
    #[serde(default)]
    pub exports: i64,
    #[serde(default)]
    pub wildcards: bool,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub disallow_bearer: bool,
    #[serde(default)]
    pub conn: i64,
    #[serde(default)]
    pub leaf: i64,
}

impl AccountLimits {
    pub fn unlimited() -> AccountLimits {
        AccountLimits { subs: NO_LIMIT, data: NO_LIMIT, payload: NO_LIMIT, imports: NO_LIMIT, exports: NO_LIMIT, wildcards: true, disallow_bearer: false, conn: NO_LIMIT, leaf: NO_LIMIT }
    }
}

/// A stream or a service, in exports and imports.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ExportType {
    #[default]
    Stream,
    Service,
}

/// One export of an account JWT.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
pub struct JwtExport {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    pub subject: String,
    #[serde(rename = "type", default)]
    pub kind: ExportType,
    /// Importers need an activation token (a private export).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub token_req: bool,
    /// `Singleton` (default), `Stream` or `Chunked`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub response_type: String,
    #[serde(default, skip_serializing_if = "is_zero_u32")]
    pub account_token_position: u32,
}

fn is_zero_u32(v: &u32) -> bool {
    *v == 0
}

/// One import of an account JWT.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
pub struct JwtImport {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// The subject in the exporting account.
    pub subject: String,
    /// The exporting account's public key.
    pub account: String,
    /// An activation JWT from the exporter (private exports).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub token: String,
    /// Streams: a prefix; services: the exporter's subject (older JWTs).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub to: String,
    /// What the importer sees the subject as.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub local_subject: String,
    #[serde(rename = "type", default)]
    pub kind: ExportType,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub share: bool,
}

/// An account's signing key: bare, or scoped (the users it signs get the template's
/// permissions and limits, whatever their own JWT says).
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(untagged)]
pub enum SigningKey {
    Key(String),
    Scoped(Scope),
}

impl SigningKey {
    pub fn key(&self) -> &str {
        match self {
            SigningKey::Key(k) => k,
            SigningKey::Scoped(s) => &s.key,
        }
    }
}

/// A scoped signing key (`"kind": "user_scope"`).
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
pub struct Scope {
    pub kind: String,
    pub key: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub role: String,
    #[serde(default)]
    pub template: UserPermissionLimits,
}

/// Allow and deny lists.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
pub struct Permission {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allow: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub deny: Vec<String>,
}

impl Permission {
    fn is_empty(&self) -> bool {
        self.allow.is_empty() && self.deny.is_empty()
    }
}

/// Reply permissions: a client that received a request may publish `max` messages to its
/// reply subject within `ttl` (nanoseconds; 0: no time limit).
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
pub struct ResponsePermission {
    #[serde(default)]
    pub max: i64,
    #[serde(default)]
    pub ttl: i64,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
pub struct Permissions {
    // Always written, empty or not, as the reference's encoder writes them.
    #[serde(rename = "pub", default)]
    pub publish: Permission,
    #[serde(rename = "sub", default)]
    pub subscribe: Permission,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resp: Option<ResponsePermission>,
}

impl Permissions {
    pub fn is_empty(&self) -> bool {
        self.publish.is_empty() && self.subscribe.is_empty() && self.resp.is_none()
    }
}

/// What a user may do and how much: permissions, limits, how it may connect.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
pub struct UserPermissionLimits {
    #[serde(rename = "pub", default, skip_serializing_if = "Permission::is_empty")]
    pub publish: Permission,
    #[serde(rename = "sub", default, skip_serializing_if = "Permission::is_empty")]
    pub subscribe: Permission,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resp: Option<ResponsePermission>,
    /// Source networks (CIDRs) the user may connect from; empty: any.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub src: Vec<String>,
    /// Times of day the user may connect in.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub times: Vec<TimeRange>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub times_location: String,
    /// Limits; missing: 0, as in the reference (0 subscriptions: the user may not
    /// subscribe).
    #[serde(default)]
    pub subs: i64,
    #[serde(default)]
    pub data: i64,
    #[serde(default)]
    pub payload: i64,
    /// The JWT alone logs in: no nonce signature.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub bearer_token: bool,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed_connection_types: Vec<String>,
}

impl UserPermissionLimits {
    /// Everything allowed, no limits (what `nsc add user` writes).
    pub fn unlimited() -> UserPermissionLimits {
        UserPermissionLimits { subs: NO_LIMIT, data: NO_LIMIT, payload: NO_LIMIT, ..UserPermissionLimits::default() }
    }
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
pub struct TimeRange {
    #[serde(default)]
    pub start: String,
    #[serde(default)]
    pub end: String,
}

/// A user's NATS part.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
pub struct UserNats {
    #[serde(flatten)]
    pub limits: UserPermissionLimits,
    /// The account, when a signing key of it issued the JWT.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub issuer_account: String,
    #[serde(flatten)]
    pub generic: Generic,
}

impl UserNats {
    pub fn unlimited() -> UserNats {
        UserNats { limits: UserPermissionLimits::unlimited(), ..UserNats::default() }
    }
}

kind!(UserNats, "user", 'A');

/// An activation: the exporter's grant of a private export to one importer.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
pub struct ActivationNats {
    pub subject: String,
    #[serde(rename = "kind", default)]
    pub kind: ExportType,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub issuer_account: String,
    #[serde(flatten)]
    pub generic: Generic,
}

kind!(ActivationNats, "activation", 'A');

#[derive(Deserialize)]
struct Header {
    #[serde(default)]
    typ: String,
    #[serde(default)]
    alg: String,
}

/// Just enough of any claims to tell their kind and version.
#[derive(Deserialize)]
struct Peek {
    #[serde(rename = "type", default)]
    v1_type: Option<String>,
    #[serde(default)]
    nats: Option<PeekNats>,
}

#[derive(Deserialize)]
struct PeekNats {
    #[serde(rename = "type", default)]
    kind: String,
    #[serde(default)]
    version: u32,
}

/// Decode `token` as a JWT of kind `N` and check its issuer's signature. The errors are
/// the reference's where it has words for them.
pub fn decode<N: Kind>(token: &str) -> Result<Claims<N>, String> {
    let token = token.trim();
    let parts: Vec<&str> = token.split('.').collect();
    let [head, body64, sig] = parts[..] else { return Err("expected 3 chunks".into()) };
    let header: Header = serde_json::from_slice(&b64(head)?).map_err(|e| format!("invalid header: {e}"))?;
    if !header.typ.eq_ignore_ascii_case("JWT") {
        return Err(format!("not supported type {:?}", header.typ));
    }
    if !matches!(header.alg.to_ascii_lowercase().as_str(), "ed25519-nkey" | "ed25519") {
        return Err(format!("unexpected {:?} algorithm", header.alg));
    }
    let body = b64(body64)?;
    let peek: Peek = serde_json::from_slice(&body).map_err(|e| e.to_string())?;
    if peek.v1_type.is_some() {
        return Err("version 1 JWTs are not supported by natsu (re-issue them with a current nsc)".into());
    }
    let Some(p) = peek.nats else { return Err(format!("not a {} JWT: no nats claims", N::TYPE)) };
    if p.version > 2 {
        return Err("JWT was generated by a newer version ".into());
    }
    if p.version < 2 {
        return Err("version 1 JWTs are not supported by natsu (re-issue them with a current nsc)".into());
    }
    if p.kind != N::TYPE {
        return Err(format!("not a {} JWT: its type is {:?}", N::TYPE, p.kind));
    }
    let claims: Claims<N> = serde_json::from_slice(&body).map_err(|e| e.to_string())?;
    let sig = b64(sig)?;
    let signed = &token[..head.len() + 1 + body64.len()];
    let ok = nkeys::KeyPair::from_public_key(&claims.iss).is_ok_and(|k| k.verify(signed.as_bytes(), &sig).is_ok());
    if !ok {
        return Err("claim failed V2 signature verification".into());
    }
    if !N::issuer_ok(&claims.iss) {
        return Err(format!("unable to validate expected prefixes - issuer {} may not sign a {} JWT", claims.iss, N::TYPE));
    }
    Ok(claims)
}

fn b64(s: &str) -> Result<Vec<u8>, String> {
    RAW_URL.decode(s).map_err(|e| format!("illegal base64 data: {e}"))
}

/// Sign `claims` with `issuer` (its `iss` set from the key, `nats.type` and `version`
/// filled in): what `nsc` makes. For tests and tools.
pub fn encode<N: Kind + Clone>(claims: &Claims<N>, issuer: &nkeys::KeyPair) -> Result<String, String> {
    let mut c = claims.clone();
    c.iss = issuer.public_key();
    let g = c.nats.generic();
    g.kind = N::TYPE.to_string();
    g.version = 2;
    let head = RAW_URL.encode(br#"{"typ":"JWT","alg":"ed25519-nkey"}"#);
    let body = RAW_URL.encode(serde_json::to_vec(&c).map_err(|e| e.to_string())?);
    let signed = format!("{head}.{body}");
    let sig = issuer.sign(signed.as_bytes()).map_err(|e| e.to_string())?;
    Ok(format!("{signed}.{}", RAW_URL.encode(sig)))
}

/// A `.creds` file's text: the user JWT and its seed, in the framing `nsc` writes and every
/// client library reads.
pub fn creds(jwt: &str, seed: &str) -> String {
    format!(
        "-----BEGIN NATS USER JWT-----\n{jwt}\n------END NATS USER JWT------\n\n\
         ************************* IMPORTANT *************************\n\
         NKEY Seed printed below can be used to sign and prove identity.\n\
         NKEYs are sensitive and should be treated as secrets.\n\n\
         -----BEGIN USER NKEY SEED-----\n{seed}\n------END USER NKEY SEED------\n\n\
         *************************************************************\n"
    )
}

pub use crate::client::parse_credentials as parse_creds;
