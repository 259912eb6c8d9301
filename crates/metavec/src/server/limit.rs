//! Refuses oversize gRPC messages with RESOURCE_EXHAUSTED (tonic's own limit answers
//! OUT_OF_RANGE). The request body is watched frame by frame: each gRPC message starts with a
//! 5-byte prefix (compressed flag, u32 big-endian length); a length above the limit ends the
//! body with the status, before the message is buffered.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Buf, Bytes};
use http_body::{Body, Frame};
use tonic::Status;

pub struct LimitBody {
    inner: tonic::body::Body,
    limit: usize,
    prefix: [u8; 5],
    have: usize,
    remaining: u64,
}

impl LimitBody {
    pub fn wrap(inner: tonic::body::Body, limit: usize) -> tonic::body::Body {
        tonic::body::Body::new(LimitBody {
            inner,
            limit,
            prefix: [0; 5],
            have: 0,
            remaining: 0,
        })
    }

    fn scan(&mut self, mut data: &[u8]) -> Result<(), Status> {
        while data.has_remaining() {
            if self.remaining > 0 {
                let take = (self.remaining as usize).min(data.len());
                self.remaining -= take as u64;
                data.advance(take);
                continue;
            }
            self.prefix[self.have] = data[0];
            self.have += 1;
            data.advance(1);
            if self.have == 5 {
                self.have = 0;
                let len = u32::from_be_bytes([
                    self.prefix[1],
                    self.prefix[2],
                    self.prefix[3],
                    self.prefix[4],
                ]);
                if len as usize > self.limit {
                    return Err(Status::resource_exhausted(format!(
                        "request message is too large: {len} bytes, the limit is {} bytes (--max-message-bytes)",
                        self.limit
                    )));
                }
                self.remaining = len as u64;
            }
        }
        Ok(())
    }
}

impl Body for LimitBody {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    if let Err(s) = this.scan(data) {
                        return Poll::Ready(Some(Err(s)));
                    }
                }
                Poll::Ready(Some(Ok(frame)))
            }
            other => other,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}
