//! COPY inside a request (`Running`, see the table "COPY" in the machine's doc): which client messages the
//! server gets while a COPY FROM STDIN runs and which one ends it, what the server's messages start, and what is
//! ignored outside COPY. Pure: the backend's relay asks `in_copy_from_client` for every client message it reads
//! during COPY FROM STDIN and `from_server` for every server message; the session loop asks `outside_copy`.

/// Where a COPY stands within a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// No COPY: the server's replies are relayed, the client is not read.
    None,
    /// COPY FROM STDIN: the client's messages go to the server until the one that ends the COPY.
    In,
    /// COPY TO STDOUT: the server's CopyData is relayed like any reply, through its CopyDone.
    Out,
}

/// What a server message does to the COPY of a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FromServer {
    /// The phase the request is in after it.
    Phase(Phase),
    /// CopyBothResponse: only replication connections send it, and pgsplit carries no replication; the server broke
    /// the protocol of a normal connection (it is closed).
    Refuse,
}

/// What the relay does with a client message read during COPY FROM STDIN.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InCopy {
    /// Send it to the server; the COPY goes on (CopyData; Sync and Flush, which the server ignores in COPY).
    Forward,
    /// Send it to the server; it is the COPY's last message (CopyDone, CopyFail, or any other message, which
    /// PostgreSQL answers with 08P01 and ends the COPY): the server's replies are relayed from here.
    ForwardLast,
}

/// What the session does with a client message when no COPY runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutsideCopy {
    /// CopyData, CopyDone, CopyFail: ignored, as PostgreSQL ignores them.
    Ignore,
    /// Any other message: the session reads it as usual.
    Read,
}

/// The server message `tag` during a request in `phase`.
#[inline]
pub fn from_server(phase: Phase, tag: u8) -> FromServer {
    match (phase, tag) {
        (_, b'G') => FromServer::Phase(Phase::In),
        (_, b'H') => FromServer::Phase(Phase::Out),
        (_, b'W') => FromServer::Refuse,
        // CopyDone ends COPY TO STDOUT; ReadyForQuery or an error ends any COPY.
        (Phase::Out, b'c') | (_, b'Z' | b'E') => FromServer::Phase(Phase::None),
        (phase, _) => FromServer::Phase(phase),
    }
}

/// The client message `tag` during COPY FROM STDIN.
#[inline]
pub fn in_copy_from_client(tag: u8) -> InCopy {
    match tag {
        b'd' | b'S' | b'H' => InCopy::Forward,
        _ => InCopy::ForwardLast,
    }
}

/// The client message `tag` when no COPY runs.
#[inline]
pub fn outside_copy(tag: u8) -> OutsideCopy {
    match tag {
        b'd' | b'c' | b'f' => OutsideCopy::Ignore,
        _ => OutsideCopy::Read,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every server row of the table "COPY": phase, message, what follows.
    #[test]
    fn server_messages_start_and_end_a_copy_as_the_table_says() {
        let phase = FromServer::Phase;
        let rows = [
            (Phase::None, b'G', phase(Phase::In)),
            (Phase::None, b'H', phase(Phase::Out)),
            (Phase::None, b'W', FromServer::Refuse),
            (Phase::In, b'W', FromServer::Refuse),
            (Phase::Out, b'd', phase(Phase::Out)),
            (Phase::Out, b'N', phase(Phase::Out)),
            (Phase::Out, b'c', phase(Phase::None)),
            (Phase::Out, b'E', phase(Phase::None)),
            (Phase::In, b'E', phase(Phase::None)),
            (Phase::In, b'Z', phase(Phase::None)),
            (Phase::In, b'N', phase(Phase::In)),
            // CopyDone from the server ends only COPY TO STDOUT.
            (Phase::In, b'c', phase(Phase::In)),
            (Phase::None, b'C', phase(Phase::None)),
            (Phase::None, b'Z', phase(Phase::None)),
        ];
        for (from, tag, to) in rows {
            assert_eq!(from_server(from, tag), to, "{from:?} + server '{}'", char::from(tag));
        }
    }

    /// Every client row of the table "COPY": during COPY FROM STDIN, and outside COPY.
    #[test]
    fn client_messages_go_on_end_or_are_ignored_as_the_table_says() {
        for (tag, step) in [
            (b'd', InCopy::Forward),
            (b'S', InCopy::Forward),
            (b'H', InCopy::Forward),
            (b'c', InCopy::ForwardLast),
            (b'f', InCopy::ForwardLast),
            (b'Q', InCopy::ForwardLast),
            (b'P', InCopy::ForwardLast),
            (b'X', InCopy::ForwardLast),
        ] {
            assert_eq!(in_copy_from_client(tag), step, "client '{}' in COPY FROM STDIN", char::from(tag));
        }
        for (tag, step) in [
            (b'd', OutsideCopy::Ignore),
            (b'c', OutsideCopy::Ignore),
            (b'f', OutsideCopy::Ignore),
            (b'Q', OutsideCopy::Read),
            (b'S', OutsideCopy::Read),
            (b'X', OutsideCopy::Read),
        ] {
            assert_eq!(outside_copy(tag), step, "client '{}' outside COPY", char::from(tag));
        }
    }

    /// A COPY FROM STDIN as a driver sends it over the extended protocol (Sync right after Execute, then the data):
    /// everything up to the CopyDone goes to the server, the CopyDone last.
    #[test]
    fn a_copy_in_streamed_after_sync_goes_to_the_server_through_its_copy_done() {
        let mut phase = Phase::None;
        for tag in [b'1', b'2', b'G'] {
            if let FromServer::Phase(p) = from_server(phase, tag) {
                phase = p;
            }
        }
        assert_eq!(phase, Phase::In);
        let client = [b'd', b'd', b'H', b'd', b'c'];
        let steps: Vec<InCopy> = client.iter().map(|&t| in_copy_from_client(t)).collect();
        assert_eq!(steps.iter().filter(|s| **s == InCopy::ForwardLast).count(), 1);
        assert_eq!(steps.last(), Some(&InCopy::ForwardLast));
        for (tag, after) in [(b'C', Phase::In), (b'Z', Phase::None)] {
            if let FromServer::Phase(p) = from_server(phase, tag) {
                phase = p;
            }
            assert_eq!(phase, after);
        }
    }
}
