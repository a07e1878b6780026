//! A tiny HTML writer: markup only from string literals, every value escaped.
//!
//! [`Html::raw`] takes `&'static str`, so nothing computed at run time can be
//! written unescaped; [`Html::text`] escapes `& < > " '` and so is safe in
//! element content and in quoted attribute values alike.

use std::fmt::{Display, Write as _};

#[derive(Debug, Default)]
pub struct Html {
    buf: String,
}

/// Escapes `value` for HTML text and quoted attributes.
pub fn escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    push_escaped(&mut out, value);
    out
}

fn push_escaped(out: &mut String, value: &str) {
    for c in value.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
}

impl Html {
    pub fn new() -> Self {
        Self {
            buf: String::with_capacity(8 * 1024),
        }
    }

    /// Literal markup.
    pub fn raw(&mut self, markup: &'static str) -> &mut Self {
        self.buf.push_str(markup);
        self
    }

    /// A value, escaped.
    pub fn text(&mut self, value: impl Display) -> &mut Self {
        let mut plain = String::new();
        if write!(plain, "{value}").is_ok() {
            push_escaped(&mut self.buf, &plain);
        }
        self
    }

    /// `<tag>value</tag>` for a literal tag name.
    pub fn el(
        &mut self,
        open: &'static str,
        value: impl Display,
        close: &'static str,
    ) -> &mut Self {
        self.raw(open).text(value).raw(close)
    }

    /// Appends markup another writer built (so, itself escaped).
    pub fn append(&mut self, other: Html) -> &mut Self {
        self.buf.push_str(&other.buf);
        self
    }

    pub fn finish(self) -> String {
        self.buf
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_escaped_and_literals_are_not() {
        let mut h = Html::new();
        h.raw("<p title=\"")
            .text("a\"b")
            .raw("\">")
            .text("<script>&'")
            .raw("</p>");
        assert_eq!(
            h.finish(),
            "<p title=\"a&quot;b\">&lt;script&gt;&amp;&#39;</p>"
        );
    }
}
