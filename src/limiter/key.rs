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
//! copied into a `Box<str>` only when a new entry is inserted.

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

    /// Writes the display form (parts joined by `|`) into `out`.
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

/// A reusable, stack-first buffer holding a key's display form.
#[derive(Debug, Default)]
pub struct DisplayBuf {
    bytes: SmallVec<[u8; 128]>,
}

impl DisplayBuf {
    /// Replaces the contents with `key`'s display form.
    pub fn fill(&mut self, key: &Key<'_>) {
        self.bytes.clear();
        // Writing into memory cannot fail.
        let _ = key.write_display(self);
    }

    /// The display form. Only `&str`s are ever written, so the bytes are UTF-8.
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.bytes).unwrap_or_default()
    }

    /// The raw display bytes, for hashing.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }
}

impl fmt::Write for DisplayBuf {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.bytes.extend_from_slice(s.as_bytes());
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
