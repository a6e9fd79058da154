//! What the list page shows of the class, computed from the API's list:
//! the order (by name as people read them, or by age, either way), the
//! filter, the page of rows, and the class at a glance (count, mean age,
//! and a chart of the ages as server-rendered SVG with a text alternative).
//!
//! The page shows at most [`PAGE_SIZE`] rows, so a class of thousands
//! renders as fast as one of a hundred; the filter and the pager reach
//! the rest, and the count says how many are shown of how many.

use std::fmt::Write as _;

use student_ages_rules::order::reading_order;

/// The most rows on one page.
pub(crate) const PAGE_SIZE: usize = 100;

/// One student as listed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Student {
    pub(crate) name: String,
    pub(crate) age: u32,
}

/// Which column the list is sorted by.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) enum SortKey {
    #[default]
    Name,
    Age,
}

/// Which way.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) enum Direction {
    #[default]
    Ascending,
    Descending,
}

/// How the list is to be shown: from the query string, anything unknown
/// taken as the default, so an old or hand-edited link still works.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct View {
    pub(crate) filter: String,
    pub(crate) sort: SortKey,
    pub(crate) direction: Direction,
    /// From 1.
    pub(crate) page: usize,
}

impl View {
    pub(crate) fn parse(
        q: &str,
        sort: Option<&str>,
        dir: Option<&str>,
        page: Option<&str>,
    ) -> View {
        View {
            filter: q.trim().to_owned(),
            sort: match sort {
                Some("age") => SortKey::Age,
                _ => SortKey::Name,
            },
            direction: match dir {
                Some("desc") => Direction::Descending,
                _ => Direction::Ascending,
            },
            page: page.and_then(|p| p.parse().ok()).unwrap_or(1).max(1),
        }
    }

    /// The query string for this view with some parts changed; defaults
    /// are left out, so the plain list is `/`.
    pub(crate) fn href(&self, path: &str) -> String {
        let mut query = form_urlencoded::Serializer::new(String::new());
        if !self.filter.is_empty() {
            query.append_pair("q", &self.filter);
        }
        if self.sort == SortKey::Age {
            query.append_pair("sort", "age");
        }
        if self.direction == Direction::Descending {
            query.append_pair("dir", "desc");
        }
        if self.page > 1 {
            query.append_pair("page", &self.page.to_string());
        }
        let query = query.finish();
        if query.is_empty() {
            path.to_owned()
        } else {
            format!("{path}?{query}")
        }
    }

    /// The link a column header carries: sorts by it, ascending, or flips
    /// the direction when it is already the sort; back to the first page.
    fn sort_href(&self, key: SortKey) -> String {
        let direction = if self.sort == key && self.direction == Direction::Ascending {
            Direction::Descending
        } else {
            Direction::Ascending
        };
        View {
            sort: key,
            direction,
            page: 1,
            ..self.clone()
        }
        .href("/")
    }

    fn page_href(&self, page: usize) -> String {
        View {
            page,
            ..self.clone()
        }
        .href("/")
    }

    /// What a column header says about the sort, for `aria-sort` and the
    /// arrow beside its name.
    fn sort_state(&self, key: SortKey) -> (&'static str, &'static str) {
        match (self.sort == key, self.direction) {
            (false, _) => ("none", ""),
            (true, Direction::Ascending) => ("ascending", "▲"),
            (true, Direction::Descending) => ("descending", "▼"),
        }
    }
}

/// Whether `name` matches the filter: contains it, ignoring case.
pub(crate) fn matches(name: &str, needle_lowercase: &str) -> bool {
    needle_lowercase.is_empty() || name.to_lowercase().contains(needle_lowercase)
}

/// The class as the API last listed it: the students in reading order,
/// and the glance at them, made once per version of the list rather than
/// once per page view (see [`ClassCache`]).
#[derive(Debug)]
pub(crate) struct Class {
    pub(crate) students: Vec<Student>,
    pub(crate) glance: Glance,
}

impl Class {
    pub(crate) fn new(mut students: Vec<Student>) -> Class {
        // The API answers in reading order already; a sort of sorted input
        // is one pass, and an API that answered otherwise is put right.
        students.sort_by(|a, b| reading_order(&a.name, &b.name));
        let glance = Glance::of(&students);
        Class { students, glance }
    }
}

/// The last [`Class`] made, by the API's answer it was made from: the
/// list changes far less often than it is viewed, and comparing the
/// answer's bytes costs far less than parsing, ordering and summing up
/// 10,000 students again.
#[derive(Default)]
pub(crate) struct ClassCache(std::sync::Mutex<Option<(bytes::Bytes, std::sync::Arc<Class>)>>);

impl ClassCache {
    /// The class for this answer of the API's: the cached one if the
    /// answer is the same, else made by `parse` and kept.
    pub(crate) fn get<E>(
        &self,
        answer: bytes::Bytes,
        parse: impl FnOnce(&[u8]) -> Result<Vec<Student>, E>,
    ) -> Result<std::sync::Arc<Class>, E> {
        {
            // A poisoned lock only means a panic while swapping an Arc.
            let cached = self.0.lock().unwrap_or_else(|e| e.into_inner());
            if let Some((bytes, class)) = &*cached
                && *bytes == answer
            {
                return Ok(std::sync::Arc::clone(class));
            }
        }
        let class = std::sync::Arc::new(Class::new(parse(&answer)?));
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) =
            Some((answer, std::sync::Arc::clone(&class)));
        Ok(class)
    }
}

/// The students of `class` (in reading order) that match the view's
/// filter, in the view's order.
pub(crate) fn select<'a>(class: &'a [Student], view: &View) -> Vec<&'a Student> {
    let needle = view.filter.to_lowercase();
    let mut students: Vec<&Student> = class.iter().filter(|s| matches(&s.name, &needle)).collect();
    match (view.sort, view.direction) {
        (SortKey::Name, Direction::Ascending) => {}
        (SortKey::Name, Direction::Descending) => students.reverse(),
        // Stable: students of one age stay in name order.
        (SortKey::Age, Direction::Ascending) => students.sort_by_key(|s| s.age),
        (SortKey::Age, Direction::Descending) => {
            students.sort_by_key(|s| std::cmp::Reverse(s.age));
        }
    }
    students
}

/// A column header: its link, `aria-sort` value and arrow.
#[derive(Debug, Clone)]
pub(crate) struct Header {
    pub(crate) href: String,
    pub(crate) aria_sort: &'static str,
    pub(crate) arrow: &'static str,
}

/// The page of the list to show, and the links around it.
#[derive(Debug, Clone)]
pub(crate) struct Page {
    pub(crate) rows: Vec<Student>,
    /// Students that match the filter, on every page.
    pub(crate) matching: usize,
    /// The page shown (from 1; past the end shows the last) and how many.
    pub(crate) number: usize,
    pub(crate) pages: usize,
    /// The 1-based positions of the first and last row shown.
    pub(crate) first: usize,
    pub(crate) last: usize,
    pub(crate) previous_href: Option<String>,
    pub(crate) next_href: Option<String>,
    pub(crate) name_header: Header,
    pub(crate) age_header: Header,
    /// The CSV of the whole selection, in this order.
    pub(crate) export_href: String,
    /// The view, as hidden fields for the filter form (sort and direction).
    pub(crate) sort_field: Option<&'static str>,
    pub(crate) dir_field: Option<&'static str>,
}

impl Page {
    pub(crate) fn of(selected: &[&Student], view: &View) -> Page {
        let matching = selected.len();
        let pages = matching.div_ceil(PAGE_SIZE).max(1);
        let number = view.page.clamp(1, pages);
        let start = (number - 1) * PAGE_SIZE;
        let rows: Vec<Student> = selected
            .iter()
            .skip(start)
            .take(PAGE_SIZE)
            .map(|s| (*s).clone())
            .collect();
        let header = |key| {
            let (aria_sort, arrow) = view.sort_state(key);
            Header {
                href: view.sort_href(key),
                aria_sort,
                arrow,
            }
        };
        Page {
            matching,
            number,
            pages,
            first: if rows.is_empty() { 0 } else { start + 1 },
            last: start + rows.len(),
            previous_href: (number > 1).then(|| view.page_href(number - 1)),
            next_href: (number < pages).then(|| view.page_href(number + 1)),
            name_header: header(SortKey::Name),
            age_header: header(SortKey::Age),
            export_href: View {
                page: 1,
                ..view.clone()
            }
            .href("/students.csv"),
            sort_field: (view.sort == SortKey::Age).then_some("age"),
            dir_field: (view.direction == Direction::Descending).then_some("desc"),
            rows,
        }
    }
}

/// The class at a glance.
#[derive(Debug, Clone, Default)]
pub(crate) struct Glance {
    pub(crate) count: usize,
    /// One decimal; empty with no students.
    pub(crate) mean: String,
    /// Inline SVG (numbers only: nothing from a user), empty with no students.
    pub(crate) chart_svg: String,
    /// The chart as text: one sentence, and (label, count) per bar.
    pub(crate) chart_text: String,
    pub(crate) bars: Vec<(String, usize)>,
}

/// The most bars the chart draws; wider spans of ages are grouped.
const MAX_BARS: u32 = 20;

impl Glance {
    pub(crate) fn of(students: &[Student]) -> Glance {
        let count = students.len();
        let (Some(min), Some(max)) = (
            students.iter().map(|s| s.age).min(),
            students.iter().map(|s| s.age).max(),
        ) else {
            return Glance::default();
        };
        let sum: u64 = students.iter().map(|s| u64::from(s.age)).sum();
        let mean = format!("{:.1}", sum as f64 / count as f64);
        let width = (max - min + 1).div_ceil(MAX_BARS).max(1);
        let first = min / width * width;
        let bar_count = ((max - first) / width + 1) as usize;
        let mut counts = vec![0usize; bar_count];
        for student in students {
            counts[((student.age - first) / width) as usize] += 1;
        }
        let bars: Vec<(String, usize)> = counts
            .iter()
            .enumerate()
            .map(|(i, &n)| {
                let low = first + i as u32 * width;
                let label = if width == 1 {
                    low.to_string()
                } else {
                    format!("{low}–{}", low + width - 1)
                };
                (label, n)
            })
            .collect();
        let plural = |n: usize| if n == 1 { "student" } else { "students" };
        let mut chart_text = format!("Ages of {count} {}: ", plural(count));
        let described: Vec<String> = bars
            .iter()
            .filter(|(_, n)| *n > 0)
            .map(|(label, n)| format!("{n} aged {label}"))
            .collect();
        chart_text.push_str(&described.join(", "));
        chart_text.push('.');
        Glance {
            count,
            mean,
            chart_svg: svg(&bars),
            chart_text,
            bars,
        }
    }
}

/// A bar chart: one bar per label, its count written above it and its
/// label below (the start of its range when bars group ages), so it reads
/// without colour.
fn svg(bars: &[(String, usize)]) -> String {
    const HEIGHT: u32 = 150;
    const TOP: u32 = 18;
    const AXIS: u32 = HEIGHT - 22;
    const SLOT: u32 = 28;
    let width = SLOT * bars.len() as u32 + 8;
    let most = bars.iter().map(|(_, n)| *n).max().unwrap_or(1).max(1);
    let mut svg = format!(
        "<svg class=\"chart\" viewBox=\"0 0 {width} {HEIGHT}\" width=\"{width}\" height=\"{HEIGHT}\" \
         role=\"img\" aria-labelledby=\"age-chart-title age-chart-text\" focusable=\"false\">\
         <title id=\"age-chart-title\">Age distribution</title>"
    );
    let _ = write!(
        svg,
        "<line class=\"axis\" x1=\"0\" y1=\"{AXIS}\" x2=\"{width}\" y2=\"{AXIS}\"/>"
    );
    for (i, (label, n)) in bars.iter().enumerate() {
        let label = label.split('–').next().unwrap_or(label);
        let x = 4 + SLOT * i as u32;
        let h = ((AXIS - TOP) as usize * n / most) as u32;
        let centre = x + SLOT / 2;
        if h > 0 {
            let _ = write!(
                svg,
                "<rect class=\"bar\" x=\"{}\" y=\"{}\" width=\"{}\" height=\"{h}\"/>",
                x + 3,
                AXIS - h,
                SLOT - 6
            );
        }
        let _ = write!(
            svg,
            "<text class=\"count\" x=\"{centre}\" y=\"{}\" text-anchor=\"middle\">{n}</text>\
             <text class=\"label\" x=\"{centre}\" y=\"{}\" text-anchor=\"middle\">{label}</text>",
            AXIS - h - 4,
            AXIS + 16
        );
    }
    svg.push_str("</svg>");
    svg
}

#[cfg(test)]
mod tests {
    use super::*;

    fn class(students: &[(&str, u32)]) -> Vec<Student> {
        students
            .iter()
            .map(|(name, age)| Student {
                name: (*name).to_owned(),
                age: *age,
            })
            .collect()
    }

    fn names<'a>(students: &[&'a Student]) -> Vec<&'a str> {
        students.iter().map(|s| s.name.as_str()).collect()
    }

    #[test]
    fn names_sort_as_read_and_ages_keep_name_order_within_an_age() {
        let students = class(&[
            ("Student 10", 9),
            ("Zoé Li", 11),
            ("alice", 9),
            ("Student 2", 11),
        ]);
        let students = Class::new(students).students;
        let view = |sort, dir| View::parse("", sort, dir, None);
        assert_eq!(
            names(&select(&students, &view(None, None))),
            ["alice", "Student 2", "Student 10", "Zoé Li"]
        );
        assert_eq!(
            names(&select(&students, &view(None, Some("desc")))),
            ["Zoé Li", "Student 10", "Student 2", "alice"]
        );
        assert_eq!(
            names(&select(&students, &view(Some("age"), None))),
            ["alice", "Student 10", "Student 2", "Zoé Li"]
        );
        assert_eq!(
            names(&select(&students, &view(Some("age"), Some("desc")))),
            ["Student 2", "Zoé Li", "alice", "Student 10"]
        );
    }

    #[test]
    fn pages_hold_at_most_a_page_and_links_keep_the_view() {
        let students: Vec<Student> = (1..=250)
            .map(|i| Student {
                name: format!("Student {i}"),
                age: 10,
            })
            .collect();
        let view = View::parse("stu", Some("age"), Some("desc"), Some("3"));
        let students = Class::new(students).students;
        let page = Page::of(&select(&students, &view), &view);
        assert_eq!((page.first, page.last, page.matching), (201, 250, 250));
        assert_eq!((page.number, page.pages), (3, 3));
        assert_eq!(
            page.previous_href.as_deref(),
            Some("/?q=stu&sort=age&dir=desc&page=2")
        );
        assert_eq!(page.next_href, None);
        // The age header flips the direction; the name header sorts by name.
        assert_eq!(page.age_header.href, "/?q=stu&sort=age");
        assert_eq!(page.age_header.aria_sort, "descending");
        assert_eq!(page.name_header.href, "/?q=stu");
        assert_eq!(page.export_href, "/students.csv?q=stu&sort=age&dir=desc");
    }

    #[test]
    fn a_page_past_the_end_shows_the_last_and_junk_is_the_default() {
        let view = View::parse(" al ", Some("bogus"), Some("up"), Some("-4"));
        assert_eq!(view, View::parse("al", None, None, None));
        let view = View::parse("", None, None, Some("99"));
        let page = Page::of(&select(&class(&[("a", 1)]), &view), &view);
        assert_eq!((page.number, page.first, page.last), (1, 1, 1));
    }

    #[test]
    fn the_class_is_made_once_per_answer_of_the_api() {
        let cache = ClassCache::default();
        let parse = |bytes: &[u8]| -> Result<Vec<Student>, ()> {
            Ok(class(&[
                (std::str::from_utf8(bytes).unwrap(), 1),
                ("Zoé", 2),
                ("alice", 3),
            ]))
        };
        let first = cache.get(bytes::Bytes::from_static(b"bob"), parse).unwrap();
        let again = cache
            .get(
                bytes::Bytes::from_static(b"bob"),
                |_| -> Result<Vec<Student>, ()> { panic!("parsed again") },
            )
            .unwrap();
        assert!(std::sync::Arc::ptr_eq(&first, &again));
        assert_eq!(
            names(&first.students.iter().collect::<Vec<_>>()),
            ["alice", "bob", "Zoé"]
        );
        let changed = cache
            .get(bytes::Bytes::from_static(b"carol"), parse)
            .unwrap();
        assert_eq!(changed.students[1].name, "carol");
        assert_eq!(changed.glance.count, 3);
    }

    #[test]
    fn the_glance_counts_averages_and_describes_the_chart() {
        let glance = Glance::of(&class(&[("a", 10), ("b", 10), ("c", 11), ("d", 13)]));
        assert_eq!((glance.count, glance.mean.as_str()), (4, "11.0"));
        assert_eq!(
            glance.bars,
            [
                ("10".to_owned(), 2),
                ("11".to_owned(), 1),
                ("12".to_owned(), 0),
                ("13".to_owned(), 1)
            ]
        );
        assert_eq!(
            glance.chart_text,
            "Ages of 4 students: 2 aged 10, 1 aged 11, 1 aged 13."
        );
        assert!(glance.chart_svg.starts_with("<svg"));
        assert_eq!(glance.chart_svg.matches("<rect").count(), 3);
        // A wide span is grouped into at most 20 bars.
        let wide = Glance::of(&class(&[("a", 0), ("b", 150)]));
        assert!(wide.bars.len() <= 20, "{:?}", wide.bars);
        assert_eq!(wide.bars[0].0, "0–7");
        assert!(Glance::of(&[]).chart_svg.is_empty());
    }
}
