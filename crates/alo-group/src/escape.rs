//! Text from clients, as a log line may show it: a key with a newline in it must not start a
//! line of its own in the node's log.

use std::fmt::{self, Display, Write as _};

/// The most bytes of one value a log line shows; the rest is counted, not written.
const MAX_SHOWN: usize = 256;

/// `bytes` (a key, a path) for a log line: printable UTF-8 as it is; control characters (Unicode's,
/// the line and paragraph separators included) as `\n`, `\r`, `\t`, `\0` or `\u{..}`; a backslash
/// as `\\`; bytes that are not UTF-8 as `\x..`. At most 256 bytes are shown, then how many more
/// there were. Nothing a client sends can so forge a log line, or fill the log.
///
/// ```
/// assert_eq!(alo_group::escape_bytes(b"a\nb\0\xff").to_string(), r"a\nb\0\xff");
/// ```
pub fn escape_bytes(bytes: &[u8]) -> impl Display + '_ {
    EscapedBytes(bytes)
}

/// `value`'s text escaped as [`escape_bytes`] escapes bytes (and cut at as many): for an error
/// whose message holds a key, a path or a peer's words.
///
/// ```
/// let error = std::io::Error::other("no file a\nWARN forged");
/// assert_eq!(alo_group::escape(&error).to_string(), r"no file a\nWARN forged");
/// ```
pub fn escape<T: Display + ?Sized>(value: &T) -> impl Display + '_ {
    EscapedDisplay(value)
}

struct EscapedBytes<'a>(&'a [u8]);

impl Display for EscapedBytes<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut out = Escaper::new(f);
        for chunk in self.0.utf8_chunks() {
            out.write_str(chunk.valid())?;
            for &byte in chunk.invalid() {
                out.byte(byte)?;
            }
        }
        out.finish()
    }
}

struct EscapedDisplay<'a, T: ?Sized>(&'a T);

impl<T: Display + ?Sized> Display for EscapedDisplay<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut out = Escaper::new(f);
        write!(out, "{}", self.0)?;
        out.finish()
    }
}

/// Writes escaped text into a formatter, counting what it leaves out past [`MAX_SHOWN`].
struct Escaper<'a, 'b> {
    f: &'a mut fmt::Formatter<'b>,
    shown: usize,
    left_out: usize,
}

impl<'a, 'b> Escaper<'a, 'b> {
    fn new(f: &'a mut fmt::Formatter<'b>) -> Self {
        Escaper {
            f,
            shown: 0,
            left_out: 0,
        }
    }

    /// Whether `len` more bytes of input may be shown; counts them as left out if not.
    fn room(&mut self, len: usize) -> bool {
        if self.left_out > 0 || self.shown + len > MAX_SHOWN {
            self.left_out += len;
            return false;
        }
        self.shown += len;
        true
    }

    /// A byte that is not UTF-8.
    fn byte(&mut self, byte: u8) -> fmt::Result {
        if self.room(1) {
            write!(self.f, "\\x{byte:02x}")?;
        }
        Ok(())
    }

    fn finish(self) -> fmt::Result {
        if self.left_out > 0 {
            write!(self.f, "…({} more bytes)", self.left_out)?;
        }
        Ok(())
    }
}

impl fmt::Write for Escaper<'_, '_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for c in s.chars() {
            if !self.room(c.len_utf8()) {
                continue;
            }
            match c {
                '\n' => self.f.write_str("\\n")?,
                '\r' => self.f.write_str("\\r")?,
                '\t' => self.f.write_str("\\t")?,
                '\0' => self.f.write_str("\\0")?,
                '\\' => self.f.write_str("\\\\")?,
                c if c.is_control() || matches!(c, '\u{2028}' | '\u{2029}') => {
                    write!(self.f, "\\u{{{:x}}}", u32::from(c))?;
                }
                c => self.f.write_char(c)?,
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_never_reach_the_line() {
        let key = "x\n2026-12-06T00:00:00Z  WARN forged\r\x1b[31m\u{85}\u{2028}é\\";
        let shown = escape_bytes(key.as_bytes()).to_string();
        assert_eq!(
            shown,
            r"x\n2026-12-06T00:00:00Z  WARN forged\r\u{1b}[31m\u{85}\u{2028}é\\"
        );
        assert!(!shown.chars().any(char::is_control));
        assert_eq!(escape(&key).to_string(), shown);
    }

    #[test]
    fn long_values_are_cut_with_a_count() {
        let key = vec![b'k'; 1000];
        let shown = escape_bytes(&key).to_string();
        assert_eq!(shown, format!("{}…(744 more bytes)", "k".repeat(256)));
        let bad = vec![0xff; 300];
        let shown = escape_bytes(&bad).to_string();
        assert_eq!(shown, format!("{}…(44 more bytes)", r"\xff".repeat(256)));
    }
}
