//! The list of a real class, as a browser without JavaScript sees it: the
//! order people read names in, the sort links, pages of a large class, the
//! CSV export of what is shown, the CSV import with its preview, and the
//! class at a glance.

use reqwest::StatusCode;

use crate::helpers::{Stack, class_of, client, csrf_in, listed};

#[tokio::test]
async fn names_are_listed_as_people_read_them() {
    let stack = Stack::seeded(&class_of(
        11,
        &[("Zoé Li", 11), ("alice", 12), ("Émile", 9)],
    ));
    let user = stack.sign_in().await;
    let (_, html) = user.page("/").await;
    assert_eq!(
        listed(&html),
        [
            "alice",
            "Émile",
            "Student 1",
            "Student 2",
            "Student 3",
            "Student 4",
            "Student 5",
            "Student 6",
            "Student 7",
            "Student 8",
            "Student 9",
            "Student 10",
            "Student 11",
            "Zoé Li",
        ]
    );
    // The header links sort; the same link again reverses.
    assert!(
        html.contains("id=\"sort-age\" href=\"/?sort=age\""),
        "{html}"
    );
    assert!(
        html.contains("id=\"sort-name\" href=\"/?dir=desc\""),
        "{html}"
    );
    let (_, by_name_desc) = user.page("/?dir=desc").await;
    assert_eq!(listed(&by_name_desc)[..2], ["Zoé Li", "Student 11"]);
    let (_, by_age) = user.page("/?sort=age&q=student").await;
    let ages_first: Vec<String> = listed(&by_age).into_iter().take(3).collect();
    // Ages 7, 8, 9 …: Student 1 is 7, Student 2 is 8.
    assert_eq!(ages_first, ["Student 1", "Student 2", "Student 3"]);
    assert!(by_age.contains("aria-sort=\"ascending\""), "{by_age}");
    assert!(by_age.contains("11 of 14"), "the filter is kept: {by_age}");
    assert!(
        by_age.contains("name=\"sort\" value=\"age\""),
        "the filter form keeps the sort"
    );
}

#[tokio::test]
async fn a_class_of_1000_is_shown_100_at_a_time_with_the_count() {
    let stack = Stack::seeded(&class_of(1000, &[]));
    let user = stack.sign_in().await;
    let (status, html) = user.page("/").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(listed(&html).len(), 100);
    assert!(html.contains("100 of 1000"), "{html}");
    assert!(html.contains("Showing 1–100 of 1000"), "{html}");
    assert!(html.contains("Page 1 of 10"));
    let (_, last) = user.page("/?page=10").await;
    assert_eq!(
        listed(&last).last().map(String::as_str),
        Some("Student 1000")
    );
    assert!(last.contains("Showing 901–1000 of 1000"));
    // The add form comes before the list.
    assert!(html.find("id=\"add\"").unwrap() < html.find("id=\"students\"").unwrap());
    // Not empty: the focus is left where the browser puts it.
    assert!(!html.contains("autofocus"));
    let (_, filtered) = user.page("/?q=student%2099").await;
    assert!(filtered.contains("11 of 1000"), "{filtered}");
}

#[tokio::test]
async fn an_empty_class_focuses_the_add_form() {
    let stack = Stack::seeded("{}");
    let (_, html) = stack.sign_in().await.page("/").await;
    let name_field = &html[html.find("id=\"name\"").unwrap()..];
    assert!(name_field[..name_field.find('>').unwrap()].contains("autofocus"));
    assert!(
        !html.contains("id=\"age-chart\""),
        "no chart without students"
    );
}

#[tokio::test]
async fn the_glance_shows_count_mean_and_a_described_chart() {
    let stack = Stack::seeded(r#"{"a": 10, "b": 10, "c": 11, "d": 13}"#);
    let (_, html) = stack.sign_in().await.page("/").await;
    assert!(html.contains("<dd id=\"glance-count\">4</dd>"), "{html}");
    assert!(html.contains("<dd id=\"glance-mean\">11.0</dd>"), "{html}");
    assert!(html.contains("<svg class=\"chart\""));
    assert!(html.contains("aria-labelledby=\"age-chart-title age-chart-text\""));
    assert!(html.contains("Ages of 4 students: 2 aged 10, 1 aged 11, 1 aged 13."));
}

#[tokio::test]
async fn export_is_the_current_list_as_csv() {
    let stack = Stack::seeded(&class_of(12, &[("Zoé Li", 11), ("alice, jr", 12)]));
    let user = stack.sign_in().await;
    let response = user
        .get("/students.csv?q=student%201&sort=age&dir=desc")
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.headers()["content-type"],
        "text/csv; charset=utf-8"
    );
    assert!(
        response.headers()["content-disposition"]
            .to_str()
            .unwrap()
            .starts_with("attachment")
    );
    // Student 1 is 7, 10 is 16, 11 is 17, 12 is 6: by age, oldest first.
    assert_eq!(
        response.text().await.unwrap(),
        "name,age\nStudent 11,17\nStudent 10,16\nStudent 1,7\nStudent 12,6\n"
    );
    let all = user.get("/students.csv").await.text().await.unwrap();
    assert!(
        all.starts_with("name,age\n\"alice, jr\",12\nStudent 1,7\n"),
        "{all}"
    );
    // Signed out, no export.
    let anonymous = client()
        .get(stack.url("/students.csv"))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), StatusCode::SEE_OTHER);
}

#[tokio::test]
async fn import_previews_then_writes_everything_at_once() {
    let stack = Stack::start();
    let user = stack.sign_in().await;
    let csv = "name,age\nalice,12\nbob,14\nzoé,10\n";
    let preview = user.post_file("/import", "file", csv).await;
    assert_eq!(preview.status(), StatusCode::OK);
    let html = preview.text().await.unwrap();
    assert!(html.contains("Nothing has been written yet"), "{html}");
    assert!(
        html.contains("<strong id=\"import-added\">1</strong>"),
        "{html}"
    );
    assert!(
        html.contains("<strong id=\"import-changed\">1</strong>"),
        "{html}"
    );
    assert!(
        html.contains("<strong id=\"import-unchanged\">1</strong>"),
        "{html}"
    );
    assert_eq!(
        stack.data()["bob"],
        "13",
        "a preview writes nothing (as seeded)"
    );
    // The preview's form carries the file back.
    let carried = html
        .split("name=\"csv\" value=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap()
        .replace("&#38;", "&")
        .replace("&amp;", "&");
    assert_eq!(carried, csv);
    let applied = user.post_file("/import/apply", "csv", &carried).await;
    assert_eq!(applied.status(), StatusCode::SEE_OTHER);
    let location = applied.headers()["location"].to_str().unwrap().to_owned();
    assert_eq!(location, "/?imported=1.1.1");
    let (_, list) = user.page(&location).await;
    assert!(
        list.contains("Imported the CSV: 1 added, 1 changed, 1 unchanged."),
        "{list}"
    );
    assert_eq!(stack.data()["bob"], 14);
    assert_eq!(stack.data()["zoé"], 10);
}

#[tokio::test]
async fn a_bad_row_writes_nothing_and_names_its_line() {
    let stack = Stack::start();
    let user = stack.sign_in().await;
    for (path, field) in [("/import", "file"), ("/import/apply", "csv")] {
        let response = user
            .post_file(path, field, "name,age\nbob,14\ndave,200\n")
            .await;
        assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
        let html = response.text().await.unwrap();
        assert!(html.contains("Nothing was written."), "{html}");
        assert!(
            html.contains("<tr><td class=\"num\">3</td><td>the age must be a whole number from 0 to 150, not 200</td></tr>"),
            "{html}"
        );
        assert!(!html.contains("id=\"apply\""), "no import button: {html}");
        assert_eq!(stack.data()["bob"], "13", "as seeded");
    }
    let not_csv = user.post_file("/import", "file", "{\"alice\": 1}").await;
    assert_eq!(not_csv.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(not_csv.text().await.unwrap().contains("header name,age"));
}

#[tokio::test]
async fn an_upload_without_the_csrf_token_is_refused() {
    let stack = Stack::start();
    let mut user = stack.sign_in().await;
    user.csrf = "forged".into();
    let response = user
        .post_file("/import/apply", "csv", "name,age\nmallory,1\n")
        .await;
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    assert!(stack.data().get("mallory").is_none());
    // The upload page's form carries the session's token.
    let real = stack.sign_in().await;
    let (_, html) = real.page("/import").await;
    assert_eq!(csrf_in(&html), Some(real.csrf.clone()));
    assert!(html.contains("enctype=\"multipart/form-data\""));
    assert!(html.contains("<label for=\"file\">CSV file</label>"));
}
