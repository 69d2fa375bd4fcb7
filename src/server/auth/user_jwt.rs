//! Operator mode's login: a client presents a user JWT (`jwt` in CONNECT) and its
//! signature of the INFO nonce (`sig`), as `.creds` files make every client library do.
//!
//! The chain is checked as nats-server 2.9 checks it: the user JWT is well formed, signed
//! and within its times; its account (the issuer, or `issuer_account` when an account's
//! signing key signed it) is a preloaded account signed by a trusted operator key, not
//! expired; the signer is the account or one of its signing keys (a scoped key's template
//! then replaces the user's permissions and limits); the nonce signature is the user's
//! (unless the JWT is a bearer token the account allows); the user is not revoked, and may
//! connect from its address and over this kind of connection. What the user may do comes
//! from its claims (or the account's default permissions), response permissions included,
//! with its limits, and its connect-time ranges ([`times`](super::times)).

use std::net::IpAddr;

use super::jwt::{self, Claims, UserNats, UserPermissionLimits, NO_LIMIT};
use super::{nkey, ClientLimits, ClientPerms, ConnType, Identity, Presented};
use crate::server::options::{Permissions, ResponsePermission, SubjectPermission, Trust};

/// Who the user JWT says the client is, or why it may not log in (for the debug log).
pub(super) fn check(trust: &Trust, p: &Presented<'_>) -> Result<Identity, String> {
    let c = p.connect;
    let token = c.jwt.as_deref().filter(|t| !t.is_empty()).ok_or("Authentication requires a user JWT")?;
    let user: Claims<UserNats> = jwt::decode(token).map_err(|e| format!("User JWT not valid: {e}"))?;
    let now = jwt::now();
    if let Some(why) = user.time_invalid(now) {
        return Err(format!("User JWT no longer valid: {why}"));
    }
    let u = &user.nats;
    if !u.issuer_account.is_empty() && !u.issuer_account.starts_with('A') {
        return Err("User JWT not valid: issuer_account is not an account key".into());
    }
    let types = connection_types(&u.limits.allowed_connection_types)?;
    if let Some(types) = types {
        if !types.contains(&p.kind) {
            return Err("Connection type not allowed".into());
        }
    }
    let account_key = if u.issuer_account.is_empty() { &user.iss } else { &u.issuer_account };
    if !trust.pinned.is_empty() && !trust.pinned.contains(account_key) {
        return Err(format!("Account {account_key} not listed as operator pinned account"));
    }
    let account = trust.accounts.get(account_key).ok_or_else(|| format!("Account JWT lookup error: no account {account_key}"))?;
    if let Some(why) = &account.invalid {
        return Err(format!("Account JWT lookup error: account validation failed: {why}"));
    }
    let acc = &account.claims;
    if !trust.keys.contains(&acc.iss) {
        return Err("Account JWT not signed by trusted operator".into());
    }
    // The signer: the account itself (unless the operator is strict), or a signing key.
    let limits: &UserPermissionLimits = if user.iss == acc.sub && !trust.strict {
        &u.limits
    } else {
        let key = acc.nats.signing_keys.iter().find(|k| k.key() == user.iss).ok_or("User JWT issuer is not known")?;
        match key {
            jwt::SigningKey::Key(_) => &u.limits,
            jwt::SigningKey::Scoped(scope) => {
                // A scoped key's users carry no permissions or limits of their own.
                if u.limits != UserPermissionLimits::default() {
                    return Err("User JWT is not valid: scoped users require no permissions or limits set".into());
                }
                &scope.template
            }
        }
    };
    if acc.exp > 0 && now > acc.exp {
        return Err("Account JWT has expired".into());
    }
    if limits.bearer_token && acc.nats.limits.disallow_bearer {
        return Err("Account does not allow bearer token".into());
    }
    if !limits.bearer_token {
        let sig = c.sig.as_deref().filter(|s| !s.is_empty()).ok_or("Signature missing")?;
        let nonce = p.nonce.ok_or("Signature not verified")?;
        if !nkey::verify(&user.sub, nonce, sig) {
            return Err("Signature not verified".into());
        }
    }
    if revoked(&acc.nats.revocations, &user.sub, user.iat) {
        return Err("User authentication revoked".into());
    }
    if !source_allowed(&limits.src, p.ip) {
        return Err(format!("Bad src Ip {:?}", p.ip));
    }
    // Inside a connect-time range, the connection is closed when it ends.
    let range_ends = match limits.times.is_empty() {
        true => None,
        false => Some(super::times::allowed_until(&limits.times, &limits.times_location, now)?),
    };
    let mut perms = permissions(limits);
    if perms.is_none() && !acc.nats.default_permissions.is_empty() {
        let d = &acc.nats.default_permissions;
        perms = permissions(&UserPermissionLimits { publish: d.publish.clone(), subscribe: d.subscribe.clone(), resp: d.resp.clone(), ..UserPermissionLimits::default() });
    }
    let cap = |user: i64, account: i64| -> Option<usize> {
        [user, account].into_iter().filter(|v| *v != NO_LIMIT).map(|v| v.max(0) as usize).min()
    };
    let al = &acc.nats.limits;
    let limits = ClientLimits {
        subs: cap(limits.subs, al.subs),
        payload: cap(limits.payload, al.payload),
        expires: [(user.exp > 0).then_some(user.exp), range_ends].into_iter().flatten().min(),
        account_conns: match p.kind {
            ConnType::Leaf => cap(al.leaf, NO_LIMIT),
            _ => cap(al.conn, NO_LIMIT),
        },
    };
    tracing::debug!(user = %user.sub, name = %user.name, account = %acc.sub, account_name = %acc.name, signer = %user.iss, "Authenticated JWT");
    Ok(Identity { user: Some(user.sub.clone()), perms: perms.map(|p| ClientPerms::new(&p)), account: Some(acc.sub.clone()), limits })
}

/// nats-server's revocation rule: revoked when the user (or `*`, everyone) was revoked at
/// or after the JWT was issued.
fn revoked(revocations: &std::collections::BTreeMap<String, i64>, user: &str, issued: i64) -> bool {
    [user, "*"].iter().any(|k| revocations.get(*k).is_some_and(|t| *t >= issued))
}

/// Permissions from a JWT's allow and deny lists; None when it has none (everything
/// allowed).
fn permissions(l: &UserPermissionLimits) -> Option<Permissions> {
    let side = |p: &jwt::Permission| (!(p.allow.is_empty() && p.deny.is_empty())).then(|| SubjectPermission { allow: p.allow.clone(), deny: p.deny.clone() });
    let (publish, subscribe) = (side(&l.publish), side(&l.subscribe));
    let responses = l.resp.as_ref().map(|r| ResponsePermission::from_limits(r.max, r.ttl));
    (publish.is_some() || subscribe.is_some() || responses.is_some()).then_some(Permissions { publish, subscribe, responses })
}

/// The connection kinds a JWT allows; None: any. An unknown kind alone refuses the login;
/// beside known ones it is ignored (as nats-server).
fn connection_types(types: &[String]) -> Result<Option<Vec<ConnType>>, String> {
    if types.is_empty() {
        return Ok(None);
    }
    let known: Vec<ConnType> = types
        .iter()
        .filter_map(|t| match t.to_ascii_uppercase().as_str() {
            "STANDARD" => Some(ConnType::Standard),
            "WEBSOCKET" => Some(ConnType::WebSocket),
            "LEAFNODE" => Some(ConnType::Leaf),
            _ => None,
        })
        .collect();
    if known.is_empty() {
        return Err(format!("unknown connection types {types:?}"));
    }
    Ok(Some(known))
}

/// Whether `ip` is in one of the CIDRs (none: anywhere).
fn source_allowed(cidrs: &[String], ip: Option<IpAddr>) -> bool {
    if cidrs.is_empty() {
        return true;
    }
    let Some(ip) = ip else { return false };
    cidrs.iter().flat_map(|s| s.split(',')).any(|cidr| in_cidr(cidr.trim(), ip))
}

fn in_cidr(cidr: &str, ip: IpAddr) -> bool {
    let (net, bits) = match cidr.split_once('/') {
        Some((n, b)) => (n, b.parse::<u32>().ok()),
        None => (cidr, None),
    };
    let Ok(net) = net.parse::<IpAddr>() else { return false };
    let ip = match (net, ip) {
        (IpAddr::V4(_), IpAddr::V6(v6)) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        _ => ip,
    };
    match (net, ip) {
        (IpAddr::V4(n), IpAddr::V4(a)) => {
            let bits = bits.unwrap_or(32).min(32);
            let mask = if bits == 0 { 0 } else { u32::MAX << (32 - bits) };
            u32::from(n) & mask == u32::from(a) & mask
        }
        (IpAddr::V6(n), IpAddr::V6(a)) => {
            let bits = bits.unwrap_or(128).min(128);
            let mask = if bits == 0 { 0 } else { u128::MAX << (128 - bits) };
            u128::from(n) & mask == u128::from(a) & mask
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidrs_and_revocations() {
        let ip = |s: &str| Some(s.parse::<IpAddr>().unwrap());
        assert!(source_allowed(&[], None));
        assert!(source_allowed(&["127.0.0.0/8".into()], ip("127.0.0.1")));
        assert!(source_allowed(&["10.0.0.1/32, 127.0.0.1/32".into()], ip("127.0.0.1")));
        assert!(!source_allowed(&["10.0.0.0/8".into()], ip("127.0.0.1")));
        assert!(source_allowed(&["127.0.0.1/32".into()], ip("::ffff:127.0.0.1")));
        assert!(source_allowed(&["::1/128".into()], ip("::1")));
        assert!(!source_allowed(&["127.0.0.1/32".into()], None));
        let r: std::collections::BTreeMap<String, i64> = [("U1".to_string(), 100)].into();
        assert!(revoked(&r, "U1", 100) && revoked(&r, "U1", 50) && !revoked(&r, "U1", 101) && !revoked(&r, "U2", 1));
        let all: std::collections::BTreeMap<String, i64> = [("*".to_string(), 100)].into();
        assert!(revoked(&all, "U2", 99) && !revoked(&all, "U2", 101));
    }
}
