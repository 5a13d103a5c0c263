//! Reads the `BENCH` lines of the bench programs on stdin and prints one markdown table per
//! section: rows and columns in the order they were first seen, every figure as
//! "median (min–max)" over the runs. `BENCHNOTE` lines are printed once under their
//! section's table; any other line is ignored.
//!
//! `scripts/bench` pipes every program's stdout through this.

use std::collections::HashMap;
use std::io::Read as _;

use erlmcp_tests::benchkit::summary;

#[derive(Default)]
struct Section {
    name: String,
    rows: Vec<String>,
    columns: Vec<String>,
    values: HashMap<(usize, usize), Vec<f64>>,
    notes: Vec<String>,
}

fn position(list: &mut Vec<String>, name: &str) -> usize {
    match list.iter().position(|x| x == name) {
        Some(i) => i,
        None => {
            list.push(name.to_string());
            list.len() - 1
        }
    }
}

struct Tables {
    sections: Vec<Section>,
    /// Lines that looked like figures but could not be read, for stderr.
    rejected: Vec<String>,
}

fn section<'a>(sections: &'a mut Vec<Section>, name: &str) -> &'a mut Section {
    let i = match sections.iter().position(|s| s.name == name) {
        Some(i) => i,
        None => {
            sections.push(Section {
                name: name.to_string(),
                ..Section::default()
            });
            sections.len() - 1
        }
    };
    &mut sections[i]
}

fn read(input: &str) -> Tables {
    let mut t = Tables {
        sections: Vec::new(),
        rejected: Vec::new(),
    };
    for line in input.lines() {
        let fields: Vec<&str> = line.split('\t').collect();
        match fields.as_slice() {
            ["BENCH", s, row, column, value] => match value.trim().parse::<f64>() {
                Ok(v) if v.is_finite() => {
                    let sec = section(&mut t.sections, s);
                    let r = position(&mut sec.rows, row);
                    let c = position(&mut sec.columns, column);
                    sec.values.entry((r, c)).or_default().push(v);
                }
                _ => t.rejected.push(line.to_string()),
            },
            ["BENCHNOTE", s, text] => {
                let sec = section(&mut t.sections, s);
                if !sec.notes.iter().any(|n| n == text) {
                    sec.notes.push(text.to_string());
                }
            }
            [tag, ..] if tag.starts_with("BENCH") => t.rejected.push(line.to_string()),
            _ => {}
        }
    }
    t
}

/// Enough digits to compare runs, no more: 3 significant figures, whole numbers from 100.
fn number(v: f64) -> String {
    let a = v.abs();
    if a >= 100.0 || v == v.trunc() && a >= 1.0 {
        group(v.round() as i64)
    } else if a >= 10.0 {
        format!("{v:.1}")
    } else if a >= 1.0 {
        format!("{v:.2}")
    } else if a == 0.0 {
        "0".to_string()
    } else {
        let digits = (2 - a.log10().floor() as i32).max(0) as usize;
        format!("{v:.digits$}")
    }
}

/// 12345 → 12,345.
fn group(n: i64) -> String {
    let digits = n.unsigned_abs().to_string();
    let mut out = String::new();
    for (i, ch) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(ch);
    }
    if n < 0 { format!("-{out}") } else { out }
}

fn cell(values: &[f64]) -> String {
    let (median, min, max) = summary(values);
    if values.len() == 1 || min == max {
        number(median)
    } else {
        format!("{} ({}–{})", number(median), number(min), number(max))
    }
}

fn escape(text: &str) -> String {
    text.replace('|', "\\|")
}

fn render(t: &Tables) -> String {
    let mut out = String::new();
    for s in &t.sections {
        let runs = s.values.values().map(Vec::len).max().unwrap_or(0);
        out.push_str(&format!(
            "### {}\n\n| {} | {} |\n|{}\n",
            escape(&s.name),
            if runs == 1 {
                "1 run".to_string()
            } else {
                format!("median (min–max) of {runs} runs")
            },
            s.columns
                .iter()
                .map(|c| escape(c))
                .collect::<Vec<_>>()
                .join(" | "),
            " --- |".repeat(s.columns.len() + 1)
        ));
        for (r, row) in s.rows.iter().enumerate() {
            let cells: Vec<String> = (0..s.columns.len())
                .map(|c| s.values.get(&(r, c)).map(|v| cell(v)).unwrap_or_default())
                .collect();
            out.push_str(&format!("| {} | {} |\n", escape(row), cells.join(" | ")));
        }
        out.push('\n');
        for n in &s.notes {
            out.push_str(&format!("{n}\n\n"));
        }
    }
    out
}

fn main() {
    let mut input = String::new();
    if let Err(e) = std::io::stdin().read_to_string(&mut input) {
        eprintln!("bench_table: cannot read stdin: {e}");
        std::process::exit(1);
    }
    let tables = read(&input);
    for line in &tables.rejected {
        eprintln!("bench_table: ignored a malformed line: {line:?}");
    }
    if tables.sections.is_empty() {
        eprintln!("bench_table: no BENCH lines on stdin");
    }
    print!("{}", render(&tables));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_by_section_rows_and_columns_in_first_seen_order() {
        let input = "\
BENCH\tAck\tsqlite 500/s\tp99 ms\t1.5
noise on stdout
BENCH\tAck\tsqlite 500/s\tp50 ms\t0.2
BENCH\tServe\tdefault\tready ms\t20
BENCH\tAck\tsqlite 2000/s\tp99 ms\t9
BENCH\tAck\tsqlite 500/s\tp99 ms\t1.25
BENCH\tAck\tsqlite 500/s\tp50 ms\t0.3
BENCH\tAck\tsqlite 500/s\tp99 ms\t2
BENCHNOTE\tAck\ttarget: p99 < 10 ms
BENCHNOTE\tAck\ttarget: p99 < 10 ms
BENCH\tAck\tbroken\tp99 ms\tfast
";
        let t = read(input);
        assert_eq!(t.rejected.len(), 1);
        let md = render(&t);
        let want = "\
### Ack

| median (min–max) of 3 runs | p99 ms | p50 ms |
| --- | --- | --- |
| sqlite 500/s | 1.50 (1.25–2) | 0.250 (0.200–0.300) |
| sqlite 2000/s | 9 |  |

target: p99 < 10 ms

### Serve

| 1 run | ready ms |
| --- | --- |
| default | 20 |

";
        assert_eq!(md, want);
    }

    #[test]
    fn numbers_keep_three_figures() {
        assert_eq!(number(31234.4), "31,234");
        assert_eq!(number(123.4), "123");
        assert_eq!(number(12.34), "12.3");
        assert_eq!(number(1.234), "1.23");
        assert_eq!(number(0.01234), "0.0123");
        assert_eq!(number(0.0), "0");
        assert_eq!(number(-1500.0), "-1,500");
        assert_eq!(cell(&[2.0, 2.0]), "2");
    }
}
