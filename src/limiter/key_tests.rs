//! Unit tests of key displays and table hashes.

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
fn hash_depends_on_rule_and_parts_not_display() {
    let state = foldhash::fast::SeedableRandomState::random();
    let a = Key::single(KeyPart::Str("x"));
    assert_eq!(a.table_hash(&state, 1), a.clone().table_hash(&state, 1));
    assert_ne!(a.table_hash(&state, 1), a.table_hash(&state, 2));
    let overflow = Key::single(KeyPart::Str(OVERFLOW));
    assert_ne!(overflow.table_hash(&state, 1), overflow_hash(&state, 1));
    assert_ne!(Key::new().table_hash(&state, 1), overflow_hash(&state, 1));
    // Same display, different parts: different keys.
    let joined = Key::single(KeyPart::Str("a|b"));
    let mut split = Key::single(KeyPart::Str("a"));
    split.push(KeyPart::Str("b"));
    assert_eq!(joined.to_display(), split.to_display());
    assert_ne!(joined.table_hash(&state, 1), split.table_hash(&state, 1));
    let ip = Key::single(KeyPart::Ip(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1))));
    let text = Key::single(KeyPart::Str("10.0.0.1"));
    assert_ne!(ip.table_hash(&state, 1), text.table_hash(&state, 1));
    let mut ab = Key::single(KeyPart::Str("ab"));
    ab.push(KeyPart::Str(""));
    let mut a_b = Key::single(KeyPart::Str("a"));
    a_b.push(KeyPart::Str("b"));
    assert_ne!(ab.table_hash(&state, 1), a_b.table_hash(&state, 1));
}

#[test]
fn parse_display_reads_ips_back() {
    let v6: IpAddr = "2001:db8::1".parse().unwrap();
    let mut key = Key::single(KeyPart::Str("tenant"));
    key.push(KeyPart::Ip(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1))));
    key.push(KeyPart::Ip(v6));
    let display = key.to_display();
    let parsed = Key::parse_display(&display);
    assert_eq!(parsed.parts(), key.parts());
}
