//! API keys: with `--api-key` set, every RPC except health checking and reflection needs
//! `authorization: Bearer <key>`. A `--read-only-key` may call the read RPCs only; writes get
//! PERMISSION_DENIED. Keys are compared in constant time and never logged.

use std::sync::Arc;
use std::task::{Context, Poll};

use subtle::ConstantTimeEq;
use tonic::Status;

#[derive(Clone, Default)]
pub struct Keys {
    pub admin: Option<Arc<[u8]>>,
    pub read_only: Option<Arc<[u8]>>,
}

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keys")
            .field("admin", &self.admin.as_ref().map(|_| "<redacted>"))
            .field("read_only", &self.read_only.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// RPCs a read-only key may call.
const READ_RPCS: &[&str] = &[
    "/metavec.v1.Search/Search",
    "/metavec.v1.Search/SearchBatch",
    "/metavec.v1.Documents/Get",
    "/metavec.v1.Documents/Scroll",
    "/metavec.v1.Documents/Count",
    "/metavec.v1.Collections/GetCollection",
    "/metavec.v1.Collections/ListCollections",
    "/metavec.v1.Admin/Stats",
    "/metavec.v1.Admin/ListSnapshots",
];

/// The credentials of an `authorization: Bearer <token>` header. The scheme is case-insensitive
/// (RFC 7235 section 2.1: "bearer", "BEARER" are the same scheme), followed by one or more spaces.
fn bearer_token(h: &[u8]) -> Option<&[u8]> {
    let (scheme, rest) = h.split_at_checked(6)?;
    if !scheme.eq_ignore_ascii_case(b"bearer") || rest.first() != Some(&b' ') {
        return None;
    }
    let token = rest.trim_ascii_start();
    (!token.is_empty()).then_some(token)
}

fn eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && bool::from(a.ct_eq(b))
}

impl Keys {
    pub fn enabled(&self) -> bool {
        self.admin.is_some() || self.read_only.is_some()
    }

    /// Decides one request by its path and `authorization` header.
    pub fn check(&self, path: &str, auth: Option<&[u8]>) -> Result<(), Status> {
        if !self.enabled()
            || path.starts_with("/grpc.health.")
            || path.starts_with("/grpc.reflection.")
        {
            return Ok(());
        }
        let token = auth
            .and_then(bearer_token)
            .ok_or_else(|| Status::unauthenticated("missing authorization: Bearer <api key>"))?;
        if self.admin.as_deref().is_some_and(|k| eq(k, token)) {
            return Ok(());
        }
        if self.read_only.as_deref().is_some_and(|k| eq(k, token)) {
            return if READ_RPCS.contains(&path) {
                Ok(())
            } else {
                Err(Status::permission_denied(format!(
                    "the read-only key may not call {path}"
                )))
            };
        }
        Err(Status::unauthenticated("invalid api key"))
    }
}

/// Tower layer applying [`Keys::check`] before any handler runs.
#[derive(Clone)]
pub struct AuthLayer(pub Keys);

impl<S> tower::Layer<S> for AuthLayer {
    type Service = AuthService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        AuthService {
            inner,
            keys: self.0.clone(),
        }
    }
}

#[derive(Clone)]
pub struct AuthService<S> {
    inner: S,
    keys: Keys,
}

impl<S, B> tower::Service<http::Request<B>> for AuthService<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<tonic::body::Body>>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = S::Error;
    type Future = std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<Self::Response, S::Error>> + Send>,
    >;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let auth = req
            .headers()
            .get(http::header::AUTHORIZATION)
            .map(|v| v.as_bytes());
        match self.keys.check(req.uri().path(), auth) {
            Ok(()) => Box::pin(self.inner.call(req)),
            Err(status) => Box::pin(std::future::ready(Ok(status.into_http()))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decisions() {
        let keys = Keys {
            admin: Some(Arc::from(&b"admin-key"[..])),
            read_only: Some(Arc::from(&b"reader"[..])),
        };
        let search = "/metavec.v1.Search/Search";
        let upsert = "/metavec.v1.Documents/Upsert";
        assert_eq!(
            keys.check(search, None).unwrap_err().code(),
            tonic::Code::Unauthenticated
        );
        assert_eq!(
            keys.check(search, Some(b"Bearer nope")).unwrap_err().code(),
            tonic::Code::Unauthenticated
        );
        assert_eq!(
            keys.check(search, Some(b"admin-key")).unwrap_err().code(),
            tonic::Code::Unauthenticated
        );
        keys.check(search, Some(b"Bearer reader")).unwrap();
        assert_eq!(
            keys.check(upsert, Some(b"Bearer reader"))
                .unwrap_err()
                .code(),
            tonic::Code::PermissionDenied
        );
        keys.check(upsert, Some(b"Bearer admin-key")).unwrap();
        for scheme in ["bearer", "BEARER", "bEaReR"] {
            let h = format!("{scheme} admin-key");
            keys.check(upsert, Some(h.as_bytes())).unwrap();
        }
        keys.check(upsert, Some(b"Bearer   admin-key")).unwrap();
        for bad in [
            &b"Bearer"[..],
            b"Bearer ",
            b"Bearex admin-key",
            b"Beareradmin-key",
            b"Basic admin-key",
        ] {
            assert_eq!(
                keys.check(upsert, Some(bad)).unwrap_err().code(),
                tonic::Code::Unauthenticated,
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        keys.check("/grpc.health.v1.Health/Check", None).unwrap();
        Keys::default().check(upsert, None).unwrap();
        assert!(!format!("{keys:?}").contains("admin-key"));
    }
}
