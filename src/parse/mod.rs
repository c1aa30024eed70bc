//! Input parsing: each statsd/DogStatsD line into borrowed pieces (the lines themselves are cut
//! by [`crate::ingest`]), pystatsd JSON messages, and the tags written into names. Runs on the ingest thread; never allocates, never panics, never indexes past
//! a bound it did not check. A line that cannot be parsed yields a [`BadLine`] reason, which the
//! caller counts; the rest of the datagram is unaffected.

pub mod json;
mod line;
mod name_tags;
mod number;
mod scan;

pub use json::{parse_json, JsonBuf};
pub use line::{
    parse_line, parse_simple, parse_simple_prefix, Kind, LineBuf, Parsed, Sample, SampleValue, Simple,
};
pub use name_tags::{split_name_tags, NameTags};
pub use number::parse_f64;

/// Why a line was dropped. Counted per reason in `bad_lines_seen` and reported as
/// `statsd.bad_lines.<reason>`; small and `Copy` so that counting costs an array increment.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BadLine {
    /// No `:` after the name (etsy: "foo").
    NoValue,
    /// Nothing before the first `:`, or nothing left after sanitizing.
    EmptyName,
    /// A value with no `|type` after it.
    NoType,
    /// A type other than c, g, ms, h, d, s.
    UnknownType,
    /// A value that is not a finite decimal number (or an empty set member).
    BadValue,
    /// A timer/histogram/distribution value below zero.
    NegativeTimer,
    /// `@` followed by something that is not a number in (0, ∞).
    BadSampleRate,
    /// A `|T` timestamp that is not a Unix time in seconds.
    BadTimestamp,
    /// More than one `|#` tags field in one line.
    DuplicateTags,
    /// A malformed event (`_e{…}`) or service check (`_sc|…`).
    BadEvent,
    /// A name (or tags) that is not UTF-8 when key sanitizing is off.
    InvalidUtf8,
    /// A name longer than `max_name_bytes`.
    NameTooLong,
    /// More tags than `max_tags`.
    TooManyTags,
    /// A new series beyond `max_series` in this interval.
    TooManySeries,
    /// A set member beyond `max_set_members` in this interval.
    TooManySetMembers,
    /// A datagram longer than the receive buffer (its lines are all lost; counted once).
    Truncated,
    /// A line on a stream (TCP, Unix stream) longer than `max_line_bytes`.
    LineTooLong,
    /// A pystatsd JSON message that is not a JSON object.
    InvalidJson,
    /// A pystatsd JSON message without `metric_name`, `metric_type`, or the `value` its type
    /// needs.
    MissingField,
    /// Tags written into the name in two styles (`a,k=v#j=w`), or name tags and DogStatsD `|#`
    /// tags in one line.
    MixedTagStyles,
    /// SignalFx tags with a `[` and no `]`, a `]` first, or brackets nested or repeated.
    BadNameTags,
    /// A tag with a value but no key (`#:v`, `a,=v`), as sent or once sanitized.
    EmptyTagKey,
}

impl BadLine {
    pub const ALL: [BadLine; 22] = [
        BadLine::NoValue,
        BadLine::EmptyName,
        BadLine::NoType,
        BadLine::UnknownType,
        BadLine::BadValue,
        BadLine::NegativeTimer,
        BadLine::BadSampleRate,
        BadLine::BadTimestamp,
        BadLine::DuplicateTags,
        BadLine::BadEvent,
        BadLine::InvalidUtf8,
        BadLine::NameTooLong,
        BadLine::TooManyTags,
        BadLine::TooManySeries,
        BadLine::TooManySetMembers,
        BadLine::Truncated,
        BadLine::LineTooLong,
        BadLine::InvalidJson,
        BadLine::MissingField,
        BadLine::MixedTagStyles,
        BadLine::BadNameTags,
        BadLine::EmptyTagKey,
    ];
    pub const COUNT: usize = Self::ALL.len();

    /// The snake_case name used in meta stats and the admin output.
    pub fn name(self) -> &'static str {
        match self {
            BadLine::NoValue => "no_value",
            BadLine::EmptyName => "empty_name",
            BadLine::NoType => "no_type",
            BadLine::UnknownType => "unknown_type",
            BadLine::BadValue => "bad_value",
            BadLine::NegativeTimer => "negative_timer",
            BadLine::BadSampleRate => "bad_sample_rate",
            BadLine::BadTimestamp => "bad_timestamp",
            BadLine::DuplicateTags => "duplicate_tags",
            BadLine::BadEvent => "bad_event",
            BadLine::InvalidUtf8 => "invalid_utf8",
            BadLine::NameTooLong => "name_too_long",
            BadLine::TooManyTags => "too_many_tags",
            BadLine::TooManySeries => "too_many_series",
            BadLine::TooManySetMembers => "too_many_set_members",
            BadLine::Truncated => "truncated_datagram",
            BadLine::LineTooLong => "line_too_long",
            BadLine::InvalidJson => "invalid_json",
            BadLine::MissingField => "missing_field",
            BadLine::MixedTagStyles => "mixed_tag_styles",
            BadLine::BadNameTags => "bad_name_tags",
            BadLine::EmptyTagKey => "empty_tag_key",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reason_names_are_unique() {
        let mut names: Vec<_> = BadLine::ALL.iter().map(|b| b.name()).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), BadLine::COUNT);
    }
}
