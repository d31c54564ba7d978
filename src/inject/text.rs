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

/// The variables a value refers to as Kubernetes `$(NAME)` references, which the kubelet expands
/// when the container starts from the variables defined before it (`$$(NAME)` is an escaped,
/// literal `$(NAME)`).
pub fn references(value: &str) -> Vec<&str> {
    let mut names = Vec::new();
    let mut rest = value;
    while let Some(at) = rest.find('$') {
        let after = &rest[at + 1..];
        if let Some(escaped) = after.strip_prefix('$') {
            rest = escaped;
            continue;
        }
        match after.strip_prefix('(').and_then(|r| r.split_once(')')) {
            Some((name, tail)) if is_env_name(name) => {
                names.push(name);
                rest = tail;
            }
            _ => rest = after,
        }
    }
    names
}

/// `value` with every `$(NAME)` reference replaced by `x`: what remains must be valid on its own
/// (a DNS name around a referenced label, say).
pub fn without_references(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    let mut rest = value;
    for name in references(value) {
        let reference = format!("$({name})");
        let at = rest.find(&reference).unwrap_or(rest.len());
        out.push_str(&rest[..at]);
        out.push('x');
        rest = &rest[(at + reference.len()).min(rest.len())..];
    }
    out.push_str(rest);
    out
}

fn is_env_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    matches!(bytes.next(), Some(b'A'..=b'Z' | b'a'..=b'z' | b'_'))
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.' || b == b'-')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_are_found_and_escapes_are_not() {
        assert_eq!(
            references("INTERNAL://$(POD_IP):9092,EXTERNAL://$(POD_NAME).k.example.com:9094"),
            vec!["POD_IP", "POD_NAME"]
        );
        assert_eq!(references("$$(NOT_ONE) $(bad name) $(OK)"), vec!["OK"]);
        assert_eq!(references("no references here"), Vec::<&str>::new());
    }

    #[test]
    fn a_host_with_references_is_checked_around_them() {
        assert_eq!(
            without_references("$(POD_NAME).kafka.example.com"),
            "x.kafka.example.com"
        );
        assert_eq!(without_references("$(BROKER_POD_IP)"), "x");
        assert!(!is_dns_name(&without_references("$(A)..b")));
    }
}
