//! Ingest credentials: a push must present its stream's secret, as `Authorization: Bearer
//! SECRET` or `?token=SECRET`, when the stream has one. Pure, so the rules are unit-tested.

use super::lifecycle::Refusal;

/// Checks the credential a source `presented` against the stream's `secret` (none: the
/// stream takes any source).
pub fn check(secret: Option<&str>, presented: Option<&str>) -> Result<(), Refusal> {
    let Some(secret) = secret else {
        return Ok(());
    };
    match presented {
        None => Err(Refusal::Unauthenticated),
        Some(p) if ct_eq(p.as_bytes(), secret.as_bytes()) => Ok(()),
        Some(_) => Err(Refusal::Forbidden),
    }
}

/// Byte equality in time independent of where the bytes differ (only the length shows), so a
/// guesser cannot learn the secret a prefix at a time.
pub(crate) fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let diff = a.iter().zip(b).fold(0u8, |d, (x, y)| d | (x ^ y));
    std::hint::black_box(diff) == 0
}

/// The credential in a request: a bearer token in `authorization`, else the `token` query
/// parameter (for encoders that cannot set headers).
pub fn presented<'a>(authorization: Option<&'a str>, query: Option<&'a str>) -> Option<&'a str> {
    if let Some(token) = authorization.and_then(|h| {
        let (scheme, rest) = h.trim().split_once(' ')?;
        scheme.eq_ignore_ascii_case("bearer").then(|| rest.trim())
    }) {
        return Some(token);
    }
    query?.split('&').find_map(|kv| kv.strip_prefix("token="))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_rules() {
        assert_eq!(check(None, None), Ok(()));
        assert_eq!(check(None, Some("x")), Ok(()));
        let s = Some("s3cret-s3cret-s3cret");
        assert_eq!(check(s, None), Err(Refusal::Unauthenticated));
        assert_eq!(
            check(s, Some("s3cret-s3cret-s3creT")),
            Err(Refusal::Forbidden)
        );
        assert_eq!(check(s, Some("s3cret")), Err(Refusal::Forbidden));
        assert_eq!(check(s, Some("s3cret-s3cret-s3cret")), Ok(()));
    }

    #[test]
    fn credential_from_header_or_query() {
        assert_eq!(presented(Some("Bearer abc"), None), Some("abc"));
        assert_eq!(
            presented(Some("bearer  abc "), Some("token=zzz")),
            Some("abc")
        );
        assert_eq!(presented(Some("Basic abc"), Some("a=1&token=t")), Some("t"));
        assert_eq!(presented(None, Some("token=")), Some(""));
        assert_eq!(presented(None, Some("tokens=1")), None);
        assert_eq!(presented(None, None), None);
    }
}
