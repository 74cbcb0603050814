//! What Hush's two web pages share: the collector's dashboard for ML teams
//! and the agent's page for the person at the laptop.
//!
//! - [`escape`] and [`query_value`]: every string a page interpolates goes
//!   through one of them, so a cohort name or a collector URL can at worst
//!   be text.
//! - [`SECURITY_HEADERS`]: the one policy both pages send with every answer:
//!   no script, no framing, no caching, no sniffing, no referrer to other sites.
//! - [`cookie`] and [`secret`]: reading a cookie from `Cookie` headers, and
//!   the random values sessions, CSRF tokens and one-time links are made of.
//! - [`http`]: a small blocking HTTP/1.1 server, for the agent's page, whose
//!   binary has no async runtime, with [`http::same_user`] to refuse other
//!   users' connections.
//!
//! The pages themselves (their HTML, their routes) live with the program that
//! serves them: `hush-collector`'s `dashboard` and `hush-agent`'s `ui`.

pub mod http;

use std::fmt::Write as _;

use rand::TryRng;

/// The headers every page of both servers carries. The policy allows no
/// script at all (the pages are server-rendered HTML and SVG), styles only
/// from the page's own stylesheet, forms posting only to their own origin,
/// and no framing (`frame-ancestors` and `X-Frame-Options` both, for old
/// browsers). `no-store` keeps a person's numbers and a team's estimates
/// out of the browser's disk cache. The referrer goes to the page's own
/// origin only (`same-origin`, not `no-referrer`): under `no-referrer` a
/// browser sends `Origin: null` with the page's own form posts, and the
/// agent's page refuses a post whose origin is not its own.
pub const SECURITY_HEADERS: [(&str, &str); 5] = [
    (
        "content-security-policy",
        "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    ),
    ("x-frame-options", "DENY"),
    ("cache-control", "no-store"),
    ("x-content-type-options", "nosniff"),
    ("referrer-policy", "same-origin"),
];

/// `s` safe as HTML text and as a double-quoted or single-quoted attribute value.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// `s` percent-encoded as one query-string value (only unreserved bytes stay).
pub fn query_value(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// The value of cookie `name` among `Cookie` header values, if any.
pub fn cookie<'a>(headers: impl IntoIterator<Item = &'a str>, name: &str) -> Option<&'a str> {
    headers
        .into_iter()
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// Whether two secrets are equal, in time that depends only on their
/// lengths: a CSRF token or a one-time link is never compared byte by byte
/// with an early exit a local process could time.
pub fn same_secret(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// The operating system could not give randomness (so no secret is made
/// from anything weaker).
#[derive(Debug, thiserror::Error)]
#[error("no operating-system randomness: {0}")]
pub struct NoRandomness(String);

/// 32 random bytes from the operating system, as 64 hex digits: a session
/// cookie, a CSRF token, a one-time link's secret or an admin token.
pub fn secret() -> Result<String, NoRandomness> {
    let mut bytes = [0u8; 32];
    rand::rngs::SysRng
        .try_fill_bytes(&mut bytes)
        .map_err(|e| NoRandomness(e.to_string()))?;
    Ok(hex::encode(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_leaves_no_markup_and_no_way_out_of_an_attribute() {
        let hostile = r#"<script>alert("x")</script>' onmouseover='y' &amp;"#;
        let e = escape(hostile);
        assert!(!e.contains('<') && !e.contains('>') && !e.contains('"') && !e.contains('\''));
        assert_eq!(
            e,
            "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;&#39; onmouseover=&#39;y&#39; &amp;amp;"
        );
        assert_eq!(query_value("a b&c=d/é"), "a%20b%26c%3Dd%2F%C3%A9");
    }

    #[test]
    fn cookies_are_found_by_exact_name_across_headers() {
        let headers = ["a=1; hush_session=xyz", "hush_session_old=no; b=2"];
        assert_eq!(cookie(headers, "hush_session"), Some("xyz"));
        assert_eq!(cookie(headers, "b"), Some("2"));
        assert_eq!(cookie(headers, "hush"), None);
    }

    #[test]
    fn secrets_are_fresh_hex_and_compare_only_when_equal() {
        let (a, b) = (secret(), secret());
        let (a, b) = (a.as_deref().unwrap_or(""), b.as_deref().unwrap_or(""));
        assert_eq!(a.len(), 64);
        assert!(a.bytes().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, b);
        assert!(same_secret(a, a));
        assert!(!same_secret(a, b));
        assert!(!same_secret(a, &a[..63]));
        assert!(!same_secret("", "x"));
    }
}
