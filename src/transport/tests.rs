//! The retry table.

use h2::Reason;

use super::exchange::{decide, Failed, Next};

#[test]
fn only_requests_the_peer_did_not_process_are_sent_again() {
    use Failed::*;
    let cases = [
        // (failed, attempts left, reconnected) → next
        ((Refused, true, false), Next::SameConnection),
        ((Refused, true, true), Next::SameConnection),
        ((Unsent, true, false), Next::NewConnection),
        ((AboveGoAway, true, false), Next::NewConnection),
        ((Unsent, true, true), Next::GiveUp),
        ((AboveGoAway, true, true), Next::GiveUp),
        ((Other, true, false), Next::GiveUp),
        ((Refused, false, false), Next::GiveUp),
        ((Unsent, false, false), Next::GiveUp),
    ];
    for ((failed, attempts_left, reconnected), want) in cases {
        assert_eq!(
            decide(failed, attempts_left, reconnected),
            want,
            "{failed:?}, attempts left {attempts_left}, reconnected {reconnected}"
        );
    }
}

/// h2 builds its connection errors itself; a stream reset's reason is all a test can make.
#[test]
fn a_refused_stream_is_told_from_other_resets() {
    let refused = h2::Error::from(Reason::REFUSED_STREAM);
    assert_eq!(Failed::of(&refused, true), Failed::Refused);
    let internal = h2::Error::from(Reason::INTERNAL_ERROR);
    assert_eq!(Failed::of(&internal, true), Failed::Other);
}
