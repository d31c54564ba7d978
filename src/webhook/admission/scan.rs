//! A cursor over JSON text that skips values it is not asked to read, checking them as strictly
//! as serde_json would but building nothing. Iterative, with a fixed nesting bound: deeper input
//! is not an error here but a `None`, after which the caller hands the body to serde_json, which
//! skips any depth without recursion.

/// Deepest nesting skipped here (a bit per level records object or array).
const MAX_DEPTH: usize = 512;

/// Bytes that end the plain run of a string: the quote, the backslash and control characters.
const STRING_STOP: [bool; 256] = {
    let mut table = [false; 256];
    let mut i = 0;
    while i < 0x20 {
        table[i] = true;
        i += 1;
    }
    table[b'"' as usize] = true;
    table[b'\\' as usize] = true;
    table
};

/// A position in a JSON text. Every method returns `None` on anything serde_json would refuse
/// (or that this cursor does not handle), leaving the position unspecified.
pub(super) struct Cursor<'a> {
    text: &'a str,
    pos: usize,
}

impl<'a> Cursor<'a> {
    pub(super) fn new(text: &'a str) -> Self {
        Self { text, pos: 0 }
    }

    fn bytes(&self) -> &'a [u8] {
        self.text.as_bytes()
    }

    /// Skips JSON whitespace and returns the next byte, not consumed.
    pub(super) fn peek(&mut self) -> Option<u8> {
        peek(self.bytes(), &mut self.pos)
    }

    /// Consumes `byte` (after whitespace).
    pub(super) fn eat(&mut self, byte: u8) -> Option<()> {
        (self.peek()? == byte).then(|| self.pos += 1)
    }

    /// Whether only whitespace is left.
    pub(super) fn at_end(&mut self) -> bool {
        self.peek().is_none()
    }

    /// The text from the cursor on, and a way to move past what was read of it.
    pub(super) fn rest(&self) -> &'a str {
        &self.text[self.pos..]
    }

    pub(super) fn advance(&mut self, bytes: usize) {
        self.pos += bytes;
    }

    /// Consumes `null` if it comes next.
    pub(super) fn null(&mut self) -> Option<bool> {
        if self.peek()? != b'n' {
            return Some(false);
        }
        literal(self.bytes(), &mut self.pos, b"null").then_some(true)
    }

    /// A string with no escapes, as it stands in the text (keys: a key with escapes is left
    /// to serde_json, which compares it unescaped).
    pub(super) fn plain_string(&mut self) -> Option<&'a str> {
        self.eat(b'"')?;
        let start = self.pos;
        skip_string_rest(self.bytes(), &mut self.pos).then_some(())?;
        let raw = &self.text[start..self.pos - 1];
        (!raw.contains('\\')).then_some(raw)
    }

    /// Visits the members of the object at the cursor: `member` gets each key and must consume
    /// its value. Keys with escapes are not handled (`None`).
    pub(super) fn members(
        &mut self,
        mut member: impl FnMut(&'a str, &mut Self) -> Option<()>,
    ) -> Option<()> {
        self.eat(b'{')?;
        if self.eat(b'}').is_some() {
            return Some(());
        }
        loop {
            let key = self.plain_string()?;
            self.eat(b':')?;
            member(key, self)?;
            match self.peek()? {
                b',' => self.pos += 1,
                b'}' => {
                    self.pos += 1;
                    return Some(());
                }
                _ => return None,
            }
        }
    }

    /// Visits the elements of the array at the cursor: `element` must consume each.
    pub(super) fn elements(
        &mut self,
        mut element: impl FnMut(&mut Self) -> Option<()>,
    ) -> Option<()> {
        self.eat(b'[')?;
        if self.eat(b']').is_some() {
            return Some(());
        }
        loop {
            element(self)?;
            match self.peek()? {
                b',' => self.pos += 1,
                b']' => {
                    self.pos += 1;
                    return Some(());
                }
                _ => return None,
            }
        }
    }

    /// Skips one value of any kind, checking it.
    pub(super) fn skip_value(&mut self) -> Option<()> {
        let mut pos = self.pos;
        let done = skip_value(self.bytes(), &mut pos);
        self.pos = pos;
        done.then_some(())
    }
}

/// Skips whitespace; the next byte.
#[inline(always)]
fn peek(bytes: &[u8], pos: &mut usize) -> Option<u8> {
    loop {
        let b = *bytes.get(*pos)?;
        // Every byte that can start or end a value is above the space.
        if b > b' ' || !matches!(b, b' ' | b'\n' | b'\r' | b'\t') {
            return Some(b);
        }
        *pos += 1;
    }
}

#[inline(always)]
fn eat(bytes: &[u8], pos: &mut usize, byte: u8) -> bool {
    let found = peek(bytes, pos) == Some(byte);
    *pos += usize::from(found);
    found
}

#[inline(always)]
fn literal(bytes: &[u8], pos: &mut usize, word: &[u8]) -> bool {
    let end = *pos + word.len();
    let found = bytes.get(*pos..end) == Some(word);
    if found {
        *pos = end;
    }
    found
}

/// A member's key and its colon.
#[inline(always)]
fn key(bytes: &[u8], pos: &mut usize) -> bool {
    eat(bytes, pos, b'"') && skip_string_rest(bytes, pos) && eat(bytes, pos, b':')
}

/// Skips one value, iteratively; `false` on anything serde_json refuses or past `MAX_DEPTH`.
fn skip_value(bytes: &[u8], pos: &mut usize) -> bool {
    // Bit n of `objects`: whether the container at depth n is an object.
    let mut objects = [0u64; MAX_DEPTH / 64];
    let mut depth = 0usize;
    loop {
        let Some(byte) = peek(bytes, pos) else {
            return false;
        };
        let complete = match byte {
            b'{' | b'[' => {
                if depth == MAX_DEPTH {
                    return false;
                }
                let object = byte == b'{';
                let (word, bit) = (depth / 64, 1u64 << (depth % 64));
                objects[word] = if object {
                    objects[word] | bit
                } else {
                    objects[word] & !bit
                };
                *pos += 1;
                if eat(bytes, pos, if object { b'}' } else { b']' }) {
                    true
                } else {
                    depth += 1;
                    if object && !key(bytes, pos) {
                        return false;
                    }
                    false
                }
            }
            _ => {
                let scalar = match byte {
                    b'"' => {
                        *pos += 1;
                        skip_string_rest(bytes, pos)
                    }
                    b'-' | b'0'..=b'9' => skip_number(bytes, pos),
                    b't' => literal(bytes, pos, b"true"),
                    b'f' => literal(bytes, pos, b"false"),
                    b'n' => literal(bytes, pos, b"null"),
                    _ => false,
                };
                if !scalar {
                    return false;
                }
                true
            }
        };
        if !complete {
            continue;
        }
        // After a complete value: close what ends here, then expect the next one.
        loop {
            if depth == 0 {
                return true;
            }
            let object = objects[(depth - 1) / 64] & (1u64 << ((depth - 1) % 64)) != 0;
            match peek(bytes, pos) {
                Some(b',') => {
                    *pos += 1;
                    if object && !key(bytes, pos) {
                        return false;
                    }
                    break;
                }
                Some(b'}') if object => depth -= 1,
                Some(b']') if !object => depth -= 1,
                _ => return false,
            }
            *pos += 1;
        }
    }
}

/// Each byte of a word whose high bit is set where the word's byte is special in a string: a
/// quote, a backslash or a control character (the lowest such byte is exact).
#[inline(always)]
fn string_stops(word: u64) -> u64 {
    const ONES: u64 = u64::MAX / 255;
    let quote = word ^ (ONES * u64::from(b'"'));
    let backslash = word ^ (ONES * u64::from(b'\\'));
    let zero_in = |x: u64| x.wrapping_sub(ONES) & !x;
    (zero_in(quote) | zero_in(backslash) | (word.wrapping_sub(ONES * 0x20) & !word)) & (ONES << 7)
}

/// Skips the rest of a string whose opening quote was consumed, checking its escapes and
/// refusing control characters, as serde_json does. Eight bytes at a time where it can.
#[inline(always)]
fn skip_string_rest(bytes: &[u8], pos: &mut usize) -> bool {
    let mut at = *pos;
    loop {
        while let Some(chunk) = bytes.get(at..at + 8) {
            let stops = string_stops(u64::from_le_bytes(chunk.try_into().expect("8 bytes")));
            if stops != 0 {
                at += stops.trailing_zeros() as usize / 8;
                break;
            }
            at += 8;
        }
        while bytes.get(at).is_some_and(|&b| !STRING_STOP[b as usize]) {
            at += 1;
        }
        match bytes.get(at) {
            Some(b'"') => {
                *pos = at + 1;
                return true;
            }
            Some(b'\\') => {
                at += 1;
                match bytes.get(at) {
                    Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => at += 1,
                    Some(b'u') => {
                        let Some(hex) = bytes.get(at + 1..at + 5) else {
                            return false;
                        };
                        if !hex.iter().all(u8::is_ascii_hexdigit) {
                            return false;
                        }
                        at += 5;
                    }
                    _ => return false,
                }
            }
            _ => return false,
        }
    }
}

/// `-? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?`
fn skip_number(bytes: &[u8], pos: &mut usize) -> bool {
    let digits = |at: &mut usize| {
        let start = *at;
        while bytes.get(*at).is_some_and(u8::is_ascii_digit) {
            *at += 1;
        }
        *at > start
    };
    let mut at = *pos;
    if bytes.get(at) == Some(&b'-') {
        at += 1;
    }
    match bytes.get(at) {
        Some(b'0') => {
            at += 1;
            if bytes.get(at).is_some_and(u8::is_ascii_digit) {
                return false;
            }
        }
        Some(b'1'..=b'9') => {
            digits(&mut at);
        }
        _ => return false,
    }
    if bytes.get(at) == Some(&b'.') {
        at += 1;
        if !digits(&mut at) {
            return false;
        }
    }
    if matches!(bytes.get(at), Some(b'e' | b'E')) {
        at += 1;
        if matches!(bytes.get(at), Some(b'+' | b'-')) {
            at += 1;
        }
        if !digits(&mut at) {
            return false;
        }
    }
    *pos = at;
    true
}

#[cfg(test)]
mod tests {
    use super::Cursor;

    fn skips(text: &str) -> bool {
        let mut cursor = Cursor::new(text);
        cursor.skip_value().is_some() && cursor.at_end()
    }

    #[test]
    fn skips_what_serde_json_accepts_and_refuses_what_it_refuses() {
        let samples = [
            r#"{"a":[1,-2.5e+3,0,true,false,null,"x\"\\\/\b\f\n\r\t\u00e9"],"b":{},"c":[]}"#,
            " [ { \"k\" : [ [ ] , { } ] } ] ",
            "-0.0E-0",
            r#""é ünïcode""#,
            "01",
            "1.",
            "-",
            "1e",
            "[1,]",
            "{\"a\":1,}",
            "{\"a\"}",
            "{1:2}",
            "[1 2]",
            "[}",
            "{]",
            "\"\u{1}\"",
            r#""\x""#,
            r#""\u12g4""#,
            "tru",
            "nulll",
            "[",
            "\"open",
            "",
        ];
        for sample in samples {
            let serde = serde_json::from_str::<serde::de::IgnoredAny>(sample).is_ok();
            assert_eq!(skips(sample), serde, "{sample:?}");
        }
    }

    #[test]
    fn nesting_past_the_bound_is_left_to_serde_json() {
        let deep = format!("{}{}", "[".repeat(300_000), "]".repeat(300_000));
        assert!(!skips(&deep));
        let within = format!("{}{}", "[".repeat(500), "]".repeat(500));
        assert!(skips(&within));
    }
}
