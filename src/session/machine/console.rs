//! The admin console's session (see the table "Admin console" in the machine's doc): no transaction and no server,
//! simple protocol only. Pure: `session::console` reads each client message, asks `Console::on`, and does what it
//! answers (the commands themselves are `crate::admin`).

/// What the console session does with a client message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Run the Query's commands; their answers, an error if one failed, then ReadyForQuery `I`.
    Execute,
    /// ReadyForQuery `I` (a Sync).
    Ready,
    /// An extended-protocol message: 0A000 (the console speaks the simple protocol only); what follows is skipped
    /// until Sync, as PostgreSQL skips after an error.
    Refuse,
    /// Nothing: skipped until Sync, or a CopyData/CopyDone/CopyFail, which PostgreSQL ignores outside COPY.
    Ignore,
    /// Terminate: the session ends.
    End,
    /// A message no client sends: FATAL 08P01, the session ends.
    Unexpected,
}

/// The console session's state: whether messages are skipped until Sync.
#[derive(Debug, Default)]
pub struct Console {
    skipping: bool,
}

impl Console {
    /// The client message `tag`: what to do, and the state after it.
    pub fn on(&mut self, tag: u8) -> Step {
        match tag {
            b'X' => Step::End,
            b'S' => {
                self.skipping = false;
                Step::Ready
            }
            b'Q' | b'P' | b'B' | b'D' | b'E' | b'C' | b'H' if self.skipping => Step::Ignore,
            b'Q' => Step::Execute,
            b'P' | b'B' | b'D' | b'E' | b'C' | b'H' => {
                self.skipping = true;
                Step::Refuse
            }
            b'd' | b'c' | b'f' => Step::Ignore,
            _ => Step::Unexpected,
        }
    }

    /// Whether messages are skipped until Sync.
    #[cfg(test)]
    pub fn skipping(&self) -> bool {
        self.skipping
    }
}

#[cfg(test)]
mod tests {
    use super::{Console, Step};

    /// Every row of the table "Admin console", from both states.
    #[test]
    fn console_messages_follow_the_table() {
        let rows: [(bool, u8, Step, bool); 16] = [
            (false, b'Q', Step::Execute, false),
            (false, b'P', Step::Refuse, true),
            (false, b'B', Step::Refuse, true),
            (false, b'D', Step::Refuse, true),
            (false, b'E', Step::Refuse, true),
            (false, b'C', Step::Refuse, true),
            (false, b'H', Step::Refuse, true),
            (true, b'Q', Step::Ignore, true),
            (true, b'E', Step::Ignore, true),
            (true, b'H', Step::Ignore, true),
            (true, b'S', Step::Ready, false),
            (false, b'S', Step::Ready, false),
            (true, b'd', Step::Ignore, true),
            (false, b'f', Step::Ignore, false),
            (true, b'X', Step::End, true),
            (false, b'F', Step::Unexpected, false),
        ];
        for (skipping, tag, step, after) in rows {
            let mut c = Console::default();
            if skipping {
                c.on(b'P');
            }
            assert_eq!(c.on(tag), step, "skipping {skipping} + '{}'", char::from(tag));
            assert_eq!(c.skipping(), after, "skipping {skipping} + '{}'", char::from(tag));
        }
    }

    /// A driver's extended batch on the console: one 0A000, nothing else until its Sync, then ReadyForQuery.
    #[test]
    fn an_extended_batch_gets_one_error_and_one_ready_for_query() {
        let mut c = Console::default();
        let steps: Vec<Step> = [b'P', b'B', b'D', b'E', b'S', b'Q'].iter().map(|&t| c.on(t)).collect();
        assert_eq!(steps, [Step::Refuse, Step::Ignore, Step::Ignore, Step::Ignore, Step::Ready, Step::Execute]);
    }
}
