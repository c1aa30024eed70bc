//! The configuration reference's example (`docs/configuration.md`) is real: it parses, and it
//! states the defaults.

use kstatsd::config::{parse_file, Config, Overrides};

fn readme_toml() -> String {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/configuration.md")).unwrap();
    let block = readme.split("```toml\n").nth(1).expect("a toml block").split("```").next().unwrap();
    block.to_string()
}

#[test]
fn the_configuration_reference_example_parses_and_states_the_defaults() {
    let text = readme_toml();
    let config = Config::build(parse_file(&text).unwrap(), &Overrides::default()).unwrap();
    assert_eq!(config, Config::defaults());
}

#[test]
fn every_commented_key_in_the_configuration_reference_example_is_a_real_key() {
    // Uncomment the optional keys (with their example values) and parse again.
    let text: String = readme_toml()
        .lines()
        .map(|l| l.strip_prefix("# ").filter(|rest| rest.contains(" = ")).unwrap_or(l))
        .collect::<Vec<_>>()
        .join("\n");
    let config = Config::build(parse_file(&text).unwrap(), &Overrides::default()).unwrap();
    assert_eq!(config.server.pin_ingest_core, Some(0));
    assert_eq!(config.aggregate.gauges_max_ttl, Some(3));
}
