//! Container renaming, as docker-stats-to-backstop did it: `--rules` (a JSON array of
//! `{"regexp","into","category"}`, first match wins, `into` may use `$1`/`${name}` references,
//! an empty `into` keeps the name) and the older `--prefix` (one `{"regexp","into"}`, applied
//! with replace-all to every name no rule matched). Built at start-up on the main thread, used on
//! the poller thread.

use regex::Regex;
use serde::Deserialize;
use simd_json::prelude::*;

/// One rule as written in the TOML file or the JSON of `--rules` / `--prefix`.
#[derive(Clone, Debug, Default, Deserialize, serde::Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RuleSpec {
    pub regexp: String,
    #[serde(default)]
    pub into: String,
    #[serde(default)]
    pub category: String,
}

/// Parses `--rules`: a JSON array of rule objects. Keys match case-insensitively (Go's
/// `encoding/json` did, so `{"Regexp": …}` configurations keep working).
pub fn parse_rules_json(text: &str) -> Result<Vec<RuleSpec>, String> {
    let mut bytes = text.as_bytes().to_vec();
    let v = simd_json::to_borrowed_value(&mut bytes).map_err(|e| format!("not JSON: {e}"))?;
    let arr = v.as_array().ok_or("expected a JSON array of {\"regexp\",\"into\",\"category\"}")?;
    arr.iter().map(spec_of).collect()
}

/// Parses `--prefix`: one JSON object `{"regexp","into"}`.
pub fn parse_prefix_json(text: &str) -> Result<RuleSpec, String> {
    let mut bytes = text.as_bytes().to_vec();
    let v = simd_json::to_borrowed_value(&mut bytes).map_err(|e| format!("not JSON: {e}"))?;
    spec_of(&v)
}

fn spec_of(v: &simd_json::BorrowedValue) -> Result<RuleSpec, String> {
    let obj = v.as_object().ok_or("expected an object {\"regexp\",\"into\",\"category\"}")?;
    let mut spec = RuleSpec::default();
    let mut has_regexp = false;
    for (k, v) in obj.iter() {
        let text = v.as_str().ok_or_else(|| format!("`{k}` must be a string"))?.to_string();
        match k.to_ascii_lowercase().as_str() {
            "regexp" => (spec.regexp, has_regexp) = (text, true),
            "into" => spec.into = text,
            "category" => spec.category = text,
            _ => return Err(format!("unknown key `{k}` (expected regexp, into, category)")),
        }
    }
    if !has_regexp {
        return Err("`regexp` is required".into());
    }
    Ok(spec)
}

struct Rule {
    re: Regex,
    into: String,
    category: String,
}

/// The compiled rules and prefix.
#[derive(Default)]
pub struct Renamer {
    rules: Vec<Rule>,
    prefix: Option<Rule>,
}

impl Renamer {
    pub fn new(rules: &[RuleSpec], prefix: Option<&RuleSpec>) -> Result<Renamer, String> {
        let compile = |s: &RuleSpec| -> Result<Rule, String> {
            let re = Regex::new(&s.regexp).map_err(|e| format!("regexp `{}`: {e}", s.regexp))?;
            Ok(Rule { re, into: s.into.clone(), category: s.category.clone() })
        };
        Ok(Renamer {
            rules: rules.iter().map(compile).collect::<Result<_, _>>()?,
            prefix: prefix.map(compile).transpose()?,
        })
    }

    /// The metric prefix and the category (empty when none) of a container named `name`
    /// (its first `Names` entry without the leading `/`).
    pub fn apply<'a>(&'a self, name: &str) -> (String, &'a str) {
        for r in &self.rules {
            if r.re.is_match(name) {
                let out = if r.into.is_empty() {
                    name.to_string()
                } else {
                    r.re.replace_all(name, &r.into).into_owned()
                };
                return (out, &r.category);
            }
        }
        match &self.prefix {
            Some(p) => (p.re.replace_all(name, &p.into).into_owned(), ""),
            None => (name.to_string(), ""),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_documented_example() {
        let rules =
            parse_rules_json(r#"[{"regexp":"(.*)\\..*\\.(.*)\\..*","into":"$1.$2","category":"web"}]"#)
                .unwrap();
        let r = Renamer::new(&rules, None).unwrap();
        assert_eq!(r.apply("pid.bla.name.service"), ("pid.name".to_string(), "web"));
        assert_eq!(r.apply("plain"), ("plain".to_string(), ""), "no match: the name, no category");
    }

    #[test]
    fn first_match_wins_empty_into_keeps_the_name_and_named_groups_work() {
        let rules = parse_rules_json(
            r#"[{"Regexp":"^db_(\\d+)$","Category":"db"},
                {"regexp":"^(?P<app>[a-z]+)_(\\d+)$","into":"${app}.n$2","category":"app"},
                {"regexp":".*","into":"other","category":"misc"}]"#,
        )
        .unwrap();
        let r = Renamer::new(&rules, None).unwrap();
        assert_eq!(r.apply("db_1"), ("db_1".to_string(), "db"));
        assert_eq!(r.apply("web_7"), ("web.n7".to_string(), "app"));
        assert_eq!(r.apply("Web-7"), ("other".to_string(), "misc"));
    }

    #[test]
    fn prefix_applies_to_names_no_rule_matched() {
        let prefix = parse_prefix_json(r#"{"regexp":"^([^.]+)\\.([^.]+)$","into":"$2.$1"}"#).unwrap();
        let rules = parse_rules_json(r#"[{"regexp":"^keep","category":"k"}]"#).unwrap();
        let r = Renamer::new(&rules, Some(&prefix)).unwrap();
        assert_eq!(r.apply("a.b"), ("b.a".to_string(), ""));
        assert_eq!(r.apply("keep.me"), ("keep.me".to_string(), "k"));
        assert_eq!(r.apply("x"), ("x".to_string(), ""), "prefix without a match: unchanged");
    }

    #[test]
    fn bad_rules_are_refused_with_a_reason() {
        assert!(parse_rules_json("{").unwrap_err().contains("not JSON"));
        assert!(parse_rules_json(r#"{"regexp":"x"}"#).unwrap_err().contains("array"));
        assert!(parse_rules_json(r#"[{"into":"x"}]"#).unwrap_err().contains("regexp"));
        assert!(parse_rules_json(r#"[{"regexp":"x","colour":"red"}]"#).unwrap_err().contains("colour"));
        assert!(parse_rules_json(r#"[{"regexp":1}]"#).unwrap_err().contains("string"));
        let bad = parse_rules_json(r#"[{"regexp":"(unclosed"}]"#).unwrap();
        assert!(Renamer::new(&bad, None).is_err());
    }
}
