//! Reading a class from a CSV file, as a spreadsheet exports it: a header
//! `name,age`, then one student per row. Every row is checked with the same
//! rules as a single write (`student_ages_rules`); a file whose rows are not
//! all valid is refused whole, with every bad row's line number, so an
//! import is all or nothing.
//!
//! What is accepted beyond the plain form: a UTF-8 byte-order mark (Excel's
//! "CSV UTF-8" writes one), a header in any case with spaces around its
//! words, CRLF or LF line ends, quoted fields, blank lines. What is not: a
//! body that is not UTF-8, a missing or different header (a `;`-separated
//! file is told so), a row without exactly two fields, a name twice.

use std::collections::HashMap;

use student_ages_rules::{Age, StudentName};

use crate::store::ImportRow;

/// The most row errors reported; the count says how many there were.
pub(crate) const MAX_REPORTED_ERRORS: usize = 100;

/// One bad row: its line in the file and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RowError {
    pub(crate) line: u64,
    pub(crate) message: String,
}

/// Why a CSV body was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// Not a CSV of students at all (encoding, header): one message.
    NotCsv(String),
    /// A CSV of students with bad rows: the first [`MAX_REPORTED_ERRORS`],
    /// and how many there were.
    BadRows { errors: Vec<RowError>, count: usize },
}

/// Parses and checks a whole CSV body.
pub(crate) fn parse(body: &[u8]) -> Result<Vec<ImportRow>, Refusal> {
    let text = std::str::from_utf8(body).map_err(|error| {
        Refusal::NotCsv(format!(
            "the body is not UTF-8 text (byte {} is not); send a CSV file saved as \
             \"CSV UTF-8\", with a first line name,age",
            error.valid_up_to() + 1
        ))
    })?;
    let text = text.strip_prefix('\u{FEFF}').unwrap_or(text);
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(text.as_bytes());
    let mut records = reader.records();
    let header = match records.next() {
        None => {
            return Err(Refusal::NotCsv(
                "the CSV is empty; its first line must be the header name,age".into(),
            ));
        }
        Some(Err(error)) => return Err(Refusal::NotCsv(format!("the CSV is unreadable: {error}"))),
        Some(Ok(header)) => header,
    };
    let fields: Vec<String> = header.iter().map(|f| f.trim().to_lowercase()).collect();
    if fields != ["name", "age"] {
        let first_line: String = text.lines().next().unwrap_or("").chars().take(60).collect();
        let hint = if first_line.contains(';') {
            " (this looks separated by ';': export the spreadsheet with commas)"
        } else {
            ""
        };
        return Err(Refusal::NotCsv(format!(
            "the first line must be the header name,age, not {first_line:?}{hint}"
        )));
    }

    // Line numbers are counted from byte offsets: the reader's own count
    // is off by the blank lines.
    let mut lines = LineCounter::new(text);
    let mut rows = Vec::new();
    let mut errors = Vec::new();
    let mut count = 0;
    let mut seen: HashMap<String, u64> = HashMap::new();
    let mut refuse = |line: u64, message: String| {
        count += 1;
        if errors.len() < MAX_REPORTED_ERRORS {
            errors.push(RowError { line, message });
        }
    };
    for record in records {
        let record = match record {
            Ok(record) => record,
            Err(error) => {
                let line = error.position().map_or(0, |p| lines.line_at(p.byte()));
                refuse(line, format!("unreadable row: {error}"));
                continue;
            }
        };
        let line = record.position().map_or(0, |p| lines.line_at(p.byte()));
        if record.len() != 2 {
            refuse(
                line,
                format!(
                    "a row needs 2 fields, name and age; this one has {}",
                    record.len()
                ),
            );
            continue;
        }
        let name = StudentName::parse(&record[0]);
        let age = Age::parse(&record[1]);
        match (name, age) {
            (Ok(name), Ok(age)) => {
                if let Some(first) = seen.get(name.as_str()) {
                    refuse(
                        line,
                        format!(
                            "{:?} is already on line {first}; keep one row per student",
                            name.as_str()
                        ),
                    );
                    continue;
                }
                seen.insert(name.as_str().to_owned(), line);
                rows.push(ImportRow { line, name, age });
            }
            (name, age) => {
                let message = [
                    name.err().map(|e| e.to_string()),
                    age.err().map(|e| e.to_string()),
                ]
                .into_iter()
                .flatten()
                .collect::<Vec<_>>()
                .join("; ");
                refuse(line, message);
            }
        }
    }
    if count > 0 {
        return Err(Refusal::BadRows { errors, count });
    }
    Ok(rows)
}

/// Line numbers of byte offsets met in increasing order, counted as it goes.
struct LineCounter<'a> {
    text: &'a str,
    offset: usize,
    line: u64,
}

impl<'a> LineCounter<'a> {
    fn new(text: &'a str) -> LineCounter<'a> {
        LineCounter {
            text,
            offset: 0,
            line: 1,
        }
    }

    /// The line (from 1) of the record at byte `offset`. The reader puts a
    /// record's start where the previous one ended, before the line break
    /// and any blank lines: those are skipped.
    fn line_at(&mut self, offset: u64) -> u64 {
        let bytes = self.text.as_bytes();
        let mut offset = usize::try_from(offset)
            .unwrap_or(usize::MAX)
            .min(bytes.len());
        while offset < bytes.len() && matches!(bytes[offset], b'\r' | b'\n') {
            offset += 1;
        }
        if offset > self.offset {
            let newlines = newlines(&bytes[self.offset..offset]);
            self.line += newlines;
            self.offset = offset;
        }
        self.line
    }
}

fn newlines(bytes: &[u8]) -> u64 {
    bytes.iter().filter(|&&b| b == b'\n').count() as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(rows: &[ImportRow]) -> Vec<(u64, &str, u32)> {
        rows.iter()
            .map(|r| (r.line, r.name.as_str(), r.age.years()))
            .collect()
    }

    #[test]
    fn reads_a_spreadsheet_export() {
        let body = "\u{FEFF}Name , AGE\r\nalice,12\r\n\r\n\"Li, Zoé\",\"11\"\r\nStudent 2, 9 \r\n";
        let rows = parse(body.as_bytes()).unwrap();
        assert_eq!(
            names(&rows),
            [(2, "alice", 12), (4, "Li, Zoé", 11), (5, "Student 2", 9)]
        );
    }

    #[test]
    fn a_header_alone_is_an_empty_class() {
        assert_eq!(parse(b"name,age\n").unwrap(), []);
    }

    #[test]
    fn bad_rows_are_reported_by_line_and_nothing_is_returned() {
        let body = "name,age\nalice,12\na/b,3\nbob,old\nalice,13\ncarol\n";
        let Err(Refusal::BadRows { errors, count }) = parse(body.as_bytes()) else {
            panic!("accepted")
        };
        assert_eq!(count, 4);
        let lines: Vec<u64> = errors.iter().map(|e| e.line).collect();
        assert_eq!(lines, [3, 4, 5, 6]);
        assert!(errors[0].message.contains("'/'"), "{errors:?}");
        assert!(errors[1].message.contains("whole number"), "{errors:?}");
        assert!(
            errors[2].message.contains("already on line 2"),
            "{errors:?}"
        );
        assert!(errors[3].message.contains("2 fields"), "{errors:?}");
    }

    #[test]
    fn only_the_first_errors_are_listed_but_all_are_counted() {
        let body = format!("name,age\n{}", "x,999\n".repeat(250));
        let Err(Refusal::BadRows { errors, count }) = parse(body.as_bytes()) else {
            panic!("accepted")
        };
        assert_eq!((errors.len(), count), (MAX_REPORTED_ERRORS, 250));
    }

    #[test]
    fn what_is_not_a_csv_of_students_says_so() {
        for (body, why) in [
            (&b"\x89PNG\r\n\x1a\n\0\0"[..], "not UTF-8"),
            (b"", "empty"),
            (b"{\"student_ages\": {\"alice\": 12}}", "header name,age"),
            (b"name;age\nalice;12\n", "';'"),
        ] {
            let Err(Refusal::NotCsv(message)) = parse(body) else {
                panic!("{body:?} accepted")
            };
            assert!(message.contains(why), "{message}");
        }
    }
}
