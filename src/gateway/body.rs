//! The gateway's response body: a buffered body (HTTP responses, unary gRPC
//! with its trailers) or a channel fed by a task (gRPC response streams).
//! It may hold a guard that lives exactly as long as the response is being
//! sent (the connection's idle accounting, the in-flight permit).

use std::any::Any;
use std::collections::VecDeque;
use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Frame, SizeHint};
use tokio::sync::mpsc;

/// A response body.
pub struct Body {
    kind: Kind,
    _guard: Option<Box<dyn Any + Send + Sync>>,
}

enum Kind {
    /// One chunk, or nothing (no allocation for the common response).
    Full(Option<Bytes>),
    Frames(VecDeque<Frame<Bytes>>),
    Channel(mpsc::Receiver<Frame<Bytes>>),
}

impl Body {
    /// No content.
    pub fn empty() -> Self {
        Self::with(Kind::Full(None))
    }

    /// One buffered chunk (nothing if empty).
    pub fn full(bytes: impl Into<Bytes>) -> Self {
        let bytes = bytes.into();
        Self::with(Kind::Full((!bytes.is_empty()).then_some(bytes)))
    }

    /// Buffered frames (data and at most one final trailers frame).
    pub fn frames(frames: VecDeque<Frame<Bytes>>) -> Self {
        Self::with(Kind::Frames(frames))
    }

    /// Frames produced by a task; the body ends when the sender is dropped.
    pub fn channel(rx: mpsc::Receiver<Frame<Bytes>>) -> Self {
        Self::with(Kind::Channel(rx))
    }

    fn with(kind: Kind) -> Self {
        Body { kind, _guard: None }
    }

    /// Keep `guard` alive until the body is dropped (sent or abandoned).
    pub fn guard(mut self, guard: impl Any + Send + Sync) -> Self {
        self._guard = Some(match self._guard.take() {
            None => Box::new(guard),
            Some(held) => Box::new((held, guard)),
        });
        self
    }
}

impl http_body::Body for Body {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        match &mut self.kind {
            Kind::Full(bytes) => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
            Kind::Frames(frames) => Poll::Ready(frames.pop_front().map(Ok)),
            Kind::Channel(rx) => rx.poll_recv(cx).map(|f| f.map(Ok)),
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Full(bytes) => bytes.is_none(),
            Kind::Frames(frames) => frames.is_empty(),
            Kind::Channel(_) => false,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Full(bytes) => SizeHint::with_exact(bytes.as_ref().map_or(0, |b| b.len() as u64)),
            Kind::Frames(frames) if frames.iter().all(|f| f.is_data()) => {
                let len = frames
                    .iter()
                    .filter_map(|f| f.data_ref())
                    .map(|d| d.len() as u64)
                    .sum();
                SizeHint::with_exact(len)
            }
            _ => SizeHint::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    #[tokio::test]
    async fn full_and_frames_bodies() {
        let b = Body::full("abc");
        assert_eq!(http_body::Body::size_hint(&b).exact(), Some(3));
        assert_eq!(b.collect().await.unwrap().to_bytes().as_ref(), b"abc");
        assert!(http_body::Body::is_end_stream(&Body::empty()));

        let mut trailers = http::HeaderMap::new();
        trailers.insert("grpc-status", "0".parse().unwrap());
        let frames = VecDeque::from([
            Frame::data(Bytes::from_static(b"x")),
            Frame::trailers(trailers),
        ]);
        let collected = Body::frames(frames).collect().await.unwrap();
        assert_eq!(collected.trailers().unwrap()["grpc-status"], "0");
    }

    #[tokio::test]
    async fn channel_body_ends_when_the_sender_drops_and_guards_drop_with_it() {
        let (tx, rx) = mpsc::channel(2);
        let guard = std::sync::Arc::new(());
        let body = Body::channel(rx).guard(guard.clone()).guard(guard.clone());
        assert_eq!(std::sync::Arc::strong_count(&guard), 3);
        tx.send(Frame::data(Bytes::from_static(b"a")))
            .await
            .unwrap();
        drop(tx);
        assert_eq!(body.collect().await.unwrap().to_bytes().as_ref(), b"a");
        assert_eq!(std::sync::Arc::strong_count(&guard), 1);
    }
}
