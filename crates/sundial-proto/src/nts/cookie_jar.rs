//! The client's cookie jar (RFC 8915 section 5.7): each cookie is used once,
//! and placeholders ask the server to refill the jar to its capacity.

use std::collections::VecDeque;

/// How many cookies a client keeps, and a KE server hands out.
pub const JAR_CAPACITY: usize = 8;
/// Longest cookie a client accepts from a server (chrony's limit is 256;
/// sundial's own longest, for AES-SIV-CMAC-512, is 168).
pub const MAX_COOKIE_LEN: usize = 512;

/// Why a cookie was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CookieRejected {
    #[error("empty cookie")]
    Empty,
    #[error("cookie of {0} bytes exceeds the limit")]
    TooLong(usize),
    #[error("cookie jar is full")]
    Full,
}

#[derive(Clone, Default)]
pub struct CookieJar {
    cookies: VecDeque<Vec<u8>>,
}

impl std::fmt::Debug for CookieJar {
    // Cookies are bearer tokens for the keys they carry: count, don't print.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CookieJar")
            .field("len", &self.cookies.len())
            .finish()
    }
}

impl CookieJar {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn len(&self) -> usize {
        self.cookies.len()
    }

    pub fn is_empty(&self) -> bool {
        self.cookies.is_empty()
    }

    /// Stores a cookie; refuses empty, oversized ones, and any beyond the
    /// capacity (a server that sends more than asked is not trusted to fill
    /// memory).
    pub fn push(&mut self, cookie: &[u8]) -> Result<(), CookieRejected> {
        if cookie.is_empty() {
            return Err(CookieRejected::Empty);
        }
        if cookie.len() > MAX_COOKIE_LEN {
            return Err(CookieRejected::TooLong(cookie.len()));
        }
        if self.cookies.len() >= JAR_CAPACITY {
            return Err(CookieRejected::Full);
        }
        self.cookies.push_back(cookie.to_vec());
        Ok(())
    }

    /// Takes the oldest cookie for one request; it is never used again.
    pub fn take(&mut self) -> Option<Vec<u8>> {
        self.cookies.pop_front()
    }

    /// How many placeholders a request should carry, after taking its
    /// cookie, so that the response brings the jar back to capacity.
    pub fn placeholders_wanted(&self) -> usize {
        JAR_CAPACITY.saturating_sub(self.cookies.len() + 1)
    }

    pub fn clear(&mut self) {
        self.cookies.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jar_rules() {
        let mut jar = CookieJar::new();
        assert_eq!(jar.push(&[]), Err(CookieRejected::Empty));
        assert_eq!(jar.push(&[0; 513]), Err(CookieRejected::TooLong(513)));
        for i in 0..8u8 {
            jar.push(&[i; 100]).unwrap();
        }
        assert_eq!(jar.push(&[9; 100]), Err(CookieRejected::Full));
        assert_eq!(jar.take(), Some(vec![0; 100]));
        // 7 left after taking this request's cookie: the one new cookie
        // the response brings makes 8, so no placeholder.
        assert_eq!(jar.placeholders_wanted(), 0);
        for _ in 0..5 {
            jar.take();
        }
        assert_eq!(jar.len(), 2);
        // 2 left: 1 + 5 placeholders bring it back to 8
        assert_eq!(jar.placeholders_wanted(), 5);
    }
}
