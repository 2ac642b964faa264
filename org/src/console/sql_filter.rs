//! The WHERE clause of a filtered console page: optional conditions, AND-ed, whose `{}`
//! placeholders become numbered binds (`$1`, `$2`, …) in order, so what a user typed is only
//! ever a bound value, never SQL.

/// `%` and `_` of a user's text taken literally in `LIKE … ESCAPE '\'`.
pub(super) fn like_escape(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_")
}

/// Conditions and their values, in bind order.
#[derive(Default)]
pub(super) struct SqlFilter {
    parts: Vec<String>,
    binds: Vec<String>,
}

impl SqlFilter {
    /// Adds `sql`, one value for each `{}` in it.
    pub fn and(&mut self, sql: &str, values: Vec<String>) {
        let mut sql = sql.to_string();
        for value in values {
            self.binds.push(value);
            sql = sql.replacen("{}", &format!("${}", self.binds.len()), 1);
        }
        self.parts.push(sql);
    }

    /// The condition (`1 = 1` when nothing filters) and its values in bind order.
    pub fn finish(self) -> (String, Vec<String>) {
        let sql = if self.parts.is_empty() {
            "1 = 1".to_string()
        } else {
            self.parts.join(" AND ")
        };
        (sql, self.binds)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_numbered_across_conditions_in_bind_order() {
        let mut f = SqlFilter::default();
        f.and("(a LIKE {} OR b LIKE {})", vec!["x".into(), "y".into()]);
        f.and("c = {}", vec!["z".into()]);
        assert_eq!(
            f.finish(),
            (
                "(a LIKE $1 OR b LIKE $2) AND c = $3".to_string(),
                vec!["x".to_string(), "y".to_string(), "z".to_string()]
            )
        );
        assert_eq!(SqlFilter::default().finish().0, "1 = 1");
    }

    #[test]
    fn like_wildcards_in_text_are_literal() {
        assert_eq!(like_escape(r"50%_a\b"), r"50\%\_a\\b");
    }
}
