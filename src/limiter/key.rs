//! Rate-limit keys: what a request is counted as.
//!
//! Owns [`Key`] (borrowed parts extracted from a request), its display form, and how a key is
//! hashed into the table's `u64`. Must not touch requests, headers or config: the proxy extracts
//! the parts, this module only names them.
//!
//! # Identity
//! A key's identity within a rule is its list of parts. The table hashes `(rule_id, parts)` with a
//! per-process random seed, each part fed in tagged and length-prefixed (strings as their bytes,
//! IPv4 as its 4 raw bytes, IPv6 as its 16), so the hash never needs the display: parts
//! `["a|b"]` and `["a", "b"]` are distinct keys, as are `Str("10.0.0.1")` and that IP.
//!
//! The display (parts joined by `|`, IPs in their usual text form) is what people see: it is
//! stored in the entry for the admin plane, matched by per-key overrides, and accepted by
//! [`crate::limiter::Limiter::reset_key`]. Two distinct keys can share a display; both then get
//! the same override. The display is formatted into a [`DisplayBuf`] on the stack (heap only past
//! 128 bytes) only when an entry is inserted or the rule has overrides: an existing key under a
//! rule without overrides costs one foldhash of its raw parts and one map lookup.

use std::fmt;
use std::hash::{BuildHasher, Hasher};
use std::net::IpAddr;

use smallvec::SmallVec;

/// One part of a key, borrowed from the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyPart<'a> {
    /// A header value, path parameter, API key...
    Str(&'a str),
    /// A client address.
    Ip(IpAddr),
}

/// The shared bucket for requests that carry no key of their own.
pub const ANONYMOUS: KeyPart<'static> = KeyPart::Str("*anonymous*");

/// Display of the per-rule bucket used once the table is full (see `table.rs`).
pub const OVERFLOW: &str = "*overflow*";

/// The parts a request is counted by; three fit without allocating.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Key<'a> {
    parts: SmallVec<[KeyPart<'a>; 3]>,
}

impl<'a> Key<'a> {
    /// A key with no parts yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// A key of exactly one part.
    pub fn single(part: KeyPart<'a>) -> Self {
        let mut key = Self::new();
        key.push(part);
        key
    }

    /// Appends a part.
    pub fn push(&mut self, part: KeyPart<'a>) {
        self.parts.push(part);
    }

    /// Whether no part was extracted (the caller usually falls back to [`ANONYMOUS`]).
    pub fn is_empty(&self) -> bool {
        self.parts.is_empty()
    }

    /// The parts, in order.
    pub fn parts(&self) -> &[KeyPart<'a>] {
        &self.parts
    }

    /// Writes the display form (parts joined by `|`) into `out`, through `fmt`: the general path;
    /// the table fills a [`DisplayBuf`] without `fmt` for the common parts.
    pub fn write_display(&self, out: &mut impl fmt::Write) -> fmt::Result {
        for (i, part) in self.parts.iter().enumerate() {
            if i > 0 {
                out.write_char('|')?;
            }
            match part {
                KeyPart::Str(s) => out.write_str(s)?,
                KeyPart::Ip(ip) => write!(out, "{ip}")?,
            }
        }
        Ok(())
    }

    /// The display form, allocated: only for a new table entry or the admin plane.
    pub fn to_display(&self) -> Box<str> {
        let mut buf = DisplayBuf::default();
        buf.fill(self);
        buf.as_str().into()
    }
}

/// Display bytes kept on the stack; longer displays move to the heap.
const INLINE: usize = 128;

/// A reusable, stack-first buffer holding a key's display form.
#[derive(Debug)]
pub struct DisplayBuf {
    /// The display while it fits, so a lookup never allocates.
    inline: [u8; INLINE],
    len: usize,
    /// The whole display once it outgrows `inline` (empty, unallocated, until then).
    long: Vec<u8>,
}

impl Default for DisplayBuf {
    fn default() -> Self {
        Self {
            inline: [0; INLINE],
            len: 0,
            long: Vec::new(),
        }
    }
}

impl DisplayBuf {
    /// Replaces the contents with `key`'s display form: the same text as
    /// [`Key::write_display`], with strings copied and IPv4 addresses formatted by hand (the hot
    /// path: `fmt` machinery costs more than the rest of a lookup). IPv6 goes through `fmt`.
    pub fn fill(&mut self, key: &Key<'_>) {
        self.len = 0;
        self.long.clear();
        for (i, part) in key.parts.iter().enumerate() {
            if i > 0 {
                self.push(b"|");
            }
            match part {
                KeyPart::Str(s) => self.push(s.as_bytes()),
                KeyPart::Ip(IpAddr::V4(ip)) => self.push_ipv4(ip.octets()),
                KeyPart::Ip(ip) => {
                    // Writing into memory cannot fail.
                    let _ = fmt::Write::write_fmt(self, format_args!("{ip}"));
                }
            }
        }
    }

    /// Appends `bytes`, moving to the heap once past [`INLINE`].
    fn push(&mut self, bytes: &[u8]) {
        let end = self.len + bytes.len();
        match self.inline.get_mut(self.len..end) {
            Some(dst) => dst.copy_from_slice(bytes),
            None => {
                if self.long.is_empty() {
                    self.long.extend_from_slice(&self.inline[..self.len]);
                }
                self.long.extend_from_slice(bytes);
            }
        }
        self.len = end;
    }

    /// Appends `a.b.c.d`, each octet in decimal without leading zeros (as `Ipv4Addr`'s
    /// `Display`).
    fn push_ipv4(&mut self, octets: [u8; 4]) {
        let mut text = [0u8; 15];
        let mut len = 0;
        for (i, o) in octets.into_iter().enumerate() {
            if i > 0 {
                text[len] = b'.';
                len += 1;
            }
            if o >= 100 {
                text[len] = b'0' + o / 100;
                len += 1;
            }
            if o >= 10 {
                text[len] = b'0' + o / 10 % 10;
                len += 1;
            }
            text[len] = b'0' + o % 10;
            len += 1;
        }
        self.push(&text[..len]);
    }

    /// The display form. Only `&str`s are ever written, so the bytes are UTF-8.
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(self.as_bytes()).unwrap_or_default()
    }

    /// The raw display bytes, for hashing.
    pub fn as_bytes(&self) -> &[u8] {
        self.inline.get(..self.len).unwrap_or(&self.long)
    }
}

impl fmt::Write for DisplayBuf {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.push(s.as_bytes());
        Ok(())
    }
}

/// Part tags, in the top byte of a part's first hashed word, so that no two part lists (nor a
/// client key and the overflow bucket) feed the hasher the same words.
const TAG_STR: u64 = 1 << 56;
const TAG_V4: u64 = 2 << 56;
const TAG_V6: u64 = 3 << 56;
const TAG_OVERFLOW: u64 = 0xFF << 56;
const TAG_EMPTY: u64 = 0;

/// Two words as one `u128`, `low` in the low half.
fn pair(low: u64, high: u64) -> u128 {
    u128::from(low) | (u128::from(high) << 64)
}

impl Key<'_> {
    /// The table hash of this client key under `rule_id`, from its raw parts (no display).
    ///
    /// Each part is one tagged word (the IPv4 address, or the string's length, or just the tag
    /// for IPv6), fed paired with the rule id (first part) or 0 as one `u128`, then its string
    /// bytes or IPv6 bits: one multiply for a lone IPv4 part.
    pub fn table_hash(&self, state: &impl BuildHasher, rule_id: u64) -> u64 {
        let mut h = state.build_hasher();
        let mut low = rule_id;
        for part in &self.parts {
            let word = match part {
                KeyPart::Ip(IpAddr::V4(ip)) => TAG_V4 | u64::from(ip.to_bits()),
                KeyPart::Ip(IpAddr::V6(_)) => TAG_V6,
                KeyPart::Str(s) => TAG_STR | s.len() as u64,
            };
            h.write_u128(pair(low, word));
            low = 0;
            match part {
                KeyPart::Ip(IpAddr::V4(_)) => {}
                KeyPart::Ip(IpAddr::V6(ip)) => h.write_u128(ip.to_bits()),
                KeyPart::Str(s) => h.write(s.as_bytes()),
            }
        }
        if self.parts.is_empty() {
            h.write_u128(pair(rule_id, TAG_EMPTY));
        }
        // The part count goes through the sponge, so `finish` multiplies once more: a single
        // multiply of a constant by a word whose high half is fixed (an IPv4 address) leaves the
        // hash nearly linear in the address (sequential IPs spread over shards with visibly
        // regular counts), and hashbrown takes its bucket from the low bits and tag from the top.
        h.write_u64(self.parts.len() as u64);
        h.finish()
    }

    /// The usual key behind a display: split on `|`, parts that parse as IPs taken as IPs. The
    /// admin plane's way back from a display to a hash (see `Limiter::reset_key`).
    pub fn parse_display(display: &str) -> Key<'_> {
        let mut key = Key::new();
        for part in display.split('|') {
            key.push(match part.parse::<IpAddr>() {
                Ok(ip) => KeyPart::Ip(ip),
                Err(_) => KeyPart::Str(part),
            });
        }
        key
    }
}

/// The table hash of a rule's shared overflow bucket.
pub fn overflow_hash(state: &impl BuildHasher, rule_id: u64) -> u64 {
    let mut h = state.build_hasher();
    h.write_u128(pair(rule_id, TAG_OVERFLOW));
    h.write_u64(0);
    h.finish()
}

#[cfg(test)]
#[path = "key_tests.rs"]
mod tests;
