//! Plain-text layouts for a terminal: column tables and `key: value` lists.
//!
//! A [`Table`] has a header per column and rows of already formatted cells. Each column is
//! as wide as its widest cell or header (counted in characters, so arrows and other
//! non-ASCII text line up), columns are two spaces apart, numbers are right-aligned (the
//! caller says which columns hold numbers), and a line of dashes separates the headers
//! from the rows. Lines carry no trailing spaces, so the output diffs and greps cleanly.
//!
//! [`render_fields`] lays out `label: value` pairs with the values in one column, for
//! things shown one at a time (a region, the cluster's settings).

/// How the cells of a column sit within its width.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Align {
    /// Text: padded on the right.
    Left,
    /// Numbers: padded on the left, so that digits line up.
    Right,
}

/// One column of a [`Table`]: its header and alignment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Column {
    /// The header shown above the column.
    pub header: String,
    /// How its cells (and header) are aligned.
    pub align: Align,
}

impl Column {
    /// A left-aligned (text) column.
    pub fn left(header: &str) -> Column {
        Column {
            header: header.to_string(),
            align: Align::Left,
        }
    }

    /// A right-aligned (numeric) column.
    pub fn right(header: &str) -> Column {
        Column {
            header: header.to_string(),
            align: Align::Right,
        }
    }
}

/// Space between two columns.
const COLUMN_GAP: &str = "  ";

/// A table of text cells, rendered with [`Table::render`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Table {
    columns: Vec<Column>,
    rows: Vec<Vec<String>>,
}

impl Table {
    /// An empty table with these columns.
    pub fn new(columns: Vec<Column>) -> Table {
        Table {
            columns,
            rows: Vec::new(),
        }
    }

    /// Appends a row; missing cells are blank and extra cells are dropped, so that a row
    /// always has one cell per column.
    pub fn push_row(&mut self, mut cells: Vec<String>) {
        cells.resize(self.columns.len(), String::new());
        self.rows.push(cells);
    }

    /// The width of each column: its widest cell or header, in characters.
    fn column_widths(&self) -> Vec<usize> {
        self.columns
            .iter()
            .enumerate()
            .map(|(i, column)| {
                self.rows
                    .iter()
                    .map(|row| text_width(&row[i]))
                    .chain([text_width(&column.header)])
                    .max()
                    .unwrap_or(0)
            })
            .collect()
    }

    /// The table as lines of text, each ending with a newline: headers, dashes, rows.
    pub fn render(&self) -> String {
        let widths = self.column_widths();
        let aligns: Vec<Align> = self.columns.iter().map(|c| c.align).collect();
        let headers: Vec<String> = self.columns.iter().map(|c| c.header.clone()).collect();
        let dashes: Vec<String> = widths.iter().map(|&w| "-".repeat(w)).collect();
        let mut out = String::new();
        for cells in [&headers, &dashes].into_iter().chain(&self.rows) {
            out.push_str(&render_line(cells, &widths, &aligns));
            out.push('\n');
        }
        out
    }
}

/// One line of a table: each cell padded to its column's width, without trailing spaces.
fn render_line(cells: &[String], widths: &[usize], aligns: &[Align]) -> String {
    let padded: Vec<String> = cells
        .iter()
        .zip(widths)
        .zip(aligns)
        .map(|((cell, &width), align)| {
            let padding = " ".repeat(width.saturating_sub(text_width(cell)));
            match align {
                Align::Left => format!("{cell}{padding}"),
                Align::Right => format!("{padding}{cell}"),
            }
        })
        .collect();
    padded.join(COLUMN_GAP).trim_end().to_string()
}

/// How many terminal columns `text` takes, counting one per character.
fn text_width(text: &str) -> usize {
    text.chars().count()
}

/// `label: value` lines with the values aligned in one column, each line ending with a
/// newline.
pub fn render_fields(fields: &[(&str, String)]) -> String {
    let label_width = fields
        .iter()
        .map(|(label, _)| text_width(label) + 1)
        .max()
        .unwrap_or(0);
    fields
        .iter()
        .map(|(label, value)| {
            let label = format!("{label}:");
            format!("{label:<label_width$} {value}")
                .trim_end()
                .to_string()
                + "\n"
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cells(texts: &[&str]) -> Vec<String> {
        texts.iter().map(|t| t.to_string()).collect()
    }

    #[test]
    fn columns_fit_their_widest_cell_and_numbers_are_right_aligned() {
        let mut table = Table::new(vec![
            Column::right("ID"),
            Column::left("NAME"),
            Column::right("SIZE"),
            Column::left("NOTE"),
        ]);
        table.push_row(cells(&["1", "a", "10.0", ""]));
        table.push_row(cells(&["12", "bbbbb", "7", "x → y"]));
        let expected = "\
ID  NAME   SIZE  NOTE
--  -----  ----  -----
 1  a      10.0
12  bbbbb     7  x → y
";
        assert_eq!(table.render(), expected);
    }

    #[test]
    fn rows_are_padded_or_cut_to_the_columns() {
        let mut table = Table::new(vec![Column::left("A"), Column::left("B")]);
        table.push_row(cells(&["only"]));
        table.push_row(cells(&["x", "y", "dropped"]));
        assert_eq!(table.render(), "A     B\n----  -\nonly\nx     y\n");
        let empty = Table::new(vec![Column::right("COUNT")]);
        assert_eq!(empty.render(), "COUNT\n-----\n");
    }

    #[test]
    fn fields_align_their_values() {
        let text = render_fields(&[
            ("id", "5".to_string()),
            ("approximate size", "1.0 KiB".to_string()),
            ("leader", String::new()),
        ]);
        assert_eq!(
            text,
            "id:               5\napproximate size: 1.0 KiB\nleader:\n"
        );
    }
}
