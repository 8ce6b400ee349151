//! RESP2 on the wire without the client's trees: commands written straight into one buffer
//! per batch ([`Commands`]), replies read in place from the bytes they arrived in ([`Replies`],
//! [`Reply`]). The connection ([`super::WireConn`]) only finds where each reply ends
//! ([`reply_end`]) before it hands a batch its bytes, so reading a reply never runs out of data.

use bytes::{BufMut, Bytes, BytesMut};
use redis::RedisError;

/// The commands of one batch, encoded as they are added.
#[derive(Debug, Default)]
pub struct Commands {
    buf: BytesMut,
    count: usize,
    /// Words the last command still owes (checked in debug builds: a command that gets fewer
    /// or more words than it announced desynchronises every reply after it).
    owed: usize,
}

impl Commands {
    /// No commands yet, with room for about `bytes` of them.
    pub fn with_capacity(bytes: usize) -> Commands {
        Commands {
            buf: BytesMut::with_capacity(bytes),
            count: 0,
            owed: 0,
        }
    }

    /// Start a command of `args` words (its name included); add exactly that many with
    /// [`Commands::arg`] and the like.
    pub fn command(&mut self, args: usize) -> &mut Commands {
        debug_assert_eq!(
            self.owed, 0,
            "the last command got fewer words than announced"
        );
        self.owed = args;
        self.count += 1;
        self.buf.put_u8(b'*');
        put_decimal(&mut self.buf, args as u64);
        self.buf.put_slice(b"\r\n");
        self
    }

    /// Add one word.
    pub fn arg(&mut self, word: impl AsRef<[u8]>) -> &mut Commands {
        self.arg_parts(&[word.as_ref()])
    }

    /// Add one word made of `parts` one after the other (a key of a prefix and a name, say),
    /// without joining them first.
    pub fn arg_parts(&mut self, parts: &[&[u8]]) -> &mut Commands {
        debug_assert!(self.owed > 0, "a word more than the command announced");
        self.owed = self.owed.saturating_sub(1);
        let len: usize = parts.iter().map(|p| p.len()).sum();
        self.buf.reserve(len + 16);
        self.buf.put_u8(b'$');
        put_decimal(&mut self.buf, len as u64);
        self.buf.put_slice(b"\r\n");
        for part in parts {
            self.buf.put_slice(part);
        }
        self.buf.put_slice(b"\r\n");
        self
    }

    /// Add a number as one word.
    pub fn arg_u64(&mut self, n: u64) -> &mut Commands {
        let mut digits = [0u8; 20];
        let at = decimal(n, &mut digits);
        self.arg(&digits[at..])
    }

    /// Commands added.
    pub fn count(&self) -> usize {
        self.count
    }

    /// Whether none were added.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    pub(super) fn into_bytes(self) -> Bytes {
        debug_assert_eq!(
            self.owed, 0,
            "the last command got fewer words than announced"
        );
        self.buf.freeze()
    }
}

/// `n` in decimal, written into `out` (a word of a longer value: [`Commands::arg_parts`]).
pub fn digits(n: u64, out: &mut [u8; 20]) -> &[u8] {
    let at = decimal(n, out);
    &out[at..]
}

/// `n` in decimal at the end of `out`; the index its first digit is at.
fn decimal(mut n: u64, out: &mut [u8; 20]) -> usize {
    let mut at = out.len();
    loop {
        at -= 1;
        out[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            return at;
        }
    }
}

fn put_decimal(buf: &mut BytesMut, n: u64) {
    let mut digits = [0u8; 20];
    let at = decimal(n, &mut digits);
    buf.put_slice(&digits[at..]);
}

/// Where the reply starting at `at` ends (the index after it), `Ok(None)` when `buf` does not
/// hold all of it yet, and an error when it is not RESP2.
pub(super) fn reply_end(buf: &[u8], at: usize) -> Result<Option<usize>, &'static str> {
    // Arrays are walked without recursion: `left` counts the replies still owed to the arrays
    // being read.
    let mut at = at;
    let mut left: u64 = 1;
    while left > 0 {
        let Some(line_end) = line_end(buf, at) else {
            return Ok(None);
        };
        let line = &buf[at + 1..line_end];
        let next = line_end + 2;
        left -= 1;
        match buf[at] {
            b'+' | b'-' => at = next,
            b':' => {
                parse_int(line).ok_or("an integer reply that is not a number")?;
                at = next;
            }
            b'$' => {
                let len = parse_int(line).ok_or("a bulk length that is not a number")?;
                if len < 0 {
                    at = next;
                } else {
                    let end = next + len as usize;
                    if buf.len() < end + 2 {
                        return Ok(None);
                    }
                    if &buf[end..end + 2] != b"\r\n" {
                        return Err("a bulk string not followed by CRLF");
                    }
                    at = end + 2;
                }
            }
            b'*' => {
                let len = parse_int(line).ok_or("an array length that is not a number")?;
                left += len.max(0) as u64;
                at = next;
            }
            _ => return Err("a reply of a type RESP2 does not have"),
        }
    }
    Ok(Some(at))
}

/// The index of the `\r` ending the line that starts at `at`.
fn line_end(buf: &[u8], at: usize) -> Option<usize> {
    // Only ever called where a line starts, never inside a bulk string's bytes.
    let cr = at + buf.get(at..)?.iter().position(|b| *b == b'\r')?;
    (buf.get(cr + 1) == Some(&b'\n')).then_some(cr)
}

/// An integer line's value (`-` allowed, nothing else but digits), read off the bytes: two or
/// three of these are read per reply, too often to go through a UTF-8 check and `str::parse`.
fn parse_int(line: &[u8]) -> Option<i64> {
    let (negative, digits) = match line {
        [b'-', rest @ ..] => (true, rest),
        _ => (false, line),
    };
    if digits.is_empty() {
        return None;
    }
    let mut value: i64 = 0;
    for d in digits {
        if !d.is_ascii_digit() {
            return None;
        }
        let d = i64::from(d - b'0');
        // Negative values are built downwards, so `i64::MIN` reads too.
        value = match negative {
            true => value.checked_mul(10)?.checked_sub(d)?,
            false => value.checked_mul(10)?.checked_add(d)?,
        };
    }
    Some(value)
}

/// The replies to one batch of [`Commands`], one per command, in order, read in place.
#[derive(Debug, Clone)]
pub struct Replies {
    bytes: Bytes,
    count: usize,
}

impl Replies {
    pub(super) fn new(bytes: Bytes, count: usize) -> Replies {
        Replies { bytes, count }
    }

    /// `count` replies as they would arrive (tests of the readers elsewhere).
    #[cfg(test)]
    pub(crate) fn from_static(wire: &'static [u8], count: usize) -> Replies {
        assert_eq!(
            (0..count).try_fold(0, |at, _| reply_end(wire, at).ok().flatten()),
            Some(wire.len()),
            "exactly {count} whole replies"
        );
        Replies::new(Bytes::from_static(wire), count)
    }

    /// The replies, in order.
    pub fn iter(&self) -> Items<'_> {
        Items {
            buf: &self.bytes,
            at: 0,
            left: self.count,
        }
    }

    /// How many there are.
    pub fn len(&self) -> usize {
        self.count
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }
}

/// Replies read one after the other: a batch's, or an array's items.
#[derive(Debug, Clone)]
pub struct Items<'a> {
    buf: &'a [u8],
    at: usize,
    left: usize,
}

impl<'a> Iterator for Items<'a> {
    type Item = Reply<'a>;

    fn next(&mut self) -> Option<Reply<'a>> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        let (reply, end) = read(self.buf, self.at)?;
        self.at = end;
        Some(reply)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (0, Some(self.left))
    }
}

impl Items<'_> {
    /// Items not read yet.
    pub fn remaining(&self) -> usize {
        self.left
    }
}

/// One reply, borrowed from the bytes it arrived in.
#[derive(Debug, Clone)]
pub enum Reply<'a> {
    /// A nil bulk string or array.
    Nil,
    /// `:<n>`.
    Int(i64),
    /// A bulk string.
    Bulk(&'a [u8]),
    /// `+<status>` (`OK`, `QUEUED`).
    Status(&'a [u8]),
    /// `-<error>`: the server refused this command.
    Error(&'a [u8]),
    /// An array and its items.
    Array(Items<'a>),
}

impl<'a> Reply<'a> {
    /// The server's refusal as the client's error (its kind and code as the client reads
    /// them), or the reply itself.
    pub fn ok(self) -> Result<Reply<'a>, RedisError> {
        match self {
            Reply::Error(line) => Err(server_error(line)),
            other => Ok(other),
        }
    }

    /// A bulk string or status as text (lossless only for UTF-8, which every value callpush
    /// writes is).
    pub fn text(&self) -> Option<std::borrow::Cow<'a, str>> {
        match self {
            Reply::Bulk(b) | Reply::Status(b) => Some(String::from_utf8_lossy(b)),
            _ => None,
        }
    }
}

/// A server's error line (`-WRONGTYPE …`) as the client would have reported it.
pub fn server_error(line: &[u8]) -> RedisError {
    let mut wire = Vec::with_capacity(line.len() + 3);
    wire.push(b'-');
    wire.extend_from_slice(line);
    wire.extend_from_slice(b"\r\n");
    match redis::parse_redis_value(&wire).map(|v| v.extract_error()) {
        Ok(Err(e)) => e,
        _ => RedisError::from((
            redis::ErrorKind::Parse,
            "an error reply the client cannot read",
            String::from_utf8_lossy(line).into_owned(),
        )),
    }
}

/// The reply at `at` and the index after it; `None` on bytes [`reply_end`] would have refused.
fn read(buf: &[u8], at: usize) -> Option<(Reply<'_>, usize)> {
    let line_end = line_end(buf, at)?;
    let line = &buf[at + 1..line_end];
    let next = line_end + 2;
    let reply = match buf.get(at)? {
        b'+' => (Reply::Status(line), next),
        b'-' => (Reply::Error(line), next),
        b':' => (Reply::Int(parse_int(line)?), next),
        b'$' => {
            let len = parse_int(line)?;
            if len < 0 {
                (Reply::Nil, next)
            } else {
                let end = next + len as usize;
                (Reply::Bulk(buf.get(next..end)?), end + 2)
            }
        }
        b'*' => {
            let len = parse_int(line)?;
            if len < 0 {
                (Reply::Nil, next)
            } else {
                let items = Items {
                    buf,
                    at: next,
                    left: len as usize,
                };
                // Where the array ends: after its last item.
                let end = reply_end(buf, at).ok()??;
                (Reply::Array(items), end)
            }
        }
        _ => return None,
    };
    Some(reply)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integer_lines_read_as_redis_writes_them_and_nothing_else() {
        assert_eq!(parse_int(b"0"), Some(0));
        assert_eq!(parse_int(b"1500"), Some(1500));
        assert_eq!(parse_int(b"-1"), Some(-1));
        assert_eq!(parse_int(b"9223372036854775807"), Some(i64::MAX));
        assert_eq!(parse_int(b"-9223372036854775808"), Some(i64::MIN));
        for bad in [
            &b""[..],
            b"-",
            b"12a",
            b" 1",
            b"1.5",
            b"+1",
            b"9223372036854775808",
        ] {
            assert_eq!(parse_int(bad), None, "{:?}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn commands_are_written_as_resp_arrays_of_bulk_strings() {
        let mut c = Commands::with_capacity(64);
        c.command(3)
            .arg("HSETNX")
            .arg_parts(&[b"p:", b"sent:{CA1}"])
            .arg_u64(0);
        c.command(2).arg("GET").arg_u64(18_446_744_073_709_551_615);
        assert_eq!(c.count(), 2);
        assert_eq!(
            &c.into_bytes()[..],
            b"*3\r\n$6\r\nHSETNX\r\n$12\r\np:sent:{CA1}\r\n$1\r\n0\r\n\
              *2\r\n$3\r\nGET\r\n$20\r\n18446744073709551615\r\n"
        );
    }

    #[test]
    fn a_reply_ends_only_once_all_of_it_arrived() {
        let wire = b"*3\r\n:1\r\n$5\r\nhello\r\n*2\r\n$-1\r\n+OK\r\n-ERR no\r\n";
        let first = wire.len() - b"-ERR no\r\n".len();
        assert_eq!(reply_end(wire, 0), Ok(Some(first)));
        assert_eq!(reply_end(wire, first), Ok(Some(wire.len())));
        for cut in 0..first {
            assert_eq!(reply_end(&wire[..cut], 0), Ok(None), "cut at {cut}");
        }
        assert!(reply_end(b"?what\r\n", 0).is_err());
        assert!(reply_end(b"$3\r\nabcd\r\n", 0).is_err());
        assert!(reply_end(b":x1\r\n", 0).is_err());
    }

    #[test]
    fn replies_are_read_in_place() {
        let wire = b"*3\r\n:1\r\n$5\r\nhello\r\n*2\r\n$-1\r\n+OK\r\n-WRONGTYPE Operation against a key\r\n$0\r\n\r\n";
        let replies = Replies::new(Bytes::from_static(wire), 3);
        let mut it = replies.iter();
        let Some(Reply::Array(mut outer)) = it.next() else {
            panic!("an array first")
        };
        assert!(matches!(outer.next(), Some(Reply::Int(1))));
        assert!(matches!(outer.next(), Some(Reply::Bulk(b"hello"))));
        let Some(Reply::Array(mut inner)) = outer.next() else {
            panic!("a nested array")
        };
        assert!(matches!(inner.next(), Some(Reply::Nil)));
        assert!(matches!(inner.next(), Some(Reply::Status(b"OK"))));
        assert!(outer.next().is_none());
        let err = it.next().unwrap().ok().unwrap_err();
        assert_eq!(err.code(), Some("WRONGTYPE"));
        assert!(matches!(it.next(), Some(Reply::Bulk(b""))));
        assert!(it.next().is_none());
    }
}
