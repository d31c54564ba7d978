//! Text helpers the whole core shares: values clipped for messages, DNS-name syntax.

/// A value quoted in a message, cut short: messages name the fault, not whole inputs.
pub fn clip(value: &str) -> String {
    clip_to(value, 64)
}

/// `value`, cut after `max` characters with a marker.
pub fn clip_to(value: &str, max: usize) -> String {
    match value.char_indices().nth(max) {
        None => value.to_owned(),
        Some((end, _)) => format!("{}...", &value[..end]),
    }
}

/// An RFC 1123 DNS name: dot-separated labels of letters, digits and inner hyphens, 1-63 bytes
/// each, 253 in all.
pub fn is_dns_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}
