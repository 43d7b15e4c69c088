//! Which replies the session cache may keep: a complete, clean success of a read, exactly as the client got it.

/// Whether `reply` (every message a client received for one request) may be stored and served again: only the
/// messages of a read's success (ParseComplete, BindComplete, ParameterDescription, RowDescription, NoData,
/// DataRow, EmptyQueryResponse, PortalSuspended, CommandComplete `SELECT n`), ending with ReadyForQuery idle. An
/// error, a notice, a notification or a parameter change (each belongs to its moment) and anything truncated are
/// refused.
pub fn keepable(reply: &[u8]) -> bool {
    let mut rest = reply;
    let mut ready = false;
    while !rest.is_empty() {
        if ready {
            return false;
        }
        let Some((&tag, after)) = rest.split_first() else { return false };
        let Some(len) = after.get(..4).map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize) else {
            return false;
        };
        if len < 4 {
            return false;
        }
        let Some(body) = after.get(4..len) else { return false };
        match tag {
            b'1' | b'2' | b't' | b'T' | b'n' | b'D' | b'I' | b's' => {}
            b'C' if body.starts_with(b"SELECT ") => {}
            b'Z' if body == b"I" => ready = true,
            _ => return false,
        }
        rest = after.get(len..).unwrap_or_default();
    }
    ready
}

#[cfg(test)]
mod tests {
    use super::keepable;

    fn msg(tag: u8, body: &[u8]) -> Vec<u8> {
        let mut m = vec![tag];
        m.extend_from_slice(&(body.len() as u32 + 4).to_be_bytes());
        m.extend_from_slice(body);
        m
    }

    #[test]
    fn only_a_whole_clean_read_is_kept() {
        let ok = [msg(b'T', b"\0\0"), msg(b'D', b"\0\0"), msg(b'C', b"SELECT 1\0"), msg(b'Z', b"I")].concat();
        assert!(keepable(&ok));
        let ext = [msg(b'1', b""), msg(b'2', b""), msg(b'n', b""), msg(b'C', b"SELECT 0\0"), msg(b'Z', b"I")].concat();
        assert!(keepable(&ext));
        // Truncated anywhere: refused.
        for cut in 0..ok.len() {
            assert!(!keepable(&ok[..cut]), "cut at {cut}");
        }
        // An error, a notice, a parameter change, a transaction left open, a write's tag, trailing bytes.
        let error = [msg(b'E', b"SERROR\0\0"), msg(b'Z', b"I")].concat();
        let notice = [msg(b'N', b"SNOTICE\0\0"), msg(b'C', b"SELECT 0\0"), msg(b'Z', b"I")].concat();
        let param = [msg(b'S', b"a\0b\0"), msg(b'C', b"SELECT 0\0"), msg(b'Z', b"I")].concat();
        let in_tx = [msg(b'C', b"SELECT 0\0"), msg(b'Z', b"T")].concat();
        let write = [msg(b'C', b"INSERT 0 1\0"), msg(b'Z', b"I")].concat();
        let trailing = [ok.clone(), msg(b'Z', b"I")].concat();
        for bad in [error, notice, param, in_tx, write, trailing, msg(b'X', b"")] {
            assert!(!keepable(&bad));
        }
        assert!(!keepable(&[b'Z', 0, 0, 0, 3]));
    }
}
