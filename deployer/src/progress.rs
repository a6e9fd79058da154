//! Progress on long work: indicatif spinners and bars on a terminal, plain
//! timestamped lines when stdout is not one (CI logs).

use std::io::IsTerminal;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Where progress goes; one per command.
#[derive(Clone)]
pub struct Progress {
    multi: Option<MultiProgress>,
}

impl Progress {
    /// Bars when stdout is a terminal, lines otherwise.
    pub fn detect() -> Progress {
        if std::io::stdout().is_terminal() {
            Progress {
                multi: Some(MultiProgress::with_draw_target(ProgressDrawTarget::stdout())),
            }
        } else {
            Progress { multi: None }
        }
    }

    /// Shows nothing (progress of a command whose stdout is its result).
    pub fn hidden() -> Progress {
        Progress {
            multi: Some(MultiProgress::with_draw_target(ProgressDrawTarget::hidden())),
        }
    }

    /// A unit of work with a name (an image, a service), shown as one line.
    pub fn task(&self, name: &str, message: &str) -> Task {
        let bar = self.multi.as_ref().map(|multi| {
            let bar = multi.add(ProgressBar::new_spinner());
            bar.set_style(
                ProgressStyle::with_template(
                    "{spinner:.cyan} {prefix:.bold} {wide_msg} {elapsed:.dim}",
                )
                .expect("the template is valid")
                .tick_chars("⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏✓"),
            );
            bar.set_prefix(name.to_owned());
            bar.enable_steady_tick(Duration::from_millis(100));
            bar
        });
        let task = Task {
            name: name.to_owned(),
            bar,
            last: Arc::new(Mutex::new(String::new())),
        };
        task.set(message);
        task
    }

    /// A command's result (a table, JSON, a list): printed as it is, with
    /// no timestamp, above any bars. Every line a command shows goes
    /// through here or through [`Progress::println`].
    pub fn out(&self, text: &str) {
        match &self.multi {
            Some(multi) => multi.suspend(|| println!("{text}")),
            None => println!("{text}"),
        }
    }

    /// A progress line above the bars (timestamped without a terminal).
    pub fn println(&self, line: &str) {
        match &self.multi {
            Some(multi) => {
                let _ = multi.println(line);
            }
            None => println!(
                "{} {line}",
                humantime::format_rfc3339_millis(SystemTime::now())
            ),
        }
    }
}

/// One line of progress.
#[derive(Clone)]
pub struct Task {
    name: String,
    bar: Option<ProgressBar>,
    last: Arc<Mutex<String>>,
}

impl Task {
    pub fn set(&self, message: &str) {
        match &self.bar {
            Some(bar) => bar.set_message(message.to_owned()),
            None => {
                let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
                if *last != message {
                    *last = message.to_owned();
                    plain_line(&self.name, message);
                }
            }
        }
    }

    /// Ends the task with a final message: `✓` on a terminal.
    pub fn done(&self, message: &str) {
        match &self.bar {
            Some(bar) => {
                bar.set_style(
                    ProgressStyle::with_template("{prefix:.bold.green} {wide_msg}")
                        .expect("the template is valid"),
                );
                bar.set_prefix(format!("✓ {}", self.name));
                bar.finish_with_message(message.to_owned());
            }
            None => plain_line(&self.name, message),
        }
    }

    pub fn fail(&self, message: &str) {
        match &self.bar {
            Some(bar) => {
                bar.set_style(
                    ProgressStyle::with_template("{prefix:.bold.red} {wide_msg}")
                        .expect("the template is valid"),
                );
                bar.set_prefix(format!("✗ {}", self.name));
                bar.finish_with_message(message.to_owned());
            }
            None => plain_line(&self.name, &format!("FAILED: {message}")),
        }
    }
}

fn plain_line(name: &str, message: &str) {
    println!(
        "{} {name}: {message}",
        humantime::format_rfc3339_millis(SystemTime::now())
    );
}
