//! Markdown to a man page, for ntp.toml(5) from docs/config.md: one
//! reference written once, read on the web and with `man`.
//!
//! Only what the reference uses is mapped, and each in the way man pages
//! usually say it: `##` is a section (`.SH`), `###` a subsection (`.SS`),
//! inline code is bold (what you type), emphasis italic, a code block is
//! set unfilled and indented, a list item is a bulleted `.IP`. A table
//! becomes one tagged paragraph per row, because a five-column table does
//! not fit in 80 columns: the first cell is the tag, the middle cells say
//! "header: value", the last cell is the text. Links keep their text (and
//! say where they lead only when that is on the web); raw HTML is dropped.

use pulldown_cmark::{Event, HeadingLevel, Options, Parser, Tag, TagEnd};
use roff::{Inline, Roff, bold, italic, roman};

/// The fixed parts of the page around the converted text.
#[derive(Debug)]
pub struct Page<'a> {
    /// `.TH` title, e.g. "ntp.toml".
    pub title: &'a str,
    /// Manual section, e.g. "5".
    pub section: &'a str,
    /// `.TH` source, e.g. "sundial 0.1.0".
    pub source: &'a str,
    /// `.TH` manual, e.g. "File Formats Manual".
    pub manual: &'a str,
    /// The NAME line's description, after "title \-".
    pub summary: &'a str,
}

/// The man page: `.TH`, NAME, the text before the first `##` heading as
/// DESCRIPTION, then the document's own sections. The `#` title is left
/// out: NAME says it.
#[must_use]
pub fn to_man(markdown: &str, page: &Page<'_>) -> Roff {
    let mut roff = Roff::new();
    roff.control(
        "TH",
        title_args(page.title, page.section, page.source, page.manual)
            .iter()
            .map(String::as_str),
    );
    roff.control("SH", ["NAME"]);
    roff.text([roman(format!("{} - {}", page.title, page.summary))]);
    roff.control("SH", ["DESCRIPTION"]);
    let mut writer = Writer::new(roff);
    for event in Parser::new_ext(markdown, Options::ENABLE_TABLES) {
        writer.event(event);
    }
    writer.finish()
}

/// The arguments of `.TH`. roff drops an empty argument unless it is
/// written `""` (the roff crate quotes only those with spaces), and the date is left empty on purpose (a
/// page made at each build would otherwise change every day).
#[must_use]
pub fn title_args(title: &str, section: &str, source: &str, manual: &str) -> [String; 5] {
    [title, section, "", source, manual].map(|arg| {
        if arg.is_empty() {
            "\"\"".to_owned()
        } else {
            arg.to_owned()
        }
    })
}

/// Which font a run of text is set in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Font {
    Roman,
    Italic,
    Bold,
}

fn styled(font: Font, text: String) -> Inline {
    match font {
        Font::Roman => roman(text),
        Font::Italic => italic(text),
        Font::Bold => bold(text),
    }
}

/// A table being collected: rows of cells, each cell a run of inlines.
#[derive(Debug, Default)]
struct Table {
    header: Vec<String>,
    rows: Vec<Vec<Vec<Inline>>>,
    in_head: bool,
}

/// The converter's state between events.
#[derive(Debug)]
struct Writer {
    roff: Roff,
    /// Text of the block being read (paragraph, item, heading, cell).
    line: Vec<Inline>,
    /// Fonts of the open emphasis and strong spans, innermost last.
    fonts: Vec<Font>,
    /// Open lists: `Some(next number)` when ordered.
    lists: Vec<Option<u64>>,
    /// The first paragraph of a list item follows its `.IP` directly.
    item_start: bool,
    code_block: bool,
    table: Option<Table>,
    /// Where an open link leads, when that is worth printing.
    link: Option<String>,
    /// Inside raw HTML or an image: text to drop.
    skip: usize,
}

impl Writer {
    fn new(roff: Roff) -> Self {
        Self {
            roff,
            line: Vec::new(),
            fonts: Vec::new(),
            lists: Vec::new(),
            item_start: false,
            code_block: false,
            table: None,
            link: None,
            skip: 0,
        }
    }

    fn font(&self) -> Font {
        self.fonts.last().copied().unwrap_or(Font::Roman)
    }

    fn push(&mut self, font: Font, text: &str) {
        if self.skip == 0 && !text.is_empty() {
            self.line.push(styled(font, text.to_owned()));
        }
    }

    /// Ends the text line being collected, if any.
    fn flush(&mut self) {
        if !self.line.is_empty() {
            let line = std::mem::take(&mut self.line);
            self.roff.text(line);
        }
    }

    fn event(&mut self, event: Event<'_>) {
        match event {
            Event::Start(tag) => self.start(tag),
            Event::End(tag) => self.end(tag),
            Event::Text(text) if self.code_block => {
                // Unfilled: every line of the block as it is.
                let text = text.strip_suffix('\n').unwrap_or(&text).to_owned();
                self.roff.text([roman(text)]);
            }
            Event::Text(text) => self.push(self.font(), &text),
            Event::Code(code) => self.push(Font::Bold, &code),
            Event::SoftBreak => self.push(self.font(), "\n"),
            Event::HardBreak => {
                self.flush();
                self.roff.control("br", []);
            }
            Event::Rule => self.flush(),
            // Raw HTML, footnotes, task lists and math: not in the reference.
            _ => {}
        }
    }

    fn start(&mut self, tag: Tag<'_>) {
        match tag {
            Tag::Paragraph if self.table.is_none() => {
                self.flush();
                if !std::mem::take(&mut self.item_start) {
                    self.roff.control("PP", []);
                }
            }
            Tag::Heading { .. } => self.flush(),
            Tag::CodeBlock(_) => {
                self.flush();
                if !std::mem::take(&mut self.item_start) {
                    self.roff.control("PP", []);
                }
                self.roff.control("RS", ["4"]);
                self.roff.control("nf", []);
                self.code_block = true;
            }
            Tag::List(first) => {
                self.flush();
                if !self.lists.is_empty() {
                    self.roff.control("RS", ["2"]);
                }
                self.lists.push(first);
            }
            Tag::Item => {
                self.flush();
                let marker = match self.lists.last_mut() {
                    Some(Some(n)) => {
                        let marker = format!("{n}.");
                        *n += 1;
                        marker
                    }
                    _ => r"\(bu".to_owned(),
                };
                self.roff.control("IP", [marker.as_str(), "3"]);
                self.item_start = true;
            }
            Tag::Emphasis => self.fonts.push(Font::Italic),
            Tag::Strong => self.fonts.push(Font::Bold),
            Tag::Link { dest_url, .. } => {
                let web = dest_url.starts_with("http://") || dest_url.starts_with("https://");
                self.link = web.then(|| dest_url.to_string());
            }
            Tag::Table(_) => {
                self.flush();
                self.table = Some(Table::default());
            }
            Tag::TableHead => {
                if let Some(table) = &mut self.table {
                    table.in_head = true;
                }
            }
            Tag::TableRow => {
                if let Some(table) = &mut self.table {
                    table.rows.push(Vec::new());
                }
            }
            Tag::HtmlBlock | Tag::Image { .. } => self.skip += 1,
            _ => {}
        }
    }

    fn end(&mut self, tag: TagEnd) {
        match tag {
            TagEnd::Paragraph if self.table.is_none() => self.flush(),
            TagEnd::Heading(level) => {
                let text = plain(&std::mem::take(&mut self.line));
                match level {
                    HeadingLevel::H1 => {}
                    HeadingLevel::H2 => {
                        self.roff.control("SH", [text.as_str()]);
                    }
                    _ => {
                        self.roff.control("SS", [text.as_str()]);
                    }
                }
            }
            TagEnd::CodeBlock => {
                self.code_block = false;
                self.roff.control("fi", []);
                self.roff.control("RE", []);
            }
            TagEnd::List(_) => {
                self.flush();
                self.lists.pop();
                if !self.lists.is_empty() {
                    self.roff.control("RE", []);
                }
            }
            TagEnd::Item => {
                self.flush();
                self.item_start = false;
            }
            TagEnd::Emphasis | TagEnd::Strong => {
                self.fonts.pop();
            }
            TagEnd::Link => {
                if let Some(url) = self.link.take() {
                    self.push(self.font(), &format!(" <{url}>"));
                }
            }
            TagEnd::TableCell => {
                let cell = std::mem::take(&mut self.line);
                if let Some(table) = &mut self.table {
                    if table.in_head {
                        table.header.push(plain(&cell));
                    } else if let Some(row) = table.rows.last_mut() {
                        row.push(cell);
                    }
                }
            }
            TagEnd::TableHead => {
                if let Some(table) = &mut self.table {
                    table.in_head = false;
                }
            }
            TagEnd::Table => {
                if let Some(table) = self.table.take() {
                    self.table(table);
                }
            }
            TagEnd::HtmlBlock | TagEnd::Image => self.skip = self.skip.saturating_sub(1),
            _ => {}
        }
    }

    /// One `.TP` per row: the first cell as the tag, then "header: cell"
    /// for the middle cells, then the last cell.
    fn table(&mut self, table: Table) {
        for row in table.rows {
            let mut cells = row.into_iter();
            let Some(tag) = cells.next() else { continue };
            let rest: Vec<_> = cells.collect();
            self.roff.control("TP", []);
            self.roff.text(tag);
            let Some((last, middle)) = rest.split_last() else {
                continue;
            };
            if !middle.is_empty() {
                let mut line = Vec::new();
                for (i, cell) in middle.iter().enumerate() {
                    let name = table.header.get(i + 1).map_or("", String::as_str);
                    let lead = if i == 0 { "" } else { "; " };
                    line.push(roman(format!("{lead}{name}: ")));
                    line.extend(cell.iter().cloned());
                }
                line.push(roman("."));
                self.roff.text(line);
                self.roff.control("br", []);
            }
            self.roff.text(last.clone());
        }
    }

    fn finish(mut self) -> Roff {
        self.flush();
        self.roff
    }
}

/// The text of some inlines without their fonts (headings, table headers).
fn plain(inlines: &[Inline]) -> String {
    let mut out = String::new();
    for inline in inlines {
        match inline {
            Inline::Roman(t) | Inline::Italic(t) | Inline::Bold(t) => out.push_str(t),
            Inline::LineBreak => out.push(' '),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn man(markdown: &str) -> String {
        let page = Page {
            title: "x",
            section: "5",
            source: "s 1",
            manual: "m",
            summary: "what x is",
        };
        to_man(markdown, &page).to_roff()
    }

    #[test]
    fn headings_become_sections_and_the_title_is_left_out() {
        let out = man("# Title\n\nIntro.\n\n## `[keyset]`\n\nText.\n\n### Sub\n");
        assert!(
            out.starts_with(".TH x 5 \"\" \"s 1\" m\n.SH NAME\nx \\- what x is\n"),
            "{out}"
        );
        assert!(!out.contains("Title"), "{out}");
        assert!(out.contains(".SH DESCRIPTION\n.PP\nIntro.\n"), "{out}");
        assert!(out.contains(".SH [keyset]\n.PP\nText.\n.SS Sub\n"), "{out}");
    }

    #[test]
    fn inline_code_is_bold_and_emphasis_italic() {
        let out = man("Set `log-level`, *sundial:* **now** [here](a.md).\n");
        assert!(
            out.contains(r"Set \fBlog\-level\fR, \fIsundial:\fR \fBnow\fR here."),
            "{out}"
        );
    }

    #[test]
    fn a_web_link_says_where_it_leads() {
        let out = man("See [RFC](https://example.org/x).\n");
        assert!(out.contains(r"RFC <https://example.org/x>"), "{out}");
    }

    #[test]
    fn code_blocks_stay_as_written_and_dots_are_escaped() {
        let out = man("```\n.dot first\n  indented -x\n```\n");
        assert!(
            out.contains(".RS 4\n.nf\n\\&.dot first\n  indented \\-x\n.fi\n.RE\n"),
            "{out}"
        );
    }

    #[test]
    fn a_table_row_is_a_tagged_paragraph() {
        let out = man(
            "| key | type | default | meaning |\n| --- | --- | --- | --- |\n| `a` | int | `1` | The a. |\n",
        );
        assert!(
            out.contains(".TP\n\\fBa\\fR\ntype: int; default: \\fB1\\fR.\n.br\nThe a.\n"),
            "{out}"
        );
    }

    #[test]
    fn list_items_are_bullets() {
        let out = man("- one\n- two `x`\n");
        assert!(
            out.contains(".IP \\(bu 3\none\n.IP \\(bu 3\ntwo \\fBx\\fR\n"),
            "{out}"
        );
    }

    #[test]
    fn any_input_converts_without_panicking() {
        for input in [
            "",
            "|",
            "| a |\n| - |\n",
            "*a `b` **c",
            "<div>x</div>\n",
            "1. a\n   - b\n2. c",
        ] {
            let _ = man(input);
        }
    }
}
