//! The README's configuration tables against the code: every default it
//! names is the default the binaries parse, and every variable the code reads
//! is in a table.

use logdrop::config::Env;
use std::collections::BTreeSet;

fn readme() -> String {
    std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).expect("README.md")
}

/// The rows `| `VAR` | default | meaning |` of the table under `heading`.
fn table(text: &str, heading: &str) -> Vec<(String, String)> {
    let start = text
        .find(heading)
        .unwrap_or_else(|| panic!("{heading} in README"));
    text[start..]
        .lines()
        .skip_while(|l| !l.starts_with('|'))
        .take_while(|l| l.starts_with('|'))
        .flat_map(|l| {
            let cells: Vec<&str> = l.split('|').map(str::trim).collect();
            let default = cells.get(2).copied().unwrap_or_default().to_string();
            // One variable per row, or several: `A`, `B`.
            cells
                .get(1)
                .copied()
                .unwrap_or_default()
                .split(", ")
                .filter_map(|v| v.strip_prefix('`')?.strip_suffix('`'))
                .map(|v| (v.to_string(), default.clone()))
                .collect::<Vec<_>>()
        })
        .filter(|(v, _)| v.starts_with("LOGDROP_"))
        .collect()
}

/// Setting each variable to the default the README gives must parse to the
/// same configuration as leaving it unset.
fn check<C: std::fmt::Debug, E: std::fmt::Debug>(
    rows: &[(String, String)],
    required: &[(&str, &str)],
    parse: impl Fn(&Env) -> Result<C, E>,
) -> usize {
    let unset = format!(
        "{:?}",
        parse(&Env::from_pairs(required.to_vec())).expect("defaults parse")
    );
    let mut checked = 0;
    for (var, default) in rows {
        let Some(value) = default.strip_prefix('`').and_then(|d| d.strip_suffix('`')) else {
            continue; // "(required)", "unset", "from ECS metadata", "the event's bucket"
        };
        if value.contains('<') {
            continue; // a placeholder such as `<log dir>/.logdrop`
        }
        let mut pairs = required.to_vec();
        pairs.push((var.as_str(), value));
        let set = parse(&Env::from_pairs(pairs)).unwrap_or_else(|e| {
            panic!("README's default of {var}, `{value}`, does not parse: {e:?}")
        });
        assert_eq!(
            format!("{set:?}"),
            unset,
            "README's default of {var} is `{value}`, the code's is another"
        );
        checked += 1;
    }
    checked
}

#[test]
fn every_default_in_the_readme_is_the_code_default() {
    let text = readme();
    let shipper = table(&text, "### Shipper (Lambda)");
    let sidecar = table(&text, "### Sidecar");
    let n = check(&shipper, &[("LOGDROP_LOG_GROUP", "g")], |env| {
        logdrop::shipper::Config::from_env(env)
    });
    assert!(n >= 8, "{n} shipper defaults checked");
    let n = check(&sidecar, &[("LOGDROP_BUCKET", "b")], |env| {
        logdrop::sidecar::Config::from_env(env)
    });
    assert!(n >= 12, "{n} sidecar defaults checked");
    let sweeper = table(&text, "### Sweeper (EFS drops)");
    let n = check(
        &sweeper,
        &[("LOGDROP_BUCKET", "b"), ("LOGDROP_EFS_ROOT", "/efs")],
        |env| logdrop::sweeper::SweepConfig::from_env(env, None),
    );
    assert!(n >= 2, "{n} sweeper defaults checked");
    // The one placeholder default.
    let c =
        logdrop::sidecar::Config::from_env(&Env::from_pairs([("LOGDROP_BUCKET", "b")])).unwrap();
    assert_eq!(c.state_dir, c.log_dir.join(".logdrop"));
}

#[test]
fn every_variable_the_code_reads_is_documented() {
    let text = readme();
    let documented: BTreeSet<String> = table(&text, "### Shipper (Lambda)")
        .into_iter()
        .chain(table(&text, "### Sidecar"))
        .chain(table(&text, "### Sweeper (EFS drops)"))
        .map(|(v, _)| v)
        .collect();
    let mut read = BTreeSet::new();
    let mut dirs = vec![std::path::PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/src"
    ))];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
                continue;
            }
            let code = std::fs::read_to_string(&path).unwrap();
            for piece in code.split("\"LOGDROP_").skip(1) {
                let name: String = piece
                    .chars()
                    .take_while(|c| c.is_ascii_uppercase() || *c == '_')
                    .collect();
                if piece[name.len()..].starts_with('"') {
                    read.insert(format!("LOGDROP_{name}"));
                }
            }
        }
    }
    // Retired: read only to refuse it, documented under "Sidecar stop and restart".
    read.remove("LOGDROP_LAYOUT");
    read.retain(|v| !v.starts_with("LOGDROP_TEST_"));
    let missing: Vec<&String> = read.difference(&documented).collect();
    assert!(
        missing.is_empty(),
        "read by the code, not in the README's tables: {missing:?}"
    );
    assert!(read.len() >= 25, "{read:?}");
}
