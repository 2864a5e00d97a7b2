//! Query strings decoded the way browsers encode them and Django reads
//! them: `+` and `%20` are spaces, `%XX` is a byte, pairs keep their order
//! and repeated keys are all kept.

/// Decodes `a=1&b=x+y&a=2` into `[("a","1"), ("b","x y"), ("a","2")]`.
/// A key without `=` has an empty value; invalid UTF-8 is replaced with
/// U+FFFD rather than failing the request.
pub fn parse(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (decode(k), decode(v))
        })
        .collect()
}

/// Percent-decodes one component, with `+` as a space.
pub fn decode(text: &str) -> String {
    decode_with(text, true)
}

/// Percent-decodes a path segment: `+` stays `+` there.
pub fn decode_path(text: &str) -> String {
    decode_with(text, false)
}

fn decode_with(text: &str, plus_is_space: bool) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' if plus_is_space => out.push(b' '),
            b'%' if i + 2 < bytes.len() => match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push(h << 4 | l);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_like_django() {
        assert_eq!(
            parse("a=1&b=x+y&a=2&c=%20z%2B&d"),
            vec![
                ("a".into(), "1".into()),
                ("b".into(), "x y".into()),
                ("a".into(), "2".into()),
                ("c".into(), " z+".into()),
                ("d".into(), "".into()),
            ]
        );
        assert_eq!(decode("%E2%9C%93"), "✓");
        assert_eq!(decode("100%"), "100%");
        assert_eq!(decode("%4"), "%4");
        assert_eq!(decode("%zz"), "%zz");
        assert_eq!(decode("%ff"), "\u{fffd}");
        assert_eq!(decode_path("a+b%20c"), "a+b c");
    }
}
