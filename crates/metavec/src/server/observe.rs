//! Logging and metrics for every metavec RPC, as one tower layer rather than code in each handler.
//!
//! Each request runs inside a span `rpc{rpc, collection, budget}`: the layer sets `rpc` from the
//! path, the handler records `collection` (and `budget` for searches) once it has decoded them,
//! and every event logged while serving the request, on the async side or on the blocking pool,
//! carries them. When the response ends (its gRPC status known, from the headers of an error or
//! the trailers of a streamed answer) the layer logs one line, at debug when OK and at warn with
//! the status otherwise, and counts it in `metavec_requests_total` and
//! `metavec_request_seconds` by RPC and status code. Health and reflection pass through.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use tonic::{Code, Status};
use tracing::Instrument;

#[derive(Clone, Copy, Debug, Default)]
pub struct ObserveLayer;

impl<S> tower::Layer<S> for ObserveLayer {
    type Service = Observe<S>;
    fn layer(&self, inner: S) -> Self::Service {
        Observe { inner }
    }
}

#[derive(Clone, Debug)]
pub struct Observe<S> {
    inner: S,
}

/// The request being observed, until its status is known.
struct Pending {
    rpc: String,
    span: tracing::Span,
    started: Instant,
}

impl Pending {
    fn finish(self, status: &Status) {
        let secs = self.started.elapsed().as_secs_f64();
        let ms = secs * 1e3;
        let code = match status.code() {
            Code::Ok => "OK".to_string(),
            c => format!("{c:?}"),
        };
        metrics::counter!("metavec_requests_total", "rpc" => self.rpc.clone(), "code" => code.clone())
            .increment(1);
        metrics::histogram!("metavec_request_seconds", "rpc" => self.rpc.clone(), "code" => code)
            .record(secs);
        if status.code() == Code::Ok {
            tracing::debug!(parent: &self.span, ms, "ok");
        } else {
            tracing::warn!(
                parent: &self.span,
                ms,
                code = ?status.code(),
                error = status.message(),
                "request failed"
            );
        }
    }
}

impl<S, B> tower::Service<http::Request<B>> for Observe<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<tonic::body::Body>>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = S::Error;
    type Future =
        Pin<Box<dyn std::future::Future<Output = Result<Self::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let Some(rpc) = req
            .uri()
            .path()
            .strip_prefix("/metavec.v1.")
            .and_then(|p| p.split_once('/'))
            .map(|(_, method)| method.to_string())
        else {
            return Box::pin(self.inner.call(req));
        };
        let span = tracing::info_span!(
            "rpc",
            rpc = rpc.as_str(),
            collection = tracing::field::Empty,
            budget = tracing::field::Empty
        );
        let pending = Pending {
            rpc,
            span: span.clone(),
            started: Instant::now(),
        };
        let fut = span.in_scope(|| self.inner.call(req));
        Box::pin(
            async move {
                let resp = fut.await?;
                // An error is answered in the headers alone; an answer streams its status in
                // the trailers, so the body carries `pending` until then.
                if let Some(status) = Status::from_header_map(resp.headers()) {
                    pending.finish(&status);
                    return Ok(resp);
                }
                Ok(resp.map(|body| {
                    tonic::body::Body::new(Observed {
                        inner: body,
                        pending: Some(pending),
                    })
                }))
            }
            .instrument(span),
        )
    }
}

/// A response body that finishes its request's observation at the trailers.
struct Observed {
    inner: tonic::body::Body,
    pending: Option<Pending>,
}

impl Observed {
    fn finish(&mut self, status: &Status) {
        if let Some(p) = self.pending.take() {
            p.finish(status);
        }
    }
}

impl http_body::Body for Observed {
    type Data = bytes::Bytes;
    type Error = Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(status) = frame.trailers_ref().and_then(Status::from_header_map) {
                    self.finish(&status);
                }
            }
            Poll::Ready(Some(Err(status))) => self.finish(status),
            Poll::Ready(None) => {
                self.finish(&Status::unknown("the response ended without a status"))
            }
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for Observed {
    fn drop(&mut self) {
        // The client went away before the answer finished.
        self.finish(&Status::cancelled("the client cancelled the request"));
    }
}
