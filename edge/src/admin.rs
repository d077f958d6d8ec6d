//! The admin listener (`admin.listen`, 127.0.0.1 by default, never the viewers' port):
//! `/metrics`, `/healthz` and `/readyz` for anyone who can reach it; `POST /purge`,
//! `POST /reload` and `POST /drain` only with `Authorization: Bearer <admin token>`.

use std::sync::Arc;

use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use hyper::body::Incoming;
use ring::hmac;
use service::Body;
use service::body::text;

use crate::Edge;
use crate::key::normalize;

/// Handles one request on the admin listener.
pub async fn handle(edge: Arc<Edge>, req: Request<Incoming>) -> Response<Body> {
    let app = edge.app();
    let path = req.uri().path();
    let action = matches!(path, "/purge" | "/reload" | "/drain");
    let method_ok = if action {
        req.method() == Method::POST
    } else {
        req.method() == Method::GET || req.method() == Method::HEAD
    };
    if !matches!(path, "/metrics" | "/healthz" | "/readyz") && !action {
        return text(
            StatusCode::NOT_FOUND,
            "admin endpoints: GET /metrics /healthz /readyz; POST /purge?path=P|prefix=P /reload /drain",
        );
    }
    if !method_ok {
        let allow = if action { "POST" } else { "GET, HEAD" };
        let mut r = text(
            StatusCode::METHOD_NOT_ALLOWED,
            format!("{} is not allowed on {path}: use {allow}", req.method()),
        );
        r.headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static(allow));
        return r;
    }
    if action && let Err(why) = authorize(app.cfg.admin.token_value().as_deref(), req.headers()) {
        app.metrics
            .admin_actions
            .with_label_values(&[path.trim_start_matches('/'), "unauthorized"])
            .inc();
        let mut r = text(StatusCode::UNAUTHORIZED, why);
        r.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"edge admin\""),
        );
        return r;
    }
    let resp = match path {
        "/healthz" => text(StatusCode::OK, "ok"),
        "/readyz" => {
            if edge.draining() {
                text(StatusCode::SERVICE_UNAVAILABLE, "draining")
            } else if app.upstreams.any_healthy() {
                text(StatusCode::OK, "ready")
            } else {
                text(StatusCode::SERVICE_UNAVAILABLE, "no healthy upstream")
            }
        }
        "/metrics" => {
            app.metrics
                .cache_bytes
                .set(i64::try_from(app.cache.weighted_size()).unwrap_or(i64::MAX));
            app.metrics
                .cache_objects
                .set(i64::try_from(app.cache.entry_count()).unwrap_or(i64::MAX));
            service::body::metrics(&app.metrics.registry)
        }
        "/purge" => purge(&app, req.uri().query()),
        "/reload" => match edge.reload() {
            Ok(what) => text(StatusCode::OK, format!("reloaded: {what}")),
            Err(e) => text(
                StatusCode::UNPROCESSABLE_ENTITY,
                format!("reload refused, the running config stays: {e}"),
            ),
        },
        _ => {
            edge.drain();
            text(
                StatusCode::ACCEPTED,
                "draining: no new connections; open ones finish within server.drain_timeout",
            )
        }
    };
    if action {
        let outcome = if resp.status().is_success() {
            "ok"
        } else {
            "refused"
        };
        app.metrics
            .admin_actions
            .with_label_values(&[path.trim_start_matches('/'), outcome])
            .inc();
    }
    resp
}

/// Checks the bearer token in constant time (both sides go through one HMAC, and ring
/// compares the tags).
fn authorize(expected: Option<&str>, headers: &http::HeaderMap) -> Result<(), &'static str> {
    let Some(expected) = expected else {
        return Err("admin actions are disabled: set admin.token or admin.token_env");
    };
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or("an admin action needs `Authorization: Bearer <admin token>`")?;
    let key = hmac::Key::new(hmac::HMAC_SHA256, b"edge admin token");
    let tag = hmac::sign(&key, expected.as_bytes());
    hmac::verify(&key, presented.trim().as_bytes(), tag.as_ref()).map_err(|_| "wrong admin token")
}

/// `POST /purge?path=/exact/path` or `?prefix=/some/prefix/`: removes matching objects
/// (every cached query variant of an exact path) and says how many.
fn purge(app: &crate::App, query: Option<&str>) -> Response<Body> {
    let mut target = None;
    for pair in query.unwrap_or("").split('&') {
        match pair.split_once('=') {
            Some(("path", v)) => target = Some((false, v)),
            Some(("prefix", v)) => target = Some((true, v)),
            _ => {}
        }
    }
    let Some((prefix, raw)) = target else {
        return text(
            StatusCode::BAD_REQUEST,
            "purge needs ?path=/exact/path or ?prefix=/path/prefix",
        );
    };
    // The same normalization as a viewer's request, so `/a/../b` purges what `/b` serves.
    let wanted = match normalize(raw, &[]) {
        Ok(k) => k,
        Err(e) => return text(StatusCode::BAD_REQUEST, format!("bad purge path: {e}")),
    };
    let wanted = wanted.path();
    let mut purged = 0u64;
    for (k, _) in app.cache.iter() {
        let hit = if prefix {
            k.path().starts_with(wanted)
        } else {
            k.path() == wanted
        };
        if hit {
            app.cache.invalidate(&*k);
            purged = purged.saturating_add(1);
        }
    }
    app.metrics.purged.inc_by(purged);
    tracing::info!(path = wanted, prefix, purged, "purge");
    text(StatusCode::OK, format!("purged {purged} object(s)"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(auth: Option<&str>) -> http::HeaderMap {
        let mut h = http::HeaderMap::new();
        if let Some(a) = auth {
            h.insert(header::AUTHORIZATION, HeaderValue::from_str(a).unwrap());
        }
        h
    }

    #[test]
    fn only_the_whole_token_authorizes() {
        let t = Some("s3cret-admin-token-0123");
        assert_eq!(
            authorize(t, &headers(Some("Bearer s3cret-admin-token-0123"))),
            Ok(())
        );
        for wrong in [
            None,
            Some("Bearer "),
            Some("Bearer s3cret-admin-token-012"),
            Some("Bearer s3cret-admin-token-01234"),
            Some("Basic s3cret-admin-token-0123"),
            Some("s3cret-admin-token-0123"),
        ] {
            assert!(authorize(t, &headers(wrong)).is_err(), "{wrong:?}");
        }
        assert!(authorize(None, &headers(Some("Bearer anything"))).is_err());
    }
}
