//! Packaging: `packaging/kstatsd.example.toml` documents every key the
//! configuration accepts and parses with the real binary (as shipped, and with every
//! commented-out key switched on); `packaging/kstatsd.service` has the hardening and lifecycle
//! directives, and its command lines are ones the binary accepts; `packaging/Dockerfile` is
//! multi-stage, runs as a numeric non-root user, and its entry point with the configuration it
//! ships is accepted by the binary; the .deb and .rpm metadata in `Cargo.toml` install the binary,
//! the configuration and the unit where the unit's command lines look for them. Docker, systemd,
//! cargo-deb and cargo-generate-rpm are not needed: files are read, and the command lines are run
//! with `--check-config` against the packaged configurations (`packaging/check-packages` builds
//! and installs the real packages).
//!
//! The list of accepted keys is not written down here: it is read from the serde structs the
//! binary parses the file with (a deserializer that only records the field names each struct
//! asks for), so a key added to a section without a line in the example fails this test.

use kstatsd::admin::HttpSection;
use kstatsd::config::{AggregateSection, FileConfig, HistogramFile, ServerSection, SinksFile};
use kstatsd::sink::backstop::BackstopSection;
use kstatsd::sink::console::ConsoleSection;
use kstatsd::sink::graphite::GraphiteSection;
use kstatsd::sink::kafka::KafkaSection;
use kstatsd::sink::kafka_rest::KafkaRestSection;
use kstatsd::source::docker::rules::RuleSpec;
use kstatsd::source::docker::DockerSection;
use serde::de::{DeserializeOwned, Visitor};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_kstatsd");

fn packaging(file: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("packaging").join(file)
}

fn read(file: &str) -> String {
    std::fs::read_to_string(packaging(file)).unwrap_or_else(|e| panic!("packaging/{file}: {e}"))
}

/// Runs the binary; returns (exit code, stdout, stderr).
fn run(args: &[&str]) -> (Option<i32>, String, String) {
    let out = Command::new(BIN).args(args).env_remove("KSTATSD_CONFIG").output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

// ---- the key list, from the serde structs ----

/// The error that carries the field list out of `deserialize_struct`.
#[derive(Debug)]
struct Fields(Option<&'static [&'static str]>);

impl std::fmt::Display for Fields {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", self.0)
    }
}

impl std::error::Error for Fields {}

impl serde::de::Error for Fields {
    fn custom<T: std::fmt::Display>(_: T) -> Self {
        Fields(None)
    }
}

/// A deserializer that answers nothing, but records the field names a struct asks for.
struct Grab;

impl<'de> serde::Deserializer<'de> for Grab {
    type Error = Fields;

    fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Fields> {
        Err(Fields(None))
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        fields: &'static [&'static str],
        _: V,
    ) -> Result<V::Value, Fields> {
        Err(Fields(Some(fields)))
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf option
        unit unit_struct newtype_struct seq tuple tuple_struct map enum identifier ignored_any
    }
}

fn fields_of<T: DeserializeOwned>() -> Vec<&'static str> {
    match T::deserialize(Grab) {
        Err(Fields(Some(f))) => f.to_vec(),
        other => panic!("{} is not a plain struct: {:?}", std::any::type_name::<T>(), other.err()),
    }
}

/// Every key of the file, as `section` → keys. A field that is a table of its own appears as the
/// section `parent.field` (its header must be in the example); the fields of the inline tables
/// (histogram rules, Docker rules) belong to the section they are written in.
fn accepted_keys() -> BTreeMap<&'static str, BTreeSet<&'static str>> {
    let tables = [
        "server",
        "aggregate",
        "sinks",
        "docker",
        "sinks.console",
        "sinks.kafka_rest",
        "sinks.kafka",
        "sinks.graphite",
        "sinks.backstop",
        "http",
    ];
    let mut keys: BTreeMap<&'static str, BTreeSet<&'static str>> = BTreeMap::new();
    let mut add = |section: &'static str, fields: Vec<&'static str>| {
        for f in fields {
            let path = if section.is_empty() { f.to_string() } else { format!("{section}.{f}") };
            match tables.iter().find(|t| **t == path) {
                Some(table) => {
                    keys.entry(table).or_default();
                }
                None => {
                    keys.entry(section).or_default().insert(f);
                }
            }
        }
    };
    add("", fields_of::<FileConfig>());
    add("server", fields_of::<ServerSection>());
    add("aggregate", fields_of::<AggregateSection>());
    add("aggregate", fields_of::<HistogramFile>());
    add("sinks", fields_of::<SinksFile>());
    add("sinks.console", fields_of::<ConsoleSection>());
    add("sinks.kafka_rest", fields_of::<KafkaRestSection>());
    add("sinks.kafka", fields_of::<KafkaSection>());
    add("sinks.graphite", fields_of::<GraphiteSection>());
    add("sinks.backstop", fields_of::<BackstopSection>());
    add("docker", fields_of::<DockerSection>());
    add("docker", fields_of::<RuleSpec>());
    add("http", fields_of::<HttpSection>());
    assert!(keys.get("").map_or(true, |k| k.is_empty()), "a top-level key that is not a table: {keys:?}");
    keys.remove("");
    keys
}

/// What the example writes, set or commented out: section → keys (a key is `name =` at the start
/// of a line or inside an inline table).
fn documented_keys(text: &str) -> BTreeMap<String, BTreeSet<String>> {
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut section = String::new();
    for line in text.lines() {
        let l = line.trim_start_matches('#').trim();
        if let Some(h) = l.strip_prefix('[').and_then(|r| r.split_once(']')).map(|(h, _)| h) {
            if h.chars().all(|c| c.is_ascii_lowercase() || c == '_' || c == '.') && !h.is_empty() {
                section = h.to_string();
                out.entry(section.clone()).or_default();
                continue;
            }
        }
        // The setting itself, without its trailing comment.
        let setting = l.split(" # ").next().unwrap();
        let bytes = setting.as_bytes();
        for (i, _) in setting.match_indices(" =") {
            let start =
                setting[..i].rfind(|c: char| !(c.is_ascii_lowercase() || c == '_')).map_or(0, |p| p + 1);
            let before = setting[..start].trim_end();
            let at_key = start == 0 || before.ends_with('{') || before.ends_with(',');
            if at_key && start < i && bytes[start].is_ascii_lowercase() {
                out.entry(section.clone()).or_default().insert(setting[start..i].to_string());
            }
        }
    }
    out
}

/// The example with every commented-out setting and section header switched on.
fn uncommented(text: &str) -> String {
    text.lines()
        .map(|l| match l.strip_prefix("# ") {
            Some(rest)
                if rest.starts_with('[')
                    || rest.split_once(" = ").is_some_and(|(k, _)| {
                        k.trim_end().bytes().all(|b| b.is_ascii_lowercase() || b == b'_')
                    }) =>
            {
                rest
            }
            _ => l,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn the_example_config_documents_every_key_the_daemon_accepts() {
    let text = read("kstatsd.example.toml");
    let documented = documented_keys(&text);
    let mut missing = Vec::new();
    for (section, keys) in accepted_keys() {
        let Some(have) = documented.get(section) else {
            missing.push(format!("[{section}]"));
            continue;
        };
        missing.extend(keys.iter().filter(|k| !have.contains(**k)).map(|k| format!("{section}.{k}")));
    }
    assert!(
        missing.is_empty(),
        "keys accepted by the configuration sections but not in packaging/kstatsd.example.toml: {missing:?}"
    );
    // Every key line carries its documentation (on the line, or in the comment lines just above).
    let lines: Vec<&str> = text.lines().collect();
    for (i, l) in lines.iter().enumerate() {
        let setting = l.trim_start_matches("# ");
        let is_key = setting
            .split_once(" = ")
            .is_some_and(|(k, _)| k.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'));
        // Lines that continue a group documented on its first line.
        let grouped = [
            "prefix_counter",
            "prefix_timer",
            "prefix_gauge",
            "prefix_set",
            "delete_timers",
            "delete_sets",
            "delete_gauges",
            "retry_backoff_max",
        ];
        if is_key && !grouped.iter().any(|k| setting.starts_with(&format!("{k} ="))) {
            let commented_above = i > 0 && lines[i - 1].starts_with("# ") && !lines[i - 1].contains(" = ");
            assert!(setting.contains(" # ") || commented_above, "line {}: `{l}` has no comment", i + 1);
        }
    }
}

#[test]
fn the_example_config_parses_with_the_binary_as_shipped_and_uncommented() {
    let path = packaging("kstatsd.example.toml");
    let (code, out, err) = run(&["--check-config", "--config", path.to_str().unwrap()]);
    assert_eq!(code, Some(0), "{err}");
    // As shipped, it binds loopback only, as the built-in defaults do.
    assert!(
        out.contains("udp = [\"127.0.0.1:8125\"]") && out.contains("admin = \"127.0.0.1:8126\""),
        "{out}"
    );
    let defaults = run(&["--check-config"]).1;
    assert_eq!(out, defaults, "the example as shipped states the built-in defaults");

    // Every commented-out key switched on: each is a real key with a valid example value. The
    // Graphite section shows `address` and its alternative, `host` and `port`: one at a time.
    // `ca_file` is read at once, and the example's path does not exist here: the test's
    // certificate stands in for it.
    let ca = format!("{}/tests/fixtures/tls/self-signed.crt.pem", env!("CARGO_MANIFEST_DIR"));
    let on =
        uncommented(&read("kstatsd.example.toml")).replace("\"/etc/kstatsd/ca.pem\"", &format!("{ca:?}"));
    let dir = std::env::temp_dir().join(format!("kstatsd-packaging-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for (name, drop) in [("address.toml", "host = "), ("host-port.toml", "address = ")] {
        let variant: String = on
            .lines()
            .filter(|l| !(l.starts_with(drop) || (drop == "host = " && l.starts_with("port = "))))
            .map(|l| format!("{l}\n"))
            .collect();
        let file = dir.join(name);
        std::fs::write(&file, &variant).unwrap();
        let (code, out, err) = run(&["--check-config", "--config", file.to_str().unwrap()]);
        assert_eq!(code, Some(0), "{name}: {err}\n{variant}");
        for section in [
            "[sinks.kafka_rest]",
            "[sinks.kafka]",
            "[sinks.graphite]",
            "[sinks.backstop]",
            "[docker]",
            "[http]",
        ] {
            assert!(out.contains(section), "{name}: {section} switched on: {out}");
        }
        assert!(out.contains("pin_ingest_core = 0") && out.contains("gauges_max_ttl = 3"), "{out}");
        assert!(!out.contains("secret"), "the example password is redacted: {out}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

// ---- the systemd unit ----

/// `[Service]` (and the other sections) as key → every value given, in order.
fn unit_directives(text: &str) -> BTreeMap<String, Vec<String>> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for line in
        text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#') && !l.starts_with('['))
    {
        let (k, v) = line.split_once('=').unwrap_or_else(|| panic!("not a directive: {line}"));
        out.entry(k.trim().to_string()).or_default().push(v.trim().to_string());
    }
    out
}

#[test]
fn the_systemd_unit_is_hardened_and_runs_real_flags() {
    let text = read("kstatsd.service");
    for section in ["[Unit]", "[Service]", "[Install]"] {
        assert!(text.lines().any(|l| l == section), "{section} missing");
    }
    let d = unit_directives(&text);
    let one = |k: &str| -> &str {
        let v = d.get(k).unwrap_or_else(|| panic!("{k}= missing"));
        v.last().unwrap()
    };
    // A dedicated, unprivileged user.
    let own_user = d.get("DynamicUser").is_some_and(|v| v.last().unwrap() == "yes")
        || d.get("User").is_some_and(|v| !["", "root", "0"].contains(&v.last().unwrap().as_str()));
    assert!(own_user, "DynamicUser=yes or a non-root User=");
    for (k, want) in [
        ("NoNewPrivileges", "yes"),
        ("ProtectSystem", "strict"),
        ("ProtectHome", "yes"),
        ("PrivateTmp", "yes"),
        ("PrivateDevices", "yes"),
        ("ProtectKernelTunables", "yes"),
        ("ProtectKernelModules", "yes"),
        ("ProtectKernelLogs", "yes"),
        ("ProtectControlGroups", "yes"),
        ("MemoryDenyWriteExecute", "yes"),
        ("RestrictAddressFamilies", "AF_INET AF_INET6 AF_UNIX"),
        ("CapabilityBoundingSet", ""),
        ("Restart", "on-failure"),
        ("ExecReload", "/bin/kill -HUP $MAINPID"),
    ] {
        assert_eq!(one(k), want, "{k}=");
    }
    assert!(d["SystemCallFilter"].iter().any(|v| v == "@system-service"), "SystemCallFilter=@system-service");
    assert!(one("LimitNOFILE").parse::<u64>().unwrap() >= 4096, "LimitNOFILE=");
    // systemd waits longer than the daemon's own shutdown bound (shutdown_timeout, plus the
    // drain and the final flush) before it kills it.
    let stop = one("TimeoutStopSec").strip_suffix('s').unwrap().parse::<u64>().unwrap();
    let bound = kstatsd::config::Config::defaults().server.shutdown_timeout;
    assert!(Duration::from_secs(stop) >= bound * 3, "TimeoutStopSec={stop}s, shutdown_timeout {bound:?}");

    // ExecStartPre checks the file; both command lines are real flags of the binary: run them
    // with --check-config against the example config in place of /etc/kstatsd/kstatsd.toml.
    let example = packaging("kstatsd.example.toml");
    let pre: Vec<&str> = one("ExecStartPre").split_whitespace().collect();
    let start: Vec<&str> = one("ExecStart").split_whitespace().collect();
    assert!(pre.contains(&"--check-config"), "{pre:?}");
    for argv in [&pre, &start] {
        assert!(
            argv[0].starts_with('/') && argv[0].ends_with("/kstatsd"),
            "an absolute path to kstatsd: {argv:?}"
        );
        assert!(argv.windows(2).any(|w| w == ["--config", "/etc/kstatsd/kstatsd.toml"]), "{argv:?}");
        let mut args: Vec<&str> = argv[1..]
            .iter()
            .map(|a| if *a == "/etc/kstatsd/kstatsd.toml" { example.to_str().unwrap() } else { a })
            .collect();
        if !args.contains(&"--check-config") {
            args.insert(0, "--check-config");
        }
        let (code, _, err) = run(&args);
        assert_eq!(code, Some(0), "{argv:?}: {err}");
    }
    // The pre-start check really refuses a bad file (exit 2: systemd does not start the service).
    let (code, _, err) = run(&["--check-config", "--config", packaging("kstatsd.service").to_str().unwrap()]);
    assert_eq!(code, Some(2), "{err}");
}

// ---- the .deb and .rpm ----

/// One file a package installs: where it comes from, its mode, and whether the package manager
/// treats it as configuration that an upgrade does not overwrite.
#[derive(Debug, Clone, PartialEq)]
struct Packaged {
    source: String,
    mode: String,
    config: bool,
}

/// `dest` of an asset whose `source` may be a glob: a `dest` ending in `/` is a directory that
/// takes the file's name (as both tools do).
fn install_paths(source: &str, dest: &str) -> Vec<(String, String)> {
    let dest = if dest.starts_with('/') { dest.to_string() } else { format!("/{dest}") };
    let sources: Vec<String> = if source.contains('*') {
        let (dir, pattern) = source.rsplit_once('/').unwrap();
        let (prefix, suffix) = pattern.split_once('*').unwrap();
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join(dir);
        let mut found: Vec<String> = std::fs::read_dir(&root)
            .unwrap_or_else(|e| panic!("{source}: {e}"))
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|n| n.starts_with(prefix) && n.ends_with(suffix))
            .map(|n| format!("{dir}/{n}"))
            .collect();
        found.sort();
        assert!(!found.is_empty(), "{source} matches no file");
        found
    } else {
        vec![source.to_string()]
    };
    sources
        .into_iter()
        .map(|src| {
            let name = src.rsplit('/').next().unwrap();
            let to = if dest.ends_with('/') { format!("{dest}{name}") } else { dest.clone() };
            (to, src)
        })
        .collect()
}

fn cargo_metadata(tool: &str) -> toml::Table {
    let text = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml")).unwrap();
    let manifest: toml::Table = text.parse().unwrap();
    manifest["package"]["metadata"][tool]
        .as_table()
        .unwrap_or_else(|| panic!("no [package.metadata.{tool}]"))
        .clone()
}

/// What `cargo deb` installs, by path: the assets (`[source, dest, mode]`; files under /etc are
/// conffiles), and the unit that `systemd-units` finds as `<unit-scripts>/<package>.service`.
fn deb_files() -> BTreeMap<String, Packaged> {
    let deb = cargo_metadata("deb");
    let mut out = BTreeMap::new();
    for a in deb["assets"].as_array().unwrap() {
        let a: Vec<&str> =
            a.as_array().expect("[source, dest, mode]").iter().map(|v| v.as_str().unwrap()).collect();
        for (to, source) in install_paths(a[0], a[1]) {
            let config = to.starts_with("/etc/");
            out.insert(to, Packaged { source, mode: a[2].to_string(), config });
        }
    }
    let units = deb["systemd-units"].as_table().expect("systemd-units");
    let dir = units["unit-scripts"].as_str().unwrap().trim_end_matches('/');
    let unit = format!("{dir}/kstatsd.service");
    assert!(Path::new(env!("CARGO_MANIFEST_DIR")).join(&unit).exists(), "{unit}");
    out.insert(
        "/usr/lib/systemd/system/kstatsd.service".into(),
        Packaged { source: unit, mode: "644".into(), config: false },
    );
    out
}

/// What `cargo generate-rpm` installs, by path (`config = "noreplace"`: `%config(noreplace)`).
fn rpm_files() -> BTreeMap<String, Packaged> {
    let rpm = cargo_metadata("generate-rpm");
    let mut out = BTreeMap::new();
    for a in rpm["assets"].as_array().unwrap() {
        let get = |k: &str| a.get(k).and_then(|v| v.as_str()).unwrap_or_default().to_string();
        let config = match a.get("config") {
            None => false,
            Some(v) => {
                assert_eq!(v.as_str(), Some("noreplace"), "a configuration file is noreplace: {a}");
                true
            }
        };
        for (to, source) in install_paths(&get("source"), &get("dest")) {
            out.insert(to, Packaged { source, mode: get("mode"), config });
        }
    }
    out
}

#[test]
fn the_packages_install_what_the_unit_runs_where_it_looks_for_it() {
    let (deb, rpm) = (deb_files(), rpm_files());
    assert_eq!(deb, rpm, "the .deb and the .rpm install the same files");
    let d = unit_directives(&read("kstatsd.service"));
    for line in [&d["ExecStart"], &d["ExecStartPre"]] {
        let argv: Vec<&str> = line.last().unwrap().split_whitespace().collect();
        let bin = &deb.get(argv[0]).unwrap_or_else(|| panic!("{} is not in the packages", argv[0]));
        assert_eq!((bin.source.as_str(), bin.mode.as_str()), ("target/release/kstatsd", "755"));
        let at = argv.iter().position(|a| *a == "--config").unwrap();
        let config =
            &deb.get(argv[at + 1]).unwrap_or_else(|| panic!("{} is not in the packages", argv[at + 1]));
        assert_eq!(config.source, "packaging/kstatsd.example.toml");
        assert!(config.config, "{} is a configuration file that upgrades keep", argv[at + 1]);
    }
    assert_eq!(deb["/usr/lib/systemd/system/kstatsd.service"].source, "packaging/kstatsd.service");
    assert_eq!(deb["/usr/share/doc/kstatsd/README.md"].source, "README.md");
    assert!(deb.contains_key("/usr/share/doc/kstatsd/docs/install.md"), "{deb:#?}");
    // Only the configuration is configuration, and every source but the build output exists.
    assert_eq!(deb.values().filter(|p| p.config).count(), 1, "{deb:#?}");
    for p in deb.values().filter(|p| !p.source.starts_with("target/")) {
        assert!(Path::new(env!("CARGO_MANIFEST_DIR")).join(&p.source).is_file(), "{}", p.source);
    }
    // The service is installed disabled: it starts once the file has been edited.
    let units = cargo_metadata("deb")["systemd-units"].clone();
    assert_eq!((units["enable"].as_bool(), units["start"].as_bool()), (Some(false), Some(false)));
}

// ---- the Dockerfile ----

#[test]
fn the_dockerfile_is_multi_stage_runs_as_non_root_and_its_entry_point_works() {
    let text = read("Dockerfile");
    // Instructions, with continuation lines joined.
    let joined = text.replace("\\\n", " ");
    let instructions: Vec<(String, String)> = joined
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| {
            let (i, rest) = l.split_once(' ').unwrap_or((l, ""));
            (i.to_ascii_uppercase(), rest.trim().to_string())
        })
        .collect();
    let froms: Vec<usize> =
        instructions.iter().enumerate().filter(|(_, (i, _))| i == "FROM").map(|(n, _)| n).collect();
    assert!(froms.len() >= 2, "multi-stage: {froms:?}");
    let builder = &instructions[froms[0]].1;
    let stage = builder.rsplit(' ').next().unwrap();
    assert!(builder.to_ascii_lowercase().contains(" as "), "the build stage is named: {builder}");
    assert!(
        instructions[froms[0]..froms[1]]
            .iter()
            .any(|(i, a)| i == "RUN" && a.contains("cargo build --release --locked")),
        "the build stage builds with the lock file"
    );
    // The final stage: a runtime image, the binary copied from the build stage, a numeric
    // non-root user, the ports, an exec-form entry point.
    let last = &instructions[*froms.last().unwrap()..];
    assert!(!last[0].1.starts_with("rust"), "the runtime stage is not the Rust toolchain: {}", last[0].1);
    assert!(
        last.iter().any(|(i, a)| i == "COPY" && a.contains(&format!("--from={stage}"))),
        "binary from {stage}"
    );
    let user = &last.iter().rfind(|(i, _)| i == "USER").expect("a USER in the final stage").1;
    let uid = user.split(':').next().unwrap();
    assert!(uid.parse::<u32>().is_ok_and(|u| u > 0), "a numeric non-root uid: USER {user}");
    let expose: BTreeSet<&str> =
        last.iter().filter(|(i, _)| i == "EXPOSE").flat_map(|(_, a)| a.split_whitespace()).collect();
    assert!(expose.contains("8125/udp") && expose.contains("8126/tcp"), "{expose:?}");
    let json = |i: &str| -> Vec<String> {
        let a = &last.iter().rfind(|(x, _)| x == i).unwrap_or_else(|| panic!("{i} in the final stage")).1;
        serde_json::from_str(a).unwrap_or_else(|e| panic!("{i} in exec (JSON) form: {a}: {e}"))
    };
    let (entry, cmd) = (json("ENTRYPOINT"), json("CMD"));
    assert!(entry[0].ends_with("/kstatsd"), "{entry:?}");
    // The configuration the image ships, and where it goes.
    let copies: BTreeMap<String, String> = last
        .iter()
        .filter(|(i, a)| i == "COPY" && !a.starts_with("--from"))
        .filter_map(|(_, a)| a.split_once(' ').map(|(s, d)| (d.trim().to_string(), s.to_string())))
        .collect();
    let config =
        copies.get("/etc/kstatsd/kstatsd.toml").expect("the config copied to /etc/kstatsd/kstatsd.toml");
    assert!(cmd.windows(2).any(|w| w == ["--config", "/etc/kstatsd/kstatsd.toml"]), "{cmd:?}");
    // Its command line, with that file, is accepted by the binary; it listens on every interface
    // of the container (loopback would be unreachable there) with the admin mutations off.
    let repo_config = Path::new(env!("CARGO_MANIFEST_DIR")).join(config);
    let mut args = vec!["--check-config".to_string()];
    args.extend(entry[1..].iter().chain(&cmd).map(|a| {
        if a == "/etc/kstatsd/kstatsd.toml" {
            repo_config.to_str().unwrap().to_string()
        } else {
            a.clone()
        }
    }));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (code, out, err) = run(&args);
    assert_eq!(code, Some(0), "{args:?}: {err}");
    assert!(out.contains("udp = [\"0.0.0.0:8125\"]"), "{out}");
    assert!(
        out.contains("admin = \"0.0.0.0:8126\"") && out.contains("admin_allow_mutations = false"),
        "{out}"
    );
    // The build context keeps out what the build does not copy (target/ is gigabytes).
    let ignore = read("Dockerfile.dockerignore");
    assert!(ignore.lines().any(|l| l.trim() == "*"), "{ignore}");
    for (i, a) in &instructions {
        if i == "COPY" && !a.starts_with("--from") {
            let src = a.split_whitespace().next().unwrap().trim_end_matches('/');
            assert!(ignore.lines().any(|l| l.trim() == format!("!{src}")), "{src} is in the build context");
        }
    }
}

// ---- the command line against the example ----

/// The example's settings, commented out or not: (section, key) → (value, comment, commented).
fn example_settings(text: &str) -> BTreeMap<(String, String), (String, String, bool)> {
    let mut out = BTreeMap::new();
    let mut section = String::new();
    for line in text.lines() {
        let (commented, l) = match line.strip_prefix("# ") {
            Some(rest) => (true, rest.trim()),
            None => (false, line.trim()),
        };
        if let Some(h) = l.strip_prefix('[').and_then(|r| r.strip_suffix(']')) {
            section = h.to_string();
            continue;
        }
        let Some((key, rest)) = l.split_once(" = ") else { continue };
        let key = key.trim();
        if key.is_empty() || !key.bytes().all(|b| b.is_ascii_lowercase() || b == b'_') {
            continue;
        }
        let (value, comment) = match rest.split_once(" # ") {
            Some((v, c)) => (v.trim(), c.trim()),
            None => (rest.trim(), ""),
        };
        out.insert((section.clone(), key.to_string()), (value.to_string(), comment.to_string(), commented));
    }
    out
}

/// A value without its TOML brackets and quotes: `["127.0.0.1:8125"]` → `127.0.0.1:8125`.
fn bare(v: &str) -> String {
    let v = v.trim().trim_end_matches([',', ';']);
    let v = v.strip_prefix('[').and_then(|x| x.strip_suffix(']')).unwrap_or(v);
    v.trim().trim_matches('"').to_string()
}

/// The `[section.key, …; default X; …]` groups of one flag's help: (key, its default if stated).
fn help_keys(help: &str) -> Vec<(String, Option<String>)> {
    let is_key = |k: &str| {
        k.contains('.')
            && k.split('.').all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'))
    };
    let mut out = Vec::new();
    let mut rest = help;
    while let Some(open) = rest.find('[') {
        let Some(len) = rest[open..].find(']') else { break };
        let group = &rest[open + 1..open + len];
        rest = &rest[open + len + 1..];
        let mut pending: Vec<String> = Vec::new();
        let mut found = false;
        for part in group.split(';').map(str::trim) {
            let keys: Vec<&str> = part.split(',').map(str::trim).collect();
            if keys.iter().all(|k| is_key(k)) {
                out.extend(pending.drain(..).map(|k| (k, None)));
                pending = keys.iter().map(|k| k.to_string()).collect();
                found = true;
                continue;
            }
            if !found {
                break;
            }
            let default = part.strip_prefix("default ").unwrap_or(part);
            let token = default.split_whitespace().next().unwrap_or("");
            let is_default = part.starts_with("default ") || (!part.contains(' ') && part != "required");
            out.extend(pending.drain(..).map(|k| (k, is_default.then(|| bare(token)))));
        }
        out.extend(pending.drain(..).map(|k| (k, None)));
    }
    out
}

#[test]
fn every_option_of_the_command_line_is_in_the_example_with_the_same_default() {
    use clap::Args;
    let command = kstatsd::config::Overrides::augment_args(clap::Command::new("kstatsd"));
    let example = example_settings(&read("kstatsd.example.toml"));
    let mut checked = 0;
    for arg in command.get_arguments() {
        let flag = arg.get_long().unwrap_or_else(|| arg.get_id().as_str());
        let help = arg.get_help().map(|h| h.to_string()).unwrap_or_default();
        let help = help.split_whitespace().collect::<Vec<_>>().join(" ");
        if flag == "config-format" {
            continue; // the file's own syntax, not a key in it
        }
        let keys = help_keys(&help);
        assert!(!keys.is_empty(), "--{flag}: its help names no [section.key]: {help}");
        for (path, default) in keys {
            let (section, key) = path.rsplit_once('.').unwrap();
            let (value, comment, commented) = example
                .get(&(section.to_string(), key.to_string()))
                .unwrap_or_else(|| panic!("--{flag}: {path} is not in packaging/kstatsd.example.toml"));
            match default.as_deref() {
                None => {}
                // A section that is off by default is commented out, with an example value.
                Some("off") => {
                    assert!(commented, "--{flag}: {path} is off by default but set in the example")
                }
                Some(d) => assert!(
                    bare(value) == d || comment.contains(&format!("default {d}")),
                    "--{flag}: {path} defaults to {d:?} in --help, the example says {value} ({comment})"
                ),
            }
            checked += 1;
        }
    }
    assert!(checked > 60, "only {checked} keys checked");
}
