//! Sealed lines the sink has not taken yet, oldest first: one batch while
//! the sink writes, up to `audit.buffer_bytes` while it cannot.

use std::collections::VecDeque;

/// Lines in chain order, kept as the bytes the sink appends.
#[derive(Default)]
pub(super) struct Backlog {
    bytes: Vec<u8>,
    /// Each line's length and `seq`, in order.
    lines: VecDeque<(usize, u64)>,
}

/// What a successful append took off the front.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Taken {
    pub records: u64,
    pub last_seq: Option<u64>,
}

impl Backlog {
    pub fn push(&mut self, line: &[u8], seq: u64) {
        self.bytes.extend_from_slice(line);
        self.lines.push_back((line.len(), seq));
    }

    /// Everything waiting, as one run of lines.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The first whole lines up to `limit` bytes (at least one line).
    pub fn front(&self, limit: usize) -> &[u8] {
        let mut bytes = 0;
        for &(len, _) in &self.lines {
            if bytes > 0 && bytes + len > limit {
                break;
            }
            bytes += len;
        }
        &self.bytes[..bytes]
    }

    pub fn size(&self) -> usize {
        self.bytes.len()
    }

    pub fn records(&self) -> usize {
        self.lines.len()
    }

    pub fn is_empty(&self) -> bool {
        self.lines.is_empty()
    }

    /// Forget the first `n` bytes, which the sink took (whole lines, as
    /// [`super::sink::Sink::append`] promises; a cut line stays).
    pub fn take_front(&mut self, n: usize) -> Taken {
        let mut taken = Taken {
            records: 0,
            last_seq: None,
        };
        let mut bytes = 0;
        while let Some(&(len, seq)) = self.lines.front() {
            if bytes + len > n {
                break;
            }
            bytes += len;
            taken.records += 1;
            taken.last_seq = Some(seq);
            self.lines.pop_front();
        }
        if bytes == self.bytes.len() {
            self.bytes.clear();
        } else {
            self.bytes.drain(..bytes);
        }
        taken
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whole_lines_leave_the_front_and_the_rest_keeps_its_order() {
        let mut backlog = Backlog::default();
        backlog.push(b"a\n", 7);
        backlog.push(b"bb\n", 8);
        backlog.push(b"ccc\n", 9);
        assert_eq!((backlog.records(), backlog.size()), (3, 9));
        assert_eq!(backlog.front(0), b"a\n", "at least one line");
        assert_eq!(backlog.front(6), b"a\nbb\n");
        assert_eq!(backlog.front(100), backlog.bytes());
        assert_eq!(
            backlog.take_front(0),
            Taken {
                records: 0,
                last_seq: None
            }
        );
        assert_eq!(
            backlog.take_front(5),
            Taken {
                records: 2,
                last_seq: Some(8)
            }
        );
        assert_eq!(backlog.bytes(), b"ccc\n");
        assert_eq!(backlog.take_front(4).records, 1);
        assert!(backlog.is_empty());
        assert_eq!(backlog.size(), 0);
    }
}
