//! Rate-limit keys: what a request is counted as.
//!
//! Owns [`Key`] (borrowed parts extracted from a request), its display form, and how a key is
//! hashed into the table's `u64`. Must not touch requests, headers or config: the proxy extracts
//! the parts, this module only names them.
//!
//! # Identity
//! A key's identity within a rule is its display string: parts joined by `|`, IPs in their usual
//! text form. The table hashes `(rule_id, display)` with a per-process random seed, so the same
//! identity is reachable from the admin plane ([`crate::limiter::Limiter::reset_key`]) and from
//! per-key overrides, which are keyed by display too. A consequence: parts `["a|b"]` and
//! `["a", "b"]` are the same key; key sources should not rely on telling them apart.
//!
//! The display is formatted into a [`DisplayBuf`] on the stack (heap only past 128 bytes), and is
//! copied into the entry (see `entry.rs`) only when a new entry is inserted. Strings are copied
//! and IPv4 addresses formatted by hand, without `fmt`: an existing key costs the formatting, one
//! foldhash of ~15 bytes and one map lookup.

use std::fmt;
use std::hash::{BuildHasher, Hash, Hasher};
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

/// Domain tags, so the overflow bucket never shares a hash with a client key that displays the same.
const DOMAIN_KEY: u8 = 0;
const DOMAIN_OVERFLOW: u8 = 1;

/// The table hash of a client key: `(rule_id, display)` under the process seed.
pub fn key_hash(state: &impl BuildHasher, rule_id: u64, display: &[u8]) -> u64 {
    hash_in_domain(state, DOMAIN_KEY, rule_id, display)
}

/// The table hash of a rule's shared overflow bucket.
pub fn overflow_hash(state: &impl BuildHasher, rule_id: u64) -> u64 {
    hash_in_domain(state, DOMAIN_OVERFLOW, rule_id, OVERFLOW.as_bytes())
}

fn hash_in_domain(state: &impl BuildHasher, domain: u8, rule_id: u64, display: &[u8]) -> u64 {
    let mut h = state.build_hasher();
    h.write_u8(domain);
    h.write_u64(rule_id);
    display.hash(&mut h);
    h.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    #[test]
    fn display_joins_parts_with_bar() {
        let mut key = Key::single(KeyPart::Str("tenant-a"));
        key.push(KeyPart::Ip(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1))));
        assert_eq!(&*key.to_display(), "tenant-a|10.0.0.1");
        assert!(!key.is_empty());
        assert!(Key::new().is_empty());
    }

    #[test]
    fn fill_matches_fmt_display() {
        let v6 = "2001:db8::ff00:42:8329".parse().unwrap();
        let mut buf = DisplayBuf::default();
        for octets in [
            [0, 0, 0, 0],
            [255, 255, 255, 255],
            [10, 9, 100, 99],
            [1, 20, 199, 0],
        ] {
            let ip = Ipv4Addr::from(octets);
            let key = Key::single(KeyPart::Ip(IpAddr::V4(ip)));
            buf.fill(&key);
            assert_eq!(buf.as_str(), ip.to_string());
        }
        let mut key = Key::single(KeyPart::Ip(IpAddr::V4(Ipv4Addr::new(192, 168, 0, 1))));
        key.push(KeyPart::Str("tenant"));
        key.push(KeyPart::Ip(IpAddr::V6(v6)));
        buf.fill(&key);
        let mut via_fmt = String::new();
        key.write_display(&mut via_fmt).unwrap();
        assert_eq!(buf.as_str(), via_fmt);
        assert_eq!(via_fmt, "192.168.0.1|tenant|2001:db8::ff00:42:8329");
        let long = "x".repeat(200);
        let mut key = Key::single(KeyPart::Str(&long[..100]));
        key.push(KeyPart::Str(&long[100..]));
        buf.fill(&key);
        assert_eq!(buf.as_str().len(), 201);
        assert_eq!(buf.as_str(), key.to_display().as_ref());
        buf.fill(&Key::single(KeyPart::Str("short")));
        assert_eq!(buf.as_str(), "short");
    }

    #[test]
    fn hash_depends_on_rule_and_domain() {
        let state = foldhash::fast::RandomState::default();
        let a = key_hash(&state, 1, b"x");
        assert_eq!(a, key_hash(&state, 1, b"x"));
        assert_ne!(a, key_hash(&state, 2, b"x"));
        assert_ne!(
            key_hash(&state, 1, OVERFLOW.as_bytes()),
            overflow_hash(&state, 1)
        );
    }
}
