//! One attempt of a request on one connection, and what its failure means: whether the
//! provider can have processed the request, and so whether sending it again is safe.

use bytes::{Bytes, BytesMut};
use h2::client::SendRequest;
use h2::{Reason, RecvStream};
use http::Request;

use super::{TransportError, MAX_RESPONSE_BYTES};

/// What a failed attempt says about its request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Failed {
    /// The connection could not take the request (it closed, or got a GOAWAY): never sent.
    Unsent,
    /// The peer reset the stream with REFUSED_STREAM, which means it did not process the
    /// request (RFC 9113 §8.7); the connection itself is fine.
    Refused,
    /// The peer's GOAWAY named a last stream below this one, so it did not process it either.
    AboveGoAway,
    /// Anything else: the peer may have processed the request, or the request is at fault.
    Other,
}

impl Failed {
    /// Read `error` of an attempt that had (`sent`) or had not handed its request to h2.
    pub(super) fn of(error: &h2::Error, sent: bool) -> Failed {
        if error.reason() == Some(Reason::REFUSED_STREAM) && !error.is_go_away() {
            Failed::Refused
        } else if !sent && (error.is_go_away() || error.is_io()) {
            Failed::Unsent
        } else if sent && error.is_go_away() && error.is_remote() {
            // h2 fails a sent stream with the peer's GOAWAY only when the stream is above the
            // GOAWAY's last stream id; streams at or below it end on their own.
            Failed::AboveGoAway
        } else {
            Failed::Other
        }
    }
}

/// What to do after a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Next {
    /// Send again on the same connection.
    SameConnection,
    /// Send again on a new connection.
    NewConnection,
    /// Report the error to the provider.
    GiveUp,
}

/// Two failures are safe to try again at once, because the peer did not process the request:
/// a connection that closed under us (GOAWAY, reset) before the request reached it — once, on
/// a new connection — and a stream the peer refused (REFUSED_STREAM), which a healthy
/// connection does to requests sent before its SETTINGS_MAX_CONCURRENT_STREAMS arrived (APNs
/// starts new connections at 1 stream) — on the same connection, which queues them now that it
/// knows its limit. `attempts_left` says whether another attempt fits in
/// [`MAX_SEND_ATTEMPTS`](super::MAX_SEND_ATTEMPTS), `reconnected` whether the one new
/// connection was used up.
pub(super) fn decide(failed: Failed, attempts_left: bool, reconnected: bool) -> Next {
    match failed {
        _ if !attempts_left => Next::GiveUp,
        Failed::Refused => Next::SameConnection,
        Failed::Unsent | Failed::AboveGoAway if !reconnected => Next::NewConnection,
        Failed::Unsent | Failed::AboveGoAway | Failed::Other => Next::GiveUp,
    }
}

/// An attempt that failed, and whether it got as far as handing its request to h2.
pub(super) struct Failure {
    pub(super) error: h2::Error,
    pub(super) sent: bool,
}

/// One exchange on `sender`'s connection, up to the response head. Waiting for `ready` queues
/// the request behind the peer's SETTINGS_MAX_CONCURRENT_STREAMS instead of failing it.
pub(super) async fn exchange(
    sender: SendRequest<Bytes>,
    head: Request<()>,
    body: Bytes,
) -> Result<http::Response<RecvStream>, Failure> {
    let unsent = |error| Failure { error, sent: false };
    let mut sender = sender.ready().await.map_err(unsent)?;
    let (response, mut stream) = sender.send_request(head, body.is_empty()).map_err(unsent)?;
    // A stream the peer already ended refuses the body; its response future says why.
    if !body.is_empty() && stream.send_data(body, true).is_err() {
        stream.send_reset(Reason::CANCEL);
    }
    response
        .await
        .map_err(|error| Failure { error, sent: true })
}

/// The whole body of a response, up to [`MAX_RESPONSE_BYTES`], handing its flow-control
/// capacity back as it is read.
pub(super) async fn read_body(mut stream: RecvStream) -> Result<Bytes, TransportError> {
    // Providers answer in one DATA frame: keep it as it came, copy only when more follow.
    let mut first = Bytes::new();
    let mut joined = BytesMut::new();
    while let Some(chunk) = stream.data().await {
        let chunk = chunk.map_err(TransportError::Connection)?;
        let _ = stream.flow_control().release_capacity(chunk.len());
        if first.len() + joined.len() + chunk.len() > MAX_RESPONSE_BYTES {
            return Err(TransportError::BodyTooLarge);
        }
        if first.is_empty() && joined.is_empty() {
            first = chunk;
        } else {
            if joined.is_empty() {
                joined.extend_from_slice(&std::mem::take(&mut first));
            }
            joined.extend_from_slice(&chunk);
        }
    }
    Ok(if joined.is_empty() {
        first
    } else {
        joined.freeze()
    })
}
