//! Percent-encoding of a URL component (a query parameter's value): every byte but RFC 3986's
//! unreserved characters (`A-Z a-z 0-9 - . _ ~`) becomes `%XX`.

/// `s` percent-encoded for use as one URL component.
pub fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push('%');
            out.push(char::from(b"0123456789ABCDEF"[usize::from(b >> 4)]));
            out.push(char::from(b"0123456789ABCDEF"[usize::from(b & 15)]));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_unreserved_and_encodes_the_rest() {
        assert_eq!(encode("a-Z_0.~"), "a-Z_0.~");
        assert_eq!(
            encode("sum(rate(x[1m])) > 0"),
            "sum%28rate%28x%5B1m%5D%29%29%20%3E%200"
        );
        assert_eq!(
            encode("bl=6000,sid=\"é\""),
            "bl%3D6000%2Csid%3D%22%C3%A9%22"
        );
    }
}
