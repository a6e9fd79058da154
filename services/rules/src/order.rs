//! The order people read a class list in, shared by the API (its list,
//! its CSV) and the web UI, so every view of the class agrees.
//!
//! Byte order puts "Student 10" before "Student 2" and "Zoé" before
//! "alice". [`reading_order`] instead compares names with the Unicode
//! Collation Algorithm (ICU4X's root collation, the CLDR default) with
//! numeric ordering on:
//! - letters first, ignoring case and accents: "alice" < "Bob" < "zoé" < "Zoltan";
//! - digits by their value: "Student 2" < "Student 10";
//! - accents, then case, only break ties ("zoe" < "zoé" < "Zoé"), and
//!   byte order breaks any tie left, so distinct names never compare equal
//!   and a sort is the same on every run.
//!
//! Only the order changes: names are stored and shown as they were written.

use std::cmp::Ordering;
use std::sync::LazyLock;

use icu_collator::options::CollatorOptions;
use icu_collator::preferences::CollationNumericOrdering;
use icu_collator::{CollatorBorrowed, CollatorPreferences};

/// The root collation at its default (tertiary) strength, with numbers by
/// value. Made once: the data is compiled into the binary.
static COLLATOR: LazyLock<CollatorBorrowed<'static>> = LazyLock::new(|| {
    let mut prefs = CollatorPreferences::default();
    prefs.numeric_ordering = Some(CollationNumericOrdering::True);
    CollatorBorrowed::try_new(prefs, CollatorOptions::default())
        .expect("the root collation is compiled into the binary")
});

/// Compares two names as people read them; see the module doc.
pub fn reading_order(a: &str, b: &str) -> Ordering {
    COLLATOR.compare(a, b).then_with(|| a.cmp(b))
}

/// Sorts names (or anything holding one) in [`reading_order`].
pub fn sort_by_reading_order<T>(items: &mut [T], name: impl Fn(&T) -> &str) {
    items.sort_by(|a, b| reading_order(name(a), name(b)));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sorted(names: &[&str]) -> Vec<String> {
        let mut names: Vec<String> = names.iter().map(|s| (*s).to_owned()).collect();
        sort_by_reading_order(&mut names, String::as_str);
        names
    }

    #[test]
    fn numbers_in_names_sort_by_value() {
        assert_eq!(
            sorted(&["Student 10", "Student 2", "Student 1", "Student 11"]),
            ["Student 1", "Student 2", "Student 10", "Student 11"]
        );
    }

    #[test]
    fn case_and_accents_only_break_ties() {
        assert_eq!(
            sorted(&[
                "Zoé Li", "alice", "Émile", "bob", "zoe", "Zoé", "zoé", "eve"
            ]),
            [
                "alice", "bob", "Émile", "eve", "zoe", "zoé", "Zoé", "Zoé Li"
            ]
        );
    }

    #[test]
    fn distinct_names_never_compare_equal() {
        // The same at every collation level, different bytes.
        assert_ne!(reading_order("a\u{0}b", "ab"), Ordering::Equal);
        assert_eq!(reading_order("alice", "alice"), Ordering::Equal);
    }
}
