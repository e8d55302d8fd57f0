//! Replies from the outside, read with a bound that fits their purpose: a token endpoint or a
//! call endpoint that streams without end must not take the device's memory with it.

/// A token reply is a few hundred bytes of JSON (a session object at most a few KiB).
pub const TOKEN_REPLY_LIMIT: usize = 64 * 1024;
/// An SDP answer is a few KiB.
pub const SDP_ANSWER_LIMIT: usize = 64 * 1024;

/// Why a reply could not be read.
#[derive(Debug)]
pub enum BodyError {
    /// Longer than the limit (in bytes): the reading stopped there.
    TooLarge(usize),
    Read(reqwest::Error),
}

impl std::fmt::Display for BodyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BodyError::TooLarge(limit) => {
                write!(f, "the reply is larger than {} KiB", limit / 1024)
            }
            BodyError::Read(e) => write!(f, "{}", super::error::error_chain(e)),
        }
    }
}

/// The `Retry-After` header, if the reply has one (read before the body consumes the reply).
pub fn retry_after_header(response: &reqwest::Response) -> Option<String> {
    response
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

/// Reads `response`'s body, refusing it once it passes `limit` bytes.
pub async fn read_limited(
    mut response: reqwest::Response,
    limit: usize,
) -> Result<Vec<u8>, BodyError> {
    if response.content_length().is_some_and(|n| n > limit as u64) {
        return Err(BodyError::TooLarge(limit));
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(BodyError::Read)? {
        if body.len() + chunk.len() > limit {
            return Err(BodyError::TooLarge(limit));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}
