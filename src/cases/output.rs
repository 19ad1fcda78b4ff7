//! Case results rendered for a person (text) and for CI systems (JUnit XML).

use super::CaseResult;

/// `pass`/`FAIL` lines and a count, for a person.
pub fn render_text(results: &[CaseResult]) -> String {
    let mut out = String::new();
    for r in results {
        if r.passed {
            out.push_str(&format!("pass  {}\n", r.case));
        } else {
            out.push_str(&format!(
                "FAIL  {}\n      {}\n",
                r.case,
                r.difference.as_deref().unwrap_or("")
            ));
        }
    }
    let failed = results.iter().filter(|r| !r.passed).count();
    out.push_str(&format!(
        "{} passed, {} failed\n",
        results.len() - failed,
        failed
    ));
    out
}

/// JUnit XML, for CI systems: one testsuite, one testcase per case.
pub fn render_junit(suite: &str, results: &[CaseResult]) -> String {
    let failed = results.iter().filter(|r| !r.passed).count();
    let total: f64 = results.iter().map(|r| r.time.as_secs_f64()).sum();
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    out.push_str(&format!(
        "<testsuite name=\"{}\" tests=\"{}\" failures=\"{failed}\" errors=\"0\" time=\"{total:.3}\">\n",
        xml(suite),
        results.len()
    ));
    for r in results {
        out.push_str(&format!(
            "  <testcase classname=\"{}\" name=\"{}\" time=\"{:.3}\"",
            xml(suite),
            xml(&r.case),
            r.time.as_secs_f64()
        ));
        match &r.difference {
            None => out.push_str("/>\n"),
            Some(d) => out.push_str(&format!(
                ">\n    <failure message=\"{}\">{}</failure>\n  </testcase>\n",
                xml(d.lines().next().unwrap_or("")),
                xml(d)
            )),
        }
    }
    out.push_str("</testsuite>\n");
    out
}

fn xml(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            // Control characters other than tab/newline are not allowed in XML 1.0.
            c if (c as u32) < 0x20 && c != '\t' && c != '\n' && c != '\r' => out.push('?'),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::cases::{Expect, Kind};
    use crate::contract::Decision;

    #[test]
    fn junit_escapes_and_counts() {
        let r = CaseResult {
            case: "a<b>&\"c\".json".into(),
            passed: false,
            expected: Expect {
                decision: Kind::Push,
                reason: None,
            },
            actual: Decision::Fail("x & y\u{1}".into()),
            difference: Some("expected push\n     got fail: x & y".into()),
            time: Duration::from_millis(2),
        };
        let x = render_junit("suite", &[r]);
        assert!(x.contains("tests=\"1\" failures=\"1\""), "{x}");
        assert!(
            x.contains("name=\"a&lt;b&gt;&amp;&quot;c&quot;.json\""),
            "{x}"
        );
        assert!(x.contains("<failure message=\"expected push\">"), "{x}");
        assert!(!x.contains('\u{1}'));
    }

    #[test]
    fn text_output_ends_with_the_counts() {
        let ok = CaseResult {
            case: "a.json".into(),
            passed: true,
            expected: Expect {
                decision: Kind::Push,
                reason: None,
            },
            actual: Decision::Push("r".into()),
            difference: None,
            time: Duration::ZERO,
        };
        assert!(render_text(&[ok]).ends_with("1 passed, 0 failed\n"));
    }
}
