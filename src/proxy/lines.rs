//! Header field lines copied from one head's bytes into another, as they were sent: lines that
//! stand one CRLF apart in the source go across in one copy. A request or an answer that keeps
//! most of its fields thus costs a copy or two, not four small ones per field.

use std::ops::Range;

/// A run of field lines of `src` waiting to be copied.
pub struct Lines<'a> {
    src: &'a [u8],
    run: Range<usize>,
}

impl<'a> Lines<'a> {
    pub fn new(src: &'a [u8]) -> Self {
        Self { src, run: 0..0 }
    }

    /// Copy the field line `span` of `src` (its name's start to its value's end) after those
    /// pushed before it; written to `out` when the run breaks, or by [`Lines::flush`].
    pub fn push(&mut self, out: &mut Vec<u8>, span: Range<usize>) {
        if !self.run.is_empty() && self.src.get(self.run.end..span.start) == Some(b"\r\n") {
            self.run.end = span.end;
            return;
        }
        self.flush(out);
        self.run = span;
    }

    /// Write the run, each line ended by CRLF.
    pub fn flush(&mut self, out: &mut Vec<u8>) {
        if !self.run.is_empty() {
            out.extend_from_slice(&self.src[self.run.clone()]);
            out.extend_from_slice(b"\r\n");
            self.run = 0..0;
        }
    }
}

/// Where `part` lies in `whole`, which holds it.
pub fn span_of(whole: &[u8], part: &[u8]) -> Range<usize> {
    let start = part.as_ptr() as usize - whole.as_ptr() as usize;
    start..start + part.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_next_to_each_other_go_in_one_copy_and_gaps_break_the_run() {
        let src = b"A: 1\r\nB: 2\r\nC: 3  \r\nD: 4\nE: 5\r\n";
        let line = |s: &str| {
            let at = src
                .windows(s.len())
                .position(|w| w == s.as_bytes())
                .unwrap();
            at..at + s.len()
        };
        let mut out = Vec::new();
        let mut lines = Lines::new(src);
        for s in ["A: 1", "B: 2", "C: 3", "D: 4", "E: 5"] {
            lines.push(&mut out, line(s));
        }
        // "C: 3" ends before its trailing spaces, "D: 4" with a bare LF: each breaks a run.
        assert_eq!(out, b"A: 1\r\nB: 2\r\nC: 3\r\nD: 4\r\n");
        lines.flush(&mut out);
        assert_eq!(out, b"A: 1\r\nB: 2\r\nC: 3\r\nD: 4\r\nE: 5\r\n");
        // A line left out splits the run around it.
        let mut out = Vec::new();
        let mut lines = Lines::new(src);
        lines.push(&mut out, line("A: 1"));
        lines.push(&mut out, line("C: 3"));
        lines.flush(&mut out);
        assert_eq!(out, b"A: 1\r\nC: 3\r\n");
        assert_eq!(span_of(src, &src[6..10]), 6..10);
    }
}
