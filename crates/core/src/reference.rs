//! The generated parts of the reference pages (`docs/reference/`): rendered from the code (the
//! CRD schemas, the command lines, the metrics registry) and spliced into the hand-written pages
//! between markers, so the pages cannot drift from what the code does. Each crate's test renders
//! its part and fails when the page differs (`SOC_WARDEN_BLESS=1` writes it instead). Pure.

/// A Markdown table: `headers`, then one line per row; `|` and line breaks in a cell are escaped.
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let cell = |c: &str| c.replace('|', "\\|").replace('\n', " ");
    let mut out = format!("| {} |\n|{}\n", headers.join(" | "), "---|".repeat(headers.len()));
    for row in rows {
        out.push_str(&format!("| {} |\n", row.iter().map(|c| cell(c)).collect::<Vec<_>>().join(" | ")));
    }
    out
}

/// The marker lines around the generated part `name` of a page.
fn markers(name: &str) -> (String, String) {
    (
        format!("<!-- generated:{name} (from the code; `SOC_WARDEN_BLESS=1 cargo test` rewrites it) -->\n"),
        format!("<!-- end:{name} -->\n"),
    )
}

/// `page` with its generated part `name` replaced by `generated`; an error when the page has no
/// such part (its markers were removed or mistyped).
pub fn splice(page: &str, name: &str, generated: &str) -> Result<String, String> {
    let (begin, end) = markers(name);
    let start = page.find(&begin).ok_or_else(|| format!("no line `{}` in the page", begin.trim_end()))?;
    let body = start + begin.len();
    let stop =
        page[body..].find(&end).map(|i| body + i).ok_or_else(|| format!("no line `{}` after it", end.trim_end()))?;
    Ok(format!("{}{generated}{}", &page[..body], &page[stop..]))
}

#[cfg(feature = "reference")]
/// The options of a command, one row each: the flag and its value, its environment variable, its
/// default, and its help (with the values it takes).
pub fn flags(cmd: &clap::Command) -> String {
    // Built: each argument then says how many values it takes.
    let mut cmd = cmd.clone();
    cmd.build();
    let rows: Vec<Vec<String>> = cmd
        .get_arguments()
        .filter(|a| !matches!(a.get_id().as_str(), "help" | "version"))
        .map(|a| {
            let takes_value = a.get_num_args().is_some_and(|n| n.takes_values());
            let value = a.get_value_names().and_then(|v| v.first()).map(|v| v.to_string());
            let value = value.unwrap_or_else(|| a.get_id().as_str().to_uppercase());
            let short = a.get_short().map(|c| format!("-{c}, ")).unwrap_or_default();
            let name = match a.get_long() {
                Some(long) if takes_value => format!("`{short}--{long} <{value}>`"),
                Some(long) => format!("`{short}--{long}`"),
                None => format!("`<{value}>`"),
            };
            let env = a.get_env().map(|e| format!("`{}`", e.to_string_lossy())).unwrap_or_default();
            let default: Vec<String> = a
                .get_default_values()
                .iter()
                .map(|v| v.to_string_lossy().into_owned())
                .filter(|v| takes_value && !v.is_empty())
                .collect();
            let default = if default.is_empty() { String::new() } else { format!("`{}`", default.join(",")) };
            let mut help = a.get_long_help().or(a.get_help()).map(|h| h.to_string()).unwrap_or_default();
            let values: Vec<String> = a.get_possible_values().iter().map(|v| format!("`{}`", v.get_name())).collect();
            if !values.is_empty() && takes_value {
                help.push_str(&format!(" (one of {})", values.join(", ")));
            }
            vec![name, env, default, help]
        })
        .collect();
    table(&["flag", "environment", "default", "meaning"], &rows)
}

/// Fails when the generated part `name` of the page `path` (from the repository's root) differs
/// from `generated`; with `SOC_WARDEN_BLESS=1` in the environment, writes it instead. For the tests
/// of a crate of `crates/`, which pass their `CARGO_MANIFEST_DIR`.
#[cfg(feature = "reference")]
pub fn check(manifest_dir: &str, path: &str, name: &str, generated: &str) {
    let file = std::path::Path::new(manifest_dir).join("../..").join(path);
    let page = std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("{path}: {e}"));
    let want = splice(&page, name, generated).unwrap_or_else(|e| panic!("{path}: {e}"));
    if std::env::var_os("SOC_WARDEN_BLESS").is_some() {
        std::fs::write(&file, &want).unwrap_or_else(|e| panic!("{path}: {e}"));
    } else {
        assert!(
            page == want,
            "{path} is out of date (its part `{name}`): run `SOC_WARDEN_BLESS=1 cargo test --workspace`"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_generated_part_is_replaced_and_the_rest_kept() {
        let (begin, end) = markers("flags");
        let page = format!("# Flags\n\nbefore\n{begin}old\n{end}after\n");
        let got = splice(&page, "flags", "new\n").unwrap();
        assert_eq!(got, format!("# Flags\n\nbefore\n{begin}new\n{end}after\n"));
        assert_eq!(splice(&got, "flags", "new\n").unwrap(), got, "idempotent");
        assert!(splice(&page, "metrics", "x").unwrap_err().contains("generated:metrics"));
        assert!(splice(&format!("{begin}old\n"), "flags", "x").unwrap_err().contains("end:flags"));
    }

    #[test]
    fn cells_cannot_break_the_table() {
        let t = table(&["a", "b"], &[vec!["x|y".into(), "one\ntwo".into()]]);
        assert_eq!(t, "| a | b |\n|---|---|\n| x\\|y | one two |\n");
    }
}
