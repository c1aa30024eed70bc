//! Tests of the config.js reader: the JavaScript literal parser (every syntax etsy's files use,
//! and every construct that would run code refused with its key and place), and the mapping of
//! each documented etsy and statsd-kafka-backend option onto kstatsd's sections, checked
//! through the validated configuration.

use super::*;
use crate::flush::summarize::{BinEdge, Percentile};
use crate::sink::console::ConsoleFormat;
use crate::sink::kafka_rest::config::RecordKey;
use std::time::Duration;

fn js(text: &str) -> Js {
    parse(text).unwrap_or_else(|e| panic!("{text}: {e}")).value
}

/// The value of `key` in a parsed top-level object.
fn member(text: &str, key: &str) -> Js {
    let Js::Obj(members) = js(text) else { panic!("not an object") };
    members.into_iter().rev().find(|m| m.key == key).unwrap_or_else(|| panic!("no {key}")).value.value
}

fn parse_err(text: &str) -> String {
    parse(text).expect_err(text).0
}

fn config(text: &str) -> Config {
    load(text, &Overrides::default()).unwrap_or_else(|e| panic!("{text}: {e}"))
}

fn config_err(text: &str) -> String {
    load(text, &Overrides::default()).expect_err(text).0
}

fn ignored(text: &str) -> Vec<String> {
    translate(text).unwrap().ignored
}

/// The printed TOML reads back to the same configuration.
fn round_trips(c: &Config) {
    let again = Config::build(crate::config::parse_file(&c.to_toml()).unwrap(), &Overrides::default());
    assert_eq!(again.as_ref(), Ok(c), "{}", c.to_toml());
}

#[test]
fn keys_quotes_comments_and_trailing_commas() {
    let text = "// leading comment\n/* block\n comment */ {\n  plain: 1, $d_1: 2, 'single': 3, \"double\": 4,\n\
                \u{e9}t\u{e9}: 5, 42: 6, /* between */ after /* key */ : /* colon */ 7 // end\n, lax: 8,\n}\n";
    let Js::Obj(m) = js(text) else { panic!() };
    let keys: Vec<&str> = m.iter().map(|m| m.key.as_str()).collect();
    assert_eq!(keys, ["plain", "$d_1", "single", "double", "\u{e9}t\u{e9}", "42", "after", "lax"]);
    let values: Vec<Js> = m.into_iter().map(|m| m.value.value).collect();
    assert_eq!(values, (1..=8).map(|n| Js::Num(n as f64)).collect::<Vec<_>>());
    assert_eq!(member("{ a: [1, 2, [3, ], {b: 'c',},], }", "a"), js_arr_example());
    assert_eq!(member("{ a: [] }", "a"), Js::Arr(vec![]));
    assert_eq!(js("{}"), Js::Obj(vec![]));
    // Positions: keys and values, with CRLF and tabs.
    let Js::Obj(m) = js("{\r\n\tport: 8125,\r\n  \"x\":\t'y'\n}") else { panic!() };
    assert_eq!((m[0].at, m[0].value.at), (Pos { line: 2, col: 2 }, Pos { line: 2, col: 8 }));
    assert_eq!((m[1].at, m[1].value.at), (Pos { line: 3, col: 3 }, Pos { line: 3, col: 8 }));
}

fn js_arr_example() -> Js {
    let at = |c| Pos { line: 1, col: c };
    let n = |x: f64, c| Node { at: at(c), value: Js::Num(x) };
    Js::Arr(vec![
        n(1.0, 7),
        n(2.0, 10),
        Node { at: at(13), value: Js::Arr(vec![n(3.0, 14)]) },
        Node {
            at: at(20),
            value: Js::Obj(vec![Member {
                key: "b".into(),
                at: at(21),
                value: Node { at: at(24), value: Js::Str("c".into()) },
            }]),
        },
    ])
}

#[test]
fn wrapping_as_etsy_evals_it() {
    for text in ["({ a: 1 })", "(( { a: 1 } ));", "{ a: 1 };", "\u{feff}{ a: 1 }\n// end\n", "{a:1}/**/;/**/"]
    {
        assert_eq!(member(text, "a"), Js::Num(1.0), "{text}");
    }
    assert!(parse_err("[1, 2]").starts_with("line 1, column 1: expected the configuration object"));
    assert!(parse_err("").contains("found the end of the file"));
    let e = parse_err("{ a: 1 }\nconfig.b = 2");
    assert!(e.starts_with("line 2, column 1: nothing may follow the configuration object"), "{e}");
    let e = parse_err("({ a: 1 }");
    assert!(e.contains("`(` at line 1, column 1 is not closed"), "{e}");
    // A statement after the object is code.
    let e = parse_err("{ a: 1 }.a");
    assert!(e.contains("is code, not a value"), "{e}");
}

#[test]
fn strings_and_their_escapes() {
    let s = |lit: &str| member(&format!("{{ s: {lit} }}"), "s");
    let st = |v: &str| Js::Str(v.into());
    assert_eq!(s(r#""a'b""#), st("a'b"));
    assert_eq!(s(r#"'a"b'"#), st("a\"b"));
    assert_eq!(s(r#"'it\'s'"#), st("it's"));
    assert_eq!(s(r#""\"q\" \\ \/""#), st("\"q\" \\ /"));
    assert_eq!(s(r"'\n\t\r\b\f\v\0'"), st("\n\t\r\u{8}\u{c}\u{b}\0"));
    assert_eq!(s(r"'\x41\u0042\u{43}\u{1F600}'"), st("ABC\u{1F600}"));
    assert_eq!(s(r"'\uD83D\uDE00'"), st("\u{1F600}"), "a surrogate pair");
    assert_eq!(s("'one \\\ntwo'"), st("one two"), "a line continuation");
    assert_eq!(s("'one \\\r\ntwo'"), st("one two"));
    assert_eq!(s("`tpl 'x' \"y\"\nline`"), st("tpl 'x' \"y\"\nline"));
    assert_eq!(s("'caf\u{e9} \u{1F600}'"), st("caf\u{e9} \u{1F600}"));
    assert_eq!(s("''"), st(""));
    assert_eq!(s("`$ {a} $`"), st("$ {a} $"));
}

#[test]
fn numbers_as_javascript_reads_them() {
    let n = |lit: &str| match member(&format!("{{ n: {lit} }}"), "n") {
        Js::Num(x) => x,
        other => panic!("{lit}: {other:?}"),
    };
    for (lit, want) in [
        ("10", 10.0),
        ("-10", -10.0),
        ("+1.5", 1.5),
        ("- 3", -3.0),
        ("-+-2", 2.0),
        (".5", 0.5),
        ("5.", 5.0),
        ("5.e1", 50.0),
        ("1e3", 1000.0),
        ("2.5E-1", 0.25),
        ("1E+2", 100.0),
        ("99.9", 99.9),
        ("1_000_000", 1e6),
        ("0x1F", 31.0),
        ("0XfF", 255.0),
        ("0o17", 15.0),
        ("0b101", 5.0),
        ("0660", 432.0),
        ("089", 89.0),
        ("08.5", 8.5),
        ("0", 0.0),
        ("0.25", 0.25),
        ("-0.5e-3", -0.0005),
    ] {
        assert_eq!(n(lit), want, "{lit}");
    }
    assert_eq!(member("{ n: 1e999 }", "n"), Js::Num(f64::INFINITY));
    for (lit, says) in [
        ("1.2.3", "`1.2.3` is not a number"),
        ("0660.5", "`0660.5` is not a number"),
        ("10px", "`10px` is not a number"),
        ("1e", "an exponent needs digits"),
        ("1__0", "a `_` must sit between two digits"),
        ("1_", "a `_` must sit between two digits"),
        ("0x", "expected a number"),
        ("10n", "`10n` is not a number"),
    ] {
        let e = parse_err(&format!("{{\n  n: {lit}\n}}"));
        assert!(e.starts_with("line 2, column ") && e.contains("`n`: ") && e.contains(says), "{lit}: {e}");
    }
    assert!(parse_err("{ n: - }").starts_with("line 1, column 8: `n`: expected a number, found `}`"));
}

#[test]
fn words_and_duplicates() {
    assert_eq!(member("{ t: true }", "t"), Js::Bool(true));
    assert_eq!(member("{ f: false }", "f"), Js::Bool(false));
    assert_eq!(member("{ z: null }", "z"), Js::Null);
    assert_eq!(member("{ u: undefined }", "u"), Js::Undefined);
    // The last of two keys wins (and the warning says so).
    let c = config("{ port: 1, address: '127.0.0.1', port: 2 }");
    assert_eq!(c.server.udp, vec!["127.0.0.1:2".parse().unwrap()]);
    let i = ignored("{ port: 1, port: 2 }");
    assert_eq!(i, vec!["port (given twice; the last one, at line 1, column 12, is used)"]);
    // `undefined` is as good as absent.
    assert_eq!(config("{ port: undefined, address: '127.0.0.1' }").server.udp[0].port(), 8125);
}

#[test]
fn syntax_errors_say_where() {
    for (text, want) in [
        ("{\n  a: 'never closed\n}", "line 2, column 6: `a`: this string is never closed on its line"),
        ("{ a: 'x", "line 1, column 6: `a`: this string is never closed"),
        ("{ a: 1 /* open", "line 1, column 8: this `/*` comment is never closed"),
        ("{\n a: [1, 2", "line 2, column 5: this `[` is never closed"),
        ("{ a: 1,\n", "line 1, column 1: this `{` is never closed"),
        ("{ a 1 }", "line 1, column 5: `a`: expected `:`, found `1`"),
        ("{ a: 1 b: 2 }", "line 1, column 8: `a`: expected `,` or `}`, found `b`"),
        ("{ a: 'x' 'y' }", "line 1, column 10: `a`: expected `,` or `}`, found `'`"),
        ("{ a: [1 2] }", "line 1, column 9: `a[0]`: expected `,` or `]`, found `2`"),
        ("{ a: [1,, 2] }", "line 1, column 9: `a[1]`: an empty array element"),
        ("{ a: }", "line 1, column 6: `a`: expected a value, found `}`"),
        ("{ , }", "line 1, column 3: expected a key, found `,`"),
        ("{ g: { h: @ } }", "line 1, column 11: `g.h`: expected a value, found `@`"),
        ("{ a: '\\1' }", "line 1, column 7: `a`: octal escapes"),
        ("{ a: '\\x4' }", "line 1, column 7: `a`: `\\x` needs two hex digits"),
        ("{ a: '\\u12' }", "line 1, column 7: `a`: `\\u` needs four hex digits"),
        ("{ a: '\\u{110000}' }", "line 1, column 7: `a`: this `\\u` escape is not a character"),
        ("{ a: '\\u{12' }", "line 1, column 7: `a`: `\\u{…}` needs hex digits and a `}`"),
    ] {
        let e = parse_err(text);
        assert!(e.starts_with(want), "{text:?}\n got: {e}\nwant: {want}");
    }
}

#[test]
fn code_is_refused_naming_the_key() {
    for (text, key, at, shows) in [
        ("{ port: process.env.PORT }", "port", "line 1, column 9", "process.env.PORT"),
        (
            "{\n  graphite: {\n    globalSuffix: require('os').hostname().split('.')[0]\n  }\n}",
            "graphite.globalSuffix",
            "line 3, column 19",
            "require('os').hostname().split('.')[0]",
        ),
        ("{ graphiteHost: 'a' + 'b' }", "graphiteHost", "line 1, column 17", "'a' + 'b'"),
        ("{ flushInterval: 60 * 1000 }", "flushInterval", "line 1, column 18", "60 * 1000"),
        ("{ flushInterval: 1000 / 2 }", "flushInterval", "line 1, column 18", "1000 / 2"),
        ("{ prefixStats: x }", "prefixStats", "line 1, column 16", "x"),
        ("{ port }", "port", "line 1, column 3", "port"),
        ("{ f() { return 1 } }", "f", "line 1, column 3", "f() { return 1 }"),
        ("{ [k]: 1 }", "", "line 1, column 3", "[k]: 1"),
        ("{ a: `x${y}` }", "a", "line 1, column 6", "`x${y}`"),
        ("{ a: [1, foo()] }", "a[1]", "line 1, column 10", "foo()"),
        ("{ a: !0 }", "a", "line 1, column 6", "!0"),
        ("{ a: -x }", "a", "line 1, column 6", "-x"),
        ("{ a: --x }", "a", "line 1, column 6", "--x"),
        ("{ a: new Date() }", "a", "line 1, column 6", "new Date()"),
        ("{ a: typeof x }", "a", "line 1, column 6", "typeof x"),
        ("{ a: (1) }", "a", "line 1, column 6", "(1)"),
        ("{ a: true && false }", "a", "line 1, column 6", "true && false"),
        ("{ a: 'x'.toUpperCase() }", "a", "line 1, column 6", "'x'.toUpperCase()"),
        ("{ a: [1][0] }", "a", "line 1, column 6", "[1][0]"),
        ("{ a: { b: 1 }.b }", "a", "line 1, column 6", "{ b: 1 }.b"),
        ("{ a: 1 ? 2 : 3 }", "a", "line 1, column 6", "1 ? 2 : 3"),
        ("{ a: Infinity }", "a", "line 1, column 6", "Infinity"),
        ("{ ...defaults }", "", "line 1, column 3", "...defaults"),
    ] {
        let e = parse_err(text);
        let named = if key.is_empty() { format!("{at}: `") } else { format!("{at}: `{key}`: `") };
        assert!(e.starts_with(&named), "{text}\n got: {e}\nwant: {named}…");
        assert!(e.contains(&format!("`{shows}` is code, not a value")), "{text}: {e}");
    }
}

#[test]
fn no_input_panics() {
    // Every prefix of a config.js using every form, and random text from its alphabet:
    // each is parsed (and translated) or refused, never a panic.
    let full = "/* c */ ({ a: 'x\\u{41}\\n', \"b\": [1, -2.5e3, 0x1F, 0660, .5, `t`], c: { d: true, \
                e: null, f: undefined, }, // x\n g: 'y', 'h': 1_0, servers: [{ port: 1 }] });";
    assert!(translate(full).is_ok(), "{:?}", translate(full));
    let chars: Vec<char> = full.chars().collect();
    for n in 0..=chars.len() {
        let text: String = chars[..n].iter().collect();
        let _ = translate(&text);
    }
    let alphabet: Vec<char> =
        "{}[](),:;.'\"`\\/*+-_$ \n\r\t0123456789eExXoObBuabcdnull\u{e9}\u{2028}".chars().collect();
    let mut x: u64 = 0x2545_F491_4F6C_DD1D;
    for _ in 0..20_000 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let len = (x % 40) as usize;
        let mut text = String::from("{ k: ");
        for i in 0..len {
            let r = x.rotate_left(i as u32 * 5);
            text.push(alphabet[(r % alphabet.len() as u64) as usize]);
        }
        let _ = translate(&text);
    }
}

#[test]
fn the_listener_keys() {
    // Without `servers`: the top level is the one UDP server; etsy binds every interface.
    let c = config("{}");
    assert_eq!(c.server.udp, vec!["0.0.0.0:8125".parse().unwrap()]);
    assert_eq!(c.server.admin, Some("127.0.0.1:8126".parse().unwrap()), "management stays on loopback");
    assert!(c.server.tcp.is_empty() && c.server.unix_stream.is_empty());
    let c = config("{ port: 9125, address: '10.1.2.3' }");
    assert_eq!(c.server.udp, vec!["10.1.2.3:9125".parse().unwrap()]);
    let c = config("{ port: '9125', address_ipv6: true }");
    assert_eq!(c.server.udp, vec!["[::]:9125".parse().unwrap()]);
    let c = config("{ address: 'localhost', address_ipv6: true, port: 0 }");
    assert_eq!(c.server.udp, vec!["[::1]:8125".parse().unwrap()], "port 0 is etsy's default");
    let c = config("{ address: '::1' }");
    assert_eq!(c.server.udp, vec!["[::1]:8125".parse().unwrap()]);
    // The top-level tcp server.
    let c = config("{ server: './servers/tcp', address: '127.0.0.1', port: 8130 }");
    assert_eq!((c.server.udp.len(), c.server.tcp.clone()), (0, vec!["127.0.0.1:8130".parse().unwrap()]));
    // `servers`: each entry; the top-level listener keys are then unused.
    let text = "{ port: 1, address: '1.1.1.1', servers: [\n\
                { port: 8125, address: '127.0.0.1' },\n\
                { server: './servers/udp', address: '::1', address_ipv6: true, port: 8127 },\n\
                { server: './servers/tcp', address: '127.0.0.1', port: 8128 },\n\
                { server: 'servers/tcp.js', port: 8129 },\n\
                { server: './servers/tcp', socket: '/run/statsd.sock', socket_mod: 0660, extra: 1 },\n\
                ] }";
    let c = config(text);
    assert_eq!(c.server.udp, vec!["127.0.0.1:8125".parse().unwrap(), "[::1]:8127".parse().unwrap()]);
    assert_eq!(c.server.tcp, vec!["127.0.0.1:8128".parse().unwrap(), "0.0.0.0:8129".parse().unwrap()]);
    assert_eq!(c.server.unix_stream, vec![std::path::PathBuf::from("/run/statsd.sock")]);
    assert_eq!(c.server.unix_mode, 0o660);
    round_trips(&c);
    assert_eq!(
        ignored(text),
        vec!["port (unused: `servers` is given)", "address (unused: `servers` is given)", "servers[4].extra"]
    );
    assert_eq!(
        config("{ servers: [{ server: './servers/tcp', socket: '/s', socket_mod: '600' }] }")
            .server
            .unix_mode,
        0o600
    );
    for (text, want) in [
        (
            "{ servers: [{ server: './servers/http' }] }",
            "line 1, column 23: `servers[0].server`: `./servers/http` is not a server",
        ),
        ("{ servers: {} }", "line 1, column 12: `servers`: expected an array, found an object"),
        ("{ servers: [8125] }", "line 1, column 13: `servers[0]`: expected an object, found a number"),
        (
            "{ address: 'statsd.example' }",
            "line 1, column 12: `address`: `statsd.example` is not an IP address",
        ),
        ("{ port: 70000 }", "line 1, column 9: `port`: 70000 is not a port"),
        ("{ port: 'x' }", "line 1, column 9: `port`: expected a port number, found a string"),
        ("{ address_ipv6: 'yes' }", "line 1, column 17: `address_ipv6`: expected true or false"),
        (
            "{ servers: [{ server: './servers/tcp', socket: '/a', socket_mod: 0660 },\n\
             { server: './servers/tcp', socket: '/b', socket_mod: 0600 }] }",
            "line 2, column 54: `servers[1].socket_mod`: kstatsd gives every Unix socket one mode; \
             servers[0].socket_mod already says 0660",
        ),
    ] {
        let e = config_err(text);
        assert!(e.starts_with(want), "{text}\n got: {e}\nwant: {want}");
    }
    let e = config_err("{ servers: [{ server: './servers/tcp', socket: '/a', socket_mod: '999' }] }");
    assert!(
        e.contains("server.unix_mode") && e.contains("`servers[0].socket_mod` at line 1, column 66"),
        "{e}"
    );
}

#[test]
fn the_management_keys() {
    let c = config("{ mgmt_port: 9126, mgmt_address: '127.0.0.1' }");
    assert_eq!(c.server.admin, Some("127.0.0.1:9126".parse().unwrap()));
    let c = config("{ mgmt_address: 'localhost' }");
    assert_eq!(c.server.admin, Some("127.0.0.1:8126".parse().unwrap()));
    let c = config("{ mgmt_address: '::1' }");
    assert_eq!(c.server.admin, Some("[::1]:8126".parse().unwrap()));
    round_trips(&c);
    assert!(config_err("{ mgmt_port: true }").starts_with("line 1, column 14: `mgmt_port`: expected a port"));
    assert!(config_err("{ mgmt_address: 'mgmt.host' }").contains("`mgmt_address`: `mgmt.host` is not an IP"));
}

#[test]
fn flushing_and_statistics_keys() {
    let c = config(
        "{ flushInterval: 1e3, percentThreshold: [90, 99.9, -10, 50],\n\
         histogram: [ { metric: 'render', bins: [ 0.01, 0.1, 1, 10, 'inf'] }, { metric: '', bins: [50, 'inf'], x: 1 } ],\n\
         calculatedTimerMetrics: ['count', 'median'] }",
    );
    let a = &c.aggregate;
    assert_eq!(a.flush_interval, Duration::from_secs(1));
    assert_eq!(a.percentiles, [90.0, 99.9, -10.0, 50.0].map(Percentile::new).to_vec());
    assert_eq!(a.histograms.len(), 2);
    assert_eq!(a.histograms[0].metric, "render");
    assert_eq!(a.histograms[0].names, ["bin_0_01", "bin_0_1", "bin_1", "bin_10", "bin_inf"]);
    assert_eq!(a.histograms[1].bins, vec![BinEdge::Finite(50.0), BinEdge::Inf]);
    round_trips(&c);
    assert_eq!(config("{ percentThreshold: 95 }").aggregate.percentiles, vec![Percentile::new(95.0)]);
    assert_eq!(config("{ flushInterval: 250 }").aggregate.flush_interval, Duration::from_millis(250));
    assert_eq!(
        config("{ flushInterval: 0 }").aggregate.flush_interval,
        Duration::from_secs(10),
        "0 || 10000"
    );
    let i = ignored("{ histogram: [{ metric: 'a', bins: [1], x: 1 }], calculatedTimerMetrics: [] }");
    assert_eq!(i, ["histogram[0].x", "calculatedTimerMetrics (kstatsd sends every timer statistic)"]);
    for (text, want) in [
        (
            "{ percentThreshold: '90' }",
            "line 1, column 21: `percentThreshold`: expected a number or an array",
        ),
        ("{ percentThreshold: [90, '99'] }", "line 1, column 26: `percentThreshold[1]`: expected a number"),
        ("{ flushInterval: '10s' }", "line 1, column 18: `flushInterval`: expected a number"),
        ("{ histogram: {} }", "line 1, column 14: `histogram`: expected an array"),
        ("{ histogram: [{ bins: [1] }] }", "line 1, column 15: `histogram[0]`: needs `metric`"),
        ("{ histogram: [{ metric: 'a' }] }", "line 1, column 15: `histogram[0]`: needs `bins`"),
        (
            "{ histogram: [{ metric: 'a', bins: ['x'] }] }",
            "line 1, column 37: `histogram[0].bins[0]`: expected a number or 'inf'",
        ),
        (
            "{ histogram: [{ metric: 'foo', bins: [] }] }",
            "line 1, column 38: `histogram[0].bins`: an empty bins list",
        ),
    ] {
        let e = config_err(text);
        assert!(e.starts_with(want), "{text}\n got: {e}\nwant: {want}");
    }
    // kstatsd's own validation, with the config.js key it came from.
    let e = config_err("{\n percentThreshold: [0] }");
    assert!(
        e.contains("aggregate.percentiles")
            && e.ends_with("(`percentThreshold` at line 2, column 20 gives aggregate.percentiles)"),
        "{e}"
    );
    let e = config_err("{ flushInterval: 5 }");
    assert!(e.contains("at least 10ms") && e.contains("`flushInterval` at line 1, column 18"), "{e}");
    let e = config_err("{ histogram: [{ metric: 'a', bins: [1e999] }] }");
    assert!(e.contains("bins are numbers") && e.contains("`histogram` at line 1"), "{e}");
}

#[test]
fn idle_series_keys() {
    let c = config("{ deleteIdleStats: true }");
    let a = &c.aggregate;
    assert!(a.delete_counters && a.delete_timers && a.delete_sets && a.delete_gauges);
    assert_eq!(a.gauges_max_ttl, None);
    let c =
        config("{ deleteIdleStats: true, deleteCounters: false, deleteTimers: false, deleteSets: false }");
    let a = &c.aggregate;
    assert!(!a.delete_counters && !a.delete_timers && !a.delete_sets && a.delete_gauges);
    let c = config("{ deleteCounters: true, deleteTimers: true, deleteSets: true, deleteGauges: true }");
    let a = &c.aggregate;
    assert!(a.delete_counters && a.delete_timers && a.delete_sets && a.delete_gauges);
    // etsy keeps an idle gauge for gaugesMaxTTL - 1 flushes, and only with deleteGauges.
    assert_eq!(config("{ deleteGauges: true, gaugesMaxTTL: 3 }").aggregate.gauges_max_ttl, Some(2));
    assert_eq!(config("{ deleteIdleStats: true, gaugesMaxTTL: 2 }").aggregate.gauges_max_ttl, Some(1));
    assert_eq!(config("{ deleteGauges: true, gaugesMaxTTL: 1 }").aggregate.gauges_max_ttl, None);
    assert_eq!(config("{ deleteGauges: true, gaugesMaxTTL: 2.5 }").aggregate.gauges_max_ttl, None);
    let c = config("{ deleteGauges: false, gaugesMaxTTL: 5 }");
    assert_eq!((c.aggregate.gauges_max_ttl, c.aggregate.delete_gauges), (None, false));
    round_trips(&config("{ deleteGauges: true, gaugesMaxTTL: 4 }"));
    assert!(config_err("{ deleteGauges: 1 }")
        .starts_with("line 1, column 17: `deleteGauges`: expected true or false, found a number"));
    assert!(config_err("{ gaugesMaxTTL: '3' }")
        .starts_with("line 1, column 17: `gaugesMaxTTL`: expected a number"));
}

#[test]
fn name_keys() {
    let c = config("{ prefixStats: 'kstatsd', keyNameSanitize: false }");
    assert_eq!((c.aggregate.meta_prefix.as_str(), c.aggregate.limits.key.sanitize), ("kstatsd", false));
    round_trips(&c);
    let e = config_err("{ prefixStats: '' }");
    assert!(
        e.contains("meta_prefix must not be empty") && e.contains("`prefixStats` at line 1, column 16"),
        "{e}"
    );
    assert!(config_err("{ keyNameSanitize: 'no' }").contains("`keyNameSanitize`: expected true or false"));
}

#[test]
fn graphite_keys() {
    let c = config(
        "{ graphiteHost: 'carbon.example', graphitePort: 2013, graphite: { legacyNamespace: false,\n\
         globalPrefix: 'app', prefixCounter: 'c', prefixTimer: 't', prefixGauge: 'g', prefixSet: 's',\n\
         globalSuffix: '.web1' } }",
    );
    let g = c.graphite.clone().unwrap();
    assert_eq!((g.address(), g.protocol), ("carbon.example:2013".into(), GraphiteProtocol::Plaintext));
    assert_eq!(c.console, None, "no console backend");
    let a = &c.aggregate;
    assert!(!a.legacy_namespace);
    assert_eq!(
        [
            &a.global_prefix,
            &a.prefix_counter,
            &a.prefix_timer,
            &a.prefix_gauge,
            &a.prefix_set,
            &a.global_suffix
        ],
        ["app", "c", "t", "g", "s", ".web1"]
    );
    round_trips(&c);
    let c = config(
        "{ graphiteHost: '::1', graphiteProtocol: 'pickle', graphitePort: 1, graphitePicklePort: 2114 }",
    );
    let g = c.graphite.unwrap();
    assert_eq!((g.address(), g.protocol), ("[::1]:2114".into(), GraphiteProtocol::Pickle));
    let g = config("{ graphiteHost: 'h', graphiteProtocol: 'pickle' }").graphite.unwrap();
    assert_eq!(g.address(), "h:2004");
    let g = config("{ graphiteHost: 'h', graphiteProtocol: 'text' }").graphite.unwrap();
    assert_eq!(g.address(), "h:2003");
    // Without graphiteHost etsy's graphite backend discards everything: no sink at all.
    let c = config("{ backends: ['./backends/graphite'] }");
    assert_eq!((c.graphite.is_none(), c.console), (true, None));
    assert!(ignored("{ }").is_empty(), "etsy's default backend, in its dry mode");
    let i = ignored("{ backends: ['./backends/graphite'] }");
    assert!(i.len() == 1 && i[0].contains("without graphiteHost"), "{i:?}");
    let e = config_err("{ graphiteHost: 'h', graphiteProtocol: 'udp' }");
    assert!(e.starts_with("line 1, column 40: `graphiteProtocol`: `udp` is not 'text' or 'pickle'"), "{e}");
    let e = config_err("{ graphiteHost: 'h', graphite: { globalPrefix: 7 } }");
    assert!(
        e.starts_with("line 1, column 48: `graphite.globalPrefix`: expected a string, found a number"),
        "{e}"
    );
    let e = config_err("{ graphiteHost: 'h', graphite: { legacyNamespace: 'false' } }");
    assert!(e.starts_with("line 1, column 51: `graphite.legacyNamespace`: expected true or false"), "{e}");
    let e = config_err("{ graphiteHost: 'bad host' }");
    assert!(e.contains("sinks.graphite.host") && e.contains("`graphiteHost` at line 1, column 17"), "{e}");
    assert_eq!(
        ignored("{ graphiteHost: 'h', graphite: { legacyNamespace: true, extra: 1 } }"),
        ["graphite.extra"]
    );
}

#[test]
fn backends() {
    let c = config("{ backends: ['./backends/console'] }");
    assert_eq!((c.console, c.graphite.is_none()), (Some(ConsoleFormat::Json), true));
    let c =
        config("{ graphiteHost: '127.0.0.1', backends: ['./backends/console.js', './backends/graphite'] }");
    assert_eq!((c.console, c.graphite.is_some()), (Some(ConsoleFormat::Json), true));
    let c = config("{ backends: [] }");
    assert_eq!((c.console, c.graphite.is_none(), c.kafka_rest.is_none()), (None, true, true));
    round_trips(&c);
    for name in
        ["kafka-backend", "./node_modules/statsd-kafka-backend/kafka-backend", "/opt/x/kafka-backend.js"]
    {
        let c =
            config(&format!("{{ restProxyUrl: 'http://p:8082', kafkaTopic: 't', backends: ['{name}'] }}"));
        assert!(c.kafka_rest.is_some(), "{name}");
    }
    for (name, col) in [("./backends/repeater", 14), ("graphite", 14), ("statsd-librato-backend", 14)] {
        let e = config_err(&format!("{{ backends: ['{name}'] }}"));
        let want = format!("line 1, column {col}: `backends[0]`: `{name}` is not a backend kstatsd has");
        assert!(e.starts_with(&want), "{e}");
    }
    assert!(
        config_err("{ backends: './backends/console' }").contains("`backends`: expected an array of strings")
    );
    assert!(config_err("{ backends: [1] }").contains("`backends[0]`: expected a string, found a number"));
    // Keys of a backend that is not loaded are listed, not used.
    let i = ignored("{ backends: ['./backends/console'], graphiteHost: 'h', graphite: {}, kafkaTopic: 't', console: { prettyprint: false } }");
    assert_eq!(
        i,
        [
            "graphite (unused: the graphite backend is not loaded)",
            "graphiteHost/graphitePort/graphiteProtocol/graphitePicklePort (unused: the graphite backend is not loaded)",
            "console.prettyprint (the console prints one JSON object per flush)",
            "restProxyUrl/kafkaTopic (unused: statsd-kafka-backend is not loaded)",
        ]
    );
}

#[test]
fn statsd_kafka_backend_keys() {
    // Its own example: POSTs to restProxyUrl + "/" + kafkaTopic, i.e. /topics/test-metrics.
    let c = config("{\n  restProxyUrl: \"http://localhost:8082/topics\",\n  kafkaTopic: \"test-metrics\",\n  backends: [ \"kafka-backend\" ]\n}\n");
    let k = c.kafka_rest.clone().unwrap();
    assert_eq!(k.url.produce(&k.topic), "http://localhost:8082/topics/test-metrics");
    assert_eq!(
        (k.format, k.content_type, k.key.clone()),
        (KafkaFormat::Flat, KafkaContentType::JsonV1, RecordKey::None)
    );
    assert_eq!((c.console, c.graphite.is_none()), (None, true));
    round_trips(&c);
    for (url, posts) in [
        ("http://localhost:8082", "http://localhost:8082/topics/m"),
        ("http://localhost:8082/", "http://localhost:8082/topics/m"),
        ("http://localhost:8082/topics/", "http://localhost:8082/topics/m"),
        ("https://proxy.example/kafka/topics", "https://proxy.example/kafka/topics/m"),
    ] {
        let c = config(&format!("{{ restProxyUrl: '{url}', kafkaTopic: 'm', backends: ['kafka-backend'] }}"));
        let k = c.kafka_rest.unwrap();
        assert_eq!(k.url.produce(&k.topic), posts, "{url}");
    }
    // kafka.* names; with graphite too they must agree (kstatsd names every sink alike).
    let c = config("{ restProxyUrl: 'http://p', kafkaTopic: 't', backends: ['kafka-backend'],\n\
                    kafka: { legacyNamespace: false, globalPrefix: 'g', prefixCounter: 'c', prefixTimer: 't', prefixGauge: 'ga', prefixSet: 's' } }");
    let a = &c.aggregate;
    assert!(!a.legacy_namespace);
    assert_eq!(
        [&a.global_prefix, &a.prefix_counter, &a.prefix_timer, &a.prefix_gauge, &a.prefix_set],
        ["g", "c", "t", "ga", "s"]
    );
    let both = "backends: ['kafka-backend', './backends/graphite'], graphiteHost: 'h', restProxyUrl: 'http://p', kafkaTopic: 't'";
    let c = config(&format!("{{ {both}, graphite: {{ legacyNamespace: false, prefixSet: 'x' }}, kafka: {{ legacyNamespace: false, prefixSet: 'x' }} }}"));
    assert_eq!(
        (c.aggregate.prefix_set.as_str(), c.graphite.is_some(), c.kafka_rest.is_some()),
        ("x", true, true)
    );
    let c = config(&format!("{{ {both}, graphite: {{ prefixSet: 'x' }} }}"));
    assert_eq!(c.aggregate.prefix_set, "x", "legacy names do not use the prefixes");
    for (extra, diff) in [
        ("graphite: { legacyNamespace: false }", "legacyNamespace"),
        (
            "graphite: { legacyNamespace: false }, kafka: { legacyNamespace: false, globalPrefix: 'k' }",
            "globalPrefix",
        ),
        ("graphite: { globalSuffix: '.h' }", "globalSuffix"),
    ] {
        let e = config_err(&format!("{{ {both}, {extra} }}"));
        assert!(e.starts_with(&format!("graphite.{diff} and kafka.{diff} name metrics differently")), "{e}");
    }
    let i = ignored("{ backends: ['kafka-backend'], kafka: { globalSuffix: 'x' } }");
    assert_eq!(
        i,
        [
            "kafka.globalSuffix",
            "backends: statsd-kafka-backend without restProxyUrl (it sends nothing; nor does kstatsd)"
        ]
    );
    let e = config_err("{ backends: ['kafka-backend'], restProxyUrl: 'http://p' }");
    assert!(
        e.starts_with("line 1, column 46: `restProxyUrl`: statsd-kafka-backend also needs `kafkaTopic`"),
        "{e}"
    );
    let e = config_err("{ backends: ['kafka-backend'], restProxyUrl: 'ftp://p', kafkaTopic: 't' }");
    assert!(e.contains("must start with http") && e.contains("`restProxyUrl` at line 1, column 46"), "{e}");
    let e = config_err("{ backends: ['kafka-backend'], restProxyUrl: 'http://p', kafkaTopic: 'a b' }");
    assert!(e.contains("not a Kafka topic name") && e.contains("`kafkaTopic` at line 1, column 70"), "{e}");
}

#[test]
fn documented_keys_without_an_equivalent_are_listed() {
    assert_eq!(config("{ dumpMessages: true }").server.debug_dump.as_deref(), Some(""));
    assert_eq!(config("{ dumpMessages: false }").server.debug_dump, None);
    // Values that match what kstatsd does are used silently.
    let quiet = "{ graphiteHost: 'h', debug: false, flush_counts: true, automaticConfigReload: false, healthStatus: 'up' }";
    assert!(ignored(quiet).is_empty(), "{:?}", ignored(quiet));
    let t = translate(
        "{ graphiteHost: 'h', debug: true, flush_counts: false, automaticConfigReload: true, healthStatus: 'down',\n\
         title: 'statsd', keyFlush: { interval: 1000 }, log: { backend: 'syslog' }, repeater: [], repeaterProtocol: 'udp4',\n\
         calculatedTimerMetrics: ['count'], console: { prettyprint: true }, unheardOf: 1, nested: { a: 1 } }",
    )
    .unwrap();
    let w = t.warning().unwrap();
    assert!(w.starts_with("config.js: 13 key(s) kstatsd does not use, ignored: "), "{w}");
    for key in [
        "debug (use --log debug)",
        "flush_counts (kstatsd always sends the counts)",
        "automaticConfigReload (kstatsd reloads its file on SIGHUP",
        "healthStatus (kstatsd starts up",
        "title (",
        "keyFlush (",
        "log (kstatsd logs to stderr)",
        "repeater (no repeater)",
        "repeaterProtocol (no repeater)",
        "calculatedTimerMetrics (",
        "console.prettyprint (",
        "unheardOf",
        "nested",
    ] {
        assert!(w.contains(key), "{key}: {w}");
    }
    assert!(translate("{ graphiteHost: 'h' }").unwrap().warning().is_none());
}

#[test]
fn etsys_documented_example_maps_onto_the_defaults_it_names() {
    // The configuration object of etsy statsd 0.9.0's exampleConfig.js, in its comma-first
    // style (the whole file is read in tests/etsy_config.rs).
    let c = config("{\n  graphitePort: 2003\n, graphiteHost: \"graphite.example.com\"\n, port: 8125\n, backends: [ \"./backends/graphite\" ]\n}");
    assert_eq!(c.graphite.clone().unwrap().address(), "graphite.example.com:2003");
    assert_eq!(c.server.udp, vec!["0.0.0.0:8125".parse().unwrap()]);
    let d = Config::defaults();
    assert_eq!(c.aggregate, d.aggregate);
    round_trips(&c);
}

#[test]
fn the_format_is_picked_by_extension_or_flag() {
    use crate::config::{AggregateSection, ConfigFormat};
    let dir = std::env::temp_dir().join(format!("kstatsd-etsy-format-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let js = dir.join("config.js");
    std::fs::write(&js, "{ port: 9999, address: '127.0.0.1' }").unwrap();
    let c = Config::load(Some(&js), &Overrides::default()).unwrap();
    assert_eq!(c.server.udp, vec!["127.0.0.1:9999".parse().unwrap()]);
    let other = dir.join("statsd.conf");
    std::fs::write(&other, "{ port: 9998, address: '127.0.0.1' }").unwrap();
    let e = Config::load(Some(&other), &Overrides::default()).unwrap_err();
    assert!(e.0.contains("statsd.conf"), "read as TOML: {e}");
    let ov = Overrides { config_format: Some(ConfigFormat::Etsy), ..Overrides::default() };
    assert_eq!(Config::load(Some(&other), &ov).unwrap().server.udp[0].port(), 9998);
    let toml = dir.join("kstatsd.js");
    std::fs::write(&toml, "[server]\nudp = [\"127.0.0.1:9997\"]\n").unwrap();
    let ov = Overrides { config_format: Some(ConfigFormat::Toml), ..Overrides::default() };
    assert_eq!(Config::load(Some(&toml), &ov).unwrap().server.udp[0].port(), 9997);
    let e = Config::load(Some(&toml), &Overrides::default()).unwrap_err();
    assert!(e.0.starts_with(&format!("{}: line 1, column 1", toml.display())), "{e}");
    // Flags still beat the file.
    let aggregate = AggregateSection { flush_interval: Some("2s".parse().unwrap()), ..Default::default() };
    let ov = Overrides { aggregate, ..Overrides::default() };
    assert_eq!(Config::load(Some(&js), &ov).unwrap().aggregate.flush_interval, Duration::from_secs(2));
    assert_eq!(ConfigFormat::parse("etsy"), Ok(ConfigFormat::Etsy));
    assert!(ConfigFormat::parse("json").is_err());
    let _ = std::fs::remove_dir_all(&dir);
}
