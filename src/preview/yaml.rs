//! YAML read as Kubernetes reads it. kubectl and Helm decode manifests with sigs.k8s.io/yaml,
//! which resolves plain (unquoted) scalars by YAML 1.1 rules (go-yaml v2): `0755` is the octal
//! integer 493, `0x1F` is 31, `1_000` is 1000, `yes`/`on`/`y` are true, and a whole-number float
//! becomes an integer in JSON. Quoted scalars are always strings. A YAML 1.2 reader reads many
//! real `helm template` outputs differently (or not at all), so `preview` parses the events
//! itself and resolves scalars by those rules, into the JSON the API server would receive.

use serde_json::{Map, Number, Value};
use thiserror::Error;
use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser, Tag};
use yaml_rust2::scanner::{Marker, TScalarStyle};

/// Most values one file may expand to through aliases: a "billion laughs" file is refused, not
/// expanded.
const MAX_VALUES: usize = 5_000_000;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum YamlError {
    #[error("document {document}: line {line}, column {column}: {message}")]
    Syntax {
        /// 1-based, counting empty documents.
        document: usize,
        line: usize,
        column: usize,
        message: String,
    },
    #[error("line {line}: an alias to an anchor that is not defined before it")]
    UnknownAlias { line: usize },
    #[error("aliases expand to more than {MAX_VALUES} values")]
    TooLarge,
}

/// The documents of a YAML stream, each as the JSON kubectl would send; empty documents are
/// `Value::Null`.
pub fn documents(text: &str) -> Result<Vec<Value>, YamlError> {
    let mut builder = Builder::default();
    let mut parser = Parser::new_from_str(text);
    if let Err(error) = parser.load(&mut builder, true) {
        let marker = error.marker();
        return Err(YamlError::Syntax {
            document: builder.documents.len() + 1,
            line: marker.line(),
            column: marker.col() + 1,
            message: error.info().to_owned(),
        });
    }
    match builder.error {
        Some(error) => Err(error),
        None => Ok(builder.documents),
    }
}

/// An open collection while its events arrive.
enum Open {
    Sequence {
        items: Vec<Value>,
        anchor: usize,
    },
    Mapping {
        entries: Map<String, Value>,
        /// Keys merged in from `<<`: explicit keys win over them, as in YAML 1.1.
        merged: Map<String, Value>,
        key: Option<Key>,
        anchor: usize,
    },
}

/// A mapping key read and waiting for its value.
enum Key {
    Text(String),
    Merge,
}

/// Builds documents from parser events without recursion (the parser itself refuses nesting
/// past 256 levels).
#[derive(Default)]
struct Builder {
    documents: Vec<Value>,
    open: Vec<Open>,
    anchors: Vec<(usize, Value)>,
    values: usize,
    /// Whether the current document has its value yet.
    finished_document: bool,
    error: Option<YamlError>,
}

impl MarkedEventReceiver for Builder {
    fn on_event(&mut self, event: Event, mark: Marker) {
        if self.error.is_some() {
            return;
        }
        match event {
            Event::Scalar(text, style, anchor, tag) => {
                let value = resolve(&text, style, tag.as_ref());
                let merge = style == TScalarStyle::Plain && text == "<<";
                self.add(value, anchor, merge);
            }
            Event::Alias(id) => match self.anchors.iter().rev().find(|(a, _)| *a == id) {
                Some((_, value)) => {
                    let value = value.clone();
                    self.values += count(&value);
                    self.add(value, 0, false);
                }
                None => self.error = Some(YamlError::UnknownAlias { line: mark.line() }),
            },
            Event::SequenceStart(anchor, _) => self.open.push(Open::Sequence {
                items: Vec::new(),
                anchor,
            }),
            Event::MappingStart(anchor, _) => self.open.push(Open::Mapping {
                entries: Map::new(),
                merged: Map::new(),
                key: None,
                anchor,
            }),
            Event::SequenceEnd | Event::MappingEnd => {
                let (value, anchor) = match self.open.pop() {
                    Some(Open::Sequence { items, anchor }) => (Value::Array(items), anchor),
                    Some(Open::Mapping {
                        mut entries,
                        merged,
                        anchor,
                        ..
                    }) => {
                        for (key, value) in merged {
                            entries.entry(key).or_insert(value);
                        }
                        (Value::Object(entries), anchor)
                    }
                    None => return,
                };
                self.add(value, anchor, false);
            }
            Event::DocumentStart => self.finished_document = false,
            Event::DocumentEnd if !self.finished_document => {
                self.documents.push(Value::Null);
                self.finished_document = true;
            }
            _ => {}
        }
        if self.values > MAX_VALUES {
            self.error = Some(YamlError::TooLarge);
        }
    }
}

impl Builder {
    /// Places a finished value: into the open collection, or as a whole document.
    fn add(&mut self, value: Value, anchor: usize, merge_key: bool) {
        self.values += 1;
        if anchor != 0 {
            self.anchors.push((anchor, value.clone()));
        }
        match self.open.last_mut() {
            None => {
                self.documents.push(value);
                self.finished_document = true;
            }
            Some(Open::Sequence { items, .. }) => items.push(value),
            Some(Open::Mapping {
                entries,
                merged,
                key,
                ..
            }) => match key.take() {
                None if merge_key => *key = Some(Key::Merge),
                None => *key = Some(Key::Text(key_text(value))),
                Some(Key::Text(name)) => {
                    entries.insert(name, value);
                }
                Some(Key::Merge) => merge_into(merged, value),
            },
        }
    }
}

/// `<<: *base` or `<<: [*a, *b]`: the first mapping to name a key wins.
fn merge_into(merged: &mut Map<String, Value>, value: Value) {
    let sources = match value {
        Value::Array(items) => items,
        other => vec![other],
    };
    for source in sources {
        if let Value::Object(entries) = source {
            for (key, value) in entries {
                merged.entry(key).or_insert(value);
            }
        }
    }
}

/// A mapping key as JSON has it: sigs.k8s.io/yaml writes non-string keys in their text form.
fn key_text(value: Value) -> String {
    match value {
        Value::String(text) => text,
        Value::Null => "null".to_owned(),
        other => other.to_string(),
    }
}

/// How many values `value` holds, itself included.
fn count(value: &Value) -> usize {
    match value {
        Value::Array(items) => 1 + items.iter().map(count).sum::<usize>(),
        Value::Object(entries) => 1 + entries.values().map(count).sum::<usize>(),
        _ => 1,
    }
}

/// A scalar as go-yaml v2 resolves it: quoted and block scalars are strings, and so is any
/// scalar tagged `!!str`; plain ones are null, bool, int or float when they read as one.
fn resolve(text: &str, style: TScalarStyle, tag: Option<&Tag>) -> Value {
    let tagged = tag
        .filter(|t| t.handle == "tag:yaml.org,2002:" || t.handle == "!!")
        .map(|t| t.suffix.as_str());
    if tagged == Some("str") || (style != TScalarStyle::Plain && tagged.is_none()) {
        return Value::String(text.to_owned());
    }
    match text {
        "" | "~" | "null" | "Null" | "NULL" => return Value::Null,
        "y" | "Y" | "yes" | "Yes" | "YES" | "on" | "On" | "ON" | "true" | "True" | "TRUE" => {
            return Value::Bool(true)
        }
        "n" | "N" | "no" | "No" | "NO" | "off" | "Off" | "OFF" | "false" | "False" | "FALSE" => {
            return Value::Bool(false)
        }
        _ => {}
    }
    number(text).unwrap_or_else(|| Value::String(text.to_owned()))
}

/// A YAML 1.1 integer (decimal, `0` octal, `0x` hex, `0o` octal, `0b` binary, with `_`
/// separators and a sign) or float (`1.5`, `1e3`, `.inf`, `.nan`, which JSON cannot hold and so
/// stay text). A whole-number float is written as an integer, as Go's JSON encoder does.
fn number(text: &str) -> Option<Value> {
    let first = text.chars().next()?;
    if !(first.is_ascii_digit() || matches!(first, '-' | '+' | '.')) {
        return None;
    }
    let plain = text.replace('_', "");
    let (negative, digits) = match plain.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, plain.strip_prefix('+').unwrap_or(&plain)),
    };
    let (radix, body) = if let Some(hex) = digits.strip_prefix("0x") {
        (16, hex)
    } else if let Some(binary) = digits.strip_prefix("0b") {
        (2, binary)
    } else if let Some(octal) = digits.strip_prefix("0o") {
        (8, octal)
    } else if digits.len() > 1 && digits.starts_with('0') && !digits.contains(['.', 'e', 'E']) {
        (8, &digits[1..])
    } else {
        (10, digits)
    };
    if !body.is_empty() && body.chars().all(|c| c.is_digit(radix)) {
        if let Ok(magnitude) = i128::from_str_radix(body, radix) {
            let value = if negative { -magnitude } else { magnitude };
            if let Ok(small) = i64::try_from(value) {
                return Some(Value::Number(small.into()));
            }
            if let Ok(large) = u64::try_from(value) {
                return Some(Value::Number(large.into()));
            }
        }
    }
    float(&plain)
}

/// `[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?`, the float syntax go-yaml v2 accepts.
fn float(plain: &str) -> Option<Value> {
    let unsigned = plain.trim_start_matches(['-', '+']);
    let (mantissa, exponent) = match unsigned.find(['e', 'E']) {
        Some(at) => (&unsigned[..at], Some(&unsigned[at + 1..])),
        None => (unsigned, None),
    };
    let (whole, fraction) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let digits = |s: &str| s.chars().all(|c| c.is_ascii_digit());
    let mantissa_ok =
        digits(whole) && digits(fraction) && !(whole.is_empty() && fraction.is_empty());
    let exponent_ok = exponent.is_none_or(|e| {
        let e = e.strip_prefix(['-', '+']).unwrap_or(e);
        !e.is_empty() && digits(e)
    });
    if !(mantissa_ok && exponent_ok) || plain.len() - unsigned.len() > 1 {
        return None;
    }
    let value: f64 = plain.parse().ok()?;
    if value.fract() == 0.0 && value.abs() < 9.0e15 {
        return Some(Value::Number((value as i64).into()));
    }
    Number::from_f64(value).map(Value::Number)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn one(text: &str) -> Value {
        let mut documents = documents(text).unwrap();
        assert_eq!(documents.len(), 1, "{text}");
        documents.remove(0)
    }

    #[test]
    fn plain_scalars_resolve_as_yaml_1_1_and_quoted_ones_stay_text() {
        let value = one(concat!(
            "octal: 0755\nhex: 0x1F\nbinary: 0b101\nunderscores: 1_000\nnegative: -012\n",
            "bools: [yes, No, on, OFF, y, n, true]\nnulls: [~, null, NULL]\n",
            "float: 1.5\nwhole: 3.0\nexp: 1e3\nnot_octal: 089\n",
            "quoted: ['0755', \"yes\", '1_000']\ntagged: !!str 0755\ntext: 0755abc\n",
            "block: |\n  0755\n"
        ));
        assert_eq!(
            value,
            json!({
                "octal": 493, "hex": 31, "binary": 5, "underscores": 1000, "negative": -10,
                "bools": [true, false, true, false, true, false, true],
                "nulls": [null, null, null],
                "float": 1.5, "whole": 3, "exp": 1000, "not_octal": 89,
                "quoted": ["0755", "yes", "1_000"], "tagged": "0755", "text": "0755abc",
                "block": "0755\n"
            })
        );
    }

    #[test]
    fn every_document_of_a_stream_is_read_and_empty_ones_are_null() {
        let values = documents("# Source: a.yaml\n---\na: 1\n---\n---\nb: 2\n").unwrap();
        assert_eq!(values, vec![json!({"a": 1}), Value::Null, json!({"b": 2})]);
        assert_eq!(documents("").unwrap(), Vec::<Value>::new());
    }

    #[test]
    fn anchors_aliases_and_merge_keys_expand_as_in_yaml_1_1() {
        let value = one("base: &b {p: 1, q: 2}\nuse: {<<: *b, q: 3}\nlist: [*b]\n");
        assert_eq!(
            value,
            json!({"base": {"p": 1, "q": 2}, "use": {"p": 1, "q": 3}, "list": [{"p": 1, "q": 2}]})
        );
    }

    #[test]
    fn non_string_keys_become_their_text() {
        assert_eq!(one("1: a\nyes: b\n"), json!({"1": "a", "true": "b"}));
    }

    #[test]
    fn exponential_aliases_are_refused() {
        let mut text = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..9 {
            let prev = format!("*a{}", i - 1);
            text.push_str(&format!("a{i}: &a{i} [{}]\n", vec![prev; 10].join(", ")));
        }
        assert_eq!(documents(&text), Err(YamlError::TooLarge));
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_crash() {
        let depth = 100_000;
        let text = format!("{}{}", "[".repeat(depth), "]".repeat(depth));
        let error = documents(&text).unwrap_err();
        assert!(error.to_string().contains("recursion limit"), "{error}");
    }

    #[test]
    fn a_key_named_y_is_true_as_in_go_yaml_v2() {
        assert_eq!(one("y: 1\n"), json!({"true": 1}));
    }

    #[test]
    fn a_syntax_error_names_its_line() {
        let error = documents("a: 1\nb: [1, 2\nc: 3\n").unwrap_err();
        assert!(
            matches!(error, YamlError::Syntax { line: 3.., .. }),
            "{error}"
        );
    }
}
