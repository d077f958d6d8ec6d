//! Signed viewer tokens: a stream (a path prefix) can require each request to carry a token
//! that the platform's web backend minted for it, so links cannot be shared past their
//! expiry (or, optionally, used from another address).
//!
//! A token is `EXPIRY~SIGNATURE`: `EXPIRY` in Unix seconds, `SIGNATURE` the lowercase hex
//! HMAC-SHA256, under one of the rule's secrets, of `PREFIX \n EXPIRY \n CLIENT_IP` (the IP
//! empty unless the rule binds tokens to the client's address). It travels in a query
//! parameter or a cookie, and never enters the cache key. Secrets are a list so they can
//! rotate: the first mints, all verify.

use std::net::IpAddr;

use ring::hmac;

/// One protected path prefix.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenRule {
    /// Requests whose path starts with this need a token (`/live/premium/`).
    pub prefix: String,
    /// HMAC secrets, at least 16 characters each; the first signs, all verify.
    pub secrets: Vec<String>,
    /// Bind tokens to the client's IP address.
    #[serde(default)]
    pub bind_client_ip: bool,
    /// Query parameter carrying the token.
    #[serde(default = "default_param")]
    pub param: String,
    /// Cookie carrying the token (when the query has none).
    #[serde(default = "default_cookie")]
    pub cookie: String,
}

fn default_param() -> String {
    "token".into()
}
fn default_cookie() -> String {
    "edge_token".into()
}

/// Why a token was refused; the metrics label and the 403's reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reject {
    /// No token in the query or the cookie.
    Missing,
    /// Not `EXPIRY~HEX`.
    Malformed,
    /// Past its expiry.
    Expired,
    /// No secret signs it (tampered, another prefix or address, or a retired secret).
    BadSignature,
}

impl Reject {
    /// The metrics label.
    pub fn as_str(self) -> &'static str {
        match self {
            Reject::Missing => "missing",
            Reject::Malformed => "malformed",
            Reject::Expired => "expired",
            Reject::BadSignature => "bad_signature",
        }
    }
}

fn message(prefix: &str, expiry: u64, ip: Option<IpAddr>) -> String {
    let ip = ip.map(|i| i.to_string()).unwrap_or_default();
    format!("{prefix}\n{expiry}\n{ip}")
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) || s.len() > 128 {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

/// A token for `prefix`, valid until `expiry` (Unix seconds), for client `ip` when the rule
/// binds tokens to addresses: what a web backend computes (see the README for the recipe).
pub fn mint(secret: &str, prefix: &str, expiry: u64, ip: Option<IpAddr>) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret.as_bytes());
    let tag = hmac::sign(&key, message(prefix, expiry, ip).as_bytes());
    format!("{expiry}~{}", hex(tag.as_ref()))
}

impl TokenRule {
    /// Whether this rule covers `path`.
    pub fn covers(&self, path: &str) -> bool {
        path.starts_with(&self.prefix)
    }

    /// Checks `token` (if any) at Unix time `now` for a client at `ip`.
    pub fn verify(&self, token: Option<&str>, now: u64, ip: IpAddr) -> Result<(), Reject> {
        let token = token.ok_or(Reject::Missing)?;
        let (exp, sig) = token.split_once('~').ok_or(Reject::Malformed)?;
        let expiry: u64 = exp.parse().map_err(|_| Reject::Malformed)?;
        let sig = unhex(sig).ok_or(Reject::Malformed)?;
        if now > expiry {
            return Err(Reject::Expired);
        }
        let msg = message(&self.prefix, expiry, self.bind_client_ip.then_some(ip));
        // ring's verify compares in constant time.
        let ok = self.secrets.iter().any(|s| {
            let key = hmac::Key::new(hmac::HMAC_SHA256, s.as_bytes());
            hmac::verify(&key, msg.as_bytes(), &sig).is_ok()
        });
        if ok {
            Ok(())
        } else {
            Err(Reject::BadSignature)
        }
    }

    /// The token a request carries: the query parameter, else the cookie.
    pub fn token_of<'a>(&self, query: Option<&'a str>, cookies: &'a [&'a str]) -> Option<&'a str> {
        let from_query = query.and_then(|q| {
            q.split('&')
                .filter_map(|kv| kv.split_once('='))
                .find(|(k, _)| *k == self.param)
                .map(|(_, v)| v)
        });
        from_query.or_else(|| {
            cookies
                .iter()
                .flat_map(|c| c.split(';'))
                .filter_map(|kv| kv.trim().split_once('='))
                .find(|(k, _)| *k == self.cookie)
                .map(|(_, v)| v)
        })
    }
}

/// The rule covering `path`: the longest matching prefix.
pub fn rule_for<'r>(rules: &'r [TokenRule], path: &str) -> Option<&'r TokenRule> {
    rules
        .iter()
        .filter(|r| r.covers(path))
        .max_by_key(|r| r.prefix.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn rule(bind: bool) -> TokenRule {
        TokenRule {
            prefix: "/live/premium/".into(),
            secrets: vec![
                "new-secret-0123456789".into(),
                "old-secret-0123456789".into(),
            ],
            bind_client_ip: bind,
            param: default_param(),
            cookie: default_cookie(),
        }
    }

    const IP: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(203, 0, 113, 7));
    const OTHER: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(203, 0, 113, 8));

    #[test]
    fn minted_tokens_verify_until_they_expire() {
        let r = rule(false);
        let t = mint("new-secret-0123456789", "/live/premium/", 1000, None);
        assert_eq!(r.verify(Some(&t), 999, IP), Ok(()));
        assert_eq!(
            r.verify(Some(&t), 1000, OTHER),
            Ok(()),
            "not bound to an address"
        );
        assert_eq!(r.verify(Some(&t), 1001, IP), Err(Reject::Expired));
        let old = mint("old-secret-0123456789", "/live/premium/", 1000, None);
        assert_eq!(
            r.verify(Some(&old), 999, IP),
            Ok(()),
            "rotation: old secrets verify"
        );
        let retired = mint("gone-secret-0123456789", "/live/premium/", 1000, None);
        assert_eq!(r.verify(Some(&retired), 999, IP), Err(Reject::BadSignature));
        let other_prefix = mint("new-secret-0123456789", "/live/free/", 1000, None);
        assert_eq!(
            r.verify(Some(&other_prefix), 999, IP),
            Err(Reject::BadSignature)
        );
        let extended = t.replacen("1000", "9000", 1);
        assert_eq!(
            r.verify(Some(&extended), 999, IP),
            Err(Reject::BadSignature)
        );
        assert_eq!(r.verify(None, 999, IP), Err(Reject::Missing));
        for bad in ["", "1000", "x~ab", "1000~zz", "1000~abc"] {
            assert_eq!(
                r.verify(Some(bad), 999, IP),
                Err(Reject::Malformed),
                "{bad}"
            );
        }
    }

    #[test]
    fn bound_tokens_only_work_from_their_address() {
        let r = rule(true);
        let t = mint("new-secret-0123456789", "/live/premium/", 1000, Some(IP));
        assert_eq!(r.verify(Some(&t), 999, IP), Ok(()));
        assert_eq!(r.verify(Some(&t), 999, OTHER), Err(Reject::BadSignature));
    }

    #[test]
    fn token_from_query_then_cookie_and_the_longest_rule_wins() {
        let r = rule(false);
        assert_eq!(r.token_of(Some("a=1&token=5~ab"), &[]), Some("5~ab"));
        assert_eq!(r.token_of(None, &["x=1; edge_token=7~cd"]), Some("7~cd"));
        assert_eq!(r.token_of(Some("a=1"), &["other=1"]), None);
        let short = TokenRule {
            prefix: "/live/".into(),
            ..rule(false)
        };
        let rules = [short, rule(false)];
        assert_eq!(
            rule_for(&rules, "/live/premium/x.ts").map(|r| r.prefix.as_str()),
            Some("/live/premium/")
        );
        assert_eq!(rule_for(&rules, "/vod/x.ts"), None);
    }

    proptest! {
        #[test]
        fn any_token_string_is_judged_without_panic(t in "\\PC{0,80}", now in any::<u64>()) {
            let _ = rule(true).verify(Some(&t), now, IP);
        }
    }
}
