//! A request's header fields as the limit step reads them: an `http::HeaderMap`, or the fields
//! as the lean HTTP/1.1 parser found them in the head's bytes, before any map is built.
//!
//! A request denied on the lean path never builds its `HeaderMap` (hashing every name, checking
//! every value again, and dropping it all): about 1,000 instructions of a 429's 8,400.

use http::{HeaderMap, HeaderName};

/// Header fields, looked up by name.
pub trait Fields {
    /// The first value of `name`, as sent.
    fn first(&self, name: &HeaderName) -> Option<&[u8]>;

    /// Every value of `name`, in the order sent.
    fn each<'s>(&'s self, name: &HeaderName, f: &mut dyn FnMut(&'s [u8]));
}

/// The first value of `name` as text, when it is visible ASCII (tabs allowed), as
/// `HeaderValue::to_str` takes it.
pub fn text<'s>(fields: &'s dyn Fields, name: &HeaderName) -> Option<&'s str> {
    as_text(fields.first(name)?)
}

/// `value` as text, when it is visible ASCII (tabs allowed), as `HeaderValue::to_str` takes it.
pub fn as_text(value: &[u8]) -> Option<&str> {
    // Folded without stopping early, so it runs on whole vectors (as `HeaderValue`'s check).
    let visible = value.iter().fold(true, |ok, &b| {
        ok & ((b.wrapping_sub(0x20) < 0x5f) | (b == b'\t'))
    });
    visible.then(|| std::str::from_utf8(value).ok()).flatten()
}

impl Fields for HeaderMap {
    fn first(&self, name: &HeaderName) -> Option<&[u8]> {
        self.get(name).map(|v| v.as_bytes())
    }

    fn each<'s>(&'s self, name: &HeaderName, f: &mut dyn FnMut(&'s [u8])) {
        for v in self.get_all(name) {
            f(v.as_bytes());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    #[test]
    fn text_takes_what_header_value_to_str_takes() {
        for bytes in [&b"plain"[..], b"tab\there", b"caf\xc3\xa9", b"", b" x "] {
            let value = HeaderValue::from_bytes(bytes).unwrap();
            assert_eq!(as_text(bytes), value.to_str().ok(), "{bytes:?}");
        }
    }

    #[test]
    fn a_header_map_gives_its_first_and_every_value() {
        let mut map = HeaderMap::new();
        map.append("x-a", HeaderValue::from_static("1"));
        map.append("x-a", HeaderValue::from_static("2"));
        let name = HeaderName::from_static("x-a");
        assert_eq!(map.first(&name), Some(&b"1"[..]));
        let mut all = Vec::new();
        map.each(&name, &mut |v| all.push(v));
        assert_eq!(all, [&b"1"[..], b"2"]);
        assert_eq!(text(&map, &HeaderName::from_static("x-b")), None);
    }
}
