//! Writing reports as JSON (the typed report, complete), CSV (its tables,
//! one block each) and HTML (a self-contained page: inline styles, no
//! scripts, no external resources, every value escaped).
//!
//! CSV layout: for each table, a line holding `# <table title>`, the header
//! row, the data rows and an empty line. The summary comes first as a
//! two-column table. Cells that a spreadsheet would evaluate (starting with
//! `=`, `+`, `-`, `@`) get a leading `'`: these files are opened by people.

use std::fmt;
use std::str::FromStr;

use serde::Serialize;

use crate::audit::export::write_csv_row;

/// A report format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReportFormat {
    /// The complete typed report.
    Json,
    /// The report's tables.
    Csv,
    /// A readable, self-contained page.
    Html,
}

/// A format name that is not `json`, `csv` or `html`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown report format {0:?}: use json, csv or html")]
pub struct UnknownReportFormat(pub String);

impl FromStr for ReportFormat {
    type Err = UnknownReportFormat;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        match name {
            "json" => Ok(ReportFormat::Json),
            "csv" => Ok(ReportFormat::Csv),
            "html" => Ok(ReportFormat::Html),
            other => Err(UnknownReportFormat(other.to_owned())),
        }
    }
}

impl fmt::Display for ReportFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ReportFormat::Json => "json",
            ReportFormat::Csv => "csv",
            ReportFormat::Html => "html",
        })
    }
}

impl ReportFormat {
    /// The HTTP content type.
    pub fn content_type(self) -> &'static str {
        match self {
            ReportFormat::Json => "application/json",
            ReportFormat::Csv => "text/csv; charset=utf-8",
            ReportFormat::Html => "text/html; charset=utf-8",
        }
    }
}

/// A table of a report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Table {
    /// Its heading.
    pub title: String,
    /// Column names.
    pub columns: Vec<String>,
    /// Rows, each as long as `columns`.
    pub rows: Vec<Vec<String>>,
}

impl Table {
    /// A table from column names and rows.
    pub fn new(title: &str, columns: &[&str], rows: impl IntoIterator<Item = Vec<String>>) -> Self {
        Self {
            title: title.to_owned(),
            columns: columns.iter().map(|c| (*c).to_owned()).collect(),
            rows: rows.into_iter().collect(),
        }
    }
}

/// What a report looks like to a reader.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportView {
    /// The page title.
    pub title: String,
    /// Key facts, as label and value.
    pub summary: Vec<(String, String)>,
    /// The tables.
    pub tables: Vec<Table>,
    /// Remarks under the tables (legal bases, truncation).
    pub notes: Vec<String>,
}

/// A report that can be rendered.
pub trait Report: Serialize {
    /// Its tables; `for_html` may shorten very long ones (the page says so).
    fn view(&self, for_html: bool) -> ReportView;
}

/// Writes `report` in `format` to `out`.
pub fn render<R: Report + ?Sized>(report: &R, format: ReportFormat, out: &mut Vec<u8>) {
    match format {
        ReportFormat::Json => {
            serde_json::to_writer_pretty(&mut *out, report).expect("reports serialize");
            out.push(b'\n');
        }
        ReportFormat::Csv => csv(&report.view(false), out),
        ReportFormat::Html => html(&report.view(true), out),
    }
}

fn csv(view: &ReportView, out: &mut Vec<u8>) {
    let summary = Table {
        title: view.title.clone(),
        columns: vec!["field".into(), "value".into()],
        rows: view
            .summary
            .iter()
            .map(|(k, v)| vec![k.clone(), v.clone()])
            .collect(),
    };
    for table in std::iter::once(&summary).chain(&view.tables) {
        write_csv_row(&[format!("# {}", table.title)], out, false);
        write_csv_row(&table.columns, out, true);
        for row in &table.rows {
            write_csv_row(row, out, true);
        }
        out.extend_from_slice(b"\r\n");
    }
    if !view.notes.is_empty() {
        write_csv_row(&["# Notes"], out, false);
        for note in &view.notes {
            write_csv_row(&[note], out, true);
        }
    }
}

/// Escapes text for HTML element content and quoted attribute values.
pub fn escape_html(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
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

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:2rem;color:#1b1b1b}\
h1{font-size:1.5rem}h2{font-size:1.15rem;margin-top:2rem}\
table{border-collapse:collapse;font-size:.85rem}\
th,td{border:1px solid #ccc;padding:.25rem .5rem;text-align:left;vertical-align:top}\
th{background:#f2f2f2}dl{display:grid;grid-template-columns:max-content auto;gap:.2rem 1rem}\
dt{font-weight:600}.empty{color:#777;font-style:italic}td{word-break:break-all}";

fn html(view: &ReportView, out: &mut Vec<u8>) {
    use std::fmt::Write as _;
    let mut page = String::new();
    let title = escape_html(&view.title);
    let _ = write!(
        page,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{title}</title><style>{STYLE}</style></head><body>\n<h1>{title}</h1>\n<dl>"
    );
    for (k, v) in &view.summary {
        let _ = write!(
            page,
            "<dt>{}</dt><dd>{}</dd>",
            escape_html(k),
            escape_html(v)
        );
    }
    page.push_str("</dl>\n");
    for table in &view.tables {
        let _ = writeln!(page, "<h2>{}</h2>", escape_html(&table.title));
        if table.rows.is_empty() {
            page.push_str("<p class=\"empty\">None.</p>\n");
            continue;
        }
        page.push_str("<table><thead><tr>");
        for c in &table.columns {
            let _ = write!(page, "<th>{}</th>", escape_html(c));
        }
        page.push_str("</tr></thead><tbody>\n");
        for row in &table.rows {
            page.push_str("<tr>");
            for cell in row {
                let _ = write!(page, "<td>{}</td>", escape_html(cell));
            }
            page.push_str("</tr>\n");
        }
        page.push_str("</tbody></table>\n");
    }
    for note in &view.notes {
        let _ = writeln!(page, "<p>{}</p>", escape_html(note));
    }
    page.push_str("</body></html>\n");
    out.extend_from_slice(page.as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Serialize)]
    struct Tiny;

    impl Report for Tiny {
        fn view(&self, _for_html: bool) -> ReportView {
            ReportView {
                title: "T <1>".into(),
                summary: vec![("who".into(), "<script>alert(1)</script>".into())],
                tables: vec![Table::new(
                    "rows",
                    &["a"],
                    [vec!["x & \"y\"".into()], vec!["=cmd()".into()]],
                )],
                notes: vec![],
            }
        }
    }

    #[test]
    fn html_escapes_everything() {
        let mut out = Vec::new();
        render(&Tiny, ReportFormat::Html, &mut out);
        let page = String::from_utf8(out).unwrap();
        assert!(!page.contains("<script>"));
        assert!(page.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
        assert!(page.contains("<title>T &lt;1&gt;</title>"));
        assert!(page.contains("x &amp; &quot;y&quot;"));
    }

    #[test]
    fn csv_has_a_block_per_table_and_guards_formulas() {
        let mut out = Vec::new();
        render(&Tiny, ReportFormat::Csv, &mut out);
        let text = String::from_utf8(out).unwrap();
        assert!(text.starts_with("# T <1>\r\nfield,value\r\n"));
        assert!(text.contains("# rows\r\na\r\n\"x & \"\"y\"\"\"\r\n'=cmd()\r\n"));
    }
}
