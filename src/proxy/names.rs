//! Header names seen before, per thread. Making a `HeaderName` from a field's bytes lowercases
//! and checks them, and a name outside the standard set is copied into an allocation of its own
//! (freed with the message). A client or an upstream sends the same few names, spelled the same
//! way, on every message: a name seen before is a comparison and a reference count instead.
//!
//! Bounded: [`SLOTS`] names of at most [`LONGEST`] bytes per thread, replaced in turn once full,
//! so a peer sending ever new names costs a lookup more per name and never more memory.

use std::cell::RefCell;

use http::header::{HeaderName, InvalidHeaderName};

/// Names kept per thread.
const SLOTS: usize = 32;
/// Longer names are made anew every time.
const LONGEST: usize = 32;

struct Seen {
    len: u8,
    raw: [u8; LONGEST],
    name: HeaderName,
}

impl Seen {
    fn raw(&self) -> &[u8] {
        &self.raw[..usize::from(self.len)]
    }
}

struct Names {
    seen: Vec<Seen>,
    /// The slot the next new name replaces once `seen` is full.
    next: usize,
}

thread_local! {
    static NAMES: RefCell<Names> = const { RefCell::new(Names { seen: Vec::new(), next: 0 }) };
}

/// The `HeaderName` for a field name as received, as `HeaderName::from_bytes` makes it.
pub fn header_name(raw: &[u8]) -> Result<HeaderName, InvalidHeaderName> {
    if raw.len() > LONGEST {
        return HeaderName::from_bytes(raw);
    }
    NAMES.with_borrow_mut(|names| names.get(raw))
}

impl Names {
    fn get(&mut self, raw: &[u8]) -> Result<HeaderName, InvalidHeaderName> {
        if let Some(seen) = self.seen.iter().find(|s| s.raw() == raw) {
            return Ok(seen.name.clone());
        }
        let name = HeaderName::from_bytes(raw)?;
        let mut copy = [0u8; LONGEST];
        copy[..raw.len()].copy_from_slice(raw);
        let seen = Seen {
            len: raw.len() as u8,
            raw: copy,
            name: name.clone(),
        };
        if self.seen.len() < SLOTS {
            self.seen.push(seen);
        } else {
            self.seen[self.next] = seen;
            self.next = (self.next + 1) % SLOTS;
        }
        Ok(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_kept_name_is_the_name_from_bytes_makes() {
        for raw in [
            "X-Api-Key",
            "x-api-key",
            "Host",
            "content-length",
            "X-Custom",
        ] {
            for _ in 0..2 {
                assert_eq!(
                    header_name(raw.as_bytes()).unwrap(),
                    HeaderName::from_bytes(raw.as_bytes()).unwrap()
                );
            }
        }
        assert!(header_name(b"Bad Name").is_err());
        assert!(header_name(b"Bad Name").is_err(), "an error is not kept");
        let long = "x-".repeat(40);
        assert_eq!(header_name(long.as_bytes()).unwrap().as_str(), long);
    }

    #[test]
    fn past_its_slots_the_oldest_names_are_replaced() {
        let mut names = Names {
            seen: Vec::new(),
            next: 0,
        };
        for i in 0..SLOTS * 3 {
            let raw = format!("X-Name-{i}");
            assert_eq!(
                names.get(raw.as_bytes()).unwrap().as_str(),
                raw.to_lowercase()
            );
            assert!(names.seen.len() <= SLOTS);
        }
        assert_eq!(names.seen.len(), SLOTS);
        // The last SLOTS names are the ones kept.
        let kept: Vec<String> = names
            .seen
            .iter()
            .map(|s| String::from_utf8(s.raw().to_vec()).unwrap())
            .collect();
        for i in SLOTS * 2..SLOTS * 3 {
            assert!(kept.contains(&format!("X-Name-{i}")), "{i}: {kept:?}");
        }
    }
}
