//! Reading kubectl's human output the way a reader of the page does: by column and by field.

/// The cells of `column` for the row whose first cell is `name`, in `kubectl get` output.
pub fn cell(table: &str, name: &str, column: &str) -> Option<String> {
    let mut lines = table.lines();
    let header = lines.next()?;
    let start = header.find(column)?;
    let row = lines.find(|l| l.split_whitespace().next() == Some(name))?;
    let rest = row.get(start..)?;
    rest.split_whitespace().next().map(str::to_string)
}

/// Whether `kubectl get` output has a row named `name`.
pub fn has_row(table: &str, name: &str) -> bool {
    table
        .lines()
        .skip(1)
        .any(|l| l.split_whitespace().next() == Some(name))
}

/// The values of a `kubectl describe` field, continuation lines included:
/// `Tokens:  a\n         b` gives `["a", "b"]`; `<none>` gives an empty list.
pub fn field(describe: &str, name: &str) -> Option<Vec<String>> {
    let prefix = format!("{name}:");
    let mut lines = describe.lines().skip_while(|l| !l.starts_with(&prefix));
    let first = lines.next()?;
    let mut values = vec![first[prefix.len()..].trim().to_string()];
    for line in lines {
        if !line.starts_with(' ') || line.trim().is_empty() || line.trim_end().ends_with(':') {
            break;
        }
        values.push(line.trim().to_string());
    }
    values.retain(|v| !v.is_empty() && v != "<none>");
    Some(values)
}

/// `<none>` for an empty list, else the values joined by `, `.
pub fn list(values: &[String]) -> String {
    if values.is_empty() {
        "<none>".into()
    } else {
        values.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GET_SA: &str =
        "NAME         SECRETS   AGE\ndefault      0         5m\nsa-example   1         2s\n";
    const DESCRIBE_SA: &str = "Name:                default\nNamespace:           default\nMountable secrets:   default-token-vssmw\nTokens:              default-token-vssmw\n                     sa-example-token\nEvents:              <none>\n";

    #[test]
    fn reads_a_cell_by_row_and_column() {
        assert_eq!(cell(GET_SA, "sa-example", "SECRETS").as_deref(), Some("1"));
        assert_eq!(cell(GET_SA, "default", "SECRETS").as_deref(), Some("0"));
        assert_eq!(cell(GET_SA, "missing", "SECRETS"), None);
        assert_eq!(cell(GET_SA, "default", "NOPE"), None);
    }

    #[test]
    fn reads_a_describe_field_with_continuation_lines() {
        assert_eq!(
            field(DESCRIBE_SA, "Tokens").unwrap(),
            vec!["default-token-vssmw", "sa-example-token"]
        );
        assert_eq!(
            field(DESCRIBE_SA, "Mountable secrets").unwrap(),
            vec!["default-token-vssmw"]
        );
        assert_eq!(field(DESCRIBE_SA, "Events").unwrap(), Vec::<String>::new());
        assert_eq!(field(DESCRIBE_SA, "Missing"), None);
    }
}
