//! From byte offsets to what a person reads: line, column and dotted key path.
//!
//! The toml crate reports every parse and type error with a byte span. We also
//! parse the text once into its spanned tree so that (a) a span can be named
//! by the key it belongs to and (b) a semantic problem found after
//! deserializing, which only knows its key path, can be pointed at a line.

use std::fmt;
use std::ops::Range;

use toml::Spanned;
use toml::de::{DeTable, DeValue};

/// One step of a key path: a table key or an index into an array.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Segment {
    /// A key inside a table.
    Key(String),
    /// An element of an array (including `[[array-of-tables]]`).
    Index(usize),
}

/// A dotted key path such as `server[0].allowlist.filter[2]`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyPath(Vec<Segment>);

impl KeyPath {
    /// The document root.
    #[must_use]
    pub fn root() -> Self {
        Self(Vec::new())
    }

    /// This path extended by a key.
    #[must_use]
    pub fn key(&self, key: &str) -> Self {
        let mut next = self.clone();
        next.0.push(Segment::Key(key.to_owned()));
        next
    }

    /// This path extended by an array index.
    #[must_use]
    pub fn index(&self, index: usize) -> Self {
        let mut next = self.clone();
        next.0.push(Segment::Index(index));
        next
    }

    /// The segments, outermost first.
    #[must_use]
    pub fn segments(&self) -> &[Segment] {
        &self.0
    }
}

impl fmt::Display for KeyPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (position, segment) in self.0.iter().enumerate() {
            match segment {
                Segment::Key(key) if position == 0 => f.write_str(key)?,
                Segment::Key(key) => write!(f, ".{key}")?,
                Segment::Index(index) => write!(f, "[{index}]")?,
            }
        }
        Ok(())
    }
}

/// 1-based line and column (in characters) of a byte offset, plus the text
/// of that line. Offsets past the end or inside a character clamp safely.
#[must_use]
pub fn line_column(text: &str, offset: usize) -> (usize, usize, String) {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset = offset.saturating_sub(1);
    }
    let before = text.get(..offset).unwrap_or_default();
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |newline| newline + 1);
    let column = before.get(line_start..).unwrap_or_default().chars().count() + 1;
    let line_end = text
        .get(line_start..)
        .and_then(|rest| rest.find('\n'))
        .map_or(text.len(), |end| line_start + end);
    let source_line = text
        .get(line_start..line_end)
        .unwrap_or_default()
        .trim_end_matches('\r')
        .to_owned();
    (line, column, source_line)
}

/// The spanned tree of a syntactically valid document.
pub struct Document<'i> {
    root: Spanned<DeTable<'i>>,
}

impl fmt::Debug for Document<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Document").finish_non_exhaustive()
    }
}

impl<'i> Document<'i> {
    /// Parse `text`; a syntax error comes back as the toml crate's error.
    pub fn parse(text: &'i str) -> Result<Self, toml::de::Error> {
        DeTable::parse(text).map(|root| Self { root })
    }

    /// True when the document has no keys at all (only comments/blank).
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.root.get_ref().is_empty()
    }

    /// The deepest key path whose key, value or table header covers `offset`.
    #[must_use]
    pub fn path_at(&self, offset: usize) -> KeyPath {
        let mut path = KeyPath::root();
        if find_in_table(self.root.get_ref(), offset, &mut path) {
            path
        } else {
            KeyPath::root()
        }
    }

    /// The span that best represents `path`: the key itself when it is in the
    /// file, otherwise the closest enclosing table or array element that is
    /// (so a problem with a defaulted value points at its section).
    #[must_use]
    pub fn span_of(&self, path: &KeyPath) -> Option<Range<usize>> {
        let mut best: Option<Range<usize>> = None;
        let mut current: Option<&DeValue<'_>> = None;
        let mut table: Option<&DeTable<'_>> = Some(self.root.get_ref());
        for segment in path.segments() {
            match segment {
                Segment::Key(key) => {
                    let Some(entry) =
                        table.and_then(|t| t.iter().find(|(k, _)| k.get_ref() == key))
                    else {
                        break;
                    };
                    best = Some(entry.0.span());
                    current = Some(entry.1.get_ref());
                }
                Segment::Index(index) => {
                    let Some(element) = current
                        .and_then(DeValue::as_array)
                        .and_then(|array| array.get(*index))
                    else {
                        break;
                    };
                    best = Some(element.span());
                    current = Some(element.get_ref());
                }
            }
            table = current.and_then(DeValue::as_table);
        }
        best
    }
}

impl Document<'_> {
    /// When `path` names an array (toml reports some element errors with the
    /// whole array's span), the element whose string value the error message
    /// quotes, with its span.
    #[must_use]
    pub fn element_quoted_in(
        &self,
        path: &KeyPath,
        message: &str,
    ) -> Option<(KeyPath, Range<usize>)> {
        let array = self.value_at(path)?.as_array()?;
        array.iter().enumerate().find_map(|(index, element)| {
            let text = element.get_ref().as_str()?;
            message
                .contains(&format!("`{text}`"))
                .then(|| (path.index(index), element.span()))
        })
    }

    fn value_at(&self, path: &KeyPath) -> Option<&DeValue<'_>> {
        let mut current: Option<&DeValue<'_>> = None;
        for segment in path.segments() {
            current = match segment {
                Segment::Key(key) => {
                    let table = match current {
                        None => self.root.get_ref(),
                        Some(value) => value.as_table()?,
                    };
                    Some(table.iter().find(|(k, _)| k.get_ref() == key)?.1.get_ref())
                }
                Segment::Index(index) => Some(current?.as_array()?.get(*index)?.get_ref()),
            };
        }
        current
    }
}

fn covers(span: &Range<usize>, offset: usize) -> bool {
    span.start <= offset && (offset < span.end || span.is_empty() && offset == span.start)
}

fn find_in_table(table: &DeTable<'_>, offset: usize, path: &mut KeyPath) -> bool {
    for (key, value) in table.iter() {
        let mut below = path.key(key.get_ref());
        if find_in_value(value.get_ref(), offset, &mut below)
            || covers(&key.span(), offset)
            || covers(&value.span(), offset)
        {
            *path = below;
            return true;
        }
    }
    false
}

fn find_in_value(value: &DeValue<'_>, offset: usize, path: &mut KeyPath) -> bool {
    match value {
        DeValue::Table(table) => find_in_table(table, offset, path),
        DeValue::Array(array) => {
            for (index, element) in array.iter().enumerate() {
                let mut below = path.index(index);
                if find_in_value(element.get_ref(), offset, &mut below)
                    || covers(&element.span(), offset)
                {
                    *path = below;
                    return true;
                }
            }
            false
        }
        _ => false,
    }
}
